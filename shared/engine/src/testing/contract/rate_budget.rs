//! Contract of [`RateBudget`]: a token bucket per tenant that starts full, grants up to its
//! capacity, refuses with the wait until the units are back, refills with time, and keeps tenants
//! apart (DESIGN §2 "Graph usage", graph-spec §7.2). The budget under test must be built with
//! [`CONTRACT_LIMIT`].

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::now_ms;
use crate::error::Error;
use crate::model::TenantId;
use crate::ports::{BudgetDecision, RateBudget, RateLimit};

/// The limit every budget under this contract must have: 10 units per 10 s (1 per second).
pub const CONTRACT_LIMIT: RateLimit = RateLimit {
    capacity: 10,
    window: Duration::from_secs(10),
};

/// Asks `budget` for `cost` units of `tenant` at `at`; the call must succeed.
async fn acquire(
    budget: &impl RateBudget,
    tenant: &TenantId,
    cost: u32,
    at: DateTime<Utc>,
) -> BudgetDecision {
    budget.acquire(tenant, cost, at).await.expect("acquire")
}

/// Asserts that `budget` grants `cost` units of `tenant` at `at` (`why`, on failure).
async fn assert_granted(
    budget: &impl RateBudget,
    tenant: &TenantId,
    cost: u32,
    at: DateTime<Utc>,
    why: &str,
) {
    assert_eq!(
        acquire(budget, tenant, cost, at).await,
        BudgetDecision::Granted,
        "{why}"
    );
}

fn wait_of(decision: BudgetDecision) -> Duration {
    match decision {
        BudgetDecision::Wait(wait) => wait,
        BudgetDecision::Granted => panic!("expected a wait, the budget granted"),
    }
}

/// A new tenant's bucket is full: its whole capacity is granted at once, then the next unit waits
/// about one refill step (1 s) and nothing is taken by the refusal.
pub async fn a_new_tenant_gets_its_capacity_then_waits(budget: &impl RateBudget) {
    let (tenant, now) = (TenantId::generate(), now_ms());
    for _ in 0..5 {
        let decision = acquire(budget, &tenant, 2, now).await;
        assert_eq!(decision, BudgetDecision::Granted);
    }
    let wait = wait_of(acquire(budget, &tenant, 1, now).await);
    assert!(
        wait > Duration::from_millis(900) && wait <= Duration::from_millis(1_000),
        "one unit refills in 1 s: {wait:?}"
    );
    let wait = wait_of(acquire(budget, &tenant, 1, now).await);
    assert!(
        wait <= Duration::from_millis(1_000),
        "a refusal takes nothing: {wait:?}"
    );
}

/// Units come back with time at capacity per window, up to the capacity.
pub async fn the_budget_refills_with_time(budget: &impl RateBudget) {
    let (tenant, now) = (TenantId::generate(), now_ms());
    assert_granted(budget, &tenant, 10, now, "granted").await;
    let later = now + TimeDelta::seconds(3);
    assert_granted(budget, &tenant, 3, later, "3 s refill 3 units").await;
    let wait = wait_of(acquire(budget, &tenant, 1, later).await);
    assert!(wait > Duration::from_millis(900), "{wait:?}");
    let much_later = later + TimeDelta::hours(1);
    assert_granted(budget, &tenant, 10, much_later, "full again").await;
    assert!(
        matches!(
            acquire(budget, &tenant, 1, much_later).await,
            BudgetDecision::Wait(_)
        ),
        "never above capacity"
    );
}

/// A wait names the time until the whole cost is there, and asking then is granted.
pub async fn a_wait_ends_when_the_units_are_back(budget: &impl RateBudget) {
    let (tenant, now) = (TenantId::generate(), now_ms());
    assert_granted(budget, &tenant, 8, now, "granted").await;
    let wait = wait_of(acquire(budget, &tenant, 5, now).await);
    assert!(
        wait > Duration::from_millis(2_900) && wait <= Duration::from_millis(3_000),
        "2 units left, 3 more take 3 s: {wait:?}"
    );
    let then = now + TimeDelta::from_std(wait).expect("small wait");
    assert_granted(budget, &tenant, 5, then, "granted").await;
}

/// Tenants have separate buckets.
pub async fn tenants_do_not_share_a_bucket(budget: &impl RateBudget) {
    let (a, b, now) = (TenantId::generate(), TenantId::generate(), now_ms());
    assert_granted(budget, &a, 10, now, "granted").await;
    assert_granted(budget, &b, 10, now, "b is untouched by a").await;
}

/// A cost of 0 or above the capacity could never be granted: it is refused as invalid.
pub async fn an_impossible_cost_is_refused(budget: &impl RateBudget) {
    let (tenant, now) = (TenantId::generate(), now_ms());
    assert!(matches!(
        budget.acquire(&tenant, 0, now).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        budget.acquire(&tenant, 11, now).await,
        Err(Error::Invalid(_))
    ));
}
