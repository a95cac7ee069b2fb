//! Shared harness for the Graph HTTP tests: starts the emulator in-process on 127.0.0.1:0 with
//! the example seed, mints tokens, and offers small request helpers.
#![allow(dead_code)]

use chrono::Duration;
use m365_emulator::identity::{AccessClaims, mint_access_token};
use m365_emulator::{AppState, Seed, State};
use serde_json::Value;

pub const CONTOSO: &str = "0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f";
pub const NORTHWIND: &str = "9d3b1e7a-6c4f-4a2d-8e5b-7f6a5b4c3d2e";
pub const SYNC_APP: &str = "5f0c3e1a-9b7d-4c2e-8a61-0d4b2f7e9c11";
pub const READER_APP: &str = "7a9e2d44-1c3b-4f58-b6a0-3e5d8c2f1b22";
pub const ADELE: &str = "87d349ed-44d7-43e1-9a83-5f2406dee5bd";
pub const ALEX: &str = "626cbf8c-5dde-46b0-8385-9e40d64736fe";
pub const LEE: &str = "e8a02cc7-df4d-4778-956d-784cc9506e5a";
pub const ENGINEERING: &str = "02bd9fd6-8f93-4758-87c3-1fb73740a315";
pub const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
pub const EMS: &str = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e";

pub const ALL_ROLES: &[&str] = &[
    "User.ReadWrite.All",
    "Group.ReadWrite.All",
    "GroupMember.ReadWrite.All",
    "Domain.Read.All",
    "Organization.Read.All",
    "AuditLog.Read.All",
];

/// A running emulator.
pub struct Emu {
    pub base: String,
    pub app: AppState,
    pub http: reqwest::Client,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Emu {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn seed() -> Seed {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/example.json");
    let text = std::fs::read_to_string(path).expect("seed file");
    Seed::from_json(&text).expect("seed parses")
}

impl Emu {
    pub async fn start() -> Emu {
        let state = State::from_seed(seed()).expect("seed is consistent");
        let app = AppState::new(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(m365_emulator::serve(listener, app.clone()));
        Emu {
            base: format!("http://{addr}"),
            app,
            http: reqwest::Client::new(),
            task,
        }
    }

    /// An app-only token for `tenant` with `roles`.
    pub fn token(&self, tenant: &str, app_id: &str, roles: &[&str]) -> String {
        let mut state = self.app.lock();
        let now = state.clock.now();
        mint_access_token(
            &mut state,
            AccessClaims {
                tenant_id: tenant.to_owned(),
                app_id: app_id.to_owned(),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
                scopes: Vec::new(),
                user_upn: None,
                expires_at: now + Duration::hours(1),
            },
        )
    }

    /// The m365-sync app's token in Contoso with every role it was granted.
    pub fn contoso(&self) -> String {
        self.token(CONTOSO, SYNC_APP, ALL_ROLES)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, token: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        parts(r).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        parts(req.send().await.expect("send")).await
    }

    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::POST, token, path, Some(body))
            .await
    }

    pub async fn patch(
        &self,
        token: &str,
        path: &str,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::PATCH, token, path, Some(body))
            .await
    }

    pub async fn delete(
        &self,
        token: &str,
        path: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(reqwest::Method::DELETE, token, path, None).await
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (s, _, v) = parts(req.send().await.expect("send")).await;
        (s, v)
    }
}

pub async fn parts(r: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, headers, body)
}

/// Asserts the §2.2 envelope: code, message and an innerError with date/request-id/client-request-id.
pub fn assert_error(body: &Value, code: &str, message: &str) {
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert_eq!(body["error"]["message"], message, "body: {body}");
    let inner = &body["error"]["innerError"];
    let date = inner["date"].as_str().expect("innerError.date");
    assert!(
        chrono::NaiveDateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S").is_ok(),
        "date {date}"
    );
    assert!(
        inner["request-id"].as_str().is_some_and(|s| s.len() == 36),
        "body: {body}"
    );
    assert!(
        inner["client-request-id"].as_str().is_some(),
        "body: {body}"
    );
}

pub fn new_user(upn: &str) -> Value {
    serde_json::json!({
        "accountEnabled": true,
        "displayName": "New Person",
        "mailNickname": upn.split('@').next().unwrap_or_default(),
        "userPrincipalName": upn,
        "usageLocation": "US",
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}
    })
}

/// Follows a delta round from `url` to its deltaLink: every item and the deltaLink (graph-spec §5).
pub async fn follow(emu: &Emu, token: &str, url: &str) -> (Vec<Value>, String) {
    let mut items = Vec::new();
    let mut url = url.to_owned();
    loop {
        let (status, _, body) = parts(
            emu.http
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        items.extend(body["value"].as_array().expect("value").iter().cloned());
        if let Some(next) = body["@odata.nextLink"].as_str() {
            url = next.to_owned();
        } else {
            return (
                items,
                body["@odata.deltaLink"]
                    .as_str()
                    .expect("deltaLink")
                    .to_owned(),
            );
        }
    }
}
