//! Short-lived coordination records on the ledger table (it has the TTL and the plain string
//! `pk` they need; their key prefixes never collide with operation ids, which start with an
//! operation kind):
//!
//! - [`DynamoLeases`] (`pk` = `LEASE#<name>`): single-flight leases, e.g. one token refresh per
//!   tenant (R-CONN-4). Taking one is a put conditional on `attribute_not_exists(pk) OR
//!   holder = :me OR lease_until_ms <= :now`; releasing is a delete conditional on the holder.
//! - [`DynamoPendingConsents`] (`pk` = `OAUTH_STATE#<sha-256 of state>`): sign-ins under way
//!   (R-SAFE-3). A put is conditional on `attribute_not_exists(pk)`; `take` is one `DeleteItem`
//!   returning the old item, so a `state` is redeemed at most once even by concurrent callbacks.
//!   The PKCE verifier is kept for the sign-in's lifetime only (TTL) in the encrypted table; it
//!   is worthless without the code, which is never stored. The record also keeps the tenant's
//!   consent epoch when the sign-in started (`consent_epoch`, R-CONN-8; absent in older records:
//!   0) and the Microsoft tenant whose authority it went to (`authority`, R-CONN-7; absent:
//!   `organizations`).

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, TimeDelta, Utc};
use m365_engine::error::{Conflict, Entity, Error};
use m365_engine::model::{Actor, M365TenantId, TenantId};
use m365_engine::ports::{Leases, PendingConsent, PendingConsents};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::{Condition, CorruptItem, Item, Table, dynamo_error, n, number, pk_key, s, string};
use crate::schema::{EXPIRES_AT, PK};

const HOLDER: &str = "holder";
/// Lease end in epoch milliseconds.
const LEASE_UNTIL: &str = "lease_until_ms";
/// A lease record is removed by TTL this long after it ended (nothing reads it then).
const LEASE_TTL: TimeDelta = TimeDelta::days(1);

const STATE: &str = "state";
const TENANT_ID: &str = "tenant_id";
const VERIFIER: &str = "pkce_verifier";
/// Sign-in expiry in epoch milliseconds (`expires_at` is the TTL, in seconds, rounded up).
const EXPIRES_AT_MS: &str = "expires_at_ms";
const CONSENT_EPOCH: &str = "consent_epoch";
const AUTHORITY: &str = "authority";
/// Who started the sign-in (R-AUD-1).
const REQUESTED_BY: &str = "requested_by";

/// [`Leases`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoLeases {
    table: Table,
}

impl DynamoLeases {
    /// Leases on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

fn lease_key(name: &str) -> String {
    format!("LEASE#{name}")
}

impl Leases for DynamoLeases {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let item = Item::from([
            (PK.to_owned(), s(lease_key(name))),
            (HOLDER.to_owned(), s(holder)),
            (LEASE_UNTIL.to_owned(), n(until.timestamp_millis())),
            (EXPIRES_AT.to_owned(), n((until + LEASE_TTL).timestamp())),
        ]);
        let condition =
            Condition::new("attribute_not_exists(#pk) OR #holder = :me OR #until <= :now_ms")
                .name("#pk", PK)
                .name("#holder", HOLDER)
                .name("#until", LEASE_UNTIL)
                .value(":me", s(holder))
                .value(":now_ms", n(now.timestamp_millis()));
        self.table.put_if(item, &condition).await
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), Error> {
        // Absent, or another holder's: nothing of ours to release.
        let condition = Condition::new("#holder = :me")
            .name("#holder", HOLDER)
            .value(":me", s(holder));
        self.table
            .delete_if(pk_key(lease_key(name)), &condition)
            .await?;
        Ok(())
    }
}

/// [`PendingConsents`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoPendingConsents {
    table: Table,
}

impl DynamoPendingConsents {
    /// Sign-ins on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

/// The key of a state: its hash, so the key has a fixed size whatever the caller echoes back.
fn state_key(state: &str) -> String {
    format!(
        "OAUTH_STATE#{}",
        hex::encode(Sha256::digest(state.as_bytes()))
    )
}

impl PendingConsents for DynamoPendingConsents {
    async fn put(&self, pending: &PendingConsent) -> Result<(), Error> {
        // TTL is in whole seconds: round up so the record outlives its expiry.
        let ttl = pending.expires_at.timestamp() + 1;
        let mut item = Item::from([
            (PK.to_owned(), s(state_key(&pending.state))),
            (STATE.to_owned(), s(&pending.state)),
            (TENANT_ID.to_owned(), s(pending.tenant_id.as_str())),
            (
                VERIFIER.to_owned(),
                s(pending.pkce_verifier.expose_secret()),
            ),
            (
                EXPIRES_AT_MS.to_owned(),
                n(pending.expires_at.timestamp_millis()),
            ),
            (EXPIRES_AT.to_owned(), n(ttl)),
            (CONSENT_EPOCH.to_owned(), n(pending.consent_epoch)),
        ]);
        if let Some(authority) = &pending.authority {
            item.insert(AUTHORITY.to_owned(), s(authority.as_str()));
        }
        if let Some(actor) = &pending.requested_by {
            item.insert(REQUESTED_BY.to_owned(), s(actor.as_str()));
        }
        if self.table.put_if(item, &Condition::absent()).await? {
            return Ok(());
        }
        Err(Error::Conflict(Conflict::AlreadyExists {
            entity: Entity::Tenant,
            id: "oauth state".to_owned(),
        }))
    }

    async fn take(&self, state: &str, now: DateTime<Utc>) -> Result<Option<PendingConsent>, Error> {
        let output = self
            .table
            .client
            .delete_item()
            .table_name(&self.table.name)
            .key(PK, s(state_key(state)))
            .return_values(ReturnValue::AllOld)
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        let Some(item) = output.attributes else {
            return Ok(None);
        };
        let expires_at = DateTime::from_timestamp_millis(number(&item, EXPIRES_AT_MS)?)
            .ok_or(CorruptItem::Attribute(EXPIRES_AT_MS))?;
        // TTL deletes lazily: an expired record counts as absent.
        if expires_at <= now {
            return Ok(None);
        }
        let tenant_id = TenantId::parse(string(&item, TENANT_ID)?)
            .map_err(|_| CorruptItem::Attribute(TENANT_ID))?;
        let consent_epoch = if item.contains_key(CONSENT_EPOCH) {
            u64::try_from(number(&item, CONSENT_EPOCH)?)
                .map_err(|_| CorruptItem::Attribute(CONSENT_EPOCH))?
        } else {
            0
        };
        let authority = if item.contains_key(AUTHORITY) {
            Some(
                M365TenantId::parse(string(&item, AUTHORITY)?)
                    .map_err(|_| CorruptItem::Attribute(AUTHORITY))?,
            )
        } else {
            None
        };
        let requested_by = if item.contains_key(REQUESTED_BY) {
            Some(
                Actor::principal(string(&item, REQUESTED_BY)?)
                    .ok_or(CorruptItem::Attribute(REQUESTED_BY))?,
            )
        } else {
            None
        };
        Ok(Some(PendingConsent {
            state: string(&item, STATE)?.to_owned(),
            tenant_id,
            pkce_verifier: SecretString::from(string(&item, VERIFIER)?.to_owned()),
            expires_at,
            consent_epoch,
            authority,
            requested_by,
        }))
    }
}
