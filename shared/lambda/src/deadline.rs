//! The Lambda deadline, passed down (R-OPS-2, R-BIND-12): every invocation knows when Lambda will
//! stop it (`Lambda-Runtime-Deadline-Ms`, in `lambda_runtime::Context::deadline`; devstack's local
//! Runtime API sets it the same way, from the template's `Timeout`). Each handler turns it into
//! the instant its work must stop — that deadline minus a [`DeadlinePolicy::margin`] — and bounds
//! its Graph calls by it (`GraphDirectory::with_deadline`, `GraphIdentity::with_deadline`, and
//! the rate budget's wait, which already takes the call's deadline). Work cut off there fails with
//! the retryable `deadline` error, which the use cases record like any other retryable failure:
//! the binding stays `pending` with the reason, the retry goes on the queue, the ledger claim is
//! released. The margin is what leaves time for those last DynamoDB and SQS writes (and, on an
//! API call, for the answer): Lambda never kills an operation halfway.
//!
//! Behind the HTTP API the deadline is also capped at API Gateway's 30 s integration timeout
//! (counted from when the handler starts; the margin covers a cold start), so a synchronous call
//! that runs out of time answers `202` with its retry queued, never a gateway `504`.
//!
//! Outside Lambda (a handler called directly, as the unit tests do) the context has no deadline:
//! then nothing is bounded beyond the Graph client's own per-call budget.
//!
//! The policy a function runs with is its configuration's (`Config::deadlines`): the defaults
//! below unless `M365_DEADLINE_MARGIN_SECONDS` or `M365_DEADLINE_MESSAGE_FLOOR_SECONDS` is set.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::{Request, RequestExt};
use tokio::time::Instant;

/// Default [`DeadlinePolicy::margin`]: time kept back from the Lambda deadline for the final
/// writes of a cut-off operation (failure record, binding, retry message, ledger release — four
/// DynamoDB/SQS calls of tens of milliseconds each, with the SDK's own retries) and the answer.
/// On a 30 s function this leaves 25 s of Graph work.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(5);

/// Default [`DeadlinePolicy::message_floor`]: the retry worker takes the next message of a batch
/// only with at least this much time left before its work deadline (a retried operation is two to
/// four Graph calls, normally well under a second each).
pub const DEFAULT_MESSAGE_FLOOR: Duration = Duration::from_secs(5);

/// API Gateway HTTP API's longest integration timeout: a synchronous call never works longer.
pub const API_GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a function spends its time before the Lambda deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlinePolicy {
    /// Kept back from the Lambda deadline for the final writes and the answer.
    pub margin: Duration,
    /// Least time left for the retry worker to take another message of its batch.
    pub message_floor: Duration,
}

impl Default for DeadlinePolicy {
    fn default() -> Self {
        Self {
            margin: DEFAULT_MARGIN,
            message_floor: DEFAULT_MESSAGE_FLOOR,
        }
    }
}

impl DeadlinePolicy {
    /// The instant the work of an invocation with the Lambda `context` must stop; `None` when
    /// the context carries no deadline (0: not invoked by a Lambda runtime).
    #[must_use]
    pub fn of_context(&self, context: &lambda_runtime::Context) -> Option<Instant> {
        work_deadline(context.deadline, self.margin)
    }

    /// The instant the work of an API request must stop: its Lambda deadline, capped at API
    /// Gateway's timeout from now, minus the margin; `None` when the request carries no Lambda
    /// context (a handler called directly).
    #[must_use]
    pub fn of_request(&self, request: &Request) -> Option<Instant> {
        self.of_api_context(request.lambda_context_ref()?)
    }

    /// [`Self::of_request`] for an API invocation known by its Lambda `context` (a function that
    /// takes the raw API Gateway event, such as `reconcile`).
    #[must_use]
    pub fn of_api_context(&self, context: &lambda_runtime::Context) -> Option<Instant> {
        let lambda = self.of_context(context)?;
        let gateway = (Instant::now() + API_GATEWAY_TIMEOUT)
            .checked_sub(self.margin)
            .unwrap_or_else(Instant::now);
        Some(lambda.min(gateway))
    }
}

/// `deadline_ms` (milliseconds since the Unix epoch, as Lambda gives it) minus `margin`, on the
/// monotonic clock; now when that is already past; `None` for 0 (no deadline known).
#[must_use]
pub fn work_deadline(deadline_ms: u64, margin: Duration) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now = Instant::now();
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_millis(deadline_ms).saturating_sub(wall);
    Some(now + left.saturating_sub(margin))
}

/// The time left before `deadline` (zero once it passed).
#[must_use]
pub fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn epoch_ms_in(d: Duration) -> u64 {
        let at = SystemTime::now() + d;
        u64::try_from(at.duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
    }

    #[test]
    fn the_work_deadline_is_the_lambda_deadline_minus_the_margin() {
        // R-OPS-2
        let deadline =
            work_deadline(epoch_ms_in(Duration::from_secs(30)), Duration::from_secs(5)).unwrap();
        let left = time_left(deadline);
        assert!(
            left > Duration::from_millis(24_500) && left <= Duration::from_secs(25),
            "{left:?}"
        );
    }

    #[test]
    fn a_lambda_deadline_closer_than_the_margin_leaves_no_time_and_none_is_unbounded() {
        // R-OPS-2
        let deadline =
            work_deadline(epoch_ms_in(Duration::from_secs(2)), Duration::from_secs(5)).unwrap();
        assert_eq!(time_left(deadline), Duration::ZERO);
        let past = work_deadline(1, Duration::from_secs(5)).unwrap();
        assert_eq!(time_left(past), Duration::ZERO);
        assert!(work_deadline(0, Duration::from_secs(5)).is_none());
        let context = lambda_runtime::Context::default();
        assert!(DeadlinePolicy::default().of_context(&context).is_none());
    }

    #[test]
    fn an_api_request_never_works_past_api_gateways_timeout() {
        // R-OPS-2: a 300 s function (reconcile) behind the HTTP API still answers within 30 s.
        let mut context = lambda_runtime::Context::default();
        context.deadline = epoch_ms_in(Duration::from_secs(300));
        let request = Request::default().with_lambda_context(context);
        let policy = DeadlinePolicy::default();
        let left = time_left(policy.of_request(&request).unwrap());
        assert!(
            left <= API_GATEWAY_TIMEOUT - policy.margin
                && left > API_GATEWAY_TIMEOUT - policy.margin - Duration::from_secs(1),
            "{left:?}"
        );
        assert!(policy.of_request(&Request::default()).is_none());
    }
}
