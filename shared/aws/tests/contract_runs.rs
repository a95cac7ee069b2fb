//! The engine's `ReconcileRuns` contract (R-OPS-2) against `DynamoReconcileRuns` on moto (a fresh
//! ledger table per test).

mod common;

use m365_aws::DynamoReconcileRuns;
use m365_aws::schema::LEDGER;

common::contracts_on_tables!(
    runs: LEDGER => DynamoReconcileRuns::new,
);
