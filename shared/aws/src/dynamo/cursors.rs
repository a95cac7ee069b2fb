//! [`DynamoReconcileCursors`]: the per-tenant reconcile cursor (DESIGN §2 "Data": the Graph delta
//! link to start the next run from, R-REC-1), one item per tenant on the ledger table
//! (`pk` = `CURSOR#<tenant id>` for the users delta, `CURSOR#<tenant id>#groups` for the
//! groups delta; attribute `link`; the prefix never collides with operation ids or
//! the other coordination records). No TTL: a delta link older than 7 days is refused by Graph
//! with 410 and the run restarts with a full listing (graph-spec §5).
//!
//! A full listing of the users delta that spans passes (R-REC-4) keeps its state on the users
//! cursor item itself (`full_started_ms`, `full_parts`), written in the same `PutItem` as the
//! link so the two never disagree; a plain `put` replaces the item and so ends the listing. The
//! bound accounts the listing returned are saved in parts, one item each
//! (`pk` = `SEEN#<tenant id>#<listing start, epoch ms>#<part>`, attribute `ids`: the object ids as
//! 16-byte GUIDs packed into one binary value, at most `SEEN_PART_MAX` = 10,000 ids = 160 KB,
//! far below the 400 KB item limit), with a 30-day TTL (`expires_at`) instead of deletes.
//!
//! Cost, for a 50,000-user tenant whose listing takes ten passes: ten part writes of 5,000 ids
//! (80 KB, 80 WCU each: 800 WCU in all) and, at the end, ten strongly consistent reads (200 RCU)
//! — once per full listing (the first run, or after a 410), not per pass of ordinary rounds.
//! Marking each binding with the listing's id instead would cost 50,000 writes and bump every
//! binding's version under concurrent binds.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, TimeDelta, Utc};
use m365_engine::error::{Error, FieldProblem, InvalidInput};
use m365_engine::model::{M365ObjectId, TenantId};
use m365_engine::ports::{DeltaStream, FullListing, ReconcileCursors, SEEN_PART_MAX};

use super::{CorruptItem, Table, dynamo_error, n, number, pk_key, s};
use crate::schema::{EXPIRES_AT, PK};

const LINK: &str = "link";
const SAVED_AT: &str = "saved_at";
const FULL_STARTED_MS: &str = "full_started_ms";
const FULL_PARTS: &str = "full_parts";
const IDS: &str = "ids";

/// How long saved parts of a full listing are kept (far longer than any listing runs).
const SEEN_TTL: TimeDelta = TimeDelta::days(30);

/// [`ReconcileCursors`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoReconcileCursors {
    table: Table,
}

impl DynamoReconcileCursors {
    /// Cursors on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

fn key(tenant: &TenantId, stream: DeltaStream) -> String {
    match stream {
        DeltaStream::Users => format!("CURSOR#{tenant}"),
        other => format!("CURSOR#{tenant}#{}", other.as_str()),
    }
}

fn seen_key(tenant: &TenantId, listing: &FullListing, part: u32) -> String {
    format!(
        "SEEN#{tenant}#{}#{part}",
        listing.started_at.timestamp_millis()
    )
}

/// Object ids (GUIDs) packed as 16 bytes each.
fn pack(ids: &[M365ObjectId]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(ids.len() * 16);
    for id in ids {
        let bytes = hex::decode(id.as_str().replace('-', ""))
            .ok()
            .filter(|b| b.len() == 16)
            .ok_or(CorruptItem::Attribute(IDS))?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

fn unpack(bytes: &[u8]) -> Result<Vec<M365ObjectId>, Error> {
    if !bytes.len().is_multiple_of(16) {
        return Err(CorruptItem::Attribute(IDS).into());
    }
    bytes
        .chunks(16)
        .map(|chunk| {
            let h = hex::encode(chunk);
            let guid = format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            );
            M365ObjectId::parse(guid).map_err(|_| Error::from(CorruptItem::Attribute(IDS)))
        })
        .collect()
}

impl ReconcileCursors for DynamoReconcileCursors {
    async fn get(&self, tenant: &TenantId, stream: DeltaStream) -> Result<Option<String>, Error> {
        let item = self.table.get(pk_key(key(tenant, stream))).await?;
        Ok(item.and_then(|item| item.get(LINK).and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn put(&self, tenant: &TenantId, stream: DeltaStream, link: &str) -> Result<(), Error> {
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item(PK, s(key(tenant, stream)))
            .item(LINK, s(link))
            .item(SAVED_AT, n(Utc::now().timestamp()))
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    async fn full_listing(&self, tenant: &TenantId) -> Result<Option<FullListing>, Error> {
        let item = self
            .table
            .get(pk_key(key(tenant, DeltaStream::Users)))
            .await?;
        let Some(item) = item else {
            return Ok(None);
        };
        if !item.contains_key(FULL_STARTED_MS) {
            return Ok(None);
        }
        let started_at = DateTime::from_timestamp_millis(number(&item, FULL_STARTED_MS)?)
            .ok_or(CorruptItem::Attribute(FULL_STARTED_MS))?;
        let parts = u32::try_from(number(&item, FULL_PARTS)?)
            .map_err(|_| CorruptItem::Attribute(FULL_PARTS))?;
        Ok(Some(FullListing { started_at, parts }))
    }

    async fn put_in_full_listing(
        &self,
        tenant: &TenantId,
        link: &str,
        listing: &FullListing,
    ) -> Result<(), Error> {
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item(PK, s(key(tenant, DeltaStream::Users)))
            .item(LINK, s(link))
            .item(SAVED_AT, n(Utc::now().timestamp()))
            .item(FULL_STARTED_MS, n(listing.started_at.timestamp_millis()))
            .item(FULL_PARTS, n(listing.parts))
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    async fn put_seen(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
        part: u32,
        ids: &[M365ObjectId],
    ) -> Result<(), Error> {
        if ids.len() > SEEN_PART_MAX {
            return Err(InvalidInput::Field {
                field: "ids",
                problem: FieldProblem::TooLong { max: SEEN_PART_MAX },
            }
            .into());
        }
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item(PK, s(seen_key(tenant, listing, part)))
            .item(IDS, AttributeValue::B(Blob::new(pack(ids)?)))
            .item(EXPIRES_AT, n((Utc::now() + SEEN_TTL).timestamp()))
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    async fn seen(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
    ) -> Result<Option<Vec<M365ObjectId>>, Error> {
        let mut all = Vec::new();
        for part in 0..listing.parts {
            let item = self
                .table
                .get(pk_key(seen_key(tenant, listing, part)))
                .await?;
            let Some(item) = item else {
                return Ok(None);
            };
            match item.get(IDS) {
                Some(AttributeValue::B(blob)) => all.extend(unpack(blob.as_ref())?),
                _ => return Err(CorruptItem::Attribute(IDS).into()),
            }
        }
        Ok(Some(all))
    }
}
