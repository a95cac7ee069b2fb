//! Connected M365 tenants, their verified domains and their OAuth tokens.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{DomainName, M365TenantId, TenantId};

/// Connection state of a tenant (DESIGN §3, `GET /tenants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Created, waiting for the admin's consent.
    PendingConsent,
    /// Connected; its work runs.
    Active,
    /// The refresh token was refused (`invalid_grant`); work is paused (R-CONN-4).
    ReauthorizationRequired,
    /// Deauthorized by an admin; tokens deleted (R-CONN-5).
    Deauthorized,
}

impl TenantStatus {
    /// The snake_case name used in the API and in errors.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingConsent => "pending_consent",
            Self::Active => "active",
            Self::ReauthorizationRequired => "reauthorization_required",
            Self::Deauthorized => "deauthorized",
        }
    }
}

/// How Entra authenticates users of a domain (graph-spec §8.1 `authenticationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainKind {
    /// Entra authenticates: routable (R-CONN-2).
    Managed,
    /// An external IdP (e.g. GoDaddy) authenticates: not routable (R-CONN-3).
    Federated,
}

/// A verified domain of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedDomain {
    /// The domain (lowercase ASCII).
    pub name: DomainName,
    /// Managed or federated.
    pub kind: DomainKind,
}

/// A connected (or connecting) M365 tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Our id.
    pub id: TenantId,
    /// Admin-given name.
    pub name: String,
    /// Connection state.
    pub status: TenantStatus,
    /// Microsoft's tenant id, known once consent completed.
    pub m365_tenant_id: Option<M365TenantId>,
    /// Verified domains as last read from Graph.
    pub domains: Vec<VerifiedDomain>,
    /// When the current access token expires.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version assigned by the store (0 before the first write).
    pub version: u64,
    /// A verified domain the consenting Microsoft tenant must have (`POST /tenants`
    /// `expectedDomain`), checked at the callback while the tenant is not pinned yet (R-CONN-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_domain: Option<DomainName>,
    /// Generation of sign-ins: every deauthorization bumps it, and a sign-in started in an
    /// earlier generation is refused at the callback (R-CONN-8: an authorize URL issued before a
    /// deauthorization no longer works). Absent in records written before it existed: 0.
    #[serde(default)]
    pub consent_epoch: u64,
}

impl Tenant {
    /// A new tenant waiting for consent (version 0).
    #[must_use]
    pub fn pending(id: TenantId, name: impl Into<String>) -> Self {
        Self {
            id,
            name: name.into(),
            status: TenantStatus::PendingConsent,
            m365_tenant_id: None,
            domains: Vec::new(),
            token_expires_at: None,
            version: 0,
            expected_domain: None,
            consent_epoch: 0,
        }
    }

    /// The verified domain named `name`, if the tenant has it.
    #[must_use]
    pub fn domain(&self, name: &DomainName) -> Option<&VerifiedDomain> {
        self.domains.iter().find(|d| &d.name == name)
    }
}

/// A tenant's OAuth tokens; kept only in the token vault (R-CONN-1). `Debug` redacts the secrets.
#[derive(Debug, Clone)]
pub struct TenantTokens {
    /// Access token for Graph.
    pub access_token: SecretString,
    /// Refresh token (rotated on every refresh, R-CONN-4).
    pub refresh_token: SecretString,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
    /// The Microsoft tenant that issued these tokens, once known (the connect callback reads it
    /// with the new access token before storing anything): refreshes are sent to that tenant's
    /// own authority, not `organizations` (R-CONN-7). `None` for tokens stored before it was
    /// recorded (they refresh at `organizations`).
    pub m365_tenant_id: Option<M365TenantId>,
}

/// Idempotency token of a token-vault write (Secrets Manager `ClientRequestToken`: 32–64 characters
/// of letters, digits and `-`). Retrying a write with the same token does not create another version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestToken(String);

/// Why a string was refused as a [`RequestToken`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request token must have 32 to 64 letters, digits or '-'")]
pub struct RequestTokenError;

impl RequestToken {
    /// Validates a token.
    ///
    /// # Errors
    /// [`RequestTokenError`] when the length or charset is wrong.
    pub fn parse(value: impl Into<String>) -> Result<Self, RequestTokenError> {
        let value = value.into();
        let ok = (32..=64).contains(&value.len())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            Ok(Self(value))
        } else {
            Err(RequestTokenError)
        }
    }

    /// A fresh random token (a GUID).
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The token as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestToken {
    type Error = RequestTokenError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<RequestToken> for String {
    fn from(t: RequestToken) -> Self {
        t.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_follow_the_secrets_manager_client_request_token_rules() {
        // R-CONN-4 (idempotent token writes)
        assert!(RequestToken::parse("a".repeat(32)).is_ok());
        assert!(RequestToken::parse("a".repeat(64)).is_ok());
        assert_eq!(RequestToken::parse("a".repeat(31)), Err(RequestTokenError));
        assert_eq!(RequestToken::parse("a".repeat(65)), Err(RequestTokenError));
        assert_eq!(
            RequestToken::parse(format!("{}_", "a".repeat(32))),
            Err(RequestTokenError)
        );
        assert_eq!(RequestToken::generate().as_str().len(), 36);
    }

    #[test]
    fn tenant_tokens_never_print_their_secrets() {
        // R-SAFE-2
        let tokens = TenantTokens {
            access_token: SecretString::from("access-secret-value"),
            refresh_token: SecretString::from("refresh-secret-value"),
            expires_at: Utc::now(),
            m365_tenant_id: None,
        };
        let printed = format!("{tokens:?}");
        assert!(!printed.contains("access-secret-value"));
        assert!(!printed.contains("refresh-secret-value"));
    }
}
