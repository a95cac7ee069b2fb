//! M365 in memory: a [`Directory`] that behaves like Graph where the engine depends on it
//! (graph-spec §3, §8): case-insensitive UPN uniqueness among active users, verified and
//! federated domains, Entra password complexity, soft delete with an address-release delay,
//! PATCH semantics, paging, and injectable faults.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::hold::{HeldCall, Hold, Stage};
use super::paging::page;
use super::{ManualClock, lock};
use crate::error::{Conflict, Entity, Error, ExistingUser, Result, UnavailableReason};
use crate::model::DeletedM365User;
use crate::model::{
    DirectoryRole, DomainKind, Email, M365Group, M365ObjectId, M365TenantId, M365User,
    M365UserPatch, NewM365User, Page, PageRequest, TenantId, VerifiedDomain,
};
use crate::policy::password::check_entra;
use crate::ports::{Clock, ConsentedTenant, Directory, TenantProbe};

/// Graph's message for a non-compliant password (graph-spec §3.2).
pub const COMPLEXITY_MESSAGE: &str = "The specified password does not comply with password complexity requirements. Please provide a different password.";
/// Graph's message for a federated-domain create without `onPremisesImmutableId` (graph-spec §8.3).
pub const SOURCE_ANCHOR_MESSAGE: &str =
    "SourceAnchor is a required property for creation of a federated user.";
/// Synthetic message for a password write on a federated user: the real text is unconfirmed
/// (graph-spec §13 item 3).
pub const FEDERATED_PASSWORD_MESSAGE: &str = "You cannot reset a password for a federated user.";

#[derive(Debug, Clone)]
struct StoredUser {
    user: M365User,
    password: SecretString,
    created_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    /// M365's `signInSessionsValidFromDateTime`: moved by a revocation (graph-spec §1.4).
    sessions_valid_from: Option<DateTime<Utc>>,
}

/// One M365 tenant of the fake.
#[derive(Debug, Clone, Default)]
pub struct FakeM365Tenant {
    /// Verified domains.
    pub domains: Vec<VerifiedDomain>,
    /// Microsoft's id of the tenant (random, set by [`FakeDirectory::add_tenant`]).
    pub m365_id: Option<M365TenantId>,
    users: BTreeMap<M365ObjectId, StoredUser>,
}

/// A group of the fake (R-GRP-1), kept apart from [`FakeM365Tenant`] so its literal stays as is.
#[derive(Debug, Clone)]
struct FakeGroup {
    group: M365Group,
    members: std::collections::BTreeSet<M365ObjectId>,
    created_at: DateTime<Utc>,
}

#[derive(Debug)]
struct Fault {
    /// `None`: the call behaves normally (lets a test aim a fault at a later call).
    error: Option<Error>,
    /// The call takes effect before answering with `error` (a timeout after commit).
    after_commit: bool,
}

#[derive(Debug, Default)]
struct State {
    tenants: BTreeMap<TenantId, FakeM365Tenant>,
    faults: VecDeque<Fault>,
    replication_lag: TimeDelta,
    clock_skew: TimeDelta,
    groups: BTreeMap<TenantId, BTreeMap<M365ObjectId, FakeGroup>>,
    /// Directory roles per tenant and holder (a user, or a group whose members hold it).
    roles: BTreeMap<TenantId, BTreeMap<M365ObjectId, BTreeSet<DirectoryRole>>>,
    /// The admin whose consent each tenant's connection carries (`GET /me`).
    consenting_admins: BTreeMap<TenantId, M365ObjectId>,
    calls: u64,
    create_calls: u64,
    find_calls: u64,
    /// Calls to hold, by port method and stage, in the order they were asked for.
    holds: Vec<(&'static str, Stage, Hold)>,
    /// Each tenant's manager links: user → manager (R-ATTR-1).
    managers: BTreeMap<TenantId, BTreeMap<M365ObjectId, M365ObjectId>>,
}

/// M365 in memory, on a [`ManualClock`]. Clones share one M365 (the delta fakes read it).
#[derive(Debug, Clone)]
pub struct FakeDirectory {
    clock: ManualClock,
    address_release_delay: TimeDelta,
    state: Arc<Mutex<State>>,
}

fn rejected(message: &str) -> Error {
    Error::Rejected {
        graph_code: "Request_BadRequest".to_owned(),
        message: message.to_owned(),
        graph_request_id: Some(uuid::Uuid::new_v4().to_string()),
    }
}

impl FakeDirectory {
    /// An empty M365 on `clock`; a deleted user's address is held for `address_release_delay`
    /// (DESIGN §6: the emulator models the release delay; graph-spec §3.5 suggests real M365 may
    /// release at once — unconfirmed).
    #[must_use]
    pub fn new(clock: ManualClock, address_release_delay: TimeDelta) -> Self {
        Self {
            clock,
            address_release_delay,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Adds (or replaces) a tenant with its verified domains.
    pub fn add_tenant(&self, tenant: &TenantId, domains: Vec<VerifiedDomain>) {
        lock(&self.state).tenants.insert(
            tenant.clone(),
            FakeM365Tenant {
                domains,
                m365_id: M365TenantId::parse(uuid::Uuid::new_v4().to_string()).ok(),
                users: BTreeMap::new(),
            },
        );
    }

    /// Replaces the verified domains of an existing tenant, keeping its Microsoft id (an admin
    /// added or removed a domain); adds the tenant when absent.
    pub fn set_domains(&self, tenant: &TenantId, domains: Vec<VerifiedDomain>) {
        let mut state = lock(&self.state);
        match state.tenants.get_mut(tenant) {
            Some(t) => t.domains = domains,
            None => {
                drop(state);
                self.add_tenant(tenant, domains);
            }
        }
    }

    /// Microsoft's id of `tenant` in this fake ([`Directory::organization_id`] answers it).
    #[must_use]
    pub fn m365_tenant_id(&self, tenant: &TenantId) -> Option<M365TenantId> {
        lock(&self.state)
            .tenants
            .get(tenant)
            .and_then(|t| t.m365_id.clone())
    }

    /// Makes the next call fail with `error` (faults queue up, one per call).
    pub fn fail_next_call(&self, error: Error) {
        lock(&self.state).faults.push_back(Fault {
            error: Some(error),
            after_commit: false,
        });
    }

    /// Lets the next call through unharmed (queued in order with the faults), so that a fault
    /// queued after it hits the call after.
    pub fn pass_next_call(&self) {
        lock(&self.state).faults.push_back(Fault {
            error: None,
            after_commit: false,
        });
    }

    /// Adds a group as an admin would in the portal (not counted as a call); its id.
    ///
    /// # Errors
    /// Never in practice (a UUID is always an object id).
    pub fn seed_group(
        &self,
        tenant: &TenantId,
        display_name: &str,
        nickname: &str,
        security: bool,
        members: &[M365ObjectId],
    ) -> Result<M365ObjectId> {
        let id = M365ObjectId::parse(uuid::Uuid::new_v4().to_string())?;
        let group = FakeGroup {
            group: M365Group {
                id: id.clone(),
                display_name: display_name.to_owned(),
                mail_nickname: nickname.to_owned(),
                is_security_group: security,
            },
            members: members.iter().cloned().collect(),
            created_at: DateTime::<Utc>::MIN_UTC,
        };
        lock(&self.state)
            .groups
            .entry(tenant.clone())
            .or_default()
            .insert(id.clone(), group);
        Ok(id)
    }

    /// Deletes a group as an admin would in the portal (security groups are deleted for good).
    pub fn delete_group(&self, tenant: &TenantId, id: &M365ObjectId) {
        if let Some(groups) = lock(&self.state).groups.get_mut(tenant) {
            groups.remove(id);
        }
    }

    /// The groups of `tenant` with this mail nickname (case-insensitive), with their members.
    #[must_use]
    pub fn groups_named(
        &self,
        tenant: &TenantId,
        nickname: &str,
    ) -> Vec<(M365Group, Vec<M365ObjectId>)> {
        lock(&self.state)
            .groups
            .get(tenant)
            .map(|groups| {
                groups
                    .values()
                    .filter(|g| g.group.mail_nickname.eq_ignore_ascii_case(nickname))
                    .map(|g| (g.group.clone(), g.members.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Holds the next call of the port method `method` (e.g. `"set_account_enabled"`) at `stage`
    /// until the test releases it, to force an interleaving with another use case (R-BIND-12).
    /// Holds apply to the write methods and `find_user_by_upn`.
    pub fn hold_next(&self, method: &'static str, stage: Stage) -> HeldCall {
        let (hold, handle) = Hold::new();
        lock(&self.state).holds.push((method, stage, hold));
        handle
    }

    /// M365's `signInSessionsValidFromDateTime` of the active user `id`: `None` until its sessions
    /// were revoked (R-BIND-9).
    #[must_use]
    pub fn sessions_valid_from(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Option<DateTime<Utc>> {
        let state = lock(&self.state);
        let stored = state.tenants.get(tenant)?.users.get(id)?;
        stored
            .deleted_at
            .is_none()
            .then_some(stored.sessions_valid_from)?
    }

    /// Grants the directory role `name` (e.g. `Global Administrator`) to `holder` — a user, or a
    /// group whose members then hold it — as an admin would in the portal (not counted as a call;
    /// R-BIND-11).
    pub fn grant_role(&self, tenant: &TenantId, holder: &M365ObjectId, name: &str) {
        lock(&self.state)
            .roles
            .entry(tenant.clone())
            .or_default()
            .entry(holder.clone())
            .or_default()
            .insert(builtin_role(name));
    }

    /// Takes the directory role `name` back from `holder` (not counted as a call).
    pub fn revoke_role(&self, tenant: &TenantId, holder: &M365ObjectId, name: &str) {
        if let Some(held) = lock(&self.state)
            .roles
            .get_mut(tenant)
            .and_then(|t| t.get_mut(holder))
        {
            held.remove(&builtin_role(name));
        }
    }

    /// Makes `admin` the account whose consent `tenant`'s connection carries (`None`: an
    /// app-only connection), as a sign-in on the consent page would (R-BIND-11).
    pub fn set_consenting_admin(&self, tenant: &TenantId, admin: Option<&M365ObjectId>) {
        let mut state = lock(&self.state);
        match admin {
            Some(id) => {
                state.consenting_admins.insert(tenant.clone(), id.clone());
            }
            None => {
                state.consenting_admins.remove(tenant);
            }
        }
    }

    /// Roles of every active user of `tenant`: direct grants plus those of the groups it is a
    /// member of (what `transitiveMemberOf` and the role member listings agree on).
    fn holders(
        state: &State,
        tenant: &TenantId,
    ) -> BTreeMap<M365ObjectId, BTreeSet<DirectoryRole>> {
        let mut out: BTreeMap<M365ObjectId, BTreeSet<DirectoryRole>> = BTreeMap::new();
        let Some(grants) = state.roles.get(tenant) else {
            return out;
        };
        let active = |id: &M365ObjectId| {
            state
                .tenants
                .get(tenant)
                .and_then(|t| t.users.get(id))
                .is_some_and(|u| u.deleted_at.is_none())
        };
        let groups = state.groups.get(tenant);
        for (holder, roles) in grants.iter().filter(|(_, r)| !r.is_empty()) {
            let members: Vec<M365ObjectId> = match groups.and_then(|g| g.get(holder)) {
                Some(group) => group.members.iter().cloned().collect(),
                None => vec![holder.clone()],
            };
            for member in members.into_iter().filter(|m| active(m)) {
                out.entry(member).or_default().extend(roles.iter().cloned());
            }
        }
        out
    }

    /// Drops every fault not yet consumed.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }

    /// Makes the next call take effect and then fail with `error`: a create that committed but
    /// whose answer was lost (graph-spec §7.3 "a timed-out POST /users may have succeeded").
    pub fn fail_next_call_after_commit(&self, error: Error) {
        lock(&self.state).faults.push_back(Fault {
            error: Some(error),
            after_commit: true,
        });
    }

    /// Replication lag (graph-spec §7.4): a user created less than `lag` ago is not found by
    /// [`Directory::find_user_by_upn`] nor listed, though its UPN is already taken for creates;
    /// a group that new is not found by its nickname, refuses member adds and answers 404 to a
    /// member listing.
    pub fn set_replication_lag(&self, lag: TimeDelta) {
        lock(&self.state).replication_lag = lag;
    }

    /// M365's clock runs `ahead` of ours (negative: behind): the `lastPasswordChangeDateTime`
    /// it stamps on creates and password writes is our clock's now plus `ahead` (R-PWD-3).
    pub fn set_clock_skew(&self, ahead: TimeDelta) {
        lock(&self.state).clock_skew = ahead;
    }

    /// Number of port calls made so far (faulted ones included).
    #[must_use]
    pub fn calls(&self) -> u64 {
        lock(&self.state).calls
    }

    /// Number of `create_user` calls made so far (faulted ones included).
    #[must_use]
    pub fn create_calls(&self) -> u64 {
        lock(&self.state).create_calls
    }

    /// Number of `find_user_by_upn` calls made so far (faulted ones included).
    #[must_use]
    pub fn find_calls(&self) -> u64 {
        lock(&self.state).find_calls
    }

    /// Soft-deletes a user, as an M365 admin would (graph-spec §3.5).
    ///
    /// # Errors
    /// `NotFound` if the tenant or active user does not exist.
    pub fn soft_delete(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<()> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let stored = Self::active_mut(&mut state, tenant, id)?;
        stored.deleted_at = Some(now);
        Ok(())
    }

    /// The active user `id`, as M365 holds it.
    #[must_use]
    pub fn user(&self, tenant: &TenantId, id: &M365ObjectId) -> Option<M365User> {
        let state = lock(&self.state);
        let stored = state.tenants.get(tenant)?.users.get(id)?;
        stored.deleted_at.is_none().then(|| stored.user.clone())
    }

    /// The manager M365 shows for the active user `id` (a deleted manager is none, as in the
    /// emulator; R-ATTR-1). Not counted as a call.
    #[must_use]
    pub fn manager(&self, tenant: &TenantId, id: &M365ObjectId) -> Option<M365ObjectId> {
        Self::live_manager(&lock(&self.state), tenant, id)
    }

    /// Every active user's manager in `tenant` (the delta fake compares them between rounds).
    #[must_use]
    pub fn managers(&self, tenant: &TenantId) -> BTreeMap<M365ObjectId, M365ObjectId> {
        let state = lock(&self.state);
        let ids: Vec<M365ObjectId> = state
            .managers
            .get(tenant)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| Some((id.clone(), Self::live_manager(&state, tenant, &id)?)))
            .collect()
    }

    /// Sets or removes `id`'s manager as an M365 admin would in the portal (drift; not counted).
    pub fn set_manager_by_admin(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        manager: Option<&M365ObjectId>,
    ) {
        let mut state = lock(&self.state);
        let links = state.managers.entry(tenant.clone()).or_default();
        match manager {
            Some(m) => links.insert(id.clone(), m.clone()),
            None => links.remove(id),
        };
    }

    fn live_manager(state: &State, tenant: &TenantId, id: &M365ObjectId) -> Option<M365ObjectId> {
        let users = &state.tenants.get(tenant)?.users;
        users.get(id).filter(|u| u.deleted_at.is_none())?;
        let manager = state.managers.get(tenant)?.get(id)?;
        users
            .get(manager)
            .filter(|u| u.deleted_at.is_none())
            .map(|_| manager.clone())
    }

    /// The password M365 holds for the active user `id` (to assert what was pushed).
    #[must_use]
    pub fn password(&self, tenant: &TenantId, id: &M365ObjectId) -> Option<SecretString> {
        let state = lock(&self.state);
        let stored = state.tenants.get(tenant)?.users.get(id)?;
        stored.deleted_at.is_none().then(|| stored.password.clone())
    }

    /// Number of active users in a tenant.
    #[must_use]
    pub fn active_user_count(&self, tenant: &TenantId) -> usize {
        lock(&self.state).tenants.get(tenant).map_or(0, |t| {
            t.users.values().filter(|u| u.deleted_at.is_none()).count()
        })
    }

    /// Runs one port call: counts it, applies an injected fault (before or after `work`).
    fn call<T>(&self, work: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut state = lock(&self.state);
        state.calls += 1;
        let after = match state.faults.pop_front() {
            Some(Fault {
                error: Some(error),
                after_commit: false,
            }) => return Err(error),
            Some(Fault {
                error,
                after_commit: true,
            }) => error,
            Some(Fault { error: None, .. }) | None => None,
        };
        match (work(&mut state), after) {
            (Ok(_), Some(error)) => Err(error),
            (result, _) => result,
        }
    }

    /// [`Self::call`] with the holds of `method` around it (awaited outside the lock).
    async fn run<T>(
        &self,
        method: &'static str,
        work: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        if let Some(hold) = self.take_hold(method, Stage::Before) {
            hold.wait().await;
        }
        let result = self.call(work);
        if let Some(hold) = self.take_hold(method, Stage::AfterCommit) {
            hold.wait().await;
        }
        result
    }

    fn take_hold(&self, method: &'static str, stage: Stage) -> Option<Hold> {
        let mut state = lock(&self.state);
        let at = state
            .holds
            .iter()
            .position(|(m, s, _)| *m == method && *s == stage)?;
        Some(state.holds.remove(at).2)
    }

    fn tenant<'s>(state: &'s mut State, tenant: &TenantId) -> Result<&'s mut FakeM365Tenant> {
        state
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| Error::not_found(Entity::M365Tenant, tenant))
    }

    fn active_mut<'s>(
        state: &'s mut State,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<&'s mut StoredUser> {
        Self::tenant(state, tenant)?
            .users
            .get_mut(id)
            .filter(|u| u.deleted_at.is_none())
            .ok_or_else(|| Error::not_found(Entity::M365User, id))
    }

    fn domain_kind(tenant: &FakeM365Tenant, upn: &str) -> Option<DomainKind> {
        let domain = upn.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())?;
        tenant
            .domains
            .iter()
            .find(|d| d.name.as_str() == domain)
            .map(|d| d.kind)
    }
}

/// A role as Graph names it, with the template ids of the built-in roles the tests use.
fn builtin_role(name: &str) -> DirectoryRole {
    let template = match name {
        "Global Administrator" => Some("62e90394-69f5-4237-9190-012177145e10"),
        "User Administrator" => Some("fe930be7-5e62-47db-91af-98c3a49a38b1"),
        "Privileged Role Administrator" => Some("e8611ab8-c189-46e8-94e1-60213ab1f814"),
        "Helpdesk Administrator" => Some("729827e3-9c14-49f7-bb1b-9608f156bbb8"),
        _ => None,
    };
    DirectoryRole {
        display_name: Some(name.to_owned()),
        role_template_id: template.map(str::to_owned),
    }
}

impl Directory for FakeDirectory {
    async fn find_user_by_upn(&self, tenant: &TenantId, upn: &Email) -> Result<Option<M365User>> {
        let now = self.clock.now();
        lock(&self.state).find_calls += 1;
        self.run("find_user_by_upn", |state| {
            let visible_before = now - state.replication_lag;
            let tenant = Self::tenant(state, tenant)?;
            Ok(tenant
                .users
                .values()
                .find(|u| {
                    u.deleted_at.is_none()
                        && u.created_at <= visible_before
                        && u.user
                            .user_principal_name
                            .eq_ignore_ascii_case(upn.as_str())
                })
                .map(|u| u.user.clone()))
        })
        .await
    }

    async fn create_user(&self, tenant: &TenantId, new: &NewM365User) -> Result<M365User> {
        let now = self.clock.now();
        let release_delay = self.address_release_delay;
        let (skew, lag) = {
            let mut state = lock(&self.state);
            state.create_calls += 1;
            (state.clock_skew, state.replication_lag)
        };
        self.run("create_user", |state| {
            let tenant = Self::tenant(state, tenant)?;
            let upn = new.user_principal_name.as_str();
            // Graph's validation order (graph-spec §11 item 4): domain verified → federated → uniqueness → password.
            match Self::domain_kind(tenant, upn) {
                None => return Err(rejected("Property userPrincipalName is invalid.")),
                Some(DomainKind::Federated) => return Err(rejected(SOURCE_ANCHOR_MESSAGE)),
                Some(DomainKind::Managed) => {}
            }
            let same_upn = |u: &&StoredUser| u.user.user_principal_name.eq_ignore_ascii_case(upn);
            if let Some(holder) = tenant
                .users
                .values()
                .filter(same_upn)
                .find(|u| u.deleted_at.is_none())
            {
                // Like the Graph adapter, which looks the UPN up on a conflict: the holder when
                // that lookup would see it (replication lag, graph-spec §7.4).
                let visible = holder.created_at <= now - lag;
                return Err(Conflict::UpnExists {
                    upn: new.user_principal_name.clone(),
                    existing: visible.then(|| ExistingUser(Box::new(holder.user.clone()))),
                }
                .into());
            }
            let held_until = tenant
                .users
                .values()
                .filter(same_upn)
                .filter_map(|u| u.deleted_at)
                .map(|at| at + release_delay)
                .max();
            if let Some(until) = held_until.filter(|until| *until > now) {
                return Err(Error::Unavailable {
                    component: "graph",
                    reason: UnavailableReason::AddressHeld,
                    retry_after: (until - now).to_std().ok(),
                    graph_request_id: None,
                    source: None,
                });
            }
            if check_entra(&new.password).is_err() {
                return Err(rejected(COMPLEXITY_MESSAGE));
            }
            let user = M365User {
                id: M365ObjectId::generate(),
                user_principal_name: upn.to_owned(),
                mail: None,
                display_name: new.display_name.clone(),
                given_name: new.given_name.clone(),
                surname: new.surname.clone(),
                job_title: new.job_title.clone(),
                department: new.department.clone(),
                attributes: new.attributes.clone(),
                account_enabled: new.account_enabled,
                last_password_change: Some(now + skew),
            };
            tenant.users.insert(
                user.id.clone(),
                StoredUser {
                    user: user.clone(),
                    password: new.password.clone(),
                    created_at: now,
                    deleted_at: None,
                    sessions_valid_from: None,
                },
            );
            Ok(user)
        })
        .await
    }

    async fn update_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        patch: &M365UserPatch,
    ) -> Result<()> {
        self.run("update_user", |state| {
            let stored = Self::active_mut(state, tenant, id)?;
            let user = &mut stored.user;
            if let Some(name) = &patch.display_name {
                user.display_name.clone_from(name);
            }
            for (field, value) in [
                (&mut user.given_name, &patch.given_name),
                (&mut user.surname, &patch.surname),
                (&mut user.job_title, &patch.job_title),
                (&mut user.department, &patch.department),
            ] {
                if let Some(value) = value {
                    field.clone_from(value);
                }
            }
            patch.attributes.apply(&mut user.attributes);
            Ok(())
        })
        .await
    }

    async fn set_account_enabled(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        enabled: bool,
    ) -> Result<()> {
        self.run("set_account_enabled", |state| {
            Self::active_mut(state, tenant, id)?.user.account_enabled = enabled;
            Ok(())
        })
        .await
    }

    async fn revoke_sign_in_sessions(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<()> {
        let now = self.clock.now();
        self.run("revoke_sign_in_sessions", |state| {
            let stamp = now + state.clock_skew;
            Self::active_mut(state, tenant, id)?.sessions_valid_from = Some(stamp);
            Ok(())
        })
        .await
    }

    async fn set_password(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        password: &SecretString,
    ) -> Result<()> {
        let now = self.clock.now();
        self.run("set_password", |state| {
            let tenant_state = Self::tenant(state, tenant)?;
            let upn = tenant_state
                .users
                .get(id)
                .filter(|u| u.deleted_at.is_none())
                .map(|u| u.user.user_principal_name.clone())
                .ok_or_else(|| Error::not_found(Entity::M365User, id))?;
            if Self::domain_kind(tenant_state, &upn) == Some(DomainKind::Federated) {
                return Err(rejected(FEDERATED_PASSWORD_MESSAGE));
            }
            if check_entra(password).is_err() {
                return Err(rejected(COMPLEXITY_MESSAGE));
            }
            let stamp = now + state.clock_skew;
            let stored = Self::active_mut(state, tenant, id)?;
            stored.password = password.clone();
            stored.user.last_password_change = Some(stamp);
            Ok(())
        })
        .await
    }

    async fn list_users(&self, tenant: &TenantId, request: &PageRequest) -> Result<Page<M365User>> {
        let now = self.clock.now();
        self.call(|state| {
            let visible_before = now - state.replication_lag;
            let tenant_id = tenant.clone();
            let tenant = Self::tenant(state, tenant)?;
            let items = tenant
                .users
                .values()
                .filter(|u| u.deleted_at.is_none() && u.created_at <= visible_before)
                .map(|u| (u.user.id.to_string(), u.user.clone()))
                .collect();
            page(&format!("m365users:{tenant_id}"), items, request, false)
        })
    }

    async fn list_users_with_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        request: &PageRequest,
    ) -> Result<Page<M365User>> {
        let now = self.clock.now();
        let prefix = prefix.to_lowercase();
        let starts = |value: &str| value.to_lowercase().starts_with(&prefix);
        self.call(|state| {
            let visible_before = now - state.replication_lag;
            let listing = format!("m365users:{tenant}:{prefix}");
            let tenant = Self::tenant(state, tenant)?;
            let items = tenant
                .users
                .values()
                .filter(|u| u.deleted_at.is_none() && u.created_at <= visible_before)
                .filter(|u| {
                    starts(&u.user.user_principal_name)
                        || starts(&u.user.display_name)
                        || u.user.mail.as_deref().is_some_and(starts)
                })
                .map(|u| (u.user.id.to_string(), u.user.clone()))
                .collect();
            page(&listing, items, request, false)
        })
    }

    async fn get_user(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<Option<M365User>> {
        let now = self.clock.now();
        self.call(|state| {
            let visible_before = now - state.replication_lag;
            Ok(Self::tenant(state, tenant)?
                .users
                .get(id)
                .filter(|u| u.deleted_at.is_none() && u.created_at <= visible_before)
                .map(|u| u.user.clone()))
        })
    }

    async fn verified_domains(&self, tenant: &TenantId) -> Result<Vec<VerifiedDomain>> {
        self.call(|state| Ok(Self::tenant(state, tenant)?.domains.clone()))
    }

    async fn organization_id(&self, tenant: &TenantId) -> Result<M365TenantId> {
        self.call(|state| {
            Self::tenant(state, tenant)?
                .m365_id
                .clone()
                .ok_or_else(|| Error::not_found(Entity::Tenant, tenant))
        })
    }

    async fn find_group_by_mail_nickname(
        &self,
        tenant: &TenantId,
        nickname: &str,
    ) -> Result<Option<M365Group>> {
        let now = self.clock.now();
        self.call(|state| {
            Self::tenant(state, tenant)?;
            let visible_before = now - state.replication_lag;
            Ok(state.groups.get(tenant).and_then(|groups| {
                groups
                    .values()
                    .find(|g| {
                        g.created_at <= visible_before
                            && g.group.mail_nickname.eq_ignore_ascii_case(nickname)
                    })
                    .map(|g| g.group.clone())
            }))
        })
    }

    async fn create_security_group(
        &self,
        tenant: &TenantId,
        display_name: &str,
        nickname: &str,
    ) -> Result<M365Group> {
        let now = self.clock.now();
        self.call(|state| {
            Self::tenant(state, tenant)?;
            let id = M365ObjectId::parse(uuid::Uuid::new_v4().to_string())?;
            let group = M365Group {
                id: id.clone(),
                display_name: display_name.to_owned(),
                mail_nickname: nickname.to_owned(),
                is_security_group: true,
            };
            state.groups.entry(tenant.clone()).or_default().insert(
                id,
                FakeGroup {
                    group: group.clone(),
                    members: std::collections::BTreeSet::new(),
                    created_at: now,
                },
            );
            Ok(group)
        })
    }

    async fn manager_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<M365ObjectId>> {
        self.run("manager_of", |state| {
            Self::active_mut(state, tenant, id)?;
            Ok(Self::live_manager(state, tenant, id))
        })
        .await
    }

    async fn set_manager(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        manager: &M365ObjectId,
    ) -> Result<()> {
        self.run("set_manager", |state| {
            Self::active_mut(state, tenant, id)?;
            Self::active_mut(state, tenant, manager)?;
            if id == manager {
                return Err(rejected("A user cannot be assigned as their own manager."));
            }
            state
                .managers
                .entry(tenant.clone())
                .or_default()
                .insert(id.clone(), manager.clone());
            Ok(())
        })
        .await
    }

    async fn clear_manager(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<()> {
        self.run("clear_manager", |state| {
            Self::active_mut(state, tenant, id)?;
            if let Some(links) = state.managers.get_mut(tenant) {
                links.remove(id);
            }
            Ok(())
        })
        .await
    }

    async fn add_group_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> Result<()> {
        let now = self.clock.now();
        self.call(|state| {
            let visible_before = now - state.replication_lag;
            let member_visible = Self::tenant(state, tenant)?
                .users
                .get(member)
                .filter(|u| u.deleted_at.is_none())
                .map(|u| u.created_at <= visible_before)
                .ok_or_else(|| Error::not_found(Entity::M365User, member))?;
            let stored = state
                .groups
                .get_mut(tenant)
                .and_then(|groups| groups.get_mut(group))
                .ok_or_else(|| Error::not_found(Entity::Group, group))?;
            // Replication lag (graph-spec §4.2, §7.4): a new group or user is not yet a valid
            // reference for a member add.
            if stored.created_at > visible_before || !member_visible {
                return Err(Error::Unavailable {
                    component: "graph",
                    reason: UnavailableReason::NotYetVisible,
                    retry_after: None,
                    graph_request_id: Some(uuid::Uuid::new_v4().to_string()),
                    source: None,
                });
            }
            stored.members.insert(member.clone());
            Ok(())
        })
    }

    async fn remove_group_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> Result<()> {
        self.call(|state| {
            Self::tenant(state, tenant)?;
            let stored = state
                .groups
                .get_mut(tenant)
                .and_then(|groups| groups.get_mut(group))
                .ok_or_else(|| Error::not_found(Entity::Group, group))?;
            stored.members.remove(member);
            Ok(())
        })
    }

    async fn list_group_members(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        request: &PageRequest,
    ) -> Result<Page<M365ObjectId>> {
        let now = self.clock.now();
        self.call(|state| {
            Self::tenant(state, tenant)?;
            let visible_before = now - state.replication_lag;
            // Replication lag (graph-spec §7.4): reading a new group answers 404 for a while.
            let stored = state
                .groups
                .get(tenant)
                .and_then(|groups| groups.get(group))
                .filter(|g| g.created_at <= visible_before)
                .ok_or_else(|| Error::not_found(Entity::Group, group))?;
            let items = stored
                .members
                .iter()
                .map(|m| (m.to_string(), m.clone()))
                .collect();
            page(&format!("m365members:{group}"), items, request, false)
        })
    }

    async fn directory_roles_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Vec<DirectoryRole>> {
        self.call(|state| {
            Self::active_mut(state, tenant, id)?;
            Ok(Self::holders(state, tenant)
                .remove(id)
                .map(|roles| roles.into_iter().collect())
                .unwrap_or_default())
        })
    }

    async fn consenting_admin(&self, tenant: &TenantId) -> Result<Option<M365ObjectId>> {
        self.call(|state| {
            Self::tenant(state, tenant)?;
            Ok(state.consenting_admins.get(tenant).cloned())
        })
    }

    async fn directory_role_holders(
        &self,
        tenant: &TenantId,
    ) -> Result<BTreeMap<M365ObjectId, Vec<DirectoryRole>>> {
        self.call(|state| {
            Self::tenant(state, tenant)?;
            Ok(Self::holders(state, tenant)
                .into_iter()
                .map(|(id, roles)| (id, roles.into_iter().collect()))
                .collect())
        })
    }

    async fn get_deleted_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<DeletedM365User>> {
        let now = self.clock.now();
        self.run("get_deleted_user", |state| {
            let tenant = Self::tenant(state, tenant)?;
            Ok(tenant.users.get(id).and_then(|u| deleted_view(u, now)))
        })
        .await
    }

    async fn find_deleted_user_by_upn(
        &self,
        tenant: &TenantId,
        upn: &Email,
    ) -> Result<Option<DeletedM365User>> {
        let now = self.clock.now();
        self.run("find_deleted_user_by_upn", |state| {
            let tenant = Self::tenant(state, tenant)?;
            Ok(tenant
                .users
                .values()
                .filter(|u| {
                    u.user
                        .user_principal_name
                        .eq_ignore_ascii_case(upn.as_str())
                })
                .filter_map(|u| deleted_view(u, now))
                .max_by_key(|d| d.deleted_at))
        })
        .await
    }

    /// Like Graph (graph-spec §3.5, §3.6): the same account comes back with its group
    /// memberships (the fake's groups never dropped them); the addresses of active users are
    /// checked first.
    async fn restore_user(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<M365User> {
        let now = self.clock.now();
        self.run("restore_user", |state| {
            let tenant = Self::tenant(state, tenant)?;
            let Some(deleted) = tenant.users.get(id).and_then(|u| deleted_view(u, now)) else {
                return Err(Error::not_found(Entity::M365User, id));
            };
            let restoring = tenant.users.get(id).map(|u| u.user.clone());
            let mail = restoring.as_ref().and_then(|u| u.mail.clone());
            let taken = |address: &str| {
                tenant.users.values().any(|u| {
                    u.deleted_at.is_none()
                        && (u.user.user_principal_name.eq_ignore_ascii_case(address)
                            || u.user
                                .mail
                                .as_deref()
                                .is_some_and(|m| m.eq_ignore_ascii_case(address)))
                })
            };
            let property = if taken(&deleted.user_principal_name) {
                Some("userPrincipalName")
            } else if mail.as_deref().is_some_and(taken) {
                Some("mail")
            } else {
                None
            };
            if let Some(property) = property {
                return Err(Conflict::RestoreConflict {
                    account: id.to_string(),
                    property: property.to_owned(),
                }
                .into());
            }
            let stored = tenant
                .users
                .get_mut(id)
                .ok_or_else(|| Error::not_found(Entity::M365User, id))?;
            stored.deleted_at = None;
            Ok(stored.user.clone())
        })
        .await
    }
}

/// The deleted item `stored` shows (`None` when active, or purged 30 days after its deletion).
fn deleted_view(stored: &StoredUser, now: DateTime<Utc>) -> Option<DeletedM365User> {
    let deleted = DeletedM365User {
        id: stored.user.id.clone(),
        user_principal_name: stored.user.user_principal_name.clone(),
        deleted_at: stored.deleted_at,
    };
    (stored.deleted_at.is_some() && deleted.restorable_at(now)).then_some(deleted)
}

impl super::contract::directory::RoleAdmin for FakeDirectory {
    async fn grant(&self, tenant: &TenantId, holder: &M365ObjectId, role: &str) {
        self.grant_role(tenant, holder, role);
    }

    async fn revoke(&self, tenant: &TenantId, holder: &M365ObjectId, role: &str) {
        self.revoke_role(tenant, holder, role);
    }
}

/// The fake reads the home tenant of an access token from the token itself: tokens minted by
/// [`super::FakeIdentityPlatform::consent_as`] carry the directory key of their tenant after `@`;
/// any other token belongs to the tenant being connected (`tenant`). One call (two Graph reads in
/// production) that faults like any other.
impl TenantProbe for FakeDirectory {
    async fn probe(
        &self,
        tenant: &TenantId,
        access_token: &SecretString,
    ) -> Result<ConsentedTenant> {
        let home = access_token
            .expose_secret()
            .rsplit_once('@')
            .and_then(|(_, key)| TenantId::parse(key).ok())
            .unwrap_or_else(|| tenant.clone());
        self.call(|state| {
            let found = Self::tenant(state, &home)?;
            Ok(ConsentedTenant {
                m365_tenant_id: found
                    .m365_id
                    .clone()
                    .ok_or_else(|| Error::not_found(Entity::M365Tenant, &home))?,
                domains: found.domains.clone(),
            })
        })
    }
}
