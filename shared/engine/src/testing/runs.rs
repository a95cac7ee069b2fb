//! [`FakeReconcileRuns`]: reconcile runs in memory (R-OPS-2), keyed by tenant and run id, with the
//! store's version condition on updates.

use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;
use crate::error::{Conflict, Entity, Error, Result};
use crate::model::{ReconcileRun, RunId, TenantId};
use crate::ports::ReconcileRuns;

/// Reconcile runs in memory.
#[derive(Debug, Default)]
pub struct FakeReconcileRuns {
    runs: Mutex<HashMap<(TenantId, RunId), ReconcileRun>>,
    updates: Mutex<usize>,
}

impl FakeReconcileRuns {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every stored run (tests).
    #[must_use]
    pub fn all(&self) -> Vec<ReconcileRun> {
        lock(&self.runs).values().cloned().collect()
    }

    /// Updates that met their condition so far (tests: a duplicate delivery writes nothing).
    #[must_use]
    pub fn updates(&self) -> usize {
        *lock(&self.updates)
    }
}

impl ReconcileRuns for FakeReconcileRuns {
    async fn create(&self, run: &ReconcileRun) -> Result<()> {
        let mut runs = lock(&self.runs);
        let key = (run.tenant_id.clone(), run.run_id.clone());
        if runs.contains_key(&key) {
            return Err(Error::Conflict(Conflict::AlreadyExists {
                entity: Entity::Operation,
                id: run.run_id.to_string(),
            }));
        }
        runs.insert(key, run.clone());
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, run: &RunId) -> Result<Option<ReconcileRun>> {
        Ok(lock(&self.runs)
            .get(&(tenant.clone(), run.clone()))
            .cloned())
    }

    async fn update(&self, run: &ReconcileRun, expected: u64) -> Result<bool> {
        let mut runs = lock(&self.runs);
        let key = (run.tenant_id.clone(), run.run_id.clone());
        match runs.get(&key) {
            Some(stored) if stored.version == expected => {
                runs.insert(key, run.clone());
                *lock(&self.updates) += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    contract_tests!(runs, super::FakeReconcileRuns::new());
}
