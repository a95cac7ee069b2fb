//! The engine's `EventStore`, `FailureStore` and `OperationLedger` contracts against
//! `DynamoEvents`, `DynamoFailures` and `DynamoLedger` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{EVENTS, FAILURES, LEDGER};
use m365_aws::{DynamoEvents, DynamoFailures, DynamoLedger};

common::contracts_on_tables!(
    events: EVENTS => DynamoEvents::new,
    failures: FAILURES => DynamoFailures::new,
    ledger: LEDGER => DynamoLedger::new,
);
