//! Security groups (R-GRP-1): bind a directory group to a tenant — create or adopt a security
//! group (`securityEnabled`, not mail-enabled) found by a mail nickname derived from the group's
//! id — and mirror the membership of its members bound to that tenant, adding and removing.
//!
//! Every run mirrors the group as it is *now* (desired = members bound in the tenant with an M365
//! account; actual = the M365 group's direct members), so a push after a directory change, a
//! retry from the queue and a reconcile pass are the same idempotent operation: adds of existing
//! members and removes of absent ones are success in M365 (graph-spec §4.2–4.4). Members that
//! cannot be mirrored (not bound, bound to another tenant, no account yet) are skipped and shown
//! on the binding. A new group's replication lag (member adds refused for a while, graph-spec §7.4)
//! and other retryable failures put a `group_members` message on the retry queue with backoff;
//! the binding shows `pending` with the reason meanwhile and `error` once the budget is spent.
//!
//! The M365 group id is saved on the binding as soon as it is known, so no retry creates a
//! second group; the find-or-create runs under a ledger claim (two racing runs never create two
//! groups), and a create whose answer was lost is resolved by the nickname lookup (adapter). A
//! bound group deleted in M365 is adopted again or recreated at the next run; reconcile runs that
//! run when the groups delta reports the deletion ([`super::reconcile_groups`]). A recreated
//! group meets replication lag like a new one: its member adds are refused for a while and the
//! rest waits on the retry queue as above. While a binding waits on that lag (`pending`,
//! `not_yet_visible`), a 404 on reading its group is taken for lag, not a deletion (the nickname
//! lookup lags too, so recreating would make a second group); were the group really deleted
//! meanwhile, the retries run out (`error`) and a re-bind recreates it.
//!
//! A user bound *after* the group was bound joins at once: the bind and the retry worker's bind
//! call [`SyncGroup::follow_binds`], which mirrors the bound groups listing the user (an imported
//! user is new to the directory: no group lists it yet; a later `PUT /groups` pushes it).
//! Should that fail, the user is recorded as skipped at the group's last run and reconcile re-runs
//! a group once one of its skipped members became mirrorable (`mirror_target`, the one rule both
//! use). A renamed directory group keeps its M365 display name.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::{Conflict, Entity, Error, Result, UnavailableReason};
use crate::model::{
    Binding, BindingError, BindingState, Failure, Group, GroupBinding, GroupBindingState, GroupId,
    M365Group, M365ObjectId, MAX_PAGE_LIMIT, OperationId, OperationKind, OperationOutcome,
    OperationSubject, PageRequest, RetryMessage, SkipReason, SkippedMember, TenantId, TenantStatus,
    UserId,
};
use crate::policy::routing::RoutingError;
use crate::ports::Ports;
use crate::ports::{
    BindingStore, Claim, Clock, Directory, FailureStore, GroupStore, OperationLedger, RetryQueue,
};

use super::{Effects, failure_id};

/// Times a binding write is retried after losing a race with a concurrent group write.
const SAVE_ATTEMPTS: u32 = 5;

/// How the M365 group came to be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupChange {
    /// A new security group was created.
    Created,
    /// An existing security group with the derived nickname was adopted.
    Adopted,
    /// The bound group's membership was mirrored.
    Mirrored,
}

impl GroupChange {
    /// snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Adopted => "adopted",
            Self::Mirrored => "mirrored",
        }
    }
}

/// How one run of a group operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// The M365 group mirrors the bound members now.
    Synced {
        /// The stored group with its binding.
        group: Group,
        /// Created, adopted or only mirrored.
        change: GroupChange,
        /// Members added in M365 by this run.
        added: usize,
        /// Members removed in M365 by this run.
        removed: usize,
    },
    /// A retryable failure: the rest waits on the retry queue (binding `pending`).
    Deferred {
        /// The stored group with its binding.
        group: Group,
        /// What was queued.
        retry: RetryMessage,
    },
    /// A permanent failure, or the retry budget ran out (binding `error`).
    Failed {
        /// The stored group with its binding.
        group: Group,
        /// Machine code.
        code: String,
        /// True when the retry budget ran out.
        exhausted: bool,
    },
    /// The group is not bound: nothing to push.
    NotBound {
        /// The group as it is.
        group: Group,
    },
    /// A queued retry no longer applies (group deleted, unbound, or already synced since).
    Superseded,
}

variant_names!(GroupOutcome::as_str, "snake_case name." {
    Synced => "done",
    Deferred => "deferred",
    Failed => "failed",
    NotBound => "not_bound",
    Superseded => "superseded",
});

impl GroupOutcome {
    /// The group after the run, when the outcome carries one.
    #[must_use]
    pub fn group(&self) -> Option<&Group> {
        match self {
            Self::Synced { group, .. }
            | Self::Deferred { group, .. }
            | Self::Failed { group, .. }
            | Self::NotBound { group } => Some(group),
            Self::Superseded => None,
        }
    }
}

/// Where finding or creating the M365 group got.
#[derive(Debug)]
enum Establish {
    /// The group's id and how it came to be.
    Ready(M365ObjectId, GroupChange),
    /// Another run holds the create until this instant.
    Busy(DateTime<Utc>),
    /// M365 failed.
    Failed(Error),
}

/// The membership a run wants in M365.
#[derive(Debug, Default)]
struct Desired {
    /// M365 object id → directory user.
    members: BTreeMap<M365ObjectId, UserId>,
    skipped: Vec<SkippedMember>,
}

use_case! {
    /// The group-binding use case (R-GRP-1).
    pub struct SyncGroup {
        ports: [groups: Groups, tenants: Tenants, directory: Directory],
        built: [
            /// Outcome recording (bindings are read to find members' accounts).
            fx: Effects<'a, P> = Effects::new,
        ],
    }
}

impl<P: Ports> SyncGroup<'_, P> {
    /// `PUT /groups/{groupId}/binding`: binds the group to `tenant` (creating or adopting its
    /// security group) and mirrors its bound members. Binding again to the same tenant re-syncs.
    ///
    /// # Errors
    /// `NotFound` for an unknown group or tenant; `Routing(TenantNotActive)`;
    /// `Conflict::BoundElsewhere` when the group is bound to another tenant; store failures.
    #[tracing::instrument(skip_all, fields(group.id = %group_id, tenant.id = %tenant_id))]
    pub async fn bind(&self, group_id: &GroupId, tenant_id: &TenantId) -> Result<GroupOutcome> {
        let group = self.load(group_id).await?;
        let tenant = super::stored_tenant(self.tenants, tenant_id).await?;
        if tenant.status != TenantStatus::Active {
            return Err(RoutingError::TenantNotActive {
                tenant: tenant.id,
                status: tenant.status,
            }
            .into());
        }
        let binding = match &group.binding {
            Some(b) if &b.tenant_id != tenant_id => {
                return Err(Conflict::BoundElsewhere {
                    tenant: b.tenant_id.clone(),
                }
                .into());
            }
            Some(b) => b.clone(),
            None => GroupBinding::new(group_id, tenant_id.clone()),
        };
        let result = self.sync(group, binding, 0).await;
        report(&result);
        result
    }

    /// After a directory change of the group (`PUT /groups/{groupId}`): pushes adds and removes
    /// to its bound security group. An unbound group answers [`GroupOutcome::NotBound`].
    ///
    /// # Errors
    /// `NotFound` for an unknown group; store failures.
    #[tracing::instrument(skip_all, fields(group.id = %group_id))]
    pub async fn push(&self, group_id: &GroupId) -> Result<GroupOutcome> {
        let group = self.load(group_id).await?;
        let Some(binding) = group.binding.clone() else {
            return Ok(GroupOutcome::NotBound { group });
        };
        let result = self.sync(group, binding, 0).await;
        report(&result);
        result
    }

    /// Users just bound (a created, adopted or unblocked account: bindings `provisioned` with an
    /// M365 account) join the security groups of the directory groups that list them and are
    /// bound to the same tenant, at once rather than at the next reconcile (R-GRP-1). Each such
    /// group is mirrored once, whatever the number of its new members. The groups are found by
    /// member ([`GroupStore::groups_of_member`]): the reads grow with the users' groups, not with
    /// the directory's.
    ///
    /// # Errors
    /// Store failures while finding the groups; the pushes' own failures are in their outcomes
    /// (retryable ones queued as by [`Self::push`]) or, for store failures, returned. The caller's
    /// bind has succeeded either way, and reconcile re-pushes a group whose record shows a member
    /// that became mirrorable (`members_now_bound`).
    #[tracing::instrument(skip_all, fields(bindings = bindings.len()))]
    pub async fn follow_binds(&self, bindings: &[Binding]) -> Result<Vec<(GroupId, GroupOutcome)>> {
        let mut due: BTreeMap<GroupId, Group> = BTreeMap::new();
        for bound in bindings
            .iter()
            .filter(|b| b.state == BindingState::Provisioned && b.m365_object_id.is_some())
        {
            for group in self.groups.groups_of_member(&bound.user_id).await? {
                if group
                    .binding
                    .as_ref()
                    .is_some_and(|b| b.tenant_id == bound.tenant_id)
                {
                    due.entry(group.id.clone()).or_insert(group);
                }
            }
        }
        let mut outcomes = Vec::with_capacity(due.len());
        for (group_id, group) in due {
            // Bound when found; the stored binding is what the sync starts from.
            let Some(binding) = group.binding.clone() else {
                continue;
            };
            let result = self.sync(group, binding, 0).await;
            report(&result);
            outcomes.push((group_id, result?));
        }
        Ok(outcomes)
    }

    /// Re-drives a queued `group_members` (or `group_bind`) message: the group is mirrored as it
    /// is now. A deleted or unbound group, or one synced since, supersedes the message.
    ///
    /// # Errors
    /// Store or queue failures.
    #[tracing::instrument(skip_all, fields(group.id = %group_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, group_id: &GroupId) -> Result<GroupOutcome> {
        let Some(group) = self.groups.get(group_id).await? else {
            return Ok(GroupOutcome::Superseded);
        };
        let binding = match &group.binding {
            Some(b) if b.state == GroupBindingState::Pending => b.clone(),
            // The redelivery of the message that failed for good: failed again, so it reaches
            // the DLQ (R-BIND-6), without calling M365 again.
            Some(b) if b.state == GroupBindingState::Error && message.attempt >= b.attempt => {
                let code = b
                    .last_error
                    .as_ref()
                    .map_or_else(|| "error".to_owned(), |e| e.code.clone());
                return Ok(GroupOutcome::Failed {
                    group,
                    code,
                    exhausted: true,
                });
            }
            _ => return Ok(GroupOutcome::Superseded),
        };
        let result = self.sync(group, binding, message.attempt).await;
        report(&result);
        result
    }

    async fn load(&self, id: &GroupId) -> Result<Group> {
        self.groups
            .get(id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Group, id))
    }

    /// One mirroring run; `attempt` counts the retries already spent on the current change.
    async fn sync(
        &self,
        group: Group,
        mut binding: GroupBinding,
        attempt: u32,
    ) -> Result<GroupOutcome> {
        let tenant = binding.tenant_id.clone();
        let now = self.fx.clock.now();
        let op = OperationId::new(
            OperationKind::GroupMembers,
            &OperationSubject::Group(group.id.clone()),
            group.version,
        );
        let (mut m365_group, mut change) = match &binding.m365_group_id {
            Some(id) => (id.clone(), GroupChange::Mirrored),
            None => match self.establish(&tenant, &group, now).await? {
                Establish::Ready(id, change) => {
                    binding.m365_group_id = Some(id.clone());
                    // Saved at once: a retry must find this group, never create another.
                    self.save(&group.id, &binding).await?;
                    (id, change)
                }
                Establish::Busy(lease_until) => {
                    let wait = (lease_until - now).to_std().unwrap_or_default();
                    return self
                        .defer(&group.id, binding, &op, attempt, now, "in_progress", wait)
                        .await;
                }
                Establish::Failed(e) => {
                    return self.fail(&group.id, binding, &op, attempt, now, e).await;
                }
            },
        };
        let desired = self.desired(&tenant, &group).await?;
        let mut current = BTreeSet::new();
        // A group created by this run has no members (and listing it may meet replication lag).
        if change != GroupChange::Created {
            match self.current(&tenant, &m365_group).await {
                Ok(c) => current = c,
                // A group an earlier run created (or recreated) whose member adds met replication
                // lag may still answer 404 to reads (graph-spec §7.4): that is lag, not a
                // deletion, and recreating it would make a second group (its nickname lookup
                // lags too). Retried like the refused adds, within the same budget.
                Err(e)
                    if is_group_not_found(&e)
                        && binding.pending_reason.as_deref()
                            == Some(UnavailableReason::NotYetVisible.as_str()) =>
                {
                    let lag = Error::Unavailable {
                        component: "graph",
                        reason: UnavailableReason::NotYetVisible,
                        retry_after: None,
                        graph_request_id: e.graph_request_id().map(str::to_owned),
                        source: None,
                    };
                    return self.fail(&group.id, binding, &op, attempt, now, lag).await;
                }
                Err(e) if is_group_not_found(&e) => {
                    // Deleted in M365 (security groups are deleted for good, graph-spec §4): the
                    // binding still stands, so the group is adopted again or recreated.
                    match self.ensure_group(&tenant, &group).await {
                        Ok((found, again)) => {
                            tracing::info!(group.m365_id = %found.id, "bound m365 group was gone");
                            m365_group = found.id;
                            change = again;
                            binding.m365_group_id = Some(m365_group.clone());
                            self.save(&group.id, &binding).await?;
                        }
                        Err(e) => return self.fail(&group.id, binding, &op, attempt, now, e).await,
                    }
                    if change != GroupChange::Created {
                        match self.current(&tenant, &m365_group).await {
                            Ok(c) => current = c,
                            Err(e) => {
                                return self.fail(&group.id, binding, &op, attempt, now, e).await;
                            }
                        }
                    }
                }
                Err(e) => return self.fail(&group.id, binding, &op, attempt, now, e).await,
            }
        }
        let adds: Vec<M365ObjectId> = desired
            .members
            .keys()
            .filter(|id| !current.contains(*id))
            .cloned()
            .collect();
        let removes: Vec<M365ObjectId> = current
            .into_iter()
            .filter(|id| !desired.members.contains_key(id))
            .collect();
        for member in &adds {
            if let Err(e) = self
                .directory
                .add_group_member(&tenant, &m365_group, member)
                .await
            {
                binding.skipped.clone_from(&desired.skipped);
                return self.fail(&group.id, binding, &op, attempt, now, e).await;
            }
        }
        for member in &removes {
            if let Err(e) = self
                .directory
                .remove_group_member(&tenant, &m365_group, member)
                .await
            {
                binding.skipped.clone_from(&desired.skipped);
                return self.fail(&group.id, binding, &op, attempt, now, e).await;
            }
        }
        binding.state = GroupBindingState::Provisioned;
        binding.pending_reason = None;
        binding.attempt = 0;
        binding.last_error = None;
        binding.mirrored = desired.members.into_values().collect();
        binding.mirrored.sort();
        binding.skipped = desired.skipped;
        binding.synced_at = Some(now);
        let stored = self.save(&group.id, &binding).await?;
        Ok(GroupOutcome::Synced {
            group: stored,
            change,
            added: adds.len(),
            removed: removes.len(),
        })
    }

    /// Finds or creates the M365 group under a ledger claim, so two concurrent runs (a push and a
    /// retry) never create two groups; a finished create is remembered by the ledger with the
    /// group's id (a run that crashed before saving the binding finds it there).
    async fn establish(
        &self,
        tenant: &TenantId,
        group: &Group,
        now: DateTime<Utc>,
    ) -> Result<Establish> {
        let op = OperationId::new(
            OperationKind::GroupBind,
            &OperationSubject::Group(group.id.clone()),
            tenant,
        );
        match self.fx.claim(&op, now).await? {
            Claim::InProgress { lease_until } => return Ok(Establish::Busy(lease_until)),
            Claim::AlreadyDone(OperationOutcome::Succeeded { detail: Some(id) }) => {
                if let Ok(id) = M365ObjectId::parse(id) {
                    return Ok(Establish::Ready(id, GroupChange::Mirrored));
                }
            }
            // We never record other outcomes for this operation; the lookup below decides.
            Claim::AlreadyDone(_) | Claim::Claimed => {}
        }
        match self.ensure_group(tenant, group).await {
            Ok((found, change)) => {
                let done = OperationOutcome::Succeeded {
                    detail: Some(found.id.to_string()),
                };
                let expires =
                    now + TimeDelta::from_std(self.fx.policy.ledger_ttl).unwrap_or(TimeDelta::MAX);
                self.fx.ledger.complete(&op, &done, expires).await?;
                Ok(Establish::Ready(found.id, change))
            }
            Err(e) => {
                // The release failing too changes nothing: the lease expires on its own.
                drop(self.fx.ledger.release(&op).await);
                Ok(Establish::Failed(e))
            }
        }
    }

    /// Finds the security group by the derived nickname (adopt) or creates it.
    async fn ensure_group(
        &self,
        tenant: &TenantId,
        group: &Group,
    ) -> Result<(M365Group, GroupChange)> {
        let nickname = crate::model::mail_nickname_for(&group.id);
        match self
            .directory
            .find_group_by_mail_nickname(tenant, &nickname)
            .await?
        {
            Some(found) if found.is_security_group => Ok((found, GroupChange::Adopted)),
            // Adopting a mail-enabled or Microsoft 365 group would change what it is: refuse.
            Some(_) => Err(Conflict::AlreadyExists {
                entity: Entity::Group,
                id: nickname,
            }
            .into()),
            None => Ok((
                self.directory
                    .create_security_group(tenant, &group.name, &nickname)
                    .await?,
                GroupChange::Created,
            )),
        }
    }

    /// The members bound in `tenant` with an M365 account, and the others with why not.
    async fn desired(&self, tenant: &TenantId, group: &Group) -> Result<Desired> {
        let mut out = Desired::default();
        for user in &group.members {
            match mirror_target(self.fx.bindings.get(user).await?.as_ref(), tenant) {
                Ok(id) => {
                    out.members.insert(id, user.clone());
                }
                Err(reason) => out.skipped.push(SkippedMember {
                    user_id: user.clone(),
                    reason,
                }),
            }
        }
        Ok(out)
    }

    /// The M365 group's direct members, every page.
    async fn current(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
    ) -> Result<BTreeSet<M365ObjectId>> {
        let mut out = BTreeSet::new();
        let mut request = PageRequest::first(MAX_PAGE_LIMIT);
        loop {
            let page = self
                .directory
                .list_group_members(tenant, group, &request)
                .await?;
            out.extend(page.items);
            match page.next {
                Some(next) => request = PageRequest::after(next, MAX_PAGE_LIMIT),
                None => return Ok(out),
            }
        }
    }

    /// Writes `binding` onto the stored group, re-reading it when a concurrent write won.
    async fn save(&self, id: &GroupId, binding: &GroupBinding) -> Result<Group> {
        let mut tries = 0;
        loop {
            let mut group = self.load(id).await?;
            group.binding = Some(binding.clone());
            match self.groups.replace(&group, group.version).await {
                Err(Error::Conflict(Conflict::StaleVersion { .. }))
                    if tries + 1 < SAVE_ATTEMPTS =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Records a failure (never an event); retryable ones go to the retry queue with backoff
    /// until the budget runs out.
    async fn fail(
        &self,
        id: &GroupId,
        mut binding: GroupBinding,
        op: &OperationId,
        attempt: u32,
        now: DateTime<Utc>,
        error: Error,
    ) -> Result<GroupOutcome> {
        let code = error.code();
        let graph_request_id = error.graph_request_id().map(str::to_owned);
        self.fx
            .failures
            .record(&Failure {
                id: failure_id(op, id.as_str(), code, now),
                tenant_id: binding.tenant_id.clone(),
                user_id: None,
                operation_id: op.clone(),
                code: code.to_owned(),
                message: error.to_string(),
                graph_request_id: graph_request_id.clone(),
                at: now,
            })
            .await?;
        binding.last_error = Some(BindingError {
            code: code.to_owned(),
            message: error.to_string(),
            graph_request_id,
            at: now,
        });
        let retryable =
            error.is_retryable() || matches!(error, Error::ReauthorizationRequired { .. });
        // `attempt` counts the retries already spent: this failure is number `attempt + 1`, and
        // the wait is the one formula's for that retry (crate::policy::retry).
        let failures = attempt.saturating_add(1);
        if retryable && !self.fx.policy.exhausted(failures) {
            let wait = self
                .fx
                .policy
                .transient_wait(failures, error.retry_after(), self.fx.random);
            return self.defer(id, binding, op, attempt, now, code, wait).await;
        }
        binding.state = GroupBindingState::Error;
        binding.pending_reason = None;
        let group = self.save(id, &binding).await?;
        Ok(GroupOutcome::Failed {
            group,
            code: code.to_owned(),
            exhausted: retryable,
        })
    }

    /// Puts the rest of the run on the retry queue after `wait`; the binding shows `pending` with
    /// `reason`.
    #[allow(clippy::too_many_arguments)]
    async fn defer(
        &self,
        id: &GroupId,
        mut binding: GroupBinding,
        op: &OperationId,
        attempt: u32,
        now: DateTime<Utc>,
        reason: &str,
        wait: Duration,
    ) -> Result<GroupOutcome> {
        let next = attempt + 1;
        let retry = RetryMessage {
            operation_id: op.clone(),
            kind: OperationKind::GroupMembers,
            subject: OperationSubject::Group(id.clone()),
            attempt: next,
            not_before: now + TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX),
            reason: reason.to_owned(),
            actor: Some(self.actor.clone()),
        };
        binding.state = GroupBindingState::Pending;
        binding.pending_reason = Some(reason.to_owned());
        binding.attempt = next;
        let group = self.save(id, &binding).await?;
        self.fx.queue.send(&retry, retry.send_delay(now)).await?;
        Ok(GroupOutcome::Deferred { group, retry })
    }
}

/// The mirroring rule for one directory member with `binding` (R-GRP-1): the M365 account to put
/// in a group of `tenant`, or why the member is skipped. Mirrored: a binding in `tenant` that is
/// neither `unselected` nor `deleted_in_m365` and has an M365 account (so an unbound user, whose
/// account is `blocked`, and a `suspended` one stay members: they cannot sign in).
/// Group reconcile applies the same rule, so the two never disagree on what a group should hold.
///
/// # Errors
/// The [`SkipReason`] when the member is not mirrored.
pub(crate) fn mirror_target(
    binding: Option<&Binding>,
    tenant: &TenantId,
) -> std::result::Result<M365ObjectId, SkipReason> {
    match binding {
        None => Err(SkipReason::NotBound),
        Some(b) if b.state == BindingState::Unselected => Err(SkipReason::NotBound),
        Some(b) if &b.tenant_id != tenant => Err(SkipReason::OtherTenant),
        Some(b) if b.state == BindingState::DeletedInM365 => Err(SkipReason::NoAccount),
        Some(b) => b.m365_object_id.clone().ok_or(SkipReason::NoAccount),
    }
}

/// True when `error` says the M365 group does not exist.
fn is_group_not_found(error: &Error) -> bool {
    matches!(
        error,
        Error::NotFound {
            entity: Entity::Group,
            ..
        }
    )
}

/// One `info!` per operation with its outcome (ids of the enclosing span only).
fn report(result: &Result<GroupOutcome>) {
    match result {
        Ok(outcome) => {
            let (change, code) = match outcome {
                GroupOutcome::Synced { change, .. } => (Some(change.as_str()), None),
                GroupOutcome::Deferred { retry, .. } => (None, Some(retry.reason.as_str())),
                GroupOutcome::Failed { code, .. } => (None, Some(code.as_str())),
                _ => (None, None),
            };
            tracing::info!(
                outcome = outcome.as_str(),
                change,
                error.code = code,
                "group operation finished"
            );
        }
        Err(e) => tracing::warn!(
            error.code = e.code(),
            error.retryable = e.is_retryable(),
            "group operation not done"
        ),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::error::UnavailableReason;
    use crate::model::{Binding, mail_nickname_for};
    use crate::ports::TenantStore;
    use crate::ports::{BindingStore, Claim, Expect, GroupStore, OperationLedger};

    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{
        Fx, World, bound_user, gid, pending_user, throttled, uid, unavailable,
    };

    type TestSync<'a> = SyncGroup<'a, World>;

    fn sync(w: &World) -> TestSync<'_> {
        let fx: Fx<'_> = w.fx();
        SyncGroup {
            actor: &w.actor,
            fx,
            groups: &w.groups,
            tenants: &w.tenants,
            directory: &w.directory,
        }
    }

    async fn put_group(w: &World, id: &str, members: &[&str]) -> Group {
        let g = Group::new(
            gid(id),
            format!("Group {id}"),
            members.iter().map(|m| uid(m)),
        );
        match w.groups.get(&g.id).await.unwrap() {
            None => w.groups.create(&g).await.unwrap(),
            Some(old) => {
                let next = Group {
                    version: old.version,
                    binding: old.binding.clone(),
                    ..g
                };
                w.groups.replace(&next, old.version).await.unwrap()
            }
        }
    }

    fn m365_members(w: &World, id: &str) -> Vec<M365ObjectId> {
        let found = w
            .directory
            .groups_named(&w.tenant.id, &mail_nickname_for(&gid(id)));
        assert_eq!(found.len(), 1, "exactly one M365 group");
        let mut members = found[0].1.clone();
        members.sort();
        members
    }

    fn sorted(mut v: Vec<M365ObjectId>) -> Vec<M365ObjectId> {
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_user_bound_after_its_group_joins_the_m365_group_at_once() {
        // R-GRP-1 (membership follows a bind, not only the next reconcile)
        let w = World::new().await;
        let a = bound_user(&w, "alice").await;
        w.user("bob").await;
        put_group(&w, "sales", &["alice", "bob"]).await;
        put_group(&w, "support", &["alice"]).await;
        put_group(&w, "unbound", &["bob"]).await;
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        sync(&w).bind(&gid("support"), &w.tenant.id).await.unwrap();
        assert_eq!(m365_members(&w, "sales"), vec![a.clone()]);
        w.bind("bob").await;
        let bob = w.binding("bob").await;
        let b = World::object_id(&bob);
        let followed = sync(&w).follow_binds(&[bob]).await.unwrap();
        // Only the bound group listing Bob is pushed; the others are left alone.
        assert_eq!(
            followed
                .iter()
                .map(|(g, o)| (g.as_str().to_owned(), o.as_str()))
                .collect::<Vec<_>>(),
            vec![("sales".to_owned(), "done")]
        );
        assert_eq!(m365_members(&w, "sales"), sorted(vec![a, b]));
        assert!(
            w.directory
                .groups_named(&w.tenant.id, &mail_nickname_for(&gid("unbound")))
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_bind_reads_only_the_groups_of_the_bound_user_not_every_group() {
        // R-GRP-1 (the follow-up of a bind finds the user's groups by member, issue 13)
        let w = World::new().await;
        let _alice = bound_user(&w, "alice").await;
        w.user("bob").await;
        put_group(&w, "sales", &["alice", "bob"]).await;
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        // Fifty unrelated groups, bound to the same tenant, that do not list Bob.
        for n in 0..50 {
            let id = format!("other-{n:02}");
            put_group(&w, &id, &["alice"]).await;
            sync(&w).bind(&gid(&id), &w.tenant.id).await.unwrap();
        }
        w.bind("bob").await;
        let bob = w.binding("bob").await;
        let before = w.groups.groups_read();
        let followed = sync(&w).follow_binds(&[bob]).await.unwrap();
        let read = w.groups.groups_read() - before;
        assert_eq!(
            followed
                .iter()
                .map(|(g, o)| (g.as_str().to_owned(), o.as_str()))
                .collect::<Vec<_>>(),
            vec![("sales".to_owned(), "done")]
        );
        // Finding Bob's one group reads that group only; mirroring it may re-read it, never the
        // fifty others (listing them all would read 51).
        assert!(
            read <= 2,
            "read {read} group records for a user in one group"
        );
    }

    #[tokio::test]
    async fn bindings_that_are_not_provisioned_are_not_followed() {
        // R-GRP-1 (only a bound account can join)
        let w = World::new().await;
        w.user("bob").await;
        put_group(&w, "sales", &["bob"]).await;
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let mut pending = Binding::pending(uid("bob"), w.tenant.id.clone(), "throttled");
        pending.version = 1;
        assert!(sync(&w).follow_binds(&[pending]).await.unwrap().is_empty());
        assert!(sync(&w).follow_binds(&[]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn binding_a_group_creates_a_security_group_with_its_bound_members() {
        // R-GRP-1
        let w = World::new().await;
        let a = bound_user(&w, "alice").await;
        let b = bound_user(&w, "bob").await;
        put_group(&w, "sales", &["alice", "bob"]).await;
        let outcome = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let GroupOutcome::Synced {
            group,
            change,
            added,
            removed,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!((change, added, removed), (GroupChange::Created, 2, 0));
        let binding = group.binding.unwrap();
        assert_eq!(binding.state, GroupBindingState::Provisioned);
        assert_eq!(binding.mirrored, vec![uid("alice"), uid("bob")]);
        let found = w.directory.groups_named(&w.tenant.id, "m365sync-sales");
        assert!(found[0].0.is_security_group);
        assert_eq!(Some(found[0].0.id.clone()), binding.m365_group_id);
        assert_eq!(m365_members(&w, "sales"), sorted(vec![a, b]));
    }

    #[tokio::test]
    async fn binding_adopts_an_existing_security_group_with_the_derived_nickname_and_mirrors_it() {
        // R-GRP-1 (adopt, and removal of members that are not bound members)
        let w = World::new().await;
        let a = bound_user(&w, "alice").await;
        let stranger = bound_user(&w, "stranger").await;
        let existing = w
            .directory
            .seed_group(
                &w.tenant.id,
                "Sales (old)",
                "m365sync-sales",
                true,
                std::slice::from_ref(&stranger),
            )
            .unwrap();
        put_group(&w, "sales", &["alice"]).await;
        let outcome = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let GroupOutcome::Synced {
            group,
            change,
            added,
            removed,
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!((change, added, removed), (GroupChange::Adopted, 1, 1));
        assert_eq!(group.binding.unwrap().m365_group_id, Some(existing));
        assert_eq!(m365_members(&w, "sales"), vec![a]);
    }

    #[tokio::test]
    async fn a_mail_enabled_group_with_the_nickname_is_not_adopted() {
        // R-GRP-1 (only security groups are synced)
        let w = World::new().await;
        w.directory
            .seed_group(&w.tenant.id, "Sales", "m365sync-sales", false, &[])
            .unwrap();
        put_group(&w, "sales", &[]).await;
        let outcome = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        assert!(
            matches!(&outcome, GroupOutcome::Failed { code, exhausted: false, .. } if code == "already_exists"),
            "{outcome:?}"
        );
        let binding = outcome.group().unwrap().binding.clone().unwrap();
        assert_eq!(binding.state, GroupBindingState::Error);
        assert_eq!(binding.m365_group_id, None);
    }

    #[tokio::test]
    async fn members_not_bound_to_the_tenant_are_skipped_and_reported() {
        // R-GRP-1 (only bound members are mirrored)
        let w = World::new().await;
        let a = bound_user(&w, "alice").await;
        w.user("carol").await; // never bound
        w.user("dave").await;
        // Bound to another tenant.
        let mut elsewhere = Binding::pending(uid("dave"), TenantId::generate(), "x");
        elsewhere.state = BindingState::Provisioned;
        w.bindings.put(&elsewhere, Expect::Absent).await.unwrap();
        // Pending, no account yet.
        pending_user(&w, "erin", "throttled").await;
        put_group(&w, "sales", &["alice", "carol", "dave", "erin", "ghost"]).await;
        let outcome = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let binding = outcome.group().unwrap().binding.clone().unwrap();
        assert_eq!(binding.state, GroupBindingState::Provisioned);
        assert_eq!(binding.mirrored, vec![uid("alice")]);
        let skipped: Vec<(String, SkipReason)> = binding
            .skipped
            .iter()
            .map(|s| (s.user_id.to_string(), s.reason))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("carol".into(), SkipReason::NotBound),
                ("dave".into(), SkipReason::OtherTenant),
                ("erin".into(), SkipReason::NoAccount),
                ("ghost".into(), SkipReason::NotBound),
            ]
        );
        assert_eq!(m365_members(&w, "sales"), vec![a]);
    }

    #[tokio::test]
    async fn a_directory_membership_change_pushes_adds_and_removes_to_the_bound_group() {
        // R-GRP-1 (membership changes follow directory group changes)
        let w = World::new().await;
        let a = bound_user(&w, "alice").await;
        let b = bound_user(&w, "bob").await;
        let c = bound_user(&w, "carol").await;
        put_group(&w, "sales", &["alice", "bob"]).await;
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        put_group(&w, "sales", &["bob", "carol"]).await;
        let outcome = sync(&w).push(&gid("sales")).await.unwrap();
        assert!(
            matches!(
                outcome,
                GroupOutcome::Synced {
                    change: GroupChange::Mirrored,
                    added: 1,
                    removed: 1,
                    ..
                }
            ),
            "{outcome:?}"
        );
        assert_eq!(m365_members(&w, "sales"), sorted(vec![b, c]));
        assert!(!m365_members(&w, "sales").contains(&a));
        // Nothing changed: a second push changes nothing in M365.
        let again = sync(&w).push(&gid("sales")).await.unwrap();
        assert!(
            matches!(
                again,
                GroupOutcome::Synced {
                    added: 0,
                    removed: 0,
                    ..
                }
            ),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_create_held_by_another_run_is_waited_for_and_never_doubled() {
        // R-GRP-1, R-BIND-6 (no second security group when two runs race)
        let mut w = World::new().await;
        let a = bound_user(&w, "alice").await;
        put_group(&w, "sales", &["alice"]).await;
        let op = OperationId::new(
            OperationKind::GroupBind,
            &OperationSubject::Group(gid("sales")),
            &w.tenant.id,
        );
        let now = w.now();
        let held = w
            .ledger
            .claim(&op, now, now + TimeDelta::minutes(5))
            .await
            .unwrap();
        assert_eq!(held, Claim::Claimed);
        let outcome = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let GroupOutcome::Deferred { retry, .. } = &outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(retry.reason, "in_progress");
        assert!(
            w.directory
                .groups_named(&w.tenant.id, "m365sync-sales")
                .is_empty()
        );
        // The other run never finishes: its lease runs out and the retry takes over.
        w.drain().await;
        assert_eq!(m365_members(&w, "sales"), vec![a]);
        let binding = w
            .groups
            .get(&gid("sales"))
            .await
            .unwrap()
            .unwrap()
            .binding
            .unwrap();
        assert_eq!(binding.state, GroupBindingState::Provisioned);
    }

    #[tokio::test]
    async fn a_group_created_by_a_run_that_crashed_before_saving_is_reused() {
        // R-GRP-1 (the ledger remembers the created group's id)
        let w = World::new().await;
        put_group(&w, "sales", &[]).await;
        let first = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let created = first
            .group()
            .unwrap()
            .binding
            .clone()
            .unwrap()
            .m365_group_id;
        // Lose the saved binding, as if the run had crashed right after the create.
        let mut g = w.stored_group("sales").await;
        g.binding = None;
        w.groups.replace(&g, g.version).await.unwrap();
        let again = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        assert_eq!(
            again
                .group()
                .unwrap()
                .binding
                .clone()
                .unwrap()
                .m365_group_id,
            created
        );
        assert_eq!(
            w.directory
                .groups_named(&w.tenant.id, "m365sync-sales")
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_bound_group_deleted_in_m365_is_recreated_with_its_members_at_the_next_push() {
        // R-GRP-1 (the mirror converges even after an admin deleted the group in M365)
        let w = World::new().await;
        let a = bound_user(&w, "alice").await;
        put_group(&w, "sales", &["alice"]).await;
        let first = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let old = first
            .group()
            .unwrap()
            .binding
            .clone()
            .unwrap()
            .m365_group_id
            .unwrap();
        w.directory.delete_group(&w.tenant.id, &old);
        let outcome = sync(&w).push(&gid("sales")).await.unwrap();
        assert!(
            matches!(
                outcome,
                GroupOutcome::Synced {
                    change: GroupChange::Created,
                    added: 1,
                    ..
                }
            ),
            "{outcome:?}"
        );
        let new = outcome
            .group()
            .unwrap()
            .binding
            .clone()
            .unwrap()
            .m365_group_id
            .unwrap();
        assert_ne!(new, old);
        assert_eq!(m365_members(&w, "sales"), vec![a]);
    }

    #[tokio::test]
    async fn a_push_on_an_unbound_group_does_nothing_in_m365() {
        // R-GRP-1
        let w = World::new().await;
        put_group(&w, "sales", &[]).await;
        let calls = w.directory.calls();
        let outcome = sync(&w).push(&gid("sales")).await.unwrap();
        assert!(matches!(outcome, GroupOutcome::NotBound { .. }));
        assert_eq!(w.directory.calls(), calls);
    }

    #[tokio::test]
    async fn replication_lag_on_a_new_group_is_retried_from_the_queue_until_mirrored() {
        // R-GRP-1, R-BIND-6 (replication-lag errors on a new group are retried)
        let mut w = World::new().await;
        let a = bound_user(&w, "alice").await;
        w.clock.advance(TimeDelta::minutes(10));
        w.directory.set_replication_lag(TimeDelta::seconds(30));
        put_group(&w, "sales", &["alice"]).await;
        let outcome = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let GroupOutcome::Deferred { group, retry } = &outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(retry.kind, OperationKind::GroupMembers);
        assert_eq!(retry.reason, UnavailableReason::NotYetVisible.as_str());
        let pending = group.binding.clone().unwrap();
        assert_eq!(pending.state, GroupBindingState::Pending);
        assert!(
            pending.m365_group_id.is_some(),
            "the new group is remembered"
        );
        let outcomes = w.drain().await;
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, RetryOutcome::GroupRan(g) if matches!(**g, GroupOutcome::Synced { added: 1, .. }))),
            "{outcomes:?}"
        );
        let stored = w.stored_group("sales").await;
        let binding = stored.binding.unwrap();
        assert_eq!(binding.state, GroupBindingState::Provisioned);
        assert_eq!(binding.attempt, 0);
        // Still one group: no retry created a second one.
        assert_eq!(m365_members(&w, "sales"), vec![a]);
    }

    #[tokio::test]
    async fn a_group_whose_retries_run_out_shows_error_and_dead_letters() {
        // R-GRP-1, R-BIND-6 (after the retry budget: error with the reason, DLQ)
        let mut w = World::with_max_attempts(2).await;
        bound_user(&w, "alice").await;
        put_group(&w, "sales", &["alice"]).await;
        for _ in 0..10 {
            w.directory.fail_next_call(throttled());
        }
        let first = sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        assert!(matches!(first, GroupOutcome::Deferred { .. }), "{first:?}");
        w.drain().await;
        assert_eq!(w.dead_letters.len(), 1);
        let binding = w
            .groups
            .get(&gid("sales"))
            .await
            .unwrap()
            .unwrap()
            .binding
            .unwrap();
        assert_eq!(binding.state, GroupBindingState::Error);
        assert_eq!(binding.last_error.unwrap().code, "throttled");
        w.directory.clear_faults();
    }

    #[tokio::test]
    async fn a_group_bound_to_one_tenant_cannot_be_bound_to_another() {
        // R-GRP-1, R-SAFE-1
        let w = World::new().await;
        put_group(&w, "sales", &[]).await;
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let mut other = crate::model::Tenant::pending(TenantId::generate(), "Fabrikam");
        other.status = TenantStatus::Active;
        let other = w.tenants.create(&other).await.unwrap();
        let err = sync(&w).bind(&gid("sales"), &other.id).await.unwrap_err();
        assert_eq!(err.code(), "bound_elsewhere");
        let unknown = sync(&w).bind(&gid("nope"), &w.tenant.id).await.unwrap_err();
        assert_eq!(unknown.code(), "not_found");
    }

    #[tokio::test]
    async fn a_group_cannot_be_bound_to_a_tenant_that_is_not_active() {
        // R-GRP-1, R-CONN-5
        let w = World::new().await;
        put_group(&w, "sales", &[]).await;
        w.set_tenant_status(TenantStatus::Deauthorized).await;
        let err = sync(&w)
            .bind(&gid("sales"), &w.tenant.id)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "tenant_not_active");
        assert!(w.stored_group("sales").await.binding.is_none());
    }

    #[tokio::test]
    async fn a_retry_of_a_group_synced_since_is_superseded_and_touches_nothing() {
        // R-GRP-1, R-BIND-6 (duplicate delivery is harmless)
        let w = World::new().await;
        put_group(&w, "sales", &[]).await;
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let subject = OperationSubject::Group(gid("sales"));
        let message = RetryMessage {
            operation_id: OperationId::new(OperationKind::GroupMembers, &subject, 1),
            kind: OperationKind::GroupMembers,
            subject,
            attempt: 1,
            not_before: w.now(),
            reason: "not_yet_visible".into(),
            actor: None,
        };
        let calls = w.directory.calls();
        let outcome = w.dispatcher().dispatch(&message).await.unwrap();
        assert!(
            matches!(&outcome, RetryOutcome::GroupRan(g) if **g == GroupOutcome::Superseded),
            "{outcome:?}"
        );
        assert_eq!(w.directory.calls(), calls);
        let _ = unavailable(UnavailableReason::Service);
    }
}
