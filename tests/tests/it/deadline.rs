//! Deadlines end to end (issue 12, R-OPS-2 deadline part, R-BIND-12 "work cut off by the
//! deadline is re-queued"): the `bind` and `retry-worker` handlers invoked as Lambda invokes them
//! — a context whose deadline is the function's timeout away, and the invocation stopped past it
//! (an API caller then gets API Gateway's 5xx, an SQS batch comes back whole) — on moto (DynamoDB,
//! SQS with a DLQ after 5 receives, Secrets Manager) and the m365-emulator, whose latency fault
//! (`timeout-after-commit` with `delayMs`: Graph runs the request, then answers late) makes Graph
//! slower than the deadline.
//!
//! The functions run with a 1 s margin and a 1 s message floor here (5 s each in production) so
//! that a 4–5 s "function timeout" shows what a 30 s one does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::TimeDelta;
use lambda_http::RequestExt;
use m365_integration_tests::started;
use m365_integration_tests::{
    BatchDelivery, CONTOSO, OffsetClock, ProvisioningResources, World, api_request,
    deliver_sqs_batch, lambda_context_with_timeout, queue_depth, within_lambda_timeout,
};
use m365_lambda::deadline::DeadlinePolicy;
use m365_lambda::provision::Deployed;
use serde_json::{Value, json};

/// The margin and floor of these tests (production: 5 s and 5 s).
const TEST_DEADLINES: DeadlinePolicy = DeadlinePolicy {
    margin: Duration::from_secs(1),
    message_floor: Duration::from_secs(1),
};

/// A connected Contoso, the retry queue with its DLQ, and the `bind`, `directory` and
/// `retry-worker` functions' wiring (each its own cold start).
struct Stack {
    world: World,
    bind: Deployed<OffsetClock>,
    directory: Deployed<OffsetClock>,
    worker: Deployed<OffsetClock>,
    clock: OffsetClock,
    sqs: aws_sdk_sqs::Client,
    retry_url: String,
    dlq_url: String,
}

impl Stack {
    async fn start() -> Option<Self> {
        let mut world = World::start().await?;
        let ProvisioningResources {
            retry_url, dlq_url, ..
        } = world.add_provisioning_resources("deadline").await;
        world.connect_contoso("Contoso").await;
        let clock = OffsetClock::default();
        let function = || {
            let graph = world.graph_app();
            let mut deps = Deployed::with_clock(&world.app, &graph, clock.clone());
            deps.retry.base_delay = Duration::from_millis(200);
            deps.retry.max_delay = Duration::from_secs(1);
            deps.retry.max_attempts = 12;
            deps.deadlines = TEST_DEADLINES;
            deps
        };
        let (bind, directory, worker) = (function(), function(), function());
        Some(Self {
            sqs: aws_sdk_sqs::Client::new(&world.sdk),
            world,
            bind,
            directory,
            worker,
            clock,
            retry_url,
            dlq_url,
        })
    }

    async fn put_user(&self, id: &str) {
        let request = api_request(
            "PUT",
            &format!("/users/{id}"),
            &[],
            Some(
                json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")}),
            ),
        );
        let response = directory::handle(&self.directory, request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// `PUT /users/{id}/binding` invoked as Lambda would with `timeout` (the function's
    /// `Timeout`): `None` when it ran past it and was stopped (API Gateway would answer 5xx).
    async fn bind_within(&self, id: &str, timeout: Duration) -> Option<(u16, Value)> {
        self.bind_invoked(id, timeout, timeout).await
    }

    /// [`Self::bind_within`] with a context deadline `deadline` away, stopped after `stop`.
    async fn bind_invoked(
        &self,
        id: &str,
        deadline: Duration,
        stop: Duration,
    ) -> Option<(u16, Value)> {
        let request = api_request("PUT", &format!("/users/{id}/binding"), &[], None)
            .with_lambda_context(lambda_context_with_timeout(deadline));
        // As the bind Lambda's main.rs: the ports bounded by the invocation's deadline.
        let ports = self.bind.for_request(&request);
        let response = within_lambda_timeout(stop, bind::handle(&ports, request))
            .await?
            .unwrap();
        let body = match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => Value::Null,
        };
        Some((response.status().as_u16(), body))
    }

    async fn binding(&self, id: &str) -> Value {
        let request = api_request("GET", &format!("/users/{id}/binding"), &[], None);
        let response = bind::handle(&self.bind, request).await.unwrap();
        match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => Value::Null,
        }
    }

    /// Every Graph call of Contoso answers `delay_ms` late (after running).
    async fn slow_graph(&self, method: Option<&str>, path: &str, delay_ms: u64, count: u32) {
        let mut fault = json!({"path": path, "tenant": CONTOSO, "kind": "timeout-after-commit",
                               "delayMs": delay_ms, "count": count});
        if let Some(m) = method {
            fault["method"] = json!(m);
        }
        let status = self
            .world
            .emulator
            .send(reqwest::Method::POST, "/_emulator/faults", fault)
            .await;
        assert!(status.is_success(), "{status}");
    }

    async fn graph_fast_again(&self) {
        let status = self
            .world
            .emulator
            .send(reqwest::Method::DELETE, "/_emulator/faults", json!({}))
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// Messages on `url`: visible, in flight and delayed.
    async fn depth(&self, url: &str) -> usize {
        queue_depth(&self.sqs, url).await
    }

    /// Visible messages on `url`.
    async fn visible(&self, url: &str) -> usize {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default()
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    }

    /// Delivers retry-queue batches of up to 10 to the worker (each invocation stopped past
    /// `timeout`) until the queue is empty or `limit` passes; every delivery, in order.
    async fn drain(&self, timeout: Duration, limit: Duration) -> Vec<BatchDelivery> {
        let until = std::time::Instant::now() + limit;
        let mut deliveries = Vec::new();
        while std::time::Instant::now() < until {
            let delivered = deliver_sqs_batch(&self.sqs, &self.retry_url, 10, timeout, |event| {
                let worker = &self.worker;
                async move {
                    retry_worker::handle_invocation(worker, event)
                        .await
                        .unwrap()
                }
            })
            .await;
            match delivered {
                Some(d) => deliveries.push(d),
                None if self.depth(&self.retry_url).await == 0 => break,
                // Delayed retries (backoff) not visible yet.
                None => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        deliveries
    }

    async fn m365_accounts(&self, upn: &str) -> usize {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        t["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["deletedAt"].is_null()
                    && u["properties"]["userPrincipalName"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case(upn))
            })
            .count()
    }

    async fn graph_requests(&self, key: &str) -> u64 {
        self.world.emulator.requests(CONTOSO).await[key]
            .as_u64()
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_whose_graph_calls_are_slower_than_the_deadline_ends_pending_with_a_retry_queued_then_converges()
 {
    // R-BIND-12, R-OPS-2. Before: each Graph call had its own 30 s budget whatever the Lambda
    // deadline; the function was stopped mid-operation, the binding stayed `pending`, no retry.
    let s = started!(Stack::start());
    s.put_user("alice").await;
    s.slow_graph(None, "/v1.0/*", 4_000, 1_000).await;
    let timeout = Duration::from_secs(4);
    let started = std::time::Instant::now();
    let answered = s.bind_within("alice", timeout).await;
    let Some((status, body)) = answered else {
        panic!("the bind ran past its {timeout:?} Lambda timeout and was stopped")
    };
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "deferred", "{body}");
    assert_eq!(body["binding"]["state"], "pending", "{body}");
    assert_eq!(body["binding"]["pendingReason"], "deadline", "{body}");
    assert_eq!(body["binding"]["lastError"]["code"], "deadline", "{body}");
    assert!(
        started.elapsed() < timeout,
        "answered before the Lambda timeout"
    );
    // The retry is on the queue, the binding says so, nothing went to the DLQ.
    assert_eq!(s.depth(&s.retry_url).await, 1, "one retry queued");
    assert_eq!(s.depth(&s.dlq_url).await, 0);
    let shown = s.binding("alice").await;
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["pendingReason"], "deadline");
    assert_eq!(
        s.m365_accounts("alice@contoso.com").await,
        0,
        "the lookup was cut off; nothing was created"
    );

    // Graph is fast again: the queued retry finishes the bind.
    s.graph_fast_again().await;
    s.clock.advance(TimeDelta::seconds(5));
    let deliveries = s
        .drain(Duration::from_secs(10), Duration::from_secs(60))
        .await;
    assert!(!deliveries.is_empty());
    assert!(deliveries.iter().all(|d| !d.timed_out), "{deliveries:?}");
    let shown = s.binding("alice").await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert!(shown["pendingReason"].is_null(), "{shown}");
    assert_eq!(s.m365_accounts("alice@contoso.com").await, 1);
    assert_eq!(s.depth(&s.retry_url).await, 0);
    assert_eq!(s.depth(&s.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synchronous_bind_whose_create_runs_out_of_time_answers_202_pending_and_its_retry_finds_that_create()
 {
    // R-OPS-2 ("a synchronous API call that runs out of time answers 202 pending with a queued
    // retry, never a gateway 5xx"), R-BIND-12, R-BIND-2: the POST /users committed in Graph but
    // its answer came after the deadline; the retry looks the UPN up instead of POSTing again.
    let s = started!(Stack::start());
    s.put_user("bob").await;
    s.slow_graph(Some("POST"), "/v1.0/users", 4_000, 1).await;
    let timeout = Duration::from_secs(4);
    let Some((status, body)) = s.bind_within("bob", timeout).await else {
        panic!("the bind ran past its {timeout:?} Lambda timeout: API Gateway would answer 5xx")
    };
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "deferred", "{body}");
    assert_eq!(body["binding"]["state"], "pending", "{body}");
    assert_eq!(body["binding"]["pendingReason"], "deadline", "{body}");
    assert_eq!(s.depth(&s.retry_url).await, 1, "one retry queued");
    assert_eq!(
        s.m365_accounts("bob@contoso.com").await,
        1,
        "Graph did create it"
    );

    s.clock.advance(TimeDelta::seconds(5));
    let deliveries = s
        .drain(Duration::from_secs(10), Duration::from_secs(60))
        .await;
    assert!(deliveries.iter().all(|d| !d.timed_out), "{deliveries:?}");
    let shown = s.binding("bob").await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_eq!(s.m365_accounts("bob@contoso.com").await, 1);
    assert_eq!(
        s.graph_requests("graph POST /v1.0/users").await,
        1,
        "never a second POST"
    );
    let request = api_request("GET", "/events", &[("userId", "bob")], None);
    let response = directory::handle(&s.directory, request).await.unwrap();
    let events: Value = match response.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
        _ => Value::Null,
    };
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(kinds, ["user_create_provision"], "created once, by us");
    assert_eq!(s.depth(&s.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_ten_slow_messages_is_worked_off_across_deliveries_without_dead_lettering_any() {
    // R-BIND-12, R-OPS-2. Before: the worker took every message of the batch whatever the
    // deadline; stopped by Lambda, the whole batch came back with its receive count raised each
    // time (five such stops dead-letter a message unprocessed), and the operation stopped
    // halfway kept its ledger lease.
    let s = started!(Stack::start());
    let users: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
    for u in &users {
        s.put_user(u).await;
    }
    // Ten binds throttled by Graph: each answers 202 with its retry queued.
    let status = s
        .world
        .emulator
        .send(
            reqwest::Method::POST,
            "/_emulator/faults",
            json!({"method": "GET", "path": "/v1.0/users", "kind": "429", "retryAfter": "0", "count": 10_000}),
        )
        .await;
    assert!(status.is_success());
    for u in &users {
        let Some((status, body)) = s.bind_within(u, Duration::from_secs(10)).await else {
            panic!("a throttled bind must answer")
        };
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["binding"]["state"], "pending", "{body}");
    }
    s.graph_fast_again().await;
    assert_eq!(s.depth(&s.retry_url).await, 10);

    // Graph now answers every call 0.5 s late; the worker's Lambda timeout is 5 s (4 s of work
    // with the 1 s margin): a batch of ten cannot be finished in one invocation.
    s.slow_graph(None, "/v1.0/*", 500, 100_000).await;
    s.clock.advance(TimeDelta::seconds(5));
    // The retries carry their backoff as SQS delay: once all ten are visible, they come as one
    // batch of ten.
    for _ in 0..40 {
        if s.visible(&s.retry_url).await >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deliveries = s
        .drain(Duration::from_secs(5), Duration::from_secs(150))
        .await;
    for (n, d) in deliveries.iter().enumerate() {
        eprintln!(
            "delivery {:>2}: {:>2} received (receive counts {:?}), {:>2} acknowledged, {:>2} left for redelivery{}",
            n + 1,
            d.received,
            d.receive_counts,
            d.acked,
            d.failed,
            if d.timed_out {
                ", STOPPED by the Lambda timeout"
            } else {
                ""
            }
        );
    }
    assert_eq!(deliveries[0].received, 10, "a batch of ten");
    assert!(
        deliveries.iter().all(|d| !d.timed_out),
        "no invocation ran past its timeout"
    );
    assert!(
        deliveries.iter().any(|d| d.failed > 0),
        "the worker did stop before the deadline with messages left (else this test proves nothing)"
    );
    let max_receives = deliveries
        .iter()
        .flat_map(|d| d.receive_counts.iter().copied())
        .max()
        .unwrap_or(0);
    assert!(
        max_receives < 5,
        "no message came near maxReceiveCount: {max_receives}"
    );
    assert_eq!(s.depth(&s.retry_url).await, 0, "everything worked off");
    assert_eq!(s.depth(&s.dlq_url).await, 0, "nothing dead-lettered");
    for u in &users {
        let shown = s.binding(u).await;
        assert_eq!(shown["state"], "provisioned", "{u}: {shown}");
        assert_eq!(
            s.m365_accounts(&format!("{u}@contoso.com")).await,
            1,
            "{u}: exactly one account"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bind_invoked_with_less_time_left_than_the_margin_answers_202_at_once_without_calling_graph()
 {
    // R-OPS-2: the margin is kept for the final writes; no Graph call starts inside it.
    let s = started!(Stack::start());
    s.put_user("carol").await;
    let before = s.world.emulator.requests(CONTOSO).await;
    let started = std::time::Instant::now();
    let Some((status, body)) = s
        .bind_invoked("carol", TEST_DEADLINES.margin / 2, Duration::from_secs(5))
        .await
    else {
        panic!("stopped")
    };
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["binding"]["pendingReason"], "deadline", "{body}");
    assert!(
        started.elapsed() < TEST_DEADLINES.margin,
        "answered at once"
    );
    assert_eq!(
        s.world.emulator.requests(CONTOSO).await,
        before,
        "no Graph request was made"
    );
    assert_eq!(s.depth(&s.retry_url).await, 1, "its retry is queued");
}
