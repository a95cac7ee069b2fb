//! Errors of the Graph and identity-platform clients, and their classification onto the engine's
//! [`m365_engine::Error`] (graph-spec §12), so that `is_retryable()` alone decides retries.
//!
//! Graph errors are matched on `error.code` first, then `details[].code`, then — only where
//! Microsoft gives no other discriminator — on message substrings (graph-spec §2.2).

use std::time::Duration;

use m365_engine::error::{Conflict, Entity, UnavailableReason};
use m365_engine::model::Email;
use serde::Deserialize;

/// Graph's error envelope (graph-spec §2.2), parsed leniently: everything but the code is optional.
#[derive(Debug, Deserialize)]
struct Envelope {
    error: EnvelopeError,
}

#[derive(Debug, Deserialize)]
struct EnvelopeError {
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Vec<EnvelopeDetail>,
    #[serde(default, rename = "innerError", alias = "innererror")]
    inner_error: Option<EnvelopeInner>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EnvelopeInner {
    // Directory APIs emit `request-id`; the general docs sample uses `requestId` (graph-spec §2.2).
    #[serde(default, rename = "request-id", alias = "requestId")]
    request_id: Option<String>,
    #[serde(default, rename = "client-request-id", alias = "clientRequestId")]
    client_request_id: Option<String>,
}

/// One `details[]` item of a Graph error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorDetail {
    /// e.g. `ObjectConflict`, `InvalidValue`.
    pub code: Option<String>,
    /// The property concerned, e.g. `userPrincipalName`.
    pub target: Option<String>,
}

/// An error status answered by Graph, with everything needed to classify and diagnose it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.code`; `None` when the body was empty or not Graph's envelope (a proxy answered,
    /// graph-spec §7.3).
    pub code: Option<String>,
    /// `error.message` (Graph never echoes passwords we sent).
    pub message: Option<String>,
    /// `error.details[]`.
    pub details: Vec<ErrorDetail>,
    /// `request-id` (response header, else `innerError`).
    pub request_id: Option<String>,
    /// `client-request-id` (response header, else `innerError`).
    pub client_request_id: Option<String>,
    /// `Retry-After`, parsed as fractional seconds (graph-spec §7.1: "2.128").
    pub retry_after: Option<Duration>,
    /// `Location` (a delta 410 points at the initial query, graph-spec §5).
    pub location: Option<String>,
}

/// What an [`ApiError`] means for the caller (graph-spec §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 429, `Request_ThrottledTemporarily`, `activityLimitReached`, `TooManyRequests`: wait, retry.
    Throttled,
    /// 500/502/503/504 (with or without a body): retry with backoff.
    Unavailable,
    /// 401 `InvalidAuthenticationToken`: refresh the token once, then fail.
    Unauthorized,
    /// 403 `Authorization_RequestDenied`: a permission or role is missing; do not retry.
    Forbidden,
    /// 404 `Request_ResourceNotFound` (after our own create: not yet replicated).
    NotFound,
    /// 400 with `ObjectConflict` on `userPrincipalName`: the user exists; look it up and adopt.
    UpnConflict,
    /// 400 "The source resource object or one of the objects being referenced do not exist.":
    /// replication delay on member add (retry).
    ReferenceNotYetVisible,
    /// 400 "One or more added object references already exist …": already a member (success).
    AlreadyMember,
    /// 400 "One or more removed object references do not exist …": already absent (success).
    AlreadyAbsent,
    /// 400 password complexity: regenerate the password.
    PasswordComplexity,
    /// 400 invalid usage location on licence assignment: PATCH `usageLocation`, then retry.
    InvalidUsageLocation,
    /// 400 "… does not have any available licenses …": seats exhausted; no retry.
    NoAvailableLicenses,
    /// 400 "SourceAnchor is a required property …": the UPN's domain is federated.
    FederatedDomain,
    /// 410, `syncStateNotFound`, `resyncRequired`: delta state lost; resync from scratch.
    DeltaReset,
    /// Any other refusal (4xx): permanent.
    Rejected,
}

const MSG_REFERENCE_MISSING: &str =
    "The source resource object or one of the objects being referenced do not exist";
const MSG_ALREADY_MEMBER: &str = "One or more added object references already exist";
const MSG_ALREADY_ABSENT: &str = "One or more removed object references do not exist";
const MSG_COMPLEXITY: &str = "does not comply with password complexity requirements";
const MSG_USAGE_LOCATION: &str =
    "License assignment cannot be done for user with invalid usage location";
const MSG_NO_LICENSES: &str = "does not have any available licenses";
const MSG_SOURCE_ANCHOR: &str = "SourceAnchor is a required property";
const MSG_UPN_CONFLICT: &str =
    "Another object with the same value for property userPrincipalName already exists";

impl ApiError {
    /// Builds the error from a response's status, headers and body (possibly empty or not JSON).
    #[must_use]
    pub fn from_parts(status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Self {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let envelope = serde_json::from_slice::<Envelope>(body)
            .ok()
            .map(|e| e.error);
        let (code, message, details, inner) = match envelope {
            Some(e) => (
                Some(e.code),
                e.message,
                e.details
                    .into_iter()
                    .map(|d| ErrorDetail {
                        code: d.code,
                        target: d.target,
                    })
                    .collect(),
                e.inner_error,
            ),
            None => (None, None, Vec::new(), None),
        };
        let (inner_request_id, inner_client_request_id) =
            inner.map_or((None, None), |i| (i.request_id, i.client_request_id));
        Self {
            status,
            code,
            message,
            details,
            request_id: header("request-id").or(inner_request_id),
            client_request_id: header("client-request-id").or(inner_client_request_id),
            retry_after: header("retry-after").as_deref().and_then(parse_retry_after),
            location: header("location"),
        }
    }

    fn code_is(&self, code: &str) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(code))
    }

    fn message_has(&self, needle: &str) -> bool {
        self.message.as_deref().is_some_and(|m| m.contains(needle))
    }

    /// The class of this error (graph-spec §12).
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        // Throttling wins whatever the status: the legacy code also arrives as 503 or inside 400s
        // of batch items (graph-spec §7.1).
        if self.status == 429
            || self.code_is("TooManyRequests")
            || self.code_is("Request_ThrottledTemporarily")
            || self.code_is("activityLimitReached")
        {
            return ErrorClass::Throttled;
        }
        if self.status == 410 || self.code_is("syncStateNotFound") || self.code_is("resyncRequired")
        {
            return ErrorClass::DeltaReset;
        }
        match self.status {
            500..=599 => ErrorClass::Unavailable,
            401 => ErrorClass::Unauthorized,
            403 => ErrorClass::Forbidden,
            404 => ErrorClass::NotFound,
            400 => self.classify_bad_request(),
            _ => ErrorClass::Rejected,
        }
    }

    fn classify_bad_request(&self) -> ErrorClass {
        let upn_conflict = self.details.iter().any(|d| {
            d.code.as_deref() == Some("ObjectConflict")
                && d.target.as_deref() == Some("userPrincipalName")
        });
        if upn_conflict || self.message_has(MSG_UPN_CONFLICT) {
            ErrorClass::UpnConflict
        } else if self.message_has(MSG_REFERENCE_MISSING) {
            ErrorClass::ReferenceNotYetVisible
        } else if self.message_has(MSG_ALREADY_MEMBER) {
            ErrorClass::AlreadyMember
        } else if self.message_has(MSG_ALREADY_ABSENT) {
            ErrorClass::AlreadyAbsent
        } else if self.message_has(MSG_COMPLEXITY) {
            // No `details` are known for this error (unconfirmed, graph-spec §13.1): message only.
            ErrorClass::PasswordComplexity
        } else if self.message_has(MSG_USAGE_LOCATION) {
            ErrorClass::InvalidUsageLocation
        } else if self.message_has(MSG_NO_LICENSES) {
            ErrorClass::NoAvailableLicenses
        } else if self.message_has(MSG_SOURCE_ANCHOR) {
            ErrorClass::FederatedDomain
        } else {
            ErrorClass::Rejected
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "graph answered {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request-id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Parses `Retry-After` as (possibly fractional) seconds; negative, non-finite and HTTP-date
/// values (never seen from Graph, graph-spec §7.1) give `None`.
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// A failed Graph request.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Graph answered with an error status.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// No (complete) answer: connection refused or reset, or the request timed out. A write may
    /// have been applied.
    #[error("graph request failed (timeout: {timeout}, connect: {connect})")]
    Transport {
        /// The client timeout fired (rather than a connection error).
        timeout: bool,
        /// The connection could not be made: the request was not sent.
        connect: bool,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A success response whose body is not what the API documents.
    #[error("graph answered {status} with an unexpected body (request-id {request_id:?})")]
    Decode {
        /// HTTP status.
        status: u16,
        /// `request-id`.
        request_id: Option<String>,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Graph answered an object id that is not a GUID.
    #[error("graph answered an object id that is not a GUID")]
    InvalidId,
    /// A URL could not be built from the configured base (a configuration error).
    #[error("invalid graph URL")]
    Url,
    /// The `$batch` envelope holding this item failed as a whole.
    #[error("the batch holding this request failed")]
    Batch(#[source] std::sync::Arc<GraphError>),
    /// The token provider could not supply an access token.
    #[error("no access token")]
    Token(#[source] Box<m365_engine::Error>),
    /// The call's deadline (the Lambda deadline minus a margin, R-OPS-2) came first: the request
    /// was not sent (`sent: false`), or it was cut off before its answer came (`sent: true`: a
    /// write may have been applied, as after a timeout, graph-spec §7.3). Retryable, through the
    /// retry queue rather than in-process (there is no time left).
    #[error("the deadline came before graph answered (request sent: {sent})")]
    Deadline {
        /// Whether the request had been sent.
        sent: bool,
    },
    /// The tenant's rate budget has no room for this write before the call's deadline: nothing
    /// was sent; retry after `retry_after` (DESIGN §2 "Graph usage").
    #[error("the tenant's Graph write budget has no room before the deadline")]
    Budget {
        /// When the budget expects room.
        retry_after: std::time::Duration,
    },
}

impl GraphError {
    /// The Graph error, when Graph answered one.
    #[must_use]
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            Self::Batch(e) => e.api(),
            _ => None,
        }
    }

    /// The class of an API error (`None` for transport, decode and token failures).
    #[must_use]
    pub fn class(&self) -> Option<ErrorClass> {
        self.api().map(ApiError::class)
    }

    /// Whether repeating the same request may succeed (throttling, 5xx, transport failures).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api(e) => matches!(e.class(), ErrorClass::Throttled | ErrorClass::Unavailable),
            Self::Transport { .. } => true,
            Self::Batch(e) => e.is_transient(),
            Self::Budget { .. } | Self::Deadline { .. } => true,
            Self::Decode { .. } | Self::InvalidId | Self::Url | Self::Token(_) => false,
        }
    }

    /// Whether a write may have been applied although no success was seen (timeout, dropped
    /// connection, 5xx: graph-spec §7.3 "Retry safety").
    #[must_use]
    pub fn outcome_unknown(&self) -> bool {
        match self {
            Self::Transport { connect, .. } => !connect,
            Self::Deadline { sent } => *sent,
            Self::Api(e) => e.class() == ErrorClass::Unavailable,
            Self::Batch(e) => e.outcome_unknown(),
            _ => false,
        }
    }

    /// Graph's `request-id`, when Graph answered.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Api(e) => e.request_id.as_deref(),
            Self::Decode { request_id, .. } => request_id.as_deref(),
            Self::Batch(e) => e.request_id(),
            _ => None,
        }
    }

    /// Maps onto the engine's error (graph-spec §12). `entity`/`id` name what a 404 is about;
    /// `upn` is the principal name of a create (for `Conflict::UpnExists`).
    #[must_use]
    pub fn into_engine(self, entity: Entity, id: &str, upn: Option<&Email>) -> m365_engine::Error {
        use m365_engine::Error as E;
        let api = match self {
            Self::Api(api) => api,
            Self::Transport {
                timeout, source, ..
            } => {
                return E::Unavailable {
                    component: "graph",
                    reason: if timeout {
                        UnavailableReason::Timeout
                    } else {
                        UnavailableReason::Service
                    },
                    retry_after: None,
                    graph_request_id: None,
                    source: Some(Box::new(source)),
                };
            }
            Self::Token(inner) => return *inner,
            Self::Deadline { .. } => return E::deadline("graph"),
            Self::Budget { retry_after } => {
                return E::Throttled {
                    retry_after: Some(retry_after),
                    graph_request_id: None,
                };
            }
            Self::Batch(inner) => {
                if let Some(api) = inner.api() {
                    return Self::Api(Box::new(api.clone())).into_engine(entity, id, upn);
                }
                if let Self::Deadline { .. } = *inner {
                    return E::deadline("graph");
                }
                let transient = inner.is_transient();
                let source: m365_engine::error::BoxError = Box::new(Self::Batch(inner));
                return if transient {
                    E::Unavailable {
                        component: "graph",
                        reason: UnavailableReason::Service,
                        retry_after: None,
                        graph_request_id: None,
                        source: Some(source),
                    }
                } else {
                    E::Infrastructure {
                        component: "graph",
                        source,
                    }
                };
            }
            other @ (Self::Decode { .. } | Self::InvalidId | Self::Url) => {
                return E::Infrastructure {
                    component: "graph",
                    source: Box::new(other),
                };
            }
        };
        let request_id = api.request_id.clone();
        let unavailable = |reason, api: Box<ApiError>| E::Unavailable {
            component: "graph",
            reason,
            retry_after: api.retry_after,
            graph_request_id: api.request_id.clone(),
            source: Some(api),
        };
        match api.class() {
            ErrorClass::Throttled => E::Throttled {
                retry_after: api.retry_after,
                graph_request_id: request_id,
            },
            ErrorClass::Unavailable => unavailable(UnavailableReason::Service, api),
            ErrorClass::ReferenceNotYetVisible => {
                unavailable(UnavailableReason::NotYetVisible, api)
            }
            ErrorClass::Unauthorized => E::Unauthorized {
                graph_request_id: request_id,
            },
            ErrorClass::Forbidden => E::Forbidden {
                graph_request_id: request_id,
            },
            ErrorClass::NotFound => E::not_found(entity, id),
            ErrorClass::UpnConflict => match upn {
                Some(upn) => E::Conflict(Conflict::UpnExists {
                    upn: upn.clone(),
                    existing: None,
                }),
                None => rejected(&api),
            },
            ErrorClass::AlreadyMember
            | ErrorClass::AlreadyAbsent
            | ErrorClass::PasswordComplexity
            | ErrorClass::InvalidUsageLocation
            | ErrorClass::NoAvailableLicenses
            | ErrorClass::FederatedDomain
            | ErrorClass::DeltaReset
            | ErrorClass::Rejected => rejected(&api),
        }
    }
}

fn rejected(api: &ApiError) -> m365_engine::Error {
    m365_engine::Error::Rejected {
        graph_code: api
            .code
            .clone()
            .unwrap_or_else(|| format!("http_{}", api.status)),
        message: api.message.clone().unwrap_or_default(),
        graph_request_id: api.request_id.clone(),
    }
}

impl From<ApiError> for GraphError {
    fn from(e: ApiError) -> Self {
        Self::Api(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    //! One test per row of graph-spec §12 that concerns Graph (the token-endpoint rows are in
    //! `identity`), plus the envelope and `Retry-After` parsing they rely on.

    use super::*;
    use m365_engine::Error as E;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn api(status: u16, body: &str) -> ApiError {
        ApiError::from_parts(status, &HeaderMap::new(), body.as_bytes())
    }

    fn graph(status: u16, code: &str, message: &str) -> ApiError {
        api(
            status,
            &serde_json::json!({"error": {"code": code, "message": message,
                "innerError": {"date": "2025-01-06T12:25:59", "request-id": "rid-1", "client-request-id": "cid-1"}}})
            .to_string(),
        )
    }

    fn engine(e: ApiError) -> E {
        GraphError::from(e).into_engine(
            Entity::M365User,
            "u1",
            Some(&Email::parse("adele@contoso.com").unwrap()),
        )
    }

    #[test]
    fn the_error_envelope_yields_code_message_and_both_request_ids() {
        // graph-spec §2.2; R-AUD-1 (request id kept for diagnostics)
        let e = graph(400, "Request_BadRequest", "x");
        assert_eq!(e.code.as_deref(), Some("Request_BadRequest"));
        assert_eq!(e.message.as_deref(), Some("x"));
        assert_eq!(e.request_id.as_deref(), Some("rid-1"));
        assert_eq!(e.client_request_id.as_deref(), Some("cid-1"));
        // camelCase `requestId` of the general docs sample is accepted too.
        let e = api(
            404,
            r#"{"error":{"code":"NotFound","innerError":{"requestId":"rid-2"}}}"#,
        );
        assert_eq!(e.request_id.as_deref(), Some("rid-2"));
    }

    #[test]
    fn headers_win_over_the_body_for_request_ids_and_retry_after_is_fractional() {
        // graph-spec §2.1, §7.1
        let mut headers = HeaderMap::new();
        headers.insert("request-id", HeaderValue::from_static("hdr-rid"));
        headers.insert("retry-after", HeaderValue::from_static("2.128"));
        let e = ApiError::from_parts(
            429,
            &headers,
            br#"{"error":{"code":"TooManyRequests","innerError":{"request-id":"body-rid"}}}"#,
        );
        assert_eq!(e.request_id.as_deref(), Some("hdr-rid"));
        assert_eq!(e.retry_after, Some(Duration::from_millis(2128)));
    }

    #[test]
    fn retry_after_accepts_integers_and_fractions_and_refuses_nonsense() {
        // graph-spec §7.1
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn graph_401_is_unauthorized_refreshed_once_by_the_client_then_permanent() {
        // graph-spec §12 row 4
        let e = graph(
            401,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        );
        assert_eq!(e.class(), ErrorClass::Unauthorized);
        let mapped = engine(e);
        assert!(
            matches!(mapped, E::Unauthorized { graph_request_id: Some(ref r) } if r == "rid-1")
        );
        assert!(!mapped.is_retryable());
    }

    #[test]
    fn graph_403_is_forbidden_and_not_retried() {
        // graph-spec §12 row 5
        let e = graph(
            403,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
        assert_eq!(e.class(), ErrorClass::Forbidden);
        let mapped = engine(e);
        assert!(matches!(mapped, E::Forbidden { .. }) && !mapped.is_retryable());
    }

    #[test]
    fn throttling_in_all_its_forms_is_retryable_with_the_fractional_wait() {
        // graph-spec §12 row 6
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2.128"));
        let e = ApiError::from_parts(
            429,
            &headers,
            br#"{"error":{"code":"TooManyRequests","message":"Please retry again later."}}"#,
        );
        let mapped = engine(e);
        assert!(matches!(mapped, E::Throttled { .. }) && mapped.is_retryable());
        assert_eq!(mapped.retry_after(), Some(Duration::from_millis(2128)));
        for (status, code) in [
            (503, "Request_ThrottledTemporarily"),
            (400, "Request_ThrottledTemporarily"),
            (403, "activityLimitReached"),
        ] {
            let e = graph(
                status,
                code,
                "Your request is throttled temporarily. Please try after 5 seconds.",
            );
            assert_eq!(e.class(), ErrorClass::Throttled, "{status} {code}");
            assert!(engine(e).is_retryable());
        }
    }

    #[test]
    fn server_errors_and_empty_bodies_are_retryable_and_leave_a_write_outcome_unknown() {
        // graph-spec §12 row 7, §7.3
        for status in [500, 502, 503, 504] {
            let e = api(status, "");
            assert_eq!(e.code, None);
            assert_eq!(e.class(), ErrorClass::Unavailable);
            let g = GraphError::from(e);
            assert!(g.is_transient() && g.outcome_unknown());
            let mapped = g.into_engine(Entity::M365User, "u1", None);
            assert!(matches!(
                mapped,
                E::Unavailable {
                    reason: UnavailableReason::Service,
                    ..
                }
            ));
            assert!(mapped.is_retryable());
        }
        let e = graph(503, "serviceNotAvailable", "x");
        assert!(engine(e).is_retryable());
    }

    #[test]
    fn a_404_is_not_found_unless_the_caller_knows_it_just_created_the_object() {
        // graph-spec §12 row 8 (the directory retries 404s of its own fresh creates)
        let e = graph(
            404,
            "Request_ResourceNotFound",
            "Resource 'u1' does not exist or one of its queried reference-property objects are not present.",
        );
        assert_eq!(e.class(), ErrorClass::NotFound);
        let mapped = engine(e);
        assert!(matches!(mapped, E::NotFound { entity: Entity::M365User, ref id } if id == "u1"));
        assert!(!mapped.is_retryable());
    }

    #[test]
    fn a_missing_reference_on_member_add_is_replication_delay_and_retryable() {
        // graph-spec §12 row 9
        let e = graph(
            400,
            "Request_BadRequest",
            "The source resource object or one of the objects being referenced do not exist.",
        );
        assert_eq!(e.class(), ErrorClass::ReferenceNotYetVisible);
        let mapped = engine(e);
        assert!(matches!(
            mapped,
            E::Unavailable {
                reason: UnavailableReason::NotYetVisible,
                ..
            }
        ));
        assert!(mapped.is_retryable());
    }

    #[test]
    fn an_object_conflict_on_the_upn_means_adopt_the_existing_user() {
        // graph-spec §12 row 10; R-BIND-2
        let body = r#"{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property userPrincipalName already exists.","details":[{"code":"ObjectConflict","message":"Another object with the same value for property userPrincipalName already exists.","target":"userPrincipalName"}],"innerError":{"date":"2025-01-06T12:25:59","request-id":"r","client-request-id":"c"}}}"#;
        assert_eq!(api(400, body).class(), ErrorClass::UpnConflict);
        // The 2018 shape: details without message.
        let old = r#"{"error":{"code":"Request_BadRequest","message":"Another object with the same value for property userPrincipalName already exists.","innerError":{"request-id":"r","date":"2018-05-08T04:49:55"},"details":[{"target":"userPrincipalName","code":"ObjectConflict"}]}}"#;
        let mapped = engine(api(400, old));
        assert!(mapped.is_conflict("upn_exists") && !mapped.is_retryable());
    }

    #[test]
    fn an_existing_membership_on_add_is_recognised_as_success() {
        // graph-spec §12 row 11
        let e = graph(
            400,
            "Request_BadRequest",
            "One or more added object references already exist for the following modified properties: 'members'.",
        );
        assert_eq!(e.class(), ErrorClass::AlreadyMember);
    }

    #[test]
    fn an_absent_membership_on_remove_is_recognised_as_success() {
        // graph-spec §12 row 12 (the 404 form is NotFound, which the remove path also accepts)
        let e = graph(
            400,
            "Request_BadRequest",
            "One or more removed object references do not exist for the following modified properties: 'members'.",
        );
        assert_eq!(e.class(), ErrorClass::AlreadyAbsent);
    }

    #[test]
    fn a_complexity_refusal_is_a_permanent_rejection_to_regenerate_the_password() {
        // graph-spec §12 row 13; R-PWD-1
        let e = graph(
            400,
            "Request_BadRequest",
            "The specified password does not comply with password complexity requirements. Please provide a different password.",
        );
        assert_eq!(e.class(), ErrorClass::PasswordComplexity);
        let mapped = engine(e);
        assert!(
            matches!(mapped, E::Rejected { ref graph_code, .. } if graph_code == "Request_BadRequest")
        );
        assert!(!mapped.is_retryable());
    }

    #[test]
    fn an_invalid_usage_location_on_licence_assignment_is_recognised() {
        // graph-spec §12 row 14
        let e = graph(
            400,
            "Request_BadRequest",
            "License assignment cannot be done for user with invalid usage location.",
        );
        assert_eq!(e.class(), ErrorClass::InvalidUsageLocation);
        assert!(!engine(e).is_retryable());
    }

    #[test]
    fn exhausted_licence_seats_are_permanent() {
        // graph-spec §12 row 15
        let e = graph(
            400,
            "Request_BadRequest",
            "Subscription with SKU 6fd2c87f does not have any available licenses.",
        );
        assert_eq!(e.class(), ErrorClass::NoAvailableLicenses);
        assert!(!engine(e).is_retryable());
    }

    #[test]
    fn a_missing_source_anchor_means_a_federated_domain_and_is_permanent() {
        // graph-spec §12 row 16; R-CONN-3
        let e = graph(
            400,
            "Request_BadRequest",
            "SourceAnchor is a required property for creation of a federated user.",
        );
        assert_eq!(e.class(), ErrorClass::FederatedDomain);
        assert!(matches!(engine(e), E::Rejected { .. }));
    }

    #[test]
    fn a_lost_delta_state_asks_for_a_full_resync() {
        // graph-spec §12 row 17
        assert_eq!(api(410, "").class(), ErrorClass::DeltaReset);
        assert_eq!(
            graph(400, "syncStateNotFound", "x").class(),
            ErrorClass::DeltaReset
        );
        assert_eq!(
            graph(400, "resyncRequired", "x").class(),
            ErrorClass::DeltaReset
        );
    }

    #[test]
    fn other_bad_requests_are_permanent_rejections_carrying_code_message_and_request_id() {
        // graph-spec §3.2; R-AUD-1
        let e = graph(
            400,
            "Request_BadRequest",
            "Property userPrincipalName is invalid.",
        );
        assert_eq!(e.class(), ErrorClass::Rejected);
        let mapped = engine(e);
        assert_eq!(mapped.graph_request_id(), Some("rid-1"));
        assert!(
            matches!(mapped, E::Rejected { ref message, .. } if message == "Property userPrincipalName is invalid.")
        );
    }
}
