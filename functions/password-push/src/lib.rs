//! The `password-push` function (DESIGN §3, §4 "password"): `POST /users/{userId}/password`
//! with `{"password"}` validates the password against the directory and Entra policies (a
//! refusal is `400 password_policy` naming every broken rule, and nothing is stored, R-PWD-1),
//! seals it (AES-256-GCM), stores it on the user and, for a bound user, pushes it to M365 with
//! `forceChangePasswordNextSignIn=false` → `user_password_update_provision` (R-PWD-2); a
//! `suspended` account is re-enabled (R-PWD-4). Answers `204` (stored; pushed, or queued for a
//! retry when M365 was unavailable). A privileged M365 account (a directory role, or the
//! connection's consenting admin) not adopted with `adoptPrivileged` is not pushed to: `409
//! privileged_account`, the password stays stored (R-BIND-11).
//!
//! The password is a `SecretString` from the moment it is decoded: it never reaches a log, an
//! error body or a queue message (R-SAFE-2).

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use m365_engine::ports::Ports;
use m365_engine::usecase::password::SetPassword;
use m365_lambda::{api, provision};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostPassword {
    password: SecretString,
}

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
        (&Method::POST, ["users", id, "password"]) => post(ports, &request, id).await,
        _ => api::no_route("password-push"),
    };
    tracing::info!(
        http.status = response.status().as_u16(),
        "password request handled"
    );
    Ok(response)
}

async fn post<P: Ports>(ports: &P, request: &Request, raw: &str) -> Response<Body> {
    let user_id = match provision::user_id(raw) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let body: PostPassword = match provision::json_body(request) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match Box::pin(SetPassword::new(ports).set(&user_id, &body.password)).await {
        Ok(done) => api::password_response(&done.push),
        Err(e) => api::engine_error(&e),
    }
}
