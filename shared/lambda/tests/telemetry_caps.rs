//! The secret-safety cap of the log filter only ever lowers verbosity (R-SAFE-2): the HTTP, AWS
//! SDK and Lambda runtime libraries are not raised to DEBUG under `RUST_LOG=info`, and never log
//! at TRACE (where they print whole bodies and raw events) even under `RUST_LOG=trace`. (That the
//! runtime's own TRACE logging of a real invocation stays out of the logs is proven end to end in
//! `tests/tests/runtime_trace.rs`.)

#![allow(clippy::unwrap_used)]

use m365_engine::testing::LogBuffer;
use tracing::Level;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

/// Emits one event per (target, level) pair under the production filter at `spec` and returns
/// what was written.
fn emitted_under(spec: &str) -> String {
    let captured = LogBuffer::default();
    let writer = captured.clone();
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_target(true)
        .with_writer(move || writer.clone())
        .with_filter(m365_lambda::telemetry::filter(Some(spec)));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        tracing::event!(target: "hyper::proto::h1", Level::DEBUG, "hyper-debug");
        tracing::event!(target: "hyper::proto::h1", Level::TRACE, "hyper-trace");
        tracing::event!(target: "hyper_util::client", Level::TRACE, "hyper-util-trace");
        tracing::event!(target: "aws_smithy_runtime::client", Level::DEBUG, "smithy-debug");
        tracing::event!(target: "aws_smithy_runtime::client", Level::TRACE, "smithy-trace");
        tracing::event!(target: "aws_smithy_http_client", Level::TRACE, "smithy-http-trace");
        tracing::event!(target: "reqwest::connect", Level::TRACE, "reqwest-trace");
        tracing::event!(target: "lambda_runtime::layers::api_response", Level::TRACE, "runtime-trace");
        tracing::event!(target: "lambda_runtime::layers::api_response", Level::DEBUG, "runtime-debug");
        tracing::event!(target: "lambda_runtime_api_client", Level::TRACE, "runtime-client-trace");
        tracing::event!(target: "lambda_http::request", Level::TRACE, "lambda-http-trace");
        tracing::event!(target: "aws_sigv4::http_request::sign", Level::TRACE, "sigv4-trace");
        tracing::event!(target: "aws_runtime::env_config::property", Level::TRACE, "aws-runtime-trace");
        tracing::event!(target: "aws_config::credential_process", Level::TRACE, "aws-config-trace");
        tracing::event!(target: "aws_smithy_http::event_stream", Level::TRACE, "smithy-events-trace");
        tracing::event!(target: "m365_engine::usecase", Level::INFO, "ours-info");
        tracing::event!(target: "m365_engine::usecase", Level::DEBUG, "ours-debug");
        tracing::event!(target: "m365_engine::usecase", Level::TRACE, "ours-trace");
    });
    captured.text()
}

/// Asserts that none of `events` is in `out`, what was emitted under the filter `spec`.
fn assert_not_emitted(out: &str, spec: &str, events: &[&str]) {
    for event in events {
        assert!(
            !out.contains(event),
            "{event} was emitted under {spec}: {out}"
        );
    }
}

#[test]
fn under_info_the_capped_libraries_are_not_raised_to_debug_r_safe_2() {
    let out = emitted_under("info");
    assert!(out.contains("ours-info"), "the capture works: {out}");
    assert_not_emitted(
        &out,
        "info",
        &[
            "hyper-debug",
            "smithy-debug",
            "ours-debug",
            "hyper-trace",
            "smithy-trace",
            "runtime-trace",
            "runtime-debug",
        ],
    );
}

#[test]
fn under_trace_the_capped_libraries_stop_at_debug_r_safe_2() {
    let out = emitted_under("trace");
    for shown in [
        "ours-info",
        "ours-debug",
        "ours-trace",
        "hyper-debug",
        "smithy-debug",
        "runtime-debug",
    ] {
        assert!(out.contains(shown), "{shown} is missing under trace: {out}");
    }
    assert_not_emitted(
        &out,
        "trace",
        &[
            "hyper-trace",
            "hyper-util-trace",
            "smithy-trace",
            "smithy-http-trace",
            "reqwest-trace",
            "runtime-trace",
            "runtime-client-trace",
            "lambda-http-trace",
            "sigv4-trace",
            "aws-runtime-trace",
            "aws-config-trace",
            "smithy-events-trace",
        ],
    );
}

#[test]
fn an_explicit_library_level_below_the_cap_is_still_honoured() {
    // RUST_LOG may quieten a library further; the cap never gets in the way of that.
    let out = emitted_under("trace,hyper=info,aws_smithy_runtime=off");
    assert!(out.contains("ours-trace"), "the capture works: {out}");
    assert!(
        !out.contains("hyper-debug"),
        "hyper=info is honoured: {out}"
    );
    assert!(
        !out.contains("smithy-debug"),
        "aws_smithy_runtime=off is honoured: {out}"
    );
}

#[test]
fn an_unparsable_rust_log_falls_back_to_info() {
    let out = emitted_under("=== not a filter ===");
    assert!(out.contains("ours-info"), "info is on: {out}");
    assert!(!out.contains("ours-debug"), "debug is off: {out}");
}
