//! The token vault in memory, with Secrets Manager's version semantics: a put with a new request
//! token makes a new current version (the old one becomes previous); repeating a request token with
//! the same content changes nothing; with other content it is refused.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::lock;
use crate::error::{Conflict, Result};
use crate::model::{RequestToken, TenantId, TenantTokens};
use crate::ports::TokenVault;

#[derive(Debug, Clone)]
struct Version {
    access: SecretString,
    refresh: SecretString,
    expires_at: DateTime<Utc>,
}

impl Version {
    fn of(tokens: &TenantTokens) -> Self {
        Self {
            access: tokens.access_token.clone(),
            refresh: tokens.refresh_token.clone(),
            expires_at: tokens.expires_at,
        }
    }

    fn same_as(&self, other: &Self) -> bool {
        self.access.expose_secret() == other.access.expose_secret()
            && self.refresh.expose_secret() == other.refresh.expose_secret()
            && self.expires_at == other.expires_at
    }

    fn tokens(&self) -> TenantTokens {
        TenantTokens {
            access_token: self.access.clone(),
            refresh_token: self.refresh.clone(),
            expires_at: self.expires_at,
        }
    }
}

#[derive(Debug, Default)]
struct Secret {
    versions: BTreeMap<RequestToken, Version>,
    current: Option<RequestToken>,
    previous: Option<RequestToken>,
}

/// Tenant tokens in memory.
#[derive(Debug, Default)]
pub struct FakeTokenVault {
    secrets: Mutex<BTreeMap<TenantId, Secret>>,
}

impl FakeTokenVault {
    /// An empty vault.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl TokenVault for FakeTokenVault {
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantTokens>> {
        let secrets = lock(&self.secrets);
        Ok(secrets
            .get(tenant)
            .and_then(|s| s.current.as_ref().and_then(|c| s.versions.get(c)))
            .map(Version::tokens))
    }

    async fn get_previous(&self, tenant: &TenantId) -> Result<Option<TenantTokens>> {
        let secrets = lock(&self.secrets);
        Ok(secrets
            .get(tenant)
            .and_then(|s| s.previous.as_ref().and_then(|p| s.versions.get(p)))
            .map(Version::tokens))
    }

    async fn put(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<()> {
        let mut secrets = lock(&self.secrets);
        let secret = secrets.entry(tenant.clone()).or_default();
        let version = Version::of(tokens);
        if let Some(existing) = secret.versions.get(request) {
            return if existing.same_as(&version) {
                Ok(())
            } else {
                Err(Conflict::RequestTokenReused.into())
            };
        }
        secret.versions.insert(request.clone(), version);
        secret.previous = secret.current.replace(request.clone());
        Ok(())
    }

    async fn delete(&self, tenant: &TenantId) -> Result<()> {
        lock(&self.secrets).remove(tenant);
        Ok(())
    }
}
