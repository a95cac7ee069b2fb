//! The `reconcile` Lambda: build everything once, then serve schedule events and API requests.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let app = reconcile::Deployed::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        reconcile::handle(&app, event)
    }))
    .await
}
