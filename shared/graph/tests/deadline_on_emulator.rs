//! The caller's deadline bounds every Graph call, not only its retries (R-OPS-2, R-BIND-12): a
//! response slower than the time left is cut off at the deadline with the retryable `deadline`
//! error, a call with no time left is not sent, and a create cut off in flight (committed by
//! Graph, answer not awaited) is reported as such — the next attempt looks the UPN up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use m365_engine::model::{Email, NewM365User};
use m365_engine::ports::Directory;
use m365_graph::{GraphDirectory, GraphError, GraphIdentity, MIN_ATTEMPT};
use secrecy::SecretString;
use serde_json::json;
use support::{ADMIN, AppTokens, Emu, MANAGED, new_user, start};

fn soon(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + d
}

/// The emulator and its directory with the app-only token already fetched (so a deadline only
/// bounds the call under test), then `fault` injected.
async fn warmed_with_fault(fault: serde_json::Value) -> (Emu, GraphDirectory<AppTokens>) {
    let emu = start().await;
    let dir = emu.directory();
    dir.verified_domains(&emu.tenant()).await.unwrap();
    emu.fault(fault).await;
    (emu, dir)
}

#[tokio::test]
async fn a_graph_answer_slower_than_the_deadline_is_cut_off_there_with_a_retryable_deadline_error()
{
    // R-OPS-2: before, one slow answer ran for the whole request timeout (20 s) whatever the
    // Lambda deadline.
    let (emu, dir) = warmed_with_fault(json!({"method": "GET", "path": "/v1.0/users", "kind": "timeout-after-commit", "delayMs": 4000, "count": 5})).await;
    let bounded = dir.with_deadline(soon(Duration::from_secs(1)));
    let started = Instant::now();
    let error = bounded
        .find_user_by_upn(&emu.tenant(), &Email::parse(ADMIN).unwrap())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(error.is_deadline(), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(error.code(), "deadline");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1_600),
        "cut off at the deadline, not after the 4 s answer: {took:?}"
    );
    assert_eq!(
        emu.faults().await[0]["remaining"],
        4,
        "one request sent, not retried past the deadline"
    );
}

#[tokio::test]
async fn a_call_with_no_time_left_before_the_deadline_is_not_sent() {
    // R-OPS-2: a request that cannot finish is not started.
    let (emu, dir) = warmed_with_fault(
        json!({"method": "GET", "path": "/v1.0/users", "kind": "503", "count": 5}),
    )
    .await;
    let spent = dir.with_deadline(soon(MIN_ATTEMPT / 2));
    let error = spent
        .find_user_by_upn(&emu.tenant(), &Email::parse(ADMIN).unwrap())
        .await
        .unwrap_err();
    assert!(error.is_deadline(), "{error:?}");
    assert_eq!(
        emu.faults().await[0]["remaining"],
        5,
        "nothing reached Graph"
    );
}

#[tokio::test]
async fn a_create_cut_off_by_the_deadline_is_committed_in_graph_and_reported_as_a_deadline() {
    // R-BIND-12, graph-spec §7.3: the POST was sent, Graph committed it, its answer never came
    // in time. The error is `deadline` (retryable); the bind's "create sent" mark then makes the
    // next attempt look the UPN up instead of POSTing again.
    let (emu, dir) = warmed_with_fault(json!({"method": "POST", "path": "/v1.0/users", "kind": "timeout-after-commit", "delayMs": 4000})).await;
    let upn = format!("late.create@{MANAGED}");
    let user = NewM365User {
        display_name: "Late Create".into(),
        ..new_user("late.create")
    };
    let started = Instant::now();
    let error = dir
        .with_deadline(soon(Duration::from_secs(1)))
        .create_user(&emu.tenant(), &user)
        .await
        .unwrap_err();
    assert!(error.is_deadline(), "{error:?}");
    assert!(started.elapsed() < Duration::from_millis(1_600));
    assert_eq!(emu.accounts_with_upn(&upn), 1, "Graph committed the create");
    // Once the deadline is gone, the lookup finds the account created by the lost answer.
    let found = dir
        .find_user_by_upn(&emu.tenant(), &Email::parse(&upn).unwrap())
        .await
        .unwrap();
    assert!(found.is_some());
}

#[tokio::test]
async fn a_token_call_slower_than_the_deadline_is_cut_off_and_none_starts_past_it() {
    // R-OPS-2: connect and token-refresh bound the identity platform the same way.
    let emu = start().await;
    emu.fault(json!({"method": "POST", "path": "/organizations/oauth2/v2.0/token", "kind": "timeout-after-commit", "delayMs": 4000}))
        .await;
    let identity = GraphIdentity::new(emu.identity(&emu.client()));
    let refresh = |identity: GraphIdentity| async move {
        m365_engine::ports::IdentityPlatform::refresh(
            &identity,
            &SecretString::from("some-refresh-token".to_owned()),
            None,
        )
        .await
    };
    let started = Instant::now();
    let error = refresh(identity.with_deadline(soon(Duration::from_secs(1))))
        .await
        .unwrap_err();
    assert!(error.is_deadline(), "{error:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1_600),
        "{took:?}"
    );
    // Past the deadline nothing is sent: an identity base where nothing listens would otherwise
    // answer a connection error.
    let nowhere = GraphIdentity::new(
        m365_graph::GraphClient::builder()
            .identity_base("http://127.0.0.1:9")
            .build()
            .unwrap()
            .identity("app", SecretString::from("secret".to_owned())),
    );
    let error = refresh(nowhere.with_deadline(tokio::time::Instant::now()))
        .await
        .unwrap_err();
    assert!(error.is_deadline(), "{error:?}");
}

#[test]
fn a_deadline_error_is_retryable_and_a_cut_off_write_has_an_unknown_outcome() {
    // R-OPS-2, graph-spec §7.3
    let unsent = GraphError::Deadline { sent: false };
    let sent = GraphError::Deadline { sent: true };
    assert!(unsent.is_transient() && sent.is_transient());
    assert!(!unsent.outcome_unknown());
    assert!(sent.outcome_unknown());
    let engine = sent.into_engine(m365_engine::error::Entity::M365User, "u", None);
    assert!(engine.is_retryable() && engine.is_deadline());
}
