//! The one retry policy and the one backoff formula (R-BIND-6, DESIGN §2 "Graph usage", STYLE
//! "Errors"): every wait before a retry — an operation deferred to the retry queue by the use
//! cases ([`crate::usecase`]), a group mirroring deferred by `group_sync`, and a Graph request
//! retried in-process by the Graph client — is computed here, so they cannot drift apart.
//!
//! The formula ([`backoff`]): the step doubles per attempt from `base` up to `cap`
//! (`min(base · 2^(attempt−1), cap)`, attempt 1-based), and the wait is uniformly spread over
//! the step's upper half, `[step/2, step]` ("equal jitter": clients throttled together do not
//! come back together, and no wait is shorter than half its step). A service's `Retry-After`
//! wins when it is longer, spread by up to a tenth more ([`transient_wait`]; graph-spec §7.1:
//! never come back before it). Long waits (an address held by a deleted account, a parked
//! tenant) are spread by up to a tenth, at most [`MAX_LONG_WAIT_JITTER`] ([`spread`]).
//!
//! Everything is pure: randomness comes from the caller's [`Random`] (seeded in tests, so a
//! seeded run draws the same waits every time).

use std::fmt;
use std::time::Duration;

use crate::ports::Random;

/// Doublings beyond this add nothing (`2^20` times any sensible base exceeds any sensible cap)
/// and would only overflow.
const MAX_DOUBLINGS: u32 = 20;

/// Long waits (held address, parked tenant) are spread by at most this much.
pub const MAX_LONG_WAIT_JITTER: Duration = Duration::from_secs(60);

/// How operations are retried (R-BIND-6). `Default` gives the product's defaults; a deployment
/// may set the fields from configuration, checked with [`RetryPolicy::validated`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Consecutive retryable failures (throttling, 5xx, timeouts, replication lag) retried before
    /// the operation gives up with the binding in `error` ([`RetryPolicy::exhausted`]).
    pub max_attempts: u32,
    /// First backoff step; doubled per attempt ([`backoff`]).
    pub base_delay: Duration,
    /// Longest backoff step between two attempts.
    pub max_delay: Duration,
    /// How long an address held by a deleted account is waited for before `error` (≥ 48 h by
    /// default: the hold can last 24 h or more, R-BIND-6).
    pub address_wait: Duration,
    /// After a create whose answer was lost, how long a lookup that does not see the account is
    /// taken for replication lag (graph-spec §12: retry such 404s for up to about 60 s) before
    /// a new create is sent.
    pub lookup_grace: Duration,
    /// Interval between address checks when M365 gives no `Retry-After`.
    pub address_interval: Duration,
    /// How often a parked operation (tenant in `reauthorization_required`) looks again.
    pub park_interval: Duration,
    /// Ledger lease of a running operation (longer than one Lambda invocation).
    pub lease: Duration,
    /// How long the ledger remembers a finished operation (de-duplicates redelivery).
    pub ledger_ttl: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(900),
            address_wait: Duration::from_secs(48 * 3600),
            lookup_grace: Duration::from_secs(60),
            address_interval: Duration::from_secs(900),
            park_interval: Duration::from_secs(900),
            lease: Duration::from_secs(300),
            ledger_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// One rule a [`RetryPolicy`] breaks: the field (as named in the struct) and what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicyProblem {
    /// The field, e.g. `max_attempts`.
    pub field: &'static str,
    /// The rule, e.g. `must be at least 1`.
    pub rule: &'static str,
}

/// A [`RetryPolicy`] that cannot be used, with every problem found (not only the first), so a
/// configuration can be fixed in one go.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RetryPolicyError {
    /// The problems, in field order.
    pub problems: Vec<RetryPolicyProblem>,
}

impl fmt::Display for RetryPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid retry policy: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{} {}", p.field, p.rule)?;
        }
        Ok(())
    }
}

impl RetryPolicy {
    /// Every rule this policy breaks (empty: usable). A zero interval would turn a wait into a
    /// hot loop; a base above the cap makes the cap meaningless; a ledger that forgets an
    /// operation before its lease ends lets a redelivery run it twice.
    #[must_use]
    pub fn problems(&self) -> Vec<RetryPolicyProblem> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, field: &'static str, rule: &'static str| {
            if !ok {
                problems.push(RetryPolicyProblem { field, rule });
            }
        };
        check(self.max_attempts >= 1, "max_attempts", "must be at least 1");
        check(
            !self.base_delay.is_zero(),
            "base_delay",
            "must be more than 0",
        );
        check(
            self.base_delay <= self.max_delay,
            "base_delay",
            "must not exceed max_delay",
        );
        for (wait, field) in [
            (self.address_wait, "address_wait"),
            (self.lookup_grace, "lookup_grace"),
            (self.address_interval, "address_interval"),
            (self.park_interval, "park_interval"),
        ] {
            check(!wait.is_zero(), field, "must be more than 0");
        }
        check(!self.lease.is_zero(), "lease", "must be more than 0");
        check(
            self.ledger_ttl >= self.lease,
            "ledger_ttl",
            "must be at least the lease",
        );
        problems
    }

    /// This policy, if it breaks no rule.
    ///
    /// # Errors
    /// [`RetryPolicyError`] listing every rule broken ([`Self::problems`]).
    pub fn validated(self) -> Result<Self, RetryPolicyError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(RetryPolicyError { problems })
        }
    }

    /// Whether `failures` consecutive retryable failures (this one included) spend the budget:
    /// more than [`Self::max_attempts`] of them.
    #[must_use]
    pub fn exhausted(&self, failures: u32) -> bool {
        failures > self.max_attempts
    }

    /// The wait before retry `attempt` (1-based) of a transient failure, with the service's
    /// `Retry-After` if any: [`transient_wait`] with this policy's base and cap.
    #[must_use]
    pub fn transient_wait<R: Random + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: &R,
    ) -> Duration {
        transient_wait(
            self.base_delay,
            self.max_delay,
            attempt,
            retry_after,
            random,
        )
    }
}

/// A uniformly random duration in `[0, span]`, at millisecond resolution.
fn jitter<R: Random + ?Sized>(span: Duration, random: &R) -> Duration {
    let millis = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(random.below(millis.saturating_add(1)))
}

/// The backoff step of retry `attempt` (1-based; 0 counts as 1): `min(base · 2^(attempt−1), cap)`.
#[must_use]
pub fn step(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(MAX_DOUBLINGS);
    base.saturating_mul(1 << exponent).min(cap)
}

/// The one backoff formula: the wait before retry `attempt` (1-based) is uniformly random in
/// `[step/2, step]` with `step = min(base · 2^(attempt−1), cap)` (exponential, capped, equal
/// jitter). Draws once from `random`.
#[must_use]
pub fn backoff<R: Random + ?Sized>(
    base: Duration,
    cap: Duration,
    attempt: u32,
    random: &R,
) -> Duration {
    let half = step(base, cap, attempt) / 2;
    half + jitter(half, random)
}

/// The wait before retry `attempt` of a transient failure: the [`backoff`], or the service's
/// `Retry-After` when that is longer, spread by up to a tenth more so that the clients it throttled
/// together do not return together (graph-spec §7.1: never sooner than `Retry-After`).
#[must_use]
pub fn transient_wait<R: Random + ?Sized>(
    base: Duration,
    cap: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
    random: &R,
) -> Duration {
    let backoff = backoff(base, cap, attempt, random);
    match retry_after {
        Some(wait) if wait > backoff => wait + jitter(wait / 10, random),
        _ => backoff,
    }
}

/// A long wait (an address check, a parked tenant) spread by up to a tenth of it, at most
/// [`MAX_LONG_WAIT_JITTER`].
#[must_use]
pub fn spread<R: Random + ?Sized>(wait: Duration, random: &R) -> Duration {
    wait + jitter((wait / 10).min(MAX_LONG_WAIT_JITTER), random)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// Answers `below(n)` with `n - 1` (`max: true`) or 0: the ends of every jitter range.
    struct Edge {
        max: bool,
        draws: AtomicU64,
    }

    impl Edge {
        fn low() -> Self {
            Self {
                max: false,
                draws: AtomicU64::new(0),
            }
        }
        fn high() -> Self {
            Self {
                max: true,
                draws: AtomicU64::new(0),
            }
        }
    }

    impl Random for Edge {
        fn next_u64(&self) -> u64 {
            unreachable!("below is overridden")
        }
        fn below(&self, bound: u64) -> u64 {
            self.draws.fetch_add(1, Ordering::Relaxed);
            if self.max { bound.saturating_sub(1) } else { 0 }
        }
    }

    /// A small deterministic generator (SplitMix64) for the distribution checks.
    struct Mix(AtomicU64);

    impl Random for Mix {
        fn next_u64(&self) -> u64 {
            let mut z = self
                .0
                .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                .wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    const BASE: Duration = Duration::from_secs(2);
    const CAP: Duration = Duration::from_secs(900);

    #[test]
    fn the_step_doubles_with_each_attempt_from_the_base() {
        // R-BIND-6 (backoff)
        assert_eq!(step(BASE, CAP, 1), Duration::from_secs(2));
        assert_eq!(step(BASE, CAP, 2), Duration::from_secs(4));
        assert_eq!(step(BASE, CAP, 3), Duration::from_secs(8));
        assert_eq!(step(BASE, CAP, 8), Duration::from_secs(256));
        assert_eq!(
            step(BASE, CAP, 0),
            step(BASE, CAP, 1),
            "attempt 0 is the first"
        );
        for attempt in 1..9 {
            assert_eq!(
                backoff(BASE, CAP, attempt, &Edge::high()),
                step(BASE, CAP, attempt),
                "the longest wait is the step"
            );
        }
    }

    #[test]
    fn the_step_never_exceeds_the_cap_even_for_huge_attempt_numbers() {
        // R-BIND-6 (backoff with a cap), no overflow
        assert_eq!(step(BASE, CAP, 10), CAP);
        assert_eq!(step(BASE, CAP, 64), CAP);
        assert_eq!(step(BASE, CAP, u32::MAX), CAP);
        assert_eq!(backoff(BASE, CAP, u32::MAX, &Edge::high()), CAP);
        assert_eq!(
            step(Duration::MAX, Duration::MAX, u32::MAX),
            Duration::MAX,
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn the_jitter_stays_within_the_upper_half_of_the_step() {
        // R-BIND-6 (jitter bounds)
        for attempt in 1..12 {
            let s = step(BASE, CAP, attempt);
            assert_eq!(backoff(BASE, CAP, attempt, &Edge::low()), s / 2);
            assert_eq!(backoff(BASE, CAP, attempt, &Edge::high()), s);
        }
        let random = Mix(AtomicU64::new(7));
        let waits: Vec<Duration> = (0..2000).map(|_| backoff(BASE, CAP, 4, &random)).collect();
        assert!(
            waits
                .iter()
                .all(|w| (Duration::from_secs(8)..=Duration::from_secs(16)).contains(w))
        );
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 1000, "spread, not a constant");
    }

    #[test]
    fn a_seeded_source_draws_the_same_waits_every_time() {
        // R-BIND-6: deterministic given the randomness (tests replay exactly)
        let run = || {
            let random = Mix(AtomicU64::new(42));
            (1..10)
                .map(|a| transient_wait(BASE, CAP, a, None, &random))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_longer_retry_after_wins_and_is_spread_by_at_most_a_tenth() {
        // R-BIND-6, graph-spec §7.1 (Retry-After honoured)
        let hint = Duration::from_secs(30);
        assert_eq!(
            transient_wait(BASE, CAP, 1, Some(hint), &Edge::low()),
            hint,
            "never sooner than Retry-After"
        );
        assert_eq!(
            transient_wait(BASE, CAP, 1, Some(hint), &Edge::high()),
            hint + Duration::from_secs(3)
        );
    }

    #[test]
    fn a_retry_after_shorter_than_the_backoff_does_not_shorten_it() {
        // R-BIND-6: a tiny hint does not turn backoff into hammering
        let low = Edge::low();
        let wait = transient_wait(BASE, CAP, 5, Some(Duration::from_millis(10)), &low);
        assert_eq!(
            wait,
            Duration::from_secs(16),
            "the backoff (step 32 s, low end)"
        );
        assert_eq!(
            low.draws.load(Ordering::Relaxed),
            1,
            "one draw, for the backoff"
        );
    }

    #[test]
    fn long_waits_are_spread_by_a_tenth_up_to_a_minute() {
        // R-BIND-6 (address wait), R-CONN-4 (parked)
        let hour = Duration::from_secs(3600);
        assert_eq!(spread(hour, &Edge::low()), hour);
        assert_eq!(spread(hour, &Edge::high()), hour + MAX_LONG_WAIT_JITTER);
        let minute = Duration::from_secs(60);
        assert_eq!(
            spread(minute, &Edge::high()),
            minute + Duration::from_secs(6)
        );
    }

    #[test]
    fn the_budget_is_spent_after_max_attempts_consecutive_failures() {
        // R-BIND-6 (after the retry budget: error)
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(!policy.exhausted(1));
        assert!(!policy.exhausted(3));
        assert!(policy.exhausted(4));
        assert!(!RetryPolicy::default().exhausted(8));
        assert!(RetryPolicy::default().exhausted(9));
    }

    #[test]
    fn the_default_policy_is_valid() {
        // R-BIND-6
        assert_eq!(RetryPolicy::default().problems(), vec![]);
        assert_eq!(
            RetryPolicy::default().validated(),
            Ok(RetryPolicy::default())
        );
    }

    #[test]
    fn an_invalid_policy_lists_every_problem_at_once() {
        // Issue 13 (configurable retry knobs, every problem listed)
        let policy = RetryPolicy {
            max_attempts: 0,
            base_delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(10),
            park_interval: Duration::ZERO,
            lease: Duration::from_secs(600),
            ledger_ttl: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let error = policy.validated().unwrap_err();
        let fields: Vec<_> = error.problems.iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            ["max_attempts", "base_delay", "park_interval", "ledger_ttl"]
        );
        assert_eq!(
            error.to_string(),
            "invalid retry policy: max_attempts must be at least 1; base_delay must not exceed \
             max_delay; park_interval must be more than 0; ledger_ttl must be at least the lease"
        );
        let zero = RetryPolicy {
            base_delay: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(
            zero.problems(),
            vec![RetryPolicyProblem {
                field: "base_delay",
                rule: "must be more than 0"
            }]
        );
    }
}
