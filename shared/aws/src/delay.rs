//! SQS delays a message by at most 15 minutes (`DelaySeconds` ≤ 900), but an operation may
//! have to wait much longer (an address held by a deleted account: 24 h or more, R-BIND-6).
//! A [`RetryMessage`] therefore carries its `not_before`; the sender delays it as far as SQS
//! allows and the consumer decides with [`on_receive`] whether to run it now or to send it again
//! with the delay that is left (the engine's [`RetryMessage::disposition`], in whole seconds).

use std::time::Duration;

use chrono::{DateTime, Utc};
use m365_engine::model::{Disposition, MAX_QUEUE_DELAY, RetryMessage};

/// The longest delay SQS accepts, in seconds.
pub const MAX_DELAY_SECONDS: i32 = 900;

/// What a consumer does with a message it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// `not_before` has passed: run the operation now.
    Now,
    /// Too early: send the message again with this `DelaySeconds` (1..=900) and acknowledge
    /// the received copy.
    Requeue {
        /// Delay for the re-sent message, in seconds.
        delay_seconds: i32,
    },
}

/// `DelaySeconds` for a delay: rounded up to whole seconds (never early), or `None` when it
/// exceeds what SQS accepts.
#[must_use]
pub fn delay_seconds(delay: Duration) -> Option<i32> {
    if delay > MAX_QUEUE_DELAY {
        return None;
    }
    let whole = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(whole)
        .ok()
        .filter(|s| *s <= MAX_DELAY_SECONDS)
}

/// Whether a received message runs now or goes back to the queue with the delay still left
/// (at most 900 s per hop; a longer wait takes several hops).
#[must_use]
pub fn on_receive(message: &RetryMessage, now: DateTime<Utc>) -> Delivery {
    match message.disposition(now) {
        Disposition::Process => Delivery::Now,
        Disposition::Requeue(left) => Delivery::Requeue {
            delay_seconds: delay_seconds(left).unwrap_or(MAX_DELAY_SECONDS).max(1),
        },
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use m365_engine::model::{OperationId, OperationKind, OperationSubject, UserId};

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_268_800, 0).unwrap_or_default()
    }

    fn message(not_before: DateTime<Utc>) -> RetryMessage {
        let subject = OperationSubject::User(UserId::parse("alice").expect("valid id"));
        RetryMessage {
            operation_id: OperationId::new(OperationKind::UserBind, &subject, 1),
            kind: OperationKind::UserBind,
            subject,
            attempt: 1,
            not_before,
            reason: "address_held".to_owned(),
        }
    }

    #[test]
    fn a_message_whose_not_before_has_passed_runs_now() {
        // R-BIND-6
        assert_eq!(
            on_receive(&message(now() - TimeDelta::seconds(5)), now()),
            Delivery::Now
        );
        assert_eq!(on_receive(&message(now()), now()), Delivery::Now);
    }

    #[test]
    fn a_short_wait_is_delayed_by_sqs_rounded_up_to_whole_seconds() {
        // R-BIND-6
        let soon = message(now() + TimeDelta::milliseconds(61_200));
        assert_eq!(
            on_receive(&soon, now()),
            Delivery::Requeue { delay_seconds: 62 }
        );
        let in_a_moment = message(now() + TimeDelta::milliseconds(1));
        assert_eq!(
            on_receive(&in_a_moment, now()),
            Delivery::Requeue { delay_seconds: 1 }
        );
        assert_eq!(delay_seconds(Duration::from_millis(61_200)), Some(62));
        assert_eq!(delay_seconds(Duration::ZERO), Some(0));
    }

    #[test]
    fn a_delay_beyond_fifteen_minutes_is_not_an_sqs_delay() {
        // R-BIND-6
        assert_eq!(delay_seconds(Duration::from_secs(900)), Some(900));
        assert_eq!(delay_seconds(Duration::from_millis(900_001)), None);
    }

    #[test]
    fn a_wait_longer_than_fifteen_minutes_is_requeued_with_the_longest_sqs_delay() {
        // R-BIND-6: an address held by a deleted account can take 24 h to be released.
        let tomorrow = message(now() + TimeDelta::hours(24));
        assert_eq!(
            on_receive(&tomorrow, now()),
            Delivery::Requeue { delay_seconds: 900 }
        );
    }

    #[test]
    fn a_long_wait_converges_after_repeated_requeues() {
        // R-BIND-6: the consumer's re-sends add up to exactly the wait.
        let waiting = message(now() + TimeDelta::seconds(2 * 900 + 17));
        let mut clock = now();
        let mut hops = 0;
        while let Delivery::Requeue { delay_seconds } = on_receive(&waiting, clock) {
            clock += TimeDelta::seconds(i64::from(delay_seconds));
            hops += 1;
            assert!(hops < 10, "does not converge");
        }
        assert_eq!(hops, 3);
        assert_eq!(clock, waiting.not_before);
    }
}
