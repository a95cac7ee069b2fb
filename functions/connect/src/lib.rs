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

#![allow(
    clippy::result_large_err,
    reason = "a request step short-circuits with the finished 4xx response (`provision::Answer`), built at most once per request"
)]

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::Error;
use m365_engine::ports::{CursorKeys, Ports, TenantStore};
use m365_engine::usecase::connect::{
    CompleteConnection, DEFAULT_CONSENT_TTL, Deauthorize, StartConnection,
};
use m365_lambda::{api, provision};

/// The listing name `GET /tenants` cursors are bound to.
const TENANTS_LISTING: &str = "tenants";

/// The deployed ports (the shared wiring of every function).
pub type Deployed = m365_lambda::provision::Deployed;

mod views;

use views::{DeauthorizedView, Listing, PostTenants, Started};
pub use views::{DomainView, TenantView};

/// Handles one API Gateway request. Every outcome is a response (errors included), so the
/// function never fails an invocation for a request's sake.
///
/// # Errors
/// Never: the `Result` is what `lambda_http::service_fn` expects.
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(deps: &P, request: Request) -> provision::Handled {
    let response = match (request.method(), provision::path(&request).as_slice()) {
        (&Method::POST, ["tenants"]) => post_tenants(deps, &request).await,
        (&Method::GET, ["oauth", "callback"]) => callback(deps, &request).await,
        (&Method::GET, ["tenants"]) => list(deps, &request).await,
        (&Method::GET, ["tenants", id]) => get(deps, id).await,
        (&Method::DELETE, ["tenants", id]) => deauthorize(deps, id).await,
        _ => api::no_route("connect"),
    };
    provision::handled("connect", Ok(response))
}

async fn post_tenants<P: Ports>(deps: &P, request: &Request) -> Response<Body> {
    let body: PostTenants = match provision::json_body(request) {
        Ok(b) => b,
        Err(answer) => return answer,
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
        (None, Some(id)) => match provision::tenant_id(&id) {
            Ok(id) => (start.restart(&id).await, StatusCode::OK),
            Err(answer) => return answer,
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
    let callback = match views::callback_of(request) {
        Ok(callback) => callback,
        Err(answer) => return answer,
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
    let limit = match views::page_limit(query.first("limit")) {
        Ok(limit) => limit,
        Err(answer) => return answer,
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
    let id = match provision::tenant_id(raw) {
        Ok(id) => id,
        Err(answer) => return answer,
    };
    match deps.tenants().get(&id).await {
        Ok(Some(t)) => api::json(StatusCode::OK, &TenantView::from(&t)),
        Ok(None) => api::engine_error(&Error::not_found(m365_engine::error::Entity::Tenant, id)),
        Err(e) => api::engine_error(&e),
    }
}

async fn deauthorize<P: Ports>(deps: &P, raw: &str) -> Response<Body> {
    let id = match provision::tenant_id(raw) {
        Ok(id) => id,
        Err(answer) => return answer,
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
