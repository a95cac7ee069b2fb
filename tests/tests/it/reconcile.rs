//! The `reconcile` function end to end (issue 6, part C): users bound through the real `directory`,
//! `password-push` and `bind` handlers on moto + the m365-emulator, drift made behind our back with
//! the emulator's control API (like an admin in the portal) or with Graph itself, then reconcile
//! invoked with real API Gateway v2 and EventBridge events. Every test names the requirement it
//! proves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use chrono::TimeDelta;
use lambda_runtime::LambdaEvent;
use m365_engine::model::{BindingState, EventKind, UserId};
use m365_engine::ports::{BindingStore, Leases};
use m365_integration_tests::{
    CONTOSO, OffsetClock, ReconcileScene, deliver_run_pass, lambda_context, next_sqs_event,
    reconcile_api, reconcile_run, schedule_event,
};
use reconcile::{Reconciler, Settings};
use serde_json::{Value, json};

const PASSWORD: &str = "Correct-Horse-7";

struct Stack(ReconcileScene);

impl std::ops::Deref for Stack {
    type Target = ReconcileScene;
    fn deref(&self) -> &ReconcileScene {
        &self.0
    }
}

impl Stack {
    async fn start() -> Option<Self> {
        Some(Self(ReconcileScene::start("rec").await?))
    }

    /// Runs the retry worker (the provisioning wiring, on the test's clock) over the retry
    /// queue's visible messages until none is left; answers how many it handled.
    async fn drain_retries(&self) -> usize {
        let sqs = aws_sdk_sqs::Client::new(&self.world.sdk);
        let mut handled = 0;
        while let Some((event, receipt)) = next_sqs_event(&sqs, &self.retries).await {
            assert!(handled < 20, "the retries end");
            let batch: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(event).unwrap();
            let answer = retry_worker::handle_batch(&self.provisioning, &batch).await;
            assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
            sqs.delete_message()
                .queue_url(&self.retries)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap();
            handled += 1;
        }
        handled
    }

    /// Delivers the reconcile queue's messages to the function one by one, as Lambda's SQS
    /// trigger does (batch size 1), until the queue is empty; acknowledges the ones the function
    /// did not report as failures. Answers each pass's message (decoded) in delivery order.
    async fn drain_passes(&self, deps: &Reconciler<OffsetClock>) -> Vec<Value> {
        let sqs = aws_sdk_sqs::Client::new(&self.world.sdk);
        let mut handled = Vec::new();
        while let Some((event, receipt)) = next_sqs_event(&sqs, &self.passes).await {
            assert!(handled.len() < 50, "the chain of passes ends");
            let body = event["Records"][0]["body"].as_str().unwrap().to_owned();
            let answer = reconcile::handle(deps, LambdaEvent::new(event, lambda_context()))
                .await
                .unwrap();
            assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
            sqs.delete_message()
                .queue_url(&self.passes)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap();
            handled.push(serde_json::from_str(&body).unwrap());
        }
        handled
    }

    /// Directory users `r0..r{n-1}` at contoso.com with a password and job title, each bound.
    async fn bound_users(&self, n: usize) {
        for i in 0..n {
            let id = format!("r{i}");
            let body = json!({
                "email": format!("{id}@contoso.com"),
                "displayName": format!("User {id}"),
                "jobTitle": "Engineer",
            });
            let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
            assert!(status == 200 || status == 201, "{status} {answer}");
            let (status, answer) = self
                .call(
                    "POST",
                    &format!("/users/{id}/password"),
                    Some(json!({ "password": PASSWORD })),
                )
                .await;
            assert_eq!(status, 204, "{answer}");
            let (status, answer) = self
                .call(
                    "PUT",
                    &format!("/users/{id}/binding"),
                    Some(json!({ "welcome": false })),
                )
                .await;
            assert_eq!(status, 200, "{answer}");
        }
    }

    async fn m365_user(&self, upn: &str) -> Value {
        self.m365_property(upn, "").await
    }

    /// One Graph property of the active user `upn` as M365 holds it (`""`: all of them).
    async fn m365_property(&self, upn: &str, name: &str) -> Value {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        t["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| {
                u["deletedAt"].is_null()
                    && u["properties"]["userPrincipalName"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case(upn))
            })
            .map(|u| {
                if name.is_empty() {
                    u["properties"].clone()
                } else {
                    u["properties"][name].clone()
                }
            })
            .unwrap_or(Value::Null)
    }

    /// Edits a user's Graph properties behind Graph's back (an admin in the portal).
    async fn portal_patch(&self, upn: &str, patch: Value) {
        let status = self
            .world
            .emulator
            .send(
                reqwest::Method::PATCH,
                &format!("/_emulator/tenants/{CONTOSO}/users/{upn}"),
                patch,
            )
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// Deletes a user in M365 with Graph itself.
    async fn delete_in_m365(&self, upn: &str) {
        let (status, body) = self
            .graph(reqwest::Method::DELETE, &format!("/users/{upn}"), None)
            .await;
        assert_eq!(status, 204, "{body}");
    }

    async fn m365_id(&self, user: &str) -> String {
        let (status, body) = self
            .call("GET", &format!("/users/{user}/binding"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["m365ObjectId"].as_str().unwrap().to_owned()
    }
}

fn plan_kinds(report: &Value) -> Vec<(String, String)> {
    let mut kinds: Vec<(String, String)> = report["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["userId"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    kinds.sort();
    kinds
}

#[tokio::test]
async fn each_kind_of_drift_is_repaired_by_one_run_and_the_next_run_finds_nothing() {
    // R-REC-1, R-PWD-3, R-BIND-8
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(20).await;
    let (status, body) = s.call("DELETE", "/users/r0/binding", None).await;
    assert_eq!(status, 200, "{body}");
    let deps = s.reconciler(Settings::default());
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["fullSync"], true);
    assert_eq!(first["plan"], json!([]), "{first}");
    assert_eq!(first["bound"], 20);

    // Drift behind our back: a blocked user enabled, a job title changed, a password changed by
    // the user in M365 (later than our push), an account deleted.
    s.portal_patch("r0@contoso.com", json!({"accountEnabled": true}))
        .await;
    s.portal_patch("r1@contoso.com", json!({"jobTitle": "Pirate"}))
        .await;
    s.world.emulator.advance_clock(600).await;
    s.clock.advance(TimeDelta::seconds(600));
    let changed = s
        .world
        .emulator
        .send(
            reqwest::Method::POST,
            &format!("/_emulator/tenants/{CONTOSO}/users/r2@contoso.com/self-password-change"),
            json!({"password": "Users-Own-Choice-5"}),
        )
        .await;
    assert!(changed.is_success());
    let stamp_before = s
        .m365_property("r2@contoso.com", "lastPasswordChangeDateTime")
        .await;
    s.delete_in_m365("r3@contoso.com").await;
    // Graph's timestamps have whole seconds: let the overwrite's be a later one.
    s.world.emulator.advance_clock(5).await;

    // The scheduled invocation queues the tenant's pass; the pass repairs all of it.
    let summary = reconcile::handle(&deps, schedule_event()).await.unwrap();
    assert_eq!(summary, json!({"tenants": 1, "queued": 1}));
    let passes = s.drain_passes(&deps).await;
    assert_eq!(passes.len(), 1, "{passes:?}");
    assert_eq!(
        s.m365_property("r0@contoso.com", "accountEnabled").await,
        false
    );
    assert_eq!(s.binding_state("r0").await, BindingState::Blocked);
    assert_eq!(
        s.m365_property("r1@contoso.com", "jobTitle").await,
        "Engineer"
    );
    let stamp_after = s
        .m365_property("r2@contoso.com", "lastPasswordChangeDateTime")
        .await;
    assert_ne!(stamp_after, stamp_before, "the password was overwritten");
    let pushes = s.events_of(EventKind::UserPasswordUpdateProvision).await;
    assert!(
        pushes
            .iter()
            .any(|e| e.reason.as_deref() == Some("reconcile_password_overwritten")),
        "{pushes:?}"
    );
    assert_eq!(s.binding_state("r3").await, BindingState::DeletedInM365);

    let second = s.reconcile(&deps, false).await;
    assert_eq!(second["fullSync"], false);
    assert_eq!(second["plan"], json!([]), "{second}");
    assert_eq!(second["bound"], 19);
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_and_writes_nothing() {
    // R-REC-2
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(10).await;
    let deps = s.reconciler(Settings::default());
    s.reconcile(&deps, false).await;
    s.portal_patch(
        "r4@contoso.com",
        json!({"jobTitle": "Pirate", "accountEnabled": true}),
    )
    .await;
    s.reset_requests().await;
    let before = s.m365_user("r4@contoso.com").await;
    let plan = s.reconcile(&deps, true).await;
    assert_eq!(plan["dryRun"], true);
    assert_eq!(
        plan_kinds(&plan),
        vec![("update_attributes".to_owned(), "r4".to_owned())]
    );
    assert_eq!(plan["applied"], 0);
    let counts = s.graph_requests().await;
    let writes: Vec<&String> = counts
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("graph ") && !k.starts_with("graph GET"))
        .collect();
    assert!(writes.is_empty(), "a dry run sent {writes:?}");
    assert_eq!(s.m365_user("r4@contoso.com").await, before);
    assert!(
        s.events_of(EventKind::UserUpdateProvision)
            .await
            .iter()
            .all(|e| e.reason.as_deref() != Some("reconcile_attributes"))
    );
    // The cursor did not move: the real run sees the same drift and repairs it.
    let real = s.reconcile(&deps, false).await;
    assert_eq!(real["applied"], 1, "{real}");
    assert_eq!(
        s.m365_property("r4@contoso.com", "jobTitle").await,
        "Engineer"
    );
}

#[tokio::test]
async fn the_safeguard_stops_a_run_removing_more_than_ten_percent_before_any_write() {
    // R-REC-3
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(10).await;
    s.call("DELETE", "/users/r9/binding", None).await;
    let deps = s.reconciler(Settings::default());
    s.reconcile(&deps, false).await;
    s.delete_in_m365("r1@contoso.com").await;
    s.delete_in_m365("r2@contoso.com").await;
    s.portal_patch("r9@contoso.com", json!({"accountEnabled": true}))
        .await;
    s.reset_requests().await;
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["safeguard"]["destructive"], 3, "{report}");
    assert_eq!(report["safeguard"]["bound"], 10);
    assert_eq!(report["applied"], 0);
    assert_eq!(s.binding_state("r1").await, BindingState::Provisioned);
    assert_eq!(
        s.m365_property("r9@contoso.com", "accountEnabled").await,
        true
    );
    let counts = s.graph_requests().await;
    assert!(
        counts
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("graph ") || k.starts_with("graph GET")),
        "{counts}"
    );
    let tripped = s.events_of(EventKind::ReconcileSafeguardTripped).await;
    assert_eq!(tripped.len(), 1);
    assert_eq!(
        tripped[0].tenant_id.as_ref().map(ToString::to_string),
        Some(s.tenant.clone())
    );
    // Held (the cursor stayed, the plan waits for an admin): the next run applies nothing and
    // neither trips nor records again (see `held.rs` for approve and reject).
    assert!(report["held"]["id"].is_string(), "{report}");
    let again = s.reconcile(&deps, false).await;
    assert_eq!(again["held"]["id"], report["held"]["id"], "{again}");
    assert_eq!(again["safeguard"], Value::Null, "{again}");
    assert_eq!(again["applied"], 0);
    assert_eq!(
        s.events_of(EventKind::ReconcileSafeguardTripped)
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn an_expired_password_suspends_the_account_and_a_new_password_re_enables_it() {
    // R-PWD-4
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(10).await;
    let mut settings = Settings::default();
    settings.reconcile.password_policy =
        m365_engine::policy::password::DirectoryPasswordPolicy::new(
            8,
            [],
            Some(TimeDelta::days(30)),
        )
        .unwrap();
    let deps = s.reconciler(settings);
    s.reconcile(&deps, false).await;
    // r1..r9 renew their password on day 20; r0 does not.
    s.clock.advance(TimeDelta::days(20));
    for i in 1..10 {
        let (status, body) = s
            .call(
                "POST",
                &format!("/users/r{i}/password"),
                Some(json!({"password": "Renewed-Horse-9"})),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    s.clock.advance(TimeDelta::days(15));
    let report = s.reconcile(&deps, false).await;
    assert_eq!(
        plan_kinds(&report),
        vec![("suspend_expired".to_owned(), "r0".to_owned())],
        "{report}"
    );
    assert_eq!(s.binding_state("r0").await, BindingState::Suspended);
    assert_eq!(
        s.m365_property("r0@contoso.com", "accountEnabled").await,
        false
    );
    let deprovisions = s.events_of(EventKind::UserDeprovision).await;
    assert!(
        deprovisions
            .iter()
            .any(|e| e.reason.as_deref() == Some("password_expired")
                && e.user_id.as_ref().map(ToString::to_string).as_deref() == Some("r0")),
        "{deprovisions:?}"
    );
    assert_eq!(s.reconcile(&deps, false).await["plan"], json!([]));

    let (status, body) = s
        .call(
            "POST",
            "/users/r0/password",
            Some(json!({"password": "Fresh-Horse-10"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(s.binding_state("r0").await, BindingState::Provisioned);
    assert_eq!(
        s.m365_property("r0@contoso.com", "accountEnabled").await,
        true
    );
    assert_eq!(s.reconcile(&deps, false).await["plan"], json!([]));
}

#[tokio::test]
async fn reconcile_of_an_unchanged_tenant_costs_only_its_delta_pages() {
    // R-REC-1 (DESIGN §5: Graph cost grows with the changes, not with the tenant)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.world.emulator.delta_page_size(4).await;
    s.bound_users(12).await;
    let deps = s.reconciler(Settings::default());
    s.reset_requests().await;
    let full = s.reconcile(&deps, false).await;
    let pages = full["pages"].as_u64().unwrap();
    let group_pages = full["groups"]["pages"].as_u64().unwrap();
    assert!(
        pages >= 4,
        "a full listing of 16 users in pages of 4: {full}"
    );
    let counts = s.graph_requests().await;
    assert_eq!(counts["graph"], pages + group_pages, "{counts}");

    // Our own writes of the first run (none here) are absorbed; from now on nothing changes.
    s.reconcile(&deps, false).await;
    s.reset_requests().await;
    let unchanged = s.reconcile(&deps, false).await;
    assert_eq!(unchanged["plan"], json!([]));
    assert_eq!(unchanged["groups"]["plan"], json!([]));
    let counts = s.graph_requests().await;
    // One users delta page and one groups delta page: nothing else reaches Graph.
    assert_eq!(
        (
            unchanged["pages"].as_u64(),
            unchanged["groups"]["pages"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(counts["graph"], 2, "{counts}");
    assert_eq!(counts["graph GET /v1.0/users/delta"], 1, "{counts}");
    assert_eq!(counts["graph GET /v1.0/groups/delta"], 1, "{counts}");

    // One user drifts: the cost is the delta pages plus the one fix, never a listing.
    s.portal_patch("r3@contoso.com", json!({"jobTitle": "Pirate"}))
        .await;
    s.reset_requests().await;
    let drifted = s.reconcile(&deps, false).await;
    assert_eq!(drifted["applied"], 1, "{drifted}");
    let counts = s.graph_requests().await;
    let pages = drifted["pages"].as_u64().unwrap() + drifted["groups"]["pages"].as_u64().unwrap();
    // A pass that writes reads the tenant's privileged accounts once (R-BIND-11): the activated
    // roles (Global Administrator, and User Administrator held by the app), each role's members
    // and the consenting admin — a constant, whatever the tenant's size or the number of fixes.
    let privileged: u64 = [
        "graph GET /v1.0/directoryRoles",
        "graph GET /v1.0/directoryRoles/{id}/members",
        "graph GET /v1.0/me",
    ]
    .iter()
    .map(|k| counts.get(*k).and_then(Value::as_u64).unwrap_or(0))
    .sum();
    assert_eq!(privileged, 4, "{counts}");
    assert_eq!(counts["graph"], pages + 1 + privileged, "{counts}");
}

#[tokio::test]
async fn group_membership_drift_is_repaired_by_one_run_and_the_next_run_finds_nothing() {
    // R-REC-1 (group membership), R-GRP-1
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(10).await;
    let (status, body) = s
        .call(
            "PUT",
            "/groups/sales",
            Some(json!({"name": "Sales", "members": ["r0", "r1"]})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body) = s
        .call(
            "PUT",
            "/groups/sales/binding",
            Some(json!({"tenantId": s.tenant})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, binding) = s.call("GET", "/groups/sales/binding", None).await;
    let group = binding["m365GroupId"].as_str().unwrap().to_owned();
    let mut expected = vec![s.m365_id("r0").await, s.m365_id("r1").await];
    expected.sort();
    assert_eq!(s.group_members(&group).await, expected);
    let deps = s.reconciler(Settings::default());
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["groups"]["fullSync"], true);
    assert_eq!(first["groups"]["plan"], json!([]), "{first}");

    // Behind our back: r5 added to the group, r1 removed.
    let stranger = s.m365_id("r5").await;
    let (status, body) = s
        .graph(
            reqwest::Method::POST,
            &format!("/groups/{group}/members/$ref"),
            Some(json!({"@odata.id": format!("{}/v1.0/directoryObjects/{stranger}", s.world.emulator.base)})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let r1 = s.m365_id("r1").await;
    let (status, body) = s
        .graph(
            reqwest::Method::DELETE,
            &format!("/groups/{group}/members/{r1}/$ref"),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");

    let dry = s.reconcile(&deps, true).await;
    assert_eq!(dry["groups"]["plan"].as_array().unwrap().len(), 1, "{dry}");
    assert!(s.group_members(&group).await.contains(&stranger));

    let repaired = s.reconcile(&deps, false).await;
    let plan = &repaired["groups"]["plan"][0];
    assert_eq!(plan["groupId"], "sales", "{repaired}");
    assert_eq!(
        (plan["unexpected"].as_u64(), plan["missing"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(repaired["groups"]["applied"], 1);
    assert_eq!(s.group_members(&group).await, expected);

    let second = s.reconcile(&deps, false).await;
    assert_eq!(second["groups"]["plan"], json!([]), "{second}");
    assert_eq!(second["plan"], json!([]), "{second}");
}

#[tokio::test]
async fn a_long_delta_round_is_split_across_bounded_runs_that_resume_where_they_stopped() {
    // R-REC-1 (no single invocation runs long)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.world.emulator.delta_page_size(3).await;
    s.bound_users(10).await;
    let mut settings = Settings::default();
    settings.reconcile.max_pages = 2;
    let deps = s.reconciler(settings);
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["complete"], false, "{first}");
    assert_eq!(first["pages"], 2);
    // The API's pass queued the next one; the chain of bounded passes (2 pages each) goes on
    // through the queue until the round completes, then stops.
    assert_eq!(first["continued"], true, "{first}");
    let passes = s.drain_passes(&deps).await;
    assert!(passes.len() >= 2, "{passes:?}");
    assert!(
        passes
            .iter()
            .all(|p| p["reason"] == "reconcile_continued" && p["kind"] == "reconcile"),
        "{passes:?}"
    );
    let numbers: Vec<u64> = passes
        .iter()
        .map(|p| p["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (2..2 + numbers.len() as u64).collect::<Vec<_>>());
    let after = s.reconcile(&deps, false).await;
    assert_eq!(after["complete"], true, "{after}");
    assert_eq!(after["fullSync"], false);
    assert_eq!(after["plan"], json!([]));
}

#[tokio::test]
async fn an_async_reconcile_answers_202_and_its_run_reaches_done_through_the_queue_of_passes() {
    // R-OPS-2: the request answers at once; the run's chained passes come from the queue and
    // its record shows them merged.
    let Some(s) = Stack::start().await else {
        return;
    };
    s.world.emulator.delta_page_size(3).await;
    s.bound_users(10).await;
    let mut settings = Settings::default();
    settings.reconcile.max_pages = 2;
    let deps = s.reconciler(settings);
    s.reset_requests().await;
    let path = format!("/tenants/{}/reconcile", s.tenant);
    let (status, accepted) = reconcile_api(&deps, "POST", &path, &[("dryRun", "false")]).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["dryRun"], false);
    let run = accepted["runId"].as_str().unwrap().to_owned();
    let counts = s.graph_requests().await;
    assert_eq!(
        counts.get("graph").and_then(Value::as_u64).unwrap_or(0),
        0,
        "the request itself makes no Graph call: {counts}"
    );
    let queued = reconcile_run(&deps, &s.tenant, &run).await;
    assert_eq!(queued["status"], "queued", "{queued}");

    // A first (full) round of 13 users in pages of 3 is 5 pages: 3 passes of at most 2.
    let passes = s.drain_passes(&deps).await;
    let reasons: Vec<&str> = passes
        .iter()
        .map(|p| p["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "reconcile_requested",
            "reconcile_continued",
            "reconcile_continued"
        ],
        "{passes:?}"
    );
    let done = reconcile_run(&deps, &s.tenant, &run).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["passes"], 3);
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());
    let report = &done["report"];
    assert_eq!(report["pages"], 5, "{report}");
    assert_eq!(report["complete"], true);
    assert_eq!(report["continued"], false);
    assert_eq!(report["fullSync"], true);
    assert_eq!(report["truncated"], false);
    let counts = s.graph_requests().await;
    assert_eq!(counts["graph GET /v1.0/users/delta"], 5, "{counts}");

    // Another tenant's path, or an unknown run, is not found.
    let other = format!("/tenants/{}/reconcile/runs/{run}", uuid::Uuid::new_v4());
    let unknown = format!("{path}/runs/{}", uuid::Uuid::new_v4());
    for path in [other, unknown] {
        let (status, body) = reconcile_api(&deps, "GET", &path, &[]).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("run_not_found")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn bad_reconcile_requests_get_a_4xx_and_a_bare_call_is_a_dry_run() {
    // R-SAFE-1, R-REC-2
    let Some(s) = Stack::start().await else {
        return;
    };
    let deps = s.reconciler(Settings::default());
    let event = |path: &str, query: Value| {
        lambda_runtime::LambdaEvent::new(
            json!({
                "version": "2.0",
                "rawPath": path,
                "queryStringParameters": query,
                "requestContext": {"http": {"method": "POST", "path": path}},
                "isBase64Encoded": false
            }),
            lambda_runtime::Context::default(),
        )
    };
    let path = format!("/tenants/{}/reconcile", s.tenant);
    let bad = reconcile::handle(&deps, event(&path, json!({"dryRun": "maybe"})))
        .await
        .unwrap();
    assert_eq!(bad["statusCode"], 400, "{bad}");
    let unknown = reconcile::handle(
        &deps,
        event(
            &format!("/tenants/{}/reconcile", uuid::Uuid::new_v4()),
            Value::Null,
        ),
    )
    .await
    .unwrap();
    assert_eq!(unknown["statusCode"], 404, "{unknown}");
    let bare = reconcile::handle(&deps, event(&path, Value::Null))
        .await
        .unwrap();
    assert_eq!(bare["statusCode"], 202, "{bare}");
    let body: Value = serde_json::from_str(bare["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["dryRun"], true);
    assert_eq!(body["status"], "queued");
}

#[tokio::test]
async fn the_schedule_only_queues_passes_and_bounded_passes_finish_the_round_through_the_queue() {
    // R-REC-1 (large tenants fan out through the queue; no single invocation runs long)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.world.emulator.delta_page_size(3).await;
    s.bound_users(10).await;
    let mut settings = Settings::default();
    settings.reconcile.max_pages = 2;
    let deps = s.reconciler(settings);
    s.reset_requests().await;
    let summary = reconcile::handle(&deps, schedule_event()).await.unwrap();
    assert_eq!(summary, json!({"tenants": 1, "queued": 1}));
    let counts = s.graph_requests().await;
    assert_eq!(
        counts.get("graph").and_then(Value::as_u64).unwrap_or(0),
        0,
        "the schedule itself makes no Graph call: {counts}"
    );
    // A first (full) round of 13 users in pages of 3 is 5 pages: 3 passes of at most 2.
    let passes = s.drain_passes(&deps).await;
    let reasons: Vec<&str> = passes
        .iter()
        .map(|p| p["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "reconcile_scheduled",
            "reconcile_continued",
            "reconcile_continued"
        ],
        "{passes:?}"
    );
    let counts = s.graph_requests().await;
    assert_eq!(counts["graph GET /v1.0/users/delta"], 5, "{counts}");
    let after = s.reconcile(&deps, true).await;
    assert_eq!(after["complete"], true, "{after}");
    assert_eq!(after["fullSync"], false);
    assert_eq!(after["plan"], json!([]));
}

#[tokio::test]
async fn a_run_requested_while_a_pass_holds_the_tenant_waits_in_the_queue_and_runs_after_it() {
    // R-REC-1 (one pass per tenant at a time), R-OPS-2 (the request is not refused: it waits)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(3).await;
    let deps = s.reconciler(Settings {
        run_wait: std::time::Duration::from_secs(3),
        ..Settings::default()
    });
    let tenant = m365_engine::model::TenantId::parse(&s.tenant).unwrap();
    let lease = m365_engine::usecase::reconcile_queue::lease_name(&tenant);
    let now = chrono::Utc::now();
    assert!(
        deps.ports
            .app
            .leases
            .acquire(&lease, "another-pass", now, now + TimeDelta::minutes(6))
            .await
            .unwrap()
    );
    s.reset_requests().await;
    let path = format!("/tenants/{}/reconcile", s.tenant);
    let (status, queued) = reconcile_api(&deps, "POST", &path, &[("dryRun", "false")]).await;
    assert_eq!(status, 202, "{queued}");
    let run = queued["runId"].as_str().unwrap().to_owned();
    // The run's pass finds the tenant held: it is sent again a wait later. The queued pass of the
    // schedule is left to the running one: acknowledged, nothing read.
    reconcile::handle(&deps, schedule_event()).await.unwrap();
    let passes = s.drain_passes(&deps).await;
    assert_eq!(passes.len(), 2, "{passes:?}");
    let counts = s.graph_requests().await;
    assert_eq!(
        counts.get("graph").and_then(Value::as_u64).unwrap_or(0),
        0,
        "{counts}"
    );
    let waiting = reconcile_run(&deps, &s.tenant, &run).await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    // A dry run only reads: it runs meanwhile.
    let look = s.reconcile(&deps, true).await;
    assert_eq!(look["dryRun"], true, "{look}");
    deps.ports
        .app
        .leases
        .release(&lease, "another-pass")
        .await
        .unwrap();
    deliver_run_pass(&deps, &sqs_client(&s), &s.passes, &run, 1).await;
    let done = reconcile_run(&deps, &s.tenant, &run).await;
    assert_eq!(done["status"], "done", "{done}");
    assert_eq!(done["passes"], 1);
    assert_eq!(done["report"]["continued"], false, "{done}");
}

fn sqs_client(s: &Stack) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&s.world.sdk)
}

/// Moves the emulator's clock (M365's time) forward.
async fn advance_m365_clock(s: &Stack, seconds: u64) {
    s.world.emulator.advance_clock(seconds).await;
}

async fn stored_stamp(s: &Stack, id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    s.world
        .app
        .bindings
        .get(&UserId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap()
        .m365_password_changed_at
}

fn m365_stamp(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_job_title_cleared_in_m365_is_restored_by_one_run_and_the_next_run_finds_nothing() {
    // R-REC-1 (a cleared property comes in the delta as null, graph-spec §5)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(3).await;
    let deps = s.reconciler(Settings::default());
    assert_eq!(s.reconcile(&deps, false).await["plan"], json!([]));
    s.portal_patch("r1@contoso.com", json!({"jobTitle": null}))
        .await;
    assert_eq!(
        s.m365_property("r1@contoso.com", "jobTitle").await,
        Value::Null
    );
    let report = s.reconcile(&deps, false).await;
    assert_eq!(
        plan_kinds(&report),
        vec![("update_attributes".to_owned(), "r1".to_owned())],
        "{report}"
    );
    assert_eq!(report["plan"][0]["attributes"], json!(["jobTitle"]));
    assert_eq!(report["applied"], 1);
    assert_eq!(
        s.m365_property("r1@contoso.com", "jobTitle").await,
        "Engineer"
    );
    let second = s.reconcile(&deps, false).await;
    assert_eq!(second["plan"], json!([]), "{second}");
}

#[tokio::test]
async fn a_password_push_is_not_taken_for_an_m365_change_when_our_clock_runs_ten_minutes_behind() {
    // R-PWD-3 (M365 time against M365 time; the clock rule's grace is 2 minutes)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.clock.advance(TimeDelta::minutes(-10));
    s.bound_users(3).await;
    let deps = s.reconciler(Settings::default());
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["plan"], json!([]), "the binds' creates: {first}");

    // A push costs its PATCH plus one read of M365's stamp (no write budget), after the
    // privilege check (R-BIND-11): the account's directory roles and the consenting admin (read
    // once per process, then cached).
    advance_m365_clock(&s, 5).await;
    s.reset_requests().await;
    let (status, body) = s
        .call(
            "POST",
            "/users/r0/password",
            Some(json!({"password": "Another-Horse-8"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let counts = s.graph_requests().await;
    assert_eq!(counts["graph PATCH /v1.0/users/{id}"], 1, "{counts}");
    assert_eq!(counts["graph GET /v1.0/users/{id}"], 1, "{counts}");
    assert_eq!(
        counts["graph GET /v1.0/users/{id}/transitiveMemberOf/microsoft.graph.directoryRole"], 1,
        "{counts}"
    );
    assert_eq!(counts["graph GET /v1.0/me"], 1, "{counts}");
    assert_eq!(counts["graph"], 4, "{counts}");
    let stamp = m365_stamp(
        &s.m365_property("r0@contoso.com", "lastPasswordChangeDateTime")
            .await,
    );
    assert_eq!(stored_stamp(&s, "r0").await, Some(stamp));

    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["plan"], json!([]), "{report}");

    // The case the clock rule gets wrong: the same push judged by our clock (a binding without
    // a stamp, as stored before it existed) looks like an M365 change. A dry run shows it
    // without writing.
    let (status, body) = s
        .call(
            "POST",
            "/users/r1/password",
            Some(json!({"password": "Another-Horse-8"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let mut old = s
        .world
        .app
        .bindings
        .get(&UserId::parse("r1").unwrap())
        .await
        .unwrap()
        .unwrap();
    old.m365_password_changed_at = None;
    s.world
        .app
        .bindings
        .put(&old, m365_engine::ports::Expect::Version(old.version))
        .await
        .unwrap();
    let dry = s.reconcile(&deps, true).await;
    assert_eq!(
        plan_kinds(&dry),
        vec![("overwrite_password".to_owned(), "r1".to_owned())],
        "{dry}"
    );
}

#[tokio::test]
async fn a_self_service_password_change_in_m365_is_overwritten_once() {
    // R-PWD-3 (seconds after our push: inside the clock rule's grace, seen by M365's stamps)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(3).await;
    let deps = s.reconciler(Settings::default());
    assert_eq!(s.reconcile(&deps, false).await["plan"], json!([]));
    advance_m365_clock(&s, 5).await;
    let changed = s
        .world
        .emulator
        .send(
            reqwest::Method::POST,
            &format!("/_emulator/tenants/{CONTOSO}/users/r2@contoso.com/self-password-change"),
            json!({"password": "Users-Own-Choice-5"}),
        )
        .await;
    assert!(changed.is_success());
    let theirs = m365_stamp(
        &s.m365_property("r2@contoso.com", "lastPasswordChangeDateTime")
            .await,
    );
    // Graph's stamps have whole seconds: let the overwrite's be a later one.
    advance_m365_clock(&s, 5).await;
    s.reset_requests().await;
    let report = s.reconcile(&deps, false).await;
    assert_eq!(
        plan_kinds(&report),
        vec![("overwrite_password".to_owned(), "r2".to_owned())],
        "{report}"
    );
    assert_eq!(report["applied"], 1);
    let counts = s.graph_requests().await;
    assert_eq!(counts["graph PATCH /v1.0/users/{id}"], 1, "{counts}");
    assert_eq!(
        counts["graph GET /v1.0/users/{id}"], 1,
        "one stamp read: {counts}"
    );
    let ours = m365_stamp(
        &s.m365_property("r2@contoso.com", "lastPasswordChangeDateTime")
            .await,
    );
    assert!(ours > theirs);
    assert_eq!(stored_stamp(&s, "r2").await, Some(ours));
    let pushes = s.events_of(EventKind::UserPasswordUpdateProvision).await;
    assert_eq!(
        pushes
            .iter()
            .filter(|e| e.reason.as_deref() == Some("reconcile_password_overwritten"))
            .count(),
        1
    );
    let second = s.reconcile(&deps, false).await;
    assert_eq!(second["plan"], json!([]), "{second}");
}

#[tokio::test]
async fn the_expiry_sweep_runs_on_the_first_pass_of_a_round_only() {
    // R-PWD-4, R-REC-1 (a long round's later passes only follow the delta)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.world.emulator.delta_page_size(3).await;
    s.bound_users(10).await;
    let mut settings = Settings::default();
    settings.reconcile.max_pages = 2;
    settings.reconcile.password_policy =
        m365_engine::policy::password::DirectoryPasswordPolicy::new(
            8,
            [],
            Some(TimeDelta::days(30)),
        )
        .unwrap();
    let deps = s.reconciler(settings);
    s.reconcile(&deps, false).await;
    s.drain_passes(&deps).await;
    // r1..r9 renew their password on day 20 (nine changes: a round of several passes); r0
    // does not, and expires on day 30.
    s.clock.advance(TimeDelta::days(20));
    for i in 1..10 {
        let (status, body) = s
            .call(
                "POST",
                &format!("/users/r{i}/password"),
                Some(json!({"password": "Renewed-Horse-9"})),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["continued"], true, "{first}");
    // The rest of the round runs after r0's password expired: no sweep there.
    s.clock.advance(TimeDelta::days(15));
    let passes = s.drain_passes(&deps).await;
    assert!(!passes.is_empty());
    assert_eq!(s.binding_state("r0").await, BindingState::Provisioned);
    // The next round's first pass sweeps.
    let next = s.reconcile(&deps, false).await;
    assert_eq!(
        plan_kinds(&next),
        vec![("suspend_expired".to_owned(), "r0".to_owned())],
        "{next}"
    );
    assert_eq!(s.binding_state("r0").await, BindingState::Suspended);
}

/// Forces Graph to lose every delta state of Contoso: the next delta call answers 410 and the
/// round restarts with a full listing (graph-spec §5).
async fn reset_delta(s: &Stack) {
    let status = s
        .world
        .emulator
        .send(
            reqwest::Method::POST,
            &format!("/_emulator/tenants/{CONTOSO}/delta/reset"),
            Value::Null,
        )
        .await;
    assert!(status.is_success(), "{status}");
}

#[tokio::test]
async fn an_account_deleted_in_m365_is_found_by_the_full_listing_after_a_410_and_rebind_recreates_it()
 {
    // R-REC-4, R-BIND-8 (a full listing omits deleted accounts instead of reporting them; the
    // listing spans several passes whose seen ids are kept on DynamoDB between them)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.world
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/realism",
            json!({"addressReleaseDelayMs": 3_600_000}),
        )
        .await;
    s.bound_users(12).await;
    s.world.emulator.delta_page_size(3).await;
    let mut settings = Settings::default();
    settings.reconcile.max_pages = 1;
    let deps = s.reconciler(settings);
    // The first (full) round, through the queue, pass after pass.
    reconcile::handle(&deps, schedule_event()).await.unwrap();
    let passes = s.drain_passes(&deps).await;
    assert!(passes.len() >= 5, "16 users in pages of 3: {passes:?}");
    let old = s.m365_id("r5").await;

    s.delete_in_m365("r5@contoso.com").await;
    reset_delta(&s).await;
    // An hour later (the binding is far older than the listing).
    s.clock.advance(TimeDelta::hours(1));
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["fullSync"], true, "{first}");
    assert_eq!(first["complete"], false, "{first}");
    assert_eq!(first["continued"], true, "{first}");
    assert_eq!(first["plan"], json!([]));
    let passes = s.drain_passes(&deps).await;
    assert!(passes.len() >= 4, "{passes:?}");
    assert_eq!(s.binding_state("r5").await, BindingState::DeletedInM365);
    for other in ["r0", "r4", "r6", "r11"] {
        assert_eq!(
            s.binding_state(other).await,
            BindingState::Provisioned,
            "{other}"
        );
    }
    // The next round is incremental and finds nothing.
    let after = s.reconcile(&deps, false).await;
    assert_eq!(after["fullSync"], false, "{after}");
    assert_eq!(after["plan"], json!([]), "{after}");

    // Binding again with `"restore": false` (R-BIND-10) waits for M365 to release the address,
    // then creates a new account at once.
    let (status, body) = s
        .call(
            "PUT",
            "/users/r5/binding",
            Some(json!({ "welcome": false, "restore": false })),
        )
        .await;
    assert_eq!(status, 202, "the address is held: {body}");
    assert_eq!(body["binding"]["pendingReason"], "address_held", "{body}");
    advance_m365_clock(&s, 3_700).await;
    let (status, body) = s
        .call(
            "PUT",
            "/users/r5/binding",
            Some(json!({ "welcome": false, "restore": false })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned", "{body}");
    assert_ne!(s.m365_id("r5").await, old, "a new account");
    assert_eq!(
        s.m365_property("r5@contoso.com", "accountEnabled").await,
        true
    );
}

#[tokio::test]
async fn a_pending_bind_whose_retry_was_lost_is_requeued_by_reconcile_and_converges() {
    // R-REC-5, R-BIND-12 (a purged retry queue: nothing would ever finish the bind)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(3).await;
    let body = json!({"email": "slow@contoso.com", "displayName": "Slow"});
    let (status, answer) = s.call("PUT", "/users/slow", Some(body)).await;
    assert!(status == 200 || status == 201, "{answer}");
    let fault = json!({"method": "POST", "path": "/v1.0/users", "kind": "429", "count": 1});
    let status = s
        .world
        .emulator
        .send(reqwest::Method::POST, "/_emulator/faults", fault)
        .await;
    assert!(status.is_success());
    let (status, answer) = s
        .call(
            "PUT",
            "/users/slow/binding",
            Some(json!({"welcome": false})),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let slow = UserId::parse("slow").unwrap();
    let waiting = s.world.app.bindings.get(&slow).await.unwrap().unwrap();
    assert!(
        waiting.in_flight.unwrap().retry_due_at.is_some(),
        "the deferral recorded when its retry is due"
    );
    let sqs = aws_sdk_sqs::Client::new(&s.world.sdk);
    sqs.purge_queue()
        .queue_url(&s.retries)
        .send()
        .await
        .unwrap();
    assert_eq!(s.drain_retries().await, 0, "the retry is lost");
    let deps = s.reconciler(Settings::default());
    let early = s.reconcile(&deps, false).await;
    assert_eq!(early["stuck"], json!([]), "not an hour yet: {early}");

    s.clock.advance(TimeDelta::hours(3));
    let dry = s.reconcile(&deps, true).await;
    assert_eq!(dry["stuck"].as_array().unwrap().len(), 1, "{dry}");
    assert!(dry["requeued"].is_null(), "{dry}");
    assert_eq!(s.drain_retries().await, 0, "a dry run queues nothing");
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["stuck"][0]["userId"], "slow", "{report}");
    assert_eq!(report["stuck"][0]["kind"], "user_bind", "{report}");
    assert_eq!(report["requeued"]["requeued"], 1, "{report}");
    // A later pass of the same hour finds it on its way.
    let again = s.reconcile(&deps, false).await;
    assert_eq!(again["stuck"], json!([]), "{again}");
    assert_eq!(s.drain_retries().await, 1);
    assert_eq!(s.binding_state("slow").await, BindingState::Provisioned);
    let accounts = s.m365_user("slow@contoso.com").await;
    assert_eq!(accounts["accountEnabled"], true);
    let created = s.events_of(EventKind::UserCreateProvision).await;
    assert_eq!(
        created
            .iter()
            .filter(|e| e.user_id.as_ref().map(UserId::as_str) == Some("slow"))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_blocked_binding_that_lost_its_account_id_gets_its_enabled_account_blocked() {
    // R-BIND-12 (what an unbind racing an in-flight bind can leave: `blocked`, no object id, the
    // account enabled)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(12).await;
    let deps = s.reconciler(Settings::default());
    s.reconcile(&deps, false).await;
    let account = s.m365_id("r2").await;
    let id = UserId::parse("r2").unwrap();
    let mut binding = s.world.app.bindings.get(&id).await.unwrap().unwrap();
    binding.state = BindingState::Blocked;
    binding.m365_object_id = None;
    s.world
        .app
        .bindings
        .put(
            &binding,
            m365_engine::ports::Expect::Version(binding.version),
        )
        .await
        .unwrap();
    assert_eq!(
        s.m365_property("r2@contoso.com", "accountEnabled").await,
        true
    );
    let dry = s.reconcile(&deps, true).await;
    assert_eq!(
        plan_kinds(&dry),
        vec![("block".to_owned(), "r2".to_owned())],
        "{dry}"
    );
    assert_eq!(
        s.m365_property("r2@contoso.com", "accountEnabled").await,
        true,
        "a dry run writes nothing"
    );
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["accountLookups"], 1, "{report}");
    assert_eq!(report["applied"], 1, "{report}");
    assert_eq!(
        s.m365_property("r2@contoso.com", "accountEnabled").await,
        false
    );
    let stored = s.world.app.bindings.get(&id).await.unwrap().unwrap();
    assert_eq!(stored.state, BindingState::Blocked);
    assert_eq!(
        stored.m365_object_id.map(|i| i.to_string()),
        Some(account.clone())
    );
    let deprovisions = s.events_of(EventKind::UserDeprovision).await;
    assert!(
        deprovisions.iter().any(|e| {
            e.user_id.as_ref().map(UserId::as_str) == Some("r2")
                && e.reason.as_deref() == Some("reconcile_blocked_again")
        }),
        "{deprovisions:?}"
    );
    // Watched from now on by the delta like any blocked binding.
    s.portal_patch("r2@contoso.com", json!({"accountEnabled": true}))
        .await;
    let next = s.reconcile(&deps, false).await;
    assert_eq!(next["accountLookups"], 0, "{next}");
    assert_eq!(
        plan_kinds(&next),
        vec![("block".to_owned(), "r2".to_owned())],
        "{next}"
    );
}

#[tokio::test]
async fn a_pass_that_fails_for_good_is_reported_so_its_message_reaches_the_dlq() {
    // R-BIND-6, R-OPS-1 (issue 13: one rule for every queue consumer — a permanent failure is
    // recorded and its message reported, so it lands in the DLQ whose alarm tells an admin)
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(2).await;
    let tenant = m365_engine::model::TenantId::parse(&s.tenant).unwrap();
    // The tenant's tokens are gone (removed by hand): every Graph call of the pass fails for good.
    m365_engine::ports::TokenVault::delete(&s.world.app.token_vault, &tenant)
        .await
        .unwrap();
    // A cold start after the removal: the access token the binds kept in memory is not there
    // (the Graph adapter keeps it until shortly before it expires, issue 13).
    let deps = Reconciler::with_clock(
        &s.world.app,
        &s.world.graph_app(),
        s.clock.clone(),
        Settings::default(),
        &s.passes,
    );
    let summary = reconcile::handle(&deps, schedule_event()).await.unwrap();
    assert_eq!(summary, json!({"tenants": 1, "queued": 1}));
    let sqs = aws_sdk_sqs::Client::new(&s.world.sdk);
    let (event, _receipt) = next_sqs_event(&sqs, &s.passes)
        .await
        .expect("the pass is queued");
    let id = event["Records"][0]["messageId"].clone();
    let answer = reconcile::handle(&deps, LambdaEvent::new(event.clone(), lambda_context()))
        .await
        .unwrap();
    assert_eq!(
        answer["batchItemFailures"],
        json!([{ "itemIdentifier": id }]),
        "reported, not acknowledged: {answer}"
    );
    // The failed pass gave the tenant's lease back: its redelivery runs again (and is reported
    // again until SQS moves it to the DLQ) instead of being acknowledged as "busy".
    let again = reconcile::handle(&deps, LambdaEvent::new(event.clone(), lambda_context()))
        .await
        .unwrap();
    assert_eq!(
        again["batchItemFailures"],
        json!([{ "itemIdentifier": id }])
    );
    // Permanent indeed (a retryable failure was always reported): the tokens are not found.
    let batch: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(event).unwrap();
    assert_eq!(
        reconcile::sqs_message(&deps, "it-holder", &batch.records[0]).await,
        reconcile::PassResult::Failed("not_found".to_owned())
    );
}
