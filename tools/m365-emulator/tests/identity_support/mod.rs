//! Shared fixtures of the identity test suites: an in-process emulator on 127.0.0.1:0 with a
//! small two-tenant seed, and helpers for the token endpoint and the sign-in form.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use m365_emulator::{AppState, Seed, State};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use tokio::sync::oneshot;

pub const CONTOSO: &str = "11111111-1111-4111-8111-111111111111";
pub const FABRIKAM: &str = "22222222-2222-4222-8222-222222222222";
pub const APP: &str = "aaaaaaaa-0000-4000-8000-000000000001";
pub const OTHER_APP: &str = "aaaaaaaa-0000-4000-8000-000000000002";
pub const SECRET: &str = "s3cret~Value.0001";
pub const OLD_SECRET: &str = "expired~Value.0000";
pub const REDIRECT: &str = "http://localhost:8400/oauth/callback";
pub const ADMIN: &str = "admin@contoso.com";
pub const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";
pub const FAB_ADMIN: &str = "admin@fabrikam.onmicrosoft.com";
pub const FAB_ADMIN_PASSWORD: &str = "Fab-Adm1n-Passw0rd!";
pub const PLAIN_USER: &str = "user@contoso.com";
pub const PLAIN_USER_PASSWORD: &str = "Us3r-Passw0rd!";
pub const GRAPH_SCOPES: &str = "openid profile offline_access https://graph.microsoft.com/User.ReadWrite.All https://graph.microsoft.com/Group.ReadWrite.All";

pub fn seed_json() -> String {
    serde_json::json!({
        "applications": [
            {
                "appId": APP,
                "displayName": "m365-sync test app",
                "secrets": [
                    {"value": SECRET},
                    {"value": OLD_SECRET, "expiresAt": "2020-01-01T00:00:00Z"}
                ],
                "redirectUris": [REDIRECT],
                "requiredRoles": ["User.ReadWrite.All", "Group.ReadWrite.All"],
                "requiredScopes": ["User.ReadWrite.All", "Group.ReadWrite.All"],
                "grants": [{"tenant": CONTOSO, "roles": ["User.ReadWrite.All", "Group.ReadWrite.All"]}]
            },
            {
                "appId": OTHER_APP,
                "displayName": "other app",
                "secrets": [{"value": "other~secret"}],
                "redirectUris": [REDIRECT],
                "requiredRoles": ["User.Read.All"],
                "requiredScopes": ["User.Read.All"]
            }
        ],
        "tenants": [
            {
                "id": CONTOSO,
                "displayName": "Contoso",
                "domains": [
                    {"name": "contoso.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true},
                    {"name": "contoso.com", "authenticationType": "Managed", "isDefault": true}
                ],
                "users": [
                    {"userPrincipalName": PLAIN_USER, "password": PLAIN_USER_PASSWORD}
                ],
                "admins": [
                    {"userPrincipalName": ADMIN, "password": ADMIN_PASSWORD, "consentedApps": [APP]}
                ]
            },
            {
                "id": FABRIKAM,
                "displayName": "Fabrikam",
                "domains": [
                    {"name": "fabrikam.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true, "isDefault": true}
                ],
                "admins": [
                    {"userPrincipalName": FAB_ADMIN, "password": FAB_ADMIN_PASSWORD}
                ]
            }
        ]
    })
    .to_string()
}

/// An emulator running in this test's runtime; stopped on drop.
pub struct Emu {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Emu {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start() -> Emu {
    let seed = Seed::from_json(&seed_json()).expect("seed parses");
    let state = AppState::new(State::from_seed(seed).expect("seed is consistent"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    let app_state = state.clone();
    tokio::spawn(async move {
        let _ = m365_emulator::serve_with_shutdown(listener, app_state, async {
            let _ = rx.await;
        })
        .await;
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Emu {
        base,
        state,
        http,
        stop: Some(tx),
    }
}

/// A token-endpoint response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn aadsts(&self) -> u64 {
        self.body["error_codes"][0].as_u64().unwrap_or_default()
    }
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }
    pub fn str(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_default().to_owned()
    }
}

impl Emu {
    pub fn advance(&self, by: chrono::Duration) {
        self.state.lock().clock.advance(by);
    }

    pub async fn token(&self, tenant: &str, form: &[(&str, &str)]) -> Reply {
        let r = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.base))
            .header("client-request-id", "7d3a51f2-0000-4000-8000-00000000c1d0")
            .form(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn client_credentials(&self, tenant: &str) -> Reply {
        self.token(
            tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_secret", SECRET),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await
    }

    /// POSTs the sign-in form (what a browser would send after "Accept").
    pub async fn submit_authorize(
        &self,
        tenant: &str,
        params: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(format!("{}/{tenant}/oauth2/v2.0/authorize", self.base))
            .form(params)
            .send()
            .await
            .unwrap()
    }

    /// Signs the admin in with PKCE S256 and returns the authorization code.
    pub async fn code_for(
        &self,
        tenant: &str,
        login: &str,
        password: &str,
        verifier: &str,
    ) -> String {
        let challenge = s256(verifier);
        let r = self
            .submit_authorize(
                tenant,
                &[
                    ("client_id", APP),
                    ("response_type", "code"),
                    ("redirect_uri", REDIRECT),
                    ("scope", GRAPH_SCOPES),
                    ("state", "st-123"),
                    ("code_challenge", &challenge),
                    ("code_challenge_method", "S256"),
                    ("login", login),
                    ("passwd", password),
                    ("action", "accept"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FOUND, "sign-in must redirect");
        let q = location_query(&r);
        q.get("code").cloned().expect("redirect carries a code")
    }

    /// Full authorization-code flow for the Contoso admin; returns the token response.
    pub async fn admin_tokens(&self) -> Reply {
        let verifier = "a-verifier-that-is-long-enough-0123456789-abcdef";
        let code = self
            .code_for(CONTOSO, ADMIN, ADMIN_PASSWORD, verifier)
            .await;
        let reply = self
            .token(
                CONTOSO,
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", APP),
                    ("client_secret", SECRET),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        reply
    }

    pub async fn refresh(&self, tenant: &str, rt: &str) -> Reply {
        self.token(
            tenant,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", APP),
                ("client_secret", SECRET),
                ("refresh_token", rt),
            ],
        )
        .await
    }
}

pub fn s256(verifier: &str) -> String {
    use sha2::Digest as _;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// The query (or fragment) parameters of a redirect's `Location`.
pub fn location_query(r: &reqwest::Response) -> HashMap<String, String> {
    let location = r
        .headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .replacen('#', "?", 1);
    let url = Url::parse(&location).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The decoded payload of a JWT-shaped token.
pub fn jwt_payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("three segments");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Checks the graph-spec §1.6 error body: every member, the description layout and the
/// timestamp format; returns nothing, panics with a message on a mismatch.
pub fn assert_error_body(reply: &Reply, status: StatusCode, error: &str, aadsts: u64) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.error(), error, "{:?}", reply.body);
    assert_eq!(reply.body["error_codes"], serde_json::json!([aadsts]));
    let description = reply.str("error_description");
    assert!(
        description.starts_with(&format!("AADSTS{aadsts}: ")),
        "description starts with the AADSTS code: {description}"
    );
    let request_id = reply.headers["request-id"].to_str().unwrap().to_owned();
    assert!(description.contains(&format!("\r\nTrace ID: {request_id}\r\n")));
    assert!(description.contains("\r\nCorrelation ID: 7d3a51f2-0000-4000-8000-00000000c1d0\r\n"));
    let timestamp = reply.str("timestamp");
    assert!(description.ends_with(&format!("\r\nTimestamp: {timestamp}")));
    // `YYYY-MM-DD HH:MM:SSZ`: a space, not `T`.
    assert!(
        chrono::NaiveDateTime::parse_from_str(&timestamp, "%Y-%m-%d %H:%M:%SZ").is_ok(),
        "timestamp format: {timestamp}"
    );
    assert_eq!(reply.str("trace_id"), request_id);
    assert_eq!(
        reply.str("correlation_id"),
        "7d3a51f2-0000-4000-8000-00000000c1d0"
    );
    assert_eq!(
        reply.str("error_uri"),
        format!("https://login.microsoftonline.com/error?code={aadsts}")
    );
    assert_eq!(reply.headers["cache-control"], "no-store, no-cache");
}
