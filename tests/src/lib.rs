//! The integration-test harness of m365-sync functions: fresh resources on moto (reached through
//! `AWS_ENDPOINT_URL`, like every adapter), the m365-emulator in-process on 127.0.0.1:0, the
//! functions' wiring built from them exactly as in production (`App` + `GraphApp`), real API
//! Gateway HTTP API v2.0 events, an admin who signs in on the emulator's page, and a log capture
//! to prove no secret is ever logged.
//!
//! Without `AWS_ENDPOINT_URL` the scenarios skip loudly on a developer machine and FAIL in CI
//! (`CI` set). Run them with `scripts/with-moto.sh cargo test -p m365-integration-tests`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, TimeDelta, Utc};
use m365_engine::ports::Clock;

use aws_config::{BehaviorVersion, SdkConfig};
use m365_aws::{OAuthClientCredentials, Resources, schema};
use m365_emulator::{AppState, Seed, State};
use m365_lambda::provision::Deployed;
use m365_lambda::{App, Config, GraphApp, GraphConfig};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The app registration seeded in the emulator.
pub const APP_ID: &str = "5f0c3e1a-9b7d-4c2e-8a61-0d4b2f7e9c11";
/// Its secret.
pub const APP_SECRET: &str = "emulator-secret-m365-sync-1";
/// Its registered redirect URI (the connect callback).
pub const REDIRECT: &str = "http://localhost:8400/oauth/callback";
/// Contoso: managed custom domains plus a federated one (a mixed tenant).
pub const CONTOSO: &str = "0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f";
/// Contoso's admin.
pub const CONTOSO_ADMIN: (&str, &str) = ("admin@contoso.com", "Adm1n-Passw0rd!");
/// Northwind: every custom domain federated (GoDaddy-style).
pub const NORTHWIND: &str = "9d3b1e7a-6c4f-4a2d-8e5b-7f6a5b4c3d2e";
/// Northwind's admin (on the managed initial domain).
pub const NORTHWIND_ADMIN: (&str, &str) = ("admin@northwind.onmicrosoft.com", "Northwind-Adm1n!");
/// Contoso's `ENTERPRISEPACK` SKU id (5 seats; plans `SWAY`, `EXCHANGE_S_ENTERPRISE`; R-LIC-1).
pub const SKU_E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
/// Contoso's `POWER_BI_PRO` SKU id (5 seats).
pub const SKU_POWER_BI: &str = "f8a1db68-be16-40ed-86d5-cb42ce701560";
/// Contoso's `VISIOCLIENT` SKU id (a single seat).
pub const SKU_VISIO: &str = "c5928f49-12ba-48f7-ada3-0d743a3601d5";
/// The `SWAY` plan of `ENTERPRISEPACK`.
pub const PLAN_SWAY: &str = "a23b959c-7ce8-4e57-9140-b90eb88a9e97";
/// The `EXCHANGE_S_ENTERPRISE` plan of `ENTERPRISEPACK`.
pub const PLAN_EXCHANGE: &str = "efb87545-963c-4e0d-99df-69c6916d9eb0";
/// Enabled Contoso users seeded for deauthorization checks.
pub const CONTOSO_USERS: [&str; 3] = ["adele@contoso.com", "alex@contoso.com", "lynne@contoso.com"];
/// Fabrikam: a second, managed tenant (R-CONN-7: a consent from the wrong tenant that is not also
/// a federated refusal).
pub const FABRIKAM: &str = "4e2f6a1c-8b3d-4c5e-9a7f-2d1c0b9e8f7a";
/// Fabrikam's admin.
pub const FABRIKAM_ADMIN: (&str, &str) = ("admin@fabrikam.com", "Fabrikam-Adm1n!");
/// Fabrikam's users (none of them may ever be readable through a Contoso connection).
pub const FABRIKAM_USERS: [&str; 2] = ["megan@fabrikam.com", "nestor@fabrikam.com"];

/// The harness's seed with `extra` users (Graph user JSON) added to Contoso.
fn seed_with(extra: Vec<Value>) -> String {
    let roles = json!([
        "User.ReadWrite.All",
        "Group.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "Domain.Read.All",
        "Organization.Read.All",
        "RoleManagement.Read.Directory"
    ]);
    let mut users: Vec<Value> = CONTOSO_USERS
        .iter()
        .map(|upn| json!({"userPrincipalName": upn, "accountEnabled": true}))
        .collect();
    users.extend(extra);
    let fabrikam_users: Vec<Value> = FABRIKAM_USERS
        .iter()
        .map(|upn| json!({"userPrincipalName": upn, "accountEnabled": true}))
        .collect();
    json!({
        "applications": [{
            "appId": APP_ID,
            "displayName": "m365-sync",
            "secrets": [{"value": APP_SECRET}],
            "redirectUris": [REDIRECT],
            "requiredRoles": roles,
            "requiredScopes": ["User.ReadWrite.All", "Group.ReadWrite.All", "GroupMember.ReadWrite.All",
                               "Domain.Read.All", "Organization.Read.All", "RoleManagement.Read.Directory",
                               "offline_access"],
            "grants": [
                {"tenant": CONTOSO, "roles": roles, "directoryRoles": ["User Administrator"]},
                {"tenant": NORTHWIND, "roles": roles}
            ]
        }],
        "tenants": [
            {
                "id": CONTOSO,
                "displayName": "Contoso",
                "domains": [
                    {"name": "contoso.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true},
                    {"name": "contoso.com", "authenticationType": "Managed", "isDefault": true},
                    {"name": "sso.contoso.com", "authenticationType": "Federated"},
                    {"name": "pending.contoso.net", "authenticationType": "Managed", "isVerified": false}
                ],
                "users": users,
                // Licences (R-LIC-1): E3 with two plans, Power BI, and Visio with a single seat.
                "skus": [
                    {"skuId": SKU_E3, "skuPartNumber": "ENTERPRISEPACK", "enabledUnits": 5, "servicePlans": [
                        {"servicePlanId": PLAN_SWAY, "servicePlanName": "SWAY"},
                        {"servicePlanId": PLAN_EXCHANGE, "servicePlanName": "EXCHANGE_S_ENTERPRISE"}
                    ]},
                    {"skuId": SKU_POWER_BI, "skuPartNumber": "POWER_BI_PRO", "enabledUnits": 5},
                    {"skuId": SKU_VISIO, "skuPartNumber": "VISIOCLIENT", "enabledUnits": 1}
                ],
                "admins": [{"userPrincipalName": CONTOSO_ADMIN.0, "password": CONTOSO_ADMIN.1, "consentedApps": [APP_ID]}]
            },
            {
                "id": NORTHWIND,
                "displayName": "Northwind Traders (GoDaddy)",
                "domains": [
                    {"name": "northwind.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true},
                    {"name": "northwind.com", "authenticationType": "Federated", "isDefault": true}
                ],
                "admins": [{"userPrincipalName": NORTHWIND_ADMIN.0, "password": NORTHWIND_ADMIN.1, "consentedApps": [APP_ID]}]
            },
            {
                "id": FABRIKAM,
                "displayName": "Fabrikam",
                "domains": [
                    {"name": "fabrikam.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true},
                    {"name": "fabrikam.com", "authenticationType": "Managed", "isDefault": true}
                ],
                "users": fabrikam_users,
                "admins": [{"userPrincipalName": FABRIKAM_ADMIN.0, "password": FABRIKAM_ADMIN.1, "consentedApps": [APP_ID]}]
            }
        ]
    })
    .to_string()
}

/// The shared SDK configuration, or `None` (after a loud message) when no endpoint is set
/// outside CI.
pub async fn moto() -> Option<SdkConfig> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "AWS_ENDPOINT_URL is not set: integration tests need moto; in CI this is a failure"
        );
        eprintln!(
            "\n*** SKIPPED: AWS_ENDPOINT_URL is not set; run scripts/with-moto.sh cargo test -p \
             m365-integration-tests ***\n"
        );
        return None;
    }
    Some(aws_config::defaults(BehaviorVersion::latest()).load().await)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A new cursor key secret on moto (64 random characters), as the template's `CursorKeySecret`;
/// returns its name.
///
/// # Panics
/// When moto refuses the secret.
pub async fn cursor_key_secret(sdk: &SdkConfig) -> String {
    let name = unique("it-cursor-key");
    aws_sdk_secretsmanager::Client::new(sdk)
        .create_secret()
        .name(&name)
        .secret_string(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
        .send()
        .await
        .expect("cursor key secret");
    name
}

/// The m365-emulator, in this test's runtime; stopped on drop.
#[derive(Debug)]
pub struct Emulator {
    /// Its base URL.
    pub base: String,
    /// An HTTP client that does not follow redirects (the sign-in page answers 302).
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Emulator {
    /// Starts the emulator with the harness's seed.
    pub async fn start() -> Self {
        Self::start_with_users(Vec::new()).await
    }

    /// Starts the emulator with the harness's seed plus `extra` Contoso users (Graph user JSON,
    /// e.g. a large tenant for import paging).
    pub async fn start_with_users(extra: Vec<Value>) -> Self {
        let state =
            AppState::new(State::from_seed(Seed::from_json(&seed_with(extra)).unwrap()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = m365_emulator::serve_with_shutdown(listener, state, async {
                let _ = rx.await;
            })
            .await;
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            base,
            http,
            stop: Some(tx),
        }
    }

    /// The admin signs in and consents on the authorize page `url`; returns the callback's query
    /// parameters (`code` and `state`, or `error`).
    pub async fn sign_in(&self, url: &str, admin: (&str, &str)) -> HashMap<String, String> {
        let r = self.submit_sign_in(url, admin).await;
        assert_eq!(
            r.status(),
            reqwest::StatusCode::FOUND,
            "the sign-in redirects"
        );
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(location.starts_with(REDIRECT), "{location}");
        reqwest::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect()
    }

    /// Posts the sign-in and consent form of the authorize page `url` as `login` would; the raw
    /// answer (a 302 to the callback, or the page again with `x-ms-ests-error`).
    pub async fn submit_sign_in(
        &self,
        url: &str,
        (login, password): (&str, &str),
    ) -> reqwest::Response {
        let url = reqwest::Url::parse(url).unwrap();
        // The page is served where the URL points; re-base it on the emulator (the identity base).
        assert!(
            url.as_str().starts_with(&self.base),
            "{url} is not on the emulator"
        );
        let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        form.push(("login".into(), login.into()));
        form.push(("passwd".into(), password.into()));
        form.push(("action".into(), "accept".into()));
        let mut post = url.clone();
        post.set_query(None);
        self.http.post(post).form(&form).send().await.unwrap()
    }

    /// `GET` on the control API.
    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST`/`PUT`/`DELETE` on the control API (JSON body).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> reqwest::StatusCode {
        self.http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Delta pages of at most `size` items from now on (the emulator's realism setting).
    ///
    /// # Panics
    /// When the emulator refuses it.
    pub async fn delta_page_size(&self, size: u32) {
        let status = self
            .send(
                reqwest::Method::PUT,
                "/_emulator/realism",
                json!({ "deltaPageSize": size }),
            )
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// Graph writes and identity calls the emulator counted for `tenant`.
    pub async fn requests(&self, tenant: &str) -> Value {
        self.get(&format!("/_emulator/tenants/{tenant}/requests"))
            .await
    }

    /// A fresh Graph access token of our app in `tenant`, minted by the emulator's control API.
    pub async fn app_token(&self, tenant: &str) -> String {
        let token: Value = self
            .http
            .post(format!("{}/_emulator/tokens", self.base))
            .json(&json!({"tenant": tenant, "appId": APP_ID}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap().to_owned()
    }

    /// Moves the emulator's clock (Microsoft's time: token lifetimes, address holds, replication)
    /// `seconds` ahead.
    pub async fn advance_clock(&self, seconds: u64) {
        let status = self
            .send(
                reqwest::Method::POST,
                "/_emulator/clock/advance",
                json!({ "seconds": seconds }),
            )
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// A Graph request as our app in `tenant`, made behind the functions' back with a fresh app
    /// token from the emulator (an admin's script): the status and the JSON body (`null` when none).
    pub async fn graph_as_app(
        &self,
        tenant: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/v1.0{path}", self.base))
            .bearer_auth(self.app_token(tenant).await);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The member ids of the M365 group `group` in `tenant`, sorted (read through Graph).
    pub async fn group_member_ids(&self, tenant: &str, group: &str) -> Vec<String> {
        let (status, body) = self
            .graph_as_app(
                tenant,
                reqwest::Method::GET,
                &format!("/groups/{group}/members?$select=id"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let mut ids: Vec<String> = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    }

    /// `accountEnabled` of each user of `tenant` by UPN.
    pub async fn accounts_enabled(&self, tenant: &str) -> HashMap<String, bool> {
        let t = self.get(&format!("/_emulator/tenants/{tenant}")).await;
        t["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|u| {
                let p = &u["properties"];
                Some((
                    p["userPrincipalName"].as_str()?.to_lowercase(),
                    p["accountEnabled"].as_bool()?,
                ))
            })
            .collect()
    }
}

/// Fresh AWS resources on moto and the functions' wiring on them and on the emulator.
#[derive(Debug)]
pub struct World {
    /// The AWS side, as every function builds it.
    pub app: App,
    /// The SDK configuration on moto (the app keeps its own private; tests inspect queues,
    /// tables and secrets with clients of their own).
    pub sdk: SdkConfig,
    /// The Graph side, pointed at the emulator.
    pub graph: GraphApp,
    /// The emulator.
    pub emulator: Emulator,
}

impl World {
    /// New tables and a new secret prefix on moto, a new emulator; `None` when moto is absent.
    pub async fn start() -> Option<Self> {
        Self::start_with_users(Vec::new()).await
    }

    /// Like [`World::start`], with `extra` Contoso users seeded in the emulator.
    pub async fn start_with_users(extra: Vec<Value>) -> Option<Self> {
        let sdk = moto().await?;
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let mut names = HashMap::new();
        for table in [
            &schema::USERS,
            &schema::TENANTS,
            &schema::BINDINGS,
            &schema::EVENTS,
            &schema::FAILURES,
            &schema::LEDGER,
        ] {
            let name = unique(&table.logical_id.to_ascii_lowercase());
            table
                .create(&dynamodb, &name)
                .await
                .expect("table created on moto");
            names.insert(table.logical_id, name);
        }
        let config = Config::with_resources(
            Resources {
                users_table: names[schema::USERS.logical_id].clone(),
                tenants_table: names[schema::TENANTS.logical_id].clone(),
                bindings_table: names[schema::BINDINGS.logical_id].clone(),
                events_table: names[schema::EVENTS.logical_id].clone(),
                failures_table: names[schema::FAILURES.logical_id].clone(),
                ledger_table: names[schema::LEDGER.logical_id].clone(),
                // Not used by connect or token-refresh.
                retry_queue_url: "http://127.0.0.1:9/unused-retry".to_owned(),
                notifications_queue_url: "http://127.0.0.1:9/unused-notifications".to_owned(),
                tenant_secret_prefix: format!("{}/tenant/", unique("it")),
                seal_key_secret_id: "unused-seal-key".to_owned(),
                cursor_key_secret_id: cursor_key_secret(&sdk).await,
                secrets_kms_key_id: None,
            },
            "unused-oauth-client".to_owned(),
        );
        let app = App::with_sdk_config(config, sdk.clone());
        let emulator = Emulator::start_with_users(extra).await;
        let graph = graph_app(&app, &emulator);
        Some(Self {
            app,
            sdk,
            graph,
            emulator,
        })
    }

    /// A new Graph wiring on the emulator over the current [`World::app`], as one function's cold
    /// start builds it (its own client, and its own memory of recent creates).
    ///
    /// # Panics
    /// When the client cannot be built.
    #[must_use]
    pub fn graph_app(&self) -> GraphApp {
        graph_app(&self.app, &self.emulator)
    }

    /// What the provisioning functions need beyond [`World::start`]: a retry queue redriving to
    /// a DLQ after 5 receives, a notifications queue and the password seal key (all on moto,
    /// named after `prefix`), put into [`World::app`]'s configuration.
    ///
    /// # Panics
    /// When moto refuses a queue or the secret.
    pub async fn add_provisioning_resources(&mut self, prefix: &str) -> ProvisioningResources {
        let sdk = self.sdk.clone();
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dlq_url = queue(&sqs, &format!("{prefix}-dlq-{id}"), None).await;
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("queue arn");
        let retry_url = queue(&sqs, &format!("{prefix}-retry-{id}"), Some(&dlq_arn)).await;
        let notifications_url = queue(&sqs, &format!("{prefix}-notify-{id}"), None).await;
        let seal = format!("{prefix}-seal-{id}");
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(&seal)
            .secret_string(SEAL_KEY)
            .send()
            .await
            .expect("seal key secret");
        let mut config = self.app.config.clone();
        config.resources.retry_queue_url.clone_from(&retry_url);
        config
            .resources
            .notifications_queue_url
            .clone_from(&notifications_url);
        config.resources.seal_key_secret_id = seal;
        self.app = App::with_sdk_config(config, sdk);
        ProvisioningResources {
            retry_url,
            dlq_url,
            notifications_url,
        }
    }
}

/// The queues [`World::add_provisioning_resources`] made.
#[derive(Debug, Clone)]
pub struct ProvisioningResources {
    /// The retry queue.
    pub retry_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
    /// The notifications queue.
    pub notifications_url: String,
}

fn graph_app(app: &App, emulator: &Emulator) -> GraphApp {
    GraphApp::with_credentials(
        app,
        &GraphConfig {
            graph_base: Some(format!("{}/v1.0", emulator.base)),
            identity_base: Some(emulator.base.clone()),
            redirect_uri: Some(REDIRECT.to_owned()),
            ..GraphConfig::default()
        },
        OAuthClientCredentials {
            client_id: APP_ID.to_owned(),
            client_secret: SecretString::from(APP_SECRET.to_owned()),
            redirect_uri: None,
        },
    )
    .expect("Graph wiring on the emulator")
}

impl World {
    /// The connect function's wiring.
    #[must_use]
    pub fn connect(&self) -> connect::Deployed {
        connect::Deployed::from_app(&self.app, &self.graph)
    }

    /// The token-refresh function's wiring.
    #[must_use]
    pub fn token_refresh(&self) -> token_refresh::Deployed {
        token_refresh::Deployed::from_app(&self.app, &self.graph)
    }

    /// Sends an API request to the connect function; returns status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let request = api_request(method, path, query, body);
        let deps = self.connect().for_request(&request);
        let response = connect::handle(&deps, request).await.unwrap();
        json_response(&response)
    }

    /// `POST /tenants` then the admin's sign-in: the new tenant id and the callback's parameters.
    pub async fn start_and_sign_in(
        &self,
        name: &str,
        admin: (&str, &str),
    ) -> (String, HashMap<String, String>) {
        let (status, started) = self
            .call("POST", "/tenants", &[], Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 201, "{started}");
        let url = started["authorizeUrl"].as_str().unwrap();
        let params = self.emulator.sign_in(url, admin).await;
        (started["tenantId"].as_str().unwrap().to_owned(), params)
    }

    /// `GET /oauth/callback` with `params`.
    pub async fn callback(&self, params: &HashMap<String, String>) -> (u16, Value) {
        let query: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.call("GET", "/oauth/callback", &query, None).await
    }

    /// Connects Contoso end to end; returns the tenant id.
    pub async fn connect_contoso(&self, name: &str) -> String {
        let (tenant, params) = self.start_and_sign_in(name, CONTOSO_ADMIN).await;
        let (status, body) = self.callback(&params).await;
        assert_eq!(status, 200, "{body}");
        tenant
    }
}

/// An API Gateway HTTP API v2.0 event, as API Gateway sends it, decoded by `lambda_http`.
#[must_use]
pub fn api_request(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> lambda_http::Request {
    let event = api_event(method, path, query, body, &[]);
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The JSON of an API Gateway HTTP API v2.0 event (payload format 2.0) with extra `headers`
/// (lowercase names), as the Lambda Runtime API hands it to a function.
#[must_use]
pub fn api_event(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Value {
    let raw_query = query
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    let mut header_map = serde_json::Map::new();
    header_map.insert("content-type".into(), json!("application/json"));
    header_map.insert("host".into(), json!("api.example.test"));
    for (k, v) in headers {
        header_map.insert((*k).to_owned(), json!(v));
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": header_map,
        "queryStringParameters": if params.is_empty() { Value::Null } else { Value::Object(params) },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "api.example.test",
            "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "it"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": format!("{method} {path}"),
            "stage": "$default",
            "time": "27/Nov/2026:15:00:00 +0000",
            "timeEpoch": 1_795_791_600_000_u64
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    });
    // Every route but the OAuth callback is IAM-authorized: API Gateway names the caller.
    if path != "/oauth/callback" {
        event["requestContext"]["authorizer"] = iam_authorizer();
    }
    event
}

/// Invokes the reconcile function with `event` as its `main` does: decoded, acting for whoever
/// the event comes from (R-AUD-1), then dispatched (the deadline is the test's own).
///
/// # Panics
/// When the event is not one of the function's kinds or the function fails.
pub async fn invoke_reconcile(
    deps: &reconcile::Reconciler<OffsetClock>,
    event: lambda_runtime::LambdaEvent<Value>,
) -> Value {
    let (payload, context) = event.into_parts();
    let decoded = reconcile::Event::decode(payload).unwrap();
    let acting = deps.acting_for_event(&decoded);
    reconcile::dispatch(&acting, decoded, &context)
        .await
        .unwrap()
}

/// API Gateway's IAM authorizer context of a request signed by [`ADMIN_ARN`] (R-AUD-1).
#[must_use]
pub fn iam_authorizer() -> Value {
    json!({
        "iam": {"accessKey": "ASIATEST", "accountId": "123456789012", "callerId": "AROATEST:it",
                "principalOrgId": null, "userArn": ADMIN_ARN, "userId": "AROATEST:it"}
    })
}

/// The IAM principal every authorized test request comes from (R-AUD-1).
pub const ADMIN_ARN: &str = "arn:aws:sts::123456789012:assumed-role/M365SyncAdmins/it";

fn encode(s: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("k", s)])
        .unwrap()
        .query()
        .unwrap_or_default()
        .trim_start_matches("k=")
        .to_owned()
}

/// A `LambdaEvent` of a scheduled (EventBridge) invocation.
#[must_use]
pub fn schedule_event() -> lambda_runtime::LambdaEvent<Value> {
    let mut context = lambda_runtime::Context::default();
    context.request_id = uuid::Uuid::new_v4().to_string();
    lambda_runtime::LambdaEvent::new(
        json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}),
        context,
    )
}

/// Every log line the process wrote through `tracing` since [`capture_logs`] first ran.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Everything captured so far.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test binary) a global JSON subscriber with the production filter at
/// `RUST_LOG=trace` writing into a buffer, so a test can assert what was logged. All scenarios share
/// one binary (`tests/it/`): once installed, every test running beside it logs into the same buffer,
/// so a test asserts only what its own run must (or must never) show.
pub fn capture_logs() -> Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        // The production filter at its most verbose (RUST_LOG=trace), secret-safety caps included.
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_writer(move || writer.clone())
            .with_filter(m365_lambda::telemetry::filter(Some("trace")));
        tracing_subscriber::registry().with(layer).init();
        logs
    })
    .clone()
}

/// An API Gateway response's status and JSON body (`null` when empty).
///
/// # Panics
/// When the body is not JSON.
#[must_use]
pub fn json_response(response: &lambda_http::Response<lambda_http::Body>) -> (u16, Value) {
    let body = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        lambda_http::Body::Binary(b) => serde_json::from_slice(b).unwrap(),
        _ => Value::Null,
    };
    (response.status().as_u16(), body)
}

/// Real time plus an offset the test moves (the engine's clock; the emulator has its own).
#[derive(Debug, Clone, Default)]
pub struct OffsetClock(Arc<Mutex<TimeDelta>>);

impl OffsetClock {
    /// Moves this clock forward.
    pub fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap()
    }
}

/// The 256-bit password seal key the tests store in Secrets Manager (64 hex characters).
pub const SEAL_KEY: &str = "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";

/// Creates an SQS queue (visibility 30 s), redriving to `dlq_arn` after 5 receives when given;
/// returns its URL.
///
/// # Panics
/// When moto refuses the queue.
pub async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, dlq_arn: Option<&str>) -> String {
    let mut create = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::VisibilityTimeout, "30");
    if let Some(arn) = dlq_arn {
        create = create.attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}).to_string(),
        );
    }
    create
        .send()
        .await
        .expect("queue created")
        .queue_url
        .expect("queue url")
}

/// One message received from `queue_url` (hidden for 30 s), as Lambda's SQS trigger hands it to
/// a function: an event with one record (`Records[0]`, `eventSource` `aws:sqs`), with the body
/// and the receipt handle to delete it by. `None` when the queue is empty.
///
/// # Panics
/// When moto refuses the receive.
pub async fn next_sqs_event(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<(Value, String)> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(1)
        .visibility_timeout(30)
        .wait_time_seconds(0)
        .send()
        .await
        .expect("receive from the queue");
    let message = received.messages.unwrap_or_default().into_iter().next()?;
    let receipt = message.receipt_handle.clone().expect("receipt handle");
    let event = json!({"Records": [{
        "messageId": message.message_id.clone().unwrap_or_default(),
        "receiptHandle": receipt,
        "body": message.body.clone().unwrap_or_default(),
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:queue",
        "awsRegion": "us-east-1"
    }]});
    Some((event, receipt))
}

/// A Lambda context with a fresh request id (what names a run in leases).
#[must_use]
pub fn lambda_context() -> lambda_runtime::Context {
    let mut context = lambda_runtime::Context::default();
    context.request_id = uuid::Uuid::new_v4().to_string();
    context
}

/// A Lambda context with a fresh request id and a deadline `timeout` from now, as the Runtime
/// API hands it to a function whose template `Timeout` is `timeout` (`Lambda-Runtime-Deadline-Ms`;
/// devstack sets it the same way).
#[must_use]
pub fn lambda_context_with_timeout(timeout: std::time::Duration) -> lambda_runtime::Context {
    let mut context = lambda_context();
    let deadline = std::time::SystemTime::now() + timeout;
    context.deadline = u64::try_from(
        deadline
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    context
}

/// Runs one invocation as Lambda does with `timeout`: past it the function is stopped wherever it
/// is (its future dropped, mid-operation) and `None` is returned — an API caller then gets
/// API Gateway's 5xx, an SQS batch is redelivered whole.
pub async fn within_lambda_timeout<F: std::future::Future>(
    timeout: std::time::Duration,
    invocation: F,
) -> Option<F::Output> {
    tokio::time::timeout(timeout, invocation).await.ok()
}

/// What one Lambda-style delivery of an SQS batch did (see [`deliver_sqs_batch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDelivery {
    /// Messages in the batch.
    pub received: usize,
    /// Each one's `ApproximateReceiveCount` at this delivery.
    pub receive_counts: Vec<u32>,
    /// Acknowledged (deleted): not reported as batch-item failures.
    pub acked: usize,
    /// Reported as batch-item failures (left for redelivery).
    pub failed: usize,
    /// The invocation ran past its timeout and was stopped: the whole batch is redelivered.
    pub timed_out: bool,
}

/// Delivers one batch of up to `max` messages from `queue_url` to `handler` as Lambda's SQS event
/// source does with `ReportBatchItemFailures`: each record carries its `ApproximateReceiveCount`,
/// the invocation gets a context whose deadline is `timeout` away and is stopped past it;
/// acknowledged messages are deleted; reported failures (or the whole batch, after a timeout)
/// come back — at once here, as if their visibility timeout had passed — and SQS moves a message
/// received `maxReceiveCount` times to the DLQ on its next receive. `None` when the queue has no
/// visible message.
///
/// # Panics
/// When moto refuses a call.
pub async fn deliver_sqs_batch<F, Fut>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    max: i32,
    timeout: std::time::Duration,
    handler: F,
) -> Option<BatchDelivery>
where
    F: FnOnce(lambda_runtime::LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>) -> Fut,
    Fut: std::future::Future<Output = aws_lambda_events::event::sqs::SqsBatchResponse>,
{
    use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(max)
        .wait_time_seconds(0)
        .visibility_timeout(180)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("receive from the queue")
        .messages
        .unwrap_or_default();
    if received.is_empty() {
        return None;
    }
    let count = |m: &aws_sdk_sqs::types::Message| {
        m.attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1)
    };
    let mut event = SqsEvent::default();
    event.records = received
        .iter()
        .map(|m| {
            let mut r = SqsMessage::default();
            r.message_id.clone_from(&m.message_id);
            r.receipt_handle.clone_from(&m.receipt_handle);
            r.body.clone_from(&m.body);
            r.attributes
                .insert("ApproximateReceiveCount".to_owned(), count(m).to_string());
            r.event_source = Some("aws:sqs".to_owned());
            r
        })
        .collect();
    let context = lambda_context_with_timeout(timeout);
    let invocation = handler(lambda_runtime::LambdaEvent::new(event, context));
    let response = within_lambda_timeout(timeout, invocation).await;
    let failed: std::collections::HashSet<String> = match &response {
        Some(r) => r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect(),
        None => received
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect(),
    };
    let mut delivery = BatchDelivery {
        received: received.len(),
        receive_counts: received.iter().map(count).collect(),
        timed_out: response.is_none(),
        ..BatchDelivery::default()
    };
    for m in &received {
        let receipt = m.receipt_handle.clone().expect("receipt handle");
        if failed.contains(m.message_id.as_deref().unwrap_or_default()) {
            delivery.failed += 1;
            sqs.change_message_visibility()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
                .expect("visible again");
        } else {
            delivery.acked += 1;
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .expect("deleted");
        }
    }
    Some(delivery)
}

/// `started!(Stack::start())`: the scenario a test's `start` built, or `return` from the test when
/// it returned `None` (no moto outside CI; see [`moto`]).
#[macro_export]
macro_rules! started {
    ($start:expr) => {
        match $start.await {
            Some(started) => started,
            None => return,
        }
    };
}

/// Messages on the queue at `url`: visible, in flight and delayed.
///
/// # Panics
/// When moto refuses the call.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    attrs
        .values()
        .map(|v| v.parse::<usize>().unwrap_or(0))
        .sum()
}

/// The provisioning functions on one connected tenant, each with its own wiring as separate
/// Lambdas have (a cold start of its own: its own Graph client and its memory of recent creates).
#[derive(Debug)]
pub struct Functions {
    /// The retry worker's.
    pub worker: Deployed<OffsetClock>,
    /// `PUT|GET /users/{id}/binding`.
    pub bind: Deployed<OffsetClock>,
    /// `DELETE /users/{id}/binding`.
    pub unbind: Deployed<OffsetClock>,
    /// `POST /users/{id}/password`.
    pub password: Deployed<OffsetClock>,
    /// Every other route (directory users and groups, events).
    pub directory: Deployed<OffsetClock>,
}

impl Functions {
    /// Each function's wiring from `build` (called once per function).
    pub fn new(mut build: impl FnMut() -> Deployed<OffsetClock>) -> Self {
        Self {
            worker: build(),
            bind: build(),
            unbind: build(),
            password: build(),
            directory: build(),
        }
    }

    /// Short waits so the retry worker converges within a test (the product's defaults are
    /// minutes to hours; the logic is the same): 200 ms first retry, at most 1 s apart.
    pub fn short_retry_waits(deps: &mut Deployed<OffsetClock>) {
        deps.retry.base_delay = std::time::Duration::from_millis(200);
        deps.retry.max_delay = std::time::Duration::from_secs(1);
    }

    /// An API request routed as API Gateway routes it to these functions; the status and JSON.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let routes = Routes {
            bind: &self.bind,
            unbind: &self.unbind,
            password: &self.password,
            directory: &self.directory,
        };
        routes.call(method, path, query, body).await
    }

    /// Runs the retry worker on real SQS batches (up to 10, hidden 1 s) from `retry_url` until the
    /// queue is empty or `deadline` passes: acknowledged messages are deleted, reported failures
    /// come back after their visibility timeout (and finally go to the DLQ). The bodies handled.
    ///
    /// # Panics
    /// When moto refuses a call.
    pub async fn drain(
        &self,
        sqs: &aws_sdk_sqs::Client,
        retry_url: &str,
        deadline: std::time::Duration,
    ) -> Vec<String> {
        use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let until = std::time::Instant::now() + deadline;
        let mut bodies = Vec::new();
        while std::time::Instant::now() < until {
            let received = sqs
                .receive_message()
                .queue_url(retry_url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .visibility_timeout(1)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send()
                .await
                .expect("receive from the retry queue")
                .messages
                .unwrap_or_default();
            if received.is_empty() {
                if queue_depth(sqs, retry_url).await == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                continue;
            }
            let mut event = SqsEvent::default();
            event.records = received
                .iter()
                .map(|m| {
                    let mut r = SqsMessage::default();
                    r.message_id.clone_from(&m.message_id);
                    r.receipt_handle.clone_from(&m.receipt_handle);
                    r.body.clone_from(&m.body);
                    r
                })
                .collect();
            let response = retry_worker::handle_batch(&self.worker, &event).await;
            let failed: std::collections::HashSet<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            for m in &received {
                bodies.push(m.body.clone().unwrap_or_default());
                if !failed.contains(m.message_id.as_deref().unwrap_or_default()) {
                    sqs.delete_message()
                        .queue_url(retry_url)
                        .receipt_handle(m.receipt_handle.clone().expect("receipt handle"))
                        .send()
                        .await
                        .expect("deleted");
                }
            }
        }
        bodies
    }
}

/// A reconcile route's request (`method`, `path`, query `query`) as API Gateway HTTP API 2.0
/// sends it to the reconcile function; its status and JSON body.
pub async fn reconcile_api(
    deps: &reconcile::Reconciler<OffsetClock>,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let route = if method == "GET" {
        "GET /tenants/{tenantId}/reconcile/runs/{runId}"
    } else {
        "POST /tenants/{tenantId}/reconcile"
    };
    let event = json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": raw.join("&"),
        "headers": {"content-type": "application/json"},
        "queryStringParameters": if params.is_empty() { Value::Null } else { Value::Object(params) },
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "it"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route,
            "stage": "$default",
            "authorizer": iam_authorizer()
        },
        "isBase64Encoded": false
    });
    let event = lambda_runtime::LambdaEvent::new(event, lambda_context());
    let response = invoke_reconcile(deps, event).await;
    let status = u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap();
    let body = response["body"]
        .as_str()
        .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
    (status, body)
}

/// `GET /tenants/{tenant}/reconcile/runs/{run}` (must answer 200): the run.
pub async fn reconcile_run(
    deps: &reconcile::Reconciler<OffsetClock>,
    tenant: &str,
    run: &str,
) -> Value {
    let path = format!("/tenants/{tenant}/reconcile/runs/{run}");
    let (status, body) = reconcile_api(deps, "GET", &path, &[]).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Delivers the pass `pass` of run `run` from the queue of passes `passes` to the function, as
/// Lambda's SQS trigger does (one record); other messages are left on the queue. Waits up to
/// 10 s for it (a pass that waited for another pass's lease comes back after its delay).
///
/// # Panics
/// When the pass does not come, or the function reports it as failed.
pub async fn deliver_run_pass(
    deps: &reconcile::Reconciler<OffsetClock>,
    sqs: &aws_sdk_sqs::Client,
    passes: &str,
    run: &str,
    pass: u32,
) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let wanted = format!("run.{run}.{pass}");
    while std::time::Instant::now() < until {
        let received = sqs
            .receive_message()
            .queue_url(passes)
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive from the queue of passes")
            .messages
            .unwrap_or_default();
        let found = received.into_iter().find(|m| {
            m.body.as_deref().is_some_and(|b| {
                serde_json::from_str::<Value>(b).is_ok_and(|v| {
                    v["operationId"]
                        .as_str()
                        .is_some_and(|o| o.ends_with(&wanted))
                })
            })
        });
        let Some(message) = found else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        };
        let receipt = message.receipt_handle.clone().expect("receipt handle");
        let event = json!({"Records": [{
            "messageId": message.message_id.clone().unwrap_or_default(),
            "receiptHandle": receipt,
            "body": message.body.clone().unwrap_or_default(),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:queue",
            "awsRegion": "us-east-1"
        }]});
        let answer = invoke_reconcile(
            deps,
            lambda_runtime::LambdaEvent::new(event, lambda_context()),
        )
        .await;
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        sqs.delete_message()
            .queue_url(passes)
            .receipt_handle(receipt)
            .send()
            .await
            .expect("deleted");
        return;
    }
    panic!("pass {pass} of run {run} never came");
}

/// `POST /tenants/{tenant}/reconcile?dryRun=…` through the reconcile function, as API Gateway
/// sends it: it must answer `202` with a queued run (R-OPS-2). Then the run's first pass is
/// delivered from the queue of passes `passes` and the run read back through its route; answers
/// the run's `report` — one pass's, what the synchronous answer used to be (an unfinished round's
/// next pass stays queued: `continued: true`).
pub async fn reconcile_route(
    deps: &reconcile::Reconciler<OffsetClock>,
    sqs: &aws_sdk_sqs::Client,
    passes: &str,
    tenant: &str,
    dry_run: bool,
) -> Value {
    let path = format!("/tenants/{tenant}/reconcile");
    let flag = if dry_run { "true" } else { "false" };
    let (status, body) = reconcile_api(deps, "POST", &path, &[("dryRun", flag)]).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "queued", "{body}");
    let run = body["runId"].as_str().expect("a run id").to_owned();
    deliver_run_pass(deps, sqs, passes, &run, 1).await;
    let run = reconcile_run(deps, tenant, &run).await;
    assert!(
        ["running", "done", "held"].contains(&run["status"].as_str().unwrap_or_default()),
        "{run}"
    );
    run["report"].clone()
}

/// A request to the reconcile function's API (`method` on `path`, no query, no body) as API
/// Gateway sends it, e.g. `GET /tenants/{tenantId}/reconcile/held` (R-REC-3); the status and JSON.
pub async fn reconcile_held_api(
    deps: &reconcile::Reconciler<OffsetClock>,
    method: &str,
    path: &str,
    route: &str,
) -> (u16, Value) {
    let tenant = path.split('/').nth(2).unwrap_or_default();
    let route_key = format!("{method} {route}");
    let event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "pathParameters": {"tenantId": tenant},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "it"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "authorizer": iam_authorizer()
        },
        "isBase64Encoded": false
    });
    let event = lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default());
    let response = invoke_reconcile(deps, event).await;
    let status = u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap();
    let body = response["body"]
        .as_str()
        .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
    (status, body)
}

/// The API routes of the provisioning functions and the wiring each runs on.
#[derive(Debug, Clone, Copy)]
pub struct Routes<'a, C = OffsetClock> {
    /// `PUT|GET /users/{id}/binding`.
    pub bind: &'a Deployed<C>,
    /// `DELETE /users/{id}/binding`.
    pub unbind: &'a Deployed<C>,
    /// `POST /users/{id}/password`.
    pub password: &'a Deployed<C>,
    /// Every other route (directory users and groups, events).
    pub directory: &'a Deployed<C>,
}

impl<'a, C: Clock + Clone> Routes<'a, C> {
    /// Every route on the one wiring `deps`.
    #[must_use]
    pub fn all(deps: &'a Deployed<C>) -> Self {
        Self {
            bind: deps,
            unbind: deps,
            password: deps,
            directory: deps,
        }
    }

    /// An API request routed as API Gateway routes it; the status and JSON.
    ///
    /// # Panics
    /// When a handler fails (it answers every request).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let request = api_request(method, path, query, body);
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // As each function's `main` does: bounded by the request and acting for its caller.
        let response = match (method, segments.as_slice()) {
            ("PUT" | "GET", ["users", _, "binding"]) => {
                bind::handle(&self.bind.for_request(&request), request).await
            }
            ("DELETE", ["users", _, "binding"]) => {
                unbind::handle(&self.unbind.for_request(&request), request).await
            }
            ("POST", ["users", _, "password"]) => {
                password_push::handle(&self.password.for_request(&request), request).await
            }
            _ => directory::handle(&self.directory.for_request(&request), request).await,
        }
        .unwrap();
        json_response(&response)
    }
}

/// The reconcile scenarios' scene: Contoso connected, the provisioning queues (`retries` is the
/// retry queue) and a queue of reconcile passes, one provisioning wiring and the Graph app, all on
/// a test clock. Scenario modules wrap it (`struct Stack(ReconcileScene)` with `Deref`) and add
/// their own steps.
#[derive(Debug)]
pub struct ReconcileScene {
    /// moto + the emulator + the production wiring.
    pub world: World,
    /// Every provisioning function's wiring, on `clock`.
    pub provisioning: Deployed<OffsetClock>,
    /// The Graph side of the wiring the reconciler is built from.
    pub graph: GraphApp,
    /// The engine's clock the test moves.
    pub clock: OffsetClock,
    /// Contoso's tenant id in the service.
    pub tenant: String,
    /// The queue of reconcile passes.
    pub passes: String,
    /// The retry queue (binds and unbinds waiting, R-BIND-6, R-REC-5).
    pub retries: String,
}

impl ReconcileScene {
    /// The state of directory user `id`'s binding (it must exist).
    ///
    /// # Panics
    /// When the binding is missing or the store fails.
    pub async fn binding_state(&self, id: &str) -> m365_engine::model::BindingState {
        use m365_engine::ports::BindingStore;
        self.world
            .app
            .bindings
            .get(&m365_engine::model::UserId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap()
            .state
    }

    /// The latest 100 events of `kind`, newest first.
    ///
    /// # Panics
    /// When the store fails.
    pub async fn events_of(
        &self,
        kind: m365_engine::model::EventKind,
    ) -> Vec<m365_engine::model::Event> {
        use m365_engine::ports::{EventFilter, EventQuery, EventStore};
        self.world
            .app
            .events
            .query(&EventQuery {
                filter: EventFilter::Kind(kind),
                since: None,
                page: m365_engine::model::PageRequest::first(100),
            })
            .await
            .unwrap()
            .items
    }

    /// The scene, its queues named after `prefix`; `None` without moto (see [`moto`]).
    pub async fn start(prefix: &str) -> Option<Self> {
        let mut world = World::start().await?;
        let retries = world.add_provisioning_resources(prefix).await.retry_url;
        let sqs = aws_sdk_sqs::Client::new(&world.sdk);
        let passes = queue(
            &sqs,
            &format!("{prefix}-passes-{}", uuid::Uuid::new_v4().simple()),
            None,
        )
        .await;
        let tenant = world.connect_contoso("Contoso").await;
        let graph = world.graph_app();
        let clock = OffsetClock::default();
        let provisioning = Deployed::with_clock(&world.app, &graph, clock.clone());
        Some(Self {
            world,
            provisioning,
            graph,
            clock,
            tenant,
            passes,
            retries,
        })
    }

    /// The reconcile function's wiring with `settings`, on the scene's clock and passes queue.
    #[must_use]
    pub fn reconciler(&self, settings: reconcile::Settings) -> reconcile::Reconciler<OffsetClock> {
        reconcile::Reconciler::with_clock(
            &self.world.app,
            &self.graph,
            self.clock.clone(),
            settings,
            &self.passes,
        )
    }

    /// An API request to the provisioning functions (all on the one wiring).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        Routes::all(&self.provisioning)
            .call(method, path, &[], body)
            .await
    }

    /// `POST /tenants/{tenantId}/reconcile?dryRun=…` for Contoso through the function.
    pub async fn reconcile(
        &self,
        deps: &reconcile::Reconciler<OffsetClock>,
        dry_run: bool,
    ) -> Value {
        let sqs = aws_sdk_sqs::Client::new(&self.world.sdk);
        reconcile_route(deps, &sqs, &self.passes, &self.tenant, dry_run).await
    }

    /// The held-plan routes of Contoso through the reconcile function (R-REC-3): `GET …/held`
    /// (`verb` `None`) or `POST …/held/{verb}` (`approve`, `reject`).
    pub async fn held(
        &self,
        deps: &reconcile::Reconciler<OffsetClock>,
        verb: Option<&str>,
    ) -> (u16, Value) {
        let base = format!("/tenants/{}/reconcile/held", self.tenant);
        match verb {
            Some(verb) => {
                let route = format!("/tenants/{{tenantId}}/reconcile/held/{verb}");
                reconcile_held_api(deps, "POST", &format!("{base}/{verb}"), &route).await
            }
            None => {
                reconcile_held_api(deps, "GET", &base, "/tenants/{tenantId}/reconcile/held").await
            }
        }
    }

    /// A Graph request in Contoso made behind our back (an admin's app token).
    pub async fn graph(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.world
            .emulator
            .graph_as_app(CONTOSO, method, path, body)
            .await
    }

    /// The member ids of Contoso's M365 group `group`, sorted.
    pub async fn group_members(&self, group: &str) -> Vec<String> {
        self.world.emulator.group_member_ids(CONTOSO, group).await
    }

    /// Directory user `id` at contoso.com (display name `User <id>`) with a password, through the
    /// directory and password-push functions.
    pub async fn directory_user(&self, id: &str, password: &str) {
        let body =
            json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
        let (status, answer) = self
            .call(
                "POST",
                &format!("/users/{id}/password"),
                Some(json!({ "password": password })),
            )
            .await;
        assert_eq!(status, 204, "{answer}");
    }

    /// Binds `id` through the bind function (no welcome); the binding as `GET` shows it.
    pub async fn bind_user(&self, id: &str) -> Value {
        let (status, answer) = self
            .call(
                "PUT",
                &format!("/users/{id}/binding"),
                Some(json!({ "welcome": false })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        self.binding(id).await
    }

    /// `GET /users/{id}/binding` (200 expected).
    pub async fn binding(&self, id: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/users/{id}/binding"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The Graph requests the emulator logged for Contoso.
    pub async fn graph_requests(&self) -> Value {
        self.world.emulator.requests(CONTOSO).await
    }

    /// Forgets Contoso's logged Graph requests.
    pub async fn reset_requests(&self) {
        let status = self
            .world
            .emulator
            .send(
                reqwest::Method::DELETE,
                &format!("/_emulator/tenants/{CONTOSO}/requests"),
                Value::Null,
            )
            .await;
        assert!(status.is_success());
    }
}

impl World {
    /// Sends this world's admin alerts (R-OPS-1) to a new SNS topic on moto with a new SQS queue
    /// subscribed to it, as an admin would subscribe; answers the queue's URL. Wiring built from
    /// `self.app` afterwards publishes there.
    ///
    /// # Panics
    /// When moto refuses a call.
    pub async fn subscribe_admin_alerts(&mut self) -> String {
        let sns = aws_sdk_sns::Client::new(&self.sdk);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let topic = sns
            .create_topic()
            .name(format!("alerts-{id}"))
            .send()
            .await
            .unwrap()
            .topic_arn
            .unwrap();
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let url = queue(&sqs, &format!("alerts-sub-{id}"), None).await;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn)
            .send()
            .await
            .unwrap();
        let mut config = self.app.config.clone();
        config.admin_alerts_topic_arn = Some(topic);
        self.app = App::with_sdk_config(config, self.sdk.clone());
        self.graph = self.graph_app();
        url
    }

    /// Contoso's admin resets their password in the emulator: Microsoft revokes the refresh tokens
    /// they granted (AADSTS50173, R-CONN-4).
    ///
    /// # Panics
    /// When the emulator refuses.
    pub async fn reset_admin_password(&self) {
        let status = self
            .emulator
            .send(
                reqwest::Method::POST,
                &format!(
                    "/_emulator/tenants/{CONTOSO}/admins/{}/reset-password",
                    CONTOSO_ADMIN.0
                ),
                json!({}),
            )
            .await;
        assert!(status.is_success());
    }

    /// Every admin alert delivered to the queue `url` so far (SNS envelopes opened), deleted.
    ///
    /// # Panics
    /// When moto refuses a call or a message is not an SNS notification of an alert.
    pub async fn admin_alerts(&self, url: &str) -> Vec<Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let mut out = Vec::new();
        loop {
            let received = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = received.messages();
            if messages.is_empty() {
                return out;
            }
            for m in messages {
                let envelope: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                assert_eq!(envelope["Type"], "Notification", "{envelope}");
                assert!(
                    envelope["Subject"]
                        .as_str()
                        .unwrap()
                        .starts_with("m365-sync alert: "),
                    "{envelope}"
                );
                let alert: Value =
                    serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
                out.push(alert);
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}
