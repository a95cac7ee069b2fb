//! [`DynamoRateBudget`]: the per-tenant Graph rate budget shared by every concurrent function
//! (DESIGN §2 "Graph usage", graph-spec §7.2), one token-bucket item per tenant on the ledger
//! table (`pk` = `BUDGET#<tenant id>`; its prefix never collides with operation ids or the other
//! coordination records).
//!
//! Item: `level_milli` (units × 1000 at `updated_ms`, an integer so no float reaches DynamoDB),
//! `updated_ms` (epoch milliseconds), `version` (bumped by every write) and `expires_at` (TTL: a
//! bucket untouched for a window is full again, so dropping it later loses nothing).
//!
//! `acquire` reads the item (strongly consistent), decides with
//! [`m365_engine::policy::rate_budget::Bucket`], and writes only when it grants: a put conditional
//! on the version it read (or on the item's absence). A lost race re-reads, at most four
//! attempts in all; after that the caller is told to wait one refill step (others
//! are taking units, there is no hot loop). A refusal writes nothing.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use m365_engine::error::Error;
use m365_engine::model::TenantId;
use m365_engine::policy::rate_budget::{Bucket, check_cost};
use m365_engine::ports::{BudgetDecision, RateBudget, RateLimit};

use super::{Table, dynamo_error, is_conditional_failure, n, number, pk_key, s};
use crate::schema::{EXPIRES_AT, PK};

const LEVEL_MILLI: &str = "level_milli";
const UPDATED_MS: &str = "updated_ms";
const VERSION: &str = "version";

/// Reads and conditional writes per `acquire` before answering "wait".
const MAX_ATTEMPTS: u32 = 4;

/// [`RateBudget`] on the ledger table: every tenant's bucket has the same `limit`.
#[derive(Debug, Clone)]
pub struct DynamoRateBudget {
    table: Table,
    limit: RateLimit,
}

impl DynamoRateBudget {
    /// Budgets of `limit` per tenant on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>, limit: RateLimit) -> Self {
        Self {
            table: Table::new(client, table),
            limit,
        }
    }

    /// The limit of every tenant's bucket.
    #[must_use]
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    async fn read(&self, key: &str) -> Result<Option<(Bucket, i64)>, Error> {
        let item = self.table.get(pk_key(key)).await?;
        let Some(item) = item else {
            return Ok(None);
        };
        let level = number(&item, LEVEL_MILLI)?;
        let updated = number(&item, UPDATED_MS)?;
        let version = number(&item, VERSION)?;
        let updated = DateTime::from_timestamp_millis(updated).unwrap_or(DateTime::UNIX_EPOCH);
        // Milli-units back to units; well within f64's exact integer range.
        #[allow(clippy::cast_precision_loss)]
        let level = level as f64 / 1000.0;
        Ok(Some((Bucket { level, updated }, version)))
    }

    /// Writes `bucket` if the stored version is still `read_version` (0: no item yet).
    async fn write(&self, key: &str, bucket: Bucket, read_version: i64) -> Result<bool, Error> {
        // Units to milli-units (non-negative, at most the capacity × 1000).
        #[allow(clippy::cast_possible_truncation)]
        let level = (bucket.level * 1000.0).round() as i64;
        let window = TimeDelta::from_std(self.limit.window).unwrap_or(TimeDelta::days(1));
        let ttl = (bucket.updated + window + TimeDelta::days(1)).timestamp();
        let request = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item(PK, s(key))
            .item(LEVEL_MILLI, n(level.max(0)))
            .item(UPDATED_MS, n(bucket.updated.timestamp_millis()))
            .item(VERSION, n(read_version + 1))
            .item(EXPIRES_AT, n(ttl));
        let request = if read_version == 0 {
            request
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            request
                .condition_expression("#version = :read")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":read", AttributeValue::N(read_version.to_string()))
        };
        match request.send().on_heap().await {
            Ok(_) => Ok(true),
            Err(error) if is_conditional_failure(&error) => Ok(false),
            Err(error) => Err(dynamo_error(error)),
        }
    }
}

fn budget_key(tenant: &TenantId) -> String {
    format!("BUDGET#{tenant}")
}

impl RateBudget for DynamoRateBudget {
    async fn acquire(
        &self,
        tenant: &TenantId,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<BudgetDecision, Error> {
        check_cost(self.limit, cost)?;
        let key = budget_key(tenant);
        for _ in 0..MAX_ATTEMPTS {
            let (bucket, version) = self
                .read(&key)
                .await?
                .unwrap_or_else(|| (Bucket::full(self.limit, now), 0));
            let (next, decision) = bucket.take(self.limit, cost, now)?;
            let Some(next) = next else {
                return Ok(decision);
            };
            if self.write(&key, next, version).await? {
                return Ok(BudgetDecision::Granted);
            }
            // Another process took units between our read and write: read again.
        }
        let step = f64::from(cost) / self.limit.per_second();
        tracing::debug!(
            tenant.id = %tenant,
            "rate budget contended; asking the caller to wait one refill step"
        );
        Ok(BudgetDecision::Wait(std::time::Duration::from_secs_f64(
            step,
        )))
    }
}
