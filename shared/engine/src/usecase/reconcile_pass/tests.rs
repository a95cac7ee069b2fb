//! [`ReconcilePass`] on the in-memory [`World`].

use chrono::TimeDelta;

use super::*;
use crate::model::{BindingState, EventKind};
use crate::policy::password::DirectoryPasswordPolicy;
use crate::testing::FakeUserDeltas;
use crate::usecase::reconcile::RepairKind;
use crate::usecase::testkit::World;

/// `n` bound users `u0..u{n-1}`, each with a directory password.
async fn world_with(n: usize) -> World {
    crate::usecase::testkit::bound_users_with_password(n, "Correct-Horse-7").await
}

fn suspensions(report: &TenantReport) -> usize {
    report
        .users
        .plan
        .iter()
        .filter(|r| r.kind == RepairKind::SuspendExpired)
        .count()
}

#[tokio::test]
async fn a_tripped_safeguard_stops_the_pass_before_stuck_work_and_groups_and_ends_the_round() {
    // R-REC-3, R-GRP-1: nothing is written past the trip, the groups are not reconciled.
    let w = world_with(10).await;
    let settings = ReconcileSettings::default();
    let pass = ReconcilePass::new(&w, &settings);
    pass.pass(&w.tenant.id, 1).await.unwrap();
    for i in 0..2 {
        let id = w.binding(&format!("u{i}")).await.m365_object_id.unwrap();
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
    }
    let cursors = w.cursors.puts();
    let (report, end) = pass.pass(&w.tenant.id, 1).await.unwrap();
    assert!(report.users.safeguard.is_some());
    assert_eq!(report.groups, None, "groups are not reconciled");
    assert_eq!(report.requeued, None, "stuck work is not re-queued");
    assert_eq!(end, PassEnd::Stopped);
    assert_eq!(
        w.cursors.puts(),
        cursors,
        "neither the users' nor the groups' cursor moved"
    );
    assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
    assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
}

#[tokio::test]
async fn only_the_first_pass_of_a_round_sweeps_expired_passwords() {
    // R-PWD-4: the sweep reads every bound user, once per round.
    let w = world_with(3).await;
    let settings = ReconcileSettings {
        password_policy: DirectoryPasswordPolicy::new(8, [], Some(TimeDelta::days(1))).unwrap(),
        safeguard: crate::policy::safeguard::Safeguard::Share(1.0),
        ..ReconcileSettings::default()
    };
    let pass = ReconcilePass::new(&w, &settings);
    w.clock.advance(TimeDelta::days(2));
    let (later, _) = pass.pass(&w.tenant.id, 2).await.unwrap();
    assert_eq!(
        suspensions(&later),
        0,
        "a later pass follows the delta only"
    );
    assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
    let (first, end) = pass.pass(&w.tenant.id, 1).await.unwrap();
    assert_eq!(suspensions(&first), 3);
    assert_eq!(end, PassEnd::Complete);
    assert_eq!(w.binding("u0").await.state, BindingState::Suspended);
}

#[tokio::test]
async fn a_dry_run_plans_users_and_groups_and_requeues_nothing() {
    // R-REC-2, R-REC-5
    let w = world_with(2).await;
    let settings = ReconcileSettings::default();
    let report = ReconcilePass::new(&w, &settings)
        .run(&w.tenant.id, true)
        .await
        .unwrap();
    assert!(report.users.dry_run);
    assert!(report.groups.as_ref().is_some_and(|g| g.applied == 0));
    assert_eq!(report.requeued, None);
    assert!(!report.continued);
    assert_eq!(w.cursors.puts(), 0, "a dry run saves no cursor");
}

#[tokio::test]
async fn a_pass_within_its_pages_completes_and_a_longer_round_is_incomplete() {
    // R-REC-1: a round longer than `max_pages` goes on in the next pass.
    let mut w = world_with(4).await;
    let settings = ReconcileSettings::default();
    let (report, end) = ReconcilePass::new(&w, &settings)
        .pass(&w.tenant.id, 1)
        .await
        .unwrap();
    assert_eq!(end, PassEnd::Complete);
    assert!(
        report.requeued.is_some(),
        "a writing pass re-queues stuck work"
    );
    assert!(report.groups.is_some());

    w.user_deltas = FakeUserDeltas::with_page_size(&w.directory, 1);
    w.cursors = crate::testing::FakeReconcileCursors::new();
    let paged = ReconcileSettings {
        max_pages: 1,
        ..ReconcileSettings::default()
    };
    let pass = ReconcilePass::new(&w, &paged);
    let (first, end) = pass.pass(&w.tenant.id, 1).await.unwrap();
    assert!(!first.users.complete);
    assert_eq!(end, PassEnd::Incomplete);
    let mut ends = vec![end];
    for number in 2..20 {
        let (_, end) = pass.pass(&w.tenant.id, number).await.unwrap();
        ends.push(end);
        if end == PassEnd::Complete {
            break;
        }
    }
    assert_eq!(
        ends.last(),
        Some(&PassEnd::Complete),
        "the round ends: {ends:?}"
    );
}
