//! Audit events (queried newest first by user, tenant or type through sparse indexes) and
//! failure diagnostics (newest first per tenant). Both expire 90 days after they happen
//! (R-AUD-1) through the table's TTL attribute.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, TimeDelta, Utc};
use m365_engine::error::Error;
use m365_engine::model::{Event, Failure, Page, PageRequest, TenantId};
use m365_engine::ports::{EventFilter, EventQuery, EventStore, FailureStore};

use super::{Condition, DOC, Item, Table, doc, dynamo_error, n, query_page, s};
use crate::schema::{EVENTS_BY_KIND, EVENTS_BY_TENANT, EVENTS_BY_USER, EXPIRES_AT, PK, SK};

/// How long events and failures are kept.
pub const RETENTION: TimeDelta = TimeDelta::days(90);

const AT_ID: &str = "at_id";

/// A sortable instant: fixed-width RFC 3339 UTC with nanoseconds, so string order is time order.
fn sortable(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// `<instant>#<id>`: newest first when read backwards, greater id first among equal instants.
fn at_id(at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", sortable(at))
}

fn expires_at(at: DateTime<Utc>) -> i64 {
    (at + RETENTION).timestamp()
}

/// [`EventStore`] on the events table.
#[derive(Debug, Clone)]
pub struct DynamoEvents {
    table: Table,
}

impl DynamoEvents {
    /// A store on `table` (a table created from [`crate::schema::EVENTS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

impl EventStore for DynamoEvents {
    async fn append(&self, event: &Event) -> Result<(), Error> {
        let mut item = Item::from([
            (PK.to_owned(), s(event.id.as_str())),
            (
                EVENTS_BY_KIND.partition_key.to_owned(),
                s(event.kind.as_str()),
            ),
            (AT_ID.to_owned(), s(at_id(event.at, event.id.as_str()))),
            (EXPIRES_AT.to_owned(), n(expires_at(event.at))),
            (DOC.to_owned(), doc(event)?),
        ]);
        // Sparse indexes: an event without a user (or tenant) is not listed under one.
        if let Some(user) = &event.user_id {
            item.insert(EVENTS_BY_USER.partition_key.to_owned(), s(user.as_str()));
        }
        if let Some(tenant) = &event.tenant_id {
            item.insert(
                EVENTS_BY_TENANT.partition_key.to_owned(),
                s(tenant.as_str()),
            );
        }
        // The same event appended twice (a redelivered message) is kept once.
        self.table.put_if(item, &Condition::absent()).await?;
        Ok(())
    }

    async fn query(&self, query: &EventQuery) -> Result<Page<Event>, Error> {
        let (index, value) = match &query.filter {
            EventFilter::User(user) => (EVENTS_BY_USER, user.to_string()),
            EventFilter::Tenant(tenant) => (EVENTS_BY_TENANT, tenant.to_string()),
            EventFilter::Kind(kind) => (EVENTS_BY_KIND, kind.as_str().to_owned()),
        };
        let listing = format!("events/{}/{value}", index.name);
        let mut request = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .index_name(index.name)
            .scan_index_forward(false)
            .expression_attribute_names("#k", index.partition_key)
            .expression_attribute_values(":v", s(value));
        request = match query.since {
            Some(since) => request
                .key_condition_expression("#k = :v AND #at >= :since")
                .expression_attribute_names("#at", AT_ID)
                .expression_attribute_values(":since", s(sortable(since))),
            None => request.key_condition_expression("#k = :v"),
        };
        query_page(
            request,
            &query.page,
            &listing,
            &[PK, index.partition_key, AT_ID],
        )
        .await
    }
}

/// [`FailureStore`] on the failures table.
#[derive(Debug, Clone)]
pub struct DynamoFailures {
    table: Table,
}

impl DynamoFailures {
    /// A store on `table` (a table created from [`crate::schema::FAILURES`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

impl FailureStore for DynamoFailures {
    async fn record(&self, failure: &Failure) -> Result<(), Error> {
        // Same failure recorded twice → same key → one item.
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .item(PK, s(failure.tenant_id.as_str()))
            .item(SK, s(at_id(failure.at, failure.id.as_str())))
            .item(EXPIRES_AT, n(expires_at(failure.at)))
            .item(DOC, doc(failure)?)
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    async fn list_by_tenant(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<Failure>, Error> {
        let query = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .scan_index_forward(false)
            .consistent_read(true)
            .key_condition_expression("#pk = :tenant")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":tenant", s(tenant.as_str()));
        query_page(query, page, &format!("failures/{tenant}"), &[PK, SK]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_instants_order_as_time_does() {
        // R-AUD-1: newest first is string order reversed.
        let earlier = DateTime::parse_from_rfc3339("2026-01-01T00:00:09.999999999Z")
            .map(|t| t.to_utc())
            .ok();
        let later = DateTime::parse_from_rfc3339("2026-01-01T00:00:10Z")
            .map(|t| t.to_utc())
            .ok();
        let (Some(earlier), Some(later)) = (earlier, later) else {
            panic!("valid instants");
        };
        assert!(sortable(earlier) < sortable(later));
        assert_eq!(sortable(later), "2026-01-01T00:00:10.000000000Z");
        assert!(at_id(later, "a") < at_id(later, "b"));
        assert!(at_id(earlier, "z") < at_id(later, "a"));
    }

    #[test]
    fn events_expire_ninety_days_after_they_happen() {
        // R-AUD-1
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        assert_eq!(expires_at(at), 1_700_000_000 + 90 * 24 * 3600);
    }
}
