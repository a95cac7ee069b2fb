//! Reconcile runs requested through the API (R-OPS-2): a pass may take minutes (300 s function
//! timeout), far beyond API Gateway's 30 s, so `POST /tenants/{id}/reconcile` only records a run
//! ([`ReconcileRun`], status `queued`) and queues its first pass on the queue of passes
//! ([`super::reconcile_queue`]); `GET …/reconcile/runs/{runId}` reads the record.
//!
//! Each pass of a run is a message on that queue whose operation id names the run
//! (`reconcile/tenant:<tenant>/run.<run id>.<pass>`, [`run_of`]); the consumer hands it to
//! [`RunPasses::step`]:
//! - the run moves `queued` → `running` (with `startedAt`) as its first pass starts (under the
//!   lease for a writing run, so a run waiting for the lease stays `queued`), then each pass's
//!   report is merged into the run's ([`merge_report`]: counts added, lists appended up to
//!   [`MAX_ITEMS`] each with `truncated: true` beyond), `passes` counts it, and the run ends
//!   `done` (round complete), `held` (the safeguard stopped it before any write, R-REC-3; its
//!   report shows the trip) or `failed` (a permanent error, the tenant gone or not active, or a
//!   chain longer than `MAX_PASSES`; with a code and message). A retryable error leaves the run
//!   as it is and the message for redelivery (a message that keeps failing until the DLQ leaves
//!   its run `running`: the DLQ alarm is what tells an admin then).
//! - A writing run's pass is the scheduled pass: leased, from the tenant's saved cursor. When the
//!   tenant's lease is held (a scheduled pass is running), the run's pass **waits**: its message
//!   is sent again [`RUN_WAIT`] (or [`RunPasses::waiting`]) later (the run stays as it is) and
//!   runs once the lease is free — it then goes on from the cursor the other pass saved, so the
//!   run reports what was left.
//!   An unfinished round queues the run's next pass (`reconcile_continued`, same run id).
//! - A dry run takes no lease (it only reads, R-REC-2) and saves no cursor: it plans the pages of
//!   one pass (`complete: false` in its report when the round is longer; see the report's
//!   `pages`), like the synchronous dry run did, and ends `done` (a safeguard trip shows in its
//!   report: nothing is held, nothing would be written). Not chained: going on would need the
//!   round's next link from a dry pass and a start link for the next one, which `Reconcile` and
//!   `ReconcileGroups` do not offer (a dry pass saves nothing), and their per-pass checks (expiry
//!   sweep, UPN lookups, stale groups) would plan the same repairs again in every pass.
//!
//! Redelivery never counts a pass twice: the run records how many passes it merged, a message
//! for a pass already merged is acknowledged without running (and, if the run is still going on,
//! re-sends the next pass, in case the first send was lost), and every update is conditional on
//! the run's version, so of two concurrent deliveries only one is merged.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{Map, Value};

use super::reconcile::ReconcileSettings;
use super::reconcile_pass::{ReconcilePass, TenantReport};
use super::reconcile_queue::{Leased, MAX_PASSES, PassEnd, ReconcileQueue};
use crate::error::{Error, Result};
use crate::model::{
    OperationId, OperationKind, OperationSubject, ReconcileRun, RetryMessage, RunError, RunId,
    RunStatus, TenantId, TenantStatus,
};
use crate::ports::{Clock, Ports, ReconcileRuns, RetryQueue, TenantStore};

/// The reason on the first pass of a requested run.
pub const REASON_REQUESTED: &str = "reconcile_requested";

/// How long a run's pass waits by default before trying again when another pass holds the
/// tenant ([`RunPasses::waiting`]).
pub const RUN_WAIT: Duration = Duration::from_secs(20);

/// The most items kept per list of a run's report (users plan, stuck work, groups plan): the
/// record stays far below DynamoDB's 400 KB item limit whatever the drift.
pub const MAX_ITEMS: usize = 100;

/// The run a pass message belongs to (`None`: a scheduled pass).
#[must_use]
pub fn run_of(message: &RetryMessage) -> Option<RunId> {
    let intent = message.operation_id.as_str().rsplit('/').next()?;
    let rest = intent.strip_prefix("run.")?;
    let (id, _pass) = rest.rsplit_once('.')?;
    RunId::parse(id).ok()
}

/// The message of pass `pass` of `run`.
#[must_use]
pub fn run_message(
    run: &ReconcileRun,
    pass: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> RetryMessage {
    let subject = OperationSubject::Tenant(run.tenant_id.clone());
    RetryMessage {
        operation_id: OperationId::new(
            OperationKind::Reconcile,
            &subject,
            format!("run.{}.{pass}", run.run_id),
        ),
        kind: OperationKind::Reconcile,
        subject,
        attempt: pass,
        not_before: now,
        reason: if pass <= 1 {
            REASON_REQUESTED
        } else {
            super::reconcile_queue::REASON_CONTINUED
        }
        .to_owned(),
        actor: run.requested_by.clone(),
    }
}

/// What became of one pass message of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStep {
    /// The pass ran and was merged; the run is now in this status.
    Ran(RunStatus),
    /// Another pass holds the tenant: the message was sent again a wait later.
    Waiting,
    /// The run failed for good (recorded on the run).
    Failed(&'static str),
    /// Nothing to do (machine code): `run_not_found`, `run_finished`, `pass_already_counted`.
    Skipped(&'static str),
}

/// Requests runs and runs their passes.
#[derive(Debug)]
pub struct RunPasses<'a, P: Ports> {
    ports: &'a P,
    passes: &'a P::Queue,
    holder: &'a str,
    lease: TimeDelta,
    settings: &'a ReconcileSettings,
    wait: Duration,
}

impl<'a, P: Ports> RunPasses<'a, P> {
    /// The use case on `ports`, queueing on `passes` (the queue of reconcile passes), as
    /// `holder` in the leases (unique per invocation) for `lease`.
    #[must_use]
    pub fn new(
        ports: &'a P,
        passes: &'a P::Queue,
        holder: &'a str,
        lease: TimeDelta,
        settings: &'a ReconcileSettings,
    ) -> Self {
        Self {
            ports,
            passes,
            holder,
            lease,
            settings,
            wait: RUN_WAIT,
        }
    }

    /// Waits `wait` (instead of [`RUN_WAIT`]) before a pass tries again when another pass holds
    /// the tenant; at most 15 minutes (SQS's longest delay).
    #[must_use]
    pub fn waiting(mut self, wait: Duration) -> Self {
        self.wait = wait.min(crate::model::MAX_QUEUE_DELAY);
        self
    }

    fn queue(&self) -> ReconcileQueue<'a, P> {
        ReconcileQueue::new(self.ports, self.passes, self.holder, self.lease)
    }

    /// Records a run of `tenant` (status `queued`) and queues its first pass. The caller checked
    /// the tenant (it exists and is `active`).
    ///
    /// # Errors
    /// Store or queue failures. A run recorded whose pass could not be queued stays `queued`
    /// (the caller answers the error; the run is never shown since its id was not returned).
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_run_request", tenant.id = %tenant, dry_run))]
    pub async fn request(&self, tenant: &TenantId, dry_run: bool) -> Result<ReconcileRun> {
        let now = self.ports.clock().now();
        let run = ReconcileRun {
            requested_by: Some(self.ports.actor().clone()),
            ..ReconcileRun::queued(tenant.clone(), dry_run, now)
        };
        self.ports.runs().create(&run).await?;
        self.passes
            .send(&run_message(&run, 1, now), Duration::ZERO)
            .await?;
        tracing::info!(run.id = %run.run_id, "reconcile run queued");
        Ok(run)
    }

    /// Runs the pass that `message` carries for run `run_id`.
    ///
    /// # Errors
    /// Store, lease or queue failures and retryable pass errors: the caller leaves the message
    /// for redelivery (the run is unchanged, or its merge is already recorded and the redelivery
    /// is acknowledged).
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_run_pass", run.id = %run_id, pass = message.attempt))]
    pub async fn step(&self, message: &RetryMessage, run_id: &RunId) -> Result<RunStep> {
        let OperationSubject::Tenant(tenant) = &message.subject else {
            return Ok(RunStep::Skipped("run_not_found"));
        };
        let pass = message.attempt.max(1);
        let Some(mut run) = self.ports.runs().get(tenant, run_id).await? else {
            return Ok(RunStep::Skipped("run_not_found"));
        };
        if run.status.is_final() {
            return Ok(RunStep::Skipped("run_finished"));
        }
        if run.passes >= pass {
            if run.passes == pass {
                // The next pass may never have been sent (a crash between the merge and the
                // send): send it again; a duplicate is skipped like this one.
                self.send_next(&run).await?;
            }
            return Ok(RunStep::Skipped("pass_already_counted"));
        }
        if pass > MAX_PASSES {
            let message = format!("the round took more than {MAX_PASSES} passes");
            return self.fail(run, "too_many_passes", message).await;
        }
        let now = self.ports.clock().now();
        match self.ports.tenants().get(tenant).await? {
            Some(t) if t.status == TenantStatus::Active => {}
            found => {
                let (code, message) = match found {
                    None => ("tenant_not_found", "the tenant no longer exists".to_owned()),
                    Some(t) => (
                        "tenant_not_active",
                        format!("the tenant is {}", t.status.as_str()),
                    ),
                };
                return self.fail(run, code, message).await;
            }
        }
        let runner = self.pass_runner();
        let outcome = if run.dry_run {
            // Reads only: no lease, no cursor (R-REC-2).
            match self.start(run, now).await? {
                None => return Ok(RunStep::Skipped("pass_already_counted")),
                Some(started) => {
                    run = started;
                    runner
                        .run(tenant, true)
                        .await
                        .map(|report| Some((report, PassEnd::Complete)))
                }
            }
        } else {
            // Started under the lease only, so a run that waits for it stays `queued`. The
            // queue's own continuation is for scheduled rounds: a run continues with its own
            // message (same run id), so the pass reports "no continuation" to `leased` and its
            // real end travels with the report.
            let mut started = None;
            let leased = self
                .queue()
                .leased(tenant, pass, || async {
                    let Some(now_running) = self.start(run.clone(), now).await? else {
                        return Ok((None, PassEnd::Complete));
                    };
                    started = Some(now_running);
                    let (report, end) = runner.pass(tenant, pass).await?;
                    let shown = if end == PassEnd::Incomplete {
                        PassEnd::Complete
                    } else {
                        end
                    };
                    Ok((Some((report, end)), shown))
                })
                .await;
            if let Some(now_running) = started {
                run = now_running;
            }
            match leased {
                Ok(Leased::Busy) => {
                    let mut again = message.clone();
                    again.not_before = now + TimeDelta::from_std(self.wait).unwrap_or_default();
                    self.passes.send(&again, self.wait).await?;
                    tracing::info!("reconcile run waits: another pass holds the tenant");
                    return Ok(RunStep::Waiting);
                }
                Ok(Leased::Ran { report, .. }) => Ok(report),
                Err(e) => Err(e),
            }
        };
        let (report, end) = match outcome {
            Ok(Some(ran)) => ran,
            Ok(None) => return Ok(RunStep::Skipped("pass_already_counted")),
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                let code = e.code();
                return self.fail(run, code, e.to_string()).await;
            }
        };
        self.merge(run, pass, &report, end).await
    }

    /// Marks `run` `running` (with `startedAt`) unless it already is; `None` when another
    /// delivery updated it first.
    async fn start(
        &self,
        mut run: ReconcileRun,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<ReconcileRun>> {
        if run.status != RunStatus::Queued {
            return Ok(Some(run));
        }
        let expected = run.version;
        run.status = RunStatus::Running;
        run.started_at = Some(now);
        run.version += 1;
        Ok(self
            .ports
            .runs()
            .update(&run, expected)
            .await?
            .then_some(run))
    }

    fn pass_runner(&self) -> ReconcilePass<'a, P> {
        ReconcilePass::new(self.ports, self.settings)
    }

    /// Merges pass `pass`'s report into the run and ends it or queues its next pass.
    async fn merge(
        &self,
        mut run: ReconcileRun,
        pass: u32,
        report: &TenantReport,
        end: PassEnd,
    ) -> Result<RunStep> {
        let expected = run.version;
        let mut value = serde_json::to_value(report).map_err(|e| Error::Infrastructure {
            component: "reconcile_run",
            source: Box::new(e),
        })?;
        if let Value::Object(fields) = &mut value {
            fields.insert(
                "continued".to_owned(),
                Value::Bool(end == PassEnd::Incomplete),
            );
        }
        run.report = Some(match run.report.take() {
            Some(mut merged) => {
                merge_report(&mut merged, value);
                merged
            }
            None => {
                let mut first = Value::Object(Map::new());
                merge_report(&mut first, value);
                first
            }
        });
        run.passes = pass;
        run.version += 1;
        run.status = match end {
            PassEnd::Complete => RunStatus::Done,
            PassEnd::Stopped => RunStatus::Held,
            PassEnd::Incomplete => RunStatus::Running,
        };
        if run.status.is_final() {
            run.finished_at = Some(self.ports.clock().now());
        }
        if !self.ports.runs().update(&run, expected).await? {
            // Another delivery of this pass merged first.
            return Ok(RunStep::Skipped("pass_already_counted"));
        }
        if end == PassEnd::Incomplete {
            self.send_next(&run).await?;
        }
        tracing::info!(
            status = run.status.as_str(),
            passes = run.passes,
            "reconcile run pass merged"
        );
        Ok(RunStep::Ran(run.status))
    }

    async fn send_next(&self, run: &ReconcileRun) -> Result<()> {
        if run.status != RunStatus::Running {
            return Ok(());
        }
        let now = self.ports.clock().now();
        self.passes
            .send(
                &run_message(run, run.passes.saturating_add(1), now),
                Duration::ZERO,
            )
            .await
    }

    async fn fail(
        &self,
        mut run: ReconcileRun,
        code: &'static str,
        message: String,
    ) -> Result<RunStep> {
        let expected = run.version;
        run.status = RunStatus::Failed;
        run.finished_at = Some(self.ports.clock().now());
        run.error = Some(RunError {
            code: code.to_owned(),
            message,
        });
        run.version += 1;
        if !self.ports.runs().update(&run, expected).await? {
            return Ok(RunStep::Skipped("pass_already_counted"));
        }
        tracing::warn!(error.code = code, "reconcile run failed");
        Ok(RunStep::Failed(code))
    }
}

/// Counts added from pass to pass (`requeued`'s and `groups`' numbers alike).
const SUMMED: [&str; 6] = [
    "pages",
    "applied",
    "failed",
    "skipped",
    "accountLookups",
    "requeued",
];

/// Lists appended from pass to pass, each capped at [`MAX_ITEMS`].
const LISTED: [&str; 2] = ["plan", "stuck"];

/// Merges one pass's report (`next`, a [`TenantReport`] as JSON) into a run's: the counts
/// (`pages`, `applied`, `failed`, `skipped`, `accountLookups`, `requeued`) are added, the lists
/// (`plan`, `stuck`) appended (at most [`MAX_ITEMS`] each; beyond,
/// `truncated: true` at the top), `fullSync` is kept once set, nested objects (`groups`,
/// `requeued`, `licenses`) merge the same way and are kept when a later pass has none, and every
/// other field (`complete`, `continued`, `safeguard`, `bound`, …) is the latest pass's.
pub fn merge_report(into: &mut Value, next: Value) {
    let truncated = merge_object(into, next);
    if let Value::Object(fields) = into {
        let before = fields
            .get("truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        fields.insert("truncated".to_owned(), Value::Bool(before || truncated));
    }
}

fn merge_object(into: &mut Value, next: Value) -> bool {
    let (Value::Object(into), Value::Object(next)) = (into, next) else {
        return false;
    };
    let mut truncated = false;
    for (key, value) in next {
        let summed = SUMMED.contains(&key.as_str());
        let listed = LISTED.contains(&key.as_str());
        match (into.get_mut(&key), value) {
            (Some(Value::Number(have)), Value::Number(add)) if summed => {
                let total = have.as_u64().unwrap_or(0) + add.as_u64().unwrap_or(0);
                into.insert(key, Value::from(total));
            }
            (Some(Value::Array(have)), Value::Array(more)) if listed => {
                truncated |= append_capped(have, more);
            }
            (None, Value::Array(mut items)) if listed => {
                truncated |= items.len() > MAX_ITEMS;
                items.truncate(MAX_ITEMS);
                into.insert(key, Value::Array(items));
            }
            (Some(Value::Bool(true)), Value::Bool(_)) if key == "fullSync" => {}
            (Some(have @ Value::Object(_)), more @ Value::Object(_)) if key != "safeguard" => {
                truncated |= merge_object(have, more);
            }
            (Some(Value::Object(_)), Value::Null) if key != "safeguard" => {}
            (_, Value::Object(more)) if key != "safeguard" => {
                let mut fresh = Value::Object(Map::new());
                truncated |= merge_object(&mut fresh, Value::Object(more));
                into.insert(key, fresh);
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
    truncated
}

fn append_capped(have: &mut Vec<Value>, more: Vec<Value>) -> bool {
    let room = MAX_ITEMS.saturating_sub(have.len());
    let over = more.len() > room;
    have.extend(more.into_iter().take(room));
    over
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
