//! Structured logs for every function: one JSON object per line on stdout (CloudWatch Logs
//! parses it), filtered by `RUST_LOG` (default `info`).
//!
//! Two filters must both enable an event: the `RUST_LOG` filter, and a fixed cap on the
//! libraries that log whole HTTP bodies, raw Lambda events or credentials (see
//! [`SECRET_SAFE_CAPS`]). The cap only ever lowers verbosity: under `RUST_LOG=info` those
//! libraries stay at INFO, under `RUST_LOG=trace` they stop at DEBUG (R-SAFE-2).

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt, Targets, combinator::And};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::TryInitError;
use tracing_subscriber::{EnvFilter, Layer};

/// The filter used when `RUST_LOG` is unset or unparsable.
pub const DEFAULT_FILTER: &str = "info";

/// Libraries whose TRACE output holds secrets: they never log below DEBUG, whatever `RUST_LOG`
/// asks, so no password, token or key reaches a log line (R-SAFE-2). A cap covers every target
/// that starts with it (`hyper` caps `hyper::proto::h1`, and `hyper_rustls` too: capping more
/// is harmless). Each was read in its source:
/// - the AWS SDK's HTTP stack logs every request and response body (Secrets Manager values and
///   token endpoint answers included): `aws_smithy_runtime`, `aws_smithy_runtime_api`,
///   `aws_smithy_http_client`, `hyper`, `hyper_util`, `reqwest`;
/// - `lambda_runtime` logs every raw event it receives ("raw JSON event received from Lambda":
///   API request bodies with passwords, OAuth codes and `state` in query strings, `Authorization`
///   headers); `lambda_runtime_api_client` and `lambda_http` carry the same events (no TRACE
///   lines of their own in the versions read, capped so a new one cannot leak them);
/// - `aws_sigv4` logs the request it signs (headers; the body when `LOG_SIGNABLE_BODY=true`),
///   `aws_runtime` logs the values of profile properties it reads and the chunks it signs,
///   `aws_config` logs a `credential_process` command line unredacted, `aws_smithy_http` logs
///   event-stream messages.
pub const SECRET_SAFE_CAPS: [&str; 13] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "hyper",
    "hyper_util",
    "reqwest",
    "lambda_runtime",
    "lambda_runtime_api_client",
    "lambda_http",
    "aws_sigv4",
    "aws_runtime",
    "aws_config",
    "aws_smithy_http",
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

/// The log layer of every function: one JSON object per line written to `writer`, filtered by
/// [`filter`] of `spec` (a `RUST_LOG` value). [`init`] writes it to stdout; tests give it a
/// buffer or a file to read what a function logged.
pub fn json_layer<S, W>(writer: W, spec: Option<&str>) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_ansi(false)
        .with_writer(writer)
        .with_filter(filter(spec))
}

/// Installs the JSON subscriber ([`json_layer`] on stdout, `RUST_LOG`) as the global default.
///
/// # Errors
/// [`TryInitError`] when a global subscriber is already installed (e.g. called twice).
pub fn init() -> Result<(), TryInitError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let spec = std::env::var("RUST_LOG").ok();
    tracing_subscriber::registry()
        .with(json_layer(std::io::stdout, spec.as_deref()))
        .try_init()
}
