//! Refresh-token grant (graph-spec §1.4): rotation without revoking the old token, the
//! inactivity window (700082), revocation by admin password reset / session revocation (50173),
//! missing consent (65001 + suberror), disabled users (50057), and the admin hooks that drive
//! these.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity_support;

use identity_support::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn refresh_rotates_the_token_and_the_old_one_stays_valid() {
    // graph-spec §1.4 ("Rotation: yes ... Old RT: NOT invalidated")
    let emu = start().await;
    let first = emu.admin_tokens().await.str("refresh_token");
    let second = emu.refresh(CONTOSO, &first).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    let rotated = second.str("refresh_token");
    assert!(!rotated.is_empty());
    assert_ne!(rotated, first);
    assert!(!second.str("access_token").is_empty());
    assert!(
        !second.str("id_token").is_empty(),
        "openid was granted originally"
    );
    let old_again = emu.refresh(CONTOSO, &first).await;
    assert_eq!(
        old_again.status,
        StatusCode::OK,
        "the old refresh token still works"
    );
    assert_eq!(emu.refresh("common", &rotated).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_token_idle_past_the_window_is_invalid_grant_700082() {
    // graph-spec §1.4 (700082; the 90-day inactivity window is an assumption, §13.14)
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    emu.advance(chrono::Duration::days(60));
    let kept_alive = emu.refresh(CONTOSO, &rt).await;
    assert_eq!(kept_alive.status, StatusCode::OK);
    let rotated = kept_alive.str("refresh_token");
    emu.advance(chrono::Duration::days(60));
    assert_eq!(emu.refresh(CONTOSO, &rotated).await.status, StatusCode::OK);
    emu.advance(chrono::Duration::days(91));
    let reply = emu.refresh(CONTOSO, &rotated).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 700_082);
    let description = reply.str("error_description");
    assert!(
        description
            .contains("The refresh token has expired due to inactivity. The token was issued on ")
    );
    assert!(
        description.contains("and was inactive for 91.00:00:00."),
        "{description}"
    );
}

#[tokio::test]
async fn an_admin_password_reset_revokes_refresh_tokens_with_50173() {
    // graph-spec §1.4 (revocation matrix: admin resets password → revoked; 50173 text)
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    emu.advance(chrono::Duration::seconds(5));
    let r = emu
        .http
        .post(format!(
            "{}/_emulator/tenants/{CONTOSO}/admins/{ADMIN}/reset-password",
            emu.base
        ))
        .json(&json!({"password": "N3w-Adm1n-Passw0rd!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let reply = emu.refresh(CONTOSO, &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 50_173);
    assert!(reply.str("error_description").contains(
        "The provided grant has expired due to it being revoked, a fresh auth token is needed."
    ));
    assert!(
        reply
            .str("error_description")
            .contains("the TokensValidFrom date")
    );
    // A fresh sign-in with the new password works again.
    emu.advance(chrono::Duration::seconds(1));
    let code = emu
        .code_for(
            CONTOSO,
            ADMIN,
            "N3w-Adm1n-Passw0rd!",
            "verifier-verifier-verifier-verifier-verifier",
        )
        .await;
    assert!(!code.is_empty());
}

#[tokio::test]
async fn revoking_sign_in_sessions_revokes_refresh_tokens_with_50173() {
    // graph-spec §1.4 (revokeSignInSessions → revoked) and §1.7 (tokensValidFrom)
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    emu.advance(chrono::Duration::seconds(5));
    let r = emu
        .http
        .post(format!(
            "{}/_emulator/tenants/contoso.com/users/{ADMIN}/revoke-sessions",
            emu.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let reply = emu.refresh(CONTOSO, &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 50_173);
}

#[tokio::test]
async fn graph_revoke_sign_in_sessions_revokes_refresh_tokens_with_50173() {
    // graph-spec §1.4 (revokeSignInSessions → revoked): the Graph action and the token endpoint agree
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    emu.advance(chrono::Duration::seconds(5));
    let app_token = emu.client_credentials(CONTOSO).await.str("access_token");
    let r = emu
        .http
        .post(format!(
            "{}/v1.0/users/{ADMIN}/revokeSignInSessions",
            emu.base
        ))
        .bearer_auth(app_token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let reply = emu.refresh(CONTOSO, &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 50_173);
}

#[tokio::test]
async fn without_consent_refresh_is_invalid_grant_65001_with_suberror_consent_required() {
    // graph-spec §1.4 (65001 real form: invalid_grant + suberror consent_required)
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    let r = emu
        .http
        .delete(format!(
            "{}/_emulator/identity/tenants/{CONTOSO}/apps/{APP}/consent",
            emu.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let reply = emu.refresh(CONTOSO, &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 65_001);
    assert_eq!(reply.body["suberror"], "consent_required");
    assert!(reply.str("error_description").contains(&format!(
        "The user or administrator has not consented to use the application with ID '{APP}'"
    )));
}

#[tokio::test]
async fn refresh_asking_for_an_unconsented_scope_is_65001() {
    // graph-spec §1.4 (scopes on the refresh leg must be consented)
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", APP),
                ("client_secret", SECRET),
                ("refresh_token", &rt),
                ("scope", "https://graph.microsoft.com/Mail.Send"),
            ],
        )
        .await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 65_001);
}

#[tokio::test]
async fn a_disabled_user_cannot_refresh_50057() {
    // graph-spec §1.4 (50057; `error` pairing unconfirmed §13.7 — the emulator picks invalid_grant)
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    {
        let mut state = emu.state.lock();
        let tenant = state.tenants.get_mut(CONTOSO).unwrap();
        let user = tenant
            .users
            .values_mut()
            .find(|u| u.upn() == ADMIN)
            .unwrap();
        user.properties
            .insert("accountEnabled".into(), json!(false));
    }
    let reply = emu.refresh(CONTOSO, &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 50_057);
}

#[tokio::test]
async fn an_unknown_refresh_token_or_one_of_another_client_is_invalid_grant() {
    // graph-spec §1.4 (9002313 garbled token; 70000 invalid grant)
    let emu = start().await;
    let reply = emu.refresh(CONTOSO, "garbage").await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 9_002_313);
    let rt = emu.admin_tokens().await.str("refresh_token");
    let reply = emu
        .token(
            CONTOSO,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", OTHER_APP),
                ("client_secret", "other~secret"),
                ("refresh_token", &rt),
            ],
        )
        .await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 70_000);
}

#[tokio::test]
async fn the_mint_hook_issues_delegated_tokens_with_a_working_refresh_token() {
    // graph-spec §1.7 (tokens bound to tenant + app + scopes + expiry); admin API for tests
    let emu = start().await;
    let r = emu
        .http
        .post(format!("{}/_emulator/tokens", emu.base))
        .json(&json!({
            "tenant": "contoso.com",
            "appId": APP,
            "userPrincipalName": ADMIN,
            "refreshToken": true
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let claims = m365_emulator::identity::authenticate(
        &emu.state.lock(),
        body["access_token"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(claims.user_upn.as_deref(), Some(ADMIN));
    assert_eq!(claims.scopes, ["Group.ReadWrite.All", "User.ReadWrite.All"]);
    let reply = emu
        .refresh(CONTOSO, body["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);

    let expired = emu
        .http
        .post(format!("{}/_emulator/tokens", emu.base))
        .json(&json!({"tenant": CONTOSO, "appId": APP, "expiresIn": -5}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(
        m365_emulator::identity::authenticate(
            &emu.state.lock(),
            expired["access_token"].as_str().unwrap()
        ),
        Err(m365_emulator::identity::AuthFailure::Expired)
    );
}

#[tokio::test]
async fn the_identity_state_hook_lists_grants_without_revealing_tokens() {
    // admin API (issue 3 "read raw state for assertions")
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    let body: serde_json::Value = emu
        .http
        .get(format!("{}/_emulator/identity/state", emu.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let text = body.to_string();
    assert!(
        !text.contains(&rt),
        "the refresh token itself is never shown"
    );
    assert_eq!(body["refreshTokens"].as_array().unwrap().len(), 1);
    assert_eq!(body["refreshTokens"][0]["clientId"], APP);
    assert_eq!(body["codes"][0]["redeemed"], true);
    assert_eq!(body["settings"]["accessTokenLifetimeSeconds"], 3599);
}

#[tokio::test]
async fn settings_change_the_access_token_lifetime() {
    // graph-spec §1.2 (expires_in) — lifetimes are configurable for tests
    let emu = start().await;
    let r = emu
        .http
        .put(format!("{}/_emulator/identity/settings", emu.base))
        .json(&json!({"accessTokenLifetimeSeconds": 120}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        emu.client_credentials(CONTOSO).await.body["expires_in"],
        120
    );
}

#[tokio::test]
async fn an_injected_503_on_the_token_endpoint_is_temporarily_unavailable_then_it_recovers() {
    // graph-spec §12 (token endpoint temporarily_unavailable / 5xx / 429 ⇒ retry later); the
    // AADSTS numbers of injected faults (90033, 90055) are the emulator's picks
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    let r = emu
        .http
        .post(format!("{}/_emulator/faults", emu.base))
        .json(&json!({"path": format!("/{CONTOSO}/oauth2/v2.0/token"), "kind": "503", "retryAfter": "2"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let reply = emu.refresh(CONTOSO, &rt).await;
    assert_error_body(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        90_033,
    );
    assert_eq!(reply.headers["retry-after"], "2");
    assert_eq!(emu.refresh(CONTOSO, &rt).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_whose_response_is_lost_after_commit_can_be_retried_with_the_old_token() {
    // graph-spec §1.4 (old refresh token stays valid) + fault "drop-after-commit": the rotation
    // happened server-side, the client never saw the new token, and the retry still works
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    emu.http
        .post(format!("{}/_emulator/faults", emu.base))
        .json(
            &json!({"path": format!("/{CONTOSO}/oauth2/v2.0/token"), "kind": "drop-after-commit"}),
        )
        .send()
        .await
        .unwrap();
    let lost = emu
        .http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", emu.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", APP),
            ("client_secret", SECRET),
            ("refresh_token", &rt),
        ])
        .send()
        .await;
    let body_lost = match lost {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(body_lost, "the client must not receive the rotated token");
    let state: serde_json::Value = emu
        .http
        .get(format!("{}/_emulator/identity/state", emu.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["refreshTokens"].as_array().unwrap().len(),
        2,
        "the rotation committed"
    );
    assert_eq!(emu.refresh(CONTOSO, &rt).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_refresh_token_redeemed_at_another_tenants_authority_is_refused_50020() {
    // R-CONN-7. graph-spec §1.4 says refresh tokens "aren't tied to a resource or tenant"; the
    // user is: at a tenant where they have no account the emulator refuses the grant like a
    // sign-in there (AADSTS50020, `invalid_grant`), an unconfirmed choice (README).
    let emu = start().await;
    let rt = emu.admin_tokens().await.str("refresh_token");
    let reply = emu.refresh(FABRIKAM, &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 50_020);
    let description = reply.str("error_description");
    assert!(
        description.contains(&format!(
            "User account '{ADMIN}' from identity provider 'https://sts.windows.net/{CONTOSO}/' does not exist in tenant 'Fabrikam'"
        )),
        "{description}"
    );
    let reply = emu.refresh("fabrikam.onmicrosoft.com", &rt).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 50_020);
    // At its own tenant's authority (and at `organizations`) the same token still works.
    assert_eq!(emu.refresh(CONTOSO, &rt).await.status, StatusCode::OK);
    assert_eq!(
        emu.refresh("organizations", &rt).await.status,
        StatusCode::OK
    );
}
