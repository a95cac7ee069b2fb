//! The `connect` Lambda: build everything once, then serve API Gateway requests, each bounded by
//! its invocation's deadline (R-OPS-2).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let app = connect::Deployed::from_env().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        let deps = app.for_request(&request);
        async move { connect::handle(&deps, request).await }
    }))
    .await
}
