//! Token providers for [`crate::GraphDirectory`]:
//! - [`VaultTokens`]: the delegated tokens of each tenant, kept in the engine's `TokenVault`
//!   (R-CONN-1). The access token is kept in process memory (per tenant, shared by clones) until
//!   [`EXPIRY_MARGIN`] before it expires, so a warm function reads the vault about once per token
//!   lifetime, not once per Graph call; the vault stays the source of truth: a token the scheduled
//!   `token-refresh` rotated there is picked up when the kept one nears expiry, or at once when
//!   Graph refuses the kept one (401: it is dropped and the vault read again). Refreshes go to the
//!   authority of the Microsoft tenant the vault names with the tokens (R-CONN-7) and save the
//!   rotated tokens BEFORE the new access token is used (R-CONN-4), with `TokenVault::update`,
//!   which fails once a deauthorization deleted them (R-CONN-8).
//! - [`StaticToken`]: one access token used as is (the connect callback's probe).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use m365_engine::error::Entity;
use m365_engine::model::{RequestToken, TenantId, TenantTokens};
use m365_engine::ports::TokenVault;
use m365_engine::{Error, Result};
use secrecy::{ExposeSecret, SecretString};

use crate::client::TokenProvider;
use crate::identity::{IdentityClient, TokenError, TokenSet};
use crate::platform::authority;

/// Authority of sign-ins and grants while the Microsoft tenant is unknown (tokens stored before
/// the vault recorded their tenant): refresh tokens "aren't tied to a resource or tenant"
/// (graph-spec §1.4) and the grant is accepted on `/organizations` (not on `/common`, §1.1). Once
/// the tenant is known, its own id is the authority (R-CONN-7).
pub const REFRESH_AUTHORITY: &str = "organizations";

/// An access token expiring within this margin is not used: the one kept in memory is then read
/// from the vault again, and one the vault holds is refreshed. The scheduled `token-refresh`
/// rotates tokens 15 minutes ahead, so the vault normally holds a newer one by then.
pub const EXPIRY_MARGIN: Duration = Duration::minutes(5);

/// Delegated tokens from the token vault, refreshed through the identity platform, the access
/// token kept in memory until [`EXPIRY_MARGIN`] before its expiry (see the module docs).
///
/// Refreshes are single-flight within one process (per tenant): a caller that waited for another
/// one's refresh uses its result. Across processes concurrent refreshes are harmless —
/// Microsoft keeps old refresh tokens valid after rotation (graph-spec §1.4) — and the scheduled
/// `token-refresh` function serializes them with its lease.
#[derive(Debug, Clone)]
pub struct VaultTokens<V> {
    vault: V,
    identity: IdentityClient,
    flights: Arc<Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Each tenant's access token and when it expires (`Debug` redacts the token).
    kept: Arc<Mutex<Kept>>,
}

/// Access tokens kept in memory, with their expiry, per tenant.
type Kept = HashMap<TenantId, (SecretString, DateTime<Utc>)>;

/// Whether a token expiring at `expires_at` may still be used.
fn usable(expires_at: DateTime<Utc>) -> bool {
    expires_at - EXPIRY_MARGIN > Utc::now()
}

impl<V: TokenVault> VaultTokens<V> {
    /// Tokens from `vault`, refreshed with `identity`.
    #[must_use]
    pub fn new(vault: V, identity: IdentityClient) -> Self {
        Self {
            vault,
            identity,
            flights: Arc::default(),
            kept: Arc::default(),
        }
    }

    fn flight(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flights.entry(tenant.clone()).or_default().clone()
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The access token kept for `tenant`, unless it nears expiry or is `rejected`.
    fn kept_token(
        &self,
        tenant: &TenantId,
        rejected: Option<&SecretString>,
    ) -> Option<SecretString> {
        let kept = self.kept();
        let (token, expires_at) = kept.get(tenant)?;
        let other = rejected.is_none_or(|r| r.expose_secret() != token.expose_secret());
        (usable(*expires_at) && other).then(|| token.clone())
    }

    /// Keeps `token` (valid until `expires_at`) for `tenant` and returns it.
    fn keep(
        &self,
        tenant: &TenantId,
        token: SecretString,
        expires_at: DateTime<Utc>,
    ) -> SecretString {
        self.kept()
            .insert(tenant.clone(), (token.clone(), expires_at));
        token
    }

    /// Uses, once our turn comes, a usable access token other than `stale` kept by another caller
    /// meanwhile or held by the vault (rotated by another caller or process); otherwise refreshes.
    async fn refresh_once(
        &self,
        tenant: &TenantId,
        stale: Option<&SecretString>,
    ) -> Result<SecretString> {
        let flight = self.flight(tenant);
        let _turn = flight.lock().await;
        if let Some(token) = self.kept_token(tenant, stale) {
            return Ok(token);
        }
        let current = self.current(tenant).await?;
        let replaced =
            stale.is_none_or(|s| s.expose_secret() != current.access_token.expose_secret());
        if usable(current.expires_at) && replaced {
            return Ok(self.keep(tenant, current.access_token, current.expires_at));
        }
        let fresh = self.refresh_from(tenant, &current).await?;
        Ok(self.keep(tenant, fresh.access_token, fresh.expires_at))
    }

    async fn current(&self, tenant: &TenantId) -> Result<TenantTokens> {
        self.vault
            .get(tenant)
            .await?
            .ok_or_else(|| Error::not_found(Entity::TenantTokens, tenant))
    }

    async fn refresh_from(&self, tenant: &TenantId, current: &TenantTokens) -> Result<TokenSet> {
        let vault = &self.vault;
        // The issuing tenant's own authority (R-CONN-7).
        let issuer = current.m365_tenant_id.as_ref();
        let tokens = self
            .identity
            .refresh(
                authority(issuer),
                &current.refresh_token,
                |new: TokenSet| async move {
                    let stored = new
                        .to_tenant_tokens_of(issuer)
                        .ok_or(TokenError::Malformed)?;
                    // A fresh idempotency token per rotation (32 hex digits).
                    let request = RequestToken::parse(uuid::Uuid::new_v4().simple().to_string())
                        .map_err(|e| Error::Invalid(e.into()))?;
                    // Update only: tokens deleted by a deauthorization stay deleted (R-CONN-8).
                    vault.update(tenant, &stored, &request).await
                },
            )
            .await?;
        tracing::info!(tenant.id = %tenant, "tenant tokens refreshed and saved");
        Ok(tokens)
    }
}

impl<V: TokenVault> TokenProvider for VaultTokens<V> {
    /// The kept access token; else (cold start, or the kept one nears expiry) the vault's, kept
    /// from now on; else a refreshed one.
    async fn access_token(&self, tenant: &TenantId) -> Result<SecretString> {
        if let Some(token) = self.kept_token(tenant, None) {
            return Ok(token);
        }
        let current = self.current(tenant).await?;
        if usable(current.expires_at) {
            return Ok(self.keep(tenant, current.access_token, current.expires_at));
        }
        self.refresh_once(tenant, None).await
    }

    /// Graph refused `rejected`: it is dropped from memory and the vault read again; its token is
    /// used when it is another one (rotated meanwhile), otherwise the tokens are refreshed.
    async fn refresh_access_token(
        &self,
        tenant: &TenantId,
        rejected: &SecretString,
    ) -> Result<SecretString> {
        {
            let mut kept = self.kept();
            if kept
                .get(tenant)
                .is_some_and(|(token, _)| token.expose_secret() == rejected.expose_secret())
            {
                kept.remove(tenant);
            }
        }
        self.refresh_once(tenant, Some(rejected)).await
    }
}

/// One access token used as is — e.g. right after the code exchange, to read the new tenant's
/// organization and domains before anything is stored. Graph refusing it is final.
#[derive(Debug, Clone)]
pub struct StaticToken(pub SecretString);

impl TokenProvider for StaticToken {
    async fn access_token(&self, _tenant: &TenantId) -> Result<SecretString> {
        Ok(self.0.clone())
    }

    async fn refresh_access_token(
        &self,
        _tenant: &TenantId,
        _rejected: &SecretString,
    ) -> Result<SecretString> {
        Err(Error::Unauthorized {
            graph_request_id: None,
        })
    }
}
