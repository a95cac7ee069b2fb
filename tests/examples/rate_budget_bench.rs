//! Benchmark of the per-tenant Graph rate budget (DESIGN §5: bulk writes run at ≥ 90 % of the
//! Graph write limit configured on the emulator, with < 1 % of requests answered 429, across
//! concurrent workers).
//!
//! One run, two modes side by side, each on a fresh emulator write bucket: `N` concurrent workers
//! PATCH users of a connected tenant for `D` seconds through the production wiring
//! (`GraphApp`: vault tokens, `GraphClient`), without and with the DynamoDB rate budget (on moto).
//! Workers behave like the retry queue: a 429 (or a budget deferral) is waited out for its
//! `Retry-After`, then the write is tried again. The emulator counts every Graph request and
//! every one it throttled.
//!
//! Run: `scripts/with-moto.sh cargo run -p m365-integration-tests --example rate_budget_bench`
//! Knobs (environment): `BENCH_WORKERS` (8), `BENCH_SECONDS` (30), `BENCH_QUOTA_WRITES` (60),
//! `BENCH_QUOTA_WINDOW_MS` (10000), `BENCH_SHARE` (0.95).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use m365_aws::DynamoRateBudget;
use m365_engine::Error;
use m365_engine::model::{Email, M365UserPatch, TenantId};
use m365_engine::ports::{Directory, RateLimit};
use m365_graph::{GraphClient, GraphDirectory, HttpRetry};
use m365_integration_tests::{CONTOSO, CONTOSO_USERS, World};
use serde_json::json;
use tokio::time::Instant;

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    written: u64,
    throttled_seen: u64,
    deferred: u64,
    other_errors: u64,
}

struct Outcome {
    tally: Tally,
    elapsed: Duration,
    graph_requests: u64,
    graph_throttled: u64,
}

async fn reset_emulator(w: &World, writes: u32, window_ms: u64) {
    let status = w
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/quotas",
            json!({"resourceUnits": 1_000_000, "writes": writes, "writeWindowMs": window_ms}),
        )
        .await;
    assert!(status.is_success(), "quotas: {status}");
    let status = w
        .emulator
        .send(
            reqwest::Method::DELETE,
            &format!("/_emulator/tenants/{CONTOSO}/requests"),
            json!({}),
        )
        .await;
    assert!(status.is_success(), "reset counters: {status}");
}

async fn run<P>(
    dir: &GraphDirectory<P>,
    tenant: &TenantId,
    ids: &[m365_engine::model::M365ObjectId],
    workers: usize,
    seconds: u64,
) -> (Tally, Duration)
where
    P: m365_graph::TokenProvider + Clone + 'static,
{
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let dir = dir.with_deadline(end);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (dir, tenant, id) = (dir.clone(), tenant.clone(), ids[w % ids.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let patch = M365UserPatch {
                    job_title: Some(Some(format!("Bench {w}-{i}"))),
                    ..M365UserPatch::default()
                };
                let wait = match dir.update_user(&tenant, &id, &patch).await {
                    Ok(()) => {
                        tally.written += 1;
                        continue;
                    }
                    Err(Error::Throttled {
                        retry_after,
                        graph_request_id,
                    }) => {
                        if graph_request_id.is_some() {
                            tally.throttled_seen += 1;
                        } else {
                            tally.deferred += 1;
                        }
                        retry_after.unwrap_or(Duration::from_secs(1))
                    }
                    Err(_) => {
                        tally.other_errors += 1;
                        Duration::from_millis(200)
                    }
                };
                let resume = (Instant::now() + wait).min(end);
                tokio::time::sleep_until(resume).await;
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await.unwrap();
        total.written += t.written;
        total.throttled_seen += t.throttled_seen;
        total.deferred += t.deferred;
        total.other_errors += t.other_errors;
    }
    (total, started.elapsed())
}

async fn counters(w: &World) -> (u64, u64) {
    let counts = w.emulator.requests(CONTOSO).await;
    let get = |k: &str| {
        counts
            .get(k)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    (get("graph"), get("graph.throttled"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let workers: usize = knob("BENCH_WORKERS", 8);
    let seconds: u64 = knob("BENCH_SECONDS", 30);
    let quota: u32 = knob("BENCH_QUOTA_WRITES", 60);
    let window_ms: u64 = knob("BENCH_QUOTA_WINDOW_MS", 10_000);
    let share: f64 = knob("BENCH_SHARE", RateLimit::DEFAULT_SHARE);

    let Some(w) = World::start().await else {
        eprintln!(
            "moto is needed: scripts/with-moto.sh cargo run -p m365-integration-tests --example rate_budget_bench"
        );
        std::process::exit(2);
    };
    let tenant = TenantId::parse(w.connect_contoso("Contoso").await).unwrap();
    // The production client's settings, but no in-process retry: every 429 comes back to the
    // worker, which waits it out (as the retry queue would) and counts it.
    let tokens = w.graph.directory.tokens().clone();
    let base = GraphClient::builder()
        .graph_base(w.graph.client.graph_base())
        .retry(HttpRetry {
            max_attempts: 1,
            budget: Duration::from_secs(seconds + 60),
            ..HttpRetry::default()
        })
        .build()
        .unwrap();
    let mut ids = Vec::new();
    let reader = GraphDirectory::new(base.clone(), tokens.clone());
    for upn in CONTOSO_USERS {
        let user = reader
            .find_user_by_upn(&tenant, &Email::parse(upn).unwrap())
            .await
            .unwrap()
            .expect("seeded user");
        ids.push(user.id);
    }

    let graph_limit = RateLimit {
        capacity: quota,
        window: Duration::from_millis(window_ms),
    };
    let budget = DynamoRateBudget::new(
        aws_sdk_dynamodb::Client::new(&w.sdk),
        &w.app.config.resources.ledger_table,
        graph_limit.scaled(share),
    );

    let mut outcomes = Vec::new();
    for paced in [false, true] {
        reset_emulator(&w, quota, window_ms).await;
        let client = if paced {
            base.with_budget(Arc::new(budget.clone()))
        } else {
            base.clone()
        };
        let dir = GraphDirectory::new(client, tokens.clone());
        let (tally, elapsed) = run(&dir, &tenant, &ids, workers, seconds).await;
        let (graph_requests, graph_throttled) = counters(&w).await;
        outcomes.push(Outcome {
            tally,
            elapsed,
            graph_requests,
            graph_throttled,
        });
    }

    let rate = graph_limit.per_second();
    println!(
        "rate budget benchmark: {workers} workers, {seconds} s per mode, emulator write quota {quota} / {window_ms} ms ({rate:.2} writes/s sustained), budget share {share}"
    );
    println!(
        "{:<16} {:>8} {:>10} {:>14} {:>16} {:>10} {:>10} {:>8}",
        "mode", "writes", "writes/s", "vs sustained", "vs admissible", "requests", "429s", "429 %"
    );
    for (paced, o) in [false, true].into_iter().zip(&outcomes) {
        let secs = o.elapsed.as_secs_f64();
        // What the emulator's bucket admits in the run: its full burst plus the refill.
        let admissible = f64::from(quota) + rate * secs;
        #[allow(clippy::cast_precision_loss)]
        let written = o.tally.written as f64;
        #[allow(clippy::cast_precision_loss)]
        let share_429 = if o.graph_requests == 0 {
            0.0
        } else {
            o.graph_throttled as f64 / o.graph_requests as f64
        };
        println!(
            "{:<16} {:>8} {:>10.2} {:>13.1}% {:>15.1}% {:>10} {:>10} {:>7.2}%",
            if paced {
                "with budget"
            } else {
                "without budget"
            },
            o.tally.written,
            written / secs,
            100.0 * written / secs / rate,
            100.0 * written / admissible,
            o.graph_requests,
            o.graph_throttled,
            100.0 * share_429,
        );
        println!(
            "{:<16} client saw {} 429s, {} budget deferrals, {} other errors",
            "", o.tally.throttled_seen, o.tally.deferred, o.tally.other_errors
        );
    }
}
