//! A clock tests move by hand.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::lock;
use crate::ports::Clock;

/// A shared, manually advanced clock; clones see the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock showing `start`.
    #[must_use]
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// A clock at a fixed, round instant (2026-01-01T00:00:00Z).
    #[must_use]
    pub fn fixed() -> Self {
        Self::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
        )
    }

    /// Moves the clock forward (or back, for a negative delta).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = lock(&self.now);
        *now += by;
    }

    /// Sets the clock.
    pub fn set(&self, to: DateTime<Utc>) {
        *lock(&self.now) = to;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::fixed()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *lock(&self.now)
    }
}
