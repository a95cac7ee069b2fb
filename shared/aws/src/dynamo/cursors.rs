//! [`DynamoReconcileCursors`]: the per-tenant reconcile cursor (DESIGN §2 "Data": the Graph delta
//! link to start the next run from, R-REC-1), one item per tenant on the ledger table
//! (`pk` = `CURSOR#<tenant id>` for the users delta, `CURSOR#<tenant id>#groups` for the
//! groups delta; attribute `link`; the prefix never collides with operation ids or
//! the other coordination records). No TTL: a delta link older than 7 days is refused by Graph
//! with 410 and the run restarts with a full listing (graph-spec §5).

use aws_sdk_dynamodb::Client;
use chrono::Utc;
use m365_engine::error::Error;
use m365_engine::model::TenantId;
use m365_engine::ports::{DeltaStream, ReconcileCursors};

use super::{dynamo_error, n, s};
use crate::schema::PK;

const LINK: &str = "link";
const SAVED_AT: &str = "saved_at";

/// [`ReconcileCursors`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoReconcileCursors {
    client: Client,
    table: String,
}

impl DynamoReconcileCursors {
    /// Cursors on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn key(tenant: &TenantId, stream: DeltaStream) -> String {
    match stream {
        DeltaStream::Users => format!("CURSOR#{tenant}"),
        other => format!("CURSOR#{tenant}#{}", other.as_str()),
    }
}

impl ReconcileCursors for DynamoReconcileCursors {
    async fn get(&self, tenant: &TenantId, stream: DeltaStream) -> Result<Option<String>, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(key(tenant, stream)))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(out
            .item
            .and_then(|item| item.get(LINK).and_then(|v| v.as_s().ok()).cloned()))
    }

    async fn put(&self, tenant: &TenantId, stream: DeltaStream, link: &str) -> Result<(), Error> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(key(tenant, stream)))
            .item(LINK, s(link))
            .item(SAVED_AT, n(Utc::now().timestamp()))
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }
}
