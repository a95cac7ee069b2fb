//! Token providers for [`crate::GraphDirectory`]:
//! - [`VaultTokens`]: the delegated tokens of each tenant, kept in the engine's `TokenVault`
//!   (R-CONN-1); refreshes go to the authority of the Microsoft tenant the vault names with the
//!   tokens (R-CONN-7) and save the rotated tokens BEFORE the new access token is used (R-CONN-4),
//!   with `TokenVault::update`, which fails once a deauthorization deleted them (R-CONN-8).
//! - [`ClientCredentialsTokens`]: app-only tokens (the optional client-credentials mode).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
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

/// Delegated tokens from the token vault, refreshed through the identity platform.
///
/// Refreshes are single-flight within one process (per tenant): a caller that waited for another
/// one's refresh uses its result. Across processes concurrent refreshes are harmless —
/// Microsoft keeps old refresh tokens valid after rotation (graph-spec §1.4) — and the scheduled
/// `token-refresh` function serializes them with its lease.
#[derive(Debug, Clone)]
pub struct VaultTokens<V> {
    vault: V,
    identity: IdentityClient,
    /// Refresh when the access token expires within this margin.
    skew: Duration,
    flights: Arc<Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl<V: TokenVault> VaultTokens<V> {
    /// Tokens from `vault`, refreshed with `identity`, two minutes before expiry.
    #[must_use]
    pub fn new(vault: V, identity: IdentityClient) -> Self {
        Self {
            vault,
            identity,
            skew: Duration::minutes(2),
            flights: Arc::default(),
        }
    }

    fn flight(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self
            .flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        flights.entry(tenant.clone()).or_default().clone()
    }

    /// Refreshes unless, once our turn comes, the vault already holds a fresh access token other
    /// than `stale` (another caller refreshed meanwhile).
    async fn refresh_once(
        &self,
        tenant: &TenantId,
        stale: Option<&SecretString>,
    ) -> Result<SecretString> {
        let flight = self.flight(tenant);
        let _turn = flight.lock().await;
        let current = self.current(tenant).await?;
        let fresh = current.expires_at - self.skew > Utc::now();
        let replaced =
            stale.is_none_or(|s| s.expose_secret() != current.access_token.expose_secret());
        if fresh && replaced {
            return Ok(current.access_token);
        }
        Ok(self.refresh_from(tenant, &current).await?.access_token)
    }

    /// Refreshes `tenant`'s tokens now: the rotated tokens are stored in the vault first, then
    /// returned (R-CONN-4).
    ///
    /// # Errors
    /// `NotFound` (tenant tokens) when the vault has none, or when they were deleted (a
    /// deauthorization) before the rotated ones could be saved — those are then dropped, never
    /// stored (R-CONN-8); `ReauthorizationRequired` with the AADSTS code on `invalid_grant`;
    /// retryable errors for throttling and outages; the vault's errors when saving fails (the new
    /// tokens are then not used).
    pub async fn refresh_now(&self, tenant: &TenantId) -> Result<TokenSet> {
        let current = self.current(tenant).await?;
        self.refresh_from(tenant, &current).await
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
    async fn access_token(&self, tenant: &TenantId) -> Result<SecretString> {
        let current = self.current(tenant).await?;
        if current.expires_at - self.skew > Utc::now() {
            return Ok(current.access_token);
        }
        self.refresh_once(tenant, None).await
    }

    async fn refresh_access_token(
        &self,
        tenant: &TenantId,
        rejected: &SecretString,
    ) -> Result<SecretString> {
        self.refresh_once(tenant, Some(rejected)).await
    }
}

/// App-only tokens per tenant (client credentials), cached until shortly before expiry. The
/// Microsoft tenant (id or domain) of each of our tenants is given by `authority_of`.
#[derive(Debug, Clone)]
pub struct ClientCredentialsTokens {
    identity: IdentityClient,
    authorities: Arc<HashMap<TenantId, String>>,
    cache: Arc<Mutex<HashMap<TenantId, TokenSet>>>,
}

impl ClientCredentialsTokens {
    /// App-only tokens for the tenants in `authorities` (our tenant → Microsoft tenant id or domain).
    #[must_use]
    pub fn new(identity: IdentityClient, authorities: HashMap<TenantId, String>) -> Self {
        Self {
            identity,
            authorities: Arc::new(authorities),
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn fetch(&self, tenant: &TenantId) -> Result<SecretString> {
        let authority = self
            .authorities
            .get(tenant)
            .ok_or_else(|| Error::not_found(Entity::M365Tenant, tenant))?;
        let tokens = self.identity.client_credentials(authority).await?;
        let access = tokens.access_token.clone();
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant.clone(), tokens);
        Ok(access)
    }
}

impl TokenProvider for ClientCredentialsTokens {
    async fn access_token(&self, tenant: &TenantId) -> Result<SecretString> {
        let cached = {
            let cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cache
                .get(tenant)
                .filter(|t| t.expires_at - Duration::minutes(2) > Utc::now())
                .map(|t| t.access_token.clone())
        };
        match cached {
            Some(token) => Ok(token),
            None => self.fetch(tenant).await,
        }
    }

    async fn refresh_access_token(
        &self,
        tenant: &TenantId,
        _rejected: &SecretString,
    ) -> Result<SecretString> {
        self.fetch(tenant).await
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
