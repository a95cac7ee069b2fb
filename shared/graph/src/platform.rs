//! The engine's `IdentityPlatform` port over [`IdentityClient`]: the admin's sign-in URL (PKCE S256,
//! `state`, `offline_access`), the code exchange and the refresh grant, in the engine's words so the
//! connect and token-refresh use cases stay pure (R-CONN-1, R-CONN-4).
//!
//! The authority is `organizations` for all three: the tenant is not known before the admin signs
//! in, and refresh tokens are not tied to a tenant (graph-spec §1.1, §1.4).

use m365_engine::model::TenantTokens;
use m365_engine::ports::{AuthorizationRequest, IdentityPlatform};
use m365_engine::{Error, Result};
use secrecy::SecretString;

use crate::identity::{IdentityClient, TokenError, TokenSet};
use crate::tokens::REFRESH_AUTHORITY;

/// [`IdentityPlatform`] over the Microsoft identity platform (or the m365-emulator).
#[derive(Debug, Clone)]
pub struct GraphIdentity {
    identity: IdentityClient,
}

impl GraphIdentity {
    /// The port over `identity` (which carries the app registration, redirect URI and scopes).
    #[must_use]
    pub fn new(identity: IdentityClient) -> Self {
        Self { identity }
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
            .identity
            .exchange_code(REFRESH_AUTHORITY, code, pkce_verifier)
            .await?;
        vault_tokens(&tokens)
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<TenantTokens> {
        // The caller (the token-refresh use case) saves the rotated tokens before anything uses
        // them, so nothing is persisted here; a lost response costs nothing because Microsoft keeps
        // the old refresh token valid (graph-spec §1.4).
        let tokens = self
            .identity
            .refresh(REFRESH_AUTHORITY, refresh_token, |_| async { Ok(()) })
            .await?;
        vault_tokens(&tokens)
    }
}
