//! Operations: deterministic ids (STYLE "Idempotency"), retry messages and ledger outcomes.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{GroupId, TenantId, UserId};

/// The kinds of operation the engine runs (and may retry from the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Bind a user: create, adopt or unblock its M365 account.
    UserBind,
    /// Unbind a user: block sign-in.
    UserUnbind,
    /// Push a user's attributes.
    UserUpdate,
    /// Push a user's password.
    UserPassword,
    /// Bring a bound account in line with the user's directory `state`: suspend a disabled user,
    /// re-enable a re-activated one (R-BIND-9).
    UserState,
    /// Bind a group (create or adopt the security group).
    GroupBind,
    /// Mirror a group's membership.
    GroupMembers,
    /// Import users of a tenant.
    Import,
    /// Refresh a tenant's tokens.
    TokenRefresh,
    /// Reconcile a tenant.
    Reconcile,
    /// Set or remove a bound user's manager in M365 (R-ATTR-1).
    UserManager,
}

impl OperationKind {
    /// The snake_case name, used inside operation ids.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserBind => "user_bind",
            Self::UserUnbind => "user_unbind",
            Self::UserUpdate => "user_update",
            Self::UserPassword => "user_password",
            Self::UserState => "user_state",
            Self::GroupBind => "group_bind",
            Self::GroupMembers => "group_members",
            Self::Import => "import",
            Self::TokenRefresh => "token_refresh",
            Self::Reconcile => "reconcile",
            Self::UserManager => "user_manager",
        }
    }
}

/// What an operation acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum OperationSubject {
    /// A directory user.
    User(UserId),
    /// A directory group.
    Group(GroupId),
    /// A tenant.
    Tenant(TenantId),
}

impl fmt::Display for OperationSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Group(id) => write!(f, "group:{id}"),
            Self::Tenant(id) => write!(f, "tenant:{id}"),
        }
    }
}

/// A deterministic operation id: `kind/subject/intent`, e.g. `user_bind/user:alice/3`.
///
/// The intent is what the caller wants done (e.g. the binding or user version the request was made
/// against), so a redelivered or retried request maps to the same id and the ledger de-duplicates it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OperationId(String);

impl OperationId {
    /// The id of `kind` on `subject` for intent version `intent`.
    #[must_use]
    pub fn new(kind: OperationKind, subject: &OperationSubject, intent: impl fmt::Display) -> Self {
        Self(format!("{}/{subject}/{intent}", kind.as_str()))
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of a follow-up `step` of this operation, e.g. the welcome email of a bind
    /// (`user_bind/user:alice/3#welcome`, R-NOT-1): claimed in the ledger on its own, so the step
    /// is de-duplicated apart from the operation itself.
    #[must_use]
    pub fn follow_up(&self, step: &str) -> Self {
        Self(format!("{}#{step}", self.0))
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A delayed operation on the retry queue. Never carries a password or token (R-PWD-1, R-SAFE-2):
/// the worker reloads what it needs from the stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryMessage {
    /// The operation to re-drive.
    pub operation_id: OperationId,
    /// Its kind.
    pub kind: OperationKind,
    /// What it acts on.
    pub subject: OperationSubject,
    /// 1 for the first retry, increasing.
    pub attempt: u32,
    /// Not to be worked on before this instant (may lie beyond SQS's 15-minute delay).
    pub not_before: DateTime<Utc>,
    /// Why it was delayed (machine code, e.g. `throttled`).
    pub reason: String,
    /// Who asked for the operation (R-AUD-1), so the events of its retries name them; absent in
    /// messages queued before actors existed (then the worker's own actor is recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<super::Actor>,
}

/// SQS's longest per-message delay: waits beyond it are re-enqueued (DESIGN "Queues").
pub const MAX_QUEUE_DELAY: std::time::Duration = std::time::Duration::from_secs(900);

/// What a consumer does with a received [`RetryMessage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// `not_before` has passed: work on it now.
    Process,
    /// Too early: send it again with this delay (≤ [`MAX_QUEUE_DELAY`]) and acknowledge this copy.
    Requeue(std::time::Duration),
}

impl RetryMessage {
    /// Decides whether the message is due at `now`, honouring `not_before` across SQS's delay limit.
    #[must_use]
    pub fn disposition(&self, now: DateTime<Utc>) -> Disposition {
        match (self.not_before - now).to_std() {
            Ok(remaining) if !remaining.is_zero() => {
                Disposition::Requeue(remaining.min(MAX_QUEUE_DELAY))
            }
            _ => Disposition::Process,
        }
    }

    /// The delay to send it with at `now` (0 when due, at most [`MAX_QUEUE_DELAY`]).
    #[must_use]
    pub fn send_delay(&self, now: DateTime<Utc>) -> std::time::Duration {
        match self.disposition(now) {
            Disposition::Process => std::time::Duration::ZERO,
            Disposition::Requeue(delay) => delay,
        }
    }
}

/// How a finished operation ended, as remembered by the ledger for redelivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OperationOutcome {
    /// Done; `detail` is a short machine word (e.g. `created`, `adopted`).
    Succeeded {
        /// Short machine word.
        detail: Option<String>,
    },
    /// Gave up permanently with `code`.
    Failed {
        /// Machine code.
        code: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn message(not_before: DateTime<Utc>) -> RetryMessage {
        RetryMessage {
            operation_id: OperationId::new(
                OperationKind::UserBind,
                &OperationSubject::User(UserId::parse("alice").unwrap()),
                3,
            ),
            kind: OperationKind::UserBind,
            subject: OperationSubject::User(UserId::parse("alice").unwrap()),
            attempt: 1,
            not_before,
            reason: "throttled".into(),
            actor: None,
        }
    }

    #[test]
    fn operation_ids_are_deterministic_from_kind_subject_and_intent() {
        // R-BIND-2 (never a duplicate account: a retried bind maps to the same operation)
        let subject = OperationSubject::User(UserId::parse("alice").unwrap());
        let a = OperationId::new(OperationKind::UserBind, &subject, 3);
        assert_eq!(a, OperationId::new(OperationKind::UserBind, &subject, 3));
        assert_eq!(a.as_str(), "user_bind/user:alice/3");
        assert_ne!(a, OperationId::new(OperationKind::UserBind, &subject, 4));
        assert_ne!(a, OperationId::new(OperationKind::UserUnbind, &subject, 3));
    }

    #[test]
    fn a_due_message_is_processed() {
        // R-BIND-6
        let now = Utc::now();
        assert_eq!(message(now).disposition(now), Disposition::Process);
        assert_eq!(
            message(now - TimeDelta::seconds(5)).disposition(now),
            Disposition::Process
        );
        assert_eq!(message(now).send_delay(now), std::time::Duration::ZERO);
    }

    #[test]
    fn an_early_message_is_requeued_for_the_remaining_time() {
        // R-BIND-6
        let now = Utc::now();
        let m = message(now + TimeDelta::seconds(90));
        assert_eq!(
            m.disposition(now),
            Disposition::Requeue(std::time::Duration::from_secs(90))
        );
    }

    #[test]
    fn a_wait_beyond_fifteen_minutes_is_requeued_in_steps_of_at_most_fifteen_minutes() {
        // R-BIND-6 (the address wait can last 24 h)
        let now = Utc::now();
        let m = message(now + TimeDelta::hours(24));
        assert_eq!(m.disposition(now), Disposition::Requeue(MAX_QUEUE_DELAY));
        assert_eq!(m.send_delay(now), MAX_QUEUE_DELAY);
    }

    #[test]
    fn a_retry_message_serializes_without_any_secret_field() {
        // R-SAFE-2
        let json = serde_json::to_value(message(Utc::now())).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6);
        for k in keys {
            assert!(
                [
                    "operationId",
                    "kind",
                    "subject",
                    "attempt",
                    "notBefore",
                    "reason"
                ]
                .contains(&k)
            );
        }
    }
}
