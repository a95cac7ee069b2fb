//! Token endpoint: client-credentials grant and the errors every grant shares
//! (graph-spec §1.1, §1.5, §1.6, §1.3 for the effect of admin consent on app tokens).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity_support;

use identity_support::*;
use m365_emulator::identity::{self, AuthFailure};
use reqwest::StatusCode;

#[tokio::test]
async fn client_credentials_returns_a_bearer_token_carrying_the_granted_roles() {
    // graph-spec §1.5 (success body: no refresh_token, no scope; ext_expires_in is OBS)
    let emu = start().await;
    let reply = emu.client_credentials(CONTOSO).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let body = reply.body.as_object().unwrap();
    let mut keys: Vec<&str> = body.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "ext_expires_in", "token_type"]
    );
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3599);
    assert_eq!(reply.body["ext_expires_in"], 3599);
    assert_eq!(reply.headers["cache-control"], "no-store, no-cache");
    assert!(reply.headers.contains_key("request-id"));
    let token = reply.str("access_token");
    let payload = jwt_payload(&token);
    assert_eq!(payload["tid"], CONTOSO);
    assert_eq!(payload["appid"], APP);
    assert_eq!(payload["aud"], "https://graph.microsoft.com");
    assert_eq!(
        payload["roles"],
        serde_json::json!(["Group.ReadWrite.All", "User.ReadWrite.All"])
    );
    let claims = identity::authenticate(&emu.state.lock(), &token).unwrap();
    assert_eq!(claims.tenant_id, CONTOSO);
    assert_eq!(claims.app_id, APP);
    assert_eq!(claims.user_upn, None);
    assert!(claims.roles.contains(&"User.ReadWrite.All".to_owned()));
}

#[tokio::test]
async fn client_credentials_accepts_a_verified_domain_as_tenant_and_http_basic_client_auth() {
    // graph-spec §1.1 ({tenant} = GUID or domain) and §1.2 (client auth per RFC 6749 §2.3.1)
    let emu = start().await;
    let r = emu
        .http
        .post(format!("{}/contoso.com/oauth2/v2.0/token", emu.base))
        .basic_auth(APP, Some(SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        jwt_payload(body["access_token"].as_str().unwrap())["tid"],
        CONTOSO
    );
}

#[tokio::test]
async fn a_scope_without_default_is_invalid_scope_1002012() {
    // graph-spec §1.5 error table
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/User.Read.All"),
            ],
        )
        .await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_scope", 1_002_012);
    assert!(reply.str("error_description").contains(
        "The provided value for scope https://graph.microsoft.com/User.Read.All is not valid. Client credential flows must have a scope value with /.default suffixed"
    ));
}

#[tokio::test]
async fn a_default_scope_of_an_unknown_resource_is_invalid_scope_70011() {
    // graph-spec §1.5 error table
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", "https://foo.microsoft.com/.default"),
            ],
        )
        .await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_scope", 70_011);
    assert!(
        reply
            .str("error_description")
            .contains("The scope https://foo.microsoft.com/.default is not valid.")
    );
}

#[tokio::test]
async fn a_wrong_client_secret_is_401_invalid_client_7000215_with_the_exact_error_body() {
    // graph-spec §1.5 (401 for invalid_client) and §1.6 (body members, description layout)
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", "not-the-secret"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_error_body(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_215,
    );
    assert!(
        reply
            .str("error_description")
            .starts_with("AADSTS7000215: Invalid client secret provided.")
    );
    assert!(reply.body.get("suberror").is_none());
}

#[tokio::test]
async fn an_expired_client_secret_is_401_invalid_client_7000222() {
    // graph-spec §1.5; the 401 status is unconfirmed (§13.7) — the emulator picks 401 like 7000215
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", OLD_SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_error_body(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_222,
    );
}

#[tokio::test]
async fn a_missing_client_secret_is_invalid_client_7000218() {
    // graph-spec §1.5; status 400/401 unconfirmed (§13.7) — the emulator picks 401
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_error_body(
        &reply,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_218,
    );
}

#[tokio::test]
async fn an_unknown_client_id_is_unauthorized_client_700016() {
    // graph-spec §1.5; the `error` value is unconfirmed (§13.7) — the emulator picks unauthorized_client
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "bbbbbbbb-0000-4000-8000-000000000009"),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_error_body(
        &reply,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        700_016,
    );
    assert!(
        reply
            .str("error_description")
            .contains("was not found in the directory 'Contoso'")
    );
}

#[tokio::test]
async fn an_unknown_tenant_is_invalid_request_90002() {
    // graph-spec §1.5; the `error` value is unconfirmed (§13.7) — the emulator picks invalid_request
    let emu = start().await;
    let reply = emu.client_credentials("nowhere.example").await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_request", 90_002);
    assert!(
        reply
            .str("error_description")
            .contains("Tenant 'nowhere.example' not found.")
    );
}

#[tokio::test]
async fn missing_parameters_are_invalid_request_900144_naming_the_parameter() {
    // graph-spec §1.5 ("missing param")
    let emu = start().await;
    let reply = emu.token(CONTOSO, &[("client_id", APP)]).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_request", 900_144);
    assert!(reply.str("error_description").starts_with(
        "AADSTS900144: The request body must contain the following parameter: 'grant_type'."
    ));
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", SECRET),
            ],
        )
        .await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_request", 900_144);
    assert!(
        reply
            .str("error_description")
            .contains("parameter: 'scope'.")
    );
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported_grant_type_70003() {
    // graph-spec §1.5 error table
    let emu = start().await;
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "password"),
                ("client_id", APP),
                ("client_secret", SECRET),
            ],
        )
        .await;
    assert_error_body(
        &reply,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
        70_003,
    );
}

#[tokio::test]
async fn client_credentials_over_common_is_refused_with_9001023() {
    // graph-spec §1.1: grants refused over /common; which text the real service sends for
    // client credentials there is unconfirmed — the emulator picks AADSTS9001023
    let emu = start().await;
    let reply = emu.client_credentials("common").await;
    assert_error_body(
        &reply,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        9_001_023,
    );
}

#[tokio::test]
async fn before_admin_consent_the_app_token_has_no_roles_and_after_it_has_them() {
    // graph-spec §1.3 (emulator assumption: issuance succeeds before consent, without roles)
    let emu = start().await;
    let before = emu.client_credentials(FABRIKAM).await;
    assert_eq!(before.status, StatusCode::OK);
    let payload = jwt_payload(&before.str("access_token"));
    assert!(payload.get("roles").is_none(), "{payload}");
    let r = emu
        .http
        .post(format!(
            "{}/_emulator/identity/tenants/{FABRIKAM}/apps/{APP}/consent",
            emu.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let after = emu.client_credentials(FABRIKAM).await;
    let claims = identity::authenticate(&emu.state.lock(), &after.str("access_token")).unwrap();
    assert_eq!(claims.roles, ["Group.ReadWrite.All", "User.ReadWrite.All"]);
}

#[tokio::test]
async fn access_tokens_expire_on_the_emulator_clock_and_garbage_is_told_apart() {
    // graph-spec §2.6 (expired / malformed / empty tokens → the four AuthFailure kinds)
    let emu = start().await;
    let token = emu.client_credentials(CONTOSO).await.str("access_token");
    {
        let state = emu.state.lock();
        assert!(identity::authenticate(&state, &token).is_ok());
        assert_eq!(
            identity::authenticate(&state, "  "),
            Err(AuthFailure::Empty)
        );
        assert_eq!(
            identity::authenticate(&state, "not-a-jwt"),
            Err(AuthFailure::Malformed)
        );
        assert_eq!(
            identity::authenticate(&state, "a.b.c"),
            Err(AuthFailure::Malformed)
        );
        // Well-formed, but not issued by this emulator (the signature segment is changed).
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[2] = "forged";
        assert_eq!(
            identity::authenticate(&state, &parts.join(".")),
            Err(AuthFailure::InvalidSignature)
        );
    }
    emu.advance(chrono::Duration::seconds(3600));
    assert_eq!(
        identity::authenticate(&emu.state.lock(), &token),
        Err(AuthFailure::Expired)
    );
}

#[tokio::test]
async fn every_token_response_counts_under_its_tenant_and_carries_request_ids() {
    // graph-spec §2.1/§11.13 (request-id and client-request-id on every response)
    let emu = start().await;
    let reply = emu.client_credentials(CONTOSO).await;
    assert_eq!(
        reply.headers["client-request-id"],
        "7d3a51f2-0000-4000-8000-00000000c1d0"
    );
    let count = emu.state.lock().tenants[CONTOSO]
        .request_counts
        .get("identity")
        .copied();
    assert_eq!(count, Some(1));
}

#[tokio::test]
async fn a_get_on_the_token_endpoint_is_invalid_request_900561() {
    // graph-spec §1.2 (the token endpoint takes POST, form-encoded); the code and status are the
    // emulator's pick
    let emu = start().await;
    let r = emu
        .http
        .get(format!("{}/{CONTOSO}/oauth2/v2.0/token", emu.base))
        .header("client-request-id", "7d3a51f2-0000-4000-8000-00000000c1d0")
        .send()
        .await
        .unwrap();
    let reply = Reply {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.json().await.unwrap(),
    };
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_request", 900_561);
}
