//! [`DynamoHeldPlans`]: held reconcile plans and round tallies (R-REC-3) on the ledger table.
//!
//! - The held plan's header, one per tenant: `pk` = `HELD#<tenant id>`, attributes `plan_id`,
//!   `parts`, `held_at`. Holding is a put conditional on `attribute_not_exists(pk)` (one held
//!   plan per tenant: a second hold answers `false`); releasing is a delete conditional on
//!   `plan_id` (a second release, or a release of another plan, answers `false`).
//! - The plan's JSON, in parts of at most [`PART_BYTES`] (a plan of thousands of repairs is
//!   larger than DynamoDB's 400 KB item limit): `pk` = `HELDPART#<tenant id>#<plan id>#<n>`,
//!   attribute `body`. Parts are written before the header (a reader never finds a header
//!   without its parts) and deleted after it; the parts of a hold that lost the race to another
//!   are deleted at once. No TTL: a plan stays held until an admin decides, however long.
//! - The round tally: `pk` = `TALLY#<tenant id>`, attribute `tally` (JSON); deleted when the
//!   round ends.
//! - The last rejected plan's repairs that do not come from the delta: `pk` =
//!   `REJECTED#<tenant id>`, attribute `rejected` (JSON, a few dozen bytes per repair; replaced by
//!   the next reject).
//!
//! The prefixes never collide with operation ids or the other coordination records.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use m365_engine::error::Error;
use m365_engine::model::TenantId;
use m365_engine::ports::{HeldPlanStore, HeldRecord, RoundTally};

use super::{Condition, CorruptItem, Table, dynamo_error, n, number, pk_key, s, string};
use crate::schema::PK;

const PLAN_ID: &str = "plan_id";
const PARTS: &str = "parts";
const HELD_AT: &str = "held_at";
const BODY: &str = "body";
const TALLY: &str = "tally";
const REJECTED: &str = "rejected";

/// The most bytes of a plan's JSON in one part item (far below the 400 KB item limit).
pub const PART_BYTES: usize = 300_000;

/// [`HeldPlanStore`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoHeldPlans {
    table: Table,
}

impl DynamoHeldPlans {
    /// Held plans on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    async fn delete_parts(&self, tenant: &TenantId, plan_id: &str, parts: usize) {
        for part in 0..parts {
            let deleted = self
                .table
                .client
                .delete_item()
                .table_name(&self.table.name)
                .set_key(Some(pk_key(part_key(tenant, plan_id, part))))
                .send()
                .on_heap()
                .await;
            if let Err(e) = deleted {
                // An orphaned part costs storage only: nothing reads it without its header.
                tracing::warn!(
                    error.code = dynamo_error(e).code(),
                    "held plan part not deleted"
                );
            }
        }
    }
}

fn header_key(tenant: &TenantId) -> String {
    format!("HELD#{tenant}")
}

fn part_key(tenant: &TenantId, plan_id: &str, part: usize) -> String {
    format!("HELDPART#{tenant}#{plan_id}#{part}")
}

fn tally_key(tenant: &TenantId) -> String {
    format!("TALLY#{tenant}")
}

fn rejected_key(tenant: &TenantId) -> String {
    format!("REJECTED#{tenant}")
}

/// `body` cut into parts of at most [`PART_BYTES`], on character boundaries.
fn split(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = body;
    while rest.len() > PART_BYTES {
        let mut cut = PART_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

impl HeldPlanStore for DynamoHeldPlans {
    async fn get(&self, tenant: &TenantId) -> Result<Option<HeldRecord>, Error> {
        let Some(header) = self.table.get(pk_key(header_key(tenant))).await? else {
            return Ok(None);
        };
        let plan_id = string(&header, PLAN_ID)?.to_owned();
        let parts =
            usize::try_from(number(&header, PARTS)?).map_err(|_| CorruptItem::Attribute(PARTS))?;
        let mut body = String::new();
        for part in 0..parts {
            let item = self
                .table
                .get(pk_key(part_key(tenant, &plan_id, part)))
                .await?
                .ok_or(CorruptItem::Attribute(BODY))?;
            body.push_str(string(&item, BODY)?);
        }
        Ok(Some(HeldRecord { plan_id, body }))
    }

    async fn hold(&self, tenant: &TenantId, record: &HeldRecord) -> Result<bool, Error> {
        let parts = split(&record.body);
        for (part, text) in parts.iter().enumerate() {
            self.table
                .client
                .put_item()
                .table_name(&self.table.name)
                .item(PK, s(part_key(tenant, &record.plan_id, part)))
                .item(BODY, s(*text))
                .send()
                .on_heap()
                .await
                .map_err(dynamo_error)?;
        }
        let header = pk_key(header_key(tenant))
            .into_iter()
            .chain([
                (PLAN_ID.to_owned(), s(&record.plan_id)),
                (PARTS.to_owned(), n(parts.len())),
                (HELD_AT.to_owned(), n(Utc::now().timestamp())),
            ])
            .collect();
        let held = self.table.put_if(header, &Condition::absent()).await?;
        if !held {
            self.delete_parts(tenant, &record.plan_id, parts.len())
                .await;
        }
        Ok(held)
    }

    async fn release(&self, tenant: &TenantId, plan_id: &str) -> Result<bool, Error> {
        let header = self.table.get(pk_key(header_key(tenant))).await?;
        let parts = header
            .as_ref()
            .and_then(|h| number(h, PARTS).ok())
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(0);
        let condition = Condition::new("#plan = :plan")
            .name("#plan", PLAN_ID)
            .value(":plan", s(plan_id));
        let released = self
            .table
            .delete_if(pk_key(header_key(tenant)), &condition)
            .await?;
        if released {
            self.delete_parts(tenant, plan_id, parts).await;
        }
        Ok(released)
    }

    async fn tally(&self, tenant: &TenantId) -> Result<Option<RoundTally>, Error> {
        let Some(item) = self.table.get(pk_key(tally_key(tenant))).await? else {
            return Ok(None);
        };
        let text = string(&item, TALLY)?;
        serde_json::from_str(text)
            .map(Some)
            .map_err(|_| CorruptItem::Attribute(TALLY).into())
    }

    async fn put_tally(&self, tenant: &TenantId, tally: Option<&RoundTally>) -> Result<(), Error> {
        let text = tally
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| CorruptItem::Attribute(TALLY))?;
        self.put_text(tally_key(tenant), TALLY, text.as_deref())
            .await
    }

    async fn rejected(&self, tenant: &TenantId) -> Result<Option<String>, Error> {
        let Some(item) = self.table.get(pk_key(rejected_key(tenant))).await? else {
            return Ok(None);
        };
        Ok(Some(string(&item, REJECTED)?.to_owned()))
    }

    async fn put_rejected(&self, tenant: &TenantId, body: Option<&str>) -> Result<(), Error> {
        self.put_text(rejected_key(tenant), REJECTED, body).await
    }
}

impl DynamoHeldPlans {
    /// Writes item `key` holding `text` in attribute `attribute`, or deletes it for `None`.
    async fn put_text(
        &self,
        key: String,
        attribute: &str,
        text: Option<&str>,
    ) -> Result<(), Error> {
        match text {
            Some(text) => {
                self.table
                    .client
                    .put_item()
                    .table_name(&self.table.name)
                    .item(PK, s(key))
                    .item(attribute, s(text))
                    .send()
                    .on_heap()
                    .await
                    .map_err(dynamo_error)?;
            }
            None => {
                self.table
                    .client
                    .delete_item()
                    .table_name(&self.table.name)
                    .set_key(Some(pk_key(key)))
                    .send()
                    .on_heap()
                    .await
                    .map_err(dynamo_error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_plan_is_cut_into_parts_on_character_boundaries_and_joins_back() {
        // R-REC-3 (a plan larger than DynamoDB's item limit)
        let body = "é".repeat(PART_BYTES); // two bytes each
        let parts = split(&body);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= PART_BYTES));
        assert_eq!(parts.concat(), body);
        assert_eq!(split("{}"), vec!["{}"]);
    }
}
