//! The engine's `EventStore`, `FailureStore` and `OperationLedger` contracts against
//! `DynamoEvents`, `DynamoFailures` and `DynamoLedger` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{EVENTS, FAILURES, LEDGER};
use m365_aws::{DynamoEvents, DynamoFailures, DynamoLedger};

mod events {
    use super::*;

    m365_engine::contract_tests!(events, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &EVENTS).await;
        DynamoEvents::new(client, table)
    });
}

mod failures {
    use super::*;

    m365_engine::contract_tests!(failures, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &FAILURES).await;
        DynamoFailures::new(client, table)
    });
}

mod ledger {
    use super::*;

    m365_engine::contract_tests!(ledger, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, table) = common::table(&config, &LEDGER).await;
        DynamoLedger::new(client, table)
    });
}
