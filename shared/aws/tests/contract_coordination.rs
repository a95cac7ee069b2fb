//! The engine's `Leases` and `PendingConsents` contracts against `DynamoLeases` and
//! `DynamoPendingConsents` on moto (both on a fresh ledger table per test).

mod common;

use m365_aws::schema::LEDGER;
use m365_aws::{DynamoLeases, DynamoPendingConsents};

common::contracts_on_tables!(
    leases: LEDGER => DynamoLeases::new,
    pending_consents: LEDGER => DynamoPendingConsents::new,
);
