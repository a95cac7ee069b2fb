//! `connect::handle` driven with real API Gateway v2 event JSON on the engine's in-memory fakes:
//! routing, bad input answered with a 4xx and a machine-readable code (R-SAFE-1), and the whole
//! start → callback → list → deauthorize round trip (R-CONN-1, R-CONN-5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use connect::{Connect, handle};
use m365_engine::model::{DomainKind, DomainName, TenantId, VerifiedDomain};
use m365_engine::testing::{
    FakeBindings, FakeDirectory, FakeEvents, FakeIdentityPlatform, FakePendingConsents,
    FakeTenants, FakeTokenVault, ManualClock,
};
use serde_json::{Value, json};

type Fakes = Connect<
    FakeTenants,
    FakePendingConsents,
    FakeIdentityPlatform,
    FakeTokenVault,
    FakeDirectory,
    FakeEvents,
    FakeBindings,
    ManualClock,
>;

fn fakes() -> Fakes {
    let clock = ManualClock::fixed();
    Connect {
        tenants: FakeTenants::new(),
        consents: FakePendingConsents::new(),
        identity: FakeIdentityPlatform::new(clock.clone()),
        vault: FakeTokenVault::new(),
        directory: FakeDirectory::new(clock.clone(), chrono::TimeDelta::zero()),
        events: FakeEvents::new(),
        bindings: FakeBindings::new(),
        clock,
        cursor_key: m365_aws::SecretsManagerCursorKey::given(
            m365_engine::policy::cursor::CursorKey::new(secrecy::SecretString::from(
                "fake-cursor-key-".repeat(3),
            ))
            .unwrap(),
        ),
        deadlines: m365_lambda::deadline::DeadlinePolicy::default(),
    }
}

fn event(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> lambda_http::Request {
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": raw.join("&"),
        "headers": {"content-type": "application/json"},
        "queryStringParameters": if params.is_empty() { Value::Null } else { Value::Object(params) },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.test",
            "domainPrefix": "api", "requestId": "r-1", "routeKey": format!("{method} {path}"),
            "stage": "$default", "time": "27/Nov/2026:15:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}
        },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

async fn call(f: &Fakes, request: lambda_http::Request) -> (u16, Value) {
    let response = handle(f, request).await.unwrap();
    let status = response.status().as_u16();
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    (status, body)
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
