//! In-memory fakes of the store ports (users, groups, tenants, bindings, events, failures, ledger).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

use super::hold::{HeldCall, Hold};
use super::lock;
use super::paging::page;
use crate::error::{Conflict, Entity, Error, Result};
use crate::model::{
    Binding, BindingState, DirectoryUser, DomainName, Email, Event, Failure, Group, GroupId,
    OperationId, OperationOutcome, Page, PageRequest, Tenant, TenantId, UserId,
};
use crate::ports::{
    BindingStore, Claim, EventFilter, EventQuery, EventStore, Expect, FailureStore, GroupStore,
    OperationLedger, TenantStore, UserStore,
};

/// Sort key of a timestamped record: fixed-width UTC time, then id (lexicographic = chronological).
fn time_key(at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", at.format("%Y-%m-%dT%H:%M:%S%.9fZ"))
}

/// Directory users in memory, unique by id and by email (an email index keeps writes and
/// lookups by email constant-time, so large directories stay cheap to build in benchmarks).
#[derive(Debug, Default)]
pub struct FakeUsers {
    users: Mutex<UserTable>,
}

#[derive(Debug, Default)]
struct UserTable {
    by_id: BTreeMap<UserId, DirectoryUser>,
    by_email: HashMap<Email, UserId>,
}

impl UserTable {
    fn email_taken(&self, email: &Email, except: &UserId) -> bool {
        self.by_email
            .get(email)
            .is_some_and(|owner| owner != except)
    }

    fn store(&mut self, user: DirectoryUser) {
        if let Some(old) = self.by_id.get(&user.id)
            && old.email != user.email
        {
            self.by_email.remove(&old.email);
        }
        self.by_email.insert(user.email.clone(), user.id.clone());
        self.by_id.insert(user.id.clone(), user);
    }
}

impl FakeUsers {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl UserStore for FakeUsers {
    async fn create(&self, user: &DirectoryUser) -> Result<DirectoryUser> {
        let mut users = lock(&self.users);
        if users.by_id.contains_key(&user.id) {
            return Err(Conflict::AlreadyExists {
                entity: Entity::User,
                id: user.id.to_string(),
            }
            .into());
        }
        if users.email_taken(&user.email, &user.id) {
            return Err(Conflict::EmailExists {
                email: user.email.clone(),
            }
            .into());
        }
        let stored = DirectoryUser {
            version: 1,
            ..user.clone()
        };
        users.store(stored.clone());
        Ok(stored)
    }

    async fn replace(&self, user: &DirectoryUser, expected_version: u64) -> Result<DirectoryUser> {
        let mut users = lock(&self.users);
        let current = users
            .by_id
            .get(&user.id)
            .ok_or_else(|| Error::not_found(Entity::User, &user.id))?;
        if current.version != expected_version {
            return Err(Error::stale(Entity::User, expected_version));
        }
        if users.email_taken(&user.email, &user.id) {
            return Err(Conflict::EmailExists {
                email: user.email.clone(),
            }
            .into());
        }
        let stored = DirectoryUser {
            version: expected_version + 1,
            ..user.clone()
        };
        users.store(stored.clone());
        Ok(stored)
    }

    async fn get(&self, id: &UserId) -> Result<Option<DirectoryUser>> {
        Ok(lock(&self.users).by_id.get(id).cloned())
    }

    async fn get_by_email(&self, email: &Email) -> Result<Option<DirectoryUser>> {
        let users = lock(&self.users);
        Ok(users
            .by_email
            .get(email)
            .and_then(|id| users.by_id.get(id))
            .cloned())
    }

    async fn list(&self, request: &PageRequest) -> Result<Page<DirectoryUser>> {
        let items = lock(&self.users)
            .by_id
            .values()
            .map(|u| (u.id.to_string(), u.clone()))
            .collect();
        page("users", items, request, false)
    }

    async fn reports_of(&self, manager: &UserId) -> Result<Vec<DirectoryUser>> {
        Ok(lock(&self.users)
            .by_id
            .values()
            .filter(|u| u.manager_id.as_ref() == Some(manager))
            .cloned()
            .collect())
    }
}

/// Directory groups in memory. It counts the group records it hands out ([`Self::groups_read`]),
/// so a test can prove a use case reads only the groups it needs.
#[derive(Debug, Default)]
pub struct FakeGroups {
    groups: Mutex<BTreeMap<GroupId, Group>>,
    read: AtomicUsize,
}

impl FakeGroups {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many group records `get`, `list` and `groups_of_member` have returned so far.
    #[must_use]
    pub fn groups_read(&self) -> usize {
        self.read.load(Ordering::SeqCst)
    }

    fn count_read(&self, n: usize) {
        self.read.fetch_add(n, Ordering::SeqCst);
    }
}

impl GroupStore for FakeGroups {
    async fn create(&self, group: &Group) -> Result<Group> {
        let mut groups = lock(&self.groups);
        if groups.contains_key(&group.id) {
            return Err(Conflict::AlreadyExists {
                entity: Entity::Group,
                id: group.id.to_string(),
            }
            .into());
        }
        let stored = Group {
            version: 1,
            ..group.clone()
        };
        groups.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn replace(&self, group: &Group, expected_version: u64) -> Result<Group> {
        let mut groups = lock(&self.groups);
        let current = groups
            .get(&group.id)
            .ok_or_else(|| Error::not_found(Entity::Group, &group.id))?;
        if current.version != expected_version {
            return Err(Error::stale(Entity::Group, expected_version));
        }
        let stored = Group {
            version: expected_version + 1,
            ..group.clone()
        };
        groups.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn get(&self, id: &GroupId) -> Result<Option<Group>> {
        let group = lock(&self.groups).get(id).cloned();
        self.count_read(usize::from(group.is_some()));
        Ok(group)
    }

    async fn list(&self, request: &PageRequest) -> Result<Page<Group>> {
        let items = lock(&self.groups)
            .values()
            .map(|g| (g.id.to_string(), g.clone()))
            .collect();
        let listed = page("groups", items, request, false)?;
        self.count_read(listed.items.len());
        Ok(listed)
    }

    async fn groups_of_member(&self, member: &UserId) -> Result<Vec<Group>> {
        // The map is ordered by id; only the member's groups count as read.
        let found: Vec<Group> = lock(&self.groups)
            .values()
            .filter(|g| g.members.contains(member))
            .cloned()
            .collect();
        self.count_read(found.len());
        Ok(found)
    }

    async fn delete(&self, id: &GroupId) -> Result<()> {
        lock(&self.groups).remove(id);
        Ok(())
    }
}

#[derive(Debug, Default)]
struct TenantState {
    tenants: BTreeMap<TenantId, Tenant>,
    claims: BTreeMap<DomainName, TenantId>,
}

/// Tenants and domain claims in memory.
#[derive(Debug, Default)]
pub struct FakeTenants {
    state: Mutex<TenantState>,
}

impl FakeTenants {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl TenantStore for FakeTenants {
    async fn create(&self, tenant: &Tenant) -> Result<Tenant> {
        let mut state = lock(&self.state);
        if state.tenants.contains_key(&tenant.id) {
            return Err(Conflict::AlreadyExists {
                entity: Entity::Tenant,
                id: tenant.id.to_string(),
            }
            .into());
        }
        let stored = Tenant {
            version: 1,
            ..tenant.clone()
        };
        state.tenants.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>> {
        Ok(lock(&self.state).tenants.get(id).cloned())
    }

    async fn list(&self, request: &PageRequest) -> Result<Page<Tenant>> {
        let items = lock(&self.state)
            .tenants
            .values()
            .map(|t| (t.id.to_string(), t.clone()))
            .collect();
        page("tenants", items, request, false)
    }

    async fn update(&self, tenant: &Tenant, expected_version: u64) -> Result<Tenant> {
        let mut state = lock(&self.state);
        let current = state
            .tenants
            .get(&tenant.id)
            .ok_or_else(|| Error::not_found(Entity::Tenant, &tenant.id))?;
        if current.version != expected_version {
            return Err(Error::stale(Entity::Tenant, expected_version));
        }
        let stored = Tenant {
            version: expected_version + 1,
            ..tenant.clone()
        };
        state.tenants.insert(stored.id.clone(), stored.clone());
        Ok(stored)
    }

    async fn claim_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<()> {
        let mut state = lock(&self.state);
        // All or nothing: check every domain before writing any.
        for domain in domains {
            if let Some(owner) = state.claims.get(domain).filter(|owner| *owner != tenant) {
                return Err(Conflict::DomainClaimed {
                    domain: domain.clone(),
                    owner: owner.clone(),
                }
                .into());
            }
        }
        for domain in domains {
            state.claims.insert(domain.clone(), tenant.clone());
        }
        Ok(())
    }

    async fn release_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<()> {
        let mut state = lock(&self.state);
        for domain in domains {
            if state.claims.get(domain) == Some(tenant) {
                state.claims.remove(domain);
            }
        }
        Ok(())
    }

    async fn tenant_for_domain(&self, domain: &DomainName) -> Result<Option<TenantId>> {
        Ok(lock(&self.state).claims.get(domain).cloned())
    }
}

/// Bindings in memory, one per user.
#[derive(Debug, Default)]
pub struct FakeBindings {
    bindings: Mutex<BTreeMap<UserId, Binding>>,
    /// Puts to hold before they apply (see [`FakeBindings::hold_next_put`]).
    holds: Mutex<VecDeque<Hold>>,
}

impl FakeBindings {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds the next `put` before it applies until the test releases it, to force an
    /// interleaving of two use cases' writes (R-BIND-12).
    pub fn hold_next_put(&self) -> HeldCall {
        let (hold, handle) = Hold::new();
        lock(&self.holds).push_back(hold);
        handle
    }
}

impl BindingStore for FakeBindings {
    async fn get(&self, user: &UserId) -> Result<Option<Binding>> {
        Ok(lock(&self.bindings).get(user).cloned())
    }

    async fn put(&self, binding: &Binding, expect: Expect) -> Result<Binding> {
        let hold = lock(&self.holds).pop_front();
        if let Some(hold) = hold {
            hold.wait().await;
        }
        let mut bindings = lock(&self.bindings);
        let current = bindings.get(&binding.user_id).map(|b| b.version);
        let version = match (expect, current) {
            (Expect::Absent, None) => 1,
            (Expect::Version(expected), Some(actual)) if expected == actual => expected + 1,
            (Expect::Absent, Some(_)) => return Err(Error::stale(Entity::Binding, 0)),
            (Expect::Version(expected), _) => return Err(Error::stale(Entity::Binding, expected)),
        };
        let stored = Binding {
            version,
            ..binding.clone()
        };
        bindings.insert(stored.user_id.clone(), stored.clone());
        Ok(stored)
    }

    async fn list_by_tenant(
        &self,
        tenant: &TenantId,
        state: Option<BindingState>,
        request: &PageRequest,
    ) -> Result<Page<Binding>> {
        let items = lock(&self.bindings)
            .values()
            .filter(|b| &b.tenant_id == tenant && state.is_none_or(|s| b.state == s))
            .map(|b| (b.user_id.to_string(), b.clone()))
            .collect();
        let listing = format!(
            "bindings:{tenant}:{}",
            state.map_or("any", BindingState::as_str)
        );
        page(&listing, items, request, false)
    }
}

/// Events in memory.
#[derive(Debug, Default)]
pub struct FakeEvents {
    events: Mutex<BTreeMap<String, Event>>,
}

impl FakeEvents {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event, newest first (for assertions in use-case tests).
    #[must_use]
    pub fn all(&self) -> Vec<Event> {
        lock(&self.events).values().rev().cloned().collect()
    }
}

impl EventStore for FakeEvents {
    async fn append(&self, event: &Event) -> Result<()> {
        let mut events = lock(&self.events);
        // The same event id appended twice (a redelivered operation) is kept once.
        if events.values().all(|e| e.id != event.id) {
            events.insert(time_key(event.at, event.id.as_str()), event.clone());
        }
        Ok(())
    }

    async fn query(&self, query: &EventQuery) -> Result<Page<Event>> {
        let matches = |e: &Event| match &query.filter {
            EventFilter::User(user) => e.user_id.as_ref() == Some(user),
            EventFilter::Tenant(tenant) => e.tenant_id.as_ref() == Some(tenant),
            EventFilter::Kind(kind) => e.kind == *kind,
        };
        let items = lock(&self.events)
            .iter()
            .rev()
            .filter(|(_, e)| matches(e) && query.since.is_none_or(|since| e.at >= since))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        let listing = match &query.filter {
            EventFilter::User(user) => format!("events:user:{user}"),
            EventFilter::Tenant(tenant) => format!("events:tenant:{tenant}"),
            EventFilter::Kind(kind) => format!("events:type:{}", kind.as_str()),
        };
        page(&listing, items, &query.page, true)
    }
}

/// Failures in memory.
#[derive(Debug, Default)]
pub struct FakeFailures {
    failures: Mutex<BTreeMap<String, Failure>>,
}

impl FakeFailures {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every failure, newest first (for assertions in use-case tests).
    #[must_use]
    pub fn all(&self) -> Vec<Failure> {
        lock(&self.failures).values().rev().cloned().collect()
    }
}

impl FailureStore for FakeFailures {
    async fn record(&self, failure: &Failure) -> Result<()> {
        lock(&self.failures).insert(time_key(failure.at, failure.id.as_str()), failure.clone());
        Ok(())
    }

    async fn list_by_tenant(
        &self,
        tenant: &TenantId,
        request: &PageRequest,
    ) -> Result<Page<Failure>> {
        let items = lock(&self.failures)
            .iter()
            .rev()
            .filter(|(_, f)| &f.tenant_id == tenant)
            .map(|(k, f)| (k.clone(), f.clone()))
            .collect();
        page(&format!("failures:{tenant}"), items, request, true)
    }
}

#[derive(Debug, Clone)]
enum LedgerEntry {
    InProgress {
        lease_until: DateTime<Utc>,
    },
    Done {
        outcome: OperationOutcome,
        expires_at: DateTime<Utc>,
    },
}

/// The operation ledger in memory.
#[derive(Debug, Default)]
pub struct FakeLedger {
    entries: Mutex<BTreeMap<OperationId, LedgerEntry>>,
}

impl FakeLedger {
    /// An empty ledger.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl OperationLedger for FakeLedger {
    async fn claim(
        &self,
        id: &OperationId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Claim> {
        let mut entries = lock(&self.entries);
        match entries.get(id) {
            Some(LedgerEntry::InProgress { lease_until: held }) if *held > now => {
                return Ok(Claim::InProgress { lease_until: *held });
            }
            // An entry past its TTL counts as gone (DynamoDB deletes expired items lazily).
            Some(LedgerEntry::Done {
                outcome,
                expires_at,
            }) if *expires_at > now => {
                return Ok(Claim::AlreadyDone(outcome.clone()));
            }
            _ => {}
        }
        entries.insert(id.clone(), LedgerEntry::InProgress { lease_until });
        Ok(Claim::Claimed)
    }

    async fn complete(
        &self,
        id: &OperationId,
        outcome: &OperationOutcome,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        lock(&self.entries).insert(
            id.clone(),
            LedgerEntry::Done {
                outcome: outcome.clone(),
                expires_at,
            },
        );
        Ok(())
    }

    async fn release(&self, id: &OperationId) -> Result<()> {
        let mut entries = lock(&self.entries);
        if matches!(entries.get(id), Some(LedgerEntry::InProgress { .. })) {
            entries.remove(id);
        }
        Ok(())
    }
}
