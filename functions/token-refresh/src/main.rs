//! The `token-refresh` Lambda: build everything once, then run on each schedule event, bounded by
//! the invocation's deadline (R-OPS-2).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    m365_lambda::telemetry::init()?;
    let app = token_refresh::Deployed::from_env().await?;
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<_>| {
            let deps = app.for_context(&event.context);
            async move { token_refresh::handle(&deps, event).await }
        },
    ))
    .await
}
