//! The `token-refresh` Lambda: build everything once, then run on each schedule event.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let app = token_refresh::Deployed::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        token_refresh::handle(&app, event)
    }))
    .await
}
