//! Held safeguard plans on the in-memory [`World`] (R-REC-3).

use chrono::TimeDelta;

use super::*;
use crate::model::{BindingState, EventKind, Group};
use crate::policy::safeguard::Safeguard;
use crate::ports::{BindingStore, Directory, GroupMembershipChange, Leases};
use crate::testing::FakeUserDeltas;
use crate::usecase::group_sync::SyncGroup;
use crate::usecase::reconcile_pass::{ReconcilePass, TenantReport};
use crate::usecase::reconcile_queue::PassEnd;
use crate::usecase::testkit::{World, gid, uid};

const LEASE: TimeDelta = TimeDelta::minutes(6);

/// `n` bound users `u0..u{n-1}`, each with a directory password.
async fn world_with(n: usize) -> World {
    crate::usecase::testkit::bound_users_with_password(n, "Correct-Horse-7").await
}

async fn pass(w: &World, settings: &ReconcileSettings, number: u32) -> (TenantReport, PassEnd) {
    ReconcilePass::new(w, settings)
        .pass(&w.tenant.id, number)
        .await
        .unwrap()
}

fn held<'a>(w: &'a World, settings: &'a ReconcileSettings) -> HeldPlans<'a, World> {
    HeldPlans::new(w, settings)
}

/// Unbinds `ids` (sign-in blocked, bindings `blocked`) and lets a pass see it.
async fn unbind(w: &World, settings: &ReconcileSettings, ids: &[&str]) {
    for id in ids {
        w.unbinder().unbind(&uid(id)).await.unwrap();
    }
    pass(w, settings, 1).await;
}

/// Enables `ids`' accounts in M365 behind our back: each is a `block` repair for the next pass.
async fn enable_in_m365(w: &World, ids: &[&str]) {
    for id in ids {
        let object = World::object_id(&w.binding(id).await);
        w.directory
            .set_account_enabled(&w.tenant.id, &object, true)
            .await
            .unwrap();
    }
}

async fn enabled(w: &World, id: &str) -> bool {
    let object = World::object_id(&w.binding(id).await);
    w.directory
        .get_user(&w.tenant.id, &object)
        .await
        .unwrap()
        .unwrap()
        .account_enabled
}

/// Ten bound users, three of them unbound and then enabled again in M365: three `block`s, more
/// than 10% of ten. The pass that sees them is held.
async fn tripped() -> (World, ReconcileSettings) {
    let w = world_with(10).await;
    let settings = ReconcileSettings::default();
    pass(&w, &settings, 1).await;
    unbind(&w, &settings, &["u0", "u1", "u2"]).await;
    enable_in_m365(&w, &["u0", "u1", "u2"]).await;
    (w, settings)
}

#[tokio::test]
async fn a_tripped_round_is_held_with_its_plan_and_nothing_is_written() {
    // R-REC-3
    let (w, settings) = tripped().await;
    let cursors = w.cursors.puts();
    let (report, end) = pass(&w, &settings, 1).await;
    assert_eq!(end, PassEnd::Stopped);
    let trip = report.users.safeguard.clone().unwrap();
    assert_eq!(
        (trip.destructive, trip.allowed, trip.round_total),
        (3, 1, 3)
    );
    let summary = report.held.clone().unwrap();
    let plan = held(&w, &settings)
        .get(&w.tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan.id, summary.id);
    assert_eq!(plan.threshold, Safeguard::Share(0.10));
    assert_eq!(plan.counts.destructive, 3);
    assert_eq!(plan.users.len(), 3);
    assert!(plan.users.iter().all(|r| r.kind == RepairKind::Block));
    assert!(
        plan.resume.users.is_some(),
        "it knows where to move the cursor"
    );
    let view = plan.view();
    assert!(view.get("resume").is_none(), "the API does not show links");
    assert_eq!(view["counts"]["destructive"], 3);
    assert!(enabled(&w, "u0").await, "nothing applied");
    assert_eq!(w.cursors.puts(), cursors, "no cursor moved");
    let trips = w.events_of(EventKind::ReconcileSafeguardTripped);
    assert_eq!(trips.len(), 1);
    let details = trips[0].details.clone().unwrap();
    assert_eq!(details["heldPlan"]["id"], plan.id.as_str());
    assert_eq!(details["threshold"], "10%");
}

#[tokio::test]
async fn while_a_plan_is_held_later_runs_neither_apply_it_nor_trip_again() {
    // R-REC-3
    let (w, settings) = tripped().await;
    let (first, _) = pass(&w, &settings, 1).await;
    let id = first.held.unwrap().id;
    w.clock.advance(TimeDelta::hours(1));
    for _ in 0..3 {
        let (later, end) = pass(&w, &settings, 1).await;
        assert_eq!(end, PassEnd::Stopped);
        assert_eq!(later.held.as_ref().map(|h| h.id.clone()), Some(id.clone()));
        assert!(later.users.safeguard.is_none(), "not tripped again");
        assert!(later.users.plan.is_empty());
    }
    assert!(enabled(&w, "u0").await);
    assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
    assert_eq!(w.held_plans.held_id(&w.tenant.id), Some(id));
    // A dry run still shows what a run would plan, and the plan held.
    let dry = ReconcilePass::new(&w, &settings)
        .run(&w.tenant.id, true)
        .await
        .unwrap();
    assert!(dry.held.is_some());
}

#[tokio::test]
async fn approving_applies_the_held_plan_once_and_a_second_approve_finds_none() {
    // R-REC-3
    let (w, settings) = tripped().await;
    pass(&w, &settings, 1).await;
    let blocked_before = w.count_events(EventKind::UserDeprovision);
    let cursors = w.cursors.puts();
    let Decided::Done(decision) = held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap()
    else {
        panic!("approved")
    };
    assert_eq!(decision.applied, 3, "{decision:?}");
    assert!(decision.skipped.is_empty() && decision.failed.is_empty());
    for id in ["u0", "u1", "u2"] {
        assert!(!enabled(&w, id).await, "{id} blocked again");
    }
    assert_eq!(
        w.count_events(EventKind::UserDeprovision),
        blocked_before + 3
    );
    assert_eq!(w.count_events(EventKind::ReconcilePlanApproved), 1);
    let approved = w.event(EventKind::ReconcilePlanApproved);
    assert_eq!(approved.details.unwrap()["applied"], 3);
    assert!(
        w.cursors.puts() > cursors,
        "the cursor moved past the held round"
    );
    assert_eq!(w.held_plans.held_id(&w.tenant.id), None);
    // Once: a second approve finds no plan and applies nothing.
    let again = held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap();
    assert_eq!(again, Decided::NoPlan);
    assert_eq!(
        w.count_events(EventKind::UserDeprovision),
        blocked_before + 3
    );
    assert_eq!(w.count_events(EventKind::ReconcilePlanApproved), 1);
    // The next run finds our own blocks: nothing to do, no trip.
    let (next, end) = pass(&w, &settings, 1).await;
    assert_eq!(end, PassEnd::Complete);
    assert!(next.users.plan.is_empty(), "{:?}", next.users.plan);
    assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
}

#[tokio::test]
async fn an_approve_while_a_pass_or_another_approve_holds_the_tenant_is_refused_and_applies_nothing()
 {
    // R-REC-3 (two approves at once apply once: the tenant's reconcile lease)
    let (w, settings) = tripped().await;
    pass(&w, &settings, 1).await;
    let now = w.clock.now();
    assert!(
        w.leases
            .acquire(&lease_name(&w.tenant.id), "first-approve", now, now + LEASE)
            .await
            .unwrap()
    );
    let second = held(&w, &settings)
        .approve(&w.tenant.id, "second-approve", LEASE)
        .await
        .unwrap();
    assert_eq!(second, Decided::Busy);
    assert!(enabled(&w, "u0").await);
    assert!(w.held_plans.held_id(&w.tenant.id).is_some());
    assert_eq!(w.count_events(EventKind::ReconcilePlanApproved), 0);
}

#[tokio::test]
async fn an_approve_skips_a_repair_whose_user_was_re_bound_since_and_says_why() {
    // R-REC-3 (each item re-checked)
    let (w, settings) = tripped().await;
    pass(&w, &settings, 1).await;
    // u1 is bound again meanwhile: blocking it now would undo the admin's bind.
    w.bind("u1").await;
    let Decided::Done(decision) = held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap()
    else {
        panic!("approved")
    };
    assert_eq!(decision.applied, 2);
    assert_eq!(decision.skipped.len(), 1);
    assert_eq!(decision.skipped[0].user_id, Some(uid("u1")));
    assert_eq!(decision.skipped[0].reason, "binding_changed");
    assert!(enabled(&w, "u1").await, "the re-bound user stays enabled");
    assert!(!enabled(&w, "u0").await);
    assert_eq!(w.binding("u1").await.state, BindingState::Provisioned);
}

#[tokio::test]
async fn rejecting_discards_the_plan_and_the_same_changes_are_not_proposed_again_but_new_ones_are()
{
    // R-REC-3
    let (w, settings) = tripped().await;
    pass(&w, &settings, 1).await;
    let Decided::Done(decision) = held(&w, &settings)
        .reject(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap()
    else {
        panic!("rejected")
    };
    assert_eq!(decision.decision, "rejected");
    assert_eq!(decision.applied, 0);
    assert_eq!(w.count_events(EventKind::ReconcilePlanRejected), 1);
    assert_eq!(w.held_plans.held_id(&w.tenant.id), None);
    assert!(enabled(&w, "u0").await, "nothing applied");
    // The next run does not see the rejected changes again.
    let (next, end) = pass(&w, &settings, 1).await;
    assert_eq!(end, PassEnd::Complete);
    assert!(next.users.plan.is_empty(), "{:?}", next.users.plan);
    assert!(next.held.is_none());
    assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
    // A new change after it is proposed (and, within the threshold, applied).
    w.unbinder().unbind(&uid("u5")).await.unwrap();
    pass(&w, &settings, 1).await;
    enable_in_m365(&w, &["u5"]).await;
    let (later, _) = pass(&w, &settings, 1).await;
    assert_eq!(later.users.plan.len(), 1, "{:?}", later.users.plan);
    assert_eq!(later.users.plan[0].user_id, uid("u5"));
    assert_eq!(later.users.applied, 1);
    assert!(!enabled(&w, "u5").await);
    assert!(
        enabled(&w, "u0").await,
        "the rejected one is still left alone"
    );
    // Deciding again: nothing held.
    let again = held(&w, &settings)
        .reject(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap();
    assert_eq!(again, Decided::NoPlan);
}

#[tokio::test]
async fn an_absolute_threshold_counts_changes_whatever_the_tenant_size() {
    // R-REC-3 (`500`: a number, not a share)
    let (w, _) = tripped().await;
    let three = ReconcileSettings {
        safeguard: Safeguard::Absolute(3),
        ..ReconcileSettings::default()
    };
    let (report, end) = pass(&w, &three, 1).await;
    assert!(report.users.safeguard.is_none(), "3 is not more than 3");
    assert_eq!(end, PassEnd::Complete);
    assert_eq!(report.users.applied, 3);

    let (w, _) = tripped().await;
    let two = ReconcileSettings {
        safeguard: Safeguard::Absolute(2),
        ..ReconcileSettings::default()
    };
    let (report, end) = pass(&w, &two, 1).await;
    assert_eq!(end, PassEnd::Stopped);
    let trip = report.users.safeguard.unwrap();
    assert_eq!((trip.allowed, trip.round_total), (2, 3));
    let plan = held(&w, &two).get(&w.tenant.id).await.unwrap().unwrap();
    assert_eq!(plan.threshold.to_string(), "2");
}

#[tokio::test]
async fn a_percentage_threshold_is_a_share_of_the_bound_users() {
    // R-REC-3 (`30%` of ten users allows three)
    let (w, _) = tripped().await;
    let thirty = ReconcileSettings {
        safeguard: "30%".parse().unwrap(),
        ..ReconcileSettings::default()
    };
    let (report, _) = pass(&w, &thirty, 1).await;
    assert!(report.users.safeguard.is_none());
    assert_eq!(report.users.applied, 3);
}

/// A bound group `sales` of `members`, mirrored in M365.
async fn bound_group(w: &World, members: &[&str]) -> M365ObjectId {
    let g = Group::new(gid("sales"), "Sales", members.iter().map(|m| uid(m)));
    crate::ports::GroupStore::create(&w.groups, &g)
        .await
        .unwrap();
    SyncGroup::new(w).bind(&g.id, &w.tenant.id).await.unwrap();
    w.stored_group("sales")
        .await
        .binding
        .unwrap()
        .m365_group_id
        .unwrap()
}

#[tokio::test]
async fn group_member_removals_count_toward_the_threshold_and_are_held_then_applied_on_approve() {
    // R-REC-3, R-GRP-1: two accounts added to a bound group in M365 are two removals, more
    // than 10% of ten bound users.
    let w = world_with(10).await;
    let settings = ReconcileSettings::default();
    let group = bound_group(&w, &["u0", "u1"]).await;
    pass(&w, &settings, 1).await;
    let mut strangers = Vec::new();
    for id in ["u5", "u6"] {
        strangers.push(World::object_id(&w.binding(id).await));
    }
    for s in &strangers {
        w.directory
            .add_group_member(&w.tenant.id, &group, s)
            .await
            .unwrap();
    }
    w.group_deltas.push_round(vec![GroupMembershipChange {
        id: group.clone(),
        removed: false,
        added: strangers.clone(),
        dropped: Vec::new(),
    }]);
    let (report, end) = pass(&w, &settings, 1).await;
    assert_eq!(end, PassEnd::Stopped);
    let trip = report.users.safeguard.unwrap();
    assert_eq!((trip.destructive, trip.group_removals), (0, 2));
    let plan = held(&w, &settings)
        .get(&w.tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan.groups.len(), 1);
    assert_eq!(plan.counts.group_removals, 2);
    assert_eq!(members(&w, &group).await.len(), 4, "nobody removed yet");
    let Decided::Done(decision) = held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap()
    else {
        panic!("approved")
    };
    assert_eq!(decision.groups_applied, 1);
    assert_eq!(members(&w, &group).await.len(), 2, "the strangers removed");
}

async fn members(w: &World, group: &M365ObjectId) -> Vec<M365ObjectId> {
    w.directory
        .list_group_members(&w.tenant.id, group, &crate::model::PageRequest::first(100))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn a_round_of_several_passes_is_counted_as_a_whole() {
    // R-REC-3: one deletion per pass is within a threshold of two, three in one round are not.
    let mut w = world_with(20).await;
    w.user_deltas = FakeUserDeltas::with_page_size(&w.directory, 1);
    let settings = ReconcileSettings {
        max_pages: 1,
        safeguard: Safeguard::Absolute(2),
        ..ReconcileSettings::default()
    };
    // The first (full) round, one page per pass.
    for n in 1..100 {
        if pass(&w, &settings, n).await.1 == PassEnd::Complete {
            break;
        }
    }
    for id in ["u3", "u4", "u5"] {
        let object = World::object_id(&w.binding(id).await);
        w.directory.soft_delete(&w.tenant.id, &object).unwrap();
    }
    // The next round reports three removals, one per page, one page per pass.
    let mut ends = Vec::new();
    let mut reports = Vec::new();
    for n in 1..10 {
        let (report, end) = pass(&w, &settings, n).await;
        ends.push(end);
        reports.push(report);
        if end != PassEnd::Incomplete {
            break;
        }
    }
    assert_eq!(
        ends,
        vec![PassEnd::Incomplete, PassEnd::Incomplete, PassEnd::Stopped],
        "the third removal of the round trips"
    );
    let trip = reports[2].users.safeguard.clone().unwrap();
    assert_eq!(
        (trip.destructive, trip.earlier, trip.round_total),
        (1, 2, 3)
    );
    assert_eq!(trip.allowed, 2);
    let plan = held(&w, &settings)
        .get(&w.tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plan.counts.earlier, 2);
    assert_eq!(plan.round.pass, 3);
    let mut deleted = Vec::new();
    for id in ["u3", "u4", "u5"] {
        if w.binding(id).await.state == BindingState::DeletedInM365 {
            deleted.push(uid(id));
        }
    }
    assert_eq!(deleted.len(), 2, "the earlier passes applied theirs");
    assert_eq!(plan.users.len(), 1);
    let last = plan.users[0].user_id.clone();
    assert!(!deleted.contains(&last), "the tripping pass did not apply");
    // Approved: applied, the round's count starts again, and the rest of the round goes on.
    held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap();
    assert_eq!(
        w.bindings.get(&last).await.unwrap().unwrap().state,
        BindingState::DeletedInM365
    );
    assert_eq!(w.held_plans.tally_of(&w.tenant.id), None);
    let (_, end) = pass(&w, &settings, 1).await;
    assert_ne!(end, PassEnd::Stopped);
}

#[tokio::test]
async fn a_round_within_the_threshold_clears_its_tally_when_it_ends() {
    // R-REC-3: the count is per round, not forever.
    let mut w = world_with(20).await;
    w.user_deltas = FakeUserDeltas::with_page_size(&w.directory, 1);
    let settings = ReconcileSettings {
        max_pages: 1,
        ..ReconcileSettings::default()
    };
    for round in 0..3 {
        let object = World::object_id(&w.binding(&format!("u{round}")).await);
        w.directory.soft_delete(&w.tenant.id, &object).unwrap();
        for n in 1..100 {
            let (report, end) = pass(&w, &settings, n).await;
            assert!(
                report.users.safeguard.is_none(),
                "round {round}: {report:?}"
            );
            if end == PassEnd::Complete {
                break;
            }
        }
        assert_eq!(w.held_plans.tally_of(&w.tenant.id), None);
    }
}

#[tokio::test]
async fn an_approve_cut_short_by_throttling_keeps_the_plan_and_approving_again_finishes_it_once() {
    // R-REC-3 (applied once even when the first approve stops half-way)
    let (w, settings) = tripped().await;
    pass(&w, &settings, 1).await;
    let cursors = w.cursors.puts();
    let reblocks = || w.events_with_reason("reconcile_blocked_again").len();
    // The first block (disable + revoke sessions) goes through, the second is throttled.
    w.directory.pass_next_call();
    w.directory.pass_next_call();
    w.directory.fail_next_call(crate::error::Error::Throttled {
        retry_after: None,
        graph_request_id: None,
    });
    let Decided::Done(first) = held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap()
    else {
        panic!("decided")
    };
    assert!(!first.complete, "{first:?}");
    assert_eq!((first.applied, first.failed.len()), (1, 1), "{first:?}");
    assert_eq!(reblocks(), 1);
    assert!(w.held_plans.held_id(&w.tenant.id).is_some(), "still held");
    assert_eq!(w.cursors.puts(), cursors, "the cursor stays");
    assert_eq!(w.count_events(EventKind::ReconcilePlanApproved), 0);
    let Decided::Done(second) = held(&w, &settings)
        .approve(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap()
    else {
        panic!("decided")
    };
    assert!(second.complete, "{second:?}");
    for id in ["u0", "u1", "u2"] {
        assert!(!enabled(&w, id).await, "{id} blocked");
    }
    assert_eq!(reblocks(), 3, "one event per account");
    assert_eq!(w.count_events(EventKind::ReconcilePlanApproved), 1);
    assert_eq!(w.held_plans.held_id(&w.tenant.id), None);
}

#[tokio::test]
async fn a_rejected_mass_expiry_is_not_held_again_every_round_until_a_user_changes() {
    // R-REC-3: the expiry sweep plans from our own stores every round; a rejected suspension is
    // not proposed again while its binding and user are unchanged.
    let w = world_with(10).await;
    let settings = ReconcileSettings {
        password_policy: crate::policy::password::DirectoryPasswordPolicy::new(
            8,
            [],
            Some(TimeDelta::days(1)),
        )
        .unwrap(),
        ..ReconcileSettings::default()
    };
    pass(&w, &settings, 1).await;
    w.clock.advance(TimeDelta::days(2));
    let (report, end) = pass(&w, &settings, 1).await;
    assert_eq!(end, PassEnd::Stopped);
    assert_eq!(report.users.safeguard.unwrap().destructive, 10);
    held(&w, &settings)
        .reject(&w.tenant.id, "admin", LEASE)
        .await
        .unwrap();
    for _ in 0..2 {
        w.clock.advance(TimeDelta::hours(1));
        let (next, end) = pass(&w, &settings, 1).await;
        assert_eq!(end, PassEnd::Complete, "{next:?}");
        assert!(next.users.plan.is_empty(), "{:?}", next.users.plan);
        assert!(next.held.is_none());
    }
    assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
    assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
    // u0 changes in the directory (its password still expired): proposed, and applied, again.
    let mut u0 = crate::ports::UserStore::get(&w.users, &uid("u0"))
        .await
        .unwrap()
        .unwrap();
    u0.job_title = Some("Engineer".to_owned());
    crate::ports::UserStore::replace(&w.users, &u0, u0.version)
        .await
        .unwrap();
    let (later, _) = pass(&w, &settings, 1).await;
    assert_eq!(later.users.plan.len(), 1, "{:?}", later.users.plan);
    assert_eq!(later.users.plan[0].kind, RepairKind::SuspendExpired);
    assert_eq!(w.binding("u0").await.state, BindingState::Suspended);
}
