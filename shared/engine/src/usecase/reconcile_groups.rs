//! Group reconcile (R-REC-1, R-GRP-1): finds the bound groups of a tenant that no longer mirror
//! their directory group and re-mirrors each with [`super::group_sync::SyncGroup::push`], the same
//! idempotent operation a directory change runs. Each repair in the plan says why
//! ([`RepairReason`]):
//!
//! - `membership_drift`: the groups delta since the saved link shows a membership change that does
//!   not match the directory (a user added who is not a bound member, a bound member removed; on a
//!   full round, any difference). Our own mirroring shows up in the next round as adds of expected
//!   members and removals of unexpected ones, which are not drift, so a second run finds nothing.
//! - `deleted_in_m365`: the delta reports the bound M365 group deleted (`@removed`; security
//!   groups are deleted for good, graph-spec §4.5). The push adopts a security group with the
//!   derived nickname or creates a new one with the bound members, and saves its id on the
//!   binding. A new group meets replication lag (graph-spec §4.2, §7.4): its member adds may be
//!   refused for a while, so `SyncGroup` queues the rest as a retry (binding `pending`); the repair
//!   still counts as applied. The next round shows the new group with its expected members: not
//!   drift. A deletion made before a full round (first run, or after a 410) is not seen: such a
//!   round lists only live groups; the group's next push recreates it then.
//! - `members_now_bound`: members recorded as skipped at the group's last sync (`not_bound`,
//!   `no_account`) that are mirrorable now (bound in this tenant with an M365 account, the rule of
//!   `group_sync::mirror_target`): a user bound after its group joins it here.
//! - `mirrored_account_deleted`: members mirrored at the last sync whose binding is now
//!   `deleted_in_m365`. M365 keeps a soft-deleted user's memberships (graph-spec §3.5), so nothing
//!   is wrong in M365; the push brings the group's record up to date (the member becomes skipped
//!   `no_account`), so that a re-bind with a new account is caught as `members_now_bound`.
//!   Unconfirmed (graph-spec does not say): whether the member listing shows a soft-deleted user;
//!   the emulator hides it (the push then removes nothing), if Graph shows it the push removes it.
//! - `directory_change`: the directory group's members differ from those the last sync recorded
//!   (mirrored or skipped), i.e. a `PUT /groups/{groupId}` whose push never ran to the end.
//!
//! The last three read the group's binding record, not M365, and apply to `provisioned` group
//! bindings only (a `pending` one has a retry queued that mirrors the group as it is then; an
//! `error` one waits for a re-bind, so a permanent failure is not retried every run).
//!
//! Cost: DynamoDB reads every run — the directory groups (one listing of every group, filtered
//! here: `GroupStore` has no by-tenant query), the bindings of skipped members, and one query of
//! the tenant's `deleted_in_m365` bindings when a bound group has mirrored members. Graph: the delta pages, plus, per repaired group, the member listing and the
//! writes of `SyncGroup`. An unchanged tenant costs its delta pages only.
//!
//! Safeguard (R-REC-3): a pass is planned ([`ReconcileGroups::plan_pass`]) before it is applied
//! ([`ReconcileGroups::apply_pass`]); the members a plan would remove (each repair's `unexpected`)
//! count toward the round's safeguard together with the users' blocks, suspensions and removals
//! ([`super::reconcile_pass`]), and a tripped pass's group repairs are held with its user repairs
//! ([`super::held`]). Re-mirroring never blocks, suspends or removes an account, and recreating a
//! deleted group only restores the access its bound members had. An admin who wants the M365
//! group gone unbinds the directory group: the binding, not the M365 object, is the source of
//! truth.
//!
//! Not covered: a skipped member bound to another tenant (`other_tenant`) whose binding moves here
//! joins at the group's next push; a mirrored member whose binding became `unselected` (the tenant
//! was deauthorized, so this does not run) is left as is.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::Result;
use crate::model::{
    BindingState, Group, GroupBinding, GroupBindingState, GroupId, M365ObjectId, PageRequest,
    SkipReason, TenantId, UserId,
};
use crate::ports::Ports;
use crate::ports::{
    BindingStore, DeltaLink, DeltaStream, GroupDeltas, GroupStore, ReconcileCursors,
};

use super::group_sync::{GroupOutcome, SyncGroup, mirror_target};

/// Why a bound group is re-mirrored (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairReason {
    /// The groups delta shows a membership that does not match the directory.
    MembershipDrift,
    /// The M365 group was deleted: it is adopted again or recreated with its members.
    DeletedInM365,
    /// Members skipped at the last sync can be mirrored now.
    MembersNowBound,
    /// Members mirrored at the last sync had their account deleted in M365.
    MirroredAccountDeleted,
    /// The directory group's members changed since the last sync.
    DirectoryChange,
}

impl RepairReason {
    /// The snake_case name (JSON, logs).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MembershipDrift => "membership_drift",
            Self::DeletedInM365 => "deleted_in_m365",
            Self::MembersNowBound => "members_now_bound",
            Self::MirroredAccountDeleted => "mirrored_account_deleted",
            Self::DirectoryChange => "directory_change",
        }
    }
}

/// One bound group to re-mirror.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRepair {
    /// The directory group.
    pub group_id: GroupId,
    /// Its M365 security group (for `deleted_in_m365`, the deleted one).
    pub m365_group_id: M365ObjectId,
    /// Why.
    pub reason: RepairReason,
    /// Members to remove: M365 members that are not bound members (`membership_drift`), members
    /// whose account was deleted (`mirrored_account_deleted`), or members that left the directory
    /// group (`directory_change`).
    pub unexpected: usize,
    /// Members to add: bound members missing from the M365 group (`membership_drift`), skipped
    /// members now mirrorable (`members_now_bound`), or members that joined the directory group
    /// (`directory_change`, whether bound or not).
    pub missing: usize,
    /// Same as `reason == deleted_in_m365` (kept for API compatibility).
    pub deleted_in_m365: bool,
}

impl GroupRepair {
    fn new(group: &Group, m365: M365ObjectId, reason: RepairReason) -> Self {
        Self {
            group_id: group.id.clone(),
            m365_group_id: m365,
            reason,
            unexpected: 0,
            missing: 0,
            deleted_in_m365: reason == RepairReason::DeletedInM365,
        }
    }
}

/// What a group reconcile run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReconcileReport {
    /// This run listed every group (first run, or Graph lost the delta state).
    pub full_sync: bool,
    /// Delta pages read.
    pub pages: u32,
    /// The delta round finished.
    pub complete: bool,
    /// Bound groups to re-mirror, each once, with the reason.
    pub plan: Vec<GroupRepair>,
    /// Groups re-mirrored (or queued for a retry by `SyncGroup`, e.g. a recreated group's
    /// replication lag).
    pub applied: usize,
    /// Groups whose re-mirroring failed.
    pub failed: usize,
}

/// A groups pass read and planned, not applied yet.
#[derive(Debug)]
pub(crate) struct GroupsPass {
    /// The plan (nothing applied yet).
    pub(crate) report: GroupReconcileReport,
    /// The link the pass started from.
    pub(crate) start: Option<String>,
    /// The link to save past it.
    pub(crate) save: Option<String>,
}

impl GroupsPass {
    /// Members the plan would remove from M365 groups (R-REC-3: counted by the safeguard).
    pub(crate) fn removals(&self) -> usize {
        self.report.plan.iter().map(|r| r.unexpected).sum()
    }
}

#[derive(Debug, Default)]
struct Seen {
    removed: bool,
    added: BTreeSet<M365ObjectId>,
    dropped: BTreeSet<M365ObjectId>,
}

use_case! {
    /// The group reconcile use case.
    pub struct ReconcileGroups {
        ports: [deltas: GroupDeltas = group_deltas, cursors: Cursors],
        built: [
            /// The group mirroring of R-GRP-1 (its ports are read here too).
            sync: SyncGroup<'a, P> = SyncGroup::new,
        ],
        extra: [
            /// Delta pages read by one invocation.
            max_pages: u32,
        ],
    }
}

impl<P: Ports> ReconcileGroups<'_, P> {
    /// Reads the groups delta and the bound groups' records, plans the re-mirroring of the groups
    /// that need it and, unless `dry_run`, runs it and saves the link. A dry run only reads.
    ///
    /// # Errors
    /// Delta and store read failures (nothing is saved then).
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_groups", tenant.id = %tenant, dry_run))]
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<GroupReconcileReport> {
        let pass = self.plan_pass(tenant).await?;
        if dry_run {
            return Ok(pass.report);
        }
        Ok(self.apply_pass(tenant, pass).await?.0)
    }

    /// Reads this pass's delta pages and plans the re-mirroring, writing nothing.
    ///
    /// # Errors
    /// Delta and store read failures.
    pub(crate) async fn plan_pass(&self, tenant: &TenantId) -> Result<GroupsPass> {
        let start = self.cursors.get(tenant, DeltaStream::Groups).await?;
        let mut report = GroupReconcileReport {
            full_sync: start.is_none(),
            ..GroupReconcileReport::default()
        };
        let mut seen: BTreeMap<M365ObjectId, Seen> = BTreeMap::new();
        let start_link = start.clone();
        let mut link = start;
        let mut save = None;
        while report.pages < self.max_pages.max(1) {
            let page = self.deltas.groups_delta(tenant, link.as_deref()).await?;
            report.pages += 1;
            if page.restarted {
                report.full_sync = true;
                seen.clear();
            }
            for change in page.changes {
                let entry = seen.entry(change.id).or_default();
                entry.removed |= change.removed;
                for id in change.added {
                    entry.dropped.remove(&id);
                    entry.added.insert(id);
                }
                for id in change.dropped {
                    entry.added.remove(&id);
                    entry.dropped.insert(id);
                }
            }
            match page.next {
                DeltaLink::More(next) => link = Some(next),
                DeltaLink::Done(done) => {
                    save = Some(done);
                    report.complete = true;
                    break;
                }
            }
        }
        if !report.complete {
            save = link;
        }
        // Read lazily: only when some bound group has mirrored members.
        let mut deleted_accounts = None;
        for group in self.bound_groups(tenant).await? {
            let Some(binding) = group.binding.as_ref() else {
                continue;
            };
            let Some(m365) = binding.m365_group_id.clone() else {
                continue;
            };
            let mut repair = match seen.get(&m365) {
                Some(change) => {
                    self.drift(tenant, &group, m365.clone(), change, report.full_sync)
                        .await?
                }
                None => None,
            };
            if repair.is_none() && binding.state == GroupBindingState::Provisioned {
                repair = self
                    .stale(tenant, &group, binding, m365, &mut deleted_accounts)
                    .await?;
            }
            report.plan.extend(repair);
        }
        Ok(GroupsPass {
            report,
            start: start_link,
            save,
        })
    }

    /// Re-mirrors the planned groups and saves the link past the pass; answers the report and
    /// whether the link was saved (a retryable failure keeps the cursor).
    ///
    /// # Errors
    /// Saving the cursor failed.
    pub(crate) async fn apply_pass(
        &self,
        tenant: &TenantId,
        pass: GroupsPass,
    ) -> Result<(GroupReconcileReport, bool)> {
        let GroupsPass {
            mut report, save, ..
        } = pass;
        let mut hold_cursor = false;
        for repair in &report.plan {
            match self.sync.push(&repair.group_id).await {
                Ok(GroupOutcome::Failed { .. }) => report.failed += 1,
                Ok(_) => report.applied += 1,
                Err(e) => {
                    report.failed += 1;
                    hold_cursor |= e.is_retryable();
                }
            }
        }
        let mut saved = false;
        if !hold_cursor && let Some(link) = save {
            self.cursors.put(tenant, DeltaStream::Groups, &link).await?;
            saved = true;
        }
        let count = |reason| report.plan.iter().filter(|r| r.reason == reason).count();
        tracing::info!(
            full_sync = report.full_sync,
            pages = report.pages,
            planned = report.plan.len(),
            drift = count(RepairReason::MembershipDrift),
            deleted_in_m365 = count(RepairReason::DeletedInM365),
            members_now_bound = count(RepairReason::MembersNowBound),
            mirrored_account_deleted = count(RepairReason::MirroredAccountDeleted),
            directory_change = count(RepairReason::DirectoryChange),
            applied = report.applied,
            failed = report.failed,
            "group reconcile finished"
        );
        Ok((report, saved))
    }

    async fn bound_groups(&self, tenant: &TenantId) -> Result<Vec<Group>> {
        let mut out = Vec::new();
        let mut request = PageRequest::first(1000);
        loop {
            let page = self.sync.groups.list(&request).await?;
            out.extend(
                page.items
                    .into_iter()
                    .filter(|g| g.binding.as_ref().is_some_and(|b| &b.tenant_id == tenant)),
            );
            match page.next {
                Some(next) => request = PageRequest::after(next, 1000),
                None => return Ok(out),
            }
        }
    }

    /// The tenant's users whose binding is `deleted_in_m365` (one index query, paged).
    async fn deleted_accounts(&self, tenant: &TenantId) -> Result<BTreeSet<UserId>> {
        let mut out = BTreeSet::new();
        let mut request = PageRequest::first(1000);
        loop {
            let page = self
                .sync
                .fx
                .bindings
                .list_by_tenant(tenant, Some(BindingState::DeletedInM365), &request)
                .await?;
            out.extend(page.items.into_iter().map(|b| b.user_id));
            match page.next {
                Some(next) => request = PageRequest::after(next, 1000),
                None => return Ok(out),
            }
        }
    }

    /// The M365 accounts `group` should hold (`SyncGroup`'s rule).
    async fn expected(&self, tenant: &TenantId, group: &Group) -> Result<BTreeSet<M365ObjectId>> {
        let mut out = BTreeSet::new();
        for user in &group.members {
            if let Ok(id) = mirror_target(self.sync.fx.bindings.get(user).await?.as_ref(), tenant) {
                out.insert(id);
            }
        }
        Ok(out)
    }

    /// A repair for what the groups delta says about the bound group.
    async fn drift(
        &self,
        tenant: &TenantId,
        group: &Group,
        m365: M365ObjectId,
        change: &Seen,
        full: bool,
    ) -> Result<Option<GroupRepair>> {
        if change.removed {
            return Ok(Some(GroupRepair::new(
                group,
                m365,
                RepairReason::DeletedInM365,
            )));
        }
        let expected = self.expected(tenant, group).await?;
        let unexpected = change.added.difference(&expected).count();
        let missing = if full {
            expected.difference(&change.added).count()
        } else {
            change.dropped.intersection(&expected).count()
        };
        Ok((unexpected > 0 || missing > 0).then(|| GroupRepair {
            unexpected,
            missing,
            ..GroupRepair::new(group, m365, RepairReason::MembershipDrift)
        }))
    }

    /// A repair for a group whose binding record (from its last sync) is out of date; reads
    /// DynamoDB only.
    async fn stale(
        &self,
        tenant: &TenantId,
        group: &Group,
        binding: &GroupBinding,
        m365: M365ObjectId,
        deleted_accounts: &mut Option<BTreeSet<UserId>>,
    ) -> Result<Option<GroupRepair>> {
        let recorded: BTreeSet<&UserId> = binding
            .mirrored
            .iter()
            .chain(binding.skipped.iter().map(|s| &s.user_id))
            .collect();
        let joined = group
            .members
            .iter()
            .filter(|u| !recorded.contains(u))
            .count();
        let left = recorded
            .iter()
            .filter(|u| !group.members.contains(**u))
            .count();
        if joined > 0 || left > 0 {
            return Ok(Some(GroupRepair {
                unexpected: left,
                missing: joined,
                ..GroupRepair::new(group, m365, RepairReason::DirectoryChange)
            }));
        }
        let mut now_bound = 0;
        for skipped in binding
            .skipped
            .iter()
            .filter(|s| matches!(s.reason, SkipReason::NotBound | SkipReason::NoAccount))
        {
            let current = self.sync.fx.bindings.get(&skipped.user_id).await?;
            if mirror_target(current.as_ref(), tenant).is_ok() {
                now_bound += 1;
            }
        }
        if now_bound > 0 {
            return Ok(Some(GroupRepair {
                missing: now_bound,
                ..GroupRepair::new(group, m365, RepairReason::MembersNowBound)
            }));
        }
        if binding.mirrored.is_empty() {
            return Ok(None);
        }
        let deleted = match deleted_accounts.take() {
            Some(set) => set,
            None => self.deleted_accounts(tenant).await?,
        };
        let gone = binding
            .mirrored
            .iter()
            .filter(|u| deleted.contains(*u))
            .count();
        *deleted_accounts = Some(deleted);
        Ok((gone > 0).then(|| GroupRepair {
            unexpected: gone,
            ..GroupRepair::new(group, m365, RepairReason::MirroredAccountDeleted)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::M365ObjectId;
    use crate::model::SkippedMember;
    use crate::ports::Directory;
    use crate::ports::GroupMembershipChange;
    use crate::testing::{FakeGroupDeltas, FakeReconcileCursors};
    use crate::usecase::testkit::{World, bound_user, gid, pending_user, uid};

    /// A directory group `sales` of alice and bob, bound and mirrored; the M365 group id.
    async fn bound_group(w: &World) -> M365ObjectId {
        bound_user(w, "alice").await;
        bound_user(w, "bob").await;
        let g = Group::new(gid("sales"), "Sales", [uid("alice"), uid("bob")]);
        w.groups.create(&g).await.unwrap();
        let outcome = sync(w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        assert!(
            matches!(outcome, GroupOutcome::Synced { .. }),
            "{outcome:?}"
        );
        w.stored_group("sales")
            .await
            .binding
            .unwrap()
            .m365_group_id
            .unwrap()
    }

    type TestSync<'a> = SyncGroup<'a, World>;

    fn sync(w: &World) -> TestSync<'_> {
        SyncGroup {
            actor: &w.actor,
            fx: w.fx(),
            groups: &w.groups,
            tenants: &w.tenants,
            directory: &w.directory,
        }
    }

    fn change(
        id: &M365ObjectId,
        added: &[&M365ObjectId],
        dropped: &[&M365ObjectId],
    ) -> GroupMembershipChange {
        GroupMembershipChange {
            id: id.clone(),
            removed: false,
            added: added.iter().map(|m| (*m).clone()).collect(),
            dropped: dropped.iter().map(|m| (*m).clone()).collect(),
        }
    }

    type TestRun<'a> = ReconcileGroups<'a, World>;

    fn reconciler<'a>(
        w: &'a World,
        deltas: &'a FakeGroupDeltas,
        cursors: &'a FakeReconcileCursors,
    ) -> TestRun<'a> {
        ReconcileGroups {
            actor: &w.actor,
            sync: sync(w),
            deltas,
            cursors,
            max_pages: 10,
        }
    }

    /// Cursors of a tenant whose earlier round was read: the next one is incremental.
    async fn seeded(w: &World) -> FakeReconcileCursors {
        let cursors = FakeReconcileCursors::new();
        cursors
            .put(&w.tenant.id, DeltaStream::Groups, "fake-group-delta:seed")
            .await
            .unwrap();
        cursors
    }

    fn removed(id: &M365ObjectId) -> GroupMembershipChange {
        GroupMembershipChange {
            id: id.clone(),
            removed: true,
            added: Vec::new(),
            dropped: Vec::new(),
        }
    }

    async fn sales(w: &World) -> Group {
        w.stored_group("sales").await
    }

    fn binding_of(group: &Group) -> GroupBinding {
        group.binding.clone().unwrap()
    }

    fn reasons(report: &GroupReconcileReport) -> Vec<(RepairReason, usize, usize)> {
        report
            .plan
            .iter()
            .map(|r| (r.reason, r.unexpected, r.missing))
            .collect()
    }

    async fn members(w: &World, group: &M365ObjectId) -> BTreeSet<M365ObjectId> {
        w.directory
            .list_group_members(&w.tenant.id, group, &PageRequest::first(100))
            .await
            .unwrap()
            .items
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn a_member_added_in_m365_is_removed_by_one_run_and_the_next_run_finds_nothing() {
        // R-REC-1 (group membership drift), R-GRP-1
        let w = World::new().await;
        let group = bound_group(&w).await;
        let stranger = bound_user(&w, "mallory").await;
        w.directory
            .add_group_member(&w.tenant.id, &group, &stranger)
            .await
            .unwrap();
        let (deltas, cursors) = (FakeGroupDeltas::new(), FakeReconcileCursors::new());
        // An earlier round was read: this one is incremental.
        cursors
            .put(&w.tenant.id, DeltaStream::Groups, "fake-group-delta:seed")
            .await
            .unwrap();
        let run = ReconcileGroups {
            actor: &w.actor,
            sync: sync(&w),
            deltas: &deltas,
            cursors: &cursors,
            max_pages: 10,
        };
        deltas.push_round(vec![change(&group, &[&stranger], &[])]);
        let report = run.run(&w.tenant.id, false).await.unwrap();
        assert_eq!(report.plan.len(), 1, "{report:?}");
        assert_eq!((report.plan[0].unexpected, report.plan[0].missing), (1, 0));
        assert_eq!(report.applied, 1);
        assert!(!members(&w, &group).await.contains(&stranger));
        // Our own removal comes back in the next round: not drift.
        deltas.push_round(vec![change(&group, &[], &[&stranger])]);
        let again = run.run(&w.tenant.id, false).await.unwrap();
        assert!(again.plan.is_empty(), "{again:?}");
    }

    #[tokio::test]
    async fn a_bound_member_removed_in_m365_is_added_back() {
        // R-REC-1 (group membership drift), R-GRP-1
        let w = World::new().await;
        let group = bound_group(&w).await;
        let alice = World::object_id(&w.binding("alice").await);
        w.directory
            .remove_group_member(&w.tenant.id, &group, &alice)
            .await
            .unwrap();
        let (deltas, cursors) = (FakeGroupDeltas::new(), FakeReconcileCursors::new());
        // An earlier round was read: this one is incremental.
        cursors
            .put(&w.tenant.id, DeltaStream::Groups, "fake-group-delta:seed")
            .await
            .unwrap();
        let run = ReconcileGroups {
            actor: &w.actor,
            sync: sync(&w),
            deltas: &deltas,
            cursors: &cursors,
            max_pages: 10,
        };
        deltas.push_round(vec![change(&group, &[], &[&alice])]);
        let report = run.run(&w.tenant.id, false).await.unwrap();
        assert_eq!((report.plan[0].unexpected, report.plan[0].missing), (0, 1));
        assert!(members(&w, &group).await.contains(&alice));
        deltas.push_round(vec![change(&group, &[&alice], &[])]);
        assert!(run.run(&w.tenant.id, false).await.unwrap().plan.is_empty());
    }

    #[tokio::test]
    async fn a_dry_run_plans_group_repairs_without_writing() {
        // R-REC-2
        let w = World::new().await;
        let group = bound_group(&w).await;
        let stranger = bound_user(&w, "mallory").await;
        w.directory
            .add_group_member(&w.tenant.id, &group, &stranger)
            .await
            .unwrap();
        let (deltas, cursors) = (FakeGroupDeltas::new(), FakeReconcileCursors::new());
        let run = ReconcileGroups {
            actor: &w.actor,
            sync: sync(&w),
            deltas: &deltas,
            cursors: &cursors,
            max_pages: 10,
        };
        deltas.push_round(vec![change(&group, &[&stranger], &[])]);
        let report = run.run(&w.tenant.id, true).await.unwrap();
        assert_eq!(report.plan.len(), 1);
        assert_eq!(report.applied, 0);
        assert!(members(&w, &group).await.contains(&stranger));
        assert_eq!(cursors.puts(), 0);
    }

    #[tokio::test]
    async fn a_full_round_matching_the_directory_is_not_drift() {
        // R-REC-1
        let w = World::new().await;
        let group = bound_group(&w).await;
        let alice = World::object_id(&w.binding("alice").await);
        let bob = World::object_id(&w.binding("bob").await);
        let (deltas, cursors) = (FakeGroupDeltas::new(), FakeReconcileCursors::new());
        let run = ReconcileGroups {
            actor: &w.actor,
            sync: sync(&w),
            deltas: &deltas,
            cursors: &cursors,
            max_pages: 10,
        };
        deltas.push_round(vec![change(&group, &[&alice, &bob], &[])]);
        let report = run.run(&w.tenant.id, false).await.unwrap();
        assert!(report.full_sync);
        assert!(report.plan.is_empty(), "{report:?}");
        // A full round missing a bound member is drift.
        let empty = FakeReconcileCursors::new();
        let run = ReconcileGroups {
            actor: &w.actor,
            sync: sync(&w),
            deltas: &deltas,
            cursors: &empty,
            max_pages: 10,
        };
        deltas.push_round(vec![change(&group, &[&alice], &[])]);
        let report = run.run(&w.tenant.id, true).await.unwrap();
        assert_eq!(report.plan[0].missing, 1);
    }

    #[tokio::test]
    async fn a_bound_group_deleted_in_m365_is_recreated_with_its_members_by_one_run_and_the_next_run_finds_nothing()
     {
        // R-REC-1 (deletions), R-GRP-1 (the mirror converges after an admin deleted the group)
        let w = World::new().await;
        let old = bound_group(&w).await;
        let alice = World::object_id(&w.binding("alice").await);
        let bob = World::object_id(&w.binding("bob").await);
        w.directory.delete_group(&w.tenant.id, &old);
        let deltas = FakeGroupDeltas::new();
        let cursors = seeded(&w).await;
        let run = reconciler(&w, &deltas, &cursors);

        // R-REC-2: the dry run shows the repair and writes nothing.
        deltas.push_round(vec![removed(&old)]);
        let dry = run.run(&w.tenant.id, true).await.unwrap();
        assert_eq!(reasons(&dry), vec![(RepairReason::DeletedInM365, 0, 0)]);
        assert!(dry.plan[0].deleted_in_m365);
        assert_eq!(dry.applied, 0);
        assert!(
            w.directory
                .groups_named(&w.tenant.id, "m365sync-sales")
                .is_empty()
        );
        assert_eq!(
            binding_of(&sales(&w).await).m365_group_id,
            Some(old.clone())
        );
        assert_eq!(cursors.puts(), 1, "only the seed");

        deltas.push_round(vec![removed(&old)]);
        let report = run.run(&w.tenant.id, false).await.unwrap();
        assert_eq!(reasons(&report), vec![(RepairReason::DeletedInM365, 0, 0)]);
        assert_eq!((report.applied, report.failed), (1, 0));
        let binding = binding_of(&sales(&w).await);
        let new = binding.m365_group_id.clone().unwrap();
        assert_ne!(new, old);
        assert_eq!(binding.state, GroupBindingState::Provisioned);
        assert_eq!(
            members(&w, &new).await,
            BTreeSet::from([alice.clone(), bob.clone()])
        );
        assert_eq!(
            w.directory
                .groups_named(&w.tenant.id, "m365sync-sales")
                .len(),
            1
        );
        // The next round shows the new group with its expected members: nothing to do.
        deltas.push_round(vec![change(&new, &[&alice, &bob], &[])]);
        let again = run.run(&w.tenant.id, false).await.unwrap();
        assert!(again.plan.is_empty(), "{again:?}");
    }

    #[tokio::test]
    async fn a_recreated_group_meeting_replication_lag_counts_as_applied_and_its_retry_finishes_it()
    {
        // R-REC-1, R-GRP-1 (replication-lag errors on a new group are retried)
        let mut w = World::new().await;
        let old = bound_group(&w).await;
        let alice = World::object_id(&w.binding("alice").await);
        w.clock.advance(chrono::TimeDelta::minutes(10));
        w.directory
            .set_replication_lag(chrono::TimeDelta::seconds(30));
        w.directory.delete_group(&w.tenant.id, &old);
        let deltas = FakeGroupDeltas::new();
        let cursors = seeded(&w).await;
        deltas.push_round(vec![removed(&old)]);
        let report = reconciler(&w, &deltas, &cursors)
            .run(&w.tenant.id, false)
            .await
            .unwrap();
        assert_eq!((report.applied, report.failed), (1, 0), "{report:?}");
        let pending = binding_of(&sales(&w).await);
        assert_eq!(pending.state, GroupBindingState::Pending);
        let new = pending.m365_group_id.clone().unwrap();
        assert_ne!(new, old);
        w.drain().await;
        let done = binding_of(&sales(&w).await);
        assert_eq!(done.state, GroupBindingState::Provisioned);
        assert_eq!(done.m365_group_id, Some(new.clone()));
        assert!(members(&w, &new).await.contains(&alice));
    }

    #[tokio::test]
    async fn a_user_bound_after_its_group_joins_it_at_the_next_run_and_the_run_after_finds_nothing()
    {
        // R-REC-1, R-GRP-1 (membership of bound members; a late bind is no M365 change)
        let w = World::new().await;
        let alice = bound_user(&w, "alice").await;
        w.user("carol").await; // not bound yet
        // Bound, no account yet.
        pending_user(&w, "erin", "throttled").await;
        let g = Group::new(
            gid("sales"),
            "Sales",
            [uid("alice"), uid("carol"), uid("erin")],
        );
        w.groups.create(&g).await.unwrap();
        sync(&w).bind(&gid("sales"), &w.tenant.id).await.unwrap();
        let m365 = binding_of(&sales(&w).await).m365_group_id.unwrap();
        let deltas = FakeGroupDeltas::new();
        let cursors = seeded(&w).await;
        let run = reconciler(&w, &deltas, &cursors);

        // Nobody became mirrorable: no repair and no Graph call at all.
        let calls = w.directory.calls();
        assert!(run.run(&w.tenant.id, false).await.unwrap().plan.is_empty());
        assert_eq!(w.directory.calls(), calls);

        // Bound without its group follow-up (a bind that stopped right after binding).
        w.bind_without_group_follow_up("carol").await;
        let carol = World::object_id(&w.binding("carol").await);
        // R-REC-2: the dry run shows it and writes nothing (nor calls M365).
        let before = sales(&w).await;
        let calls = w.directory.calls();
        let dry = run.run(&w.tenant.id, true).await.unwrap();
        assert_eq!(reasons(&dry), vec![(RepairReason::MembersNowBound, 0, 1)]);
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(sales(&w).await, before);

        let report = run.run(&w.tenant.id, false).await.unwrap();
        assert_eq!(
            reasons(&report),
            vec![(RepairReason::MembersNowBound, 0, 1)]
        );
        assert_eq!(report.applied, 1);
        assert_eq!(members(&w, &m365).await, BTreeSet::from([alice, carol]));
        let binding = binding_of(&sales(&w).await);
        assert_eq!(binding.mirrored, vec![uid("alice"), uid("carol")]);
        assert_eq!(
            binding.skipped,
            vec![SkippedMember {
                user_id: uid("erin"),
                reason: SkipReason::NoAccount
            }]
        );

        let calls = w.directory.calls();
        assert!(run.run(&w.tenant.id, false).await.unwrap().plan.is_empty());
        assert_eq!(w.directory.calls(), calls);
    }

    #[tokio::test]
    async fn a_mirrored_member_whose_account_was_deleted_leaves_the_record_and_rejoins_when_re_bound()
     {
        // R-REC-1, R-GRP-1, R-BIND-8
        let mut w = World::new().await;
        let m365 = bound_group(&w).await;
        let old_alice = World::object_id(&w.binding("alice").await);
        w.directory.soft_delete(&w.tenant.id, &old_alice).unwrap();
        w.unbinder().unbind(&uid("alice")).await.unwrap();
        assert_eq!(w.binding("alice").await.state, BindingState::DeletedInM365);
        let deltas = FakeGroupDeltas::new();
        let cursors = seeded(&w).await;
        {
            let run = reconciler(&w, &deltas, &cursors);
            let report = run.run(&w.tenant.id, false).await.unwrap();
            assert_eq!(
                reasons(&report),
                vec![(RepairReason::MirroredAccountDeleted, 1, 0)]
            );
            let binding = binding_of(&sales(&w).await);
            assert_eq!(binding.mirrored, vec![uid("bob")]);
            assert_eq!(binding.skipped[0].user_id, uid("alice"));
            assert!(run.run(&w.tenant.id, false).await.unwrap().plan.is_empty());
        }
        // Re-bound with `restore: false` (R-BIND-10) after the address hold: a new account,
        // which the retried bind's group follow-up puts back into the group at once; reconcile
        // then has nothing to repair.
        w.bind_without_restore("alice").await;
        w.drain().await;
        let new_alice = World::object_id(&w.binding("alice").await);
        assert_ne!(new_alice, old_alice);
        assert!(members(&w, &m365).await.contains(&new_alice));
        let run = reconciler(&w, &deltas, &cursors);
        assert!(run.run(&w.tenant.id, false).await.unwrap().plan.is_empty());
    }

    #[tokio::test]
    async fn a_directory_change_whose_push_never_ran_is_pushed_by_the_next_run() {
        // R-GRP-1 (membership changes follow directory group changes), R-REC-1
        let w = World::new().await;
        let m365 = bound_group(&w).await;
        let alice = World::object_id(&w.binding("alice").await);
        let carol = bound_user(&w, "carol").await;
        let mut g = sales(&w).await;
        g.members = BTreeSet::from([uid("alice"), uid("carol")]);
        w.groups.replace(&g, g.version).await.unwrap();
        let deltas = FakeGroupDeltas::new();
        let cursors = seeded(&w).await;
        let run = reconciler(&w, &deltas, &cursors);
        let report = run.run(&w.tenant.id, false).await.unwrap();
        assert_eq!(
            reasons(&report),
            vec![(RepairReason::DirectoryChange, 1, 1)]
        );
        assert_eq!(members(&w, &m365).await, BTreeSet::from([alice, carol]));
        assert!(run.run(&w.tenant.id, false).await.unwrap().plan.is_empty());
    }

    #[tokio::test]
    async fn a_pending_group_is_left_to_its_queued_retry() {
        // R-GRP-1, R-BIND-6 (reconcile does not race the retry queue)
        let w = World::new().await;
        bound_group(&w).await;
        bound_user(&w, "carol").await;
        let mut g = sales(&w).await;
        g.members.insert(uid("carol"));
        let mut binding = binding_of(&g);
        binding.state = GroupBindingState::Pending;
        g.binding = Some(binding);
        w.groups.replace(&g, g.version).await.unwrap();
        let deltas = FakeGroupDeltas::new();
        let cursors = seeded(&w).await;
        let report = reconciler(&w, &deltas, &cursors)
            .run(&w.tenant.id, true)
            .await
            .unwrap();
        assert!(report.plan.is_empty(), "{report:?}");
    }

    #[test]
    fn repairs_serialize_in_camel_case_with_a_snake_case_reason() {
        // R-REC-2 (the plan is the API's JSON)
        let repair = GroupRepair {
            unexpected: 0,
            missing: 2,
            ..GroupRepair {
                group_id: gid("sales"),
                m365_group_id: M365ObjectId::parse("00000000-0000-0000-0000-000000000001").unwrap(),
                reason: RepairReason::MembersNowBound,
                unexpected: 0,
                missing: 0,
                deleted_in_m365: false,
            }
        };
        let v = serde_json::to_value(&repair).unwrap();
        assert_eq!(v["reason"], "members_now_bound");
        assert_eq!(v["groupId"], "sales");
        assert_eq!(v["deletedInM365"], false);
        assert_eq!(v["missing"], 2);
        for r in [
            RepairReason::MembershipDrift,
            RepairReason::DeletedInM365,
            RepairReason::MembersNowBound,
            RepairReason::MirroredAccountDeleted,
            RepairReason::DirectoryChange,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}
