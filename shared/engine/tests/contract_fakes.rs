//! The contract suite run against the in-memory fakes: the fakes are what use-case tests trust, so
//! they must show exactly the behaviour the real adapters are held to. One
//! `m365_engine::contract_tests!` per port: every contract function of the port runs here.

use chrono::TimeDelta;
use m365_engine::model::{DomainKind, TenantId, VerifiedDomain};
use m365_engine::testing::contract::directory::DirectoryTenant;
use m365_engine::testing::contract::fresh_domain;
use m365_engine::testing::{
    FakeBindings, FakeDirectory, FakeEvents, FakeFailures, FakeGroups, FakeLedger, FakeRetryQueue,
    FakeSealer, FakeTenants, FakeTokenVault, FakeUsers, ManualClock,
};

/// One store shared by every test of a port: the contracts must hold on a store others write to.
fn shared<T: Default>(cell: &'static std::sync::OnceLock<T>) -> &'static T {
    cell.get_or_init(T::default)
}

/// One module per store port, its contracts run on one store shared by all its tests ([`shared`]).
macro_rules! on_shared_stores {
    ($($port:ident: $fake:ident),+ $(,)?) => {
        $(
            mod $port {
                static STORE: std::sync::OnceLock<super::$fake> = std::sync::OnceLock::new();
                m365_engine::contract_tests!($port, ref super::shared(&STORE));
            }
        )+
    };
}

on_shared_stores!(
    users: FakeUsers,
    groups: FakeGroups,
    tenants: FakeTenants,
    bindings: FakeBindings,
    events: FakeEvents,
    failures: FakeFailures,
    ledger: FakeLedger,
    token_vault: FakeTokenVault,
);

mod users_fresh {
    m365_engine::contract_tests!(users, super::FakeUsers::new());
}

mod retry_queue {
    m365_engine::contract_tests!(
        retry_queue,
        super::FakeRetryQueue::new(super::ManualClock::default())
    );
}

mod sealer {
    m365_engine::contract_tests!(sealer, super::FakeSealer::new());
}

fn directory() -> (FakeDirectory, DirectoryTenant) {
    let directory = FakeDirectory::new(ManualClock::default(), TimeDelta::hours(24));
    let fixture = DirectoryTenant {
        tenant: TenantId::generate(),
        managed: fresh_domain(),
        federated: Some(fresh_domain()),
    };
    let mut domains = vec![VerifiedDomain {
        name: fixture.managed.clone(),
        kind: DomainKind::Managed,
    }];
    if let Some(federated) = &fixture.federated {
        domains.push(VerifiedDomain {
            name: federated.clone(),
            kind: DomainKind::Federated,
        });
    }
    directory.add_tenant(&fixture.tenant, domains);
    (directory, fixture)
}

mod directory {
    m365_engine::contract_tests!(directory, super::directory());
}

mod privileged_accounts {
    use m365_engine::model::M365ObjectId;
    use m365_engine::testing::contract::directory as contract;

    #[tokio::test]
    async fn directory_roles_are_reported_per_user_and_per_tenant_alike() {
        // R-BIND-11
        let (directory, tenant) = super::directory();
        contract::directory_roles_are_reported_per_user_and_per_tenant_alike(
            &directory, &tenant, &directory,
        )
        .await;
    }

    #[tokio::test]
    async fn the_consenting_admin_is_reported() {
        // R-BIND-11
        let (directory, tenant) = super::directory();
        contract::the_consenting_admin_is_reported(&directory, &tenant.clone(), None).await;
        let admin = M365ObjectId::generate();
        directory.set_consenting_admin(&tenant.tenant, Some(&admin));
        contract::the_consenting_admin_is_reported(&directory, &tenant, Some(&admin)).await;
    }
}

mod rate_budget {
    use m365_engine::testing::FakeRateBudget;
    use m365_engine::testing::contract::rate_budget::CONTRACT_LIMIT;

    m365_engine::contract_tests!(rate_budget, FakeRateBudget::new(CONTRACT_LIMIT));
}

mod security_groups {
    m365_engine::contract_tests!(security_groups, super::directory());
}

// Leases and pending consents run their contracts in the fakes' own unit tests (`testing/leases.rs`,
// `testing/identity.rs`), so plain `cargo test -p m365-engine` runs them too.
