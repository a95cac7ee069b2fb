//! The `token-refresh` function end to end on moto + the m365-emulator (issue 4 "Done when"):
//! rotation saved before use, each `invalid_grant` code leading to `reauthorization_required`,
//! and concurrent refreshes of one tenant making exactly one token call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::model::{EventKind, PageRequest, TenantId, TenantStatus};
use m365_engine::ports::{Directory, EventFilter, EventQuery, EventStore, TenantStore, TokenVault};
use m365_integration_tests::{APP_ID, CONTOSO, CONTOSO_ADMIN, World, schedule_event};
use reqwest::Method;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// A world whose access tokens live 10 minutes (so they are due: < 15 minutes left).
async fn short_lived() -> Option<World> {
    let w = World::start().await?;
    let status = w
        .emulator
        .send(
            Method::PUT,
            "/_emulator/identity/settings",
            json!({"accessTokenLifetimeSeconds": 600}),
        )
        .await;
    assert!(status.is_success());
    Some(w)
}

fn identity_calls(requests: &Value) -> u64 {
    requests["identity"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_token_expiring_within_15_minutes_is_rotated_and_saved_before_use() {
    // R-CONN-4
    let Some(w) = short_lived().await else { return };
    let tenant = TenantId::parse(w.connect_contoso("Contoso").await).unwrap();
    let old = w.app.token_vault.get(&tenant).await.unwrap().unwrap();
    let summary = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(summary.refreshed, 1, "{summary:?}");
    let new = w.app.token_vault.get(&tenant).await.unwrap().unwrap();
    assert_ne!(
        new.refresh_token.expose_secret(),
        old.refresh_token.expose_secret(),
        "the rotated refresh token is the current secret version"
    );
    assert!(new.expires_at > old.expires_at);
    let previous = w
        .app
        .token_vault
        .get_previous(&tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        previous.refresh_token.expose_secret(),
        old.refresh_token.expose_secret()
    );
    let stored = w.app.tenants.get(&tenant).await.unwrap().unwrap();
    assert_eq!(stored.token_expires_at, Some(new.expires_at));
    // The saved tokens are the ones Graph gets.
    assert!(
        !w.graph
            .directory
            .verified_domains(&tenant)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn tokens_with_more_than_15_minutes_left_are_not_refreshed() {
    // R-CONN-4
    let Some(w) = World::start().await else {
        return;
    };
    w.connect_contoso("Contoso").await;
    let before = identity_calls(&w.emulator.requests(CONTOSO).await);
    let summary = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(summary, token_refresh::Summary::default());
    assert_eq!(identity_calls(&w.emulator.requests(CONTOSO).await), before);
}

#[tokio::test]
async fn concurrent_refreshes_of_one_tenant_make_exactly_one_token_call() {
    // R-CONN-4 (single flight through the DynamoDB lease)
    let Some(w) = short_lived().await else { return };
    w.connect_contoso("Contoso").await;
    let before = identity_calls(&w.emulator.requests(CONTOSO).await);
    let (a, b) = (w.token_refresh(), w.token_refresh());
    let (ra, rb) = tokio::join!(
        token_refresh::handle(&a, schedule_event()),
        token_refresh::handle(&b, schedule_event())
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.refreshed + rb.refreshed, 1, "{ra:?} {rb:?}");
    assert_eq!(
        ra.busy + rb.busy + ra.not_due + rb.not_due,
        1,
        "{ra:?} {rb:?}"
    );
    assert_eq!(
        identity_calls(&w.emulator.requests(CONTOSO).await),
        before + 1,
        "exactly one token call"
    );
}

/// Connects Contoso, breaks the grant with `breakage`, runs a refresh and checks the outcome.
async fn invalid_grant_case(aadsts: u32, breakage: impl AsyncFnOnce(&World)) {
    let Some(w) = short_lived().await else { return };
    let tenant = TenantId::parse(w.connect_contoso("Contoso").await).unwrap();
    breakage(&w).await;
    let summary = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(
        summary.reauthorization_required, 1,
        "AADSTS{aadsts}: {summary:?}"
    );
    let stored = w.app.tenants.get(&tenant).await.unwrap().unwrap();
    assert_eq!(stored.status, TenantStatus::ReauthorizationRequired);
    let events = w
        .app
        .events
        .query(&EventQuery {
            filter: EventFilter::Tenant(tenant.clone()),
            since: None,
            page: PageRequest::first(10),
        })
        .await
        .unwrap();
    let event = events
        .items
        .iter()
        .find(|e| e.kind == EventKind::TenantReauthorizationRequired)
        .expect("a reauthorization event");
    assert_eq!(
        event.reason.as_deref(),
        Some(format!("AADSTS{aadsts}").as_str())
    );
    // Paused, not retried in a loop: the next run leaves the tenant alone.
    let again = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(again, token_refresh::Summary::default());
    let (_, shown) = w
        .call("GET", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(shown["status"], "reauthorization_required");
}

#[tokio::test]
async fn a_revoked_grant_after_an_admin_password_reset_requires_reauthorization() {
    // R-CONN-4 (AADSTS50173)
    invalid_grant_case(50_173, async |w: &World| {
        w.reset_admin_password().await;
    })
    .await;
}

#[tokio::test]
async fn a_withdrawn_consent_requires_reauthorization() {
    // R-CONN-4 (AADSTS65001)
    invalid_grant_case(65_001, async |w: &World| {
        let status = w
            .emulator
            .send(
                Method::DELETE,
                &format!("/_emulator/identity/tenants/{CONTOSO}/apps/{APP_ID}/consent"),
                json!({}),
            )
            .await;
        assert!(status.is_success());
    })
    .await;
}

#[tokio::test]
async fn an_idle_expired_refresh_token_requires_reauthorization() {
    // R-CONN-4 (AADSTS700082)
    invalid_grant_case(700_082, async |w: &World| {
        let status = w
            .emulator
            .send(
                Method::PUT,
                "/_emulator/identity/settings",
                json!({"refreshIdleSeconds": 60}),
            )
            .await;
        assert!(status.is_success());
        let status = w
            .emulator
            .send(
                Method::POST,
                "/_emulator/clock/advance",
                json!({"seconds": 120}),
            )
            .await;
        assert!(status.is_success());
    })
    .await;
}

#[tokio::test]
async fn a_disabled_admin_account_requires_reauthorization() {
    // R-CONN-4 (AADSTS50057)
    invalid_grant_case(50_057, async |w: &World| {
        let status = w
            .emulator
            .send(
                Method::PATCH,
                &format!("/_emulator/tenants/{CONTOSO}/users/{}", CONTOSO_ADMIN.0),
                json!({"accountEnabled": false}),
            )
            .await;
        assert!(status.is_success());
    })
    .await;
}
