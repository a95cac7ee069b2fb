//! Notifications and randomness in memory: a notifier that keeps what it was asked to send and a
//! seeded random source, so use-case tests are deterministic.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::lock;
use crate::error::{Error, Result};
use crate::model::WelcomeNotification;
use crate::ports::{Notifier, Random};

/// Keeps every welcome notification sent; [`FakeNotifier::fail_next`] makes the next send fail.
#[derive(Debug, Default)]
pub struct FakeNotifier {
    sent: Mutex<Vec<WelcomeNotification>>,
    faults: Mutex<VecDeque<Error>>,
}

impl FakeNotifier {
    /// A notifier that has sent nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every notification sent, oldest first.
    #[must_use]
    pub fn sent(&self) -> Vec<WelcomeNotification> {
        lock(&self.sent).clone()
    }

    /// Makes the next send fail with `error`.
    pub fn fail_next(&self, error: Error) {
        lock(&self.faults).push_back(error);
    }
}

impl Notifier for FakeNotifier {
    async fn welcome(&self, notification: &WelcomeNotification) -> Result<()> {
        if let Some(fault) = lock(&self.faults).pop_front() {
            return Err(fault);
        }
        lock(&self.sent).push(notification.clone());
        Ok(())
    }
}

/// A deterministic random source (SplitMix64) for tests; the same seed gives the same sequence.
#[derive(Debug)]
pub struct SeededRandom {
    state: Mutex<u64>,
}

impl SeededRandom {
    /// A source starting from `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            state: Mutex::new(seed),
        }
    }
}

impl Random for SeededRandom {
    fn next_u64(&self) -> u64 {
        let mut state = lock(&self.state);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
