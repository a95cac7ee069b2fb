//! Tokens from the identity endpoints, presented to Graph: the 401 `InvalidAuthenticationToken`
//! cases, 403 `Authorization_RequestDenied` without the permission, and tenant isolation
//! (graph-spec §2.6, §11.3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity_support;

use identity_support::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn graph_get(
    emu: &Emu,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = emu.http.get(format!("{}/v1.0{path}", emu.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn assert_auth_error(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    message: &str,
) {
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(message),
        "{body}"
    );
    // graph-spec §2.2: innerError on every error
    let inner = &body["error"]["innerError"];
    assert_eq!(inner["request-id"], headers["request-id"].to_str().unwrap());
    assert!(inner["date"].as_str().is_some());
    // graph-spec §2.6: WWW-Authenticate on 401 (presence unconfirmed, §13.11)
    assert!(headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn an_app_token_from_the_token_endpoint_reads_its_own_tenant() {
    // graph-spec §1.5 → §2.1 (bearer token accepted by Graph)
    let emu = start().await;
    let token = emu.client_credentials(CONTOSO).await.str("access_token");
    let (status, _, body) = graph_get(&emu, &format!("/users/{ADMIN}"), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["userPrincipalName"], ADMIN);
}

#[tokio::test]
async fn a_token_of_one_tenant_never_reads_another_tenant() {
    // graph-spec §11.3 (tokens are bound to their tenant)
    let emu = start().await;
    let token = emu.client_credentials(CONTOSO).await.str("access_token");
    let (status, _, body) = graph_get(&emu, &format!("/users/{FAB_ADMIN}"), Some(&token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    let (_, _, list) = graph_get(&emu, "/users?$select=userPrincipalName", Some(&token)).await;
    let upns: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["userPrincipalName"].as_str())
        .collect();
    assert!(upns.contains(&ADMIN));
    assert!(!upns.contains(&FAB_ADMIN));
}

#[tokio::test]
async fn missing_garbled_forged_and_expired_tokens_are_401_invalid_authentication_token() {
    // graph-spec §2.6 (messages: empty INF §13.11; IDX14100 OBS; expired OBS 2024; forged = emulator's pick)
    let emu = start().await;
    let (s, h, b) = graph_get(&emu, "/users", None).await;
    assert_auth_error(s, &h, &b, "Access token is empty.");
    let (s, h, b) = graph_get(&emu, "/users", Some("garbage")).await;
    assert_auth_error(s, &h, &b, "IDX14100: JWT is not well formed");
    let token = emu.client_credentials(CONTOSO).await.str("access_token");
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[2] = "forged-signature";
    let (s, h, b) = graph_get(&emu, "/users", Some(&parts.join("."))).await;
    assert_auth_error(s, &h, &b, "IDX10511: Signature validation failed.");
    emu.advance(chrono::Duration::seconds(3600));
    let (s, h, b) = graph_get(&emu, "/users", Some(&token)).await;
    assert_auth_error(
        s,
        &h,
        &b,
        "Lifetime validation failed, the token is expired.",
    );
}

#[tokio::test]
async fn an_app_token_without_roles_is_403_authorization_request_denied() {
    // graph-spec §1.3 (token before admin consent has no roles) + §2.6 (403 body)
    let emu = start().await;
    let token = emu.client_credentials(FABRIKAM).await.str("access_token");
    let (status, _, body) = graph_get(&emu, "/users", Some(&token)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        body["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
}

#[tokio::test]
async fn a_delegated_token_from_the_code_flow_reads_users_by_its_scopes() {
    // graph-spec §1.2 (delegated token, `scp`) → §11.3 permission check on scopes
    let emu = start().await;
    let token = emu.admin_tokens().await.str("access_token");
    let (status, _, body) = graph_get(&emu, "/users?$top=1", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["value"].as_array().unwrap().len(), 1);
}
