//! The engine's `TenantStore` and `BindingStore` contracts against `DynamoTenants` /
//! `DynamoBindings` on moto, each test on its own fresh table.

mod common;

use m365_aws::schema::{BINDINGS, TENANTS};
use m365_aws::{DynamoBindings, DynamoTenants};
use m365_engine::testing::contract;

macro_rules! tenants_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &TENANTS).await;
            contract::tenants::$name(&DynamoTenants::new(client, table)).await;
        }
    )*};
}

macro_rules! bindings_contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(config) = common::aws().await else { return };
            let (client, table) = common::table(&config, &BINDINGS).await;
            contract::bindings::$name(&DynamoBindings::new(client, table)).await;
        }
    )*};
}

tenants_contract!(
    a_created_tenant_round_trips,
    creating_a_tenant_twice_is_refused,
    a_stale_tenant_update_is_refused,
    claimed_domains_route_to_their_tenant,
    a_domain_claimed_by_another_tenant_is_refused_and_nothing_is_claimed,
    reclaiming_its_own_domains_is_idempotent,
    released_domains_can_be_claimed_by_another_tenant,
    a_tenant_cannot_release_another_tenants_domain,
    a_tenant_with_150_domains_claims_them_all,
    a_large_claim_refused_late_claims_nothing_and_keeps_what_was_held,
    tenants_are_listed_across_pages,
);

bindings_contract!(
    a_binding_is_created_only_if_absent,
    a_stale_binding_update_is_refused,
    updating_a_missing_binding_is_refused,
    a_binding_round_trips_with_its_last_error,
    a_suspended_binding_round_trips_with_its_reason,
    bindings_are_listed_by_tenant_with_an_optional_state_filter,
    a_state_change_moves_a_binding_between_state_listings,
);
