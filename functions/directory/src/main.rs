//! The `directory` Lambda: build everything once, then serve API Gateway requests, each bounded by
//! its invocation's deadline (R-OPS-2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let deployed = m365_lambda::provision::Deployed::from_env().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        let ports = deployed.for_request(&request);
        async move { directory::handle(&ports, request).await }
    }))
    .await
}
