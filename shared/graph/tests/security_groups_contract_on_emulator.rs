//! `GraphDirectory`'s security-group operations (R-GRP-1) pass the engine's contract on the
//! m365-emulator: the same assertions the fake passes, through `m365_engine::contract_tests!`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_engine::model::DomainName;
use m365_engine::testing::contract::directory::DirectoryTenant;
use support::{MANAGED, start};

// R-GRP-1: one test per security-group contract function, each on its own emulator.
m365_engine::contract_tests!(security_groups, {
    let emu = start().await;
    let tenant = DirectoryTenant {
        tenant: emu.tenant(),
        managed: DomainName::parse(MANAGED).unwrap(),
        federated: None,
    };
    (emu.directory(), tenant, emu)
});
