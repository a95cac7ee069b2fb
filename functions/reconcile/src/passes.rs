//! The queue of passes: each SQS record is one pass of a tenant's reconcile, run under the
//! tenant's lease through the one batch helper ([`m365_lambda::sqs`]). A permanent failure (e.g.
//! the tenant's tokens are gone) is logged by the use case and dead-lettered like every
//! consumer's: the DLQ alarm tells an admin (R-OPS-1), where an acknowledged message would leave a
//! log line only.
//!
//! A pass of a run requested through the API (its operation id names the run,
//! `m365_engine::usecase::reconcile_runs::run_of`) goes to `RunPasses::step` instead, which
//! records it on the run: a run that fails for good is recorded `failed` and acknowledged (the
//! run's record is where its requester looks), a retryable failure is reported for redelivery.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use m365_aws::sqs::decode_message;
use m365_engine::model::{OperationSubject, RetryMessage, RunId};
use m365_engine::ports::Ports;
use m365_engine::usecase::reconcile_queue::{Leased, PassEnd, Step};
use m365_engine::usecase::reconcile_runs::{RunPasses, RunStep, run_of};
use m365_lambda::sqs::{self, Verdict};

use crate::Wiring;

/// What became of one queued pass.
#[derive(Debug, Clone, PartialEq)]
pub enum PassResult {
    /// Acknowledged: the pass ran (`complete`, `continued`, `stopped`), another pass held the
    /// tenant (`busy`), it was not due (`requeued`) or there was nothing to do (the skip code).
    Acked(&'static str),
    /// Reported: left for redelivery (a retryable failure) or, when it can never succeed (a
    /// permanent failure, a message that is not a pass), for the DLQ after `maxReceiveCount`
    /// receives. Machine code.
    Failed(String),
}

/// Handles an SQS batch of reconcile passes; answers the ids of the messages to report.
pub async fn sqs_batch<P: Ports>(
    deps: &Wiring<P>,
    holder: &str,
    event: &SqsEvent,
) -> SqsBatchResponse {
    sqs::handle_batch(event, decode_message, |_, message| async move {
        run(deps, holder, &message).await
    })
    .await
    .response
}

/// Handles one queued pass.
pub async fn sqs_message<P: Ports>(
    deps: &Wiring<P>,
    holder: &str,
    record: &SqsMessage,
) -> PassResult {
    let verdict = match sqs::decode(record, decode_message) {
        Ok(message) => run(deps, holder, &message).await,
        Err(verdict) => verdict,
    };
    match verdict {
        Verdict::Ack(name) => PassResult::Acked(name),
        Verdict::Retry(code) | Verdict::DeadLetter(code) => PassResult::Failed(code),
    }
}

/// Runs one decoded pass.
async fn run<P: Ports>(deps: &Wiring<P>, holder: &str, message: &RetryMessage) -> Verdict {
    let OperationSubject::Tenant(tenant) = &message.subject else {
        return Verdict::DeadLetter("unsupported_operation".to_owned());
    };
    if let Some(run) = run_of(message) {
        return run_pass(deps, holder, message, &run).await;
    }
    let pass = deps.pass();
    let result = deps
        .queue(holder)
        .step(message, || pass.pass(tenant, message.attempt))
        .await;
    let verdict = match result {
        Ok(Step::Requeued) => Verdict::Ack("requeued"),
        Ok(Step::Skipped(code)) => Verdict::Ack(code),
        Ok(Step::Rejected(code)) => Verdict::DeadLetter(code.to_owned()),
        Ok(Step::Leased(Leased::Busy)) => Verdict::Ack("busy"),
        Ok(Step::Leased(Leased::Ran { end, .. })) => Verdict::Ack(match end {
            PassEnd::Stopped => "stopped",
            PassEnd::Incomplete => "continued",
            PassEnd::Complete => "complete",
        }),
        Err(e) => Verdict::of_error(&e),
    };
    if verdict.acknowledged() {
        tracing::info!(tenant.id = %tenant, pass = message.attempt, outcome = verdict.code(), "reconcile pass handled");
    } else {
        tracing::warn!(tenant.id = %tenant, pass = message.attempt, error.code = verdict.code(), "reconcile pass reported");
    }
    verdict
}

/// Runs one pass of a requested run.
async fn run_pass<P: Ports>(
    deps: &Wiring<P>,
    holder: &str,
    message: &RetryMessage,
    run: &RunId,
) -> Verdict {
    let runs = RunPasses::new(
        &deps.ports,
        &deps.passes,
        holder,
        crate::PASS_LEASE,
        &deps.settings.reconcile,
    )
    .waiting(deps.settings.run_wait);
    let verdict = match runs.step(message, run).await {
        Ok(RunStep::Ran(status)) => Verdict::Ack(status.as_str()),
        Ok(RunStep::Waiting) => Verdict::Ack("waiting"),
        Ok(RunStep::Failed(_)) => Verdict::Ack("run_failed"),
        Ok(RunStep::Skipped(code)) => Verdict::Ack(code),
        Err(e) => Verdict::of_error(&e),
    };
    if verdict.acknowledged() {
        tracing::info!(run.id = %run, pass = message.attempt, outcome = verdict.code(), "reconcile run pass handled");
    } else {
        tracing::warn!(run.id = %run, pass = message.attempt, error.code = verdict.code(), "reconcile run pass reported");
    }
    verdict
}
