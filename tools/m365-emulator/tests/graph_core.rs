//! Common Graph conventions over HTTP: request ids, the error envelope, authentication (401),
//! authorization (403) and tenant isolation. Each test names the graph-spec section it proves.

mod graph_support;

use graph_support::*;
use serde_json::json;

// graph-spec §11.13, §2.1: every response carries request-id and client-request-id headers; a
// client-request-id sent by the client is echoed.
#[tokio::test]
async fn every_response_carries_request_id_headers_and_echoes_the_client_request_id() {
    let emu = Emu::start().await;
    let r = emu
        .http
        .get(emu.url("/_emulator/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let rid = r.headers()["request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(rid.len(), 36);
    assert_eq!(
        r.headers()["client-request-id"].to_str().expect("ascii"),
        rid
    );

    let r = emu
        .http
        .get(emu.url("/v1.0/users"))
        .bearer_auth(emu.contoso())
        .header("client-request-id", "c0ffee00-1111-2222-3333-444455556666")
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.headers()["client-request-id"],
        "c0ffee00-1111-2222-3333-444455556666"
    );
    assert!(r.headers().contains_key("request-id"));
}

// graph-spec §2.2: errors carry innerError with date (yyyy-MM-ddTHH:mm:ss), request-id equal to
// the header, and client-request-id.
#[tokio::test]
async fn errors_carry_inner_error_matching_the_response_headers() {
    let emu = Emu::start().await;
    let r = emu
        .http
        .get(emu.url("/v1.0/users/nobody@contoso.com"))
        .bearer_auth(emu.contoso())
        .header("client-request-id", "abc-123")
        .send()
        .await
        .expect("send");
    let (status, headers, body) = parts(r).await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present.",
    );
    assert_eq!(
        body["error"]["innerError"]["request-id"],
        headers["request-id"].to_str().expect("ascii")
    );
    assert_eq!(body["error"]["innerError"]["client-request-id"], "abc-123");
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
}

// graph-spec §2.6: missing, malformed, foreign and expired tokens get 401 InvalidAuthenticationToken.
#[tokio::test]
async fn bad_tokens_get_401_invalid_authentication_token() {
    let emu = Emu::start().await;
    let r = emu
        .http
        .get(emu.url("/v1.0/users"))
        .send()
        .await
        .expect("send");
    let (status, headers, body) = parts(r).await;
    assert_eq!(status, 401);
    assert_error(
        &body,
        "InvalidAuthenticationToken",
        "Access token is empty.",
    );
    assert!(
        headers.contains_key("www-authenticate"),
        "assumed header (§13.11)"
    );

    let (status, _, body) = emu.get("garbage", "/v1.0/users").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("IDX14100:")
    );

    let expired = {
        let mut state = emu.app.lock();
        m365_emulator::identity::mint_access_token(
            &mut state,
            m365_emulator::identity::AccessClaims {
                tenant_id: CONTOSO.into(),
                app_id: SYNC_APP.into(),
                roles: vec!["User.ReadWrite.All".into()],
                scopes: vec![],
                user_upn: None,
                expires_at: chrono::Utc::now() - chrono::Duration::seconds(5),
            },
        )
    };
    let (status, _, body) = emu.get(&expired, "/v1.0/users").await;
    assert_eq!(status, 401);
    assert_error(
        &body,
        "InvalidAuthenticationToken",
        "Lifetime validation failed, the token is expired.",
    );
}

// graph-spec §2.6 + emulator clock: a token expires when the emulator clock passes its expiry.
#[tokio::test]
async fn advancing_the_clock_expires_tokens() {
    let emu = Emu::start().await;
    let token = emu.contoso();
    assert_eq!(emu.get(&token, "/v1.0/users").await.0, 200);
    let (s, _) = emu
        .admin(
            reqwest::Method::POST,
            "/_emulator/clock/advance",
            Some(json!({"seconds": 7200})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(emu.get(&token, "/v1.0/users").await.0, 401);
}

// graph-spec §2.6, §11.3: a token without the needed role gets 403 Authorization_RequestDenied.
#[tokio::test]
async fn missing_permissions_get_403_authorization_request_denied() {
    let emu = Emu::start().await;
    let reader = emu.token(CONTOSO, READER_APP, &["User.Read.All"]);
    assert_eq!(emu.get(&reader, "/v1.0/users").await.0, 200);
    let (status, _, body) = emu
        .post(&reader, "/v1.0/users", new_user("x@contoso.com"))
        .await;
    assert_eq!(status, 403);
    assert_error(
        &body,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    );
    for path in [
        "/v1.0/groups",
        "/v1.0/domains",
        "/v1.0/subscribedSkus",
        "/v1.0/auditLogs/directoryAudits",
    ] {
        assert_eq!(emu.get(&reader, path).await.0, 403, "{path}");
    }
    let none = emu.token(CONTOSO, SYNC_APP, &[]);
    assert_eq!(emu.get(&none, "/v1.0/users").await.0, 403);
    let members_only = emu.token(CONTOSO, SYNC_APP, &["GroupMember.ReadWrite.All"]);
    let (status, _, _) = emu
        .post(&members_only, &format!("/v1.0/groups/{ENGINEERING}/members/$ref"), json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{LEE}")}))
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = emu
        .post(&members_only, "/v1.0/groups", json!({"displayName": "x", "mailEnabled": false, "mailNickname": "x", "securityEnabled": true}))
        .await;
    assert_eq!(status, 403);
}

// graph-spec §11.3 (tenant isolation): a token of tenant A never reads tenant B.
#[tokio::test]
async fn a_token_of_one_tenant_never_sees_another_tenant() {
    let emu = Emu::start().await;
    let northwind = emu.token(NORTHWIND, SYNC_APP, ALL_ROLES);
    let (status, _, body) = emu.get(&northwind, &format!("/v1.0/users/{ADELE}")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    let (_, _, body) = emu
        .get(&northwind, "/v1.0/users?$select=userPrincipalName")
        .await;
    let upns: Vec<&str> = body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|u| u["userPrincipalName"].as_str())
        .collect();
    assert!(upns.contains(&"megan@northwind.com"));
    assert!(!upns.iter().any(|u| u.ends_with("contoso.com")));
    assert_eq!(
        emu.get(&northwind, &format!("/v1.0/groups/{ENGINEERING}"))
            .await
            .0,
        404
    );
}

// graph-spec §2.1: unknown Graph segments get 400 BadRequest; unknown emulator paths 404.
#[tokio::test]
async fn unknown_segments_get_bad_request() {
    let emu = Emu::start().await;
    let (status, _, body) = emu.get(&emu.contoso(), "/v1.0/widgets").await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "BadRequest",
        "Resource not found for the segment 'widgets'.",
    );
}

// Control API: per-tenant request counters count Graph requests by route (for later tests).
#[tokio::test]
async fn request_counters_count_graph_requests_per_tenant_and_route() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.get(&t, "/v1.0/users").await;
    emu.get(&t, &format!("/v1.0/users/{ADELE}")).await;
    emu.get(&t, &format!("/v1.0/users/{ALEX}")).await;
    let (_, counts) = emu
        .admin(
            reqwest::Method::GET,
            &format!("/_emulator/tenants/{CONTOSO}/requests"),
            None,
        )
        .await;
    assert_eq!(counts["graph"], 3);
    assert_eq!(counts["graph GET /v1.0/users/{id}"], 2);
    assert_eq!(counts["graph GET /v1.0/users"], 1);
    emu.admin(
        reqwest::Method::DELETE,
        &format!("/_emulator/tenants/{CONTOSO}/requests"),
        None,
    )
    .await;
    let (_, counts) = emu
        .admin(
            reqwest::Method::GET,
            "/_emulator/tenants/contoso.com/requests",
            None,
        )
        .await;
    assert_eq!(counts, json!({}));
}

// graph-spec §2.2: the error envelope's members come in the service's order.
#[tokio::test]
async fn error_bodies_keep_the_service_member_order() {
    let emu = Emu::start().await;
    let r = emu
        .http
        .get(emu.url("/v1.0/users/ghost@contoso.com"))
        .bearer_auth(emu.contoso())
        .send()
        .await
        .expect("send");
    let text = r.text().await.expect("text");
    let order = [
        "\"code\"",
        "\"message\"",
        "\"innerError\"",
        "\"date\"",
        "\"request-id\"",
        "\"client-request-id\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| text.find(k).expect(k)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
}

// Control API: /_emulator/state exposes raw users (with deletion state) for assertions.
#[tokio::test]
async fn raw_state_shows_users_groups_and_deletions() {
    let emu = Emu::start().await;
    emu.delete(&emu.contoso(), &format!("/v1.0/users/{ALEX}"))
        .await;
    let (status, state) = emu
        .admin(reqwest::Method::GET, "/_emulator/state", None)
        .await;
    assert_eq!(status, 200);
    let contoso = state["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["id"] == CONTOSO)
        .expect("contoso");
    let alex = contoso["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["id"] == ALEX)
        .expect("alex");
    assert!(alex["deletedAt"].is_string());
    assert_eq!(alex["properties"]["userPrincipalName"], "AlexW@contoso.com");
    assert!(
        alex.get("password").is_none(),
        "passwords never leave the emulator"
    );
    let eng = contoso["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["id"] == ENGINEERING)
        .expect("group");
    assert_eq!(eng["members"].as_array().expect("members").len(), 2);
    let (status, _) = emu
        .admin(
            reqwest::Method::GET,
            "/_emulator/tenants/nowhere.example",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

// Control API (R-PWD-3 support): a user's own password change inside M365 moves
// lastPasswordChangeDateTime as Graph reports it; portal edits show up in Graph reads.
#[tokio::test]
async fn control_hooks_simulate_changes_made_inside_m365() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (_, _, before) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ALEX}?$select=lastPasswordChangeDateTime"),
        )
        .await;
    emu.admin(
        reqwest::Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"seconds": 3})),
    )
    .await;
    let (status, out) = emu
        .admin(
            reqwest::Method::POST,
            &format!("/_emulator/tenants/{CONTOSO}/users/AlexW@contoso.com/self-password-change"),
            Some(json!({"password": "N3w-Passw0rd!"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, after) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ALEX}?$select=lastPasswordChangeDateTime"),
        )
        .await;
    assert_ne!(
        before["lastPasswordChangeDateTime"],
        after["lastPasswordChangeDateTime"]
    );
    assert_eq!(
        after["lastPasswordChangeDateTime"],
        out["lastPasswordChangeDateTime"]
    );
    assert!(
        emu.app.lock().tenants[CONTOSO].users[ALEX]
            .tokens_valid_from
            .is_none()
    );
    let (status, _) = emu
        .admin(
            reqwest::Method::PATCH,
            &format!("/_emulator/tenants/{CONTOSO}/users/{ALEX}"),
            Some(json!({"department": "Portal"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, got) = emu
        .get(&t, &format!("/v1.0/users/{ALEX}?$select=department"))
        .await;
    assert_eq!(got["department"], "Portal");
}
