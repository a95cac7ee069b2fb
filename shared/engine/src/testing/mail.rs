//! Email delivery in memory (R-NOT-1): a mailer that keeps every email it was asked to send, so a
//! test reads the sent message as SES would have received it; [`FakeMailer::fail_next`] makes the
//! next send fail.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::lock;
use crate::error::{Error, Result};
use crate::model::OutgoingEmail;
use crate::ports::Mailer;

/// Keeps every email sent, oldest first; answers message ids `fake-message-1`, `-2`, ….
#[derive(Debug, Default)]
pub struct FakeMailer {
    sent: Mutex<Vec<OutgoingEmail>>,
    faults: Mutex<VecDeque<Error>>,
}

impl FakeMailer {
    /// A mailer that has sent nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Every email sent, oldest first.
    #[must_use]
    pub fn sent(&self) -> Vec<OutgoingEmail> {
        lock(&self.sent).clone()
    }

    /// Makes the next send fail with `error` (nothing is sent).
    pub fn fail_next(&self, error: Error) {
        lock(&self.faults).push_back(error);
    }
}

impl Mailer for FakeMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String> {
        if let Some(fault) = lock(&self.faults).pop_front() {
            return Err(fault);
        }
        let mut sent = lock(&self.sent);
        sent.push(email.clone());
        Ok(format!("fake-message-{}", sent.len()))
    }
}
