//! `GraphDirectory`'s security-group operations (R-GRP-1) pass the engine's contract on the
//! m365-emulator: the same assertions the fake passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_engine::model::DomainName;
use m365_engine::testing::contract::directory::DirectoryTenant;
use m365_engine::testing::contract::security_groups as contract;
use support::{MANAGED, start};

#[tokio::test]
async fn graph_directory_passes_the_security_group_contract_on_the_emulator() {
    // R-GRP-1
    let emu = start().await;
    let dir = emu.directory();
    let t = DirectoryTenant {
        tenant: emu.tenant(),
        managed: DomainName::parse(MANAGED).unwrap(),
        federated: None,
    };
    contract::a_security_group_is_created_and_found_by_its_nickname(&dir, &t).await;
    contract::members_are_added_listed_and_removed_idempotently(&dir, &t).await;
}
