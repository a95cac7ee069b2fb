//! The `unbind` Lambda: build everything once, then serve API Gateway requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let app = m365_lambda::provision::Provisioning::from_env().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        unbind::handle(&app, request)
    }))
    .await
}
