//! [`FakeHeldPlans`]: the in-memory [`HeldPlanStore`] (R-REC-3), with the conditional semantics
//! of the DynamoDB adapter (one held plan per tenant; a release deletes only the plan it names).

use std::collections::HashMap;
use std::sync::Mutex;

use super::lock;
use crate::error::Result;
use crate::model::TenantId;
use crate::ports::{HeldPlanStore, HeldRecord, RoundTally};

/// Held plans and round tallies in maps.
#[derive(Debug, Default)]
pub struct FakeHeldPlans {
    plans: Mutex<HashMap<TenantId, HeldRecord>>,
    tallies: Mutex<HashMap<TenantId, RoundTally>>,
    rejected: Mutex<HashMap<TenantId, String>>,
}

impl FakeHeldPlans {
    /// Empty.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The tenant's held plan's id, if any (for assertions).
    #[must_use]
    pub fn held_id(&self, tenant: &TenantId) -> Option<String> {
        lock(&self.plans).get(tenant).map(|r| r.plan_id.clone())
    }

    /// The tenant's round tally (for assertions).
    #[must_use]
    pub fn tally_of(&self, tenant: &TenantId) -> Option<RoundTally> {
        lock(&self.tallies).get(tenant).cloned()
    }
}

impl HeldPlanStore for FakeHeldPlans {
    async fn get(&self, tenant: &TenantId) -> Result<Option<HeldRecord>> {
        Ok(lock(&self.plans).get(tenant).cloned())
    }

    async fn hold(&self, tenant: &TenantId, record: &HeldRecord) -> Result<bool> {
        let mut plans = lock(&self.plans);
        if plans.contains_key(tenant) {
            return Ok(false);
        }
        plans.insert(tenant.clone(), record.clone());
        Ok(true)
    }

    async fn release(&self, tenant: &TenantId, plan_id: &str) -> Result<bool> {
        let mut plans = lock(&self.plans);
        if plans.get(tenant).is_some_and(|r| r.plan_id == plan_id) {
            plans.remove(tenant);
            return Ok(true);
        }
        Ok(false)
    }

    async fn tally(&self, tenant: &TenantId) -> Result<Option<RoundTally>> {
        Ok(lock(&self.tallies).get(tenant).cloned())
    }

    async fn put_tally(&self, tenant: &TenantId, tally: Option<&RoundTally>) -> Result<()> {
        let mut tallies = lock(&self.tallies);
        match tally {
            Some(t) => {
                tallies.insert(tenant.clone(), t.clone());
            }
            None => {
                tallies.remove(tenant);
            }
        }
        Ok(())
    }

    async fn rejected(&self, tenant: &TenantId) -> Result<Option<String>> {
        Ok(lock(&self.rejected).get(tenant).cloned())
    }

    async fn put_rejected(&self, tenant: &TenantId, body: Option<&str>) -> Result<()> {
        let mut rejected = lock(&self.rejected);
        match body {
            Some(b) => {
                rejected.insert(tenant.clone(), b.to_owned());
            }
            None => {
                rejected.remove(tenant);
            }
        }
        Ok(())
    }
}
