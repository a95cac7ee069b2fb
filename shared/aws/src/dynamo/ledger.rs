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
    Condition, CorruptItem, DOC, Item, Table, doc, dynamo_error, from_doc, n, number, pk_key, s,
    string,
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
    table: Table,
}

impl DynamoLedger {
    /// A ledger on `table` (a table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
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
            let entry = Item::from([
                (PK.to_owned(), s(id.as_str())),
                (STATUS.to_owned(), s(IN_PROGRESS)),
                (LEASE_UNTIL.to_owned(), n(lease_until.timestamp_millis())),
                (
                    EXPIRES_AT.to_owned(),
                    n((lease_until + ABANDONED_CLAIM_TTL).timestamp()),
                ),
            ]);
            // TTL deletes lazily: an entry past `expires_at` counts as absent.
            let condition = Condition::new(
                "attribute_not_exists(#pk) OR #expires <= :now_s \
                 OR (#status = :in_progress AND #lease <= :now_ms)",
            )
            .name("#pk", PK)
            .name("#expires", EXPIRES_AT)
            .name("#status", STATUS)
            .name("#lease", LEASE_UNTIL)
            .value(":now_s", n(now.timestamp()))
            .value(":now_ms", n(now.timestamp_millis()))
            .value(":in_progress", s(IN_PROGRESS));
            if self.table.put_if(entry, &condition).await? {
                return Ok(Claim::Claimed);
            }
            let item = self.table.get(pk_key(id.as_str())).await?;
            // Gone meanwhile (TTL or a release): try the claim again.
            let Some(item) = item else { continue };
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
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
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
        // Absent or done: nothing to release.
        let condition = Condition::new("#status = :in_progress")
            .name("#status", STATUS)
            .value(":in_progress", s(IN_PROGRESS));
        self.table
            .delete_if(pk_key(id.as_str()), &condition)
            .await?;
        Ok(())
    }
}
