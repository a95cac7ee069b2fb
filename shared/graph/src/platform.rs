//! The engine's `IdentityPlatform` port over [`IdentityClient`]: the admin's sign-in URL (PKCE S256,
//! `state`, `offline_access`), the code exchange and the refresh grant, in the engine's words so the
//! connect and token-refresh use cases stay pure (R-CONN-1, R-CONN-4).
//!
//! The authority is `organizations` for all three: the tenant is not known before the admin signs
//! in, and refresh tokens are not tied to a tenant (graph-spec §1.1, §1.4).
//!
//! [`GraphIdentity::with_deadline`] bounds the token calls by the function's deadline (R-OPS-2):
//! past it they fail with the retryable `deadline` error instead of running into Lambda's timeout.

use std::future::Future;

use m365_engine::model::TenantTokens;
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

    async fn bounded<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let Some(deadline) = self.deadline else {
            return call.await;
        };
        if deadline.saturating_duration_since(Instant::now()) < MIN_ATTEMPT {
            return Err(Error::deadline("identity"));
        }
        tokio::time::timeout_at(deadline, call)
            .await
            .unwrap_or_else(|_| Err(Error::deadline("identity")))
    }
}

/// The vault form of a grant's tokens; a grant without a refresh token (no `offline_access`
/// consented) cannot keep a tenant connected.
fn vault_tokens(tokens: &TokenSet) -> Result<TenantTokens> {
    tokens
        .to_tenant_tokens()
        .ok_or_else(|| Error::from(TokenError::Malformed))
}

impl IdentityPlatform for GraphIdentity {
    fn authorization_request(&self) -> Result<AuthorizationRequest> {
        let start = self.identity.authorization_url(REFRESH_AUTHORITY)?;
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
    ) -> Result<TenantTokens> {
        let tokens = self
            .bounded(async {
                Ok(self
                    .identity
                    .exchange_code(REFRESH_AUTHORITY, code, pkce_verifier)
                    .await?)
            })
            .await?;
        vault_tokens(&tokens)
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<TenantTokens> {
        // The caller (the token-refresh use case) saves the rotated tokens before anything uses
        // them, so nothing is persisted here; a lost response costs nothing because Microsoft keeps
        // the old refresh token valid (graph-spec §1.4).
        let tokens = self
            .bounded(async {
                Ok(self
                    .identity
                    .refresh(REFRESH_AUTHORITY, refresh_token, |_| async { Ok(()) })
                    .await?)
            })
            .await?;
        vault_tokens(&tokens)
    }
}
