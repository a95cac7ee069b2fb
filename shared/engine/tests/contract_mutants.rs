//! The contract suite can fail: each mutant below breaks one promise of a port (by wrapping a
//! faithful fake), and the contract that guards that promise must panic against it.

use std::future::Future;

use chrono::{DateTime, Utc};
use m365_engine::Result;
use m365_engine::model::{
    Binding, DirectoryUser, DomainName, Email, Event, OperationId, OperationOutcome, Page,
    PageRequest, RequestToken, Tenant, TenantId, TenantTokens, UserId,
};
use m365_engine::ports::{
    BindingStore, Claim, EventQuery, EventStore, Expect, OperationLedger, TenantStore, TokenVault,
    UserStore,
};
use m365_engine::testing::contract;
use m365_engine::testing::{
    FakeBindings, FakeEvents, FakeLedger, FakeTenants, FakeTokenVault, FakeUsers,
};

/// Runs a contract on its own task and says whether it panicked (i.e. the contract caught the mutant).
async fn fails<F>(contract: F) -> bool
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(contract).await.is_err_and(|e| e.is_panic())
}

/// Whether the contract `module::function` panics against a default `mutant` (i.e. catches it).
macro_rules! catches {
    ($module:ident::$function:ident, $mutant:ty) => {
        fails(async { contract::$module::$function(&<$mutant>::default()).await }).await
    };
}

/// Ignores the expected version on replace (last writer wins).
#[derive(Default)]
struct BlindReplaceUsers(FakeUsers);

impl UserStore for BlindReplaceUsers {
    async fn create(&self, user: &DirectoryUser) -> Result<DirectoryUser> {
        self.0.create(user).await
    }
    async fn replace(&self, user: &DirectoryUser, _expected: u64) -> Result<DirectoryUser> {
        let current = self.0.get(&user.id).await?.map_or(0, |u| u.version);
        self.0.replace(user, current).await
    }
    async fn get(&self, id: &UserId) -> Result<Option<DirectoryUser>> {
        self.0.get(id).await
    }
    async fn get_by_email(&self, email: &Email) -> Result<Option<DirectoryUser>> {
        self.0.get_by_email(email).await
    }
    async fn list(&self, page: &PageRequest) -> Result<Page<DirectoryUser>> {
        self.0.list(page).await
    }
    async fn reports_of(&self, manager: &UserId) -> Result<Vec<DirectoryUser>> {
        self.0.reports_of(manager).await
    }
}

#[tokio::test]
async fn the_user_contract_catches_a_store_that_ignores_versions() {
    // R-SAFE-1
    assert!(catches!(
        users::a_replace_bumps_the_version_and_a_stale_replace_is_refused,
        BlindReplaceUsers
    ));
    assert!(!catches!(
        users::a_created_user_can_be_read_by_id_and_by_email,
        BlindReplaceUsers
    ));
}

/// Claims domains one by one, so a conflict leaves the earlier ones claimed.
#[derive(Default)]
struct PiecemealTenants(FakeTenants);

impl TenantStore for PiecemealTenants {
    async fn create(&self, tenant: &Tenant) -> Result<Tenant> {
        self.0.create(tenant).await
    }
    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>> {
        self.0.get(id).await
    }
    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        self.0.list(page).await
    }
    async fn update(&self, tenant: &Tenant, expected: u64) -> Result<Tenant> {
        self.0.update(tenant, expected).await
    }
    async fn claim_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<()> {
        for domain in domains {
            self.0
                .claim_domains(tenant, std::slice::from_ref(domain))
                .await?;
        }
        Ok(())
    }
    async fn release_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<()> {
        self.0.release_domains(tenant, domains).await
    }
    async fn tenant_for_domain(&self, domain: &DomainName) -> Result<Option<TenantId>> {
        self.0.tenant_for_domain(domain).await
    }
}

#[tokio::test]
async fn the_tenant_contract_catches_a_claim_that_is_not_all_or_nothing() {
    // R-CONN-2
    assert!(catches!(
        tenants::a_domain_claimed_by_another_tenant_is_refused_and_nothing_is_claimed,
        PiecemealTenants
    ));
    assert!(!catches!(
        tenants::claimed_domains_route_to_their_tenant,
        PiecemealTenants
    ));
}

/// Overwrites bindings whatever the expectation.
#[derive(Default)]
struct OverwritingBindings(FakeBindings);

impl BindingStore for OverwritingBindings {
    async fn get(&self, user: &UserId) -> Result<Option<Binding>> {
        self.0.get(user).await
    }
    async fn put(&self, binding: &Binding, _expect: Expect) -> Result<Binding> {
        let expect = match self.0.get(&binding.user_id).await? {
            Some(current) => Expect::Version(current.version),
            None => Expect::Absent,
        };
        self.0.put(binding, expect).await
    }
    async fn list_by_tenant(
        &self,
        tenant: &TenantId,
        state: Option<m365_engine::model::BindingState>,
        page: &PageRequest,
    ) -> Result<Page<Binding>> {
        self.0.list_by_tenant(tenant, state, page).await
    }
}

#[tokio::test]
async fn the_binding_contract_catches_a_store_that_overwrites() {
    // R-BIND-1
    assert!(catches!(
        bindings::a_binding_is_created_only_if_absent,
        OverwritingBindings
    ));
    assert!(catches!(
        bindings::a_stale_binding_update_is_refused,
        OverwritingBindings
    ));
    assert!(!catches!(
        bindings::a_binding_round_trips_with_its_last_error,
        OverwritingBindings
    ));
}

/// Lists events oldest first.
#[derive(Default)]
struct OldestFirstEvents(FakeEvents);

impl EventStore for OldestFirstEvents {
    async fn append(&self, event: &Event) -> Result<()> {
        self.0.append(event).await
    }
    async fn query(&self, query: &EventQuery) -> Result<Page<Event>> {
        let mut page = self.0.query(query).await?;
        page.items.reverse();
        Ok(page)
    }
}

#[tokio::test]
async fn the_event_contract_catches_a_store_listing_oldest_first() {
    // R-AUD-1
    assert!(catches!(
        events::events_of_a_user_are_listed_newest_first,
        OldestFirstEvents
    ));
    assert!(catches!(
        events::events_of_a_tenant_are_listed_newest_first,
        OldestFirstEvents
    ));
}

/// Lets every claim through.
#[derive(Default)]
struct AlwaysClaimed(FakeLedger);

impl OperationLedger for AlwaysClaimed {
    async fn claim(
        &self,
        id: &OperationId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim> {
        self.0
            .claim(id, now, lease_until)
            .await
            .map(|_| Claim::Claimed)
    }
    async fn complete(
        &self,
        id: &OperationId,
        outcome: &OperationOutcome,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.0.complete(id, outcome, expires_at).await
    }
    async fn release(&self, id: &OperationId) -> Result<()> {
        self.0.release(id).await
    }
}

#[tokio::test]
async fn the_ledger_contract_catches_a_ledger_that_lets_duplicates_through() {
    // R-BIND-2
    assert!(catches!(
        ledger::a_second_claim_of_an_operation_is_in_progress,
        AlwaysClaimed
    ));
    assert!(catches!(
        ledger::a_completed_operation_is_already_done_with_its_outcome,
        AlwaysClaimed
    ));
}

/// Claims in transactions of 100 (as DynamoDB must) but forgets to release the earlier ones when a
/// later one is refused.
#[derive(Default)]
struct ChunkedWithoutRollback(FakeTenants);

impl TenantStore for ChunkedWithoutRollback {
    async fn create(&self, tenant: &Tenant) -> Result<Tenant> {
        self.0.create(tenant).await
    }
    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>> {
        self.0.get(id).await
    }
    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>> {
        self.0.list(page).await
    }
    async fn update(&self, tenant: &Tenant, expected: u64) -> Result<Tenant> {
        self.0.update(tenant, expected).await
    }
    async fn claim_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<()> {
        for chunk in domains.chunks(100) {
            self.0.claim_domains(tenant, chunk).await?;
        }
        Ok(())
    }
    async fn release_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<()> {
        self.0.release_domains(tenant, domains).await
    }
    async fn tenant_for_domain(&self, domain: &DomainName) -> Result<Option<TenantId>> {
        self.0.tenant_for_domain(domain).await
    }
}

#[tokio::test]
async fn the_tenant_contract_catches_a_large_claim_that_keeps_its_first_hundred() {
    // R-CONN-2 (more than 100 domains)
    assert!(catches!(
        tenants::a_large_claim_refused_late_claims_nothing_and_keeps_what_was_held,
        ChunkedWithoutRollback
    ));
    assert!(!catches!(
        tenants::a_tenant_with_150_domains_claims_them_all,
        ChunkedWithoutRollback
    ));
}

/// A vault whose update creates the secret when it is missing (what a refresh after a
/// deauthorization must never do).
#[derive(Default)]
struct ResurrectingVault(FakeTokenVault);

impl TokenVault for ResurrectingVault {
    async fn get(&self, tenant: &TenantId) -> Result<Option<TenantTokens>> {
        self.0.get(tenant).await
    }
    async fn get_previous(&self, tenant: &TenantId) -> Result<Option<TenantTokens>> {
        self.0.get_previous(tenant).await
    }
    async fn create(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<()> {
        self.0.create(tenant, tokens, request).await
    }
    async fn update(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> Result<()> {
        self.0.create(tenant, tokens, request).await
    }
    async fn delete(&self, tenant: &TenantId) -> Result<()> {
        self.0.delete(tenant).await
    }
}

#[tokio::test]
async fn the_vault_contract_catches_an_update_that_recreates_deleted_tokens() {
    // R-CONN-8
    assert!(catches!(
        token_vault::deleted_tokens_are_gone_and_can_be_stored_again,
        ResurrectingVault
    ));
    assert!(catches!(
        token_vault::an_update_of_a_tenant_without_tokens_fails_and_creates_nothing,
        ResurrectingVault
    ));
    assert!(!catches!(
        token_vault::a_second_put_keeps_the_first_as_previous,
        ResurrectingVault
    ));
}
