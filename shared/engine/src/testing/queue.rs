//! The retry queue in memory, on a [`ManualClock`]: delays and visibility timeouts run on virtual
//! time, and a long-poll `receive` advances the clock instead of sleeping.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::{ManualClock, lock};
use crate::error::{Error, FieldProblem, InvalidInput, Result};
use crate::model::{MAX_QUEUE_DELAY, RetryMessage};
use crate::ports::{Clock, Delivery, RetryQueue, RetryQueueConsumer};

/// A message waiting in the fake queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    /// The message.
    pub message: RetryMessage,
    /// When it becomes (or became) visible.
    pub visible_at: DateTime<Utc>,
    /// How many times it was received.
    pub receive_count: u32,
    receipt: Option<String>,
}

/// The retry queue in memory (standard-queue semantics without duplicates).
#[derive(Debug)]
pub struct FakeRetryQueue {
    clock: ManualClock,
    messages: Mutex<Vec<QueuedMessage>>,
    /// Errors the next sends answer with, in order (SQS unavailable).
    send_faults: Mutex<Vec<Error>>,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl FakeRetryQueue {
    /// An empty queue on `clock`.
    #[must_use]
    pub fn new(clock: ManualClock) -> Self {
        Self {
            clock,
            messages: Mutex::new(Vec::new()),
            send_faults: Mutex::new(Vec::new()),
        }
    }

    /// The next `send` fails with `error` and queues nothing.
    pub fn fail_next_send(&self, error: Error) {
        lock(&self.send_faults).push(error);
    }

    /// Every message in the queue, visible or not (for assertions).
    #[must_use]
    pub fn snapshot(&self) -> Vec<QueuedMessage> {
        lock(&self.messages).clone()
    }

    /// Removes and returns every message, whatever its delay (what a test "worker" drains).
    #[must_use]
    pub fn drain(&self) -> Vec<RetryMessage> {
        lock(&self.messages).drain(..).map(|q| q.message).collect()
    }

    fn take_visible(&self, max: u32, visibility: Duration) -> Vec<Delivery> {
        let now = self.clock.now();
        let mut messages = lock(&self.messages);
        let mut out = Vec::new();
        for queued in messages.iter_mut().filter(|q| q.visible_at <= now) {
            if out.len() >= max as usize {
                break;
            }
            let receipt = uuid::Uuid::new_v4().to_string();
            queued.receive_count += 1;
            queued.visible_at = now + delta(visibility);
            queued.receipt = Some(receipt.clone());
            out.push(Delivery {
                message: queued.message.clone(),
                receipt,
                receive_count: queued.receive_count,
            });
        }
        out
    }
}

impl RetryQueue for FakeRetryQueue {
    async fn send(&self, message: &RetryMessage, delay: Duration) -> Result<()> {
        {
            let mut faults = lock(&self.send_faults);
            if !faults.is_empty() {
                return Err(faults.remove(0));
            }
        }
        if delay > MAX_QUEUE_DELAY {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "delay",
                problem: FieldProblem::TooLong { max: 900 },
            }));
        }
        let visible_at = self.clock.now() + delta(delay);
        lock(&self.messages).push(QueuedMessage {
            message: message.clone(),
            visible_at,
            receive_count: 0,
            receipt: None,
        });
        Ok(())
    }
}

impl RetryQueueConsumer for FakeRetryQueue {
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>> {
        let max = max.max(1);
        let delivered = self.take_visible(max, visibility);
        if !delivered.is_empty() || wait.is_zero() {
            return Ok(delivered);
        }
        // Long poll on virtual time: jump to the first message that becomes visible within `wait`,
        // or to the end of the wait.
        let now = self.clock.now();
        let deadline = now + delta(wait);
        let first = lock(&self.messages).iter().map(|q| q.visible_at).min();
        match first {
            Some(at) if at <= deadline => {
                self.clock.set(at.max(now));
                Ok(self.take_visible(max, visibility))
            }
            _ => {
                self.clock.set(deadline);
                Ok(Vec::new())
            }
        }
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        lock(&self.messages).retain(|q| q.receipt.as_deref() != Some(receipt));
        Ok(())
    }
}
