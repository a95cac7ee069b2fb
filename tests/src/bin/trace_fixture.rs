//! Test fixture of `tests/tests/it/runtime_trace.rs` (R-SAFE-2): one function run exactly as its
//! `main.rs` runs it — its real handler under `lambda_http::run`, polling the Lambda Runtime API
//! named by `AWS_LAMBDA_RUNTIME_API` (devstack's), configured from the environment — with two
//! log layers over the same events at `RUST_LOG`:
//! - `FIXTURE_CAPPED_LOG`: the product's own layer (`m365_lambda::telemetry::json_layer`, the
//!   `RUST_LOG` filter *and* the secret-safety cap), i.e. what the function logs in production;
//! - `FIXTURE_UNCAPPED_LOG`: the same JSON format filtered by `RUST_LOG` alone (no cap), to show
//!   what the cap keeps out.
//!
//! `FIXTURE_FUNCTION` picks the function: `connect` or `password-push`.

use std::fs::File;
use std::sync::Mutex;

use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

fn log_file(variable: &str) -> Result<Mutex<File>, lambda_http::Error> {
    let path = std::env::var(variable).map_err(|_| format!("{variable} is not set"))?;
    Ok(Mutex::new(File::create(path)?))
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let spec = std::env::var("RUST_LOG").ok();
    let capped =
        m365_lambda::telemetry::json_layer(log_file("FIXTURE_CAPPED_LOG")?, spec.as_deref());
    let uncapped = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_target(true)
        .with_ansi(false)
        .with_writer(log_file("FIXTURE_UNCAPPED_LOG")?)
        .with_filter(m365_lambda::telemetry::env_filter(spec.as_deref()));
    tracing_subscriber::registry()
        .with(capped)
        .with(uncapped)
        .try_init()?;
    // A TRACE line of a target no cap covers: shows the capped log is at RUST_LOG's verbosity.
    tracing::trace!(target: "trace_fixture", "trace level is on");
    match std::env::var("FIXTURE_FUNCTION").as_deref() {
        Ok("connect") => {
            let app = connect::Deployed::from_env().await?;
            lambda_http::run(lambda_http::service_fn(|request| {
                connect::handle(&app, request)
            }))
            .await
        }
        Ok("password-push") => {
            let app = m365_lambda::provision::Deployed::from_env().await?;
            lambda_http::run(lambda_http::service_fn(|request| {
                password_push::handle(&app, request)
            }))
            .await
        }
        _ => Err("FIXTURE_FUNCTION is neither connect nor password-push".into()),
    }
}
