//! The engine's `Leases` and `PendingConsents` contracts against `DynamoLeases` and
//! `DynamoPendingConsents` on moto (both on a fresh ledger table per test).

mod common;

use m365_aws::schema::LEDGER;
use m365_aws::{DynamoLeases, DynamoPendingConsents};

mod leases {
    use super::*;

    m365_engine::contract_tests!(leases, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &LEDGER).await;
        DynamoLeases::new(client, table)
    });
}

mod pending_consents {
    use super::*;

    m365_engine::contract_tests!(pending_consents, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &LEDGER).await;
        DynamoPendingConsents::new(client, table)
    });
}
