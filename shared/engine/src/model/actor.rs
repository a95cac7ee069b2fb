//! Who caused a change (R-AUD-1): every event names its actor.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest actor accepted (an IAM principal ARN is at most 2,048 characters).
pub const MAX_ACTOR_LEN: usize = 2048;

/// Who caused a change: the caller's IAM principal ARN behind API Gateway, `local` on the local
/// stack, `schedule` for scheduled work (token refresh, the reconcile schedule). Work that
/// outlives the request that asked for it (a retried bind, a queued reconcile run) keeps the
/// actor of that request: it travels with the retry message and the operation in flight.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// The local stack's caller (devstack's bearer token stands in for SigV4).
    pub const LOCAL: &'static str = "local";
    /// Scheduled work (EventBridge rules) and work with no recorded requester.
    pub const SCHEDULE: &'static str = "schedule";
    /// A request without an authenticated principal (the OAuth callback, which is public).
    pub const ANONYMOUS: &'static str = "anonymous";

    /// The local stack's caller.
    #[must_use]
    pub fn local() -> Self {
        Self(Self::LOCAL.to_owned())
    }

    /// Scheduled work.
    #[must_use]
    pub fn schedule() -> Self {
        Self(Self::SCHEDULE.to_owned())
    }

    /// A request without an authenticated principal.
    #[must_use]
    pub fn anonymous() -> Self {
        Self(Self::ANONYMOUS.to_owned())
    }

    /// An authenticated principal (an IAM ARN): trimmed, control characters refused, cut to
    /// [`MAX_ACTOR_LEN`]; `None` when nothing printable is left.
    #[must_use]
    pub fn principal(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.is_empty() || name.chars().any(char::is_control) {
            return None;
        }
        let end = name
            .char_indices()
            .nth(MAX_ACTOR_LEN)
            .map_or(name.len(), |(i, _)| i);
        Some(Self(name[..end].to_owned()))
    }

    /// The actor as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Actor {
    /// [`Actor::schedule`]: work no request asked for.
    fn default() -> Self {
        Self::schedule()
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_is_kept_as_given_and_blank_or_control_text_is_refused() {
        // R-AUD-1
        let arn = "arn:aws:sts::123456789012:assumed-role/Admin/alice";
        assert_eq!(Actor::principal(arn).unwrap().as_str(), arn);
        assert_eq!(Actor::principal("  x ").unwrap().as_str(), "x");
        assert!(Actor::principal("   ").is_none());
        assert!(Actor::principal("a\nb").is_none());
        let long = "a".repeat(MAX_ACTOR_LEN + 10);
        assert_eq!(
            Actor::principal(&long).unwrap().as_str().len(),
            MAX_ACTOR_LEN
        );
    }

    #[test]
    fn an_actor_serializes_as_a_plain_string() {
        // R-AUD-1
        assert_eq!(serde_json::to_string(&Actor::local()).unwrap(), "\"local\"");
        assert_eq!(Actor::default(), Actor::schedule());
    }
}
