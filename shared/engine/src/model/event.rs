//! Audit events (successes only, R-AUD-1) and failures (diagnostics, kept apart).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Actor, EventId, OperationId, TenantId, UserId};

/// What happened (the `type` of `GET /events`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// An M365 account was created for a user (R-BIND-3).
    UserCreateProvision,
    /// An M365 account was adopted, re-enabled or updated (R-BIND-3, R-BIND-7).
    UserUpdateProvision,
    /// A password was pushed to M365 (R-PWD-2).
    UserPasswordUpdateProvision,
    /// Sign-in was blocked in M365 (R-BIND-5, R-PWD-4).
    UserDeprovision,
    /// A tenant was connected (R-CONN-1).
    TenantConnected,
    /// A tenant's refresh token was refused (R-CONN-4).
    TenantReauthorizationRequired,
    /// A tenant was deauthorized (R-CONN-5).
    TenantDeauthorized,
    /// A reconciliation stopped at the safeguard (R-REC-3).
    ReconcileSafeguardTripped,
    /// The identity platform refused our OAuth client itself (`invalid_client`: a wrong or
    /// expired client secret; `unauthorized_client`): a configuration error an admin must fix
    /// (R-OPS-1, graph-spec §1.5). Recorded once per incident.
    TenantConfigurationError,
    /// An admin approved a held reconcile plan and it was applied (R-REC-3).
    ReconcilePlanApproved,
    /// An admin rejected a held reconcile plan (R-REC-3).
    ReconcilePlanRejected,
}

impl EventKind {
    /// The snake_case name used in the API and in store keys.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserCreateProvision => "user_create_provision",
            Self::UserUpdateProvision => "user_update_provision",
            Self::UserPasswordUpdateProvision => "user_password_update_provision",
            Self::UserDeprovision => "user_deprovision",
            Self::TenantConnected => "tenant_connected",
            Self::TenantReauthorizationRequired => "tenant_reauthorization_required",
            Self::TenantDeauthorized => "tenant_deauthorized",
            Self::ReconcileSafeguardTripped => "reconcile_safeguard_tripped",
            Self::TenantConfigurationError => "tenant_configuration_error",
            Self::ReconcilePlanApproved => "reconcile_plan_approved",
            Self::ReconcilePlanRejected => "reconcile_plan_rejected",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [Self; 11] = [
        Self::UserCreateProvision,
        Self::UserUpdateProvision,
        Self::UserPasswordUpdateProvision,
        Self::UserDeprovision,
        Self::TenantConnected,
        Self::TenantReauthorizationRequired,
        Self::TenantDeauthorized,
        Self::ReconcileSafeguardTripped,
        Self::TenantConfigurationError,
        Self::ReconcilePlanApproved,
        Self::ReconcilePlanRejected,
    ];
}

/// Error for an unknown event type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventKind(pub String);

impl std::str::FromStr for EventKind {
    type Err = UnknownEventKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

/// A recorded success (never holds a secret, R-SAFE-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique id.
    pub id: EventId,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The user concerned, if any.
    pub user_id: Option<UserId>,
    /// The tenant concerned, if any.
    pub tenant_id: Option<TenantId>,
    /// The operation that produced it (deduplicates redelivery).
    pub operation_id: Option<OperationId>,
    /// Short machine reason (e.g. `password_expired`, `adopted`).
    pub reason: Option<String>,
    /// Free details, without secrets or personal data beyond ids.
    pub details: Option<serde_json::Value>,
    /// Who caused it (R-AUD-1); `None` only in events recorded before actors existed.
    #[serde(default)]
    pub actor: Option<Actor>,
}

/// A recorded failure, kept apart from events as a diagnostic (R-AUD-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Unique id (keeps two failures at the same instant apart).
    pub id: EventId,
    /// Tenant concerned.
    pub tenant_id: TenantId,
    /// User concerned, if any.
    pub user_id: Option<UserId>,
    /// Operation that failed.
    pub operation_id: OperationId,
    /// Machine code.
    pub code: String,
    /// Human message, without secrets.
    pub message: String,
    /// Graph's `request-id`, when Graph answered.
    pub graph_request_id: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}
