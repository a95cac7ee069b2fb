//! The engine's `IdentityPlatform` port over [`IdentityClient`]: the admin's sign-in URL (PKCE S256,
//! `state`, `offline_access`), the code exchange and the refresh grant, in the engine's words so the
//! connect and token-refresh use cases stay pure (R-CONN-1, R-CONN-4).
//!
//! The authority is `organizations` until the Microsoft tenant is known, then that tenant's own
//! (`/{m365TenantId}`, R-CONN-7): there only its own users can sign in, and only its own codes and
//! refresh tokens are redeemed (graph-spec §1.1 lists a tenant GUID as `{tenant}`; AADSTS700005
//! refuses a code of another tenant; how a refresh token of another tenant is refused at a
//! tenant authority is unconfirmed, see the emulator README).
//!
//! [`GraphIdentity::with_deadline`] bounds the token calls by the function's deadline (R-OPS-2):
//! past it they fail with the retryable `deadline` error instead of running into Lambda's timeout.

use std::future::Future;

use m365_engine::model::{M365TenantId, TenantTokens};
use m365_engine::ports::{AuthorizationRequest, IdentityPlatform};
use m365_engine::{Error, Result};
use secrecy::SecretString;
use tokio::time::Instant;

use crate::client::MIN_ATTEMPT;

use crate::identity::{IdentityClient, TokenError, TokenSet};
use crate::tokens::REFRESH_AUTHORITY;

/// [`IdentityPlatform`] over the Microsoft identity platform (or the m365-emulator).
#[derive(Debug, Clone)]
pub struct GraphIdentity {
    identity: IdentityClient,
    deadline: Option<Instant>,
}

impl GraphIdentity {
    /// The port over `identity` (which carries the app registration, redirect URI and scopes).
    #[must_use]
    pub fn new(identity: IdentityClient) -> Self {
        Self {
            identity,
            deadline: None,
        }
    }

    /// A view whose token calls never run past `deadline` (e.g. the Lambda deadline minus a
    /// margin): a call that cannot start or finish before it fails with the retryable
    /// `deadline` error. Cancelling one midway is safe: nothing is persisted here, and Microsoft
    /// keeps the old refresh token valid after a rotation (graph-spec §1.4).
    #[must_use]
    pub fn with_deadline(&self, deadline: Instant) -> Self {
        Self {
            deadline: Some(deadline),
            ..self.clone()
        }
    }

    /// The deadline this view is bounded by, if any.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The grant `call` within this view's deadline, in the vault form naming the tenant the
    /// tokens were redeemed at; a grant without a refresh token (no `offline_access` consented)
    /// cannot keep a tenant connected.
    async fn grant(
        &self,
        call: impl Future<Output = std::result::Result<TokenSet, TokenError>>,
        tenant: Option<&M365TenantId>,
    ) -> Result<TenantTokens> {
        let tokens = match self.deadline {
            None => call.await?,
            Some(deadline) if deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT => {
                return Err(Error::deadline("identity"));
            }
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .map_err(|_| Error::deadline("identity"))??,
        };
        tokens
            .to_tenant_tokens_of(tenant)
            .ok_or_else(|| Error::from(TokenError::Malformed))
    }
}

/// The authority path segment: the tenant's id once known, else `organizations`.
#[must_use]
pub fn authority(tenant: Option<&M365TenantId>) -> &str {
    tenant.map_or(REFRESH_AUTHORITY, M365TenantId::as_str)
}

impl IdentityPlatform for GraphIdentity {
    fn authorization_request(&self, tenant: Option<&M365TenantId>) -> Result<AuthorizationRequest> {
        let start = self.identity.authorization_url(authority(tenant))?;
        Ok(AuthorizationRequest {
            url: start.url.to_string(),
            state: start.state,
            pkce_verifier: start.pkce_verifier,
        })
    }

    async fn exchange_code(
        &self,
        code: &SecretString,
        pkce_verifier: &SecretString,
        tenant: Option<&M365TenantId>,
    ) -> Result<TenantTokens> {
        let call = self
            .identity
            .exchange_code(authority(tenant), code, pkce_verifier);
        self.grant(call, tenant).await
    }

    async fn refresh(
        &self,
        refresh_token: &SecretString,
        tenant: Option<&M365TenantId>,
    ) -> Result<TenantTokens> {
        // The caller (the token-refresh use case) saves the rotated tokens before anything uses
        // them, so nothing is persisted here; a lost response costs nothing because Microsoft keeps
        // the old refresh token valid (graph-spec §1.4).
        let call = self
            .identity
            .refresh(authority(tenant), refresh_token, |_| async { Ok(()) });
        self.grant(call, tenant).await
    }
}
