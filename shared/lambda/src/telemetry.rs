//! Structured logs for every function: one JSON object per line on stdout (CloudWatch Logs
//! parses it), filtered by `RUST_LOG` (default `info`).
//!
//! Two filters must both enable an event: the `RUST_LOG` filter, and a fixed cap on the
//! libraries that log whole HTTP bodies (see [`SECRET_SAFE_CAPS`]). The cap only ever lowers
//! verbosity: under `RUST_LOG=info` those libraries stay at INFO, under `RUST_LOG=trace` they
//! stop at DEBUG.

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, Targets, combinator::And};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::TryInitError;

/// The filter used when `RUST_LOG` is unset or unparsable.
pub const DEFAULT_FILTER: &str = "info";

/// Libraries whose TRACE output holds whole HTTP bodies (the AWS SDK logs every response body,
/// Secrets Manager values and token endpoint answers included): they never log below DEBUG,
/// whatever `RUST_LOG` asks, so no token or secret reaches a log line (R-SAFE-2). A target
/// matches its sub-modules too (`hyper` caps `hyper::proto::h1`).
pub const SECRET_SAFE_CAPS: [&str; 6] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "hyper_util",
    "reqwest",
];

/// The log filter of every function: `RUST_LOG` and the secret-safety cap, both of which must
/// enable an event. Use it as a per-layer filter (`layer.with_filter(filter(..))`).
pub type LogFilter<S> = And<EnvFilter, Targets, S>;

/// The `RUST_LOG` part of the filter: `spec` ([`DEFAULT_FILTER`] when absent or unparsable).
#[must_use]
pub fn env_filter(spec: Option<&str>) -> EnvFilter {
    spec.and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

/// The cap: every target of [`SECRET_SAFE_CAPS`] at DEBUG at most, everything else unlimited
/// (left to the `RUST_LOG` part). It never raises any target's level.
#[must_use]
pub fn secret_safe_caps() -> Targets {
    SECRET_SAFE_CAPS
        .iter()
        .fold(Targets::new().with_default(LevelFilter::TRACE), |t, cap| {
            t.with_target(*cap, LevelFilter::DEBUG)
        })
}

/// The filter of `spec` (a `RUST_LOG` value; [`DEFAULT_FILTER`] when absent or unparsable) capped
/// by [`secret_safe_caps`].
#[must_use]
pub fn filter<S>(spec: Option<&str>) -> LogFilter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    env_filter(spec).and(secret_safe_caps())
}

/// Installs the JSON subscriber as the global default.
///
/// # Errors
/// [`TryInitError`] when a global subscriber is already installed (e.g. called twice).
pub fn init() -> Result<(), TryInitError> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_filter(filter(std::env::var("RUST_LOG").ok().as_deref()));
    tracing_subscriber::registry().with(format).try_init()
}
