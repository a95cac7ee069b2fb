//! The `reconcile` function (DESIGN §4 "reconcile", R-REC-1..5, R-PWD-3, R-PWD-4, R-GRP-1): one
//! *pass* of a tenant's reconcile is the engine's
//! `m365_engine::usecase::reconcile_pass::ReconcilePass` (users drift over at most
//! `M365_RECONCILE_MAX_PAGES` delta pages, the password-expiry sweep on a round's first pass, the
//! stuck binds and unbinds re-queued on the retry queue, then — unless the users' safeguard
//! stopped it — group membership drift). Passes run under the tenant's lease and are chained
//! through the queue of passes (`m365_engine::usecase::reconcile_queue`), so no invocation runs
//! long.
//!
//! [`handle`] decodes the event into one of three typed kinds ([`Event`]) and makes one call:
//! - the EventBridge schedule: queues one pass per `active` tenant and returns
//!   `{"tenants","queued"}` (seconds, whatever the tenants' sizes);
//! - the queue of passes (SQS, `ReportBatchItemFailures`, through the one batch helper
//!   `m365_lambda::sqs`, see [`passes`]): runs each pass; a pass whose delta round is unfinished
//!   queues the next one; a retryable failure is reported for redelivery, a permanent one (or a
//!   message that is not a pass) for the DLQ after `maxReceiveCount` (R-OPS-1); a tenant held by
//!   another pass is left to it;
//! - `POST /tenants/{tenantId}/reconcile?dryRun=true|false` and
//!   `GET /tenants/{tenantId}/reconcile/runs/{runId}` (API Gateway HTTP API, payload 2.0, through
//!   `lambda_http` and the shared `m365_lambda::api` error mapping, see [`api`]): the POST only
//!   records a run and queues its first pass (`202`, R-OPS-2); the run's passes come through the
//!   queue of passes like the schedule's and update its record, which the GET shows;
//! - the held safeguard plans, `GET /tenants/{tenantId}/reconcile/held`, `POST …/held/approve`,
//!   `POST …/held/reject` (R-REC-3), the same way: an admin's decision on a round the safeguard
//!   stopped.
//!
//! Anything else is refused with [`UnknownEvent`] (the invocation fails, nothing runs).
//! The deployed wiring ([`Deployed`], built once per cold start in `deployed`) is bounded by each
//! invocation's deadline in `main.rs` (R-OPS-2).

pub mod api;
mod deployed;
mod event;
pub mod passes;

use chrono::TimeDelta;
use lambda_runtime::{Context, LambdaEvent};
use m365_engine::ports::{Ports, SystemClock};
use m365_engine::usecase::reconcile_pass::ReconcilePass;
use m365_engine::usecase::reconcile_queue::ReconcileQueue;
use serde_json::{Value, json};

pub use deployed::{Settings, StartError};
pub use event::{Event, UnknownEvent};
pub use m365_engine::usecase::reconcile_pass::TenantReport;
pub use passes::{PassResult, sqs_batch, sqs_message};

/// The variable naming the queue of reconcile passes.
pub const QUEUE_URL: &str = m365_lambda::config::RECONCILE_QUEUE_URL;

/// How long a pass holds its tenant's lease: the function's timeout (300 s in template.yaml) plus
/// a minute, and far below the queue's visibility timeout (1,800 s), so the redelivered message
/// of a crashed pass finds the lease free again.
pub const PASS_LEASE: TimeDelta = TimeDelta::minutes(6);

/// What the function runs on: the ports, the queue of passes (a queue of its own, not the
/// retry queue) and the settings.
#[derive(Debug, Clone)]
pub struct Wiring<P: Ports> {
    /// Every port (deployed: `m365_lambda::provision::Deployed`; tests: `testing::World`).
    pub ports: P,
    /// The queue of reconcile passes.
    pub passes: P::Queue,
    /// Behaviour.
    pub settings: Settings,
}

/// The deployed wiring on `C`.
pub type Reconciler<C = SystemClock> = Wiring<m365_lambda::provision::Deployed<C>>;

/// The deployed wiring.
pub type Deployed = Reconciler<SystemClock>;

impl<P: Ports> Wiring<P> {
    /// The fan-out and leased passes on the queue of passes, as `holder` (unique per invocation).
    #[must_use]
    pub fn queue<'a>(&'a self, holder: &'a str) -> ReconcileQueue<'a, P> {
        ReconcileQueue::new(&self.ports, &self.passes, holder, PASS_LEASE)
    }

    /// The reconcile pass use case.
    #[must_use]
    pub fn pass(&self) -> ReconcilePass<'_, P> {
        ReconcilePass::new(&self.ports, &self.settings.reconcile)
    }

    /// The held-plans use case (R-REC-3).
    #[must_use]
    pub fn held(&self) -> m365_engine::usecase::held::HeldPlans<'_, P> {
        m365_engine::usecase::held::HeldPlans::new(&self.ports, &self.settings.reconcile)
    }
}

/// Decodes one invocation's event ([`Event::decode`]) and handles it ([`dispatch`]).
///
/// # Errors
/// As [`dispatch`], and [`UnknownEvent`] for an event of none of the three kinds.
#[tracing::instrument(skip_all, fields(run.id = %event.context.request_id))]
pub async fn handle<P: Ports>(
    deps: &Wiring<P>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let (payload, context) = event.into_parts();
    dispatch(deps, Event::decode(payload)?, &context).await
}

/// Handles one decoded event: an API request (always answered, errors included), an SQS batch
/// of passes (answers the failed message ids) or the schedule (fans out).
///
/// # Errors
/// Only when the schedule's fan-out fails (listing tenants or queueing): EventBridge retries the
/// invocation, and the passes it had queued already run twice at worst (cheap, see
/// [`m365_engine::usecase::reconcile_queue`]).
pub async fn dispatch<P: Ports>(
    deps: &Wiring<P>,
    event: Event,
    context: &Context,
) -> Result<Value, lambda_runtime::Error> {
    let holder = format!("reconcile/{}", context.request_id);
    Ok(match event {
        Event::Api(request) => serde_json::to_value(api::handle(deps, &holder, *request).await)?,
        Event::Passes(batch) => serde_json::to_value(sqs_batch(deps, &holder, &batch).await)?,
        Event::Schedule(_) => {
            let out = deps.queue(&holder).fan_out().await?;
            json!({ "tenants": out.tenants, "queued": out.queued })
        }
    })
}
