//! `reconcile::handle` driven with real event JSON (API Gateway HTTP API 2.0, SQS, EventBridge
//! schedule) on the engine's in-memory fakes (`testing::World`): the API answers `202` with a run
//! whose passes run from the queue of passes and whose status and report the runs route shows
//! (R-OPS-2, R-REC-2), or a 4xx with a machine-readable code (R-SAFE-1), the schedule fans out one
//! pass per active tenant on the queue of passes (R-REC-1), a batch of passes runs them and
//! reports failures per record (R-OPS-1), and an event of no known kind is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use lambda_runtime::{Context, LambdaEvent};
use m365_engine::model::{BindingState, EventKind, M365ObjectId, RetryMessage, TenantStatus};
use m365_engine::ports::{Clock, Leases};
use m365_engine::testing::{FakeRetryQueue, World};
use m365_lambda::testing::{api_event_json, sqs_event_json};
use reconcile::{Settings, Wiring, handle};
use serde_json::{Value, json};

/// The Contoso world with `n` bound users, and an empty queue of passes.
async fn wiring(n: usize) -> Wiring<World> {
    let w = World::new().await;
    for i in 0..n {
        let id = format!("u{i}");
        w.user(&id).await;
        w.bind(&id).await;
    }
    Wiring {
        passes: FakeRetryQueue::new(w.clock.clone()),
        ports: w,
        settings: Settings::default(),
    }
}

fn invocation(payload: Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "req-1".to_owned();
    LambdaEvent::new(payload, context)
}

fn post(path: &str, dry_run: Option<&str>) -> LambdaEvent<Value> {
    let query: Vec<(&str, &str)> = dry_run.map(|flag| ("dryRun", flag)).into_iter().collect();
    invocation(api_event_json("POST", path, &query, None))
}

fn reconcile_path(f: &Wiring<World>) -> String {
    format!("/tenants/{}/reconcile", f.ports.tenant.id)
}

/// The status and decoded body of an API answer.
async fn call(f: &Wiring<World>, event: LambdaEvent<Value>) -> (i64, Value) {
    let answer = handle(f, event).await.unwrap();
    assert_eq!(answer["headers"]["content-type"], "application/json");
    let body = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    (answer["statusCode"].as_i64().unwrap(), body)
}

fn schedule() -> LambdaEvent<Value> {
    invocation(json!({
        "version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-27T15:00:00Z", "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/hourly"], "detail": {}
    }))
}

fn sqs(records: &[(&str, Option<&str>)]) -> LambdaEvent<Value> {
    let records: Vec<(String, Option<&str>)> = records
        .iter()
        .map(|(id, body)| ((*id).to_owned(), *body))
        .collect();
    invocation(sqs_event_json(&records))
}

fn get(path: &str) -> LambdaEvent<Value> {
    invocation(api_event_json("GET", path, &[], None))
}

/// Delivers the queue of passes to the function, one message per batch, until it is empty;
/// every record must be acknowledged. Answers how many passes were delivered.
async fn drain_passes(f: &Wiring<World>) -> usize {
    let mut delivered = 0;
    loop {
        let batch = f.passes.drain();
        if batch.is_empty() {
            return delivered;
        }
        for message in batch {
            assert!(delivered < 50, "the chain of passes ends");
            let body = serde_json::to_string(&message).unwrap();
            let answer = handle(f, sqs(&[("m", Some(body.as_str()))])).await.unwrap();
            assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
            delivered += 1;
        }
    }
}

/// Requests a run (`dryRun` as given) and answers its runId after checking the 202.
async fn request_run(f: &Wiring<World>, dry_run: Option<&str>) -> String {
    let answer = handle(f, post(&reconcile_path(f), dry_run)).await.unwrap();
    assert_eq!(answer["statusCode"], 202, "{answer}");
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "queued");
    let run = body["runId"].as_str().unwrap().to_owned();
    assert_eq!(
        answer["headers"]["location"],
        format!("{}/runs/{run}", reconcile_path(f)),
        "{answer}"
    );
    run
}

/// Requests a writing run, drains its passes and answers the finished run.
async fn run_through(f: &Wiring<World>) -> Value {
    let run = request_run(f, Some("false")).await;
    drain_passes(f).await;
    run_status(f, &run).await
}

async fn run_status(f: &Wiring<World>, run: &str) -> Value {
    let (status, body) = call(f, get(&format!("{}/runs/{run}", reconcile_path(f)))).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_reconcile_request_answers_202_at_once_and_its_run_is_done_once_the_queue_is_drained() {
    // R-OPS-2: nothing runs behind the API's 30 s; the pass runs from the queue of passes.
    let f = wiring(2).await;
    let run = request_run(&f, Some("false")).await;
    assert_eq!(f.ports.cursors.puts(), 0, "no pass ran in the request");
    let queued = run_status(&f, &run).await;
    assert_eq!(queued["status"], "queued", "{queued}");
    assert_eq!(queued["dryRun"], false);
    assert_eq!(
        queued["requestedBy"], "local",
        "R-AUD-1: the World's caller"
    );
    assert_eq!(queued["passes"], 0);
    assert!(queued["requestedAt"].is_string());
    assert_eq!(queued["report"], Value::Null);
    assert!(
        f.ports.queue.snapshot().is_empty(),
        "the pass goes on the queue of passes, not the retry queue"
    );

    assert_eq!(drain_passes(&f).await, 1);
    let done = run_status(&f, &run).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["passes"], 1);
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());
    assert_eq!(done["error"], Value::Null);
    let report = &done["report"];
    assert_eq!(report["tenantId"], f.ports.tenant.id.to_string());
    assert_eq!(report["dryRun"], false);
    assert_eq!(report["complete"], true);
    assert_eq!(report["continued"], false);
    assert_eq!(report["truncated"], false);
    assert!(report["requeued"].is_object(), "{report}");
    assert!(f.ports.cursors.puts() > 0, "the cursor is saved");
}

#[tokio::test]
async fn a_dry_run_keeps_the_plan_of_users_and_groups_on_its_run_and_writes_nothing() {
    // R-OPS-2, R-REC-2: dryRun defaults to true, so a bare call never writes.
    let f = wiring(3).await;
    let events = f.ports.events.all().len();
    for flag in [Some("true"), None] {
        let run = request_run(&f, flag).await;
        drain_passes(&f).await;
        let done = run_status(&f, &run).await;
        assert_eq!(done["status"], "done", "{done}");
        assert_eq!(done["dryRun"], true);
        let report = &done["report"];
        assert_eq!(report["dryRun"], true);
        assert_eq!(report["bound"], 3);
        assert!(report["plan"].is_array(), "{report}");
        assert!(report["groups"].is_object(), "{report}");
        assert_eq!(report["requeued"], Value::Null);
    }
    assert_eq!(f.ports.cursors.puts(), 0, "no cursor saved");
    assert_eq!(f.ports.events.all().len(), events, "nothing recorded");
}

#[tokio::test]
async fn a_run_whose_pass_fails_for_good_is_failed_with_a_code_and_a_message() {
    // R-OPS-2: the requester sees why; the message is not left to loop.
    let f = wiring(1).await;
    let run = request_run(&f, Some("false")).await;
    f.ports
        .directory
        .fail_next_call(m365_engine::Error::Forbidden {
            graph_request_id: None,
        });
    drain_passes(&f).await;
    let failed = run_status(&f, &run).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "forbidden");
    assert!(failed["error"]["message"].is_string());
    assert!(failed["finishedAt"].is_string());
}

#[tokio::test]
async fn a_pass_delivered_twice_is_counted_once() {
    // R-OPS-2: SQS may deliver a message more than once; the run's report does not double.
    let f = wiring(2).await;
    let run = request_run(&f, Some("false")).await;
    let message = f.passes.drain().remove(0);
    let body = serde_json::to_string(&message).unwrap();
    for id in ["m-1", "m-1-again"] {
        let answer = handle(&f, sqs(&[(id, Some(body.as_str()))])).await.unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    }
    let done = run_status(&f, &run).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["passes"], 1);
    assert_eq!(done["report"]["pages"], 1, "{done}");
    assert!(f.passes.snapshot().is_empty());
}

#[tokio::test]
async fn an_unknown_run_and_another_tenants_run_are_not_found() {
    // R-OPS-2, R-SAFE-1: a run is shown under its own tenant only.
    let f = wiring(1).await;
    let run = request_run(&f, None).await;
    let other = m365_engine::model::TenantId::generate();
    for path in [
        format!(
            "{}/runs/{}",
            reconcile_path(&f),
            m365_engine::model::RunId::generate()
        ),
        format!("/tenants/{other}/reconcile/runs/{run}"),
    ] {
        let (status, body) = call(&f, get(&path)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("run_not_found")),
            "{path}: {body}"
        );
        assert!(body["error"]["message"].is_string());
    }
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_code_and_run_nothing() {
    // R-SAFE-1
    let f = wiring(1).await;
    let path = reconcile_path(&f);
    let unknown = "/tenants/00000000-0000-4000-8000-000000000001/reconcile";
    for (event, status, code) in [
        (post(&path, Some("maybe")), 400, "invalid_query"),
        (
            post("/tenants/not-a-guid/reconcile", None),
            400,
            "invalid_tenant_id",
        ),
        (post(unknown, None), 404, "not_found"),
        (post("/tenants", None), 404, "route_not_found"),
        (
            get(&format!("{path}/runs/not-a-run")),
            400,
            "invalid_run_id",
        ),
        (
            get("/tenants/not-a-guid/reconcile/runs/00000000-0000-4000-8000-000000000001"),
            400,
            "invalid_tenant_id",
        ),
    ] {
        let (got, body) = call(&f, event).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(body["error"]["message"].is_string());
    }
    f.ports.set_tenant_status(TenantStatus::Deauthorized).await;
    let (status, body) = call(&f, post(&path, Some("false"))).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("tenant_not_active"))
    );
    assert_eq!(f.ports.cursors.puts(), 0, "nothing ran");
    assert!(f.ports.runs.all().is_empty(), "no run recorded");
    assert!(f.passes.snapshot().is_empty(), "nothing queued");
}

#[tokio::test]
async fn the_schedule_queues_one_pass_per_active_tenant_on_the_queue_of_passes() {
    // R-REC-1: the passes go to their own queue, never to the retry queue.
    let f = wiring(1).await;
    let answer = handle(&f, schedule()).await.unwrap();
    assert_eq!(answer, json!({ "tenants": 1, "queued": 1 }));
    let queued = f.passes.drain();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].attempt, 1);
    assert!(
        f.ports.queue.snapshot().is_empty(),
        "nothing on the retry queue"
    );
    assert_eq!(
        f.ports.cursors.puts(),
        0,
        "the schedule runs no pass itself"
    );
}

#[tokio::test]
async fn a_batch_of_passes_runs_each_and_reports_only_the_records_that_failed() {
    // R-REC-1, R-OPS-1: an undecodable record is reported (for the DLQ), the pass is acknowledged.
    let f = wiring(2).await;
    handle(&f, schedule()).await.unwrap();
    let pass: RetryMessage = f.passes.drain().remove(0);
    let body = serde_json::to_string(&pass).unwrap();
    let event = sqs(&[
        ("m-1", Some(body.as_str())),
        ("m-2", Some("{not a pass")),
        ("m-3", None),
    ]);
    let answer = handle(&f, event).await.unwrap();
    assert_eq!(
        answer["batchItemFailures"],
        json!([{ "itemIdentifier": "m-2" }, { "itemIdentifier": "m-3" }]),
        "{answer}"
    );
    assert!(
        f.ports.cursors.puts() > 0,
        "the pass ran and saved its cursor"
    );
    assert!(
        f.passes.snapshot().is_empty(),
        "a complete round is not continued"
    );
}

#[tokio::test]
async fn events_of_no_known_kind_are_refused_with_a_clear_error() {
    // A trigger wired by mistake runs nothing.
    let f = wiring(1).await;
    for payload in [
        json!({ "hello": "world" }),
        json!({ "Records": [] }),
        json!({ "Records": [{ "eventSource": "aws:sns", "messageId": "x" }] }),
        json!({ "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2", "detail": {} }),
        json!(42),
    ] {
        let error = handle(&f, invocation(payload.clone())).await.unwrap_err();
        assert!(
            error.to_string().starts_with("unknown_event"),
            "{payload}: {error}"
        );
    }
    assert!(f.passes.snapshot().is_empty());
    assert_eq!(f.ports.cursors.puts(), 0);
}

fn held_call(f: &Wiring<World>, method: &str, verb: Option<&str>) -> LambdaEvent<Value> {
    let path = match verb {
        Some(verb) => format!("{}/held/{verb}", reconcile_path(f)),
        None => format!("{}/held", reconcile_path(f)),
    };
    invocation(api_event_json(method, &path, &[], None))
}

/// Deletes the accounts of `ids` in M365: each is a removal for the next pass.
fn delete_in_m365(f: &Wiring<World>, ids: &[M365ObjectId]) {
    for id in ids {
        f.ports
            .directory
            .soft_delete(&f.ports.tenant.id, id)
            .unwrap();
    }
}

async fn objects(f: &Wiring<World>, ids: &[&str]) -> Vec<M365ObjectId> {
    let mut out = Vec::new();
    for id in ids {
        out.push(World::object_id(&f.ports.binding(id).await));
    }
    out
}

#[tokio::test]
async fn a_tripped_run_is_held_shown_approved_once_and_then_gone() {
    // R-REC-3
    let f = wiring(10).await;
    run_through(&f).await;
    delete_in_m365(&f, &objects(&f, &["u0", "u1", "u2"]).await);
    let run = run_through(&f).await;
    assert_eq!(run["status"], "held", "{run}");
    let body = &run["report"];
    assert_eq!(body["safeguard"]["destructive"], 3, "{body}");
    assert_eq!(body["safeguard"]["threshold"], "10%");
    let id = body["held"]["id"].as_str().unwrap().to_owned();

    let (status, plan) = call(&f, held_call(&f, "GET", None)).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["id"], id.as_str());
    assert_eq!(plan["threshold"], "10%");
    assert_eq!(plan["counts"]["destructive"], 3);
    assert_eq!(plan["counts"]["allowed"], 1);
    assert_eq!(plan["users"].as_array().unwrap().len(), 3);
    assert_eq!(plan["users"][0]["kind"], "mark_deleted");
    assert!(plan.get("resume").is_none(), "{plan}");

    let (status, decision) = call(&f, held_call(&f, "POST", Some("approve"))).await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["planId"], id.as_str());
    assert_eq!(decision["applied"], 3);
    assert_eq!(
        f.ports.binding("u0").await.state,
        BindingState::DeletedInM365
    );
    assert_eq!(f.ports.count_events(EventKind::ReconcilePlanApproved), 1);

    for (method, verb) in [
        ("POST", Some("approve")),
        ("GET", None),
        ("POST", Some("reject")),
    ] {
        let (status, body) = call(&f, held_call(&f, method, verb)).await;
        assert_eq!(status, 404, "{method} {verb:?}: {body}");
        assert_eq!(body["error"]["code"], "no_held_plan");
    }
    assert_eq!(f.ports.count_events(EventKind::ReconcilePlanApproved), 1);
}

#[tokio::test]
async fn a_rejected_plan_is_discarded_and_not_proposed_by_the_next_run() {
    // R-REC-3
    let f = wiring(10).await;
    run_through(&f).await;
    delete_in_m365(&f, &objects(&f, &["u3", "u4"]).await);
    let run = run_through(&f).await;
    assert_eq!(run["status"], "held", "{run}");
    assert!(run["report"]["held"].is_object(), "{run}");
    let (status, decision) = call(&f, held_call(&f, "POST", Some("reject"))).await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["decision"], "rejected");
    assert_eq!(decision["applied"], 0);
    assert_eq!(f.ports.count_events(EventKind::ReconcilePlanRejected), 1);
    let next = run_through(&f).await;
    assert_eq!(next["status"], "done", "{next}");
    let next = &next["report"];
    assert_eq!(next["plan"], json!([]), "{next}");
    assert_eq!(next["safeguard"], Value::Null);
    assert_eq!(f.ports.binding("u3").await.state, BindingState::Provisioned);
}

#[tokio::test]
async fn held_routes_refuse_bad_tenants_and_a_decision_while_the_tenant_is_busy() {
    // R-SAFE-1, R-REC-3
    let f = wiring(10).await;
    run_through(&f).await;
    delete_in_m365(&f, &objects(&f, &["u0", "u1"]).await);
    assert_eq!(run_through(&f).await["status"], "held");
    let now = f.ports.clock.now();
    f.ports
        .leases
        .acquire(
            &m365_engine::usecase::reconcile_queue::lease_name(&f.ports.tenant.id),
            "a-pass",
            now,
            now + chrono::TimeDelta::minutes(6),
        )
        .await
        .unwrap();
    let (status, body) = call(&f, held_call(&f, "POST", Some("approve"))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "reconcile_in_progress");
    assert_eq!(f.ports.binding("u0").await.state, BindingState::Provisioned);
    for (path, status, code) in [
        (
            "/tenants/not-a-guid/reconcile/held",
            400,
            "invalid_tenant_id",
        ),
        (
            "/tenants/00000000-0000-4000-8000-000000000001/reconcile/held",
            404,
            "not_found",
        ),
    ] {
        let (got, body) = call(&f, invocation(api_event_json("GET", path, &[], None))).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code);
    }
    f.ports
        .set_tenant_status(TenantStatus::ReauthorizationRequired)
        .await;
    let (status, body) = call(&f, held_call(&f, "POST", Some("approve"))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "tenant_not_active");
}
