//! The engine's error model: one enum, one [`Error::is_retryable`] (STYLE "Errors").
//!
//! Adapters map what their service says onto these variants; use cases and handlers only ask
//! `is_retryable()` and `code()`. No variant carries a secret (R-SAFE-2).

use std::time::Duration;

use crate::model::{
    DomainName, Email, EmailError, IdError, M365User, RequestTokenError, TenantId,
    UnknownEventKind, UserId,
};
use crate::policy::name::NameProblem;
use crate::policy::password::PasswordPolicyError;
use crate::policy::routing::RoutingError;

/// A boxed source error of an adapter (kept for diagnostics, never shown to API clients).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Engine result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kinds of thing a store or M365 holds, for not-found and conflict errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// A directory user.
    User,
    /// A directory group.
    Group,
    /// A tenant.
    Tenant,
    /// A binding.
    Binding,
    /// A ledger entry.
    Operation,
    /// A tenant's tokens.
    TenantTokens,
    /// A seal key (version).
    SealKey,
    /// A user in M365.
    M365User,
    /// An M365 tenant as seen by Graph.
    M365Tenant,
}

impl Entity {
    /// snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::Tenant => "tenant",
            Self::Binding => "binding",
            Self::Operation => "operation",
            Self::TenantTokens => "tenant_tokens",
            Self::SealKey => "seal_key",
            Self::M365User => "m365_user",
            Self::M365Tenant => "m365_tenant",
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a field of a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    /// It is empty but required.
    #[error("must not be empty")]
    Empty,
    /// It is longer (or larger) than allowed: characters for text, seconds for a delay, items for a list.
    #[error("is too long (the limit is {max})")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// It is not one of the values allowed (R-ATTR-1: e.g. not a country code).
    #[error("is not valid (expected {expected})")]
    Invalid {
        /// What is expected, in words.
        expected: &'static str,
    },
    /// It names the user itself (a user cannot be its own manager, R-ATTR-1).
    #[error("must not be the user itself")]
    OwnId,
}

/// Malformed or invalid input (always 4xx, R-SAFE-1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// A bad email address or domain.
    #[error(transparent)]
    Email(#[from] EmailError),
    /// A bad id.
    #[error(transparent)]
    Id(#[from] IdError),
    /// A bad email address in a field other than `email` (e.g. `notificationEmail`, R-NOT-1):
    /// the same rules and code as `email`, the field named.
    #[error("{field}: {problem}")]
    EmailField {
        /// The field's API name.
        field: &'static str,
        /// What is wrong.
        problem: EmailError,
    },
    /// A bad idempotency token.
    #[error(transparent)]
    RequestToken(#[from] RequestTokenError),
    /// An unknown event type.
    #[error(transparent)]
    EventKind(#[from] UnknownEventKind),
    /// A page token that no store produced (or that belongs to another listing).
    #[error("the cursor is not valid for this listing")]
    Cursor,
    /// A field breaking a rule.
    #[error("{field} {problem}")]
    Field {
        /// The field's API name.
        field: &'static str,
        /// What is wrong.
        problem: FieldProblem,
    },
    /// A name (tenant, user or group name, other free text people read) holding a character
    /// names may not hold (`crate::policy::name`).
    #[error("{field} {problem}")]
    Name {
        /// The field's API name.
        field: &'static str,
        /// What is wrong.
        problem: NameProblem,
    },
    /// More than one field breaking a rule, each listed (R-ATTR-1: every bad field at once).
    #[error("{}", several(.0))]
    Several(Vec<InvalidInput>),
    /// A licence setting the tenant's subscriptions do not have, or a bad usage location
    /// (R-LIC-1).
    #[error(transparent)]
    License(#[from] crate::model::LicenseInputError),
}

fn several(problems: &[InvalidInput]) -> String {
    let parts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

impl InvalidInput {
    /// `problems` as one error: the only one itself, several as [`InvalidInput::Several`];
    /// `None` when there are none.
    #[must_use]
    pub fn all(mut problems: Vec<InvalidInput>) -> Option<Self> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(Self::Several(problems)),
        }
    }

    /// Machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Email(e) | Self::EmailField { problem: e, .. } => e.code(),
            Self::Id(e) => e.code(),
            Self::RequestToken(_) => "invalid_request_token",
            Self::EventKind(_) => "invalid_event_type",
            Self::Cursor => "invalid_cursor",
            Self::Field { .. } => "invalid_field",
            Self::Name { .. } => "invalid_name",
            Self::Several(problems) => {
                let first = problems.first().map_or("invalid_field", Self::code);
                if problems.iter().all(|p| p.code() == first) {
                    first
                } else {
                    "invalid_input"
                }
            }
            Self::License(e) => e.code(),
        }
    }
}

/// A conditional write or create lost against existing state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Another directory user has this email (R-BIND-1, R-IMP-2).
    #[error("a directory user with email {email} already exists")]
    EmailExists {
        /// The contested email.
        email: Email,
    },
    /// Another tenant claimed this domain (R-CONN-2).
    #[error("the domain {domain} is already claimed by tenant {owner}")]
    DomainClaimed {
        /// The contested domain.
        domain: DomainName,
        /// The tenant that holds it.
        owner: TenantId,
    },
    /// The record changed since it was read (optimistic concurrency).
    #[error("the {entity} changed meanwhile (expected version {expected})")]
    StaleVersion {
        /// What was written.
        entity: Entity,
        /// The version the writer expected (0 = expected absent).
        expected: u64,
    },
    /// A create found the record already there.
    #[error("the {entity} {id} already exists")]
    AlreadyExists {
        /// What was created.
        entity: Entity,
        /// Its id.
        id: String,
    },
    /// M365 already has an active user with this UPN: adopt it (graph-spec §3.2, R-BIND-2).
    #[error("an M365 user with the principal name {upn} already exists")]
    UpnExists {
        /// The UPN.
        upn: Email,
        /// That user, when the adapter already looked it up (the caller need not look again);
        /// `None`: look it up.
        existing: Option<ExistingUser>,
    },
    /// A token-vault write reused a request token with different content.
    #[error("the request token was already used for different content")]
    RequestTokenReused,
    /// The user is already bound to another tenant (R-BIND-1: one tenant per user); unbind it first.
    #[error("the user is already bound to tenant {tenant}")]
    BoundElsewhere {
        /// The tenant of the existing binding.
        tenant: TenantId,
    },
    /// The user is disabled in the directory (R-BIND-9): a disabled user is not bound.
    #[error("the user {user} is disabled in the directory; set its state to active first")]
    UserDisabled {
        /// The disabled user.
        user: UserId,
    },
    /// The M365 account is privileged — it holds a directory role or is the admin who consented
    /// the connection — and was not adopted with `adoptPrivileged` (R-BIND-11): m365-sync neither
    /// takes it over nor writes to it.
    #[error(
        "the M365 account {account} is privileged: it {why}; m365-sync adopts or changes such an account only when the binding request says \"adoptPrivileged\": true"
    )]
    PrivilegedAccount {
        /// The account (UPN, or object id when the UPN is not at hand).
        account: String,
        /// Why, in words (the roles held, the consent).
        why: String,
    },
    /// The email of a user whose binding is live is its M365 user principal name, the tenant was
    /// routed by it (R-BIND-1): it cannot change until the user is unbound.
    #[error(
        "the email of a bound user is its M365 user principal name and cannot change; unbind first"
    )]
    EmailChangeWhileBound,
    /// M365 refused to restore a deleted account because another active object now holds one
    /// of its addresses (`userPrincipalName`, `mail` or a proxy address; graph-spec §3.5, §3.6,
    /// exact error unconfirmed §13.4): a re-bind falls back to the address wait (R-BIND-10).
    #[error(
        "M365 cannot restore the deleted account {account}: another object now uses its {property}"
    )]
    RestoreConflict {
        /// The deleted account's object id.
        account: String,
        /// The contested property, as Graph names it (e.g. `userPrincipalName`).
        property: String,
    },
}

/// The M365 account found holding a UPN ([`Conflict::UpnExists`]). `Debug` shows its object id
/// only: errors reach logs, personal data does not (STYLE "Tracing and secrets").
#[derive(Clone, PartialEq, Eq)]
pub struct ExistingUser(pub Box<M365User>);

impl std::fmt::Debug for ExistingUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ExistingUser").field(&self.0.id).finish()
    }
}

variant_names!(Conflict::code, "Machine-readable code." {
    EmailExists => "email_exists",
    DomainClaimed => "domain_claimed",
    StaleVersion => "stale_version",
    AlreadyExists => "already_exists",
    UpnExists => "upn_exists",
    RequestTokenReused => "request_token_reused",
    BoundElsewhere => "bound_elsewhere",
    UserDisabled => "user_disabled",
    PrivilegedAccount => "privileged_account",
    EmailChangeWhileBound => "email_change_while_bound",
    RestoreConflict => "restore_conflict",
});

/// Why a service is temporarily unable to do the work (all retryable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableReason {
    /// 5xx, connection reset, empty body (graph-spec §7.3).
    Service,
    /// No answer in time (the request may have been applied: reconcile before repeating a POST).
    Timeout,
    /// The address is still held by a recently deleted M365 account (R-BIND-6).
    AddressHeld,
    /// A just-created object is not visible yet (eventual consistency, graph-spec §7.4).
    NotYetVisible,
    /// The function's deadline (the Lambda deadline minus a safety margin) came first: the
    /// request was not sent, or its answer was not awaited (a write may have been applied, as for
    /// [`Self::Timeout`]). The work goes back to the retry queue (R-OPS-2, R-BIND-12).
    Deadline,
}

impl UnavailableReason {
    /// snake_case name (used as pending reason and retry reason).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service_unavailable",
            Self::Timeout => "timeout",
            Self::AddressHeld => "address_held",
            Self::NotYetVisible => "not_yet_visible",
            Self::Deadline => "deadline",
        }
    }
}

/// Why sealing or opening a password failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Authentication failed: the ciphertext, nonce or bound user id was altered.
    #[error("the sealed password failed authentication (tampered or bound to another user)")]
    Tampered,
    /// The key version is not known to the key store.
    #[error("unknown seal key version {version}")]
    UnknownKeyVersion {
        /// The version asked for.
        version: String,
    },
    /// The nonce has the wrong length or the key material is malformed.
    #[error("malformed sealed password or key")]
    Malformed,
}

/// The one error type of the engine and its ports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed or invalid input (4xx).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A password breaks the directory or Entra policy (R-PWD-1).
    #[error(transparent)]
    PasswordPolicy(#[from] PasswordPolicyError),
    /// An email cannot be routed to a tenant (R-BIND-1, R-CONN-2/3).
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The record does not exist.
    #[error("{entity} {id} not found")]
    NotFound {
        /// Kind of record.
        entity: Entity,
        /// Its id.
        id: String,
    },
    /// A conditional write lost.
    #[error(transparent)]
    Conflict(#[from] Conflict),
    /// The caller (our app in M365) lacks a permission or role (graph-spec §2.6): not retried.
    #[error("forbidden: the app lacks a permission or role for this operation")]
    Forbidden {
        /// Graph's `request-id`.
        graph_request_id: Option<String>,
    },
    /// The access token was refused: refresh it once, then treat as permanent.
    #[error("unauthorized: the access token was refused")]
    Unauthorized {
        /// Graph's `request-id`.
        graph_request_id: Option<String>,
    },
    /// The tenant's refresh token was refused (`invalid_grant`, R-CONN-4).
    #[error("reauthorization required (AADSTS{aadsts})")]
    ReauthorizationRequired {
        /// The AADSTS error number (e.g. 700082, 50173, 65001).
        aadsts: u32,
    },
    /// The identity platform refused our OAuth client itself (`invalid_client`: a wrong or
    /// expired client secret, AADSTS7000215 / 7000222; `unauthorized_client`): a configuration
    /// error only an admin can fix (graph-spec §1.5, R-OPS-1). Never retried.
    #[error("identity platform refused the OAuth client: {error} (AADSTS{aadsts:?})")]
    ClientConfiguration {
        /// The OAuth `error` value (`invalid_client`, `unauthorized_client`).
        error: String,
        /// The AADSTS code, when given.
        aadsts: Option<u32>,
    },
    /// M365 (or AWS) asked us to slow down.
    #[error("throttled")]
    Throttled {
        /// How long to wait, when the service said (`Retry-After`).
        retry_after: Option<Duration>,
        /// Graph's `request-id`.
        graph_request_id: Option<String>,
    },
    /// A service is temporarily unable to do the work.
    #[error("{component} unavailable: {}", reason.as_str())]
    Unavailable {
        /// Which service (`graph`, `dynamodb`, …).
        component: &'static str,
        /// Why.
        reason: UnavailableReason,
        /// How long to wait, when known.
        retry_after: Option<Duration>,
        /// Graph's `request-id`.
        graph_request_id: Option<String>,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// M365 refused a request for a reason not modelled above (Graph 400 with its code and message).
    #[error("M365 refused the request: {graph_code}")]
    Rejected {
        /// Graph's error code (e.g. `Request_BadRequest`).
        graph_code: String,
        /// Graph's message (never holds secrets we sent: Graph does not echo passwords).
        message: String,
        /// Graph's `request-id`.
        graph_request_id: Option<String>,
    },
    /// Sealing or opening a password failed.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// An unexpected failure of a store or service (misconfiguration, bad data): not retried.
    #[error("{component} failed")]
    Infrastructure {
        /// Which service (`dynamodb`, `sqs`, `secretsmanager`, …).
        component: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// The one decision on what is retried (STYLE "Errors"): throttled and unavailable are retried;
    /// everything else is permanent (unauthorized is refreshed once by the caller, then permanent).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }

    /// The wait the service asked for, if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Throttled { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// Graph's `request-id`, when Graph answered (for failures and binding diagnostics, R-AUD-1).
    #[must_use]
    pub fn graph_request_id(&self) -> Option<&str> {
        match self {
            Self::Forbidden { graph_request_id }
            | Self::Unauthorized { graph_request_id }
            | Self::Throttled {
                graph_request_id, ..
            }
            | Self::Unavailable {
                graph_request_id, ..
            }
            | Self::Rejected {
                graph_request_id, ..
            } => graph_request_id.as_deref(),
            _ => None,
        }
    }

    /// Machine-readable snake_case code (R-SAFE-1).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.code(),
            Self::PasswordPolicy(_) => "password_policy",
            Self::Routing(e) => e.code(),
            Self::NotFound { .. } => "not_found",
            Self::Conflict(c) => c.code(),
            Self::Forbidden { .. } => "forbidden",
            Self::Unauthorized { .. } => "unauthorized",
            Self::ReauthorizationRequired { .. } => "reauthorization_required",
            Self::ClientConfiguration { .. } => "configuration_error",
            Self::Throttled { .. } => "throttled",
            Self::Unavailable { reason, .. } => reason.as_str(),
            Self::Rejected { .. } => "m365_rejected",
            Self::Seal(SealError::Tampered) => "seal_tampered",
            Self::Seal(_) => "seal_failed",
            Self::Infrastructure { .. } => "internal",
        }
    }

    /// A not-found error.
    #[must_use]
    pub fn not_found(entity: Entity, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// The function's deadline came first while `component` was being called (R-OPS-2):
    /// retryable, code `deadline`.
    #[must_use]
    pub fn deadline(component: &'static str) -> Self {
        Self::Unavailable {
            component,
            reason: UnavailableReason::Deadline,
            retry_after: None,
            graph_request_id: None,
            source: None,
        }
    }

    /// True when the function's deadline cut this work short ([`UnavailableReason::Deadline`]).
    #[must_use]
    pub fn is_deadline(&self) -> bool {
        matches!(
            self,
            Self::Unavailable {
                reason: UnavailableReason::Deadline,
                ..
            }
        )
    }

    /// A stale-version conflict.
    #[must_use]
    pub fn stale(entity: Entity, expected: u64) -> Self {
        Self::Conflict(Conflict::StaleVersion { entity, expected })
    }

    /// True for the conflict `c` (by code), handy in tests and use cases.
    #[must_use]
    pub fn is_conflict(&self, code: &str) -> bool {
        matches!(self, Self::Conflict(c) if c.code() == code)
    }
}

impl From<EmailError> for Error {
    fn from(e: EmailError) -> Self {
        Self::Invalid(InvalidInput::Email(e))
    }
}

impl From<IdError> for Error {
    fn from(e: IdError) -> Self {
        Self::Invalid(InvalidInput::Id(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::password::PasswordRule;

    fn io() -> BoxError {
        Box::new(std::io::Error::other("boom"))
    }

    fn every_error() -> Vec<(Error, bool)> {
        let email = Email::parse("a@contoso.com").unwrap();
        vec![
            (
                Error::Throttled {
                    retry_after: Some(Duration::from_millis(1500)),
                    graph_request_id: None,
                },
                true,
            ),
            (
                Error::Unavailable {
                    component: "graph",
                    reason: UnavailableReason::Service,
                    retry_after: None,
                    graph_request_id: None,
                    source: Some(io()),
                },
                true,
            ),
            (
                Error::Unavailable {
                    component: "graph",
                    reason: UnavailableReason::AddressHeld,
                    retry_after: None,
                    graph_request_id: None,
                    source: None,
                },
                true,
            ),
            (Error::Invalid(InvalidInput::Cursor), false),
            (
                Error::Invalid(InvalidInput::Name {
                    field: "name",
                    problem: crate::policy::name::NameProblem::ForbiddenCharacter {
                        code_point: 0x1b,
                        position: 1,
                    },
                }),
                false,
            ),
            (
                Error::PasswordPolicy(PasswordPolicyError {
                    violations: vec![PasswordRule::EntraMinLength],
                }),
                false,
            ),
            (
                Error::Routing(RoutingError::UnclaimedDomain {
                    domain: email.domain(),
                }),
                false,
            ),
            (Error::not_found(Entity::User, "alice"), false),
            (Error::Conflict(Conflict::EmailExists { email }), false),
            (Error::stale(Entity::Binding, 3), false),
            (
                Error::Forbidden {
                    graph_request_id: None,
                },
                false,
            ),
            (
                Error::Unauthorized {
                    graph_request_id: None,
                },
                false,
            ),
            (Error::ReauthorizationRequired { aadsts: 700_082 }, false),
            (
                Error::Rejected {
                    graph_code: "Request_BadRequest".into(),
                    message: "x".into(),
                    graph_request_id: None,
                },
                false,
            ),
            (Error::Seal(SealError::Tampered), false),
            (
                Error::Infrastructure {
                    component: "dynamodb",
                    source: io(),
                },
                false,
            ),
        ]
    }

    #[test]
    fn only_throttled_and_unavailable_are_retryable() {
        // R-BIND-6
        for (error, retryable) in every_error() {
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
        }
    }

    #[test]
    fn every_error_has_a_snake_case_code() {
        // R-SAFE-1
        for (error, _) in every_error() {
            let code = error.code();
            assert!(
                !code.is_empty()
                    && code
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_and_request_id_are_exposed() {
        // R-BIND-6, R-AUD-1
        let e = Error::Throttled {
            retry_after: Some(Duration::from_millis(2500)),
            graph_request_id: Some("rid".into()),
        };
        assert_eq!(e.retry_after(), Some(Duration::from_millis(2500)));
        assert_eq!(e.graph_request_id(), Some("rid"));
        assert_eq!(Error::not_found(Entity::User, "x").graph_request_id(), None);
    }

    #[test]
    fn infrastructure_errors_keep_their_source() {
        // STYLE "Errors": sources are kept
        let e = Error::Infrastructure {
            component: "dynamodb",
            source: io(),
        };
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn conflicts_are_recognised_by_code() {
        // R-SAFE-1
        assert!(Error::stale(Entity::Tenant, 1).is_conflict("stale_version"));
        assert!(!Error::stale(Entity::Tenant, 1).is_conflict("email_exists"));
    }
}
