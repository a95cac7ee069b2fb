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
//!   done"; a group already mirrored answers "superseded");
//! - an operation that failed for good (`DeadLetter`) or a store/queue failure is reported as a
//!   batch-item failure, so SQS redelivers it and finally moves it to the DLQ with its reason.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use m365_aws::sqs::decode_message;
use m365_engine::model::OperationKind;
use m365_engine::ports::Clock;
use m365_engine::usecase::retry::{RetryDispatcher, RetryOutcome};
use m365_lambda::provision::Provisioning;

/// What happened to one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageResult {
    /// Acknowledged with this outcome name (`requeued`, `parked`, `done`, `deferred`, …).
    Acked(&'static str),
    /// Reported as a batch-item failure, with a machine code.
    Failed(String),
}

/// Handles one SQS batch; answers the ids of the messages to redeliver.
///
/// # Errors
/// Never: every per-message problem is a batch-item failure.
pub async fn handle<C: Clock>(
    deps: &Provisioning<C>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(handle_batch(deps, &event.payload).await)
}

/// [`handle`] without the Lambda envelope.
pub async fn handle_batch<C: Clock>(deps: &Provisioning<C>, event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in &event.records {
        if let MessageResult::Failed(_) = handle_message(deps, record).await {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    tracing::info!(
        batch.size = event.records.len(),
        batch.failures = response.batch_item_failures.len(),
        "retry batch handled"
    );
    response
}

/// Handles one message of a batch.
#[tracing::instrument(skip_all, fields(sqs.message_id = record.message_id.as_deref().unwrap_or("")))]
pub async fn handle_message<C: Clock>(
    deps: &Provisioning<C>,
    record: &SqsMessage,
) -> MessageResult {
    let Some(body) = record.body.as_deref() else {
        tracing::warn!(error.code = "empty_message", "message without body");
        return MessageResult::Failed("empty_message".to_owned());
    };
    let message = match decode_message(body) {
        Ok(m) => m,
        Err(_) => {
            tracing::warn!(
                error.code = "undecodable_message",
                "message is not a retry message"
            );
            return MessageResult::Failed("undecodable_message".to_owned());
        }
    };
    let app = &deps.app;
    let dispatcher = RetryDispatcher {
        fx: deps.effects(),
        users: &app.users,
        tenants: &app.tenants,
        directory: &deps.directory,
        sealer: &app.sealer,
        notifier: &app.notifier,
        password_policy: &deps.password_policy,
        groups: &app.groups,
    };
    // Boxed: the dispatcher's future (every use case) is deep and large.
    match Box::pin(dispatcher.dispatch(&message)).await {
        Ok(RetryOutcome::DeadLetter { code }) => MessageResult::Failed(code),
        Ok(RetryOutcome::Requeued { .. }) => MessageResult::Acked("requeued"),
        Ok(RetryOutcome::Parked { .. }) => MessageResult::Acked("parked"),
        Ok(RetryOutcome::Ran(outcome)) => {
            if message.kind == OperationKind::UserBind {
                // A user bound by a retry joins its bound groups now (R-GRP-1).
                deps.follow_outcome(&outcome).await;
            }
            MessageResult::Acked(outcome.as_str())
        }
        Ok(RetryOutcome::GroupRan(outcome)) => MessageResult::Acked(outcome.as_str()),
        Err(e) => MessageResult::Failed(e.code().to_owned()),
    }
}
