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
use m365_engine::Error;
use m365_engine::error::{FieldProblem, InvalidInput};
use m365_engine::model::{DEFAULT_PAGE_LIMIT, DomainKind, Tenant, TenantId};
use m365_engine::ports::{CursorKeys, Ports, TenantStore};
use m365_engine::usecase::connect::{
    Callback, CompleteConnection, ConnectError, DEFAULT_CONSENT_TTL, Deauthorize, StartConnection,
};
use m365_lambda::api;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The listing name `GET /tenants` cursors are bound to.
const TENANTS_LISTING: &str = "tenants";

/// The deployed ports (the shared wiring of every function).
pub type Deployed = m365_lambda::provision::Deployed;

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
pub async fn handle<P: Ports>(
    deps: &P,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
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

async fn post_tenants<P: Ports>(deps: &P, request: &Request) -> Response<Body> {
    let body: PostTenants = match serde_json::from_slice(body_text(request)) {
        Ok(b) => b,
        Err(e) => return invalid_json(&e),
    };
    let start = StartConnection::new(deps, DEFAULT_CONSENT_TTL);
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

async fn callback<P: Ports>(deps: &P, request: &Request) -> Response<Body> {
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
        (None, _, None) => return api::connect_error(&ConnectError::InvalidState),
        (None, None, Some(_)) => {
            return api::engine_error(&Error::Invalid(InvalidInput::Field {
                field: "code",
                problem: FieldProblem::Empty,
            }));
        }
    };
    let complete = CompleteConnection::new(deps);
    match complete.complete(callback).await {
        Ok(tenant) => {
            tracing::info!(tenant.id = %tenant.id, "tenant connected");
            api::json(StatusCode::OK, &TenantView::from(&tenant))
        }
        Err(e) => {
            tracing::info!(error.code = e.code(), "connection refused");
            api::connect_error(&e)
        }
    }
}

async fn list<P: Ports>(deps: &P, request: &Request) -> Response<Body> {
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
    let key = match deps.cursor_keys().key().await {
        Ok(key) => key,
        Err(e) => return api::engine_error(&e),
    };
    let page = match key.page_request(TENANTS_LISTING, query.first("cursor"), limit) {
        Ok(page) => page,
        Err(e) => return api::engine_error(&e),
    };
    let listed = deps.tenants().list(&page).await.and_then(|page| {
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

async fn get<P: Ports>(deps: &P, raw: &str) -> Response<Body> {
    let id = match tenant_id(raw) {
        Ok(id) => id,
        Err(e) => return api::engine_error(&e),
    };
    match deps.tenants().get(&id).await {
        Ok(Some(t)) => api::json(StatusCode::OK, &TenantView::from(&t)),
        Ok(None) => api::engine_error(&Error::not_found(m365_engine::error::Entity::Tenant, id)),
        Err(e) => api::engine_error(&e),
    }
}

async fn deauthorize<P: Ports>(deps: &P, raw: &str) -> Response<Body> {
    let id = match tenant_id(raw) {
        Ok(id) => id,
        Err(e) => return api::engine_error(&e),
    };
    let deauth = Deauthorize::new(deps);
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
