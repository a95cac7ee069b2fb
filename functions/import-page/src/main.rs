//! The `import-page` Lambda: build the deployed ports once (reading the cursor key, so a missing
//! or unusable key stops the cold start), then serve API Gateway requests, each bounded by its
//! invocation's deadline (R-OPS-2).

use m365_engine::ports::Ports;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let app = m365_lambda::provision::Deployed::from_env().await?;
    app.cursor_keys().key().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        let ports = app.for_request(&request);
        async move { import_page::handle(&ports, request).await }
    }))
    .await
}
