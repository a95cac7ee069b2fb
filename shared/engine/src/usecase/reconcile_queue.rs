//! Reconciliation fanned out through a queue (R-REC-1, DESIGN §2 "Queues"): no invocation runs
//! long, whatever the number or size of the tenants.
//!
//! - The schedule [`ReconcileQueue::fan_out`]s: one message per `active` tenant, nothing else. An
//!   hourly tick with a thousand tenants costs a thousand queue sends, not a thousand reconciles.
//! - Each message is one *pass* ([`ReconcileQueue::step`]): the tenant's reconcile for at most a
//!   bounded number of delta pages (the caller's pass, e.g. `Reconcile` + `ReconcileGroups`), run
//!   under the tenant's lease. A pass whose delta round is not finished sends the next pass as a
//!   new message (`attempt` + 1) before its own is acknowledged, so a 100,000-user tenant is
//!   reconciled by a chain of short invocations, and a tenant late in the list waits for a queue
//!   consumer, not for the tenants before it (no starvation by list order).
//!
//! One pass per tenant at a time: a message whose tenant's lease is held by another pass is
//! dropped (`Busy`), because the holder continues the round itself. (A pass of a run requested
//! through the API waits and runs after the holder instead: [`super::reconcile_runs`].) Order inside a pass: run,
//! release the lease, *then* send the continuation — a continuation received at once must find the
//! lease free. A crash anywhere leaves the message unacknowledged: SQS delivers it again after its
//! visibility timeout (longer than the lease), and the pass resumes from the saved delta cursor.
//! A duplicate delivery, or two chains after such a crash, only cost extra passes from the same
//! cursor (cheap: an unchanged round is its delta pages); the lease keeps them from overlapping
//! and they end together when the round completes.
//!
//! A pass stopped by the safeguard (R-REC-3) is not continued: its plan is held
//! ([`super::held`]) and the tenant's passes do nothing until an admin approves or rejects it;
//! either moves the cursors past the held pass, and the next tick goes on from there.

use std::future::Future;
use std::time::Duration;

use chrono::TimeDelta;

use crate::error::Result;
use crate::model::{
    OperationId, OperationKind, OperationSubject, PageRequest, RetryMessage, TenantId, TenantStatus,
};
use crate::ports::Ports;
use crate::ports::{Clock, Leases, RetryQueue, TenantStore};

/// The reason on a message sent by the schedule.
pub const REASON_SCHEDULED: &str = "reconcile_scheduled";

/// The reason on a message that continues an unfinished delta round.
pub const REASON_CONTINUED: &str = "reconcile_continued";

/// The longest chain of passes one round may take; a longer one is stopped with a warning (a
/// round of 1,000 passes of 50 pages is tens of millions of users: more means a loop, not a
/// tenant).
pub const MAX_PASSES: u32 = 1000;

/// Tenants read per page when fanning out.
const TENANT_PAGE: u32 = 100;

/// The lease name of a tenant's reconcile.
#[must_use]
pub fn lease_name(tenant: &TenantId) -> String {
    format!("reconcile#{tenant}")
}

/// How one pass of a tenant's reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassEnd {
    /// The delta round is finished (the cursor points at the next round).
    Complete,
    /// The round goes on: the next pass resumes from the saved cursor.
    Incomplete,
    /// The safeguard stopped the pass before any write, or a held plan kept it from running
    /// (R-REC-3): not continued.
    Stopped,
}

/// What the schedule queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Tenants seen (any status).
    pub tenants: usize,
    /// Messages sent: one per active tenant.
    pub queued: usize,
}

/// A pass run under the tenant's lease.
#[derive(Debug, Clone, PartialEq)]
pub enum Leased<R> {
    /// Another pass holds the lease; nothing ran.
    Busy,
    /// The pass ran.
    Ran {
        /// What the pass answered.
        report: R,
        /// How it ended.
        end: PassEnd,
        /// A message for the next pass was sent.
        continued: bool,
    },
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<R> {
    /// Not due yet: sent again with the delay left (SQS delays at most 15 minutes).
    Requeued,
    /// Nothing to do for this tenant (machine code: `tenant_not_found`, `tenant_not_active`,
    /// `too_many_passes`).
    Skipped(&'static str),
    /// The message is not a reconcile of a tenant (machine code): a producer bug, for the DLQ.
    Rejected(&'static str),
    /// The pass ran, or found the lease taken.
    Leased(Leased<R>),
}

/// The fan-out and the leased passes.
#[derive(Debug)]
pub struct ReconcileQueue<'a, P: Ports> {
    /// Tenants.
    pub tenants: &'a P::Tenants,
    /// Per-tenant leases.
    pub leases: &'a P::Leases,
    /// Where passes are queued: the queue of reconcile passes (not the retry queue).
    pub queue: &'a P::Queue,
    /// Time.
    pub clock: &'a P::Clock,
    /// Who we are in the leases (unique per invocation, e.g. the Lambda request id).
    pub holder: &'a str,
    /// How long a pass may hold the lease: longer than an invocation may run, shorter than the
    /// queue's visibility timeout (so a crashed pass's redelivered message finds it free).
    pub lease: TimeDelta,
    /// Who asks (R-AUD-1): carried by the passes it queues.
    pub actor: &'a crate::model::Actor,
}

impl<'a, P: Ports> ReconcileQueue<'a, P> {
    /// The use case on `ports`, queueing passes on `passes` — the queue of reconcile passes, a
    /// queue of its own (not the retry queue `ports.queue()`).
    #[must_use]
    pub fn new(ports: &'a P, passes: &'a P::Queue, holder: &'a str, lease: TimeDelta) -> Self {
        Self {
            tenants: ports.tenants(),
            leases: ports.leases(),
            queue: passes,
            clock: ports.clock(),
            actor: ports.actor(),
            holder,
            lease,
        }
    }
}

impl<P: Ports> ReconcileQueue<'_, P> {
    /// The message of pass `pass` of `tenant`'s reconcile.
    #[must_use]
    pub fn message(&self, tenant: &TenantId, pass: u32, reason: &str) -> RetryMessage {
        let now = self.clock.now();
        RetryMessage {
            operation_id: OperationId::new(
                OperationKind::Reconcile,
                &OperationSubject::Tenant(tenant.clone()),
                format!("{}.{pass}", now.timestamp_millis()),
            ),
            kind: OperationKind::Reconcile,
            subject: OperationSubject::Tenant(tenant.clone()),
            attempt: pass,
            not_before: now,
            reason: reason.to_owned(),
            actor: Some(self.actor.clone()),
        }
    }

    /// Queues one first pass per `active` tenant (the scheduled run).
    ///
    /// # Errors
    /// Listing tenants or sending failed; the schedule's retry sends again, and the duplicates a
    /// retry makes cost one cheap pass each.
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_fan_out"))]
    pub async fn fan_out(&self) -> Result<FanOut> {
        let mut out = FanOut::default();
        let mut request = PageRequest::first(TENANT_PAGE);
        loop {
            let page = self.tenants.list(&request).await?;
            out.tenants += page.items.len();
            for tenant in page
                .items
                .iter()
                .filter(|t| t.status == TenantStatus::Active)
            {
                self.queue
                    .send(
                        &self.message(&tenant.id, 1, REASON_SCHEDULED),
                        Duration::ZERO,
                    )
                    .await?;
                out.queued += 1;
            }
            match page.next {
                Some(next) => request = PageRequest::after(next, TENANT_PAGE),
                None => break,
            }
        }
        tracing::info!(
            tenants = out.tenants,
            queued = out.queued,
            "reconcile fanned out"
        );
        Ok(out)
    }

    /// Handles one queued message: checks it, then runs `pass` under the tenant's lease.
    ///
    /// # Errors
    /// Store, lease or queue failures, and the pass's own error (the lease is released first);
    /// the caller leaves the message for redelivery when the error is retryable.
    pub async fn step<R, F, Fut>(&self, message: &RetryMessage, pass: F) -> Result<Step<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(R, PassEnd)>>,
    {
        let OperationSubject::Tenant(tenant) = &message.subject else {
            return Ok(Step::Rejected("unsupported_operation"));
        };
        if message.kind != OperationKind::Reconcile {
            return Ok(Step::Rejected("unsupported_operation"));
        }
        let delay = message.send_delay(self.clock.now());
        if !delay.is_zero() {
            self.queue.send(message, delay).await?;
            return Ok(Step::Requeued);
        }
        if message.attempt > MAX_PASSES {
            tracing::warn!(
                tenant.id = %tenant,
                pass = message.attempt,
                "reconcile round stopped: too many passes"
            );
            return Ok(Step::Skipped("too_many_passes"));
        }
        match self.tenants.get(tenant).await? {
            None => return Ok(Step::Skipped("tenant_not_found")),
            Some(t) if t.status != TenantStatus::Active => {
                return Ok(Step::Skipped("tenant_not_active"));
            }
            Some(_) => {}
        }
        Ok(Step::Leased(
            self.leased(tenant, message.attempt, pass).await?,
        ))
    }

    /// Runs pass number `pass` of `tenant` under its lease; an incomplete round sends pass
    /// `pass + 1` after the lease is released. The API uses it directly (pass 1).
    ///
    /// # Errors
    /// As [`Self::step`].
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_pass", tenant.id = %tenant, pass))]
    pub async fn leased<R, F, Fut>(&self, tenant: &TenantId, pass: u32, run: F) -> Result<Leased<R>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(R, PassEnd)>>,
    {
        let name = lease_name(tenant);
        let now = self.clock.now();
        if !self
            .leases
            .acquire(&name, self.holder, now, now + self.lease)
            .await?
        {
            tracing::info!("reconcile pass skipped: another pass holds the tenant");
            return Ok(Leased::Busy);
        }
        let result = run().await;
        if let Err(e) = self.leases.release(&name, self.holder).await {
            // It expires on its own; the next pass may wait until then.
            tracing::warn!(error.code = e.code(), "reconcile lease not released");
        }
        let (report, end) = result?;
        let continued = end == PassEnd::Incomplete;
        if continued {
            self.queue
                .send(
                    &self.message(tenant, pass.saturating_add(1), REASON_CONTINUED),
                    Duration::ZERO,
                )
                .await
                .inspect_err(|e| {
                    tracing::warn!(error.code = e.code(), "reconcile continuation not queued");
                })?;
        }
        tracing::info!(end = ?end, continued, "reconcile pass done");
        Ok(Leased::Ran {
            report,
            end,
            continued,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Error;
    use crate::model::Tenant;
    use crate::testing::World;
    use crate::testing::{FakeLeases, FakeRetryQueue, FakeTenants, ManualClock};

    struct W {
        clock: ManualClock,
        tenants: FakeTenants,
        leases: FakeLeases,
        queue: FakeRetryQueue,
        actor: crate::model::Actor,
    }

    impl W {
        fn new() -> Self {
            let clock = ManualClock::fixed();
            Self {
                queue: FakeRetryQueue::new(clock.clone()),
                clock,
                tenants: FakeTenants::new(),
                leases: FakeLeases::new(),
                actor: crate::model::Actor::schedule(),
            }
        }

        async fn tenant(&self, status: TenantStatus) -> TenantId {
            let mut t = Tenant::pending(TenantId::generate(), "T");
            t.status = status;
            self.tenants.create(&t).await.unwrap().id
        }

        fn job<'a>(&'a self, holder: &'a str) -> ReconcileQueue<'a, World> {
            ReconcileQueue {
                tenants: &self.tenants,
                leases: &self.leases,
                queue: &self.queue,
                clock: &self.clock,
                holder,
                lease: TimeDelta::minutes(6),
                actor: &self.actor,
            }
        }
    }

    async fn pass(end: PassEnd) -> Result<(u32, PassEnd)> {
        Ok((7, end))
    }

    #[tokio::test]
    async fn the_schedule_queues_one_pass_per_active_tenant_and_nothing_else() {
        // R-REC-1 (scheduled per tenant, through the queue)
        let w = W::new();
        let a = w.tenant(TenantStatus::Active).await;
        let b = w.tenant(TenantStatus::Active).await;
        w.tenant(TenantStatus::ReauthorizationRequired).await;
        w.tenant(TenantStatus::PendingConsent).await;
        let out = w.job("h").fan_out().await.unwrap();
        assert_eq!(
            out,
            FanOut {
                tenants: 4,
                queued: 2
            }
        );
        let mut queued: Vec<TenantId> = w
            .queue
            .drain()
            .into_iter()
            .map(|m| {
                assert_eq!(m.kind, OperationKind::Reconcile);
                assert_eq!(m.attempt, 1);
                assert_eq!(m.reason, REASON_SCHEDULED);
                match m.subject {
                    OperationSubject::Tenant(t) => t,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        queued.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(queued, want);
    }

    #[tokio::test]
    async fn an_unfinished_round_continues_as_a_new_message_until_it_completes() {
        // R-REC-1 (large tenants fan out through the queue)
        let w = W::new();
        let t = w.tenant(TenantStatus::Active).await;
        w.job("s").fan_out().await.unwrap();
        let runs = AtomicU32::new(0);
        let mut passes = Vec::new();
        while let Some(message) = w.queue.drain().pop() {
            assert!(w.queue.snapshot().is_empty(), "one message at a time");
            let step = w
                .job("worker")
                .step(&message, || async {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok((
                        n,
                        if n < 4 {
                            PassEnd::Incomplete
                        } else {
                            PassEnd::Complete
                        },
                    ))
                })
                .await
                .unwrap();
            passes.push((message.attempt, message.reason.clone(), step));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        assert_eq!(
            passes.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(passes[0].1, REASON_SCHEDULED);
        assert!(passes[1..].iter().all(|p| p.1 == REASON_CONTINUED));
        assert_eq!(
            passes[3].2,
            Step::Leased(Leased::Ran {
                report: 4,
                end: PassEnd::Complete,
                continued: false
            })
        );
        assert_eq!(w.leases.holder(&lease_name(&t)), None, "lease given back");
    }

    #[tokio::test]
    async fn a_pass_stopped_by_the_safeguard_is_not_continued() {
        // R-REC-3
        let w = W::new();
        let t = w.tenant(TenantStatus::Active).await;
        let step = w
            .job("h")
            .step(&w.job("h").message(&t, 1, REASON_SCHEDULED), || {
                pass(PassEnd::Stopped)
            })
            .await
            .unwrap();
        assert!(matches!(
            step,
            Step::Leased(Leased::Ran {
                end: PassEnd::Stopped,
                continued: false,
                ..
            })
        ));
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_tenant_held_by_another_pass_is_left_to_it() {
        // R-REC-1 (one pass per tenant at a time)
        let w = W::new();
        let t = w.tenant(TenantStatus::Active).await;
        let now = w.clock.now();
        assert!(
            w.leases
                .acquire(&lease_name(&t), "other", now, now + TimeDelta::minutes(6))
                .await
                .unwrap()
        );
        let ran = AtomicU32::new(0);
        let step = w
            .job("me")
            .step(&w.job("me").message(&t, 2, REASON_CONTINUED), || async {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(((), PassEnd::Incomplete))
            })
            .await
            .unwrap();
        assert_eq!(step, Step::Leased(Leased::Busy));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        assert!(w.queue.snapshot().is_empty(), "the holder continues");
        assert_eq!(w.leases.holder(&lease_name(&t)).unwrap().0, "other");
        // Once the holder's lease has run out (it crashed), a redelivered message runs.
        w.clock.advance(TimeDelta::minutes(7));
        let step = w
            .job("me")
            .step(&w.job("me").message(&t, 2, REASON_CONTINUED), || {
                pass(PassEnd::Complete)
            })
            .await
            .unwrap();
        assert!(matches!(step, Step::Leased(Leased::Ran { .. })));
    }

    #[tokio::test]
    async fn a_failed_pass_gives_the_lease_back_and_queues_nothing() {
        // R-REC-1 (nothing lost on failure: the message is redelivered)
        let w = W::new();
        let t = w.tenant(TenantStatus::Active).await;
        let error = w
            .job("h")
            .step(&w.job("h").message(&t, 1, REASON_SCHEDULED), || async {
                Err::<((), PassEnd), _>(Error::Throttled {
                    retry_after: None,
                    graph_request_id: None,
                })
            })
            .await
            .unwrap_err();
        assert!(
            error.is_retryable(),
            "the caller leaves the message for redelivery"
        );
        assert_eq!(w.leases.holder(&lease_name(&t)), None);
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn inactive_unknown_and_foreign_messages_run_nothing() {
        // R-REC-1, R-CONN-4 (a tenant needing reauthorization is not reconciled)
        let w = W::new();
        let parked = w.tenant(TenantStatus::ReauthorizationRequired).await;
        let job = w.job("h");
        let never = || async { panic!("must not run") };
        let step = job
            .step::<(), _, _>(&job.message(&parked, 1, REASON_SCHEDULED), never)
            .await
            .unwrap();
        assert_eq!(step, Step::Skipped("tenant_not_active"));
        let step = job
            .step::<(), _, _>(
                &job.message(&TenantId::generate(), 1, REASON_SCHEDULED),
                never,
            )
            .await
            .unwrap();
        assert_eq!(step, Step::Skipped("tenant_not_found"));
        let mut foreign = job.message(&parked, 1, REASON_SCHEDULED);
        foreign.kind = OperationKind::UserBind;
        let step = job.step::<(), _, _>(&foreign, never).await.unwrap();
        assert_eq!(step, Step::Rejected("unsupported_operation"));
        let endless = job.message(&parked, MAX_PASSES + 1, REASON_CONTINUED);
        let step = job.step::<(), _, _>(&endless, never).await.unwrap();
        assert_eq!(step, Step::Skipped("too_many_passes"));
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_message_not_yet_due_is_sent_again_with_the_delay_left() {
        // R-REC-1 (SQS delays at most 15 minutes)
        let w = W::new();
        let t = w.tenant(TenantStatus::Active).await;
        let job = w.job("h");
        let mut later = job.message(&t, 1, REASON_SCHEDULED);
        later.not_before = w.clock.now() + TimeDelta::minutes(20);
        let step = job
            .step::<(), _, _>(&later, || async { panic!("not due") })
            .await
            .unwrap();
        assert_eq!(step, Step::Requeued);
        let queued = w.queue.snapshot();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].visible_at, w.clock.now() + TimeDelta::minutes(15));
    }
}
