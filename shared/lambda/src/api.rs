//! HTTP API responses of the functions behind API Gateway (DESIGN §3): JSON bodies, and errors as
//! `{"error": {"code", "message"}}` with a status chosen from the engine's error — bad input is a
//! 4xx, never a 5xx (R-SAFE-1); retryable failures are 503; the rest is 500 with a generic
//! message (the cause goes to the logs, never to the caller).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use m365_engine::Error;
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
}
