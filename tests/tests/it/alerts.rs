//! Admin alerts end to end on moto + the m365-emulator (R-OPS-1): an SNS topic on moto with an
//! SQS queue subscribed to it, the token-refresh function's production wiring publishing to it;
//! the tests read the alerts from the queue. A refused refresh token alerts
//! `reauthorization_required` exactly once over two runs; an OAuth client secret the identity
//! platform does not accept (AADSTS7000215, graph-spec §1.5) fails the invocation, records a
//! `tenant_configuration_error` event and alerts `configuration_error` once; once the right
//! secret works again the incident is resolved, and a recurrence alerts again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_aws::OAuthClientCredentials;
use m365_engine::model::{EventKind, PageRequest, TenantId};
use m365_engine::ports::{EventFilter, EventQuery, EventStore};
use m365_integration_tests::{APP_ID, REDIRECT, World, schedule_event};
use m365_lambda::{GraphApp, GraphConfig};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

/// A world whose access tokens live 10 minutes (due for refresh) and whose functions publish
/// admin alerts to a new topic on moto; returns it with the URL of a queue subscribed to it.
async fn alerting_world() -> Option<(World, String)> {
    let mut w = World::start().await?;
    let status = w
        .emulator
        .send(
            Method::PUT,
            "/_emulator/identity/settings",
            json!({"accessTokenLifetimeSeconds": 600}),
        )
        .await;
    assert!(status.is_success());
    let url = w.subscribe_admin_alerts().await;
    Some((w, url))
}

/// Every alert delivered to the subscribed queue so far (SNS envelopes opened), deleted.
async fn alerts(w: &World, url: &str) -> Vec<Value> {
    w.admin_alerts(url).await
}

fn of_kind<'a>(alerts: &'a [Value], kind: &str) -> Vec<&'a Value> {
    alerts.iter().filter(|a| a["kind"] == kind).collect()
}

/// The token-refresh wiring with another OAuth client secret than the one the emulator's app
/// registration holds (as if the secret stored in Secrets Manager were wrong or rotated away).
fn with_client_secret(w: &World, secret: &str) -> token_refresh::Deployed {
    let graph = GraphApp::with_credentials(
        &w.app,
        &GraphConfig {
            graph_base: Some(format!("{}/v1.0", w.emulator.base)),
            identity_base: Some(w.emulator.base.clone()),
            redirect_uri: Some(REDIRECT.to_owned()),
            ..GraphConfig::default()
        },
        OAuthClientCredentials {
            client_id: APP_ID.to_owned(),
            client_secret: SecretString::from(secret.to_owned()),
            redirect_uri: None,
        },
    )
    .unwrap();
    token_refresh::Deployed::from_app(&w.app, &graph)
}

async fn events_of(w: &World, tenant: &TenantId, kind: EventKind) -> usize {
    let page = w
        .app
        .events
        .query(&EventQuery {
            filter: EventFilter::Tenant(tenant.clone()),
            since: None,
            page: PageRequest::first(50),
        })
        .await
        .unwrap();
    page.items.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test]
async fn a_refused_refresh_token_reaches_the_topic_as_exactly_one_alert_over_two_runs() {
    // R-OPS-1, R-CONN-4 (AADSTS50173: the admin's password was reset)
    let Some((w, url)) = alerting_world().await else {
        return;
    };
    let tenant = w.connect_contoso("Contoso").await;
    w.reset_admin_password().await;
    let first = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(first.reauthorization_required, 1, "{first:?}");
    token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    let got = alerts(&w, &url).await;
    let reauth = of_kind(&got, "reauthorization_required");
    assert_eq!(reauth.len(), 1, "{got:?}");
    assert_eq!(reauth[0]["tenantId"], tenant.as_str());
    assert_eq!(reauth[0]["details"]["aadsts"], 50_173);
    assert!(
        reauth[0]["message"].as_str().unwrap().contains("Contoso"),
        "{}",
        reauth[0]
    );
    assert_eq!(got.len(), 1, "nothing else was alerted: {got:?}");
}

#[tokio::test]
async fn an_invalid_client_secret_fails_the_refresh_and_alerts_once_per_incident() {
    // R-OPS-1 (graph-spec §1.5: 401 invalid_client AADSTS7000215)
    let Some((w, url)) = alerting_world().await else {
        return;
    };
    let tenant = TenantId::parse(w.connect_contoso("Contoso").await).unwrap();
    let wrong = with_client_secret(&w, "not-the-registered-secret");
    for _ in 0..2 {
        let failed = token_refresh::handle(&wrong, schedule_event())
            .await
            .expect_err("the invocation fails loudly")
            .to_string();
        assert!(failed.contains("invalid_client AADSTS7000215"), "{failed}");
        assert!(
            !failed.contains("not-the-registered-secret"),
            "no secret in the error"
        );
    }
    assert_eq!(
        events_of(&w, &tenant, EventKind::TenantConfigurationError).await,
        1
    );
    let got = alerts(&w, &url).await;
    let config = of_kind(&got, "configuration_error");
    assert_eq!(config.len(), 1, "{got:?}");
    assert_eq!(config[0]["tenantId"], tenant.as_str());
    assert_eq!(config[0]["details"]["error"], "invalid_client");
    assert_eq!(config[0]["details"]["aadsts"], 7_000_215);
    assert!(
        !config[0].to_string().contains("not-the-registered-secret"),
        "no secret in the alert"
    );
    // The secret is fixed: the refresh works and the incident is over.
    let fixed = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(fixed.refreshed, 1, "{fixed:?}");
    // Due again (tokens live 10 minutes, under the 15-minute window), and the secret is wrong
    // again: a new incident, a new alert and event.
    token_refresh::handle(&wrong, schedule_event())
        .await
        .expect_err("fails again");
    let again = alerts(&w, &url).await;
    assert_eq!(of_kind(&again, "configuration_error").len(), 1, "{again:?}");
    assert_eq!(
        events_of(&w, &tenant, EventKind::TenantConfigurationError).await,
        2
    );
}
