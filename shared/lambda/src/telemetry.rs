//! Structured logs for every function: one JSON object per line on stdout (CloudWatch Logs
//! parses it), filtered by `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::TryInitError;

/// The filter used when `RUST_LOG` is unset or unparsable.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the JSON subscriber as the global default.
///
/// # Errors
/// [`TryInitError`] when a global subscriber is already installed (e.g. called twice).
pub fn init() -> Result<(), TryInitError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
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
