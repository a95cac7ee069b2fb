//! Structured logs for every function: one JSON object per line on stdout (CloudWatch Logs
//! parses it), filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::TryInitError;

/// The filter used when `RUST_LOG` is unset or unparsable.
pub const DEFAULT_FILTER: &str = "info";

/// Libraries whose TRACE output holds whole HTTP bodies (the AWS SDK logs every response body,
/// Secrets Manager values and token endpoint answers included): they never log below DEBUG,
/// whatever `RUST_LOG` asks, so no token or secret reaches a log line (R-SAFE-2).
pub const SECRET_SAFE_CAPS: [&str; 6] = [
    "aws_smithy_runtime=debug",
    "aws_smithy_runtime_api=debug",
    "aws_smithy_http_client=debug",
    "hyper=debug",
    "hyper_util=debug",
    "reqwest=debug",
];

/// The filter of `spec` (a `RUST_LOG` value; [`DEFAULT_FILTER`] when absent or unparsable) with
/// the [`SECRET_SAFE_CAPS`] added.
#[must_use]
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let mut filter = spec
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    for cap in SECRET_SAFE_CAPS {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Installs the JSON subscriber as the global default.
///
/// # Errors
/// [`TryInitError`] when a global subscriber is already installed (e.g. called twice).
pub fn init() -> Result<(), TryInitError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
}
