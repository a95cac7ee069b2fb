//! What the `connect` routes read and answer: request bodies (unknown fields refused) and the
//! tenant views (never a token).

use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::Error;
use m365_engine::error::{FieldProblem, InvalidInput};
use m365_engine::model::{DEFAULT_PAGE_LIMIT, DomainKind, Tenant};
use m365_engine::usecase::connect::{Callback, ConnectError};
use m365_lambda::api;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The `GET /oauth/callback` query as a [`Callback`]: a denial, or a code with its `state`
/// (R-CONN-1); a missing `state` is refused like a forged one, a missing code is 400.
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished 4xx response, built at most once per request"
)]
pub(crate) fn callback_of(request: &Request) -> Result<Callback, Response<Body>> {
    let query = request.query_string_parameters();
    let param = |name: &str| {
        query
            .first(name)
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
    };
    match (param("error"), param("code"), param("state")) {
        (Some(error), _, state) => Ok(Callback::Denied { state, error }),
        (None, Some(code), Some(state)) => Ok(Callback::Code {
            code: SecretString::from(code),
            state,
        }),
        (None, _, None) => Err(api::connect_error(&ConnectError::InvalidState)),
        (None, None, Some(_)) => Err(api::engine_error(&Error::Invalid(InvalidInput::Field {
            field: "code",
            problem: FieldProblem::Empty,
        }))),
    }
}

/// The `limit` of `GET /tenants`: 1–100, the default page size when absent (R-SAFE-1).
#[allow(
    clippy::result_large_err,
    reason = "the error is the finished 4xx response, built at most once per request"
)]
pub(crate) fn page_limit(raw: Option<&str>) -> Result<u32, Response<Body>> {
    match raw.map(str::parse::<u32>) {
        None => Ok(DEFAULT_PAGE_LIMIT),
        Some(Ok(n)) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(api::engine_error(&Error::Invalid(InvalidInput::Field {
            field: "limit",
            problem: FieldProblem::TooLong { max: 100 },
        }))),
    }
}

/// A tenant as the API shows it (no tokens, ever).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// Our id.
    pub tenant_id: String,
    /// Admin-given name.
    pub name: String,
    /// `pending_consent`, `active`, `reauthorization_required` or `deauthorized`.
    pub status: &'static str,
    /// Microsoft's tenant id, when known.
    pub m365_tenant_id: Option<String>,
    /// Verified domains; only managed ones route users (R-CONN-2, R-CONN-3).
    pub domains: Vec<DomainView>,
    /// When the access token expires.
    pub token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The verified domain the first consent must come with (R-CONN-7), when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_domain: Option<String>,
}

/// A verified domain as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainView {
    /// The domain.
    pub name: String,
    /// `managed` or `federated`.
    pub kind: DomainKind,
    /// Whether users of this domain can be bound (managed domains only).
    pub routable: bool,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> Self {
        Self {
            tenant_id: t.id.to_string(),
            name: t.name.clone(),
            status: t.status.as_str(),
            m365_tenant_id: t.m365_tenant_id.as_ref().map(ToString::to_string),
            domains: t
                .domains
                .iter()
                .map(|d| DomainView {
                    name: d.name.to_string(),
                    kind: d.kind,
                    routable: d.kind == DomainKind::Managed,
                })
                .collect(),
            token_expires_at: t.token_expires_at,
            expected_domain: t.expected_domain.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PostTenants {
    pub(crate) name: Option<String>,
    pub(crate) tenant_id: Option<String>,
    pub(crate) expected_domain: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Started {
    pub(crate) tenant_id: String,
    pub(crate) status: &'static str,
    pub(crate) authorize_url: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Listing {
    pub(crate) tenants: Vec<TenantView>,
    pub(crate) next_cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeauthorizedView {
    pub(crate) tenant: TenantView,
    pub(crate) unselected_bindings: usize,
}
