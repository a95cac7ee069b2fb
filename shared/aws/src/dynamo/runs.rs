//! [`DynamoReconcileRuns`]: reconcile runs requested through the API (R-OPS-2) on the ledger
//! table, one item per run: `pk` = `RUN#<tenant id>#<run id>` (the tenant in the key: a run is
//! only ever read under its own tenant), the run as `doc` (the engine's model as JSON), its
//! `version` for conditional updates, and a 7-day TTL (`expires_at`, from the request) — a run's
//! record is for following a run, not an archive (the events are).

use aws_sdk_dynamodb::Client;
use chrono::TimeDelta;
use m365_engine::error::{Conflict, Entity, Error};
use m365_engine::model::{ReconcileRun, RunId, TenantId};
use m365_engine::ports::ReconcileRuns;

use super::{Condition, DOC, Item, Table, VERSION, doc, from_doc, n, pk_key, s};
use crate::schema::{EXPIRES_AT, PK};

/// How long a run's record is kept after it was requested.
pub const RUN_TTL: TimeDelta = TimeDelta::days(7);

/// [`ReconcileRuns`] on the ledger table.
#[derive(Debug, Clone)]
pub struct DynamoReconcileRuns {
    table: Table,
}

impl DynamoReconcileRuns {
    /// Runs on `table` (the table created from [`crate::schema::LEDGER`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

fn key(tenant: &TenantId, run: &RunId) -> String {
    format!("RUN#{tenant}#{run}")
}

fn item(run: &ReconcileRun) -> Result<Item, Error> {
    Ok(Item::from([
        (PK.to_owned(), s(key(&run.tenant_id, &run.run_id))),
        (DOC.to_owned(), doc(run)?),
        (VERSION.to_owned(), n(run.version)),
        (
            EXPIRES_AT.to_owned(),
            n((run.requested_at + RUN_TTL).timestamp()),
        ),
    ]))
}

impl ReconcileRuns for DynamoReconcileRuns {
    async fn create(&self, run: &ReconcileRun) -> Result<(), Error> {
        if self.table.put_if(item(run)?, &Condition::absent()).await? {
            Ok(())
        } else {
            Err(Error::Conflict(Conflict::AlreadyExists {
                entity: Entity::Operation,
                id: run.run_id.to_string(),
            }))
        }
    }

    async fn get(&self, tenant: &TenantId, run: &RunId) -> Result<Option<ReconcileRun>, Error> {
        self.table
            .get(pk_key(key(tenant, run)))
            .await?
            .map(|item| from_doc(&item))
            .transpose()
    }

    async fn update(&self, run: &ReconcileRun, expected: u64) -> Result<bool, Error> {
        self.table
            .put_if(item(run)?, &Condition::version(expected))
            .await
    }
}
