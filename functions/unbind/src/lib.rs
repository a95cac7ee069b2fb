//! The `unbind` function (DESIGN §3, §4 "unbind"): `DELETE /users/{userId}/binding` records the
//! unbind's intent on the binding, blocks the user's sign-in in M365 (`accountEnabled=false`) and
//! revokes its sessions (`revokeSignInSessions`), never deleting the account; it records
//! `user_deprovision` (R-BIND-5, R-BIND-9). A bind racing it loses and blocks what it enabled
//! (R-BIND-12). An account already deleted in M365 leaves the directory user unchanged and the
//! binding `deleted_in_m365` (R-BIND-8). Throttling and 5xx put the unbind on the retry queue
//! (`202`).

#![allow(
    clippy::result_large_err,
    reason = "a request step short-circuits with the finished 4xx response (`provision::Answer`), built at most once per request"
)]

use lambda_http::Request;
use lambda_http::http::{Method, StatusCode};
use m365_engine::ports::Ports;
use m365_engine::usecase::unbind::Unbind;
use m365_lambda::{api, provision};

/// Serves `DELETE /users/{userId}/binding` on `ports` (bounded by the invocation's deadline,
/// R-OPS-2); any other route is a `404 route_not_found`.
///
/// # Errors
/// Never (see [`provision::Handled`]).
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(ports: &P, request: Request) -> provision::Handled {
    let answer = match (request.method(), provision::path(&request).as_slice()) {
        (&Method::DELETE, ["users", id, "binding"]) => delete(ports, &request, id).await,
        _ => Ok(api::no_route("unbind")),
    };
    provision::handled("unbind", answer)
}

async fn delete<P: Ports>(ports: &P, request: &Request, raw: &str) -> provision::Answer {
    let user_id = provision::user_id(raw)?;
    if !provision::body_is_empty(request) {
        return Err(api::error(
            StatusCode::BAD_REQUEST,
            "unexpected_body",
            "DELETE /users/{userId}/binding takes no body",
        ));
    }
    Ok(match Box::pin(Unbind::new(ports).unbind(&user_id)).await {
        Ok(outcome) => api::outcome_response(&outcome),
        Err(e) => api::engine_error(&e),
    })
}
