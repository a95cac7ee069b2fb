//! The idempotency ledger: one item per operation id. A claim is a conditional put that only
//! succeeds on an absent entry, an expired lease or an entry past its TTL; completion records
//! the outcome so a redelivered message is acknowledged without calling Graph again.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, TimeDelta, Utc};
use m365_engine::error::Error;
use m365_engine::model::{OperationId, OperationOutcome};
use m365_engine::ports::{Claim, OperationLedger};

use super::{
    CorruptItem, DOC, doc, dynamo_error, from_doc, is_conditional_failure, n, number, s, string,
};
use crate::schema::{EXPIRES_AT, PK};

const STATUS: &str = "status";
const IN_PROGRESS: &str = "in_progress";
const DONE: &str = "done";
/// Lease end in epoch milliseconds.
const LEASE_UNTIL: &str = "lease_until_ms";
/// An abandoned claim is removed by TTL this long after its lease ended.
const ABANDONED_CLAIM_TTL: TimeDelta = TimeDelta::days(7);
/// A claim races with TTL deletion or another worker at most this many times.
const CLAIM_ATTEMPTS: usize = 3;

/// [`OperationLedger`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoLedger {
    client: Client,
    table: String,
}

impl DynamoLedger {
    /// A ledger on `table` (a table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl OperationLedger for DynamoLedger {
    async fn claim(
        &self,
        id: &OperationId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim, Error> {
        for _ in 0..CLAIM_ATTEMPTS {
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(PK, s(id.as_str()))
                .item(STATUS, s(IN_PROGRESS))
                .item(LEASE_UNTIL, n(lease_until.timestamp_millis()))
                .item(
                    EXPIRES_AT,
                    n((lease_until + ABANDONED_CLAIM_TTL).timestamp()),
                )
                // TTL deletes lazily: an entry past `expires_at` counts as absent.
                .condition_expression(
                    "attribute_not_exists(#pk) OR #expires <= :now_s \
                     OR (#status = :in_progress AND #lease <= :now_ms)",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_names("#lease", LEASE_UNTIL)
                .expression_attribute_values(":now_s", n(now.timestamp()))
                .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
                .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                .send()
                .on_heap()
                .await;
            match result {
                Ok(_) => return Ok(Claim::Claimed),
                Err(error) if is_conditional_failure(&error) => {}
                Err(error) => return Err(dynamo_error(error)),
            }
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(PK, s(id.as_str()))
                .consistent_read(true)
                .send()
                .on_heap()
                .await
                .map_err(dynamo_error)?;
            // Gone meanwhile (TTL or a release): try the claim again.
            let Some(item) = output.item else { continue };
            match string(&item, STATUS)? {
                DONE => return Ok(Claim::AlreadyDone(from_doc::<OperationOutcome>(&item)?)),
                _ => {
                    let millis = number(&item, LEASE_UNTIL)?;
                    let lease_until = DateTime::from_timestamp_millis(millis)
                        .ok_or(CorruptItem::Attribute(LEASE_UNTIL))?;
                    if lease_until > now {
                        return Ok(Claim::InProgress { lease_until });
                    }
                    // The lease ended between our put and our read: try again.
                }
            }
        }
        Err(Error::Unavailable {
            component: "dynamodb",
            reason: m365_engine::error::UnavailableReason::Service,
            retry_after: None,
            graph_request_id: None,
            source: Some("the ledger entry kept changing while it was claimed".into()),
        })
    }

    async fn complete(
        &self,
        id: &OperationId,
        outcome: &OperationOutcome,
        expires_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(id.as_str()))
            .item(STATUS, s(DONE))
            .item(DOC, doc(outcome)?)
            .item(EXPIRES_AT, n(expires_at.timestamp()))
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    async fn release(&self, id: &OperationId) -> Result<(), Error> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(id.as_str()))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", STATUS)
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .on_heap()
            .await;
        match result {
            // Absent or done: nothing to release.
            Ok(_) => Ok(()),
            Err(error) if is_conditional_failure(&error) => Ok(()),
            Err(error) => Err(dynamo_error(error)),
        }
    }
}
