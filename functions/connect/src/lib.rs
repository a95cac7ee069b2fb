//! The `connect` function (DESIGN §3): `POST /tenants` starts a connection (optionally with the
//! `expectedDomain` the consenting tenant must have, R-CONN-7) or a reconnection with
//! `{"tenantId"}`, `GET /oauth/callback` completes it (a consent of the wrong Microsoft tenant:
//! 409 `tenant_mismatch`, nothing stored), `GET /tenants` and `GET /tenants/{tenantId}` show
//! tenants, `DELETE /tenants/{tenantId}` deauthorizes one (R-CONN-1..8).
//!
//! [`handle`] decodes the request into a command, calls one use case of
//! `m365_engine::usecase::connect` and encodes the result; every error is
//! `{"error": {"code", "message"}}`, a 4xx for bad input (R-SAFE-1). The authorization code and
//! `state` are never logged (R-SAFE-2). The `GET /tenants` cursor is opaque and signed with the
//! deployment's cursor key (`m365_engine::policy::cursor`): a forged one is 400 `invalid_cursor`;
//! a tenant name holding a control or bidirectional-override character is 400 `invalid_name`
//! (`m365_engine::policy::name`).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use m365_aws::{
    DynamoBindings, DynamoEvents, DynamoPendingConsents, DynamoTenants, SecretsManagerCursorKey,
    SecretsManagerTokenVault,
};
use m365_engine::Error;
use m365_engine::error::{FieldProblem, InvalidInput};
use m365_engine::model::{DEFAULT_PAGE_LIMIT, DomainKind, Tenant, TenantId};
use m365_engine::ports::{
    BindingStore, Clock, EventStore, IdentityPlatform, PendingConsents, SystemClock, TenantProbe,
    TenantStore, TokenVault,
};
use m365_engine::usecase::connect::{
    Callback, CompleteConnection, ConnectError, DEFAULT_CONSENT_TTL, Deauthorize, StartConnection,
};
use m365_graph::GraphIdentity;
use m365_lambda::api;
use m365_lambda::deadline::DeadlinePolicy;
use m365_lambda::graph::VaultDirectory;
use m365_lambda::{App, AppError, GraphApp, GraphSetupError};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The ports the connect use cases need.
#[derive(Debug, Clone)]
pub struct Connect<T, S, I, V, D, E, B, C> {
    /// Tenants and domain claims.
    pub tenants: T,
    /// Sign-ins under way (`state` + PKCE verifier).
    pub consents: S,
    /// The identity platform.
    pub identity: I,
    /// Tenant tokens.
    pub vault: V,
    /// M365: which tenant a just-issued token belongs to, and its domains (R-CONN-7).
    pub directory: D,
    /// Audit events.
    pub events: E,
    /// Bindings (deauthorize).
    pub bindings: B,
    /// Time.
    pub clock: C,
    /// The key signing `GET /tenants` cursors (R-SAFE-1).
    pub cursor_key: SecretsManagerCursorKey,
    /// How the time before the Lambda deadline is spent (the configuration's, R-OPS-2).
    pub deadlines: DeadlinePolicy,
}

/// The listing name `GET /tenants` cursors are bound to.
const TENANTS_LISTING: &str = "tenants";

/// The deployed wiring: DynamoDB, Secrets Manager, Graph.
pub type Deployed = Connect<
    DynamoTenants,
    DynamoPendingConsents,
    GraphIdentity,
    SecretsManagerTokenVault,
    VaultDirectory,
    DynamoEvents,
    DynamoBindings,
    SystemClock,
>;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The AWS side.
    #[error(transparent)]
    App(#[from] AppError),
    /// The Graph side.
    #[error(transparent)]
    Graph(#[from] GraphSetupError),
}

impl Deployed {
    /// Reads the configuration and builds every client once (cold start).
    ///
    /// # Errors
    /// [`StartError`] for a missing variable or an unreadable OAuth client secret.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env().await?;
        let graph = GraphApp::load(&app).await?;
        Ok(Self::from_app(&app, &graph))
    }

    /// The wiring of an already built [`App`] and [`GraphApp`].
    #[must_use]
    pub fn from_app(app: &App, graph: &GraphApp) -> Self {
        Self {
            tenants: app.tenants.clone(),
            consents: app.pending_consents.clone(),
            identity: graph.identity.clone(),
            vault: app.token_vault.clone(),
            directory: graph.directory.clone(),
            events: app.events.clone(),
            bindings: app.bindings.clone(),
            clock: SystemClock,
            cursor_key: app.cursor_key.clone(),
            deadlines: app.config.deadlines,
        }
    }

    /// This wiring with its Graph and token calls bounded by the deadline of `request` (its
    /// Lambda deadline, capped at API Gateway's 30 s, minus the margin; R-OPS-2). `main` calls
    /// it per request: [`handle`] is generic over the ports and does not know the deployed ones.
    #[must_use]
    pub fn for_request(&self, request: &Request) -> Self {
        let Some(deadline) = self.deadlines.of_request(request) else {
            return self.clone();
        };
        Self {
            identity: self.identity.with_deadline(deadline),
            directory: self.directory.with_deadline(deadline),
            ..self.clone()
        }
    }
}

/// A tenant as the API shows it (no tokens, ever).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// Our id.
    pub tenant_id: String,
    /// Admin-given name.
    pub name: String,
    /// `pending_consent`, `active`, `reauthorization_required` or `deauthorized`.
    pub status: &'static str,
    /// Microsoft's tenant id, when known.
    pub m365_tenant_id: Option<String>,
    /// Verified domains; only managed ones route users (R-CONN-2, R-CONN-3).
    pub domains: Vec<DomainView>,
    /// When the access token expires.
    pub token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The verified domain the first consent must come with (R-CONN-7), when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_domain: Option<String>,
}

/// A verified domain as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    /// The domain.
    pub name: String,
    /// `managed` or `federated`.
    pub kind: DomainKind,
    /// Whether users of this domain can be bound (managed domains only).
    pub routable: bool,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            tenant_id: t.id.to_string(),
            name: t.name.clone(),
            status: t.status.as_str(),
            m365_tenant_id: t.m365_tenant_id.as_ref().map(ToString::to_string),
            domains: t
                .domains
                .iter()
                .map(|d| DomainView {
                    name: d.name.to_string(),
                    kind: d.kind,
                    routable: d.kind == DomainKind::Managed,
                })
                .collect(),
            token_expires_at: t.token_expires_at,
            expected_domain: t.expected_domain.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostTenants {
    name: Option<String>,
    tenant_id: Option<String>,
    expected_domain: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Started {
    tenant_id: String,
    status: &'static str,
    authorize_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    tenants: Vec<TenantView>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeauthorizedView {
    tenant: TenantView,
    unselected_bindings: usize,
}

/// Handles one API Gateway request. Every outcome is a response (errors included), so the
/// function never fails an invocation for a request's sake.
///
/// # Errors
/// Never: the `Result` is what `lambda_http::service_fn` expects.
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<T, S, I, V, D, E, B, C>(
    deps: &Connect<T, S, I, V, D, E, B, C>,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error>
where
    T: TenantStore,
    S: PendingConsents,
    I: IdentityPlatform,
    V: TokenVault,
    D: TenantProbe,
    E: EventStore,
    B: BindingStore,
    C: Clock,
{
    let path = match request.raw_http_path() {
        "" => request.uri().path().to_owned(),
        raw => raw.to_owned(),
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    let response = match (&method, segments.as_slice()) {
        (&Method::POST, ["tenants"]) => post_tenants(deps, &request).await,
        (&Method::GET, ["oauth", "callback"]) => callback(deps, &request).await,
        (&Method::GET, ["tenants"]) => list(deps, &request).await,
        (&Method::GET, ["tenants", id]) => get(deps, id).await,
        (&Method::DELETE, ["tenants", id]) => deauthorize(deps, id).await,
        _ => api::error(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "no such route in the connect function",
        ),
    };
    tracing::info!(
        http.method = %method,
        http.status = response.status().as_u16(),
        "connect request handled"
    );
    Ok(response)
}

fn body_text(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

fn invalid_json(e: &serde_json::Error) -> Response<Body> {
    api::error(
        StatusCode::BAD_REQUEST,
        "invalid_json",
        &format!("the body is not the expected JSON: {e}"),
    )
}

fn tenant_id(raw: &str) -> Result<TenantId, Error> {
    Ok(TenantId::parse(raw)?)
}

async fn post_tenants<T, S, I, V, D, E, B, C>(
    deps: &Connect<T, S, I, V, D, E, B, C>,
    request: &Request,
) -> Response<Body>
where
    T: TenantStore,
    S: PendingConsents,
    I: IdentityPlatform,
    C: Clock,
{
    let body: PostTenants = match serde_json::from_slice(body_text(request)) {
        Ok(b) => b,
        Err(e) => return invalid_json(&e),
    };
    let start = StartConnection {
        tenants: &deps.tenants,
        consents: &deps.consents,
        identity: &deps.identity,
        clock: &deps.clock,
        consent_ttl: DEFAULT_CONSENT_TTL,
    };
    let (result, status) = match (body.name, body.tenant_id) {
        (Some(name), None) => (
            start
                .start_expecting(&name, body.expected_domain.as_deref())
                .await,
            StatusCode::CREATED,
        ),
        (None, Some(_)) if body.expected_domain.is_some() => {
            return api::error(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "expectedDomain is given with a name (a new tenant); a reconnect is pinned to the \
                 tenant's Microsoft 365 tenant already",
            );
        }
        (None, Some(id)) => match tenant_id(&id) {
            Ok(id) => (start.restart(&id).await, StatusCode::OK),
            Err(e) => return api::engine_error(&e),
        },
        _ => {
            return api::error(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "give either a name (a new tenant) or a tenantId (reconnect an existing one)",
            );
        }
    };
    match result {
        Ok(started) => {
            tracing::info!(tenant.id = %started.tenant.id, "connection started");
            api::json(
                status,
                &Started {
                    tenant_id: started.tenant.id.to_string(),
                    status: started.tenant.status.as_str(),
                    authorize_url: started.authorize_url,
                },
            )
        }
        Err(e) => api::engine_error(&e),
    }
}

fn connect_error(e: &ConnectError) -> Response<Body> {
    let status = match e {
        ConnectError::InvalidState | ConnectError::CodeRejected { .. } => StatusCode::BAD_REQUEST,
        ConnectError::ConsentDenied { .. } => StatusCode::FORBIDDEN,
        ConnectError::FederatedTenant => StatusCode::UNPROCESSABLE_ENTITY,
        ConnectError::TenantMismatch { .. } | ConnectError::ExpectedDomainMissing { .. } => {
            StatusCode::CONFLICT
        }
        ConnectError::Engine(inner) => return api::engine_error(inner),
    };
    api::error(status, e.code(), &e.to_string())
}

async fn callback<T, S, I, V, D, E, B, C>(
    deps: &Connect<T, S, I, V, D, E, B, C>,
    request: &Request,
) -> Response<Body>
where
    T: TenantStore,
    S: PendingConsents,
    I: IdentityPlatform,
    V: TokenVault,
    D: TenantProbe,
    E: EventStore,
    C: Clock,
{
    let query = request.query_string_parameters();
    let param = |name: &str| {
        query
            .first(name)
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
    };
    let callback = match (param("error"), param("code"), param("state")) {
        (Some(error), _, state) => Callback::Denied { state, error },
        (None, Some(code), Some(state)) => Callback::Code {
            code: SecretString::from(code),
            state,
        },
        (None, _, None) => return connect_error(&ConnectError::InvalidState),
        (None, None, Some(_)) => {
            return api::engine_error(&Error::Invalid(InvalidInput::Field {
                field: "code",
                problem: FieldProblem::Empty,
            }));
        }
    };
    let complete = CompleteConnection {
        tenants: &deps.tenants,
        consents: &deps.consents,
        identity: &deps.identity,
        vault: &deps.vault,
        directory: &deps.directory,
        events: &deps.events,
        clock: &deps.clock,
    };
    match complete.complete(callback).await {
        Ok(tenant) => {
            tracing::info!(tenant.id = %tenant.id, "tenant connected");
            api::json(StatusCode::OK, &TenantView::from(&tenant))
        }
        Err(e) => {
            tracing::info!(error.code = e.code(), "connection refused");
            connect_error(&e)
        }
    }
}

async fn list<T, S, I, V, D, E, B, C>(
    deps: &Connect<T, S, I, V, D, E, B, C>,
    request: &Request,
) -> Response<Body>
where
    T: TenantStore,
{
    let query = request.query_string_parameters();
    let limit = match query.first("limit").map(str::parse::<u32>) {
        None => DEFAULT_PAGE_LIMIT,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return api::engine_error(&Error::Invalid(InvalidInput::Field {
                field: "limit",
                problem: FieldProblem::TooLong { max: 100 },
            }));
        }
    };
    let key = match deps.cursor_key.key().await {
        Ok(key) => key,
        Err(e) => return api::engine_error(&e),
    };
    let page = match key.page_request(TENANTS_LISTING, query.first("cursor"), limit) {
        Ok(page) => page,
        Err(e) => return api::engine_error(&e),
    };
    let listed = deps.tenants.list(&page).await.and_then(|page| {
        Ok(Listing {
            tenants: page.items.iter().map(TenantView::from).collect(),
            next_cursor: key.next_cursor(TENANTS_LISTING, page.next.as_ref())?,
        })
    });
    match listed {
        Ok(listing) => api::json(StatusCode::OK, &listing),
        Err(e) => api::engine_error(&e),
    }
}

async fn get<T, S, I, V, D, E, B, C>(
    deps: &Connect<T, S, I, V, D, E, B, C>,
    raw: &str,
) -> Response<Body>
where
    T: TenantStore,
{
    let id = match tenant_id(raw) {
        Ok(id) => id,
        Err(e) => return api::engine_error(&e),
    };
    match deps.tenants.get(&id).await {
        Ok(Some(t)) => api::json(StatusCode::OK, &TenantView::from(&t)),
        Ok(None) => api::engine_error(&Error::not_found(m365_engine::error::Entity::Tenant, id)),
        Err(e) => api::engine_error(&e),
    }
}

async fn deauthorize<T, S, I, V, D, E, B, C>(
    deps: &Connect<T, S, I, V, D, E, B, C>,
    raw: &str,
) -> Response<Body>
where
    T: TenantStore,
    V: TokenVault,
    E: EventStore,
    B: BindingStore,
    C: Clock,
{
    let id = match tenant_id(raw) {
        Ok(id) => id,
        Err(e) => return api::engine_error(&e),
    };
    let deauth = Deauthorize {
        tenants: &deps.tenants,
        vault: &deps.vault,
        bindings: &deps.bindings,
        events: &deps.events,
        clock: &deps.clock,
    };
    match deauth.deauthorize(&id).await {
        Ok(done) => api::json(
            StatusCode::OK,
            &DeauthorizedView {
                tenant: TenantView::from(&done.tenant),
                unselected_bindings: done.unselected,
            },
        ),
        Err(e) => api::engine_error(&e),
    }
}
