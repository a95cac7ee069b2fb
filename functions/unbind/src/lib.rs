//! The `unbind` function (DESIGN §3, §4 "unbind"): `DELETE /users/{userId}/binding` records the
//! unbind's intent on the binding, blocks the user's sign-in in M365 (`accountEnabled=false`) and
//! revokes its sessions (`revokeSignInSessions`), never deleting the account; it records
//! `user_deprovision` (R-BIND-5, R-BIND-9). A bind racing it loses and blocks what it enabled
//! (R-BIND-12). An account already deleted in M365 leaves the directory user unchanged and the
//! binding `deleted_in_m365` (R-BIND-8). Throttling and 5xx put the unbind on the retry queue
//! (`202`).

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use m365_engine::ports::Clock;
use m365_engine::usecase::unbind::Unbind;
use m365_lambda::api;
use m365_lambda::provision::{self, Provisioning};

/// Handles one API Gateway request; every outcome is a response.
///
/// # Errors
/// Never: the `Result` is what `lambda_http::service_fn` expects.
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<C: Clock + Clone>(
    deps: &Provisioning<C>,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    // Graph calls stop before the invocation's deadline; cut-off work is re-queued (R-OPS-2).
    let deps = &deps.for_request(&request);
    let segments = provision::segments(&request);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (request.method(), path.as_slice()) {
        (&Method::DELETE, ["users", id, "binding"]) => delete(deps, &request, id).await,
        _ => provision::no_route("unbind"),
    };
    tracing::info!(
        http.status = response.status().as_u16(),
        "unbind request handled"
    );
    Ok(response)
}

async fn delete<C: Clock>(deps: &Provisioning<C>, request: &Request, raw: &str) -> Response<Body> {
    let user_id = match provision::user_id(raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if !provision::body_bytes(request)
        .iter()
        .all(u8::is_ascii_whitespace)
    {
        return api::error(
            lambda_http::http::StatusCode::BAD_REQUEST,
            "unexpected_body",
            "DELETE /users/{userId}/binding takes no body",
        );
    }
    let unbind = Unbind {
        fx: deps.effects(),
        users: &deps.app.users,
        directory: &deps.directory,
    };
    match unbind.unbind(&user_id).await {
        Ok(outcome) => provision::outcome_response(&outcome),
        Err(e) => api::engine_error(&e),
    }
}
