//! `token_refresh::handle` driven with a real EventBridge schedule event on the engine's
//! in-memory `World`: a token nearing expiry is rotated and saved, a fresh one is left alone, a
//! refused refresh token marks the tenant `reauthorization_required` (R-CONN-4), and a throttled
//! token endpoint counts as `failed` for the next run to retry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::TimeDelta;
use lambda_runtime::{Context, LambdaEvent};
use m365_engine::Error;
use m365_engine::model::{EventKind, RequestToken, TenantStatus};
use m365_engine::ports::{TenantStore, TokenVault};
use m365_engine::testing::World;
use secrecy::ExposeSecret;
use serde_json::json;
use token_refresh::{Summary, handle};

/// The world's active tenant with tokens whose access token expires in `lifetime`.
async fn world(lifetime: TimeDelta) -> World {
    let w = World::new().await;
    let tokens = w.identity.issue_tokens(lifetime);
    w.vault
        .create(&w.tenant.id, &tokens, &RequestToken::generate())
        .await
        .unwrap();
    let mut tenant = w.tenants.get(&w.tenant.id).await.unwrap().unwrap();
    tenant.token_expires_at = Some(tokens.expires_at);
    let version = tenant.version;
    w.tenants.update(&tenant, version).await.unwrap();
    w
}

/// The schedule event EventBridge sends (its content is ignored; the run id is the request id).
fn schedule(run: &str) -> LambdaEvent<serde_json::Value> {
    let mut context = Context::default();
    context.request_id = run.to_owned();
    LambdaEvent::new(
        json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
        context,
    )
}

#[tokio::test]
async fn a_token_expiring_within_15_minutes_is_rotated_and_saved_before_use() {
    // R-CONN-4
    let w = world(TimeDelta::minutes(5)).await;
    let before = w.vault.get(&w.tenant.id).await.unwrap().unwrap();
    let summary = handle(&w, schedule("run-1")).await.unwrap();
    assert_eq!(
        summary,
        Summary {
            refreshed: 1,
            ..Summary::default()
        }
    );
    let after = w.vault.get(&w.tenant.id).await.unwrap().unwrap();
    assert_ne!(
        after.access_token.expose_secret(),
        before.access_token.expose_secret(),
        "the rotated token is in the vault"
    );
    assert!(after.expires_at > before.expires_at);
    assert_eq!(w.identity.refreshes(), 1);
    let tenant = w.tenants.get(&w.tenant.id).await.unwrap().unwrap();
    assert_eq!(tenant.token_expires_at, Some(after.expires_at));
}

#[tokio::test]
async fn a_token_with_more_than_15_minutes_left_is_not_refreshed() {
    // R-CONN-4 (refresh only what nears expiry)
    let w = world(TimeDelta::hours(1)).await;
    let summary = handle(&w, schedule("run-1")).await.unwrap();
    assert_eq!(summary, Summary::default());
    assert_eq!(w.identity.refreshes(), 0);
}

#[tokio::test]
async fn a_refused_refresh_token_marks_the_tenant_for_reauthorization_with_an_event() {
    // R-CONN-4 (AADSTS70008-family: an admin must reconnect)
    let w = world(TimeDelta::minutes(5)).await;
    w.identity
        .fail_next_call(Error::ReauthorizationRequired { aadsts: 700_082 });
    let summary = handle(&w, schedule("run-1")).await.unwrap();
    assert_eq!(
        summary,
        Summary {
            reauthorization_required: 1,
            ..Summary::default()
        }
    );
    let tenant = w.tenants.get(&w.tenant.id).await.unwrap().unwrap();
    assert_eq!(tenant.status, TenantStatus::ReauthorizationRequired);
    assert_eq!(w.count_events(EventKind::TenantReauthorizationRequired), 1);
    // The next run leaves the tenant alone.
    assert_eq!(
        handle(&w, schedule("run-2")).await.unwrap(),
        Summary::default()
    );
}

#[tokio::test]
async fn a_throttled_token_endpoint_changes_nothing_and_counts_as_failed() {
    // R-CONN-4, R-BIND-6 (the next scheduled run retries)
    let w = world(TimeDelta::minutes(5)).await;
    let before = w.vault.get(&w.tenant.id).await.unwrap().unwrap();
    w.identity.fail_next_call(Error::Throttled {
        retry_after: None,
        graph_request_id: None,
    });
    let summary = handle(&w, schedule("run-1")).await.unwrap();
    assert_eq!(
        summary,
        Summary {
            failed: 1,
            ..Summary::default()
        }
    );
    let after = w.vault.get(&w.tenant.id).await.unwrap().unwrap();
    assert_eq!(
        after.access_token.expose_secret(),
        before.access_token.expose_secret()
    );
    let tenant = w.tenants.get(&w.tenant.id).await.unwrap().unwrap();
    assert_eq!(tenant.status, TenantStatus::Active);
    // The next run refreshes it.
    assert_eq!(handle(&w, schedule("run-2")).await.unwrap().refreshed, 1);
}

#[tokio::test]
async fn a_refused_oauth_client_fails_the_invocation_and_is_recorded_and_alerted_once() {
    // R-OPS-1 (graph-spec §1.5: invalid_client AADSTS7000215, a wrong client secret)
    let w = world(TimeDelta::minutes(5)).await;
    for run in ["run-1", "run-2"] {
        w.identity.fail_next_call(Error::ClientConfiguration {
            error: "invalid_client".to_owned(),
            aadsts: Some(7_000_215),
        });
        let failed = handle(&w, schedule(run)).await.unwrap_err().to_string();
        assert!(failed.contains("invalid_client AADSTS7000215"), "{failed}");
    }
    assert_eq!(w.count_events(EventKind::TenantConfigurationError), 1);
    let alerts = w
        .alerts
        .of(m365_engine::model::AlertKind::ConfigurationError);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let tenant = w.tenants.get(&w.tenant.id).await.unwrap().unwrap();
    assert_eq!(tenant.status, TenantStatus::Active);
    // Fixed: the next run succeeds.
    let summary = handle(&w, schedule("run-3")).await.unwrap();
    assert_eq!(summary.refreshed, 1);
}

#[tokio::test]
async fn a_refused_refresh_token_alerts_reauthorization_once_over_two_runs() {
    // R-OPS-1, R-CONN-4
    let w = world(TimeDelta::minutes(5)).await;
    w.identity
        .fail_next_call(Error::ReauthorizationRequired { aadsts: 700_082 });
    handle(&w, schedule("run-1")).await.unwrap();
    handle(&w, schedule("run-2")).await.unwrap();
    let alerts = w
        .alerts
        .of(m365_engine::model::AlertKind::ReauthorizationRequired);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
}
