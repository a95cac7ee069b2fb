//! Pacing Graph writes with the engine's per-tenant [`RateBudget`] (DESIGN §2 "Graph usage",
//! graph-spec §7.2): before each write attempt (POST, PATCH, PUT, DELETE; a `$batch` costs its
//! write items), the client takes units from the tenant's budget, sleeping the budget's wait if it
//! fits before the call's deadline, else failing with the retryable [`GraphError::Budget`] so the
//! work goes back to the retry queue instead of colliding with Graph's 429s.
//!
//! The budget only paces; Graph stays the authority: a 429 is still honoured (`Retry-After`), and
//! when the budget's store fails the write goes ahead (logged), because Graph's own throttling
//! protects the tenant anyway and an outage of the store must not stop every write.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use m365_engine::model::TenantId;
use m365_engine::ports::{BudgetDecision, RateBudget};
use rand::Rng as _;
use reqwest::Method;
use tokio::time::Instant;

use crate::error::GraphError;

/// A boxed future of [`WriteBudget::acquire`].
pub type AcquireFuture<'a> =
    Pin<Box<dyn Future<Output = m365_engine::Result<BudgetDecision>> + Send + 'a>>;

/// A [`RateBudget`] the client can hold whatever its type (object safe). Every `RateBudget` that
/// is `Debug` is one, asking at the system clock's now.
pub trait WriteBudget: Send + Sync + Debug {
    /// [`RateBudget::acquire`] at now.
    fn acquire<'a>(&'a self, tenant: &'a TenantId, cost: u32) -> AcquireFuture<'a>;
}

impl<B: RateBudget + Debug> WriteBudget for B {
    fn acquire<'a>(&'a self, tenant: &'a TenantId, cost: u32) -> AcquireFuture<'a> {
        Box::pin(RateBudget::acquire(self, tenant, cost, chrono::Utc::now()))
    }
}

/// Whether `method` writes (costs a write in Graph's limits, graph-spec §7.2).
pub(crate) fn is_write(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE
    )
}

/// The writes a request costs: 1 for a write, the write items of a `$batch` envelope (the envelope
/// itself is not counted, graph-spec §6), 0 for a read.
pub(crate) fn writes_of(method: &Method, path: &str, body: Option<&serde_json::Value>) -> u32 {
    if !is_write(method) {
        return 0;
    }
    if !path.ends_with("/$batch") {
        return 1;
    }
    let items = body
        .and_then(|b| b.get("requests"))
        .and_then(serde_json::Value::as_array);
    let writes = items.map_or(0, |items| {
        items
            .iter()
            .filter(|item| {
                item.get("method")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
                    .is_some_and(|m| is_write(&m))
            })
            .count()
    });
    u32::try_from(writes).unwrap_or(u32::MAX)
}

/// Takes `cost` write units of `tenant`'s budget, sleeping the budget's waits (with jitter, so
/// waiting workers do not all wake at once) while they fit before `deadline`.
///
/// # Errors
/// [`GraphError::Budget`] when the next wait would pass `deadline`.
pub(crate) async fn pace(
    budget: &dyn WriteBudget,
    tenant: &TenantId,
    cost: u32,
    deadline: Instant,
) -> Result<(), GraphError> {
    loop {
        let wait = match budget.acquire(tenant, cost).await {
            Ok(BudgetDecision::Granted) => return Ok(()),
            Ok(BudgetDecision::Wait(wait)) => wait,
            Err(error) => {
                tracing::warn!(
                    tenant.id = %tenant,
                    error.code = error.code(),
                    "rate budget unavailable; writing without it (Graph's throttling still applies)"
                );
                return Ok(());
            }
        };
        let wait = wait + jitter(wait);
        if Instant::now() + wait > deadline {
            tracing::info!(
                tenant.id = %tenant,
                retry.after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                "rate budget has no room before the deadline; deferring the write"
            );
            return Err(GraphError::Budget { retry_after: wait });
        }
        tokio::time::sleep(wait).await;
    }
}

/// Up to a quarter of `wait` (at least up to 5 ms): spreads the wake-ups of concurrent waiters.
fn jitter(wait: Duration) -> Duration {
    let span = (wait / 4).max(Duration::from_millis(5));
    let nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn writes_cost_one_reads_nothing_and_a_batch_its_write_items() {
        assert_eq!(writes_of(&Method::GET, "/v1.0/users", None), 0);
        assert_eq!(writes_of(&Method::PATCH, "/v1.0/users/x", None), 1);
        assert_eq!(writes_of(&Method::DELETE, "/v1.0/groups/x", None), 1);
        assert_eq!(writes_of(&Method::POST, "/v1.0/users", None), 1);
        let batch = json!({"requests": [
            {"id": "1", "method": "GET", "url": "/users"},
            {"id": "2", "method": "PATCH", "url": "/users/a"},
            {"id": "3", "method": "post", "url": "/groups/g/members/$ref"},
        ]});
        assert_eq!(writes_of(&Method::POST, "/v1.0/$batch", Some(&batch)), 2);
        let reads = json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}]});
        assert_eq!(writes_of(&Method::POST, "/v1.0/$batch", Some(&reads)), 0);
    }

    #[test]
    fn jitter_stays_within_a_quarter_of_the_wait() {
        for _ in 0..100 {
            assert!(jitter(Duration::from_secs(1)) <= Duration::from_millis(250));
            assert!(jitter(Duration::ZERO) <= Duration::from_millis(5));
        }
    }
}
