//! HTTP API responses of the functions behind API Gateway (DESIGN §3), the one place that maps
//! what the engine answers to a status and a body: JSON bodies, and errors as
//! `{"error": {"code", "message"}}` (several bad fields also list each in `details`, R-ATTR-1)
//! with a status chosen from the engine's error
//! ([`engine_error`], [`connect_error`]) — bad input is a 4xx, never a 5xx (R-SAFE-1); retryable
//! failures are 503; the rest is 500 with a generic message (the cause goes to the logs, never to
//! the caller) — or from an operation's [`Outcome`] ([`outcome_response`],
//! [`password_response`]); the binding as the API shows it ([`BindingView`]); the 400 of a
//! malformed id ([`invalid_id`]) and the 404 of an unknown route ([`no_route`]).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use m365_engine::Error;
use m365_engine::error::InvalidInput;
use m365_engine::model::{Binding, BindingError, IdError, SuspendedReason};
use m365_engine::usecase::Outcome;
use m365_engine::usecase::connect::ConnectError;
use serde::Serialize;

/// Content type of every answer.
const JSON: &str = "application/json";

/// A JSON response with `status`.
#[must_use]
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => respond(status, text),
        // Our response types always serialize; keep a well-formed answer if one ever does not.
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the response could not be encoded",
        ),
    }
}

/// An error response: `{"error": {"code", "message"}}`.
#[must_use]
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    respond(status, body.to_string())
}

fn respond(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    if let Ok(value) = lambda_http::http::HeaderValue::from_str(JSON) {
        response
            .headers_mut()
            .insert(lambda_http::http::header::CONTENT_TYPE, value);
    }
    response
}

/// The status an engine error answers with.
#[must_use]
pub fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Invalid(_) | Error::PasswordPolicy(_) | Error::Routing(_) => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::ReauthorizationRequired { .. } | Error::Forbidden { .. } => StatusCode::CONFLICT,
        Error::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error response of an engine error: its code, and its message for a 4xx or a generic
/// one otherwise (internal causes stay in the logs).
#[must_use]
pub fn engine_error(e: &Error) -> Response<Body> {
    let status = status_of(e);
    if let Error::Invalid(InvalidInput::Several(problems)) = e {
        return several(problems);
    }
    if status.is_client_error() {
        error(status, e.code(), &e.to_string())
    } else {
        tracing::error!(error.code = e.code(), error.retryable = e.is_retryable(), error = %e, "request failed");
        let message = if e.is_retryable() {
            "a service is temporarily unavailable; try again later"
        } else {
            "internal error"
        };
        error(status, e.code(), message)
    }
}

/// The `400` of several bad fields (R-ATTR-1): the usual `code` and `message` (all of them, `; `
/// separated) and `details`, one `{"code", "field", "message"}` per problem.
fn several(problems: &[InvalidInput]) -> Response<Body> {
    let details: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| {
            let field = match p {
                InvalidInput::Field { field, .. } | InvalidInput::Name { field, .. } => {
                    Some(*field)
                }
                _ => None,
            };
            serde_json::json!({ "code": p.code(), "field": field, "message": p.to_string() })
        })
        .collect();
    let all = InvalidInput::Several(problems.to_vec());
    let body = serde_json::json!({
        "error": { "code": all.code(), "message": all.to_string(), "details": details }
    });
    respond(StatusCode::BAD_REQUEST, body.to_string())
}

/// The error response of a refused connection or callback (R-CONN-1, R-SAFE-3): `400` for a bad
/// state or a refused code, `403` when consent was denied, `422` for a federated tenant, `409`
/// for a tenant or domain mismatch; an engine error as [`engine_error`].
#[must_use]
pub fn connect_error(e: &ConnectError) -> Response<Body> {
    let status = match e {
        ConnectError::InvalidState | ConnectError::CodeRejected { .. } => StatusCode::BAD_REQUEST,
        ConnectError::ConsentDenied { .. } => StatusCode::FORBIDDEN,
        ConnectError::FederatedTenant => StatusCode::UNPROCESSABLE_ENTITY,
        ConnectError::TenantMismatch { .. } | ConnectError::ExpectedDomainMissing { .. } => {
            StatusCode::CONFLICT
        }
        ConnectError::Engine(inner) => return engine_error(inner),
    };
    error(status, e.code(), &e.to_string())
}

/// The `400` of a malformed id in the path (its code, e.g. `invalid_id`, and why).
#[must_use]
pub fn invalid_id(e: &IdError) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, e.code(), &e.to_string())
}

/// The `404 route_not_found` of a request no route of `function` serves.
#[must_use]
pub fn no_route(function: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "route_not_found",
        &format!("no such route in the {function} function"),
    )
}

/// An empty `204 No Content`.
#[must_use]
pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A binding as the API shows it (`GET /users/{userId}/binding` and every bind/unbind answer).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingView {
    /// The bound user.
    pub user_id: String,
    /// The tenant the user's email domain routes to.
    pub tenant_id: String,
    /// `pending`, `provisioned`, `blocked`, `suspended`, `error`, `deleted_in_m365` or `unselected`.
    pub state: &'static str,
    /// The M365 account, once created or adopted.
    pub m365_object_id: Option<String>,
    /// Why it is `pending`.
    pub pending_reason: Option<String>,
    /// The last failure (code, message, Graph request id, time).
    pub last_error: Option<BindingError>,
    /// Why it is `suspended`: `password_expired` (R-PWD-4) or `directory_disabled` (R-BIND-9);
    /// absent in any other state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspended_reason: Option<&'static str>,
    /// The account was privileged and adopted with `adoptPrivileged` (R-BIND-11); shown only
    /// when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adopted_privileged: bool,
    /// The latest bind restored the deleted account from M365's deleted items (R-BIND-10): same
    /// object id, licences and groups kept.
    pub restored: bool,
    /// Why the latest bind could not restore the deleted account (another object took its
    /// address meanwhile) and fell back to the address wait and a new account (R-BIND-10);
    /// absent when nothing was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_conflict: Option<String>,
    /// Licences (R-LIC-1): `none`, `pending`, `assigned` or `failed` (the code, e.g.
    /// `license_unavailable`, is in `lastError`); absent until licences were first looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_state: Option<&'static str>,
}

impl From<&Binding> for BindingView {
    fn from(b: &Binding) -> Self {
        Self {
            user_id: b.user_id.to_string(),
            tenant_id: b.tenant_id.to_string(),
            state: b.state.as_str(),
            m365_object_id: b.m365_object_id.as_ref().map(ToString::to_string),
            pending_reason: b.pending_reason.clone(),
            last_error: b.last_error.clone(),
            suspended_reason: b.suspension().map(SuspendedReason::as_str),
            adopted_privileged: b.adopted_privileged,
            restored: b.restored,
            restore_conflict: b.restore_conflict.clone(),
            license_state: b.licensing.as_ref().map(|l| l.state.as_str()),
        }
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeView {
    outcome: &'static str,
    binding: Option<BindingView>,
}

/// The answer of an operation's [`Outcome`]: `200` when done, unchanged, already done or
/// superseded; `202` when it waits on the retry queue or another worker holds it; `422` with its
/// code when it failed for good. The body is `{"outcome", "binding"}`.
#[must_use]
pub fn outcome_response(outcome: &Outcome) -> Response<Body> {
    let status = match outcome {
        Outcome::Done { .. }
        | Outcome::Unchanged { .. }
        | Outcome::AlreadyDone { .. }
        | Outcome::Superseded => StatusCode::OK,
        Outcome::Deferred { .. } | Outcome::InProgress { .. } => StatusCode::ACCEPTED,
        Outcome::Failed { code, binding, .. } => {
            let message = binding
                .last_error
                .as_ref()
                .map_or("the operation failed", |e| e.message.as_str());
            return error(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        }
    };
    json(
        status,
        &OutcomeView {
            outcome: outcome.as_str(),
            binding: outcome.binding().map(BindingView::from),
        },
    )
}

/// The answer of a stored password's push (R-PWD-2, R-BIND-11): `204` when pushed, queued or
/// not due (no bound account); `409 privileged_account` when the account is privileged and was
/// not adopted with `adoptPrivileged` (the password stays stored); `422` with the code when M365
/// refused it for good (the binding's last error says why).
#[must_use]
pub fn password_response(push: &Outcome) -> Response<Body> {
    match push {
        // Stored, deliberately not pushed (R-BIND-11): say why.
        Outcome::Failed {
            code: "privileged_account",
            binding,
            ..
        } => error(
            StatusCode::CONFLICT,
            "privileged_account",
            &binding.last_error.as_ref().map_or_else(
                || {
                    "the M365 account is privileged; the password was stored but not pushed"
                        .to_owned()
                },
                |e| format!("the password was stored but not pushed: {}", e.message),
            ),
        ),
        // The password is stored; a push that failed for good shows on the binding.
        Outcome::Failed { code, .. } => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "the password was stored but M365 refused it; see the binding's last error",
        ),
        _ => no_content(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use m365_engine::error::{Entity, InvalidInput};

    fn body(r: &Response<Body>) -> serde_json::Value {
        match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }

    #[test]
    fn bad_input_is_a_4xx_with_code_and_message() {
        // R-SAFE-1
        let r = engine_error(&Error::Invalid(InvalidInput::Cursor));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(&r)["error"]["code"], "invalid_cursor");
        let r = engine_error(&Error::not_found(Entity::Tenant, "t"));
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(&r)["error"]["code"], "not_found");
        assert_eq!(
            r.headers()[lambda_http::http::header::CONTENT_TYPE],
            "application/json"
        );
    }

    #[test]
    fn internal_causes_are_not_shown_to_the_caller() {
        // R-SAFE-2
        let e = Error::Infrastructure {
            component: "dynamodb",
            source: "table m365-secret-name missing".into(),
        };
        let r = engine_error(&e);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body(&r).to_string().contains("m365-secret-name"));
        let r = engine_error(&Error::Throttled {
            retry_after: None,
            graph_request_id: None,
        });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_suspended_binding_shows_why_and_an_old_one_shows_password_expired() {
        // R-BIND-9, R-PWD-4 (bindings suspended before the reason existed)
        let mut b = Binding::pending(
            m365_engine::model::UserId::parse("alice").unwrap(),
            m365_engine::model::TenantId::generate(),
            "x",
        );
        let shown = serde_json::to_value(BindingView::from(&b)).unwrap();
        assert!(shown.get("suspendedReason").is_none());
        b.state = m365_engine::model::BindingState::Suspended;
        let shown = serde_json::to_value(BindingView::from(&b)).unwrap();
        assert_eq!(shown["suspendedReason"], "password_expired");
        b.suspended_reason = Some(SuspendedReason::DirectoryDisabled);
        let shown = serde_json::to_value(BindingView::from(&b)).unwrap();
        assert_eq!(shown["suspendedReason"], "directory_disabled");
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_binding_shows_whether_it_was_restored_and_why_not() {
        // R-BIND-10 (DESIGN §3: a binding shows `restored`)
        let mut b = Binding::pending(
            m365_engine::model::UserId::parse("alice").unwrap(),
            m365_engine::model::TenantId::generate(),
            "x",
        );
        let shown = serde_json::to_value(BindingView::from(&b)).unwrap();
        assert_eq!(shown["restored"], false);
        assert!(shown.get("restoreConflict").is_none());
        b.restored = true;
        b.restore_conflict = Some("taken".to_owned());
        let shown = serde_json::to_value(BindingView::from(&b)).unwrap();
        assert_eq!(shown["restored"], true);
        assert_eq!(shown["restoreConflict"], "taken");
    }
}
