//! The engine's `EventStore`, `FailureStore` and `OperationLedger` contracts against
//! `DynamoEvents`, `DynamoFailures` and `DynamoLedger` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{EVENTS, FAILURES, LEDGER};
use m365_aws::{DynamoEvents, DynamoFailures, DynamoLedger};
use m365_engine::testing::contract;

macro_rules! events_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &EVENTS).await;
            contract::events::$name(&DynamoEvents::new(client, table)).await;
        }
    )*};
}

macro_rules! failures_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &FAILURES).await;
            contract::failures::$name(&DynamoFailures::new(client, table)).await;
        }
    )*};
}

macro_rules! ledger_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &LEDGER).await;
            contract::ledger::$name(&DynamoLedger::new(client, table)).await;
        }
    )*};
}

events_contract!(
    events_of_a_user_are_listed_newest_first,
    events_of_a_tenant_are_listed_newest_first,
    events_of_a_type_are_listed_newest_first,
    since_keeps_only_events_at_or_after_it,
    events_page_through_a_cursor_without_gaps_or_repeats,
    appending_the_same_event_twice_keeps_one,
    a_garbage_event_cursor_is_refused,
);

failures_contract!(failures_of_a_tenant_are_listed_newest_first);

ledger_contract!(
    a_second_claim_of_an_operation_is_in_progress,
    a_completed_operation_is_already_done_with_its_outcome,
    an_expired_lease_is_taken_over,
    a_released_claim_can_be_claimed_again,
    releasing_a_done_operation_keeps_it_done,
    a_done_operation_past_its_expiry_can_be_claimed_again,
);
