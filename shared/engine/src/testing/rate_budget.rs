//! A per-tenant rate budget in memory, deciding with the same token bucket as the DynamoDB
//! adapter ([`crate::policy::rate_budget`]).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::lock;
use crate::error::Result;
use crate::model::TenantId;
use crate::policy::rate_budget::Bucket;
use crate::ports::{BudgetDecision, RateBudget, RateLimit};

/// Rate budgets in memory, one bucket of `limit` per tenant.
#[derive(Debug)]
pub struct FakeRateBudget {
    limit: RateLimit,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
    granted: Mutex<HashMap<TenantId, u64>>,
}

impl FakeRateBudget {
    /// Every tenant's bucket holds `limit` (full at first use).
    #[must_use]
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
            granted: Mutex::new(HashMap::new()),
        }
    }

    /// Units granted to `tenant` so far.
    #[must_use]
    pub fn granted(&self, tenant: &TenantId) -> u64 {
        lock(&self.granted).get(tenant).copied().unwrap_or(0)
    }
}

impl RateBudget for FakeRateBudget {
    async fn acquire(
        &self,
        tenant: &TenantId,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<BudgetDecision> {
        let mut buckets = lock(&self.buckets);
        let bucket = buckets
            .get(tenant)
            .copied()
            .unwrap_or_else(|| Bucket::full(self.limit, now));
        let (next, decision) = bucket.take(self.limit, cost, now)?;
        if let Some(next) = next {
            buckets.insert(tenant.clone(), next);
            *lock(&self.granted).entry(tenant.clone()).or_default() += u64::from(cost);
        }
        Ok(decision)
    }
}
