//! `connect::handle` driven with real API Gateway v2 event JSON on the engine's in-memory fakes:
//! routing, bad input answered with a 4xx and a machine-readable code (R-SAFE-1), and the whole
//! start → callback → list → deauthorize round trip (R-CONN-1, R-CONN-5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use connect::handle;
use m365_engine::model::{DomainKind, DomainName, TenantId, VerifiedDomain};
use m365_engine::testing::World;
use m365_engine::usecase::RetryPolicy;
use m365_lambda::testing::{api_event as event, status_and_json};
use serde_json::{Value, json};

type Fakes = World;

/// Every fake empty: no tenant connected yet.
fn fakes() -> Fakes {
    World::bare(RetryPolicy::default(), chrono::TimeDelta::zero())
}

async fn call(f: &Fakes, request: lambda_http::Request) -> (u16, Value) {
    status_and_json(&handle(f, request).await.unwrap())
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_code_and_nothing_is_written() {
    // R-SAFE-1
    let f = fakes();
    for (request, status, code) in [
        (
            event("POST", "/tenants", &[], Some("{not json")),
            400,
            "invalid_json",
        ),
        (
            event("POST", "/tenants", &[], Some(r#"{"name":"A","extra":1}"#)),
            400,
            "invalid_json",
        ),
        (
            event("POST", "/tenants", &[], Some(r#"{"name":"  "}"#)),
            400,
            "invalid_field",
        ),
        (
            event("POST", "/tenants", &[], Some("{}")),
            400,
            "invalid_field",
        ),
        // R-CONN-7: `expectedDomain` must be a domain, and only for a new tenant.
        (
            event(
                "POST",
                "/tenants",
                &[],
                Some(r#"{"name":"A","expectedDomain":"not a domain"}"#),
            ),
            400,
            "invalid_domain",
        ),
        (
            event(
                "POST",
                "/tenants",
                &[],
                Some(r#"{"name":"A","expectedDomain":""}"#),
            ),
            400,
            "invalid_domain",
        ),
        (
            event(
                "POST",
                "/tenants",
                &[],
                Some(r#"{"name":"A","expectedDomain":5}"#),
            ),
            400,
            "invalid_json",
        ),
        (
            event(
                "POST",
                "/tenants",
                &[],
                Some(&format!(
                    r#"{{"tenantId":"{}","expectedDomain":"contoso.com"}}"#,
                    TenantId::generate()
                )),
            ),
            400,
            "invalid_field",
        ),
        (
            event("GET", "/tenants/not-a-guid", &[], None),
            400,
            "invalid_id",
        ),
        (
            event(
                "GET",
                &format!("/tenants/{}", TenantId::generate()),
                &[],
                None,
            ),
            404,
            "not_found",
        ),
        (
            event(
                "DELETE",
                &format!("/tenants/{}", TenantId::generate()),
                &[],
                None,
            ),
            404,
            "not_found",
        ),
        (
            event("GET", "/tenants", &[("limit", "0")], None),
            400,
            "invalid_field",
        ),
        (
            event("GET", "/oauth/callback", &[("state", "s")], None),
            400,
            "invalid_field",
        ),
        (
            event(
                "GET",
                "/oauth/callback",
                &[("code", "c"), ("state", "s")],
                None,
            ),
            400,
            "invalid_state",
        ),
        (event("PUT", "/tenants", &[], None), 404, "route_not_found"),
    ] {
        let (got, body) = call(&f, request).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert!(f.consents.is_empty());
    assert_eq!(f.identity.exchanges(), 0);
    let (_, list) = call(&f, event("GET", "/tenants", &[], None)).await;
    assert_eq!(list["tenants"], json!([]), "no tenant was created");
}

fn managed(name: &str) -> VerifiedDomain {
    VerifiedDomain {
        name: DomainName::parse(name).unwrap(),
        kind: DomainKind::Managed,
    }
}

/// The admin of the fake directory's tenant `home` consents on the sign-in page of `url`; the
/// callback's answer.
async fn consent_as(f: &Fakes, url: &str, home: &TenantId) -> (u16, Value) {
    let state = url.split("state=").nth(1).unwrap().to_owned();
    let code = f.identity.consent_as(&state, home).unwrap();
    let code = secrecy::ExposeSecret::expose_secret(&code).to_owned();
    call(
        f,
        event(
            "GET",
            "/oauth/callback",
            &[("code", &code), ("state", &state)],
            None,
        ),
    )
    .await
}

#[tokio::test]
async fn a_consent_from_the_wrong_microsoft_tenant_is_a_409_tenant_mismatch_and_stores_nothing() {
    // R-CONN-7 (expectedDomain on the first consent, the pin on a reconnect)
    let f = fakes();
    let (status, started) = call(
        &f,
        event(
            "POST",
            "/tenants",
            &[],
            Some(r#"{"name":"Contoso","expectedDomain":"contoso.com"}"#),
        ),
    )
    .await;
    assert_eq!(status, 201, "{started}");
    let tenant = TenantId::parse(started["tenantId"].as_str().unwrap()).unwrap();
    f.directory
        .add_tenant(&tenant, vec![managed("contoso.com")]);
    let fabrikam = TenantId::generate();
    f.directory
        .add_tenant(&fabrikam, vec![managed("fabrikam.com")]);
    let url = started["authorizeUrl"].as_str().unwrap().to_owned();
    let (status, body) = consent_as(&f, &url, &fabrikam).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("tenant_mismatch")),
        "{body}"
    );
    assert_eq!(f.vault.versions(&tenant), 0);
    let (_, shown) = call(&f, event("GET", &format!("/tenants/{tenant}"), &[], None)).await;
    assert_eq!(shown["status"], "pending_consent");

    let reconnect = format!(r#"{{"tenantId":"{tenant}"}}"#);
    let (_, again) = call(&f, event("POST", "/tenants", &[], Some(&reconnect))).await;
    let (status, connected) =
        consent_as(&f, again["authorizeUrl"].as_str().unwrap(), &tenant).await;
    assert_eq!(status, 200, "{connected}");
    let (_, again) = call(&f, event("POST", "/tenants", &[], Some(&reconnect))).await;
    let (status, body) = consent_as(&f, again["authorizeUrl"].as_str().unwrap(), &fabrikam).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("tenant_mismatch")),
        "{body}"
    );
    let (_, shown) = call(&f, event("GET", &format!("/tenants/{tenant}"), &[], None)).await;
    assert_eq!(shown, connected, "the tenant is exactly as it was");
    assert_eq!(
        f.vault.versions(&tenant),
        1,
        "only the good consent's tokens"
    );
}

#[tokio::test]
async fn a_tenant_is_started_connected_listed_and_deauthorized_through_the_api() {
    // R-CONN-1, R-CONN-2, R-CONN-5
    let f = fakes();
    let (status, started) = call(
        &f,
        event("POST", "/tenants", &[], Some(r#"{"name":"Contoso"}"#)),
    )
    .await;
    assert_eq!(status, 201, "{started}");
    let tenant = TenantId::parse(started["tenantId"].as_str().unwrap()).unwrap();
    f.directory.add_tenant(
        &tenant,
        vec![VerifiedDomain {
            name: DomainName::parse("contoso.com").unwrap(),
            kind: DomainKind::Managed,
        }],
    );
    let url = started["authorizeUrl"].as_str().unwrap();
    let state = url.split("state=").nth(1).unwrap().to_owned();
    let code = f.identity.consent(&state).unwrap();
    let code = secrecy::ExposeSecret::expose_secret(&code).to_owned();
    let (status, body) = call(
        &f,
        event(
            "GET",
            "/oauth/callback",
            &[("code", &code), ("state", &state)],
            None,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "active");
    assert_eq!(body["domains"][0]["routable"], true);
    let (status, list) = call(&f, event("GET", "/tenants", &[], None)).await;
    assert_eq!(
        (status, list["tenants"][0]["status"].as_str()),
        (200, Some("active"))
    );
    let (status, body) = call(
        &f,
        event("DELETE", &format!("/tenants/{tenant}"), &[], None),
    )
    .await;
    assert_eq!(
        (status, body["tenant"]["status"].as_str()),
        (200, Some("deauthorized"))
    );
    let (status, body) = call(
        &f,
        event(
            "POST",
            "/tenants",
            &[],
            Some(&format!(r#"{{"tenantId":"{tenant}"}}"#)),
        ),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("deauthorized")),
        "reconnect starts a sign-in"
    );
}
