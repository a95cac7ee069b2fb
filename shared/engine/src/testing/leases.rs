//! Named leases in memory, with the conditional semantics of the DynamoDB adapter: free, expired or
//! own leases can be taken; a live lease of another holder cannot.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::lock;
use crate::error::Result;
use crate::ports::Leases;

/// Leases in memory.
#[derive(Debug, Default)]
pub struct FakeLeases {
    leases: Mutex<HashMap<String, (String, DateTime<Utc>)>>,
}

impl FakeLeases {
    /// No lease held.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The holder of `name` and the end of its lease, if any is recorded.
    #[must_use]
    pub fn holder(&self, name: &str) -> Option<(String, DateTime<Utc>)> {
        lock(&self.leases).get(name).cloned()
    }
}

impl Leases for FakeLeases {
    async fn acquire(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool> {
        let mut leases = lock(&self.leases);
        let free = leases
            .get(name)
            .is_none_or(|(h, end)| h == holder || *end <= now);
        if free {
            leases.insert(name.to_owned(), (holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        let mut leases = lock(&self.leases);
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod contract {
    contract_tests!(leases, super::FakeLeases::new());
}
