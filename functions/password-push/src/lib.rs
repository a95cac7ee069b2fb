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

#![allow(
    clippy::result_large_err,
    reason = "a request step short-circuits with the finished 4xx response (`provision::Answer`), built at most once per request"
)]

use lambda_http::Request;
use lambda_http::http::Method;
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

/// Serves `POST /users/{userId}/password` on `ports` (bounded by the invocation's deadline,
/// R-OPS-2); any other route is a `404 route_not_found`.
///
/// # Errors
/// Never (see [`provision::Handled`]).
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(ports: &P, request: Request) -> provision::Handled {
    let answer = match (request.method(), provision::path(&request).as_slice()) {
        (&Method::POST, ["users", id, "password"]) => post(ports, &request, id).await,
        _ => Ok(api::no_route("password-push")),
    };
    provision::handled("password", answer)
}

async fn post<P: Ports>(ports: &P, request: &Request, raw: &str) -> provision::Answer {
    let user_id = provision::user_id(raw)?;
    let body: PostPassword = provision::json_body(request)?;
    Ok(
        match Box::pin(SetPassword::new(ports).set(&user_id, &body.password)).await {
            Ok(done) => api::password_response(&done.push),
            Err(e) => api::engine_error(&e),
        },
    )
}
