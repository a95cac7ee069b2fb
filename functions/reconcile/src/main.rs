//! The `reconcile` Lambda: build everything once, then serve schedule events, queued passes and
//! API requests, each bounded by its invocation's deadline (R-OPS-2).

use lambda_runtime::LambdaEvent;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let app = reconcile::Deployed::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent<Value>| {
        let app = &app;
        async move {
            let (payload, context) = event.into_parts();
            let event = reconcile::Event::decode(payload)?;
            let deps = app.for_event(&event, &context);
            reconcile::dispatch(&deps, event, &context).await
        }
    }))
    .await
}
