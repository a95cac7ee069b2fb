//! The `retry-worker` function (DESIGN §2 "Queues", R-BIND-6): consumes the retry queue through
//! Lambda's SQS event source with `ReportBatchItemFailures`. For each message of a batch:
//!
//! - an undecodable body is reported as a batch-item failure (it reaches the DLQ after
//!   `maxReceiveCount` receives; it is never silently dropped);
//! - a message not yet due is sent again with the delay left (SQS delays at most 15 minutes) and
//!   acknowledged; a tenant in `reauthorization_required` parks it the same way;
//! - otherwise the operation is re-run by kind (`RetryDispatcher`): user operations, and group
//!   membership mirroring (`group_members`, R-GRP-1, e.g. after a new group's replication lag);
//!   a redelivered message of a finished operation changes nothing (the ledger answers "already
//!   done"; a group already mirrored answers "superseded"); a user a retried bind bound joins
//!   its bound groups at once (the bind use case's follow-up, R-GRP-1);
//! - an operation that failed for good (`DeadLetter`: its failure is recorded on the binding and
//!   in the failures list) or a store/queue failure is reported as a batch-item failure, so SQS
//!   redelivers it and finally moves it to the DLQ with its reason — the one policy of every
//!   queue consumer, applied by the shared batch helper [`m365_lambda::sqs`].
//!
//! Deadline (R-OPS-2, R-BIND-12): [`handle_invocation`] bounds the deployed ports by the
//! invocation's Lambda deadline minus
//! [`DeadlinePolicy::margin`](m365_lambda::deadline::DeadlinePolicy) and runs the generic
//! [`handle`] with that [`Budget`]: the batch's Graph calls stop there, so an operation cut
//! off there is deferred like any retryable failure (binding `pending` with reason `deadline`, a
//! new retry message, the ledger claim released) instead of being killed halfway. The worker
//! takes the next message only while at least
//! [`DeadlinePolicy::message_floor`](m365_lambda::deadline::DeadlinePolicy) is left; the messages
//! it did not touch are reported as batch-item failures, unchanged, so their attempt counter is
//! not spent. SQS counts every receive, though, and the queue dead-letters at `maxReceiveCount` 5:
//! an untouched message already received [`REQUEUE_UNTOUCHED_AT_RECEIVE`] times is therefore sent
//! again as a fresh copy (same attempt) and acknowledged, so waiting its turn never dead-letters
//! it.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use m365_aws::sqs::decode_message;
use m365_engine::model::RetryMessage;
use m365_engine::ports::{Clock, Ports};
use m365_engine::usecase::retry::{RetryDispatcher, RetryOutcome};
use m365_lambda::provision::Deployed;
use m365_lambda::sqs::{self, Verdict};

mod batch;

pub use batch::{BatchReport, Budget, REQUEUE_UNTOUCHED_AT_RECEIVE, handle_batch_until};

/// What happened to one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageResult {
    /// Acknowledged with this outcome name (`requeued`, `parked`, `done`, `deferred`, …).
    Acked(&'static str),
    /// Reported as a batch-item failure, with a machine code.
    Failed(String),
}

/// The Lambda entry: bounds `deployed` by the invocation's deadline and handles the batch within
/// it ([`DeadlinePolicy`](m365_lambda::deadline::DeadlinePolicy): margin and message floor).
///
/// # Errors
/// Never: every per-message problem is a batch-item failure.
pub async fn handle_invocation<C: Clock + Clone>(
    deployed: &Deployed<C>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    let deadline = deployed.deadlines.of_context(&event.context);
    let budget = Budget {
        deadline,
        floor: deployed.deadlines.message_floor,
    };
    Ok(handle(&deployed.until(deadline), &event.payload, budget).await)
}

/// Handles one SQS batch on `ports` within `budget`; answers the ids of the messages to
/// redeliver (never fails: every per-message problem is a batch-item failure).
pub async fn handle<P: Ports>(ports: &P, event: &SqsEvent, budget: Budget) -> SqsBatchResponse {
    handle_batch_until(ports, event, budget).await.response
}

/// [`handle`] without a deadline.
pub async fn handle_batch<P: Ports>(ports: &P, event: &SqsEvent) -> SqsBatchResponse {
    handle(ports, event, Budget::default()).await
}

/// Handles one message of a batch.
pub async fn handle_message<P: Ports>(ports: &P, record: &SqsMessage) -> MessageResult {
    let verdict = match sqs::decode(record, decode_message) {
        Ok(message) => run(ports, &message).await,
        Err(verdict) => verdict,
    };
    match verdict {
        Verdict::Ack(name) => MessageResult::Acked(name),
        Verdict::Retry(code) | Verdict::DeadLetter(code) => MessageResult::Failed(code),
    }
}

/// Re-drives one decoded message: an operation that failed for good is dead-lettered (its
/// failure is on the binding already), a store or queue failure is retried or dead-lettered by
/// [`Verdict::of_error`]. A user a retried bind bound joins its groups in the bind itself
/// (R-GRP-1).
pub(crate) async fn run<P: Ports>(ports: &P, message: &RetryMessage) -> Verdict {
    // Boxed: the dispatcher's future (every use case) is deep and large.
    match Box::pin(RetryDispatcher::new(ports).dispatch(message)).await {
        Ok(RetryOutcome::DeadLetter { code }) => Verdict::DeadLetter(code),
        Ok(RetryOutcome::Requeued { .. }) => Verdict::Ack("requeued"),
        Ok(RetryOutcome::Parked { .. }) => Verdict::Ack("parked"),
        Ok(RetryOutcome::Ran(outcome)) => Verdict::Ack(outcome.as_str()),
        Ok(RetryOutcome::GroupRan(outcome)) => Verdict::Ack(outcome.as_str()),
        Err(e) => Verdict::of_error(&e),
    }
}
