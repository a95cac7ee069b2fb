//! Group membership drift (R-REC-1, R-GRP-1): the groups delta since the saved link shows which
//! M365 groups' memberships changed; for a group bound to a directory group, a change that does
//! not match the directory (a user added who is not a bound member, a bound member removed; on a
//! full round, any difference) is repaired by re-mirroring the group with
//! [`super::group_sync::SyncGroup::push`], the same idempotent operation a directory change runs.
//!
//! The expected membership follows `SyncGroup`'s rule: the group's members whose binding is in
//! this tenant, not `unselected` nor `deleted_in_m365`, with an M365 account. Our own mirroring
//! shows up in the next round as adds of expected members and removals of unexpected ones, which
//! are not drift, so a second run finds nothing to do. Graph cost: the delta pages, plus, per
//! drifted group, the member listing and the writes of `SyncGroup`. An unchanged tenant costs
//! its delta pages only (the directory groups are not even listed).
//!
//! Not handled: a bound group deleted in M365 (reported as `deleted_in_m365` in the plan, left to
//! an admin: re-binding recreates or adopts it).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::Result;
use crate::model::{BindingState, Group, GroupId, M365ObjectId, PageRequest, TenantId};
use crate::ports::{
    BindingStore, Clock, DeltaLink, DeltaStream, Directory, EventStore, FailureStore, GroupDeltas,
    GroupStore, OperationLedger, Random, ReconcileCursors, RetryQueue, TenantStore,
};

use super::group_sync::{GroupOutcome, SyncGroup};

/// One drifted group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRepair {
    /// The directory group.
    pub group_id: GroupId,
    /// Its M365 security group.
    pub m365_group_id: M365ObjectId,
    /// M365 members that are not bound members of the directory group.
    pub unexpected: usize,
    /// Bound members missing from the M365 group.
    pub missing: usize,
    /// The M365 group was deleted (not repaired here).
    pub deleted_in_m365: bool,
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
    /// Drifted bound groups.
    pub plan: Vec<GroupRepair>,
    /// Groups re-mirrored (or queued for a retry by `SyncGroup`).
    pub applied: usize,
    /// Groups whose re-mirroring failed.
    pub failed: usize,
}

#[derive(Debug, Default)]
struct Seen {
    removed: bool,
    added: BTreeSet<M365ObjectId>,
    dropped: BTreeSet<M365ObjectId>,
}

/// The group-drift use case.
#[derive(Debug)]
pub struct ReconcileGroups<'a, B, E, F, L, Q, C, R, G, T, D, X, K> {
    /// The group mirroring of R-GRP-1 (its ports are read here too).
    pub sync: SyncGroup<'a, B, E, F, L, Q, C, R, G, T, D>,
    /// M365 groups delta.
    pub deltas: &'a X,
    /// Per-tenant delta links.
    pub cursors: &'a K,
    /// Delta pages read by one invocation.
    pub max_pages: u32,
}

impl<B, E, F, L, Q, C, R, G, T, D, X, K> ReconcileGroups<'_, B, E, F, L, Q, C, R, G, T, D, X, K>
where
    B: BindingStore,
    E: EventStore,
    F: FailureStore,
    L: OperationLedger,
    Q: RetryQueue,
    C: Clock,
    R: Random,
    G: GroupStore,
    T: TenantStore,
    D: Directory,
    X: GroupDeltas,
    K: ReconcileCursors,
{
    /// Reads the groups delta, plans the re-mirroring of drifted bound groups and, unless
    /// `dry_run`, runs it and saves the link.
    ///
    /// # Errors
    /// Delta and store read failures (nothing is saved then).
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_groups", tenant.id = %tenant, dry_run))]
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<GroupReconcileReport> {
        let start = self.cursors.get(tenant, DeltaStream::Groups).await?;
        let mut report = GroupReconcileReport {
            full_sync: start.is_none(),
            ..GroupReconcileReport::default()
        };
        let mut seen: BTreeMap<M365ObjectId, Seen> = BTreeMap::new();
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
        if !seen.is_empty() {
            for group in self.bound_groups(tenant).await? {
                let Some(m365) = group.binding.as_ref().and_then(|b| b.m365_group_id.clone())
                else {
                    continue;
                };
                let Some(change) = seen.get(&m365) else {
                    continue;
                };
                if let Some(repair) = self
                    .drift(tenant, &group, m365, change, report.full_sync)
                    .await?
                {
                    report.plan.push(repair);
                }
            }
        }
        if dry_run {
            return Ok(report);
        }
        let mut hold_cursor = false;
        for repair in report.plan.iter().filter(|r| !r.deleted_in_m365) {
            match self.sync.push(&repair.group_id).await {
                Ok(GroupOutcome::Failed { .. }) => report.failed += 1,
                Ok(_) => report.applied += 1,
                Err(e) => {
                    report.failed += 1;
                    hold_cursor |= e.is_retryable();
                }
            }
        }
        if !hold_cursor && let Some(link) = save {
            self.cursors.put(tenant, DeltaStream::Groups, &link).await?;
        }
        tracing::info!(
            full_sync = report.full_sync,
            pages = report.pages,
            planned = report.plan.len(),
            applied = report.applied,
            failed = report.failed,
            "group reconcile finished"
        );
        Ok(report)
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

    /// The M365 accounts `group` should hold (`SyncGroup`'s rule).
    async fn expected(&self, tenant: &TenantId, group: &Group) -> Result<BTreeSet<M365ObjectId>> {
        let mut out = BTreeSet::new();
        for user in &group.members {
            if let Some(b) = self.sync.fx.bindings.get(user).await?
                && &b.tenant_id == tenant
                && !matches!(
                    b.state,
                    BindingState::Unselected | BindingState::DeletedInM365
                )
                && let Some(id) = b.m365_object_id
            {
                out.insert(id);
            }
        }
        Ok(out)
    }

    async fn drift(
        &self,
        tenant: &TenantId,
        group: &Group,
        m365: M365ObjectId,
        change: &Seen,
        full: bool,
    ) -> Result<Option<GroupRepair>> {
        if change.removed {
            return Ok(Some(GroupRepair {
                group_id: group.id.clone(),
                m365_group_id: m365,
                unexpected: 0,
                missing: 0,
                deleted_in_m365: true,
            }));
        }
        let expected = self.expected(tenant, group).await?;
        let unexpected = change.added.difference(&expected).count();
        let missing = if full {
            expected.difference(&change.added).count()
        } else {
            change.dropped.intersection(&expected).count()
        };
        Ok((unexpected > 0 || missing > 0).then(|| GroupRepair {
            group_id: group.id.clone(),
            m365_group_id: m365,
            unexpected,
            missing,
            deleted_in_m365: false,
        }))
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::model::{GroupId, M365ObjectId};
    use crate::ports::GroupMembershipChange;
    use crate::testing::{
        FakeBindings, FakeDirectory, FakeEvents, FakeFailures, FakeGroupDeltas, FakeGroups,
        FakeLedger, FakeReconcileCursors, FakeRetryQueue, FakeTenants, ManualClock, SeededRandom,
    };
    use crate::usecase::testkit::{World, uid};

    fn gid(s: &str) -> GroupId {
        GroupId::parse(s).unwrap()
    }

    async fn bound_user(w: &World, id: &str) -> M365ObjectId {
        w.user(id).await;
        w.bind(id).await;
        World::object_id(&w.binding(id).await)
    }

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
        w.groups
            .get(&gid("sales"))
            .await
            .unwrap()
            .unwrap()
            .binding
            .unwrap()
            .m365_group_id
            .unwrap()
    }

    type TestSync<'a> = SyncGroup<
        'a,
        FakeBindings,
        FakeEvents,
        FakeFailures,
        FakeLedger,
        FakeRetryQueue,
        ManualClock,
        SeededRandom,
        FakeGroups,
        FakeTenants,
        FakeDirectory,
    >;

    fn sync(w: &World) -> TestSync<'_> {
        SyncGroup {
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
            sync: sync(&w),
            deltas: &deltas,
            cursors: &empty,
            max_pages: 10,
        };
        deltas.push_round(vec![change(&group, &[&alice], &[])]);
        let report = run.run(&w.tenant.id, true).await.unwrap();
        assert_eq!(report.plan[0].missing, 1);
    }
}
