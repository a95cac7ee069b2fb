//! The engine's `RateBudget` contract against `DynamoRateBudget` on moto (a fresh ledger table
//! per test), and what only a shared store can show: concurrent processes never get more than
//! the bucket holds between them.

mod common;

use std::time::Duration;

use m365_aws::DynamoRateBudget;
use m365_aws::schema::LEDGER;
use m365_engine::model::TenantId;
use m365_engine::ports::{BudgetDecision, RateBudget, RateLimit};
use m365_engine::testing::contract::rate_budget::CONTRACT_LIMIT;

common::contracts_on_tables!(
    rate_budget: LEDGER => |client, table| DynamoRateBudget::new(client, table, CONTRACT_LIMIT),
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_processes_never_get_more_than_the_bucket_holds() {
    // DESIGN §2 "Graph usage": the budget is shared by every concurrent function.
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    // A window so long that nothing refills during the test: exactly 20 grants exist.
    let limit = RateLimit {
        capacity: 20,
        window: Duration::from_secs(3_600),
    };
    let tenant = TenantId::generate();
    let now = chrono::Utc::now();
    let mut workers = Vec::new();
    for _ in 0..8 {
        // Each worker has its own adapter, as each Lambda process would.
        let budget = DynamoRateBudget::new(client.clone(), table.clone(), limit);
        let tenant = tenant.clone();
        workers.push(tokio::spawn(async move {
            let mut granted = 0u32;
            let mut waits = 0u32;
            for _ in 0..6 {
                match budget.acquire(&tenant, 1, now).await.expect("acquire") {
                    BudgetDecision::Granted => granted += 1,
                    BudgetDecision::Wait(wait) => {
                        assert!(wait > Duration::ZERO, "a wait is never zero");
                        waits += 1;
                    }
                }
            }
            (granted, waits)
        }));
    }
    let mut granted = 0;
    for worker in workers {
        granted += worker.await.expect("worker").0;
    }
    // 48 asks; contention may turn some asks into waits, but never over-grant.
    assert!(granted <= 20, "granted {granted} of 20");
    assert!(granted >= 10, "most of the bucket is used: {granted}");
    let last = DynamoRateBudget::new(client, table, limit);
    assert!(
        matches!(
            last.acquire(&tenant, 20, now).await.expect("acquire"),
            BudgetDecision::Wait(_)
        ),
        "what was granted is gone from the shared bucket"
    );
}
