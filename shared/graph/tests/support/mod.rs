//! Shared fixtures of the m365-graph suites: the real m365-emulator in-process on 127.0.0.1:0
//! with a small seed, a `GraphClient` pointed at it, and helpers for its `/_emulator` admin API.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use m365_emulator::{AppState, Seed, State};
use m365_engine::model::{Email, NewM365User, TenantId};
use m365_graph::{GraphClient, GraphDirectory, HttpRetry, IdentityClient, TokenProvider, TokenSet};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const CONTOSO: &str = "0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f";
pub const APP: &str = "5f0c3e1a-9b7d-4c2e-8a61-0d4b2f7e9c11";
pub const SECRET: &str = "emulator-secret-m365-sync-1";
pub const REDIRECT: &str = "http://localhost:8400/oauth/callback";
pub const ADMIN: &str = "admin@contoso.com";
pub const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";
pub const MANAGED: &str = "contoso.com";
pub const FEDERATED: &str = "fabrikam-federated.com";

/// The seed: one tenant (managed, federated and unverified domains), the app with every role it
/// needs plus the User Administrator directory role (password resets, graph-spec §3.4), an
/// admin who consented, and `extra_users` plain users.
pub fn seed_json(extra_users: usize) -> String {
    let users: Vec<Value> = (0..extra_users)
        .map(|i| json!({"userPrincipalName": format!("seeded{i:05}@{MANAGED}"), "displayName": format!("Seeded {i}")}))
        .collect();
    let roles = json!([
        "User.ReadWrite.All",
        "Group.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "Domain.Read.All",
        "Organization.Read.All",
        "RoleManagement.Read.Directory"
    ]);
    json!({
        "applications": [{
            "appId": APP,
            "displayName": "m365-sync",
            "secrets": [{"value": SECRET}],
            "redirectUris": [REDIRECT],
            "requiredRoles": roles,
            "requiredScopes": ["User.ReadWrite.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All", "Domain.Read.All", "Organization.Read.All", "RoleManagement.Read.Directory", "offline_access"],
            "grants": [{"tenant": CONTOSO, "roles": roles, "directoryRoles": ["User Administrator"]}]
        }],
        "tenants": [{
            "id": CONTOSO,
            "displayName": "Contoso",
            "domains": [
                {"name": "contoso.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true},
                {"name": MANAGED, "authenticationType": "Managed", "isDefault": true},
                {"name": FEDERATED, "authenticationType": "Federated"},
                {"name": "pending.contoso.net", "authenticationType": "Managed", "isVerified": false}
            ],
            "users": users,
            "groups": [{"displayName": "Operations", "mailNickname": "operations", "members": [ADMIN]}],
            "admins": [{"userPrincipalName": ADMIN, "password": ADMIN_PASSWORD, "consentedApps": [APP]}]
        }]
    })
    .to_string()
}

/// App-only tokens for Contoso (client credentials), kept until they near expiry.
#[derive(Debug, Clone)]
pub struct AppTokens(IdentityClient, Arc<Mutex<Option<TokenSet>>>);

impl AppTokens {
    pub fn new(identity: IdentityClient) -> Self {
        Self(identity, Arc::default())
    }

    async fn grant(&self) -> m365_engine::Result<SecretString> {
        let tokens = self.0.client_credentials(CONTOSO).await?;
        let access = tokens.access_token.clone();
        *self.1.lock().unwrap() = Some(tokens);
        Ok(access)
    }
}

impl TokenProvider for AppTokens {
    async fn access_token(&self, _tenant: &TenantId) -> m365_engine::Result<SecretString> {
        let kept = self.1.lock().unwrap().as_ref().and_then(|t| {
            (t.expires_at - chrono::Duration::minutes(2) > chrono::Utc::now())
                .then(|| t.access_token.clone())
        });
        match kept {
            Some(token) => Ok(token),
            None => self.grant().await,
        }
    }

    async fn refresh_access_token(
        &self,
        _tenant: &TenantId,
        _rejected: &SecretString,
    ) -> m365_engine::Result<SecretString> {
        self.grant().await
    }
}

/// An emulator running in this test's runtime; stopped on drop.
pub struct Emu {
    pub base: String,
    pub state: AppState,
    pub admin: reqwest::Client,
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
    start_with(0).await
}

/// The emulator with Contoso's app-only directory and tenant id, what most directory tests start from.
pub async fn start_app_only() -> (Emu, GraphDirectory<AppTokens>, TenantId) {
    let emu = start().await;
    let dir = emu.directory();
    let tenant = emu.tenant();
    (emu, dir, tenant)
}

pub async fn start_with(extra_users: usize) -> Emu {
    let seed = Seed::from_json(&seed_json(extra_users)).expect("seed parses");
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
    let admin = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Emu {
        base,
        state,
        admin,
        stop: Some(tx),
    }
}

/// Fast retries for tests (the bounds are what is proven, not the production values).
pub fn fast_retry() -> HttpRetry {
    HttpRetry {
        max_attempts: 5,
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        budget: Duration::from_secs(10),
        not_yet_visible_window: Duration::from_secs(60),
        max_not_yet_visible_attempts: 8,
    }
}

impl Emu {
    pub fn client(&self) -> GraphClient {
        self.client_with(Duration::from_secs(5), fast_retry())
    }

    pub fn client_with(&self, timeout: Duration, retry: HttpRetry) -> GraphClient {
        GraphClient::builder()
            .graph_base(format!("{}/v1.0", self.base))
            .identity_base(&self.base)
            .request_timeout(timeout)
            .retry(retry)
            .build()
            .unwrap()
    }

    pub fn identity(&self, client: &GraphClient) -> IdentityClient {
        client
            .identity(APP, SecretString::from(SECRET.to_owned()))
            .with_redirect_uri(REDIRECT)
    }

    pub fn tenant(&self) -> TenantId {
        Self::tenant_id()
    }

    pub fn tenant_id() -> TenantId {
        TenantId::parse(CONTOSO).unwrap()
    }

    /// An app-only directory for Contoso.
    pub fn directory_from(&self, client: GraphClient) -> GraphDirectory<AppTokens> {
        let identity = self.identity(&client);
        GraphDirectory::new(client, AppTokens::new(identity))
    }

    pub fn directory(&self) -> GraphDirectory<AppTokens> {
        self.directory_from(self.client())
    }

    /// Sends `method path` (with a JSON `body`) to the emulator's admin API; asserts a 2xx.
    async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.admin.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> Value {
        let r = self
            .admin_call(reqwest::Method::POST, path, Some(&body))
            .await;
        r.json().await.unwrap_or(Value::Null)
    }

    pub async fn fault(&self, body: Value) {
        self.admin_post("/_emulator/faults", body).await;
    }

    pub async fn faults(&self) -> Vec<Value> {
        let r = self
            .admin_call(reqwest::Method::GET, "/_emulator/faults", None)
            .await;
        let v: Value = r.json().await.unwrap();
        v["faults"].as_array().cloned().unwrap_or_default()
    }

    pub async fn realism(&self, body: Value) {
        self.admin_call(reqwest::Method::PUT, "/_emulator/realism", Some(&body))
            .await;
    }

    /// Active (not deleted) users with this UPN in the emulator's state.
    pub fn accounts_with_upn(&self, upn: &str) -> usize {
        let state = self.state.lock();
        state.tenants[CONTOSO]
            .users
            .values()
            .filter(|u| u.deleted_at.is_none() && u.upn().eq_ignore_ascii_case(upn))
            .count()
    }

    pub fn user_enabled(&self, id: &str) -> Option<bool> {
        let state = self.state.lock();
        state.tenants[CONTOSO]
            .users
            .get(id)
            .map(|u| u.account_enabled())
    }

    /// The admin signs in through the emulator's form and the code is redeemed with the PKCE
    /// verifier (the callback echoing our state): the tokens of the consent.
    pub async fn consent(&self) -> TokenSet {
        let client = self.client();
        let identity = self.identity(&client);
        let start = identity.authorization_url("organizations").unwrap();
        let (code, state) = self.sign_in(&start.url).await;
        assert_eq!(state, start.state, "the callback echoes our state");
        identity
            .exchange_code(
                "organizations",
                &SecretString::from(code),
                &start.pkce_verifier,
            )
            .await
            .expect("code exchange succeeds")
    }

    /// Signs the admin in through the emulator's sign-in form using `start`'s URL; returns the
    /// redirect's `code` and `state`.
    pub async fn sign_in(&self, url: &reqwest::Url) -> (String, String) {
        let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        form.push(("login".into(), ADMIN.into()));
        form.push(("passwd".into(), ADMIN_PASSWORD.into()));
        form.push(("action".into(), "accept".into()));
        let mut post = url.clone();
        post.set_query(None);
        let r = self.admin.post(post).form(&form).send().await.unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::FOUND, "sign-in redirects");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let pairs: HashMap<String, String> = reqwest::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        (
            pairs.get("code").cloned().expect("a code"),
            pairs.get("state").cloned().expect("the state"),
        )
    }
}

/// A new enabled Contoso user `<local>@contoso.com` (display name `User <local>`) with a
/// policy-compliant password.
pub fn new_user(local: &str) -> NewM365User {
    m365_engine::testing::contract::new_m365_user(
        Email::parse(&format!("{local}@{MANAGED}")).unwrap(),
        &local.replace('.', ""),
        &format!("User {local}"),
    )
}

/// A new enabled Contoso user `<local>@contoso.com` named Adele Vance (given name and surname
/// set, no job title or department) with a policy-compliant password.
pub fn adele(local: &str) -> NewM365User {
    NewM365User {
        user_principal_name: Email::parse(&format!("{local}@{MANAGED}")).unwrap(),
        mail_nickname: local.replace('.', ""),
        display_name: "Adele Vance".into(),
        given_name: Some("Adele".into()),
        surname: Some("Vance".into()),
        job_title: None,
        department: None,
        attributes: Default::default(),
        account_enabled: true,
        password: SecretString::from("xWwvJ]6NMw+bWH-d".to_owned()),
    }
}

/// Runs `write`, a write that meets the emulator's replication lag: it succeeds, retried past
/// the lag, so it takes at least 300 ms. Returns what it answered.
pub async fn retried_past_lag<T, E: std::fmt::Debug>(
    write: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    let started = std::time::Instant::now();
    let done = write.await.expect("retried past the lag");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    done
}

/// Whether `error` is the identity platform's infrastructure failure (not a refusal of the
/// caller's input).
pub fn is_identity_failure(error: &m365_engine::Error) -> bool {
    matches!(
        error,
        m365_engine::Error::Infrastructure {
            component: "identity",
            ..
        }
    )
}

/// A new fake vault holding `tokens` for `tenant` (clones, e.g. a provider's, share it).
pub async fn vault_holding(
    tenant: &TenantId,
    tokens: &m365_engine::model::TenantTokens,
) -> m365_engine::testing::FakeTokenVault {
    use m365_engine::ports::TokenVault;
    let vault = m365_engine::testing::FakeTokenVault::default();
    let request = m365_engine::model::RequestToken::parse("0".repeat(32)).unwrap();
    vault.create(tenant, tokens, &request).await.unwrap();
    vault
}
