//! The `retry-worker` Lambda: build the deployed ports once, then consume SQS batches of the
//! retry queue, each within its invocation's deadline (R-OPS-2).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let app = m365_lambda::provision::Deployed::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        retry_worker::handle_invocation(&app, event)
    }))
    .await
}
