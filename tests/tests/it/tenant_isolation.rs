//! Issue 11's story end to end on moto + the m365-emulator (R-CONN-7): Contoso is connected, a
//! reconnect is started, and on the consent page the admin of ANOTHER Microsoft tenant signs in.
//! Before, the callback stored that tenant's tokens for Contoso; now:
//!
//! - through a reconnect link issued before Contoso was pinned (at `organizations`, as every link
//!   was before this change), the consent reaches the callback and is refused with 409
//!   `tenant_mismatch`: Contoso's tokens, record, domain claims and events are exactly as they
//!   were, and nothing of the other tenant is stored;
//! - through a reconnect link issued after the pin (`/{contoso}/oauth2/v2.0/authorize`), the
//!   platform itself refuses the other tenant's admin (AADSTS50020, no redirect at all), and a link
//!   whose authority was edited back to `organizations` yields a code that Contoso's authority
//!   refuses to redeem (AADSTS700005 → 400 `invalid_grant`);
//! - afterwards Contoso's old tokens still work: a bind creates the account in Contoso, and the
//!   import lists Contoso's users and nobody of the other tenant.
//!
//! The other tenant is Fabrikam, a managed tenant, so that the refusal is not also a federated one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::HashMap;

use m365_engine::model::{DomainName, EventKind, PageRequest, Tenant, TenantId};
use m365_engine::ports::{
    EventFilter, EventQuery, EventStore, SystemClock, TenantStore, TokenVault,
};
use m365_integration_tests::{
    CONTOSO, CONTOSO_ADMIN, CONTOSO_USERS, FABRIKAM, FABRIKAM_ADMIN, FABRIKAM_USERS, World,
    api_request,
};
use m365_lambda::provision::Deployed;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// What a refused consent must leave exactly as it was.
#[derive(Debug, PartialEq)]
struct Contoso {
    record: Tenant,
    access_token: String,
    refresh_token: String,
    fabrikam_claimed: Option<TenantId>,
    connected_events: usize,
}

async fn contoso(w: &World, id: &TenantId) -> Contoso {
    let tokens = w.app.token_vault.get(id).await.unwrap().expect("tokens");
    let events = w
        .app
        .events
        .query(&EventQuery {
            filter: EventFilter::Tenant(id.clone()),
            since: None,
            page: PageRequest::first(50),
        })
        .await
        .unwrap();
    Contoso {
        record: w.app.tenants.get(id).await.unwrap().unwrap(),
        access_token: tokens.access_token.expose_secret().to_owned(),
        refresh_token: tokens.refresh_token.expose_secret().to_owned(),
        fabrikam_claimed: w
            .app
            .tenants
            .tenant_for_domain(&DomainName::parse("fabrikam.com").unwrap())
            .await
            .unwrap(),
        connected_events: events
            .items
            .iter()
            .filter(|e| e.kind == EventKind::TenantConnected)
            .count(),
    }
}

async fn post_tenants(w: &World, body: Value) -> Value {
    let (status, started) = w.call("POST", "/tenants", &[], Some(body)).await;
    assert!(status == 200 || status == 201, "{status} {started}");
    started
}

async fn provision(
    deps: &Deployed<SystemClock>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let request = api_request(method, path, &[], body);
    let response = if path.ends_with("/binding") {
        bind::handle(deps, request).await
    } else {
        directory::handle(deps, request).await
    }
    .unwrap();
    let status = response.status().as_u16();
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    (status, body)
}

/// UPNs of the active users of an emulator tenant.
async fn m365_upns(w: &World, tenant: &str) -> Vec<String> {
    let t = w
        .emulator
        .get(&format!("/_emulator/tenants/{tenant}"))
        .await;
    t["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["deletedAt"].is_null())
        .filter_map(|u| u["properties"]["userPrincipalName"].as_str())
        .map(str::to_lowercase)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_signed_in_as_another_tenants_admin_is_refused_and_contoso_keeps_working() {
    // R-CONN-7 (issue 11 "Done when": 409 tenant_mismatch, the old tokens still in the vault and
    // still working, nothing of the other tenant readable)
    let Some(mut w) = World::start().await else {
        return;
    };
    w.add_provisioning_resources("isolation").await;

    // Contoso is connected; a second sign-in link of it was handed out before the first consent
    // completed, so it still names `organizations`.
    let started = post_tenants(&w, json!({"name": "Contoso"})).await;
    let id = TenantId::parse(started["tenantId"].as_str().unwrap()).unwrap();
    let early_reconnect = post_tenants(&w, json!({"tenantId": id.to_string()})).await;
    let early_url = early_reconnect["authorizeUrl"].as_str().unwrap().to_owned();
    assert!(early_url.contains("/organizations/oauth2/v2.0/authorize"));
    let params = w
        .emulator
        .sign_in(started["authorizeUrl"].as_str().unwrap(), CONTOSO_ADMIN)
        .await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["m365TenantId"], CONTOSO);
    let before = contoso(&w, &id).await;
    assert_eq!(before.connected_events, 1);

    // 1. The reconnect page, signed in as Fabrikam's admin: the callback refuses the consent.
    let params = w.emulator.sign_in(&early_url, FABRIKAM_ADMIN).await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "tenant_mismatch");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(CONTOSO) && message.contains(FABRIKAM),
        "{message}"
    );
    assert_eq!(
        contoso(&w, &id).await,
        before,
        "tokens, status, domains, pin, version, claims and events exactly as they were"
    );

    // 2. A reconnect started now is pinned: Fabrikam's admin cannot even sign in on its page.
    let pinned = post_tenants(&w, json!({"tenantId": id.to_string()})).await;
    let pinned_url = pinned["authorizeUrl"].as_str().unwrap().to_owned();
    assert!(
        pinned_url.contains(&format!("/{CONTOSO}/oauth2/v2.0/authorize")),
        "{pinned_url}"
    );
    let page = w.emulator.submit_sign_in(&pinned_url, FABRIKAM_ADMIN).await;
    assert_eq!(page.status(), reqwest::StatusCode::OK, "no redirect");
    assert_eq!(page.headers()["x-ms-ests-error"], "50020");
    // ... and with the authority edited back to `organizations`, the code it yields is redeemed at
    // Contoso's authority, which refuses it (AADSTS700005).
    let edited = pinned_url.replace(&format!("/{CONTOSO}/oauth2/"), "/organizations/oauth2/");
    let params: HashMap<String, String> = w.emulator.sign_in(&edited, FABRIKAM_ADMIN).await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(contoso(&w, &id).await, before);

    // 3. Contoso's stored tokens still work, in Contoso: a new employee is bound (created there).
    let deps = Deployed::with_clock(&w.app, &w.graph_app(), SystemClock);
    let (status, body) = provision(
        &deps,
        "PUT",
        "/users/iris",
        Some(json!({"email": "iris@contoso.com", "displayName": "Iris"})),
    )
    .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = provision(
        &deps,
        "PUT",
        "/users/iris/binding",
        Some(json!({"welcome": false})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned", "{body}");
    assert_eq!(body["binding"]["tenantId"], id.to_string());
    assert!(
        m365_upns(&w, CONTOSO)
            .await
            .contains(&"iris@contoso.com".to_owned())
    );
    assert!(
        !m365_upns(&w, FABRIKAM)
            .await
            .contains(&"iris@contoso.com".to_owned())
    );

    // 4. Nothing of Fabrikam is readable through Contoso: the import lists Contoso's users only.
    let import = Deployed::from_app(&w.app, &w.graph);
    let response = import_page::handle(
        &import,
        api_request(
            "GET",
            &format!("/tenants/{id}/import"),
            &[("limit", "100")],
            None,
        ),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let page: Value = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    let listed: Vec<String> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userPrincipalName"].as_str().unwrap().to_lowercase())
        .collect();
    for upn in CONTOSO_USERS {
        assert!(listed.contains(&upn.to_owned()), "{upn} in {listed:?}");
    }
    for upn in FABRIKAM_USERS.iter().chain([&FABRIKAM_ADMIN.0]) {
        assert!(!listed.contains(&(*upn).to_owned()), "{upn} in {listed:?}");
    }
    assert!(listed.iter().all(|u| !u.contains("fabrikam")), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_deauthorization_a_late_refresh_and_an_old_sign_in_link_bring_nothing_back() {
    // R-CONN-8 on Secrets Manager (moto), steps forced in order: a refresh grant answered, the
    // tenant is deauthorized, then the refresh saves; a sign-in link from before is completed.
    let Some(w) = World::start().await else {
        return;
    };
    let tenant = w.connect_contoso("Contoso").await;
    let id = TenantId::parse(&tenant).unwrap();
    let old_link = post_tenants(&w, json!({"tenantId": tenant})).await;
    let tokens = w.app.token_vault.get(&id).await.unwrap().unwrap();
    let contoso = m365_engine::model::M365TenantId::parse(CONTOSO).unwrap();
    // The refresh grant of an in-flight refresh has answered ...
    let rotated = m365_engine::ports::IdentityPlatform::refresh(
        &w.graph.identity,
        &tokens.refresh_token,
        Some(&contoso),
    )
    .await
    .unwrap();
    // ... the admin deauthorizes ...
    let (status, body) = w
        .call("DELETE", &format!("/tenants/{tenant}"), &[], None)
        .await;
    assert_eq!(status, 200, "{body}");
    // ... and the refresh saves the rotated tokens: refused, nothing re-created.
    let saved = w
        .app
        .token_vault
        .update(&id, &rotated, &m365_engine::model::RequestToken::generate())
        .await;
    assert!(
        matches!(saved, Err(m365_engine::Error::NotFound { .. })),
        "{:?}",
        saved
    );
    assert!(w.app.token_vault.get(&id).await.unwrap().is_none());
    // The on-demand refresh of a Graph call (after a 401) finds nothing to refresh either.
    let refused = secrecy::SecretString::from("a-token-graph-refused".to_owned());
    assert!(
        m365_graph::TokenProvider::refresh_access_token(w.graph.directory.tokens(), &id, &refused)
            .await
            .is_err()
    );
    assert!(w.app.token_vault.get(&id).await.unwrap().is_none());
    // The scheduled refresh leaves the deauthorized tenant alone.
    let summary =
        token_refresh::handle(&w.token_refresh(), m365_integration_tests::schedule_event())
            .await
            .unwrap();
    assert_eq!(summary.refreshed, 0);
    assert_eq!(
        w.app.tenants.get(&id).await.unwrap().unwrap().status,
        m365_engine::model::TenantStatus::Deauthorized
    );

    // The link handed out before the deauthorization no longer works, even for Contoso's admin.
    let params = w
        .emulator
        .sign_in(old_link["authorizeUrl"].as_str().unwrap(), CONTOSO_ADMIN)
        .await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_state")),
        "{body}"
    );
    assert!(w.app.token_vault.get(&id).await.unwrap().is_none());
    // Final until the next consent: a new link connects again.
    let fresh = post_tenants(&w, json!({"tenantId": tenant})).await;
    let params = w
        .emulator
        .sign_in(fresh["authorizeUrl"].as_str().unwrap(), CONTOSO_ADMIN)
        .await;
    let (status, body) = w.callback(&params).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert!(w.app.token_vault.get(&id).await.unwrap().is_some());
}
