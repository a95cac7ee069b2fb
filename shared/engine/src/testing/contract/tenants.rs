//! Contract of [`TenantStore`]: versions and the one-tenant-per-domain claims (R-CONN-2).

use chrono::TimeDelta;

use super::{
    assert_conflict, assert_not_found, collect_pages, fresh_domain, fresh_tenant_id, listed_ids,
    now_ms,
};
use crate::error::{Conflict, Error};
use crate::model::{
    DomainKind, DomainName, M365TenantId, Tenant, TenantId, TenantStatus, VerifiedDomain,
};
use crate::ports::TenantStore;

/// The tenant `id` as `store` holds it; the read must succeed.
async fn stored(store: &impl TenantStore, id: &TenantId) -> Option<Tenant> {
    store.get(id).await.expect("get succeeds")
}

fn tenant() -> Tenant {
    Tenant::pending(fresh_tenant_id(), "Contoso")
}

/// A new pending tenant, created in `store`.
async fn created(store: &impl TenantStore) -> Tenant {
    store.create(&tenant()).await.expect("create succeeds")
}

/// The tenant `domain` routes to.
async fn owner_of(store: &impl TenantStore, domain: &DomainName) -> Option<TenantId> {
    store
        .tenant_for_domain(domain)
        .await
        .expect("lookup succeeds")
}

/// Claims `domains` for `tenant`; the claim must succeed.
async fn claim(store: &impl TenantStore, tenant: &TenantId, domains: &[DomainName]) {
    store
        .claim_domains(tenant, domains)
        .await
        .expect("claim succeeds");
}

/// Releases `domains` of `tenant`; the release must succeed (also when it is a no-op).
async fn release(store: &impl TenantStore, tenant: &TenantId, domains: &[DomainName]) {
    store
        .release_domains(tenant, domains)
        .await
        .expect("release succeeds");
}

/// Two new tenants and a new domain claimed by the first: `(holder, other, domain)`.
async fn a_domain_held_by_one_of_two(store: &impl TenantStore) -> (Tenant, Tenant, DomainName) {
    let (holder, other, domain) = (created(store).await, created(store).await, fresh_domain());
    claim(store, &holder.id, std::slice::from_ref(&domain)).await;
    (holder, other, domain)
}

/// R-CONN-1: a created tenant is stored with version 1 and read back with every field.
pub async fn a_created_tenant_round_trips(store: &impl TenantStore) {
    let mut t = tenant();
    t.status = TenantStatus::Active;
    t.m365_tenant_id =
        Some(M365TenantId::parse(uuid::Uuid::new_v4().to_string()).expect("valid guid"));
    t.domains = vec![
        VerifiedDomain {
            name: fresh_domain(),
            kind: DomainKind::Managed,
        },
        VerifiedDomain {
            name: fresh_domain(),
            kind: DomainKind::Federated,
        },
    ];
    t.token_expires_at = Some(now_ms() + TimeDelta::hours(1));
    // R-CONN-7, R-CONN-8
    t.expected_domain = Some(fresh_domain());
    t.consent_epoch = 2;
    let created = store.create(&t).await.expect("create succeeds");
    assert_eq!(
        created,
        Tenant {
            version: 1,
            ..t.clone()
        }
    );
    assert_eq!(stored(store, &t.id).await, Some(created));
    assert_eq!(stored(store, &fresh_tenant_id()).await, None);
}

/// R-SAFE-1: creating a tenant whose id exists is refused.
pub async fn creating_a_tenant_twice_is_refused(store: &impl TenantStore) {
    let t = tenant();
    store.create(&t).await.expect("create succeeds");
    assert_conflict(&store.create(&t).await, "already_exists");
}

/// R-CONN-4: a tenant update with the current version succeeds, a stale one is refused, a missing tenant is not found.
pub async fn a_stale_tenant_update_is_refused(store: &impl TenantStore) {
    let created = created(store).await;
    let active = Tenant {
        status: TenantStatus::Active,
        ..created.clone()
    };
    let updated = store.update(&active, 1).await.expect("update succeeds");
    assert_eq!(updated.version, 2);
    let paused = Tenant {
        status: TenantStatus::ReauthorizationRequired,
        ..created
    };
    assert_conflict(&store.update(&paused, 1).await, "stale_version");
    assert_eq!(stored(store, &updated.id).await, Some(updated));
    assert_not_found(&store.update(&tenant(), 1).await);
}

/// R-CONN-2: every claimed domain routes to its tenant; other domains route nowhere.
pub async fn claimed_domains_route_to_their_tenant(store: &impl TenantStore) {
    let t = created(store).await;
    let (a, b) = (fresh_domain(), fresh_domain());
    claim(store, &t.id, &[a.clone(), b.clone()]).await;
    assert_eq!(owner_of(store, &a).await, Some(t.id.clone()));
    assert_eq!(owner_of(store, &b).await, Some(t.id));
    assert_eq!(
        store
            .tenant_for_domain(&fresh_domain())
            .await
            .expect("lookup succeeds"),
        None
    );
}

/// R-CONN-2: a domain claimed by another tenant is refused, naming domain and owner, and nothing is claimed.
pub async fn a_domain_claimed_by_another_tenant_is_refused_and_nothing_is_claimed(
    store: &impl TenantStore,
) {
    let (first, second, contested) = a_domain_held_by_one_of_two(store).await;
    let free = fresh_domain();
    let result = store
        .claim_domains(&second.id, &[free.clone(), contested.clone()])
        .await;
    assert!(
        matches!(&result, Err(Error::Conflict(Conflict::DomainClaimed { domain, owner }))
            if *domain == contested && *owner == first.id),
        "expected domain_claimed naming the domain and its owner, got {result:?}"
    );
    assert_eq!(owner_of(store, &free).await, None, "all or nothing");
    assert_eq!(owner_of(store, &contested).await, Some(first.id));
}

/// R-CONN-2: a tenant with more than 100 domains (more than one DynamoDB transaction holds)
/// claims them all.
pub async fn a_tenant_with_150_domains_claims_them_all(store: &impl TenantStore) {
    let t = created(store).await;
    let domains: Vec<_> = (0..150).map(|_| fresh_domain()).collect();
    // A 150-domain claim succeeds.
    claim(store, &t.id, &domains).await;
    for d in [&domains[0], &domains[99], &domains[100], &domains[149]] {
        assert_eq!(owner_of(store, d).await, Some(t.id.clone()), "{d}");
    }
    // Re-claiming all 150 is idempotent.
    claim(store, &t.id, &domains).await;
}

/// R-CONN-2: a 150-domain claim that meets another tenant's domain in its second hundred
/// claims nothing — what the first hundred took is released — and the domains the tenant held
/// before stay held.
pub async fn a_large_claim_refused_late_claims_nothing_and_keeps_what_was_held(
    store: &impl TenantStore,
) {
    let me = created(store).await;
    let other = created(store).await;
    let domains: Vec<_> = (0..150).map(|_| fresh_domain()).collect();
    let held = [domains[0].clone(), domains[140].clone()];
    // Earlier claim succeeds.
    claim(store, &me.id, &held).await;
    // The other tenant's claim succeeds.
    claim(store, &other.id, std::slice::from_ref(&domains[130])).await;
    let result = store.claim_domains(&me.id, &domains).await;
    assert!(
        matches!(&result, Err(Error::Conflict(Conflict::DomainClaimed { domain, owner }))
            if *domain == domains[130] && *owner == other.id),
        "expected domain_claimed naming the late domain, got {result:?}"
    );
    for (i, d) in domains.iter().enumerate() {
        let owner = owner_of(store, d).await;
        let expected = match i {
            0 | 140 => Some(me.id.clone()),
            130 => Some(other.id.clone()),
            _ => None,
        };
        assert_eq!(owner, expected, "domain #{i} {d}");
    }
}

/// R-CONN-2: a tenant re-claiming its own domains (plus new ones) succeeds.
pub async fn reclaiming_its_own_domains_is_idempotent(store: &impl TenantStore) {
    let t = created(store).await;
    let (a, b) = (fresh_domain(), fresh_domain());
    claim(store, &t.id, std::slice::from_ref(&a)).await;
    // The same claim again succeeds.
    claim(store, &t.id, std::slice::from_ref(&a)).await;
    // A wider claim succeeds.
    claim(store, &t.id, &[a.clone(), b.clone()]).await;
    assert_eq!(owner_of(store, &a).await, Some(t.id.clone()));
    assert_eq!(owner_of(store, &b).await, Some(t.id));
}

/// R-CONN-5: released domains route nowhere and can be claimed by another tenant.
pub async fn released_domains_can_be_claimed_by_another_tenant(store: &impl TenantStore) {
    let (first, second, d) = a_domain_held_by_one_of_two(store).await;
    // Release succeeds.
    release(store, &first.id, std::slice::from_ref(&d)).await;
    assert_eq!(owner_of(store, &d).await, None);
    // Releasing again is harmless.
    release(store, &first.id, std::slice::from_ref(&d)).await;
    // The other tenant can claim it.
    claim(store, &second.id, std::slice::from_ref(&d)).await;
    assert_eq!(owner_of(store, &d).await, Some(second.id));
}

/// R-CONN-2: a tenant cannot release a domain another tenant holds.
pub async fn a_tenant_cannot_release_another_tenants_domain(store: &impl TenantStore) {
    let (owner, other, d) = a_domain_held_by_one_of_two(store).await;
    // Release is a no-op.
    release(store, &other.id, std::slice::from_ref(&d)).await;
    assert_eq!(owner_of(store, &d).await, Some(owner.id));
}

/// R-CONN-2: tenants are listed across pages, each once.
pub async fn tenants_are_listed_across_pages(store: &impl TenantStore) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(created(store).await.id);
    }
    ids.sort();
    let listed = listed_ids(
        collect_pages(2, |page| async move { store.list(&page).await }).await,
        |t| t.id,
        |id| ids.contains(id),
    );
    assert_eq!(listed, ids, "every tenant once");
}
