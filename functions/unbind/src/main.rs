//! The `unbind` Lambda: build the deployed ports once, then serve API Gateway requests, each
//! bounded by its invocation's deadline (R-OPS-2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let app = m365_lambda::provision::Deployed::from_env().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        let ports = app.for_request(&request);
        async move { unbind::handle(&ports, request).await }
    }))
    .await
}
