//! SQS delays a message by at most 15 minutes (`DelaySeconds` ≤ 900), but an operation may
//! have to wait much longer (an address held by a deleted account: 24 h or more, R-BIND-6).
//! A `RetryMessage` therefore carries its `not_before`; the sender delays it as far as SQS
//! allows, and the engine's retry dispatcher sends a message received too early again with the
//! delay that is left (`RetryMessage::disposition`). This module turns a delay into SQS's whole
//! `DelaySeconds`.

use std::time::Duration;

use m365_engine::model::MAX_QUEUE_DELAY;

/// The longest delay SQS accepts, in seconds.
pub const MAX_DELAY_SECONDS: i32 = 900;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_wait_is_delayed_by_sqs_rounded_up_to_whole_seconds() {
        // R-BIND-6
        assert_eq!(delay_seconds(Duration::from_millis(61_200)), Some(62));
        assert_eq!(delay_seconds(Duration::from_millis(1)), Some(1));
        assert_eq!(delay_seconds(Duration::ZERO), Some(0));
    }

    #[test]
    fn a_delay_beyond_fifteen_minutes_is_not_an_sqs_delay() {
        // R-BIND-6
        assert_eq!(delay_seconds(Duration::from_secs(900)), Some(900));
        assert_eq!(delay_seconds(Duration::from_millis(900_001)), None);
    }
}
