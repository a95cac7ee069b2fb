//! Authorization-code grant with PKCE (graph-spec §1.2), the sign-in page and its scripted
//! completion, and admin consent (§1.3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod identity_support;

use identity_support::*;
use m365_emulator::identity;
use reqwest::StatusCode;

const VERIFIER: &str = "ThisIsntRandomButItNeedsToBe43CharactersLong";

fn redeem<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("client_id", APP),
        ("client_secret", SECRET),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn the_authorize_page_is_a_sign_in_form_carrying_the_request() {
    // graph-spec §1.2 (GET /{tenant}/oauth2/v2.0/authorize)
    let emu = start().await;
    let r = emu
        .http
        .get(format!("{}/organizations/oauth2/v2.0/authorize", emu.base))
        .query(&[
            ("client_id", APP),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", GRAPH_SCOPES),
            ("state", "xyz"),
            ("login_hint", ADMIN),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<form method="POST">"#));
    assert!(html.contains(r#"name="passwd""#));
    assert!(html.contains(&format!(r#"name="client_id" value="{APP}""#)));
    assert!(html.contains(&format!(r#"name="login" value="{ADMIN}""#)));
    assert!(html.contains("<li>User.ReadWrite.All</li>"));
    assert!(html.contains(r#"name="action" value="accept""#));
}

#[tokio::test]
async fn a_scripted_sign_in_redirects_with_code_and_state_and_the_code_redeems_once() {
    // graph-spec §1.2 (success redirect, code redemption, single use → AADSTS54005)
    let emu = start().await;
    let code = emu
        .code_for("organizations", ADMIN, ADMIN_PASSWORD, VERIFIER)
        .await;
    let reply = emu.token(CONTOSO, &redeem(&code, VERIFIER)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 3599);
    assert_eq!(reply.body["ext_expires_in"], 3599);
    assert!(
        !reply.str("refresh_token").is_empty(),
        "offline_access gives a refresh token"
    );
    let id_token = reply.str("id_token");
    assert_eq!(jwt_payload(&id_token)["preferred_username"], ADMIN);
    assert_eq!(jwt_payload(&id_token)["tid"], CONTOSO);
    // Assumption (graph-spec §13.6): Graph scopes are echoed by short name, then OIDC scopes.
    assert_eq!(
        reply.str("scope"),
        "Group.ReadWrite.All User.ReadWrite.All openid profile offline_access"
    );
    let claims = identity::authenticate(&emu.state.lock(), &reply.str("access_token")).unwrap();
    assert_eq!(claims.user_upn.as_deref(), Some(ADMIN));
    assert_eq!(claims.tenant_id, CONTOSO);
    assert_eq!(claims.scopes, ["Group.ReadWrite.All", "User.ReadWrite.All"]);
    assert!(claims.roles.is_empty());
    assert_eq!(
        jwt_payload(&reply.str("access_token"))["scp"],
        "Group.ReadWrite.All User.ReadWrite.All"
    );

    let again = emu.token(CONTOSO, &redeem(&code, VERIFIER)).await;
    assert_error_body(&again, StatusCode::BAD_REQUEST, "invalid_grant", 54_005);
}

#[tokio::test]
async fn a_wrong_code_verifier_is_invalid_grant_50148_and_plain_pkce_works() {
    // graph-spec §1.2 (PKCE S256 | plain) and §1.6 (50148)
    let emu = start().await;
    let code = emu.code_for(CONTOSO, ADMIN, ADMIN_PASSWORD, VERIFIER).await;
    let wrong = emu
        .token(
            CONTOSO,
            &redeem(&code, "another-verifier-of-sufficient-length-0000000"),
        )
        .await;
    assert_error_body(&wrong, StatusCode::BAD_REQUEST, "invalid_grant", 50_148);

    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("code_challenge", VERIFIER),
                ("code_challenge_method", "plain"),
                ("login", ADMIN),
                ("passwd", ADMIN_PASSWORD),
                ("action", "accept"),
            ],
        )
        .await;
    let code = location_query(&r)["code"].clone();
    assert_eq!(
        emu.token(CONTOSO, &redeem(&code, VERIFIER)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_code_older_than_ten_minutes_is_invalid_grant_70008() {
    // graph-spec §1.2 ("expire after about 10 minutes")
    let emu = start().await;
    let code = emu.code_for(CONTOSO, ADMIN, ADMIN_PASSWORD, VERIFIER).await;
    emu.advance(chrono::Duration::minutes(11));
    let reply = emu.token(CONTOSO, &redeem(&code, VERIFIER)).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 70_008);
}

#[tokio::test]
async fn a_code_redeemed_against_another_tenant_is_invalid_grant_700005() {
    // graph-spec §1.6 (700005)
    let emu = start().await;
    let code = emu.code_for(CONTOSO, ADMIN, ADMIN_PASSWORD, VERIFIER).await;
    let reply = emu.token(FABRIKAM, &redeem(&code, VERIFIER)).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 700_005);
}

#[tokio::test]
async fn an_unknown_code_is_invalid_grant_and_a_missing_verifier_is_900144() {
    // graph-spec §1.4 (9002313, `error` pairing unconfirmed: the emulator picks invalid_grant)
    let emu = start().await;
    let reply = emu.token(CONTOSO, &redeem("garbage", VERIFIER)).await;
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_grant", 9_002_313);
    let code = emu.code_for(CONTOSO, ADMIN, ADMIN_PASSWORD, VERIFIER).await;
    let mut form = redeem(&code, VERIFIER);
    form.pop();
    let reply = emu.token(CONTOSO, &form).await;
    // Assumption: a missing verifier for a PKCE code is reported as a missing parameter.
    assert_error_body(&reply, StatusCode::BAD_REQUEST, "invalid_request", 900_144);
}

#[tokio::test]
async fn a_wrong_password_shows_50126_on_the_page_and_ten_failures_lock_the_account() {
    // graph-spec §1.6 (50126, 50053) and §3.7 (10 failures → 1-minute lockout)
    let emu = start().await;
    let form = |password: &'static str| {
        vec![
            ("client_id", APP),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", GRAPH_SCOPES),
            ("login", ADMIN),
            ("passwd", password),
            ("action", "accept"),
        ]
    };
    let r = emu.submit_authorize(CONTOSO, &form("wrong")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.headers()["x-ms-ests-error"], "50126");
    assert!(r.text().await.unwrap().contains(
        "AADSTS50126: Error validating credentials due to invalid username or password."
    ));
    for _ in 0..9 {
        emu.submit_authorize(CONTOSO, &form("wrong")).await;
    }
    let locked = emu.submit_authorize(CONTOSO, &form(ADMIN_PASSWORD)).await;
    assert_eq!(locked.headers()["x-ms-ests-error"], "50053");
    emu.advance(chrono::Duration::seconds(61));
    let ok = emu.submit_authorize(CONTOSO, &form(ADMIN_PASSWORD)).await;
    assert_eq!(ok.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn an_unknown_user_is_50034_on_the_page() {
    // graph-spec §1.6 (50034 UserAccountNotFound)
    let emu = start().await;
    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("login", "nobody@contoso.com"),
                ("passwd", "x"),
                ("action", "accept"),
            ],
        )
        .await;
    assert_eq!(r.headers()["x-ms-ests-error"], "50034");
}

#[tokio::test]
async fn cancelling_redirects_access_denied_with_state() {
    // graph-spec §1.2 (error redirect: error, error_description, state)
    let emu = start().await;
    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("state", "s-1"),
                ("action", "cancel"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{REDIRECT}?error=access_denied&")),
        "{location}"
    );
    let q = location_query(&r);
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS65004: "));
    assert!(q["error_description"].contains("\r\nTrace ID: "));
    assert_eq!(q["state"], "s-1");
}

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_an_error_page_not_a_redirect() {
    // graph-spec §1.2 (redirect_uri must match exactly) and §1.6 (50011)
    let emu = start().await;
    let r = emu
        .http
        .get(format!("{}/{CONTOSO}/oauth2/v2.0/authorize", emu.base))
        .query(&[
            ("client_id", APP),
            ("response_type", "code"),
            ("redirect_uri", "http://evil.example/cb"),
            ("scope", GRAPH_SCOPES),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    assert_eq!(r.headers()["x-ms-ests-error"], "50011");
}

#[tokio::test]
async fn prompt_none_redirects_login_required_and_a_bad_response_type_is_unsupported() {
    // graph-spec §1.2 (authorize `error` values)
    let emu = start().await;
    let get = |extra: (&'static str, &'static str)| {
        emu.http
            .get(format!("{}/{CONTOSO}/oauth2/v2.0/authorize", emu.base))
            .query(&[
                ("client_id", APP),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("state", "p"),
                extra,
            ])
            .send()
    };
    let r = emu
        .http
        .get(format!("{}/{CONTOSO}/oauth2/v2.0/authorize", emu.base))
        .query(&[
            ("client_id", APP),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", GRAPH_SCOPES),
            ("prompt", "none"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location_query(&r)["error"], "login_required");
    let r = get(("response_type", "token")).await.unwrap();
    assert_eq!(location_query(&r)["error"], "unsupported_response_type");
    assert_eq!(location_query(&r)["state"], "p");
}

#[tokio::test]
async fn response_mode_fragment_puts_the_code_after_the_hash() {
    // graph-spec §1.2 (response_mode)
    let emu = start().await;
    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("response_mode", "fragment"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("login", ADMIN),
                ("passwd", ADMIN_PASSWORD),
                ("action", "accept"),
            ],
        )
        .await;
    let location = r.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{REDIRECT}#code=")),
        "{location}"
    );
}

#[tokio::test]
async fn an_ordinary_user_cannot_consent_to_admin_restricted_permissions() {
    // graph-spec §1.2 ("an ordinary user is told they are not authorised to consent")
    let emu = start().await;
    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("login", PLAIN_USER),
                ("passwd", PLAIN_USER_PASSWORD),
                ("action", "accept"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = location_query(&r);
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS90094: "));
}

#[tokio::test]
async fn an_admin_who_never_consented_consents_on_the_page_and_gets_tokens() {
    // graph-spec §1.2 (consent on the authorize page)
    let emu = start().await;
    let code = emu
        .code_for(FABRIKAM, FAB_ADMIN, FAB_ADMIN_PASSWORD, VERIFIER)
        .await;
    let reply = emu.token(FABRIKAM, &redeem(&code, VERIFIER)).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let claims = identity::authenticate(&emu.state.lock(), &reply.str("access_token")).unwrap();
    assert_eq!(claims.tenant_id, FABRIKAM);
    assert_eq!(claims.scopes, ["Group.ReadWrite.All", "User.ReadWrite.All"]);
}

#[tokio::test]
async fn v2_admin_consent_grants_the_app_roles_tenant_wide_and_redirects_with_tenant() {
    // graph-spec §1.3 (success redirect; app tokens carry roles afterwards)
    let emu = start().await;
    let url = format!("{}/{FABRIKAM}/v2.0/adminconsent", emu.base);
    let params = [
        ("client_id", APP),
        ("scope", "https://graph.microsoft.com/.default"),
        ("redirect_uri", REDIRECT),
        ("state", "12345"),
    ];
    let page = emu.http.get(&url).query(&params).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("User.ReadWrite.All (application)")
    );
    let mut form = params.to_vec();
    form.extend([
        ("login", FAB_ADMIN),
        ("passwd", FAB_ADMIN_PASSWORD),
        ("action", "accept"),
    ]);
    let r = emu.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!(
        "{REDIRECT}?admin_consent=True&tenant={FABRIKAM}&scope="
    )));
    let q = location_query(&r);
    assert_eq!(q["scope"], "https://graph.microsoft.com/.default");
    assert_eq!(q["state"], "12345");
    let token = emu.client_credentials(FABRIKAM).await.str("access_token");
    let claims = identity::authenticate(&emu.state.lock(), &token).unwrap();
    assert_eq!(claims.roles, ["Group.ReadWrite.All", "User.ReadWrite.All"]);
}

#[tokio::test]
async fn cancelled_admin_consent_redirects_consent_required_and_legacy_permission_denied() {
    // graph-spec §1.3 (v2 error redirect with AADSTS65004; legacy /adminconsent form)
    let emu = start().await;
    let r = emu
        .http
        .post(format!("{}/{FABRIKAM}/v2.0/adminconsent", emu.base))
        .form(&[
            ("client_id", APP),
            ("scope", "https://graph.microsoft.com/.default"),
            ("redirect_uri", REDIRECT),
            ("state", "9"),
            ("action", "cancel"),
        ])
        .send()
        .await
        .unwrap();
    let q = location_query(&r);
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["error"], "consent_required");
    assert!(q["error_description"].starts_with(
        "AADSTS65004: The resource owner or authorization server denied the request.\r\nTrace ID: "
    ));
    assert_eq!(q["state"], "9");

    let r = emu
        .http
        .post(format!("{}/{FABRIKAM}/adminconsent", emu.base))
        .form(&[
            ("client_id", APP),
            ("redirect_uri", REDIRECT),
            ("state", "9"),
            ("action", "cancel"),
        ])
        .send()
        .await
        .unwrap();
    let q = location_query(&r);
    assert_eq!(q["error"], "permission_denied");
    assert_eq!(q["error_description"], "The admin canceled the request");
}

#[tokio::test]
async fn a_non_admin_cannot_grant_admin_consent() {
    // graph-spec §1.3 (admin consent needs an administrator; 90094 AdminConsentRequired)
    let emu = start().await;
    let r = emu
        .http
        .post(format!("{}/{CONTOSO}/v2.0/adminconsent", emu.base))
        .form(&[
            ("client_id", OTHER_APP),
            ("scope", "https://graph.microsoft.com/.default"),
            ("redirect_uri", REDIRECT),
            ("login", PLAIN_USER),
            ("passwd", PLAIN_USER_PASSWORD),
            ("action", "accept"),
        ])
        .send()
        .await
        .unwrap();
    let q = location_query(&r);
    assert_eq!(q["error"], "access_denied");
    assert!(q["error_description"].starts_with("AADSTS90094: "));
    assert!(
        !emu.state.lock().tenants[CONTOSO]
            .app_grants
            .contains_key(OTHER_APP)
    );
}

#[tokio::test]
async fn a_disabled_account_cannot_sign_in_50057() {
    // graph-spec §1.4 error table (50057 UserDisabled, accountEnabled=false)
    let emu = start().await;
    {
        let mut state = emu.state.lock();
        let tenant = state.tenants.get_mut(CONTOSO).unwrap();
        let user = tenant
            .users
            .values_mut()
            .find(|u| u.upn() == ADMIN)
            .unwrap();
        user.properties
            .insert("accountEnabled".into(), serde_json::json!(false));
    }
    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("login", ADMIN),
                ("passwd", ADMIN_PASSWORD),
                ("action", "accept"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-ms-ests-error"], "50057");
}

#[tokio::test]
async fn an_unknown_tenant_or_client_gets_an_error_page() {
    // graph-spec §1.1/§1.6 (90002 unknown tenant, 700016 unknown client): no redirect is trusted
    let emu = start().await;
    let page = |tenant: &str, client: &str| {
        emu.http
            .get(format!("{}/{tenant}/oauth2/v2.0/authorize", emu.base))
            .query(&[
                ("client_id", client),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
            ])
            .send()
    };
    let r = page("nowhere.example", APP).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["x-ms-ests-error"], "90002");
    let r = page(CONTOSO, "bbbbbbbb-0000-4000-8000-000000000009")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["x-ms-ests-error"], "700016");
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn the_id_token_echoes_the_authorize_nonce() {
    // graph-spec §1.2 (`openid` → id_token); OIDC nonce echo
    let emu = start().await;
    let r = emu
        .submit_authorize(
            CONTOSO,
            &[
                ("client_id", APP),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("scope", GRAPH_SCOPES),
                ("nonce", "n-0S6_WzA2Mj"),
                ("login", ADMIN),
                ("passwd", ADMIN_PASSWORD),
                ("action", "accept"),
            ],
        )
        .await;
    let code = location_query(&r)["code"].clone();
    let mut form = redeem(&code, VERIFIER);
    form.pop();
    let reply = emu.token(CONTOSO, &form).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(jwt_payload(&reply.str("id_token"))["nonce"], "n-0S6_WzA2Mj");
}

fn authorize_form<'a>(login: &'a str, password: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", APP),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", GRAPH_SCOPES),
        ("state", "st-tenant"),
        ("login", login),
        ("passwd", password),
        ("action", "accept"),
    ]
}

#[tokio::test]
async fn a_user_of_another_tenant_cannot_sign_in_at_a_tenant_specific_authority() {
    // R-CONN-7; AADSTS50020 (UserUnauthorized; not in graph-spec §1, exact wording unconfirmed)
    let emu = start().await;
    let r = emu
        .submit_authorize(CONTOSO, &authorize_form(FAB_ADMIN, FAB_ADMIN_PASSWORD))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the page again, no redirect");
    assert!(
        r.headers().get("location").is_none(),
        "nothing reaches the app"
    );
    assert_eq!(r.headers()["x-ms-ests-error"], "50020");
    let html = r.text().await.unwrap();
    assert!(
        html.contains(&format!(
            "AADSTS50020: User account &#39;{FAB_ADMIN}&#39; from identity provider"
        )),
        "{html}"
    );
    assert!(html.contains("does not exist in tenant"), "{html}");
    let identity: serde_json::Value = emu
        .http
        .get(format!("{}/_emulator/identity/state", emu.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        identity["codes"],
        serde_json::json!([]),
        "no code was issued"
    );
    // The same admin signs in at their own tenant's authority, or at `organizations`.
    for authority in [FABRIKAM, "fabrikam.onmicrosoft.com", "organizations"] {
        let r = emu
            .submit_authorize(authority, &authorize_form(FAB_ADMIN, FAB_ADMIN_PASSWORD))
            .await;
        assert_eq!(r.status(), StatusCode::FOUND, "{authority}");
    }
    // The tenant's own admin signs in at its authority.
    let r = emu
        .submit_authorize(CONTOSO, &authorize_form(ADMIN, ADMIN_PASSWORD))
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_foreign_user_with_a_wrong_password_is_refused_for_the_password_first() {
    // R-CONN-7: the user is authenticated at home before the resource tenant refuses them, so a
    // wrong password is 50126 (nothing reveals whether the account would be refused later).
    let emu = start().await;
    let r = emu
        .submit_authorize(CONTOSO, &authorize_form(FAB_ADMIN, "wrong"))
        .await;
    assert_eq!(r.headers()["x-ms-ests-error"], "50126");
    // An address no tenant knows is still 50034 at a tenant authority.
    let r = emu
        .submit_authorize(CONTOSO, &authorize_form("nobody@nowhere.example", "x"))
        .await;
    assert_eq!(r.headers()["x-ms-ests-error"], "50034");
}
