//! The deadline-bounded batch of the retry worker (R-OPS-2, see the crate docs): messages are
//! taken only while the [`Budget`]'s floor is left; the rest are put back untouched, a message
//! received [`REQUEUE_UNTOUCHED_AT_RECEIVE`] times as a fresh copy.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use m365_aws::sqs::decode_message;
use m365_engine::model::RetryMessage;
use m365_engine::ports::{Clock, Ports, RetryQueue};
use m365_lambda::deadline::time_left;
use m365_lambda::sqs::{self, Verdict};
use tokio::time::Instant;

use crate::run;

/// An untouched message received this many times is sent again as a fresh copy instead of being
/// left for redelivery (SQS's receive count would otherwise reach the retry queue's
/// `maxReceiveCount`, 5 in template.yaml, and dead-letter it unprocessed). Keep it below that.
pub const REQUEUE_UNTOUCHED_AT_RECEIVE: u32 = 3;

/// The time a batch may spend: the next message is taken only while at least `floor` is left
/// before `deadline` (none: every message is handled).
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    /// The invocation's deadline (already less the margin).
    pub deadline: Option<Instant>,
    /// The least time left to start a message.
    pub floor: Duration,
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
