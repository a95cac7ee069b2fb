//! The token bucket behind every [`crate::ports::RateBudget`] (graph-spec §7.2 describes Graph's
//! own limits as token buckets): pure arithmetic on a stored level, shared by the DynamoDB adapter
//! and the in-memory fake so both decide alike.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, FieldProblem, InvalidInput, Result};
use crate::ports::{BudgetDecision, RateLimit};

/// A bucket as stored: its level at `updated`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Units available at `updated` (0 ≤ level ≤ capacity).
    pub level: f64,
    /// When `level` was computed.
    pub updated: DateTime<Utc>,
}

impl Bucket {
    /// A full bucket of `limit` at `now` (a tenant never seen before).
    #[must_use]
    pub fn full(limit: RateLimit, now: DateTime<Utc>) -> Self {
        Self {
            level: f64::from(limit.capacity),
            updated: now,
        }
    }

    /// The level at `now`: refilled at `limit`'s rate since `updated`, never above capacity. A
    /// `now` before `updated` (another process's clock runs ahead) refills nothing.
    #[must_use]
    pub fn level_at(self, limit: RateLimit, now: DateTime<Utc>) -> f64 {
        let elapsed = (now - self.updated).to_std().unwrap_or(Duration::ZERO);
        (self.level + elapsed.as_secs_f64() * limit.per_second()).min(f64::from(limit.capacity))
    }

    /// Takes `cost` units at `now`: the bucket to store and [`BudgetDecision::Granted`], or no
    /// change and how long until `cost` units are there.
    ///
    /// # Errors
    /// `Invalid(Field "cost")` for 0 or a cost above `limit.capacity` (never grantable).
    pub fn take(
        self,
        limit: RateLimit,
        cost: u32,
        now: DateTime<Utc>,
    ) -> Result<(Option<Self>, BudgetDecision)> {
        check_cost(limit, cost)?;
        let level = self.level_at(limit, now);
        let cost = f64::from(cost);
        if level >= cost {
            let stored = Self {
                level: level - cost,
                // A clock behind the stored one must not move the bucket back in time.
                updated: now.max(self.updated),
            };
            return Ok((Some(stored), BudgetDecision::Granted));
        }
        let seconds = (cost - level) / limit.per_second();
        // At least a millisecond: a zero wait would invite a hot loop.
        let wait = Duration::from_secs_f64(seconds).max(Duration::from_millis(1));
        Ok((None, BudgetDecision::Wait(wait)))
    }
}

/// Refuses a cost no bucket of `limit` can ever grant.
///
/// # Errors
/// `Invalid(Field "cost")` for 0 or above capacity.
pub fn check_cost(limit: RateLimit, cost: u32) -> Result<()> {
    if cost == 0 {
        return Err(Error::Invalid(InvalidInput::Field {
            field: "cost",
            problem: FieldProblem::Empty,
        }));
    }
    if cost > limit.capacity {
        return Err(Error::Invalid(InvalidInput::Field {
            field: "cost",
            problem: FieldProblem::TooLong {
                max: usize::try_from(limit.capacity).unwrap_or(usize::MAX),
            },
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    const LIMIT: RateLimit = RateLimit {
        capacity: 60,
        window: Duration::from_secs(10),
    };

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_full_bucket_grants_its_capacity_then_asks_to_wait_for_one_refill_step() {
        let mut bucket = Bucket::full(LIMIT, t0());
        for _ in 0..60 {
            let (next, decision) = bucket.take(LIMIT, 1, t0()).unwrap();
            assert_eq!(decision, BudgetDecision::Granted);
            bucket = next.unwrap();
        }
        let (next, decision) = bucket.take(LIMIT, 1, t0()).unwrap();
        assert!(next.is_none(), "nothing is taken on a refusal");
        // 6 units per second: one unit takes a sixth of a second.
        let BudgetDecision::Wait(wait) = decision else {
            panic!("expected a wait")
        };
        assert!((wait.as_secs_f64() - 1.0 / 6.0).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn the_bucket_refills_at_capacity_per_window_and_never_above_capacity() {
        let empty = Bucket {
            level: 0.0,
            updated: t0(),
        };
        assert!((empty.level_at(LIMIT, t0() + TimeDelta::seconds(5)) - 30.0).abs() < 1e-9);
        assert!((empty.level_at(LIMIT, t0() + TimeDelta::hours(1)) - 60.0).abs() < 1e-9);
        assert!(
            empty.level_at(LIMIT, t0() - TimeDelta::seconds(5)).abs() < 1e-9,
            "a clock behind refills nothing"
        );
    }

    #[test]
    fn a_wait_names_the_time_until_the_whole_cost_is_there() {
        let bucket = Bucket {
            level: 2.0,
            updated: t0(),
        };
        let (_, decision) = bucket.take(LIMIT, 20, t0()).unwrap();
        let BudgetDecision::Wait(wait) = decision else {
            panic!("expected a wait")
        };
        assert!((wait.as_secs_f64() - 3.0).abs() < 1e-6, "{wait:?}");
        let (next, decision) = bucket
            .take(LIMIT, 20, t0() + TimeDelta::seconds(3))
            .unwrap();
        assert_eq!(decision, BudgetDecision::Granted);
        assert!(next.unwrap().level.abs() < 1e-6);
    }

    #[test]
    fn a_cost_of_zero_or_above_capacity_is_refused() {
        let bucket = Bucket::full(LIMIT, t0());
        assert!(matches!(
            bucket.take(LIMIT, 0, t0()),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            bucket.take(LIMIT, 61, t0()),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn a_share_of_graphs_write_limit_scales_capacity_and_rate() {
        let ours = RateLimit::GRAPH_WRITES.scaled(RateLimit::DEFAULT_SHARE);
        assert_eq!(ours.capacity, 2_850);
        assert_eq!(ours.window, Duration::from_secs(150));
        assert!((ours.per_second() - 19.0).abs() < 1e-9);
        assert_eq!(LIMIT.scaled(0.0).capacity, 1, "never empty");
    }
}
