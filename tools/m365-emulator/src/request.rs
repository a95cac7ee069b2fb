//! Per-request plumbing shared by every surface: request ids (`request-id`,
//! `client-request-id` headers on every response, graph-spec §2.1/§11.13), rendering of parked
//! [`GraphError`](crate::error::GraphError) bodies, per-tenant request counters and the one
//! log line per request (method, path, status, tenant).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;
use crate::error::PendingErrorBody;

/// The ids of the current request. Available to handlers as `Extension<RequestIds>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestIds {
    /// Server-generated GUID, returned in the `request-id` header and `innerError`.
    pub request_id: String,
    /// The client's `client-request-id` header if sent, else the same as `request_id`.
    pub client_request_id: String,
}

/// Put into the *response* extensions by handlers once they know the tenant, so the log line
/// and the request counters name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantTag(pub String);

/// Which counter a request is added to (`graph` for `/v1.0/...`, `identity` otherwise).
fn surface(path: &str) -> &'static str {
    if path.starts_with("/v1.0/") || path == "/v1.0" {
        "graph"
    } else if path.starts_with("/_emulator") {
        "admin"
    } else {
        "identity"
    }
}

/// The middleware wrapping every route.
pub async fn middleware(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| request_id.clone(), str::to_owned);
    let ids = RequestIds {
        request_id,
        client_request_id,
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(ids.clone());

    let mut response = next.run(req).await;

    if let Some(PendingErrorBody(error)) = response.extensions_mut().remove::<PendingErrorBody>() {
        let now = app.lock().clock.now();
        *response.body_mut() = Body::from(error.render(&ids, now));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        response.headers_mut().insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.client_request_id) {
        response.headers_mut().insert("client-request-id", v);
    }

    let tenant = response
        .extensions()
        .get::<TenantTag>()
        .map(|t| t.0.clone());
    // Graph requests are counted by the Graph guard (which also sees $batch items).
    if let Some(tenant_id) = tenant.as_ref().filter(|_| surface(&path) != "graph") {
        let mut state = app.lock();
        if let Some(t) = state.tenants.get_mut(tenant_id) {
            *t.request_counts
                .entry(surface(&path).to_owned())
                .or_default() += 1;
        }
    }
    tracing::info!(
        http.method = %method,
        http.path = %path,
        http.status = response.status().as_u16(),
        tenant.id = tenant.as_deref().unwrap_or("-"),
        request.id = %ids.request_id,
        "request"
    );
    response
}
