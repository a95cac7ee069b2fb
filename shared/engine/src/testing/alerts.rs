//! Admin alerts in memory (R-OPS-1): a publisher that records every alert (and can be made to
//! fail) and the open incidents keyed by (tenant, kind), with the claim semantics of the
//! `AlertIncidents` contract.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::lock;
use crate::error::{Error, Result};
use crate::model::{AdminAlert, AlertIncident, AlertKind, TenantId};
use crate::ports::{AdminAlerts, AlertIncidents};

/// Records every published alert; [`FakeAdminAlerts::fail_next`] makes the next publish fail.
#[derive(Debug, Default)]
pub struct FakeAdminAlerts {
    published: Mutex<Vec<AdminAlert>>,
    faults: Mutex<VecDeque<Error>>,
}

impl FakeAdminAlerts {
    /// A publisher that has published nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every alert published, oldest first.
    #[must_use]
    pub fn published(&self) -> Vec<AdminAlert> {
        lock(&self.published).clone()
    }

    /// The alerts of `kind` published, oldest first.
    #[must_use]
    pub fn of(&self, kind: AlertKind) -> Vec<AdminAlert> {
        self.published()
            .into_iter()
            .filter(|a| a.kind == kind)
            .collect()
    }

    /// Makes the next publish fail with `error`.
    pub fn fail_next(&self, error: Error) {
        lock(&self.faults).push_back(error);
    }
}

impl AdminAlerts for FakeAdminAlerts {
    async fn publish(&self, alert: &AdminAlert) -> Result<()> {
        if let Some(fault) = lock(&self.faults).pop_front() {
            return Err(fault);
        }
        lock(&self.published).push(alert.clone());
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Stored {
    opened_at: DateTime<Utc>,
    claimed_until: DateTime<Utc>,
    published: bool,
}

/// Open incidents by (tenant, kind).
#[derive(Debug, Default)]
pub struct FakeAlertIncidents {
    open: Mutex<BTreeMap<(TenantId, AlertKind), Stored>>,
}

impl FakeAlertIncidents {
    /// No incident open.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl AlertIncidents for FakeAlertIncidents {
    async fn claim(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<AlertIncident>> {
        let mut open = lock(&self.open);
        let key = (tenant.clone(), kind);
        let opened_at = match open.get(&key) {
            None => now,
            Some(s) if !s.published && s.claimed_until <= now => s.opened_at,
            Some(_) => return Ok(None),
        };
        open.insert(
            key,
            Stored {
                opened_at,
                claimed_until: until,
                published: false,
            },
        );
        Ok(Some(AlertIncident {
            tenant_id: tenant.clone(),
            kind,
            opened_at,
            published: false,
        }))
    }

    async fn mark_published(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        opened_at: DateTime<Utc>,
    ) -> Result<()> {
        if let Some(s) = lock(&self.open).get_mut(&(tenant.clone(), kind))
            && s.opened_at == opened_at
        {
            s.published = true;
        }
        Ok(())
    }

    async fn resolve(&self, tenant: &TenantId, kind: AlertKind) -> Result<bool> {
        Ok(lock(&self.open).remove(&(tenant.clone(), kind)).is_some())
    }

    async fn get(&self, tenant: &TenantId, kind: AlertKind) -> Result<Option<AlertIncident>> {
        Ok(lock(&self.open)
            .get(&(tenant.clone(), kind))
            .map(|s| AlertIncident {
                tenant_id: tenant.clone(),
                kind,
                opened_at: s.opened_at,
                published: s.published,
            }))
    }
}

#[cfg(test)]
mod tests {
    contract_tests!(alert_incidents, super::FakeAlertIncidents::new());
}
