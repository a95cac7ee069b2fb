//! The `import-page` Lambda: build everything once, then serve API Gateway requests.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    m365_lambda::telemetry::init()?;
    let deps = import_page::Deployed::from_env().await?;
    lambda_http::run(lambda_http::service_fn(|request| {
        import_page::handle(&deps, request)
    }))
    .await
}
