//! The `bind` function (DESIGN §3, §4 "bind"): `PUT /users/{userId}/binding` with an optional
//! `{"welcome": bool, "adoptPrivileged": bool}` binds a directory user to the tenant its email
//! domain routes to — create, adopt or unblock (R-BIND-1..4, R-BIND-6, R-BIND-8) — and
//! `GET /users/{userId}/binding` shows the binding (state, tenant, M365 object id, last error,
//! `adoptedPrivileged`).
//!
//! An existing M365 account that holds a directory role or consented the connection is not
//! adopted: `409 privileged_account`, nothing written, unless `"adoptPrivileged": true`
//! (R-BIND-11; the opt-in is kept in the `user_update_provision` event).
//!
//! `"restore"` (default `true`, R-BIND-10): a re-bind whose account M365 deleted less than 30 days
//! ago restores it from `deletedItems` — `200`, same object id, the binding says `restored: true`;
//! `"restore": false` waits for the address and creates a new account (R-BIND-8). The binding
//! shows `restored`, and `restoreConflict` when M365 refused the restore.
//!
//! The tenant is never taken from the caller: routing by the user's stored email decides
//! (R-BIND-1); a body with any other field is refused (R-SAFE-1). A user disabled in the directory
//! is refused with `409 user_disabled` (R-BIND-9). Answers: `200` done or unchanged (or
//! `superseded`: an unbind sent meanwhile won and the bind blocked what it enabled, R-BIND-12),
//! `202` pending on the retry queue, `4xx` with a code otherwise. Graph work stops before the
//! invocation's deadline (R-OPS-2; `main.rs` bounds the ports by it): a bind that runs out of time
//! answers `202` pending with reason `deadline` and its retry queued, never a gateway timeout. A
//! user the bind bound joins the security groups of its bound directory groups at once — the
//! bind use case does it (R-GRP-1).

#![allow(
    clippy::result_large_err,
    reason = "a request step short-circuits with the finished 4xx response (`provision::Answer`), built at most once per request"
)]

use lambda_http::Request;
use lambda_http::http::{Method, StatusCode};
use m365_engine::Error;
use m365_engine::error::Entity;
use m365_engine::ports::{BindingStore, Ports};
use m365_engine::usecase::bind::{Bind, BindRequest};
use m365_lambda::api::{self, BindingView};
use m365_lambda::provision;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutBinding {
    welcome: Option<bool>,
    adopt_privileged: Option<bool>,
    /// R-BIND-10: restore a deleted account (default) or, with `false`, wait and create anew.
    restore: Option<bool>,
}

/// Serves `PUT` and `GET /users/{userId}/binding` on `ports` (bounded by the invocation's
/// deadline, R-OPS-2); any other route is a `404 route_not_found`.
///
/// # Errors
/// Never (see [`provision::Handled`]).
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(ports: &P, request: Request) -> provision::Handled {
    let answer = match (request.method(), provision::path(&request).as_slice()) {
        (&Method::PUT, ["users", id, "binding"]) => put(ports, &request, id).await,
        (&Method::GET, ["users", id, "binding"]) => get(ports, id).await,
        _ => Ok(api::no_route("bind")),
    };
    provision::handled("bind", answer)
}

async fn put<P: Ports>(ports: &P, request: &Request, raw: &str) -> provision::Answer {
    let user_id = provision::user_id(raw)?;
    // An empty body means the defaults (welcome notification sent).
    let body: PutBinding = if provision::body_is_empty(request) {
        PutBinding::default()
    } else {
        provision::json_body(request)?
    };
    let request = BindRequest {
        welcome: body.welcome.unwrap_or(true),
        adopt_privileged: body.adopt_privileged.unwrap_or(false),
        restore: body.restore.unwrap_or(true),
    };
    // Boxed: the bind's future (with its group follow-up) is deep.
    Ok(
        match Box::pin(Bind::new(ports).bind(&user_id, request)).await {
            Ok(outcome) => api::outcome_response(&outcome),
            Err(e) => api::engine_error(&e),
        },
    )
}

async fn get<P: Ports>(ports: &P, raw: &str) -> provision::Answer {
    let user_id = provision::user_id(raw)?;
    Ok(match ports.bindings().get(&user_id).await {
        Ok(Some(b)) => api::json(StatusCode::OK, &BindingView::from(&b)),
        Ok(None) => api::engine_error(&Error::not_found(Entity::Binding, user_id)),
        Err(e) => api::engine_error(&e),
    })
}
