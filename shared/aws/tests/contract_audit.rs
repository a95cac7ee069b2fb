//! The engine's `EventStore`, `FailureStore` and `OperationLedger` contracts against
//! `DynamoEvents`, `DynamoFailures` and `DynamoLedger` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{EVENTS, FAILURES, LEDGER};
use m365_aws::{DynamoEvents, DynamoFailures, DynamoLedger};

mod events {
    m365_engine::contract_tests!(
        events,
        crate::common::on_table!(super::EVENTS, super::DynamoEvents::new)
    );
}

mod failures {
    m365_engine::contract_tests!(
        failures,
        crate::common::on_table!(super::FAILURES, super::DynamoFailures::new)
    );
}

mod ledger {
    m365_engine::contract_tests!(
        ledger,
        crate::common::on_table!(super::LEDGER, super::DynamoLedger::new)
    );
}
