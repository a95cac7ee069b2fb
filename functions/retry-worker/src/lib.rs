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

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use m365_aws::sqs::decode_message;
use m365_engine::model::RetryMessage;
use m365_engine::ports::{Clock, Ports, RetryQueue};
use m365_engine::usecase::retry::{RetryDispatcher, RetryOutcome};
use m365_lambda::deadline::time_left;
use m365_lambda::provision::Deployed;
use m365_lambda::sqs::{self, Verdict};
use tokio::time::Instant;

/// An untouched message received this many times is sent again as a fresh copy instead of being
/// left for redelivery (SQS's receive count would otherwise reach the retry queue's
/// `maxReceiveCount`, 5 in template.yaml, and dead-letter it unprocessed). Keep it below that.
pub const REQUEUE_UNTOUCHED_AT_RECEIVE: u32 = 3;

/// What happened to one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageResult {
    /// Acknowledged with this outcome name (`requeued`, `parked`, `done`, `deferred`, …).
    Acked(&'static str),
    /// Reported as a batch-item failure, with a machine code.
    Failed(String),
}

/// The time a batch may spend: the next message is taken only while at least `floor` is left
/// before `deadline` (none: every message is handled).
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    /// The invocation's deadline (already less the margin).
    pub deadline: Option<Instant>,
    /// The least time left to start a message.
    pub floor: Duration,
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

/// What one batch did: the answer to Lambda, and how the batch was spent (also logged).
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    /// The batch-item failures to report.
    pub response: SqsBatchResponse,
    /// Messages handled (whatever their outcome).
    pub handled: usize,
    /// Messages the deadline left untouched.
    pub untouched: usize,
    /// Of those, the ones sent again as fresh copies (acknowledged); the others are batch-item
    /// failures.
    pub requeued: usize,
}

/// What a record the deadline left untouched answers when it was sent again as a fresh copy.
const PUT_BACK: &str = "put_back";
/// What a record the deadline left untouched answers when it is left to SQS's redelivery.
const UNTOUCHED: &str = "untouched";

/// Handles the messages of `event` in order while at least the budget's floor is left before
/// its deadline (`ports` should be bounded by the same deadline); the rest are put back
/// untouched (see the module docs). Decoding, the batch-item failures and the policy for
/// permanent, transient and undecodable messages are the one SQS batch helper's
/// ([`m365_lambda::sqs`]).
pub async fn handle_batch_until<P: Ports>(
    ports: &P,
    event: &SqsEvent,
    budget: Budget,
) -> BatchReport {
    let batch = sqs::handle_batch(event, decode_message, |record, message| async move {
        if budget.deadline.is_some_and(|d| time_left(d) < budget.floor) {
            return put_back(ports, record, &message).await;
        }
        run(ports, &message).await
    })
    .await;
    let untouched = batch
        .verdicts
        .iter()
        .filter(|v| matches!(v.code(), PUT_BACK | UNTOUCHED))
        .count();
    let requeued = batch
        .verdicts
        .iter()
        .filter(|v| **v == Verdict::Ack(PUT_BACK))
        .count();
    let handled = batch.verdicts.len() - untouched;
    if untouched > 0 {
        tracing::warn!(
            batch.handled = handled,
            batch.untouched = untouched,
            batch.requeued = requeued,
            "deadline near: the rest of the batch is put back untouched"
        );
    }
    BatchReport {
        response: batch.response,
        handled,
        untouched,
        requeued,
    }
}

/// Puts back a message the worker had no time for: acknowledged when a fresh copy was sent,
/// else left to SQS's redelivery (a batch-item failure). The copy is the same message (same
/// attempt, same `not_before`): nothing of its retry budget is spent.
async fn put_back<P: Ports>(ports: &P, record: &SqsMessage, message: &RetryMessage) -> Verdict {
    let receives = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1);
    if receives < REQUEUE_UNTOUCHED_AT_RECEIVE {
        return Verdict::Retry(UNTOUCHED.to_owned());
    }
    let delay = message.send_delay(ports.clock().now());
    match ports.queue().send(message, delay).await {
        Ok(()) => {
            tracing::info!(op.id = %message.operation_id, sqs.receive_count = receives, "untouched message sent again as a fresh copy");
            Verdict::Ack(PUT_BACK)
        }
        Err(e) => {
            tracing::warn!(op.id = %message.operation_id, error.code = e.code(), "untouched message left for redelivery");
            Verdict::Retry(UNTOUCHED.to_owned())
        }
    }
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
async fn run<P: Ports>(ports: &P, message: &RetryMessage) -> Verdict {
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
