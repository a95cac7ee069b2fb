//! The engine's `Leases` and `PendingConsents` contracts against `DynamoLeases` and
//! `DynamoPendingConsents` on moto (both on a fresh ledger table per test).

mod common;

use m365_aws::schema::LEDGER;
use m365_aws::{DynamoLeases, DynamoPendingConsents};

mod leases {
    m365_engine::contract_tests!(
        leases,
        crate::common::on_table!(super::LEDGER, super::DynamoLeases::new)
    );
}

mod pending_consents {
    m365_engine::contract_tests!(
        pending_consents,
        crate::common::on_table!(super::LEDGER, super::DynamoPendingConsents::new)
    );
}
