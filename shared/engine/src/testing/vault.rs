//! The token vault in memory, with Secrets Manager's version semantics: a write with a new request
//! token makes a new current version (the old one becomes previous); repeating a request token with
//! the same content changes nothing; with other content it is refused. `create` makes the secret
//! when absent, `update` never does (R-CONN-8). A test can hold the next write at a [`Gate`] to
//! force an interleaving.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::gate::{Gate, GateSlot};
use super::lock;
use crate::error::{Conflict, Entity, Error, Result};
use crate::model::{M365TenantId, RequestToken, TenantId, TenantTokens};
use crate::ports::TokenVault;

#[derive(Debug, Clone)]
struct Version {
    access: SecretString,
    refresh: SecretString,
    expires_at: DateTime<Utc>,
    m365_tenant_id: Option<M365TenantId>,
}

impl Version {
    fn of(tokens: &TenantTokens) -> Self {
        Self {
            access: tokens.access_token.clone(),
            refresh: tokens.refresh_token.clone(),
            expires_at: tokens.expires_at,
            m365_tenant_id: tokens.m365_tenant_id.clone(),
        }
    }

    fn same_as(&self, other: &Self) -> bool {
        self.access.expose_secret() == other.access.expose_secret()
            && self.refresh.expose_secret() == other.refresh.expose_secret()
            && self.expires_at == other.expires_at
            && self.m365_tenant_id == other.m365_tenant_id
    }

    fn tokens(&self) -> TenantTokens {
        TenantTokens {
            access_token: self.access.clone(),
            refresh_token: self.refresh.clone(),
            expires_at: self.expires_at,
            m365_tenant_id: self.m365_tenant_id.clone(),
        }
    }
}

#[derive(Debug, Default)]
struct Secret {
    versions: BTreeMap<RequestToken, Version>,
    current: Option<RequestToken>,
    previous: Option<RequestToken>,
}

/// Tenant tokens in memory. Clones share the same secrets (and read count), so a test can keep one
/// while a provider or a world owns another.
#[derive(Debug, Default, Clone)]
pub struct FakeTokenVault {
    secrets: Arc<Mutex<BTreeMap<TenantId, Secret>>>,
    hold: Arc<GateSlot>,
    reads: Arc<AtomicUsize>,
}

impl FakeTokenVault {
    /// An empty vault.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `create` or `update` waits at the returned gate before it writes (or fails), so
    /// a test can run something else in between (R-CONN-8 races).
    #[must_use]
    pub fn hold_next_write(&self) -> Gate {
        self.hold.arm()
    }

    /// How many reads (`get`, `get_previous`) the vault has served: each stands for one Secrets
    /// Manager `GetSecretValue` of the deployed vault.
    #[must_use]
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    /// The current tokens of `tenant`, for a test to look at: not counted as a read.
    #[must_use]
    pub fn current(&self, tenant: &TenantId) -> Option<TenantTokens> {
        self.peek(tenant, |s| s.current.as_ref())
    }

    /// The version of `tenant`'s secret that `pick` names (current or previous), counted as a read.
    fn read(
        &self,
        tenant: &TenantId,
        pick: impl FnOnce(&Secret) -> Option<&RequestToken>,
    ) -> Option<TenantTokens> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.peek(tenant, pick)
    }

    /// The version of `tenant`'s secret that `pick` names.
    fn peek(
        &self,
        tenant: &TenantId,
        pick: impl FnOnce(&Secret) -> Option<&RequestToken>,
    ) -> Option<TenantTokens> {
        let secrets = lock(&self.secrets);
        let secret = secrets.get(tenant)?;
        pick(secret)
            .and_then(|version| secret.versions.get(version))
            .map(Version::tokens)
    }

    /// How many versions the tenant's secret holds (0 when it has none).
    #[must_use]
    pub fn versions(&self, tenant: &TenantId) -> usize {
        lock(&self.secrets)
            .get(tenant)
            .map_or(0, |s| s.versions.len())
    }

    async fn write(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
        may_create: bool,
    ) -> Result<()> {
        if let Some(gate) = self.hold.take() {
            gate.pass().await;
        }
        let mut secrets = lock(&self.secrets);
        if !may_create && !secrets.contains_key(tenant) {
            return Err(Error::not_found(Entity::TenantTokens, tenant));
        }
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
}

impl TokenVault for FakeTokenVault {
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantTokens>> {
        Ok(self.read(tenant, |s| s.current.as_ref()))
    }

    async fn get_previous(&self, tenant: &TenantId) -> Result<Option<TenantTokens>> {
        Ok(self.read(tenant, |s| s.previous.as_ref()))
    }

    async fn create(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<()> {
        self.write(tenant, tokens, request, true).await
    }

    async fn update(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<()> {
        self.write(tenant, tokens, request, false).await
    }

    async fn delete(&self, tenant: &TenantId) -> Result<()> {
        lock(&self.secrets).remove(tenant);
        Ok(())
    }
}
