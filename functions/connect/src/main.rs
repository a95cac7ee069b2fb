//! The `connect` Lambda: build everything once, then serve API Gateway requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let app = connect::Deployed::from_env().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        connect::handle(&app, request)
    }))
    .await
}
