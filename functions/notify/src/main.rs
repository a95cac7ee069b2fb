//! The `notify` Lambda: build the wiring once, then deliver the welcome emails of each SQS batch
//! of the notifications queue (R-NOT-1).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let deployed = notify::Deployed::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        notify::handle_invocation(&deployed, event)
    }))
    .await
}
