//! The deployed [`Ports`] ([`Deployed`]): the AWS adapters of [`App`], the `Directory` over Graph,
//! a clock, randomness and the configured policies, built once per cold start; every handler
//! (`handle<P: Ports>`) runs its use case on it. Also the request helpers of the HTTP routes
//! (path, ids, bounded JSON bodies with unknown fields refused, R-SAFE-1) and the one skeleton of
//! every `handle` ([`path`] to match routes on, steps chaining with `?` as [`Answer`]s, [`handled`]
//! to log and answer); the responses are [`crate::api`]'s.
//!
//! Each `main.rs` first bounds the wiring by the invocation's deadline
//! ([`Deployed::for_request`], [`Deployed::for_context`]; see [`crate::deadline`]): the
//! `Directory` of the use cases then stops before Lambda does, and cut-off work is re-queued. The
//! API functions' `main` is [`crate::api_main!`].
//!
//! The policies (retry, directory password policy, deadlines) are the app's configuration's
//! ([`crate::config`]): the directory password policy's maximum age keeps a user re-activated in
//! the directory suspended when its password expired meanwhile (R-BIND-9, R-PWD-4), with the same
//! policy the reconcile function expires passwords by.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use m365_aws::{
    DynamoBindings, DynamoEvents, DynamoFailures, DynamoGroups, DynamoLeases, DynamoLedger,
    DynamoPendingConsents, DynamoReconcileCursors, DynamoTenants, DynamoUsers,
    SecretsManagerCursorKey, SecretsManagerSealer, SecretsManagerTokenVault, SesMailer,
    SqsNotifier, SqsRetryQueue,
};
use m365_engine::model::{Actor, TenantId, UserId};
use m365_engine::policy::password::DirectoryPasswordPolicy;
use m365_engine::ports::{Clock, Ports, SystemClock, ThreadRandom};
use m365_engine::usecase::RetryPolicy;
use m365_graph::GraphIdentity;
use serde::de::DeserializeOwned;

use crate::deadline::DeadlinePolicy;
use crate::graph::VaultDirectory;
use crate::{App, AppError, GraphApp, GraphSetupError, api};

/// Largest request body accepted (bytes); a larger one is refused with `body_too_large`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The deployed [`Ports`]: every adapter (DynamoDB, SQS, Secrets Manager, Graph), a clock,
/// randomness and the policies, built once per cold start; each handler runs its use case on it
/// (bounded by the invocation's deadline first: [`Deployed::for_request`],
/// [`Deployed::for_context`]).
#[derive(Debug, Clone)]
pub struct Deployed<C = SystemClock> {
    /// The AWS adapters.
    pub app: App,
    /// M365 through Graph (also the tenant probe and the delta readers).
    pub directory: VaultDirectory,
    /// The identity platform.
    pub identity: GraphIdentity,
    /// Time (tests drive a manual clock).
    pub clock: C,
    /// Jitter and generated passwords.
    pub random: ThreadRandom,
    /// How operations are retried.
    pub retry: RetryPolicy,
    /// The directory password policy.
    pub password_policy: DirectoryPasswordPolicy,
    /// How the time before the Lambda deadline is spent (margin, retry worker's floor).
    pub deadlines: DeadlinePolicy,
    /// Who asks (R-AUD-1): `schedule` for queue and schedule invocations, the request's
    /// principal behind the API ([`Deployed::for_request`]).
    pub actor: Actor,
}

/// Why a provisioning function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The AWS side.
    #[error(transparent)]
    App(#[from] AppError),
    /// The Graph side.
    #[error(transparent)]
    Graph(#[from] GraphSetupError),
}

impl Deployed<SystemClock> {
    /// Reads the configuration and builds every client once (cold start).
    ///
    /// # Errors
    /// [`StartError`] for a missing or invalid variable or an unreadable OAuth client secret.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env().await?;
        let graph = GraphApp::load(&app).await?;
        Ok(Self::from_app(&app, &graph))
    }

    /// The wiring of an already built [`App`] and [`GraphApp`], on the system clock with the
    /// app's configured retry, password and deadline policies.
    #[must_use]
    pub fn from_app(app: &App, graph: &GraphApp) -> Self {
        Self::with_clock(app, graph, SystemClock)
    }
}

impl<C: Clock> Deployed<C> {
    /// The wiring on another clock.
    #[must_use]
    pub fn with_clock(app: &App, graph: &GraphApp, clock: C) -> Self {
        Self {
            app: app.clone(),
            directory: graph.directory.clone(),
            identity: graph.identity.clone(),
            clock,
            random: ThreadRandom,
            retry: app.config.retry_policy(),
            password_policy: app.config.password_policy.clone(),
            deadlines: app.config.deadlines,
            actor: Actor::schedule(),
        }
    }

    /// This wiring with its `Directory` bounded by `deadline` (unchanged for `None`).
    #[must_use]
    pub fn until(&self, deadline: Option<tokio::time::Instant>) -> Self
    where
        C: Clone,
    {
        let mut bounded = self.clone();
        if let Some(deadline) = deadline {
            bounded.directory = self.directory.with_deadline(deadline);
            bounded.identity = self.identity.with_deadline(deadline);
        }
        bounded
    }

    /// This wiring bounded by the deadline of an API request ([`DeadlinePolicy::of_request`]),
    /// acting for the request's caller ([`actor_of`]).
    #[must_use]
    pub fn for_request(&self, request: &Request) -> Self
    where
        C: Clone,
    {
        self.until(self.deadlines.of_request(request))
            .acting_for(actor_of(request))
    }

    /// This wiring acting for `actor` (R-AUD-1): the events it records name them.
    #[must_use]
    pub fn acting_for(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// This wiring bounded by the deadline of an invocation ([`DeadlinePolicy::of_context`]).
    #[must_use]
    pub fn for_context(&self, context: &lambda_runtime::Context) -> Self
    where
        C: Clone,
    {
        self.until(self.deadlines.of_context(context))
    }
}

impl<C: Clock> Ports for Deployed<C> {
    type Users = DynamoUsers;
    type Groups = DynamoGroups;
    type Tenants = DynamoTenants;
    type Bindings = DynamoBindings;
    type Events = DynamoEvents;
    type Failures = DynamoFailures;
    type Ledger = DynamoLedger;
    type Queue = SqsRetryQueue;
    type Vault = SecretsManagerTokenVault;
    type Sealer = SecretsManagerSealer;
    type Directory = VaultDirectory;
    type Probe = VaultDirectory;
    type Notifier = SqsNotifier;
    type Identity = GraphIdentity;
    type Consents = DynamoPendingConsents;
    type Leases = DynamoLeases;
    type UserDeltas = VaultDirectory;
    type GroupDeltas = VaultDirectory;
    type Cursors = DynamoReconcileCursors;
    type CursorKeys = SecretsManagerCursorKey;
    type Clock = C;
    type Random = ThreadRandom;
    type LicenseSettings = m365_aws::DynamoLicenseSettings;
    type Licensing = VaultDirectory;
    type Mailer = SesMailer;
    type Runs = m365_aws::DynamoReconcileRuns;
    type Alerts = m365_aws::SnsAdminAlerts;
    type AlertIncidents = m365_aws::DynamoAlertIncidents;
    type HeldPlans = m365_aws::DynamoHeldPlans;

    fn users(&self) -> &DynamoUsers {
        &self.app.users
    }
    fn groups(&self) -> &DynamoGroups {
        &self.app.groups
    }
    fn tenants(&self) -> &DynamoTenants {
        &self.app.tenants
    }
    fn bindings(&self) -> &DynamoBindings {
        &self.app.bindings
    }
    fn events(&self) -> &DynamoEvents {
        &self.app.events
    }
    fn failures(&self) -> &DynamoFailures {
        &self.app.failures
    }
    fn ledger(&self) -> &DynamoLedger {
        &self.app.ledger
    }
    fn queue(&self) -> &SqsRetryQueue {
        &self.app.retry_queue
    }
    fn vault(&self) -> &SecretsManagerTokenVault {
        &self.app.token_vault
    }
    fn sealer(&self) -> &SecretsManagerSealer {
        &self.app.sealer
    }
    fn directory(&self) -> &VaultDirectory {
        &self.directory
    }
    fn probe(&self) -> &VaultDirectory {
        &self.directory
    }
    fn notifier(&self) -> &SqsNotifier {
        &self.app.notifier
    }
    fn identity(&self) -> &GraphIdentity {
        &self.identity
    }
    fn consents(&self) -> &DynamoPendingConsents {
        &self.app.pending_consents
    }
    fn leases(&self) -> &DynamoLeases {
        &self.app.leases
    }
    fn user_deltas(&self) -> &VaultDirectory {
        &self.directory
    }
    fn group_deltas(&self) -> &VaultDirectory {
        &self.directory
    }
    fn cursors(&self) -> &DynamoReconcileCursors {
        &self.app.cursors
    }
    fn cursor_keys(&self) -> &SecretsManagerCursorKey {
        &self.app.cursor_key
    }
    fn clock(&self) -> &C {
        &self.clock
    }
    fn random(&self) -> &ThreadRandom {
        &self.random
    }
    fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }
    fn password_policy(&self) -> &DirectoryPasswordPolicy {
        &self.password_policy
    }
    fn license_settings(&self) -> &m365_aws::DynamoLicenseSettings {
        &self.app.license_settings
    }
    fn licensing(&self) -> &VaultDirectory {
        &self.directory
    }
    fn actor(&self) -> &Actor {
        &self.actor
    }
    fn mailer(&self) -> &SesMailer {
        &self.app.mailer
    }
    fn runs(&self) -> &m365_aws::DynamoReconcileRuns {
        &self.app.runs
    }
    fn alerts(&self) -> &m365_aws::SnsAdminAlerts {
        &self.app.alerts
    }
    fn alert_incidents(&self) -> &m365_aws::DynamoAlertIncidents {
        &self.app.alert_incidents
    }
    fn held_plans(&self) -> &m365_aws::DynamoHeldPlans {
        &self.app.held_plans
    }
}

/// Who sent `request` (R-AUD-1): see [`actor_of_context`]; `anonymous` for a request that did
/// not come through API Gateway's HTTP API.
#[must_use]
pub fn actor_of(request: &Request) -> Actor {
    use lambda_http::request::RequestContext;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => actor_of_context(context),
        _ => Actor::anonymous(),
    }
}

/// Who sent a request with this context (R-AUD-1): the IAM principal API Gateway authenticated
/// (its `userArn`; the local stack presents its bearer token's caller as `local` the same way),
/// else `anonymous` (a public route: the OAuth callback).
#[must_use]
pub fn actor_of_context(
    context: &lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext,
) -> Actor {
    context
        .authorizer
        .as_ref()
        .and_then(|a| a.iam.as_ref())
        .and_then(|iam| iam.user_arn.as_deref())
        .and_then(Actor::principal)
        .unwrap_or_else(Actor::anonymous)
}

/// The request's path split into its non-empty segments (the raw path when API Gateway gives
/// one, so percent-encoded ids stay as sent).
#[must_use]
pub fn segments(request: &Request) -> Vec<String> {
    let path = match request.raw_http_path() {
        "" => request.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The request's path split into its non-empty segments, borrowed from the request (the raw path
/// when API Gateway gives one, as [`segments`]): what a function's `handle` matches its routes on.
#[must_use]
pub fn path(request: &Request) -> Vec<&str> {
    let path = match request.raw_http_path() {
        "" => request.uri().path(),
        raw => raw,
    };
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// What every function's `handle` returns: always `Ok`, every outcome (a refusal included) is a
/// response; the `Result` is what `lambda_http::service_fn` expects.
pub type Handled = Result<Response<Body>, lambda_http::Error>;

/// A request step that goes on with a `T`, or has already been answered (`Err`: a 4xx of bad
/// input, or the answer of an engine error), so steps chain with `?`.
pub type Answer<T = Response<Body>> = Result<T, Response<Body>>;

/// The end of every `handle`: logs the answer's status as `"{function} request handled"` and
/// answers it, an early answer ([`Answer`]'s `Err`) included.
///
/// # Errors
/// Never (see [`Handled`]).
pub fn handled(function: &str, answer: Answer) -> Handled {
    let response = answer.unwrap_or_else(|early| early);
    tracing::info!(
        http.status = response.status().as_u16(),
        "{function} request handled"
    );
    Ok(response)
}

/// Whether the request carries no body (none, or only whitespace).
#[must_use]
pub fn body_is_empty(request: &Request) -> bool {
    body_bytes(request).iter().all(u8::is_ascii_whitespace)
}

/// The body's bytes.
#[must_use]
pub fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Decodes a JSON body into `T` (whose type should refuse unknown fields); a 4xx answer for an
/// oversized, empty or malformed body (R-SAFE-1). The serde message names the field or position,
/// never echoes the value.
///
/// # Errors
/// The 400 (or 413) response to send back.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished 4xx response, built at most once per request"
)]
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, Response<Body>> {
    let bytes = body_bytes(request);
    if bytes.len() > MAX_BODY_BYTES {
        return Err(api::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(api::error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "a JSON body is required",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Data => format!("the body is not the expected JSON: {e}"),
            _ => format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        };
        api::error(StatusCode::BAD_REQUEST, "invalid_json", &message)
    })
}

/// Parses a user id from the path; a 400 `invalid_id` otherwise.
///
/// # Errors
/// The 400 response to send back.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished 4xx response, built at most once per request"
)]
pub fn user_id(raw: &str) -> Result<UserId, Response<Body>> {
    UserId::parse(raw).map_err(|e| api::invalid_id(&e))
}

/// Parses a tenant id from the path; a 400 `invalid_id` otherwise.
///
/// # Errors
/// The 400 response to send back.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished 4xx response, built at most once per request"
)]
pub fn tenant_id(raw: &str) -> Result<TenantId, Response<Body>> {
    TenantId::parse(raw).map_err(|e| api::invalid_id(&e))
}

/// The `main` of a function behind API Gateway: JSON telemetry, the deployed ports built once per
/// cold start ([`Deployed::from_env`]), then every request served by `$handle(&ports, request)`
/// on the ports bounded by that invocation's deadline ([`Deployed::for_request`], R-OPS-2).
/// The calling crate depends on `tokio` (`macros`, `rt-multi-thread`) and `lambda_http`.
#[macro_export]
macro_rules! api_main {
    ($handle:path) => {
        #[tokio::main]
        async fn main() -> Result<(), lambda_http::Error> {
            $crate::telemetry::init()?;
            let deployed = $crate::provision::Deployed::from_env().await?;
            lambda_http::run(lambda_http::service_fn(|request| {
                let ports = deployed.for_request(&request);
                async move { $handle(&ports, request).await }
            }))
            .await
        }
    };
}

#[cfg(test)]
// Unit tests may unwrap: a panic there is a failed test.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request(body: &str) -> Request {
        let mut r = Request::new(Body::Text(body.to_owned()));
        *r.uri_mut() = "/users/alice/binding".parse().unwrap_or_default();
        r
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Welcome {
        #[allow(dead_code)]
        welcome: Option<bool>,
    }

    #[test]
    fn garbage_unknown_fields_and_oversized_bodies_are_refused_with_a_4xx() {
        // R-SAFE-1
        for (body, status) in [
            ("{not json", 400),
            ("", 400),
            (r#"{"welcome": true, "tenantId": "x"}"#, 400),
            (r#"{"welcome": "yes"}"#, 400),
        ] {
            let e = json_body::<Welcome>(&request(body)).expect_err(body);
            assert_eq!(e.status().as_u16(), status, "{body}");
        }
        let big = format!(
            r#"{{"welcome": true, "x": "{}"}}"#,
            "a".repeat(MAX_BODY_BYTES)
        );
        let e = json_body::<Welcome>(&request(&big)).expect_err("too large");
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(json_body::<Welcome>(&request(r#"{"welcome": false}"#)).is_ok());
    }

    #[tokio::test]
    async fn the_provisioning_wiring_runs_with_the_configured_policies() {
        // R-PWD-1, R-PWD-4, R-BIND-6, R-OPS-2: what the environment sets is what the use cases
        // get; no default is taken behind the configuration's back.
        use crate::config::{
            DEADLINE_MARGIN_SECONDS, PASSWORD_MAX_AGE_DAYS, PASSWORD_MIN_LENGTH, REQUIRED,
            RETRY_MAX_ATTEMPTS,
        };
        let config = crate::Config::from_lookup(|name| match name {
            PASSWORD_MIN_LENGTH => Some("12".to_owned()),
            PASSWORD_MAX_AGE_DAYS => Some("30".to_owned()),
            RETRY_MAX_ATTEMPTS => Some("3".to_owned()),
            DEADLINE_MARGIN_SECONDS => Some("2".to_owned()),
            n if n.ends_with("_TABLE") => Some("m365-sync-test".to_owned()),
            n if n.ends_with("_URL") && REQUIRED.contains(&n) => {
                Some("https://sqs.eu-west-1.amazonaws.com/1/q".to_owned())
            }
            n if n.ends_with("_PREFIX") => Some("m365-sync/test/tenant/".to_owned()),
            n if REQUIRED.contains(&n) => Some("m365-sync/test/secret".to_owned()),
            _ => None,
        })
        .unwrap();
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let app = App::with_sdk_config(config, sdk);
        let graph = GraphApp::with_credentials(
            &app,
            &app.config.graph,
            m365_aws::OAuthClientCredentials {
                client_id: "client".to_owned(),
                client_secret: secrecy::SecretString::from("secret".to_owned()),
                redirect_uri: None,
            },
        )
        .unwrap();
        let deps = Deployed::from_app(&app, &graph);
        assert_eq!(deps.password_policy.min_length(), 12);
        assert_eq!(
            deps.password_policy.max_age(),
            Some(chrono::TimeDelta::days(30))
        );
        assert_eq!(deps.retry.max_attempts, 3);
        assert_eq!(deps.retry.base_delay, RetryPolicy::default().base_delay);
        assert_eq!(deps.deadlines.margin, std::time::Duration::from_secs(2));
    }

    #[test]
    fn path_segments_and_oversized_ids_are_checked() {
        // R-SAFE-1
        assert_eq!(segments(&request("")), ["users", "alice", "binding"]);
        assert!(user_id(&"a".repeat(65)).is_err());
        assert!(user_id("alice").is_ok());
    }

    fn request_with_context(authorizer: Option<serde_json::Value>) -> Request {
        let mut event = serde_json::json!({
            "version": "2.0", "routeKey": "PUT /users/{userId}/binding",
            "rawPath": "/users/alice/binding", "rawQueryString": "", "headers": {},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "api.example.test",
                "domainPrefix": "api", "requestId": "r-1", "routeKey": "PUT /users/{userId}/binding",
                "stage": "$default", "time": "27/Nov/2026:15:00:00 +0000", "timeEpoch": 0,
                "http": {"method": "PUT", "path": "/users/alice/binding", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "t"}
            },
            "isBase64Encoded": false
        });
        if let Some(a) = authorizer {
            event["requestContext"]["authorizer"] = a;
        }
        lambda_http::request::from_str(&event.to_string()).unwrap()
    }

    #[test]
    fn the_actor_of_a_request_is_the_iam_principal_api_gateway_authenticated() {
        // R-AUD-1
        let arn = "arn:aws:sts::123456789012:assumed-role/Admins/alice";
        let signed = request_with_context(Some(serde_json::json!({
            "iam": {"accessKey": "AKIA", "accountId": "123456789012", "callerId": "AROA:alice",
                    "principalOrgId": null, "userArn": arn, "userId": "AROA:alice"}
        })));
        assert_eq!(actor_of(&signed).as_str(), arn);
        let public = request_with_context(None);
        assert_eq!(actor_of(&public).as_str(), Actor::ANONYMOUS);
        let blank = request_with_context(Some(serde_json::json!({"iam": {"userArn": "  "}})));
        assert_eq!(actor_of(&blank).as_str(), Actor::ANONYMOUS);
        assert_eq!(
            actor_of(&request("{}")).as_str(),
            Actor::ANONYMOUS,
            "no API context"
        );
    }
}
