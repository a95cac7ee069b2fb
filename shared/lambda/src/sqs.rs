//! The one SQS batch helper of every queue consumer (`retry-worker` on the retry queue,
//! `reconcile` on its queue of passes, `notify` on the notifications queue; all subscribed with
//! `ReportBatchItemFailures`): decode
//! each record, run it, and answer Lambda the `batchItemFailures` — never failing the whole batch
//! for one record (STYLE "Avoid"). One policy decides what becomes of a record ([`Verdict`]):
//!
//! - **done** — whatever the operation's outcome, including a retryable failure the use case
//!   already deferred through a new message, a message not yet due sent again, a pass left to the
//!   tenant's running one: acknowledged (deleted);
//! - **transient failure** on our side (a store or the queue unavailable, throttling, a deadline):
//!   reported, so SQS delivers it again after the visibility timeout;
//! - **permanent failure** — the operation failed for good and the failure is recorded where it
//!   belongs (the binding's last error, the failures list, the log) — and every record that can
//!   never be handled (no body, an undecodable body, an operation this queue does not run):
//!   reported too, so that it reaches the queue's DLQ after `maxReceiveCount` receives.
//!
//! Why permanent failures go to the DLQ rather than being deleted: R-BIND-6 says that after the
//! retry budget "the message lands in the DLQ"; R-OPS-1 alerts admins on messages in any DLQ
//! (a permanent failure is what an admin must look at: a missing permission, a tenant without
//! tokens, a producer bug) and gives every DLQ a scripted redrive; DESIGN §5 wants nothing stuck
//! outside the DLQ. A deleted message would leave only a log line. The redeliveries before the
//! DLQ are cheap: the retry worker's ledger answers a finished operation without calling Graph,
//! and a reconcile pass that cannot run fails at its first call.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::Instrument as _;

/// The code of a record without a body.
pub const EMPTY_MESSAGE: &str = "empty_message";
/// The code of a record whose body is not the queue's message type.
pub const UNDECODABLE_MESSAGE: &str = "undecodable_message";

/// What becomes of one record (see the module docs for the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done: delete it. The outcome's name (`done`, `deferred`, `requeued`, `complete`, …).
    Ack(&'static str),
    /// A transient failure: report it, SQS delivers it again. Machine code.
    Retry(String),
    /// A permanent failure (already recorded) or a record that can never be handled: report it,
    /// so it reaches the DLQ. Machine code.
    DeadLetter(String),
}

impl Verdict {
    /// The verdict for a run that ended in `error`: [`Verdict::Retry`] when the error is
    /// retryable (`is_retryable`, STYLE "Errors"), else [`Verdict::DeadLetter`].
    #[must_use]
    pub fn of_error(error: &m365_engine::Error) -> Self {
        if error.is_retryable() {
            Self::Retry(error.code().to_owned())
        } else {
            Self::DeadLetter(error.code().to_owned())
        }
    }

    /// Whether the record is acknowledged (deleted) rather than reported.
    #[must_use]
    pub fn acknowledged(&self) -> bool {
        matches!(self, Self::Ack(_))
    }

    /// The outcome name or the machine code.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Ack(name) => name,
            Self::Retry(code) | Self::DeadLetter(code) => code,
        }
    }
}

/// Decodes the body of `record` with `decode`; a record without a body or with a body `decode`
/// refuses gets its verdict ([`EMPTY_MESSAGE`], [`UNDECODABLE_MESSAGE`]: dead-lettered). The
/// body is never logged (it may name a user).
///
/// # Errors
/// The [`Verdict::DeadLetter`] of a record that cannot be decoded.
pub fn decode<M, E>(
    record: &SqsMessage,
    decode: impl FnOnce(&str) -> Result<M, E>,
) -> Result<M, Verdict> {
    let Some(body) = record.body.as_deref() else {
        return Err(Verdict::DeadLetter(EMPTY_MESSAGE.to_owned()));
    };
    decode(body).map_err(|_| Verdict::DeadLetter(UNDECODABLE_MESSAGE.to_owned()))
}

/// What one batch came to: the answer to Lambda and each record's verdict, in record order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The batch-item failures to report (the records not acknowledged).
    pub response: SqsBatchResponse,
    /// Each record's verdict, in the order of the batch.
    pub verdicts: Vec<Verdict>,
}

/// Handles the records of `event` one after the other: decodes each body with `decode` (see
/// [`decode`]), runs `handle` on the decoded message, and reports every record whose verdict is
/// not [`Verdict::Ack`]. Each record runs in a span carrying its `sqs.message_id`; a reported
/// record is logged with its code, and the batch with its counts.
pub async fn handle_batch<'e, M, E, D, H, Fut>(
    event: &'e SqsEvent,
    decode: D,
    mut handle: H,
) -> Batch
where
    D: Fn(&str) -> Result<M, E>,
    H: FnMut(&'e SqsMessage, M) -> Fut,
    Fut: Future<Output = Verdict>,
{
    let mut batch = Batch::default();
    for record in &event.records {
        let id = record.message_id.as_deref().unwrap_or_default();
        let span = tracing::info_span!("sqs_record", sqs.message_id = id);
        let verdict = match self::decode(record, &decode) {
            Ok(message) => handle(record, message).instrument(span.clone()).await,
            Err(verdict) => verdict,
        };
        span.in_scope(|| match &verdict {
            Verdict::Ack(_) => {}
            Verdict::Retry(code) => tracing::warn!(
                error.code = %code,
                error.retryable = true,
                "message reported for redelivery"
            ),
            Verdict::DeadLetter(code) => tracing::warn!(
                error.code = %code,
                error.retryable = false,
                "message reported: it goes to the DLQ after its last receive"
            ),
        });
        if !verdict.acknowledged() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.to_owned();
            batch.response.batch_item_failures.push(failure);
        }
        batch.verdicts.push(verdict);
    }
    tracing::info!(
        batch.size = event.records.len(),
        batch.failures = batch.response.batch_item_failures.len(),
        "sqs batch handled"
    );
    batch
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::RefCell;

    use m365_engine::Error;
    use m365_engine::error::Entity;

    use super::*;

    fn record(id: &str, body: Option<&str>) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        record.body = body.map(str::to_owned);
        record
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = records;
        event
    }

    fn failed_ids(batch: &Batch) -> Vec<&str> {
        batch
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    /// Bodies are numbers; the handler answers by number: 0 done, 1 transient, 2 permanent.
    fn decode_number(body: &str) -> Result<u32, std::num::ParseIntError> {
        body.parse()
    }

    #[tokio::test]
    async fn only_the_records_not_done_are_reported_and_one_failure_fails_no_other() {
        // STYLE "Avoid: failing a whole SQS batch for one record", R-BIND-6
        let e = event(vec![
            record("a", Some("0")),
            record("b", Some("1")),
            record("c", Some("0")),
            record("d", Some("2")),
        ]);
        let seen = RefCell::new(Vec::new());
        let batch = handle_batch(&e, decode_number, |r, n| {
            seen.borrow_mut().push(r.message_id.clone().unwrap());
            async move {
                match n {
                    0 => Verdict::Ack("done"),
                    1 => Verdict::Retry("throttled".to_owned()),
                    _ => Verdict::DeadLetter("forbidden".to_owned()),
                }
            }
        })
        .await;
        assert_eq!(failed_ids(&batch), ["b", "d"]);
        assert_eq!(
            seen.into_inner(),
            ["a", "b", "c", "d"],
            "every record ran, in order"
        );
        assert_eq!(
            batch.verdicts,
            [
                Verdict::Ack("done"),
                Verdict::Retry("throttled".to_owned()),
                Verdict::Ack("done"),
                Verdict::DeadLetter("forbidden".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn a_record_without_a_body_or_with_an_undecodable_one_is_reported_and_never_run() {
        // R-BIND-6 (never silently dropped: it reaches the DLQ)
        let e = event(vec![
            record("empty", None),
            record("garbage", Some("{not a number")),
            record("fine", Some("0")),
        ]);
        let mut ran = 0;
        let batch = handle_batch(&e, decode_number, |_, _| {
            ran += 1;
            async { Verdict::Ack("done") }
        })
        .await;
        assert_eq!(ran, 1);
        assert_eq!(failed_ids(&batch), ["empty", "garbage"]);
        assert_eq!(
            batch.verdicts[..2],
            [
                Verdict::DeadLetter(EMPTY_MESSAGE.to_owned()),
                Verdict::DeadLetter(UNDECODABLE_MESSAGE.to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn an_empty_batch_reports_nothing() {
        let batch = handle_batch(&event(vec![]), decode_number, |_, _| async {
            Verdict::Ack("done")
        })
        .await;
        assert!(batch.response.batch_item_failures.is_empty());
        assert!(batch.verdicts.is_empty());
    }

    #[test]
    fn retryable_errors_are_redelivered_and_permanent_ones_are_dead_lettered() {
        // STYLE "Errors" (is_retryable decides), R-BIND-6, R-OPS-1
        let throttled = Error::Throttled {
            retry_after: None,
            graph_request_id: None,
        };
        assert_eq!(
            Verdict::of_error(&throttled),
            Verdict::Retry("throttled".to_owned())
        );
        let missing = Error::not_found(Entity::TenantTokens, "t1");
        let verdict = Verdict::of_error(&missing);
        assert_eq!(verdict, Verdict::DeadLetter("not_found".to_owned()));
        assert!(!verdict.acknowledged());
        assert!(!Verdict::of_error(&throttled).acknowledged());
        assert!(Verdict::Ack("done").acknowledged());
        assert_eq!(Verdict::Ack("done").code(), "done");
    }
}
