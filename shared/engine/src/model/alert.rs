//! Admin alerts (R-OPS-1): what an alert is about ([`AlertKind`]), the alert itself
//! ([`AdminAlert`], published through the `AdminAlerts` port to the stack's SNS topic) and the
//! open incident that keeps it to one alert per incident ([`AlertIncident`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TenantId;

/// What an admin alert is about. The snake_case names are the alert's `kind` on the topic (an
/// SNS message attribute too, so a subscription can filter on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The tenant's refresh token was refused (`invalid_grant`) or its tokens are gone: an admin
    /// must connect it again (R-CONN-4). Resolved when the tenant is active again.
    ReauthorizationRequired,
    /// The identity platform refused our OAuth client (`invalid_client`: wrong or expired client
    /// secret; `unauthorized_client`). Resolved by the next refresh that succeeds.
    ConfigurationError,
    /// A reconcile pass stopped at the safeguard (R-REC-3). Resolved when its plan is approved or
    /// rejected, or a later pass is within the safeguard.
    SafeguardTripped,
}

impl AlertKind {
    /// The snake_case name (the alert's `kind`, and part of the incident's store key).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReauthorizationRequired => "reauthorization_required",
            Self::ConfigurationError => "configuration_error",
            Self::SafeguardTripped => "safeguard_tripped",
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [Self; 3] = [
        Self::ReauthorizationRequired,
        Self::ConfigurationError,
        Self::SafeguardTripped,
    ];
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AlertKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown alert kind {s:?}"))
    }
}

/// One alert to the admins. Never holds a secret, a token or a password: `message` is a short
/// sentence for a person, `details` machine-readable ids and counts (R-SAFE-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminAlert {
    /// What it is about.
    pub kind: AlertKind,
    /// The tenant concerned.
    pub tenant_id: TenantId,
    /// When the incident opened.
    pub at: DateTime<Utc>,
    /// A short human sentence (also the email subject's tail).
    pub message: String,
    /// Ids, codes and counts (e.g. `{"aadsts": 700082}`, `{"destructive": 12, "bound": 40}`).
    pub details: serde_json::Value,
}

/// An open incident: one per (tenant, kind) until it is resolved; its alert is published once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertIncident {
    /// The tenant concerned.
    pub tenant_id: TenantId,
    /// What it is about.
    pub kind: AlertKind,
    /// When it opened (names the incident: a retry of the same incident sees the same instant).
    pub opened_at: DateTime<Utc>,
    /// Whether its alert was published (confirmed by the publisher).
    pub published: bool,
}
