//! Measurement of the retry worker under Graph latency (R-OPS-2, R-BIND-12; issue 12): how a batch
//! of retry messages is spent before the Lambda deadline, how many messages are redelivered and
//! how high SQS's receive counts climb (the retry queue dead-letters at `maxReceiveCount` 5).
//!
//! `BENCH_MESSAGES` pending binds (each with its retry queued) are worked off through the real
//! `retry-worker` handler on moto and the emulator, whose latency fault answers every Graph call
//! `BENCH_LATENCY_MS` late. Batches of `BENCH_BATCH` are delivered as Lambda's SQS event source
//! delivers them: the invocation's context deadline is `BENCH_TIMEOUT_S` away and it is stopped
//! past it; reported failures come back at once (as if the visibility timeout had passed).
//! Per delivery the table shows what the worker handled, what it left untouched (redelivered)
//! or sent again as a fresh copy, the bindings finished so far and the receive counts.
//!
//! Run: `scripts/with-moto.sh cargo run -p m365-integration-tests --example deadline_batch_bench`
//! Knobs (environment): `BENCH_LATENCY_MS` (1000), `BENCH_TIMEOUT_S` (30, the template's
//! `Timeout`), `BENCH_MARGIN_S` (5), `BENCH_FLOOR_S` (5), `BENCH_BATCH` (10), `BENCH_MESSAGES` (10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use chrono::TimeDelta;
use lambda_http::RequestExt;
use m365_engine::model::{BindingState, UserId};
use m365_engine::ports::BindingStore;
use m365_integration_tests::{
    CONTOSO, OffsetClock, World, api_request, deliver_sqs_batch, lambda_context_with_timeout,
};
use m365_lambda::deadline::DeadlinePolicy;
use m365_lambda::provision::Deployed;
use serde_json::json;

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> usize {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attrs
        .values()
        .map(|v| v.parse::<usize>().unwrap_or(0))
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let latency_ms: u64 = knob("BENCH_LATENCY_MS", 1_000);
    let timeout = Duration::from_secs(knob("BENCH_TIMEOUT_S", 30));
    let deadlines = DeadlinePolicy {
        margin: Duration::from_secs(knob("BENCH_MARGIN_S", 5)),
        message_floor: Duration::from_secs(knob("BENCH_FLOOR_S", 5)),
    };
    let batch: i32 = knob("BENCH_BATCH", 10);
    let messages: usize = knob("BENCH_MESSAGES", 10);

    let Some(mut world) = World::start().await else {
        return;
    };
    let queues = world.add_provisioning_resources("bench").await;
    world.connect_contoso("Contoso").await;
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let clock = OffsetClock::default();
    let graph = world.graph_app();
    let mut deps = Deployed::with_clock(&world.app, &graph, clock.clone());
    deps.deadlines = deadlines;
    deps.retry.base_delay = Duration::from_millis(200);
    deps.retry.max_delay = Duration::from_secs(1);

    let users: Vec<String> = (0..messages).map(|i| format!("bench{i:03}")).collect();
    for u in &users {
        let put = api_request(
            "PUT",
            &format!("/users/{u}"),
            &[],
            Some(json!({"email": format!("{u}@contoso.com"), "displayName": u})),
        );
        directory::handle(&deps, put).await.unwrap();
        // Invoked with no time left: 202, retry queued, nothing sent to Graph.
        let bind = api_request("PUT", &format!("/users/{u}/binding"), &[], None)
            .with_lambda_context(lambda_context_with_timeout(Duration::ZERO));
        let status = bind::handle(&deps, bind).await.unwrap().status();
        assert_eq!(status.as_u16(), 202);
    }
    world
        .emulator
        .send(
            reqwest::Method::POST,
            "/_emulator/faults",
            json!({"path": "/v1.0/*", "tenant": CONTOSO, "kind": "timeout-after-commit",
                   "delayMs": latency_ms, "count": 1_000_000}),
        )
        .await;
    clock.advance(TimeDelta::seconds(5));
    // The retries were queued with their backoff as SQS delay: wait until all are visible, so
    // the first delivery is a full batch.
    for _ in 0..40 {
        let visible = sqs
            .get_queue_attributes()
            .queue_url(&queues.retry_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default()
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if visible >= messages {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    println!(
        "latency {latency_ms} ms per Graph call, timeout {timeout:?}, margin {:?}, floor {:?}, batch {batch}, {messages} messages",
        deadlines.margin, deadlines.message_floor
    );
    println!(
        "delivery | received | handled | untouched: redelivered / fresh copy | bindings done | receive counts | stopped by Lambda"
    );
    let started = std::time::Instant::now();
    let (mut n, mut max_receive, mut redelivered_total) = (0, 0, 0);
    loop {
        let stats = Arc::new(Mutex::new(None));
        let seen = stats.clone();
        let worker = &deps;
        let delivered = deliver_sqs_batch(
            &sqs,
            &queues.retry_url,
            batch,
            timeout,
            |event| async move {
                let deadline = worker.deadlines.of_context(&event.context);
                let bounded = worker.until(deadline);
                let budget = retry_worker::Budget {
                    deadline,
                    floor: worker.deadlines.message_floor,
                };
                let report =
                    retry_worker::handle_batch_until(&bounded, &event.payload, budget).await;
                *seen.lock().unwrap() = Some((report.handled, report.untouched, report.requeued));
                report.response
            },
        )
        .await;
        let Some(d) = delivered else {
            if depth(&sqs, &queues.retry_url).await == 0
                || started.elapsed() > Duration::from_secs(1_800)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        n += 1;
        let mut done = 0;
        for u in &users {
            let b = world
                .app
                .bindings
                .get(&UserId::parse(u.as_str()).unwrap())
                .await
                .unwrap();
            if b.is_some_and(|b| b.state == BindingState::Provisioned) {
                done += 1;
            }
        }
        let (handled, untouched, requeued) = stats.lock().unwrap().unwrap_or((0, 0, 0));
        max_receive = max_receive.max(d.receive_counts.iter().copied().max().unwrap_or(0));
        redelivered_total += d.failed;
        println!(
            "{n:>8} | {:>8} | {handled:>7} | {:>11} / {requeued:<10} | {done:>13} | {:?} | {}",
            d.received,
            untouched - requeued,
            d.receive_counts,
            if d.timed_out { "yes" } else { "no" }
        );
    }
    println!(
        "{n} deliveries in {:.0?}; {redelivered_total} redeliveries; highest receive count {max_receive}; DLQ depth {}",
        started.elapsed(),
        depth(&sqs, &queues.dlq_url).await
    );
}
