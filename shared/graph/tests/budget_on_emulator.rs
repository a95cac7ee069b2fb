//! Graph writes paced by the per-tenant rate budget (DESIGN §2 "Graph usage", graph-spec §7.2)
//! against the m365-emulator with a small write quota: paced writers get no 429 where the same
//! load unpaced does, and a write whose wait would pass the deadline is deferred (retryable) without
//! being sent.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use m365_engine::Error;
use m365_engine::model::{Email, M365ObjectId, M365UserPatch};
use m365_engine::ports::{Directory, RateLimit};
use m365_engine::testing::FakeRateBudget;
use m365_graph::{GraphDirectory, HttpRetry};
use serde_json::json;

/// No in-process retry: any 429 surfaces as an error, so the test sees every one.
fn no_retry() -> HttpRetry {
    HttpRetry {
        max_attempts: 1,
        ..support::fast_retry()
    }
}

async fn set_write_quota(emu: &support::Emu, writes: u32, window_ms: u64) {
    let r = emu
        .admin
        .put(format!("{}/_emulator/quotas", emu.base))
        .json(&json!({"resourceUnits": 100_000, "writes": writes, "writeWindowMs": window_ms}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "quotas: {}", r.status());
}

async fn user_ids<P: m365_graph::TokenProvider>(
    dir: &GraphDirectory<P>,
    emu: &support::Emu,
    n: usize,
) -> Vec<M365ObjectId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let upn = Email::parse(&format!("seeded{i:05}@{}", support::MANAGED)).unwrap();
        let user = dir.find_user_by_upn(&emu.tenant(), &upn).await.unwrap();
        ids.push(user.expect("seeded user").id);
    }
    ids
}

/// `workers` concurrent writers, `per_worker` PATCHes each; the errors they got.
async fn write_load<P>(
    dir: &GraphDirectory<P>,
    emu: &support::Emu,
    ids: &[M365ObjectId],
    per_worker: usize,
) -> Vec<Error>
where
    P: m365_graph::TokenProvider + Clone + 'static,
{
    let mut tasks = Vec::new();
    for (w, id) in ids.iter().enumerate() {
        let (dir, id, tenant) = (dir.clone(), id.clone(), emu.tenant());
        tasks.push(tokio::spawn(async move {
            let mut errors = Vec::new();
            for i in 0..per_worker {
                let patch = M365UserPatch {
                    job_title: Some(Some(format!("Title {w}-{i}"))),
                    ..M365UserPatch::default()
                };
                if let Err(e) = dir.update_user(&tenant, &id, &patch).await {
                    errors.push(e);
                }
            }
            errors
        }));
    }
    let mut errors = Vec::new();
    for task in tasks {
        errors.extend(task.await.unwrap());
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_paced_by_the_budget_get_no_429_where_unpaced_writes_do() {
    // DESIGN §2 "Graph usage", §5: bulk work paces itself under the write limit.
    let emu = support::start_with(4).await;
    let graph_limit = RateLimit {
        capacity: 10,
        window: Duration::from_secs(2),
    };
    let unpaced = emu.directory_from(emu.client_with(Duration::from_secs(5), no_retry()));
    let ids = user_ids(&unpaced, &emu, 4).await;

    set_write_quota(&emu, 10, 2_000).await;
    let errors = write_load(&unpaced, &emu, &ids, 6).await;
    assert!(
        errors.iter().any(|e| matches!(e, Error::Throttled { .. })),
        "24 writes at once against 10 / 2 s are throttled without a budget: {errors:?}"
    );

    set_write_quota(&emu, 10, 2_000).await;
    let budget = Arc::new(FakeRateBudget::new(graph_limit.scaled(0.9)));
    let paced = emu.directory_from(
        emu.client_with(Duration::from_secs(5), no_retry())
            .with_budget(budget.clone()),
    );
    let errors = write_load(&paced, &emu, &ids, 6).await;
    assert!(errors.is_empty(), "no 429 with the budget: {errors:?}");
    assert_eq!(
        budget.granted(&emu.tenant()),
        24,
        "every write was budgeted"
    );
}

#[tokio::test]
async fn a_write_whose_budget_wait_passes_the_deadline_is_deferred_unsent() {
    // DESIGN §2 "Graph usage": the wait is slept only within the deadline; past it the work goes
    // back to the retry queue as a retryable throttling.
    let emu = support::start_with(1).await;
    let budget = Arc::new(FakeRateBudget::new(RateLimit {
        capacity: 1,
        window: Duration::from_secs(3_600),
    }));
    let dir = emu.directory_from(emu.client().with_budget(budget));
    let id = user_ids(&dir, &emu, 1).await.remove(0);
    let patch = |title: &str| M365UserPatch {
        job_title: Some(Some(title.to_owned())),
        ..M365UserPatch::default()
    };
    dir.update_user(&emu.tenant(), &id, &patch("First"))
        .await
        .unwrap();
    let soon = dir.with_deadline(tokio::time::Instant::now() + Duration::from_secs(1));
    let started = std::time::Instant::now();
    let error = soon
        .update_user(&emu.tenant(), &id, &patch("Second"))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no sleep past the deadline"
    );
    let Error::Throttled { retry_after, .. } = &error else {
        panic!("expected a retryable throttling, got {error:?}");
    };
    assert!(error.is_retryable());
    assert!(retry_after.is_some_and(|w| w > Duration::from_secs(3_000)));
    let state = emu.state.lock();
    let user = &state.tenants[support::CONTOSO].users[id.as_str()];
    assert_eq!(
        user.properties.get("jobTitle").and_then(|v| v.as_str()),
        Some("First"),
        "the deferred write was never sent"
    );
}
