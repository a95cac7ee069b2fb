//! [`RunPasses`] on the in-memory [`World`]: requested runs go through the queue of passes and
//! their records follow them (R-OPS-2).

use chrono::TimeDelta;

use super::*;
use crate::model::BindingState;
use crate::ports::Leases;
use crate::testing::{FakeReconcileCursors, FakeRetryQueue, FakeUserDeltas};
use crate::usecase::reconcile_queue::lease_name;
use crate::usecase::testkit::World;

const LEASE: TimeDelta = TimeDelta::minutes(6);

/// `n` bound users `u0..u{n-1}`, each with a directory password, and a queue of passes.
async fn world_with(n: usize) -> (World, FakeRetryQueue) {
    let w = crate::usecase::testkit::bound_users_with_password(n, "Correct-Horse-7").await;
    let passes = FakeRetryQueue::new(w.clock.clone());
    (w, passes)
}

fn lenient() -> ReconcileSettings {
    ReconcileSettings {
        safeguard: crate::policy::safeguard::Safeguard::Share(1.0),
        ..ReconcileSettings::default()
    }
}

/// Delivers every message on the queue of passes (each `times` times) until none is left;
/// answers each delivery's step.
async fn drain(
    w: &World,
    passes: &FakeRetryQueue,
    settings: &ReconcileSettings,
    times: usize,
) -> Vec<RunStep> {
    let mut steps = Vec::new();
    for _ in 0..50 {
        let batch = passes.drain();
        if batch.is_empty() {
            return steps;
        }
        for message in batch {
            let run = run_of(&message).expect("a run's pass");
            for _ in 0..times {
                let step = RunPasses::new(w, passes, "worker", LEASE, settings)
                    .step(&message, &run)
                    .await
                    .unwrap();
                steps.push(step);
            }
        }
    }
    panic!("the chain of passes ends");
}

fn run_in(w: &World, id: &RunId) -> ReconcileRun {
    w.runs.all().into_iter().find(|r| &r.run_id == id).unwrap()
}

#[tokio::test]
async fn a_requested_run_is_queued_at_once_and_done_after_its_pass_with_the_report() {
    // R-OPS-2: the API only records and queues; the pass runs from the queue.
    let (w, passes) = world_with(2).await;
    let settings = ReconcileSettings::default();
    let run = RunPasses::new(&w, &passes, "api", LEASE, &settings)
        .request(&w.tenant.id, false)
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(w.cursors.puts(), 0, "nothing ran yet");
    let queued = passes.snapshot();
    assert_eq!(queued.len(), 1);
    assert_eq!(run_of(&queued[0].message), Some(run.run_id.clone()));
    assert_eq!(queued[0].message.reason, REASON_REQUESTED);
    assert_eq!(queued[0].message.attempt, 1);

    w.clock.advance(TimeDelta::seconds(3));
    let steps = drain(&w, &passes, &settings, 1).await;
    assert_eq!(steps, vec![RunStep::Ran(RunStatus::Done)]);
    let done = run_in(&w, &run.run_id);
    assert_eq!(done.status, RunStatus::Done);
    assert_eq!(done.passes, 1);
    assert_eq!(done.started_at, Some(w.clock.now()));
    assert_eq!(done.finished_at, Some(w.clock.now()));
    assert_eq!(done.requested_at, w.clock.now() - TimeDelta::seconds(3));
    let report = done.report.unwrap();
    assert_eq!(report["dryRun"], false);
    assert_eq!(report["complete"], true);
    assert_eq!(report["bound"], 2);
    assert_eq!(report["truncated"], false);
    assert!(report["requeued"].is_object(), "{report}");
    assert!(w.cursors.puts() > 0, "a writing run saves the cursor");
}

#[tokio::test]
async fn a_dry_run_keeps_its_plan_and_writes_nothing() {
    // R-OPS-2, R-REC-2
    let (w, passes) = world_with(3).await;
    let settings = lenient();
    RunPasses::new(&w, &passes, "first", LEASE, &settings)
        .request(&w.tenant.id, false)
        .await
        .unwrap();
    drain(&w, &passes, &settings, 1).await;
    let gone = w.binding("u0").await.m365_object_id.unwrap();
    w.directory.soft_delete(&w.tenant.id, &gone).unwrap();
    let cursors = w.cursors.puts();
    let events = w.events.all().len();

    let dry = RunPasses::new(&w, &passes, "api", LEASE, &settings)
        .request(&w.tenant.id, true)
        .await
        .unwrap();
    assert_eq!(
        drain(&w, &passes, &settings, 1).await,
        vec![RunStep::Ran(RunStatus::Done)]
    );
    let run = run_in(&w, &dry.run_id);
    assert!(run.dry_run);
    let report = run.report.unwrap();
    assert_eq!(report["dryRun"], true);
    assert_eq!(report["plan"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["plan"][0]["kind"], "mark_deleted");
    assert_eq!(report["applied"], 0);
    assert_eq!(w.cursors.puts(), cursors, "no cursor moved");
    assert_eq!(w.events.all().len(), events, "nothing recorded");
    assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
}

#[tokio::test]
async fn a_long_round_runs_as_chained_passes_under_one_run_and_redelivery_counts_each_once() {
    // R-OPS-2, R-REC-1: a pass delivered twice is merged once.
    let (mut w, passes) = world_with(4).await;
    w.user_deltas = FakeUserDeltas::with_page_size(&w.directory, 1);
    w.cursors = FakeReconcileCursors::new();
    let settings = ReconcileSettings {
        max_pages: 1,
        ..ReconcileSettings::default()
    };
    let run = RunPasses::new(&w, &passes, "api", LEASE, &settings)
        .request(&w.tenant.id, false)
        .await
        .unwrap();
    let steps = drain(&w, &passes, &settings, 2).await;
    let ran: Vec<&RunStep> = steps
        .iter()
        .filter(|s| matches!(s, RunStep::Ran(_)))
        .collect();
    assert!(ran.len() >= 2, "{steps:?}");
    assert_eq!(ran.last(), Some(&&RunStep::Ran(RunStatus::Done)));
    assert!(
        steps.iter().all(|s| matches!(
            s,
            RunStep::Ran(_) | RunStep::Skipped("pass_already_counted" | "run_finished")
        )),
        "{steps:?}"
    );
    let done = run_in(&w, &run.run_id);
    assert_eq!(done.status, RunStatus::Done);
    assert_eq!(done.passes as usize, ran.len(), "each pass counted once");
    let report = done.report.unwrap();
    assert_eq!(report["pages"].as_u64().unwrap(), w.user_deltas.pages());
    assert_eq!(report["complete"], true);
    assert_eq!(report["continued"], false);
}

#[tokio::test]
async fn a_run_requested_while_a_scheduled_pass_holds_the_tenant_waits_then_runs() {
    // R-OPS-2, R-REC-1: one pass per tenant at a time; the run is not dropped.
    let (w, passes) = world_with(2).await;
    let settings = ReconcileSettings::default();
    let lease = lease_name(&w.tenant.id);
    let now = w.clock.now();
    assert!(
        w.leases
            .acquire(&lease, "scheduled", now, now + LEASE)
            .await
            .unwrap()
    );
    let run = RunPasses::new(&w, &passes, "api", LEASE, &settings)
        .request(&w.tenant.id, false)
        .await
        .unwrap();
    let message = passes.drain().remove(0);
    let runner = RunPasses::new(&w, &passes, "worker", LEASE, &settings);
    assert_eq!(
        runner.step(&message, &run.run_id).await.unwrap(),
        RunStep::Waiting
    );
    assert_eq!(w.cursors.puts(), 0, "nothing ran");
    let waiting = passes.snapshot();
    assert_eq!(waiting.len(), 1, "sent again");
    assert_eq!(
        waiting[0].visible_at,
        w.clock.now() + TimeDelta::seconds(20)
    );
    assert_eq!(
        run_in(&w, &run.run_id).status,
        RunStatus::Queued,
        "waits queued"
    );

    w.leases.release(&lease, "scheduled").await.unwrap();
    w.clock.advance(TimeDelta::seconds(20));
    assert_eq!(
        drain(&w, &passes, &settings, 1).await,
        vec![RunStep::Ran(RunStatus::Done)]
    );
    assert_eq!(run_in(&w, &run.run_id).passes, 1);
    assert!(w.cursors.puts() > 0);
}

#[tokio::test]
async fn a_run_fails_with_a_code_when_the_pass_fails_for_good_or_the_tenant_is_not_active() {
    // R-OPS-2: a failed run says why; a retryable failure leaves it for redelivery.
    let (w, passes) = world_with(1).await;
    let settings = ReconcileSettings::default();
    let runner = RunPasses::new(&w, &passes, "worker", LEASE, &settings);

    let run = runner.request(&w.tenant.id, true).await.unwrap();
    let message = passes.drain().remove(0);
    w.directory.fail_next_call(Error::Throttled {
        retry_after: None,
        graph_request_id: None,
    });
    let error = runner.step(&message, &run.run_id).await.unwrap_err();
    assert!(error.is_retryable());
    assert_eq!(run_in(&w, &run.run_id).status, RunStatus::Running);
    w.directory.fail_next_call(Error::Forbidden {
        graph_request_id: None,
    });
    let step = runner.step(&message, &run.run_id).await.unwrap();
    assert!(matches!(step, RunStep::Failed(_)), "{step:?}");
    let failed = run_in(&w, &run.run_id);
    assert_eq!(failed.status, RunStatus::Failed);
    let why = failed.error.unwrap();
    assert!(!why.code.is_empty() && !why.message.is_empty(), "{why:?}");
    assert!(failed.finished_at.is_some());
    assert_eq!(
        runner.step(&message, &run.run_id).await.unwrap(),
        RunStep::Skipped("run_finished"),
        "a redelivery of a finished run does nothing"
    );

    let parked = runner.request(&w.tenant.id, false).await.unwrap();
    w.set_tenant_status(TenantStatus::ReauthorizationRequired)
        .await;
    let message = passes.drain().remove(0);
    assert_eq!(
        runner.step(&message, &parked.run_id).await.unwrap(),
        RunStep::Failed("tenant_not_active")
    );
    let failed = run_in(&w, &parked.run_id);
    assert_eq!(failed.error.unwrap().code, "tenant_not_active");

    w.set_tenant_status(TenantStatus::Active).await;
    let endless = runner.request(&w.tenant.id, false).await.unwrap();
    let mut message = passes.drain().remove(0);
    message.attempt = MAX_PASSES + 1;
    assert_eq!(
        runner.step(&message, &endless.run_id).await.unwrap(),
        RunStep::Failed("too_many_passes")
    );
}

#[tokio::test]
async fn a_safeguard_trip_holds_the_run_and_its_report_shows_the_trip() {
    // R-OPS-2, R-REC-3
    let (w, passes) = world_with(10).await;
    let settings = ReconcileSettings::default();
    let runner = RunPasses::new(&w, &passes, "worker", LEASE, &settings);
    runner.request(&w.tenant.id, false).await.unwrap();
    drain(&w, &passes, &settings, 1).await;
    for i in 0..3 {
        let id = w.binding(&format!("u{i}")).await.m365_object_id.unwrap();
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
    }
    let run = runner.request(&w.tenant.id, false).await.unwrap();
    assert_eq!(
        drain(&w, &passes, &settings, 1).await,
        vec![RunStep::Ran(RunStatus::Held)]
    );
    let held = run_in(&w, &run.run_id);
    assert_eq!(held.status, RunStatus::Held);
    assert!(held.finished_at.is_some());
    let report = held.report.unwrap();
    assert_eq!(report["safeguard"]["destructive"], 3, "{report}");
    assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
}

#[tokio::test]
async fn a_message_of_an_unknown_run_or_of_another_tenant_runs_nothing() {
    // R-OPS-2: tenant isolation — a run is found under its own tenant only.
    let (w, passes) = world_with(1).await;
    let settings = ReconcileSettings::default();
    let runner = RunPasses::new(&w, &passes, "worker", LEASE, &settings);
    let run = runner.request(&w.tenant.id, false).await.unwrap();
    let mut foreign = passes.drain().remove(0);
    foreign.subject = OperationSubject::Tenant(TenantId::generate());
    assert_eq!(
        runner.step(&foreign, &run.run_id).await.unwrap(),
        RunStep::Skipped("run_not_found")
    );
    assert_eq!(w.cursors.puts(), 0);
    assert_eq!(run_in(&w, &run.run_id).status, RunStatus::Queued);
}

#[test]
fn merged_reports_add_counts_append_lists_up_to_the_cap_and_say_truncated() {
    // R-OPS-2: a run's record stays bounded whatever the drift.
    let item = |i: usize| serde_json::json!({ "userId": format!("u{i}") });
    let pass = |n: usize, from: usize| {
        serde_json::json!({
            "pages": 2, "applied": n, "fullSync": from == 0, "complete": false,
            "plan": (from..from + n).map(item).collect::<Vec<_>>(),
            "groups": { "pages": 1, "plan": [], "applied": 0 },
            "requeued": { "requeued": 1, "skipped": 0, "failed": 0 },
            "licenses": if from == 0 { serde_json::json!({ "assigned": 1 }) } else { Value::Null },
        })
    };
    let mut run = Value::Object(Map::new());
    merge_report(&mut run, pass(60, 0));
    assert_eq!(run["truncated"], false);
    merge_report(&mut run, pass(60, 60));
    assert_eq!(run["pages"], 4);
    assert_eq!(run["applied"], 120, "counts are not capped");
    assert_eq!(run["plan"].as_array().unwrap().len(), MAX_ITEMS);
    assert_eq!(run["plan"][99]["userId"], "u99");
    assert_eq!(run["truncated"], true);
    assert_eq!(run["fullSync"], true, "kept once set");
    assert_eq!(run["groups"]["pages"], 2);
    assert_eq!(run["requeued"]["requeued"], 2);
    assert_eq!(
        run["licenses"]["assigned"], 1,
        "kept when a later pass has none"
    );
    merge_report(&mut run, pass(0, 0));
    assert_eq!(run["truncated"], true, "stays truncated");
}

#[tokio::test]
async fn a_run_and_every_pass_it_queues_name_who_asked_for_it() {
    // R-AUD-1: the passes run as the schedule's worker but act for the requester.
    let (mut w, passes) = world_with(1).await;
    w.actor = crate::model::Actor::principal("arn:aws:iam::123456789012:user/admin").unwrap();
    let settings = ReconcileSettings::default();
    let run = RunPasses::new(&w, &passes, "api", LEASE, &settings)
        .request(&w.tenant.id, false)
        .await
        .unwrap();
    assert_eq!(run.requested_by, Some(w.actor.clone()));
    let queued = passes.snapshot();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].message.actor, Some(w.actor.clone()));
}
