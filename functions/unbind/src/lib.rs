//! The `unbind` function (DESIGN §3, §4 "unbind"): `DELETE /users/{userId}/binding` records the
//! unbind's intent on the binding, blocks the user's sign-in in M365 (`accountEnabled=false`) and
//! revokes its sessions (`revokeSignInSessions`), never deleting the account; it records
//! `user_deprovision` (R-BIND-5, R-BIND-9). A bind racing it loses and blocks what it enabled
//! (R-BIND-12). An account already deleted in M365 leaves the directory user unchanged and the
//! binding `deleted_in_m365` (R-BIND-8). Throttling and 5xx put the unbind on the retry queue
//! (`202`).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use m365_engine::ports::Ports;
use m365_engine::usecase::unbind::Unbind;
use m365_lambda::{api, provision};

/// Handles one API Gateway request on `ports` (already bounded by the invocation's deadline,
/// R-OPS-2); every outcome is a response.
///
/// # Errors
/// Never: the `Result` is what `lambda_http::service_fn` expects.
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(
    ports: &P,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    let segments = provision::segments(&request);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (request.method(), path.as_slice()) {
        (&Method::DELETE, ["users", id, "binding"]) => delete(ports, &request, id).await,
        _ => api::no_route("unbind"),
    };
    tracing::info!(
        http.status = response.status().as_u16(),
        "unbind request handled"
    );
    Ok(response)
}

async fn delete<P: Ports>(ports: &P, request: &Request, raw: &str) -> Response<Body> {
    let user_id = match provision::user_id(raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    if !provision::body_bytes(request)
        .iter()
        .all(u8::is_ascii_whitespace)
    {
        return api::error(
            StatusCode::BAD_REQUEST,
            "unexpected_body",
            "DELETE /users/{userId}/binding takes no body",
        );
    }
    match Box::pin(Unbind::new(ports).unbind(&user_id)).await {
        Ok(outcome) => api::outcome_response(&outcome),
        Err(e) => api::engine_error(&e),
    }
}
