//! The engine's `Leases` and `PendingConsents` contracts against `DynamoLeases` and
//! `DynamoPendingConsents` on moto (both on a fresh ledger table per test).

mod common;

use m365_aws::schema::LEDGER;
use m365_aws::{DynamoLeases, DynamoPendingConsents};
use m365_engine::testing::contract;

macro_rules! leases_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &LEDGER).await;
            contract::leases::$name(&DynamoLeases::new(client, table)).await;
        }
    )*};
}

macro_rules! pending_consents_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &LEDGER).await;
            contract::pending_consents::$name(&DynamoPendingConsents::new(client, table)).await;
        }
    )*};
}

leases_contract!(
    a_free_lease_is_taken_and_a_live_one_is_refused,
    an_expired_lease_is_taken_over,
    only_the_holder_releases_a_lease,
);

pending_consents_contract!(
    a_sign_in_is_taken_once_with_every_field,
    an_expired_sign_in_is_not_returned,
    an_unknown_state_is_not_found,
    storing_a_state_twice_is_refused,
);
