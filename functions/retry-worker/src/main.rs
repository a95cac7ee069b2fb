//! The `retry-worker` Lambda: build everything once, then consume SQS batches of the retry queue.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let app = m365_lambda::provision::Provisioning::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        retry_worker::handle(&app, event)
    }))
    .await
}
