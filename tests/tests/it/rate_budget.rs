//! The per-tenant Graph rate budget on moto + the m365-emulator (DESIGN §2 "Graph usage", §5):
//! the functions' Graph client is paced by the DynamoDB budget, and concurrent writers sharing a
//! budget get no 429 from the emulator's small write quota over a short run. (Throughput is
//! measured by the `rate_budget_bench` example, not here.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use m365_aws::DynamoRateBudget;
use m365_engine::model::{Email, M365UserPatch, TenantId};
use m365_engine::ports::{Directory, RateLimit};
use m365_graph::{GraphClient, GraphDirectory, HttpRetry};
use m365_integration_tests::{CONTOSO, CONTOSO_USERS, World};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_sharing_the_dynamodb_budget_get_no_429() {
    // DESIGN §5: < 1 % of requests answered 429 across concurrent workers (here: none).
    let Some(w) = World::start().await else {
        return;
    };
    assert!(
        w.graph.client.has_budget(),
        "the functions' Graph client is paced by the rate budget"
    );
    let tenant = TenantId::parse(w.connect_contoso("Contoso").await).unwrap();
    let tokens = w.graph.directory.tokens().clone();
    // No in-process retry: a 429 would surface as an error.
    let base = GraphClient::builder()
        .graph_base(w.graph.client.graph_base())
        .retry(HttpRetry {
            max_attempts: 1,
            ..HttpRetry::default()
        })
        .build()
        .unwrap();
    let reader = GraphDirectory::new(base.clone(), tokens.clone());
    let mut ids = Vec::new();
    for upn in CONTOSO_USERS {
        let user = reader
            .find_user_by_upn(&tenant, &Email::parse(upn).unwrap())
            .await
            .unwrap()
            .unwrap();
        ids.push(user.id);
    }

    let quota = json!({"resourceUnits": 1_000_000, "writes": 10, "writeWindowMs": 2_000});
    let status = w
        .emulator
        .send(reqwest::Method::PUT, "/_emulator/quotas", quota)
        .await;
    assert!(status.is_success());
    let counters = format!("/_emulator/tenants/{CONTOSO}/requests");
    w.emulator
        .send(reqwest::Method::DELETE, &counters, json!({}))
        .await;

    let limit = RateLimit {
        capacity: 10,
        window: Duration::from_secs(2),
    }
    .scaled(RateLimit::DEFAULT_SHARE);
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().cycle().take(4).enumerate() {
        // One budget adapter per worker, as each function process has its own.
        let budget = DynamoRateBudget::new(
            aws_sdk_dynamodb::Client::new(&w.sdk),
            &w.app.config.resources.ledger_table,
            limit,
        );
        let dir = GraphDirectory::new(base.with_budget(Arc::new(budget)), tokens.clone());
        let (tenant, id) = (tenant.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..6 {
                let patch = M365UserPatch {
                    job_title: Some(Some(format!("Paced {i}-{n}"))),
                    ..M365UserPatch::default()
                };
                dir.update_user(&tenant, &id, &patch)
                    .await
                    .expect("no 429 under the budget");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counts = w.emulator.requests(CONTOSO).await;
    assert_eq!(counts["graph"], 24, "{counts}");
    assert_eq!(
        counts
            .get("graph.throttled")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        0,
        "{counts}"
    );
}
