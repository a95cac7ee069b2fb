//! The `connect` function end to end on moto + the m365-emulator (issue 4 "Done when"): a mixed
//! tenant connects with only its managed domains routable, an all-federated tenant is refused, a
//! domain already claimed refuses the whole connection, a tampered `state` and a wrong PKCE
//! verifier are refused, deauthorization leaves every M365 account enabled and every binding
//! `unselected`, and no token, code or state ever reaches a log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::error::Error;
use m365_engine::model::{
    Binding, BindingState, DomainName, Email, EventKind, M365ObjectId, PageRequest, TenantId,
    TenantStatus, UserId,
};
use m365_engine::policy::routing::{RoutingError, resolve_tenant};
use m365_engine::ports::{
    BindingStore, EventFilter, EventQuery, EventStore, Expect, TenantStore, TokenVault,
};
use m365_integration_tests::{
    APP_SECRET, CONTOSO, CONTOSO_ADMIN, CONTOSO_USERS, NORTHWIND_ADMIN, World, capture_logs,
    schedule_event,
};
use secrecy::ExposeSecret;
use serde_json::json;

fn tid(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn domain(s: &str) -> DomainName {
    DomainName::parse(s).unwrap()
}

#[tokio::test]
async fn a_mixed_tenant_connects_with_only_its_managed_domains_routable() {
    // R-CONN-1, R-CONN-2, R-CONN-3
    let Some(w) = World::start().await else {
        return;
    };
    let (tenant, params) = w.start_and_sign_in("Contoso", CONTOSO_ADMIN).await;
    let (status, pending) = w
        .call("GET", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(
        (status, pending["status"].as_str()),
        (200, Some("pending_consent"))
    );
    assert!(pending["m365TenantId"].is_null(), "unknown before consent");

    let (status, body) = w.callback(&params).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    // Microsoft's tenant id, read from Graph's `GET /organization` at the callback.
    assert_eq!(body["m365TenantId"], CONTOSO, "{body}");
    let domains: Vec<(String, bool)> = body["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["routable"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        domains.contains(&("contoso.com".into(), true)),
        "{domains:?}"
    );
    assert!(
        domains.contains(&("sso.contoso.com".into(), false)),
        "{domains:?}"
    );
    assert!(
        !domains.iter().any(|(d, _)| d == "pending.contoso.net"),
        "unverified domains are not the tenant's"
    );

    let (status, shown) = w
        .call("GET", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(shown["status"], "active");
    assert!(shown["tokenExpiresAt"].is_string());
    assert!(shown.get("accessToken").is_none() && !shown.to_string().contains("refresh"));
    let (status, listed) = w.call("GET", "/tenants", &[("limit", "100")], None).await;
    assert_eq!(status, 200);
    assert!(
        listed["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tenantId"] == tenant.as_str())
    );

    let id = tid(&tenant);
    assert!(
        w.app.token_vault.get(&id).await.unwrap().is_some(),
        "tokens in Secrets Manager"
    );
    let stored = w.app.tenants.get(&id).await.unwrap().unwrap();
    assert_eq!(
        stored.m365_tenant_id.as_ref().map(|m| m.as_str()),
        Some(CONTOSO),
        "stored in DynamoDB"
    );
    let routed = resolve_tenant(&w.app.tenants, &Email::parse("adele@contoso.com").unwrap())
        .await
        .unwrap();
    assert_eq!(routed.id, id);
    let federated = resolve_tenant(&w.app.tenants, &Email::parse("x@sso.contoso.com").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(
        federated,
        Error::Routing(RoutingError::FederatedDomain { .. })
    ));
    let events = w
        .app
        .events
        .query(&EventQuery {
            filter: EventFilter::Tenant(id),
            since: None,
            page: PageRequest::first(10),
        })
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].kind, EventKind::TenantConnected);
}

#[tokio::test]
async fn an_all_federated_tenant_is_refused_with_the_godaddy_explanation() {
    // R-CONN-3
    let Some(w) = World::start().await else {
        return;
    };
    let (tenant, params) = w.start_and_sign_in("Northwind", NORTHWIND_ADMIN).await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "federated_tenant_unsupported");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("GoDaddy"),
        "{body}"
    );
    let id = tid(&tenant);
    assert!(
        w.app.token_vault.get(&id).await.unwrap().is_none(),
        "no tokens kept"
    );
    assert_eq!(
        w.app
            .tenants
            .tenant_for_domain(&domain("northwind.com"))
            .await
            .unwrap(),
        None
    );
    let (_, shown) = w
        .call("GET", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(shown["status"], "pending_consent");
}

#[tokio::test]
async fn a_domain_already_claimed_refuses_the_whole_connection() {
    // R-CONN-2
    let Some(w) = World::start().await else {
        return;
    };
    let first = w.connect_contoso("Contoso").await;
    let (second, params) = w.start_and_sign_in("Contoso again", CONTOSO_ADMIN).await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "domain_claimed");
    assert_eq!(
        w.app
            .tenants
            .tenant_for_domain(&domain("contoso.com"))
            .await
            .unwrap(),
        Some(tid(&first))
    );
    assert!(
        w.app
            .token_vault
            .get(&tid(&second))
            .await
            .unwrap()
            .is_none()
    );
    let (_, shown) = w
        .call("GET", &format!("/tenants/{second}"), &[], None)
        .await;
    assert_eq!(shown["status"], "pending_consent");
}

#[tokio::test]
async fn a_tampered_state_and_a_wrong_pkce_verifier_are_refused() {
    // R-SAFE-3
    let Some(w) = World::start().await else {
        return;
    };
    let (a, params_a) = w.start_and_sign_in("A", CONTOSO_ADMIN).await;
    let (_, params_b) = w.start_and_sign_in("B", CONTOSO_ADMIN).await;
    let mut tampered = params_a.clone();
    tampered.insert("state".into(), format!("{}x", params_a["state"]));
    let (status, body) = w.callback(&tampered).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state"))
    );
    // B's code presented in A's sign-in: A's verifier does not match B's challenge.
    let mut injected = params_a.clone();
    injected.insert("code".into(), params_b["code"].clone());
    let (status, body) = w.callback(&injected).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert!(w.app.token_vault.get(&tid(&a)).await.unwrap().is_none());
    // A consumed state cannot be replayed.
    let (status, _) = w.callback(&params_a).await;
    assert_eq!(status, 400);
    let (status, body) = w.call("GET", "/oauth/callback", &[], None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state"))
    );
    let (status, body) = w
        .call(
            "GET",
            "/oauth/callback",
            &[("error", "access_denied"), ("state", "s")],
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("consent_denied"))
    );
}

#[tokio::test]
async fn deauthorize_leaves_every_m365_account_enabled_and_every_binding_unselected() {
    // R-CONN-5
    let Some(w) = World::start().await else {
        return;
    };
    let tenant = w.connect_contoso("Contoso").await;
    let id = tid(&tenant);
    let state = w
        .emulator
        .get(&format!("/_emulator/tenants/{CONTOSO}"))
        .await;
    for (i, upn) in CONTOSO_USERS.iter().enumerate() {
        let object = state["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["properties"]["userPrincipalName"].as_str() == Some(upn))
            .unwrap()["properties"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut b = Binding::pending(UserId::parse(format!("user-{i}")).unwrap(), id.clone(), "x");
        b.state = BindingState::Provisioned;
        b.pending_reason = None;
        b.m365_object_id = Some(M365ObjectId::parse(object).unwrap());
        w.app.bindings.put(&b, Expect::Absent).await.unwrap();
    }
    let before = w.emulator.requests(CONTOSO).await;
    let (status, body) = w
        .call("DELETE", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["unselectedBindings"], 3);
    assert_eq!(body["tenant"]["status"], "deauthorized");
    let after = w.emulator.requests(CONTOSO).await;
    assert_eq!(
        before["graph"], after["graph"],
        "no Graph call: {before} {after}"
    );
    let enabled = w.emulator.accounts_enabled(CONTOSO).await;
    for upn in CONTOSO_USERS {
        assert_eq!(enabled.get(upn), Some(&true), "{upn} stays enabled");
    }
    for i in 0..CONTOSO_USERS.len() {
        let b = w
            .app
            .bindings
            .get(&UserId::parse(format!("user-{i}")).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(b.state, BindingState::Unselected);
    }
    assert!(
        w.app.token_vault.get(&id).await.unwrap().is_none(),
        "tokens deleted"
    );
    let t = w.app.tenants.get(&id).await.unwrap().unwrap();
    assert_eq!(t.status, TenantStatus::Deauthorized);
    assert_eq!(
        w.app
            .tenants
            .tenant_for_domain(&domain("contoso.com"))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn no_token_code_state_or_client_secret_appears_in_any_log_line() {
    // R-SAFE-2
    let logs = capture_logs();
    let Some(w) = World::start().await else {
        return;
    };
    w.emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/identity/settings",
            json!({"accessTokenLifetimeSeconds": 600}),
        )
        .await;
    let (tenant, params) = w.start_and_sign_in("Contoso", CONTOSO_ADMIN).await;
    let (status, _) = w.callback(&params).await;
    assert_eq!(status, 200);
    let id = tid(&tenant);
    let first = w.app.token_vault.get(&id).await.unwrap().unwrap();
    let summary = token_refresh::handle(&w.token_refresh(), schedule_event())
        .await
        .unwrap();
    assert_eq!(summary.refreshed, 1);
    let second = w.app.token_vault.get(&id).await.unwrap().unwrap();
    let (status, _) = w
        .call("DELETE", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(status, 200);

    let text = logs.text();
    assert!(
        text.contains("tenant connected"),
        "the capture works: {text}"
    );
    assert!(
        text.contains("tenant tokens refreshed"),
        "the capture works"
    );
    let secrets = [
        params["code"].as_str(),
        params["state"].as_str(),
        first.access_token.expose_secret(),
        first.refresh_token.expose_secret(),
        second.access_token.expose_secret(),
        second.refresh_token.expose_secret(),
        APP_SECRET,
    ];
    for secret in secrets {
        assert!(secret.len() >= 8);
        if let Some(at) = text.find(secret) {
            let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            let line = &text[line_start..line_end];
            let shown: String = line.replace(secret, "<SECRET>").chars().take(600).collect();
            panic!("a secret reached the logs: {shown}");
        }
    }
}
