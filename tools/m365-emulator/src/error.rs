//! Graph's error envelope (graph-spec §2.2): `{"error": {code, message, details?, innerError}}`.
//!
//! Handlers return a [`GraphError`]; its `IntoResponse` only sets status and headers and parks
//! the error in the response extensions. The request middleware ([`crate::request`]) renders
//! the body, because only it knows the request ids and the emulator clock for `innerError`.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::request::RequestIds;

/// One item of `error.details[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// E.g. `ObjectConflict`, `InvalidValue`.
    pub code: String,
    /// Human-readable text (usually the same as the error message).
    pub message: String,
    /// The property concerned, e.g. `userPrincipalName`.
    pub target: String,
}

/// A Graph error response: status, `error.code`, `error.message`, optional details and extra
/// `innerError` members (the 429 body has `code`, `message`, `status` there, graph-spec §7.1).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct GraphError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
    /// `error.details`, omitted when empty.
    pub details: Vec<ErrorDetail>,
    /// Extra members of `innerError` besides `date`, `request-id`, `client-request-id`.
    pub inner_extra: Map<String, Value>,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Marker in the response extensions: the middleware must render this error as the body.
#[derive(Debug, Clone)]
pub struct PendingErrorBody(pub GraphError);

impl GraphError {
    /// An error with the given status, code and message.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            inner_extra: Map::new(),
            headers: Vec::new(),
        }
    }

    /// 400 `Request_BadRequest` with this message.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 400 `Request_UnsupportedQuery` with this message.
    #[must_use]
    pub fn unsupported_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    /// 404 `Request_ResourceNotFound` for the resource key exactly as addressed (graph-spec §2.7).
    #[must_use]
    pub fn not_found(resource: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{resource}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// 403 `Authorization_RequestDenied` (graph-spec §2.6).
    #[must_use]
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        )
    }

    /// 401 `InvalidAuthenticationToken` with this message and a `WWW-Authenticate` header
    /// (graph-spec §2.6; the header's presence is unconfirmed, §13.11).
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
        .with_header(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        )
    }

    /// Adds a `details[]` item.
    #[must_use]
    pub fn with_detail(mut self, code: &str, message: impl Into<String>, target: &str) -> Self {
        self.details.push(ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
            target: target.to_owned(),
        });
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds an extra member to `innerError`.
    #[must_use]
    pub fn with_inner(mut self, key: &str, value: Value) -> Self {
        self.inner_extra.insert(key.to_owned(), value);
        self
    }

    /// The JSON body, with `innerError.date` in `yyyy-MM-ddTHH:mm:ss` (no zone, no fraction).
    #[must_use]
    pub fn body(&self, ids: &RequestIds, now: DateTime<Utc>) -> Value {
        let mut inner = self.inner_extra.clone();
        inner.insert(
            "date".into(),
            Value::String(now.format("%Y-%m-%dT%H:%M:%S").to_string()),
        );
        inner.insert("request-id".into(), Value::String(ids.request_id.clone()));
        inner.insert(
            "client-request-id".into(),
            Value::String(ids.client_request_id.clone()),
        );
        let mut error = Map::new();
        error.insert("code".into(), Value::String(self.code.to_owned()));
        error.insert("message".into(), Value::String(self.message.clone()));
        if !self.details.is_empty() {
            error.insert(
                "details".into(),
                Value::Array(
                    self.details
                        .iter()
                        .map(|d| json!({"code": d.code, "message": d.message, "target": d.target}))
                        .collect(),
                ),
            );
        }
        error.insert("innerError".into(), Value::Object(inner));
        json!({ "error": error })
    }
}

/// Field order of the real envelope: `code`, `message`, `details`, `innerError` (with `date`,
/// `request-id`, `client-request-id` first), which a `serde_json::Map` would sort away.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    error: EnvelopeBody<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<Value>,
    inner_error: InnerError<'a>,
}

#[derive(serde::Serialize)]
struct InnerError<'a> {
    date: String,
    #[serde(rename = "request-id")]
    request_id: &'a str,
    #[serde(rename = "client-request-id")]
    client_request_id: &'a str,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

impl GraphError {
    /// The JSON body as text, members in the service's order.
    #[must_use]
    pub fn render(&self, ids: &RequestIds, now: DateTime<Utc>) -> String {
        let envelope = Envelope {
            error: EnvelopeBody {
                code: self.code,
                message: &self.message,
                details: self
                    .details
                    .iter()
                    .map(|d| json!({"code": d.code, "message": d.message, "target": d.target}))
                    .collect(),
                inner_error: InnerError {
                    date: now.format("%Y-%m-%dT%H:%M:%S").to_string(),
                    request_id: &ids.request_id,
                    client_request_id: &ids.client_request_id,
                    extra: &self.inner_extra,
                },
            },
        };
        serde_json::to_string(&envelope).unwrap_or_else(|_| self.body(ids, now).to_string())
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response.extensions_mut().insert(PendingErrorBody(self));
        response
    }
}
