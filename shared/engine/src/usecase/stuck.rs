//! Stuck work (R-REC-5, R-BIND-12): a bind or unbind that waits on the retry queue must have a
//! retry queued. A message can still be lost — the function died between its two writes (the
//! binding says `pending`, nothing was sent), the message went to the DLQ after the worker
//! crashed on it five times, a queue was purged — and the binding would then wait forever with
//! its account in whatever state the last write left it.
//!
//! Every deferral records on the operation when its retry is due ([`InFlight::retry_due_at`],
//! set by `Effects::fail`). Each reconcile pass ([`find_stuck`], fed with the bindings the pass
//! has loaded anyway) picks the bindings whose operation has been in flight for longer than
//! [`StuckSettings::after`] (one hour) and whose retry is overdue by more than
//! [`StuckSettings::slack`] (one hour: far beyond the retry queue's 180 s visibility timeout times
//! its five receives, and beyond a worker backlog) or was never queued; at most
//! [`StuckSettings::max_per_pass`] of them, oldest first. [`RequeueStuck`] then records a fresh due
//! time on each (a conditional write: a binding changed meanwhile is left to whoever changed it)
//! and sends a retry message for the same operation id, so the worker re-runs exactly the
//! operation the binding waits on; a duplicate (the old message was only late) is harmless, the
//! ledger and the in-flight check see to that. A `pending` binding without any operation in flight
//! (not written by today's code; kept for records of older versions) gets a new bind operation
//! (without a welcome notification: it may have been sent already).
//!
//! The retry worker re-sends some messages without touching the binding; none of them needs a
//! new due time: a message not yet due keeps its `not_before`; one waiting for another worker's
//! lease comes back within minutes (inside the slack); one parked while its tenant needs
//! reauthorization is never looked at, since reconcile skips tenants that are not `active` (right
//! after a reconnect the parked message and a re-queued one may both run: harmless).
//!
//! Bindings `pending` without an M365 object id (R-BIND-12) are handled here too: the bind they
//! wait on looks the UPN up itself when it runs (adopting what an answer-lost create made), so
//! making sure it runs is all reconcile has to do.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{
    Binding, BindingState, InFlight, OperationId, OperationKind, OperationSubject, RetryMessage,
    UserId,
};
use crate::ports::Ports;
use crate::ports::{BindingStore, Clock, Expect, RetryQueue};

/// The reason on a retry message sent for stuck work.
pub const REASON_REQUEUED: &str = "requeued_by_reconcile";

/// When an operation in flight counts as stuck (R-REC-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StuckSettings {
    /// In flight for longer than this (since the operation began).
    pub after: TimeDelta,
    /// And its queued retry overdue by more than this (or none queued).
    pub slack: TimeDelta,
    /// Most bindings re-queued by one pass.
    pub max_per_pass: usize,
}

impl Default for StuckSettings {
    fn default() -> Self {
        Self {
            after: TimeDelta::hours(1),
            slack: TimeDelta::hours(1),
            max_per_pass: 100,
        }
    }
}

/// A binding whose operation waits with no retry on its way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StuckWork {
    /// The directory user.
    pub user_id: UserId,
    /// The operation re-queued (a new bind when the binding had none in flight).
    pub operation_id: OperationId,
    /// Its kind.
    pub kind: OperationKind,
    /// When the operation began (`None`: no operation was in flight).
    pub since: Option<DateTime<Utc>>,
    /// When its last queued retry was due (`None`: none was recorded).
    pub retry_due_at: Option<DateTime<Utc>>,
}

/// Whether `binding` waits on an operation that no queued retry will run, at `now`.
#[must_use]
pub fn is_stuck(binding: &Binding, now: DateTime<Utc>, settings: &StuckSettings) -> bool {
    match &binding.in_flight {
        Some(f) => {
            now - f.since > settings.after
                && f.retry_due_at.is_none_or(|due| now - due > settings.slack)
        }
        // Pending is written only together with the bind in flight: without one, nothing will
        // ever finish it.
        None => binding.state == BindingState::Pending,
    }
}

fn work_of(binding: &Binding) -> StuckWork {
    match &binding.in_flight {
        Some(f) => StuckWork {
            user_id: binding.user_id.clone(),
            operation_id: f.operation_id.clone(),
            kind: f.kind,
            since: Some(f.since),
            retry_due_at: f.retry_due_at,
        },
        None => StuckWork {
            user_id: binding.user_id.clone(),
            operation_id: fresh_bind(binding),
            kind: OperationKind::UserBind,
            since: None,
            retry_due_at: None,
        },
    }
}

/// The bind a pending binding without an operation gets: the id a bind request made against this
/// version would use.
fn fresh_bind(binding: &Binding) -> OperationId {
    OperationId::new(
        OperationKind::UserBind,
        &OperationSubject::User(binding.user_id.clone()),
        binding.version,
    )
}

/// The stuck work among `bindings` at `now`: at most `settings.max_per_pass`, the longest waiting
/// first (those without an operation before all others).
#[must_use]
pub fn find_stuck(
    bindings: &[Binding],
    now: DateTime<Utc>,
    settings: &StuckSettings,
) -> Vec<StuckWork> {
    let mut stuck: Vec<StuckWork> = bindings
        .iter()
        .filter(|b| b.state != BindingState::Unselected && is_stuck(b, now, settings))
        .map(work_of)
        .collect();
    stuck.sort_by(|a, b| (a.since, &a.user_id).cmp(&(b.since, &b.user_id)));
    stuck.truncate(settings.max_per_pass);
    stuck
}

/// What [`RequeueStuck::requeue`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Requeued {
    /// Retry messages sent.
    pub requeued: usize,
    /// Left alone: the binding changed or finished since it was listed.
    pub skipped: usize,
    /// Store or queue failures (logged; the next pass tries again).
    pub failed: usize,
}

use_case! {
    /// Re-queues stuck work (after a reconcile pass that was not a dry run and not stopped by the
    /// safeguard).
    pub struct RequeueStuck {
        ports: [bindings: Bindings, queue: Queue, clock: Clock],
        extra: [
            /// When work counts as stuck (checked again on the binding as it is now).
            settings: &'a StuckSettings,
        ],
    }
}

impl<P: Ports> RequeueStuck<'_, P> {
    /// Records a fresh due time on each binding still stuck and sends its retry message. Never
    /// fails as a whole: a failure is logged and counted, and the next pass finds the binding
    /// again.
    #[tracing::instrument(skip_all, fields(op.kind = "requeue_stuck", stuck = stuck.len()))]
    pub async fn requeue(&self, stuck: &[StuckWork]) -> Requeued {
        let mut out = Requeued::default();
        for work in stuck {
            match self.one(work).await {
                Ok(true) => out.requeued += 1,
                Ok(false) => out.skipped += 1,
                Err(e) => {
                    out.failed += 1;
                    tracing::warn!(user.id = %work.user_id, op.id = %work.operation_id, error.code = e.code(), "stuck work not re-queued");
                }
            }
        }
        if !stuck.is_empty() {
            tracing::info!(
                requeued = out.requeued,
                skipped = out.skipped,
                failed = out.failed,
                "stuck work re-queued"
            );
        }
        out
    }

    async fn one(&self, work: &StuckWork) -> Result<bool> {
        let now = self.clock.now();
        let Some(mut binding) = self.bindings.get(&work.user_id).await? else {
            return Ok(false);
        };
        if !is_stuck(&binding, now, self.settings) {
            return Ok(false);
        }
        let expect = Expect::Version(binding.version);
        let (operation_id, kind, actor) = match binding.in_flight.as_mut() {
            Some(f) => {
                f.retry_due_at = Some(now);
                (f.operation_id.clone(), f.kind, f.actor.clone())
            }
            None => {
                let op = fresh_bind(&binding);
                binding.in_flight = Some(InFlight {
                    retry_due_at: Some(now),
                    ..InFlight::new(op.clone(), OperationKind::UserBind, now)
                });
                // Nobody asked for this bind again: reconcile's own actor records it.
                (op, OperationKind::UserBind, None)
            }
        };
        match self.bindings.put(&binding, expect).await {
            Ok(_) => {}
            // Changed since it was read: whoever changed it is acting on it.
            Err(Error::Conflict(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        let message = RetryMessage {
            operation_id,
            kind,
            subject: OperationSubject::User(binding.user_id.clone()),
            attempt: 1,
            not_before: now,
            reason: REASON_REQUEUED.to_owned(),
            actor: actor.or_else(|| Some(self.actor.clone())),
        };
        self.queue.send(&message, Duration::ZERO).await?;
        tracing::info!(user.id = %binding.user_id, op.id = %message.operation_id, "stuck work re-queued");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UnavailableReason;
    use crate::model::EventKind;

    use crate::usecase::Outcome;
    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{
        World, deferred_bind, pending_user, throttled, uid, unavailable,
    };

    fn requeuer<'a>(w: &'a World, settings: &'a StuckSettings) -> RequeueStuck<'a, World> {
        RequeueStuck {
            actor: &w.actor,
            bindings: &w.bindings,
            queue: &w.queue,
            clock: &w.clock,
            settings,
        }
    }

    async fn all_bindings(w: &World) -> Vec<Binding> {
        let mut out = Vec::new();
        for id in ["adele", "alex", "ada", "bob"] {
            if let Some(b) = w.bindings.get(&uid(id)).await.unwrap() {
                out.push(b);
            }
        }
        out
    }

    /// The stuck operations found (with the default settings) once `wait` has passed, and the settings.
    async fn stuck_after(w: &World, wait: TimeDelta) -> (Vec<StuckWork>, StuckSettings) {
        let settings = StuckSettings::default();
        w.clock.advance(wait);
        let stuck = find_stuck(&all_bindings(w).await, w.now(), &settings);
        (stuck, settings)
    }

    /// A bind deferred by a 429 whose retry message is then lost (the queue purged).
    async fn pending_with_lost_retry(w: &World, id: &str) {
        deferred_bind(w, id).await;
        assert_eq!(w.queue.drain().len(), 1, "the retry message is lost");
    }

    #[tokio::test]
    async fn a_pending_bind_whose_retry_was_lost_is_requeued_after_an_hour_and_converges() {
        // R-REC-5, R-BIND-12
        let mut w = World::new().await;
        pending_with_lost_retry(&w, "adele").await;
        let settings = StuckSettings::default();
        w.clock.advance(TimeDelta::minutes(30));
        assert!(
            find_stuck(&all_bindings(&w).await, w.now(), &settings).is_empty(),
            "not an hour yet"
        );
        w.clock.advance(TimeDelta::minutes(90));
        let stuck = find_stuck(&all_bindings(&w).await, w.now(), &settings);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].user_id, uid("adele"));
        assert_eq!(stuck[0].kind, OperationKind::UserBind);
        let op = w.binding("adele").await.in_flight.unwrap().operation_id;
        assert_eq!(stuck[0].operation_id, op, "the same operation");
        let out = requeuer(&w, &settings).requeue(&stuck).await;
        assert_eq!(out.requeued, 1);
        let queued = w.queue.snapshot();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message.operation_id, op);
        assert_eq!(queued[0].message.reason, REASON_REQUEUED);
        assert_eq!(
            w.binding("adele").await.in_flight.unwrap().retry_due_at,
            Some(w.now())
        );
        // Found again right away (a later pass of the same round): not stuck any more.
        assert!(find_stuck(&all_bindings(&w).await, w.now(), &settings).is_empty());
        w.drain().await;
        let b = w.binding("adele").await;
        assert_eq!(b.state, BindingState::Provisioned);
        assert_eq!(b.in_flight, None);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
    }

    #[tokio::test]
    async fn requeued_stuck_work_keeps_the_actor_of_the_request_that_started_it() {
        // R-AUD-1, R-REC-5: the events of the re-queued bind name the admin, not reconcile.
        let mut w = World::new().await;
        w.actor = crate::model::Actor::principal("arn:aws:iam::123456789012:user/admin").unwrap();
        pending_with_lost_retry(&w, "adele").await;
        w.actor = crate::model::Actor::schedule();
        let (stuck, settings) = stuck_after(&w, TimeDelta::minutes(120)).await;
        assert_eq!(requeuer(&w, &settings).requeue(&stuck).await.requeued, 1);
        let queued = w.queue.snapshot();
        assert_eq!(
            queued[0].message.actor.as_ref().map(|a| a.as_str()),
            Some("arn:aws:iam::123456789012:user/admin")
        );
        w.drain().await;
        assert_eq!(
            w.event(EventKind::UserCreateProvision)
                .actor
                .as_ref()
                .map(|a| a.as_str()),
            Some("arn:aws:iam::123456789012:user/admin")
        );
    }

    #[tokio::test]
    async fn a_retry_still_on_its_way_is_not_requeued() {
        // R-REC-5 (an address wait of a day keeps its retries queued: never stuck)
        let w = World::new().await;
        w.user("adele").await;
        w.directory.pass_next_call();
        w.directory
            .fail_next_call(unavailable(UnavailableReason::AddressHeld));
        let settings = StuckSettings::default();
        let outcome = w.bind("adele").await;
        let Outcome::Deferred { retry, .. } = outcome else {
            panic!("deferred: {outcome:?}")
        };
        // The retry is due 15 minutes after the bind: 70 minutes in, it is late but may be on
        // its way; past the hour of slack it is taken for lost.
        w.clock.advance(TimeDelta::minutes(70));
        assert!(find_stuck(&all_bindings(&w).await, w.now(), &settings).is_empty());
        assert!(retry.not_before + settings.slack > w.now());
        w.clock.advance(TimeDelta::minutes(60));
        assert_eq!(
            find_stuck(&all_bindings(&w).await, w.now(), &settings).len(),
            1
        );
    }

    #[tokio::test]
    async fn a_duplicate_of_a_message_only_late_changes_nothing() {
        // R-REC-5 (duplicate delivery stays harmless)
        let mut w = World::new().await;
        deferred_bind(&w, "adele").await;
        let (stuck, settings) = stuck_after(&w, TimeDelta::hours(3)).await;
        assert_eq!(requeuer(&w, &settings).requeue(&stuck).await.requeued, 1);
        assert_eq!(w.queue.snapshot().len(), 2, "the late one and ours");
        let outcomes = w.drain().await;
        assert!(
            outcomes.iter().any(|o| matches!(
                o,
                RetryOutcome::Ran(r) if matches!(&**r, Outcome::AlreadyDone { .. })
            )),
            "{outcomes:?}"
        );
        assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_binding_changed_since_it_was_listed_is_left_to_whoever_changed_it() {
        // R-REC-5 (conditional write)
        let w = World::new().await;
        pending_with_lost_retry(&w, "adele").await;
        let (stuck, settings) = stuck_after(&w, TimeDelta::hours(2)).await;
        // The admin binds again meanwhile: it succeeds and the binding is not stuck any more.
        assert!(matches!(w.bind("adele").await, Outcome::Done { .. }));
        let out = requeuer(&w, &settings).requeue(&stuck).await;
        assert_eq!((out.requeued, out.skipped), (0, 1));
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_pending_binding_without_any_operation_gets_a_new_bind_without_a_welcome() {
        // R-REC-5, R-BIND-12 (pending without an object id: the bind looks the UPN up itself)
        let mut w = World::new().await;
        let b = pending_user(&w, "bob", "creating").await;
        let settings = StuckSettings::default();
        let stuck = find_stuck(std::slice::from_ref(&b), w.now(), &settings);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].since, None);
        assert_eq!(requeuer(&w, &settings).requeue(&stuck).await.requeued, 1);
        w.drain().await;
        let b = w.binding("bob").await;
        assert_eq!(b.state, BindingState::Provisioned);
        assert!(b.m365_object_id.is_some());
        assert!(w.notifier.sent().is_empty(), "no welcome from a repair");
    }

    #[tokio::test]
    async fn an_unbind_whose_retry_was_lost_is_requeued_and_blocks_the_account() {
        // R-REC-5, R-BIND-12 (the account would otherwise stay enabled)
        let mut w = World::with_bound(&["alex"]).await;
        w.directory.fail_next_call(throttled());
        assert!(matches!(
            w.unbinder().unbind(&uid("alex")).await.unwrap(),
            Outcome::Deferred { .. }
        ));
        assert_eq!(w.queue.drain().len(), 1, "the retry message is lost");
        let (stuck, settings) = stuck_after(&w, TimeDelta::hours(2)).await;
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].kind, OperationKind::UserUnbind);
        requeuer(&w, &settings).requeue(&stuck).await;
        w.drain().await;
        let b = w.binding("alex").await;
        assert_eq!(b.state, BindingState::Blocked);
        let id = b.m365_object_id.unwrap();
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
    }

    #[test]
    fn a_pass_requeues_at_most_its_bound_the_longest_waiting_first() {
        // R-REC-5 (bounded work per pass)
        let now = Utc::now();
        let bindings: Vec<Binding> = (0..5)
            .map(|i| {
                let user = uid(&format!("u{i}"));
                let mut b = Binding::pending(user.clone(), crate::model::TenantId::generate(), "x");
                let op =
                    OperationId::new(OperationKind::UserBind, &OperationSubject::User(user), 0);
                b.in_flight = Some(InFlight {
                    welcome: true,
                    ..InFlight::new(op, OperationKind::UserBind, now - TimeDelta::hours(2 + i))
                });
                b
            })
            .collect();
        let settings = StuckSettings {
            max_per_pass: 2,
            ..StuckSettings::default()
        };
        let stuck = find_stuck(&bindings, now, &settings);
        let users: Vec<String> = stuck.iter().map(|s| s.user_id.to_string()).collect();
        assert_eq!(users, vec!["u4", "u3"]);
    }
}
