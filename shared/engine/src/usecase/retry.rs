//! Re-drive a delayed operation from the retry queue (R-BIND-6): requeue it while it is not due
//! (waits beyond SQS's 15-minute delay are re-enqueued), park it while its tenant needs
//! reauthorization (R-CONN-4: paused, nothing failed), else re-run it by kind. The typed
//! [`RetryOutcome`] tells the SQS consumer whether to acknowledge the message or report it as a
//! batch-item failure so that it reaches the DLQ.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::{
    Disposition, Group, GroupId, OperationKind, OperationOutcome, OperationSubject, RetryMessage,
    TenantStatus,
};
use crate::policy::password::DirectoryPasswordPolicy;
use crate::ports::Ports;
use crate::ports::{BindingStore, GroupStore, RetryQueue, TenantStore};

use super::bind::Bind;
use super::group_sync::{GroupOutcome, SyncGroup};
use super::manager::SyncManager;
use super::password::SetPassword;
use super::suspend::Suspension;
use super::unbind::Unbind;
use super::update::UpdateAttributes;
use super::{Effects, Outcome};

/// What the consumer does with a delivered retry message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// Not due yet: a copy was sent again with the remaining delay (≤ 15 min). Acknowledge.
    Requeued {
        /// When it is due.
        not_before: DateTime<Utc>,
    },
    /// The tenant is in `reauthorization_required`: a copy was sent to look again later, same
    /// attempt (nothing failed). Acknowledge.
    Parked {
        /// When it looks again.
        until: DateTime<Utc>,
    },
    /// The operation ran (done, deferred again with a new message, superseded or already done).
    /// Acknowledge.
    Ran(Box<Outcome>),
    /// A group operation ran (mirrored, deferred again with a new message, or superseded).
    /// Acknowledge.
    GroupRan(Box<GroupOutcome>),
    /// The operation failed for good (budget exhausted or permanent error; the binding shows it):
    /// do NOT acknowledge — report a batch-item failure so the message lands in the DLQ with its
    /// reason.
    DeadLetter {
        /// Machine code of the final failure.
        code: String,
    },
}

impl RetryOutcome {
    /// Whether the consumer should acknowledge (delete) the delivered message.
    #[must_use]
    pub fn ack(&self) -> bool {
        !matches!(self, Self::DeadLetter { .. })
    }
}

use_case! {
    /// The retry-worker use case: every port, since it re-runs any user or group operation.
    pub struct RetryDispatcher {
        ports: [
            users: Users, tenants: Tenants, directory: Directory, sealer: Sealer,
            notifier: Notifier, groups: Groups
        ],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
            /// The directory password policy (for [`SetPassword`] and [`Suspension`]).
            password_policy: &'a DirectoryPasswordPolicy = Ports::password_policy,
            /// Licences of re-run binds and unbinds (R-LIC-1).
            licenses: super::licenses::Licenses<'a, P> = super::licenses::Licenses::new,
        ],
    }
}

impl<P: Ports> RetryDispatcher<'_, P> {
    /// Handles one delivered message (see [`RetryOutcome`] for what the consumer does next).
    /// Redelivery of a finished operation changes nothing (the ledger answers `AlreadyDone`).
    ///
    /// # Errors
    /// Store or queue failures: report a batch-item failure; SQS redelivers the message.
    #[tracing::instrument(skip_all, fields(op.id = %message.operation_id, retry.attempt = message.attempt))]
    pub async fn dispatch(&self, message: &RetryMessage) -> Result<RetryOutcome> {
        let result = self.dispatch_once(message).await;
        match &result {
            // A run logs its own outcome; these did not run the operation.
            Ok(RetryOutcome::Ran(_) | RetryOutcome::GroupRan(_)) => {}
            Ok(RetryOutcome::Requeued { .. }) => {
                tracing::info!(outcome = "requeued", "retry not due")
            }
            Ok(RetryOutcome::Parked { .. }) => {
                tracing::info!(outcome = "parked", "tenant needs reauthorization")
            }
            Ok(RetryOutcome::DeadLetter { code }) => {
                tracing::warn!(outcome = "dead_letter", error.code = %code, "retry given up")
            }
            Err(e) => tracing::warn!(
                error.code = e.code(),
                error.retryable = e.is_retryable(),
                "retry not handled"
            ),
        }
        result
    }

    async fn dispatch_once(&self, message: &RetryMessage) -> Result<RetryOutcome> {
        let now = self.fx.now();
        if let Disposition::Requeue(delay) = message.disposition(now) {
            self.fx.queue.send(message, delay).await?;
            return Ok(RetryOutcome::Requeued {
                not_before: message.not_before,
            });
        }
        let user_id = match &message.subject {
            OperationSubject::User(user_id) => user_id,
            OperationSubject::Group(group_id) => {
                return self.dispatch_group(message, group_id, now).await;
            }
            OperationSubject::Tenant(_) => {
                return Ok(RetryOutcome::DeadLetter {
                    code: "unsupported_operation".to_owned(),
                });
            }
        };
        if let Some(binding) = self.fx.bindings.get(user_id).await? {
            let tenant = self.tenants.get(&binding.tenant_id).await?;
            if tenant.is_some_and(|t| t.status == TenantStatus::ReauthorizationRequired) {
                let until = now
                    + chrono::TimeDelta::from_std(self.fx.policy.park_interval).unwrap_or_default();
                let parked = RetryMessage {
                    not_before: until,
                    ..message.clone()
                };
                self.fx.queue.send(&parked, parked.send_delay(now)).await?;
                return Ok(RetryOutcome::Parked { until });
            }
        }
        // Each run is boxed: the use cases' futures are deep, and one future holding all of them
        // inline overflowed a test thread's stack with the AWS adapters.
        let outcome = match message.kind {
            OperationKind::UserBind => {
                let bind = Bind {
                    actor: self.actor,
                    fx: self.fx,
                    users: self.users,
                    tenants: self.tenants,
                    directory: self.directory,
                    sealer: self.sealer,
                    notifier: self.notifier,
                    groups: Some(self.groups),
                    licenses: Some(self.licenses),
                };
                Box::pin(bind.retry(message, user_id)).await?
            }
            OperationKind::UserUnbind => {
                let unbind = Unbind {
                    actor: self.actor,
                    fx: self.fx,
                    users: self.users,
                    directory: self.directory,
                    licenses: Some(self.licenses),
                };
                Box::pin(unbind.retry(message, user_id)).await?
            }
            OperationKind::UserUpdate => {
                let update = UpdateAttributes {
                    actor: self.actor,
                    fx: self.fx,
                    users: self.users,
                    directory: self.directory,
                };
                Box::pin(update.retry(message, user_id)).await?
            }
            OperationKind::UserPassword => {
                let password = SetPassword {
                    actor: self.actor,
                    fx: self.fx,
                    users: self.users,
                    directory: self.directory,
                    sealer: self.sealer,
                    policy: self.password_policy,
                };
                Box::pin(password.retry(message, user_id)).await?
            }
            OperationKind::UserState => {
                let suspension = Suspension {
                    actor: self.actor,
                    fx: self.fx,
                    users: self.users,
                    directory: self.directory,
                    password_policy: self.password_policy,
                };
                Box::pin(suspension.retry(message, user_id)).await?
            }
            OperationKind::UserManager => {
                let manager = SyncManager {
                    actor: self.actor,
                    fx: self.fx,
                    users: self.users,
                    directory: self.directory,
                };
                Box::pin(manager.retry(message, user_id)).await?
            }
            OperationKind::GroupBind
            | OperationKind::GroupMembers
            | OperationKind::Import
            | OperationKind::TokenRefresh
            | OperationKind::Reconcile => {
                return Ok(RetryOutcome::DeadLetter {
                    code: "unsupported_operation".to_owned(),
                });
            }
        };
        Ok(match outcome {
            Outcome::Failed { code, .. } => RetryOutcome::DeadLetter {
                code: code.to_owned(),
            },
            Outcome::AlreadyDone {
                outcome: OperationOutcome::Failed { code },
                ..
            } => RetryOutcome::DeadLetter { code },
            Outcome::InProgress { lease_until } => {
                // Another worker holds it (e.g. a crashed run's lease): look again when it ends.
                let later = RetryMessage {
                    not_before: lease_until,
                    ..message.clone()
                };
                self.fx.queue.send(&later, later.send_delay(now)).await?;
                RetryOutcome::Requeued {
                    not_before: lease_until,
                }
            }
            other => RetryOutcome::Ran(Box::new(other)),
        })
    }

    /// Re-drives a group operation (R-GRP-1): parked while the group's tenant needs
    /// reauthorization, else the group is mirrored as it is now.
    async fn dispatch_group(
        &self,
        message: &RetryMessage,
        group_id: &GroupId,
        now: DateTime<Utc>,
    ) -> Result<RetryOutcome> {
        if !matches!(
            message.kind,
            OperationKind::GroupBind | OperationKind::GroupMembers
        ) {
            return Ok(RetryOutcome::DeadLetter {
                code: "unsupported_operation".to_owned(),
            });
        }
        let tenant = match self.groups.get(group_id).await? {
            Some(Group {
                binding: Some(binding),
                ..
            }) => self.tenants.get(&binding.tenant_id).await?,
            _ => None,
        };
        if tenant.is_some_and(|t| t.status == TenantStatus::ReauthorizationRequired) {
            let until =
                now + chrono::TimeDelta::from_std(self.fx.policy.park_interval).unwrap_or_default();
            let parked = RetryMessage {
                not_before: until,
                ..message.clone()
            };
            self.fx.queue.send(&parked, parked.send_delay(now)).await?;
            return Ok(RetryOutcome::Parked { until });
        }
        let sync = SyncGroup {
            actor: self.actor,
            fx: self.fx,
            groups: self.groups,
            tenants: self.tenants,
            directory: self.directory,
        };
        Ok(match sync.retry(message, group_id).await? {
            GroupOutcome::Failed { code, .. } => RetryOutcome::DeadLetter { code },
            other => RetryOutcome::GroupRan(Box::new(other)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeDelta;

    use super::*;
    use crate::error::{Error, UnavailableReason};
    use crate::model::{BindingState, EventKind, OperationId, UserId};
    use crate::ports::Random;
    use crate::testing::SeededRandom;
    use crate::usecase::testkit::{World, deferred_bind, throttled, uid, unavailable};

    fn message(kind: OperationKind, user: &str, not_before: DateTime<Utc>) -> RetryMessage {
        let subject = OperationSubject::User(uid(user));
        RetryMessage {
            operation_id: OperationId::new(kind, &subject, 0),
            kind,
            subject,
            attempt: 1,
            not_before,
            reason: "throttled".into(),
            actor: None,
        }
    }

    #[tokio::test]
    async fn a_message_not_yet_due_is_requeued_for_at_most_fifteen_minutes() {
        // R-BIND-6 (waits beyond SQS's 15-minute delay are re-enqueued)
        let w = World::new().await;
        let m = message(
            OperationKind::UserBind,
            "adele",
            w.now() + TimeDelta::hours(3),
        );
        let outcome = w.dispatcher().dispatch(&m).await.unwrap();
        assert_eq!(
            outcome,
            RetryOutcome::Requeued {
                not_before: m.not_before
            }
        );
        assert!(outcome.ack());
        let queued = w.queue.snapshot();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message, m);
        assert_eq!(queued[0].visible_at, w.now() + TimeDelta::minutes(15));
        assert_eq!(w.directory.calls(), 0);
    }

    #[tokio::test]
    async fn a_tenant_in_reauthorization_required_parks_its_operations_until_reconnected() {
        // R-CONN-4 (paused, nothing failed or lost), R-BIND-6
        let mut w = World::new().await;
        let Outcome::Deferred { retry, .. } = deferred_bind(&w, "adele").await else {
            panic!("deferred")
        };
        w.set_tenant_status(TenantStatus::ReauthorizationRequired)
            .await;
        w.clock.set(retry.not_before);
        let _ = w.queue.drain();
        let calls = w.directory.calls();
        let outcome = w.dispatcher().dispatch(&retry).await.unwrap();
        let RetryOutcome::Parked { until } = outcome else {
            panic!("parked")
        };
        assert!(outcome.ack());
        assert_eq!(w.directory.calls(), calls, "no Graph call while parked");
        let queued = w.queue.snapshot();
        assert_eq!(queued.len(), 1);
        assert_eq!(
            queued[0].message.attempt, retry.attempt,
            "parking costs no attempt"
        );
        assert_eq!(queued[0].message.not_before, until);
        assert_eq!(w.binding("adele").await.state, BindingState::Pending);
        // A day later, still parked, nothing failed.
        w.clock.advance(TimeDelta::days(1));
        let parked = queued[0].message.clone();
        let _ = w.queue.drain();
        assert!(matches!(
            w.dispatcher().dispatch(&parked).await.unwrap(),
            RetryOutcome::Parked { .. }
        ));
        assert_eq!(w.binding("adele").await.state, BindingState::Pending);
        // Reconnected: it runs.
        w.set_tenant_status(TenantStatus::Active).await;
        w.drain().await;
        assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_refused_refresh_token_during_an_operation_parks_it_without_spending_attempts() {
        // R-CONN-4
        let w = World::new().await;
        w.user("adele").await;
        w.directory
            .fail_next_call(Error::ReauthorizationRequired { aadsts: 700_082 });
        let Outcome::Deferred { binding, retry } = w.bind("adele").await else {
            panic!("parked")
        };
        assert_eq!(binding.state, BindingState::Pending);
        assert_eq!(retry.reason, "reauthorization_required");
        assert!(retry.not_before >= w.now() + TimeDelta::minutes(15));
        assert!(w.events.all().is_empty());
    }

    #[tokio::test]
    async fn an_exhausted_retry_budget_sets_error_and_lets_the_message_reach_the_dlq() {
        // R-BIND-6
        let mut w = World::with_max_attempts(2).await;
        w.user("adele").await;
        for _ in 0..3 {
            w.directory.fail_next_call(throttled());
        }
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        let outcomes = w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Error);
        assert_eq!(binding.last_error.unwrap().code, "throttled");
        assert_eq!(binding.in_flight, None);
        assert_eq!(w.dead_letters.len(), 1, "the message lands in the DLQ");
        assert_eq!(w.dead_letters[0].reason, "throttled");
        // Every redelivery of the dead message says the same, without calling Graph again.
        let dead: Vec<_> = outcomes.iter().filter(|o| !o.ack()).collect();
        assert_eq!(dead.len(), 5);
        assert!(
            dead.iter()
                .all(|o| matches!(o, RetryOutcome::DeadLetter { code } if code == "throttled"))
        );
        assert_eq!(w.failures.all().len(), 3);
        // Each failure's id derives from what it records (issue 13: deterministic ids): the same
        // write repeated is one record, the three attempts stay three.
        let ids: BTreeSet<_> = w.failures.all().into_iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), 3);
        for f in w.failures.all() {
            assert_eq!(
                f.id,
                crate::usecase::failure_id(&f.operation_id, "adele", &f.code, f.at)
            );
        }
        assert!(w.events.all().is_empty());
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn the_same_message_delivered_twice_changes_nothing_the_second_time() {
        // R-BIND-2, R-BIND-3 (duplicate SQS delivery is harmless)
        let w = World::new().await;
        let Outcome::Deferred { retry, .. } = deferred_bind(&w, "adele").await else {
            panic!("deferred")
        };
        w.clock.set(retry.not_before);
        let first = w.dispatcher().dispatch(&retry).await.unwrap();
        assert!(matches!(&first, RetryOutcome::Ran(o) if matches!(**o, Outcome::Done { .. })));
        let calls = w.directory.calls();
        let binding = w.binding("adele").await;
        let second = w.dispatcher().dispatch(&retry).await.unwrap();
        assert!(
            matches!(&second, RetryOutcome::Ran(o) if matches!(**o, Outcome::AlreadyDone { .. }))
        );
        assert!(second.ack());
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.binding("adele").await, binding);
        assert_eq!(w.events.all().len(), 1);
        assert_eq!(w.notifier.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_retry_of_an_operation_the_engine_does_not_run_goes_to_the_dlq() {
        // R-BIND-6 (typed outcome, nothing stuck outside the DLQ)
        let w = World::new().await;
        let mut m = message(OperationKind::Reconcile, "adele", w.now());
        m.subject = OperationSubject::Tenant(w.tenant.id.clone());
        let outcome = w.dispatcher().dispatch(&m).await.unwrap();
        assert_eq!(
            outcome,
            RetryOutcome::DeadLetter {
                code: "unsupported_operation".into()
            }
        );
        assert!(!outcome.ack());
    }

    #[tokio::test]
    async fn a_retry_whose_binding_is_gone_is_acknowledged_as_superseded() {
        // R-BIND-6 (nothing stuck)
        let w = World::new().await;
        w.user("adele").await;
        let m = message(OperationKind::UserBind, "adele", w.now());
        let outcome = w.dispatcher().dispatch(&m).await.unwrap();
        assert_eq!(outcome, RetryOutcome::Ran(Box::new(Outcome::Superseded)));
        assert_eq!(w.directory.calls(), 0);
        // And its redelivery too.
        assert!(w.dispatcher().dispatch(&m).await.unwrap().ack());
    }

    #[tokio::test]
    async fn a_batch_of_200_binds_through_faults_converges() {
        // R-BIND-2, R-BIND-3, R-BIND-4, R-BIND-6 (DESIGN §5: 429s, 5xx, lag, timeouts after
        // commit and duplicate delivery: no duplicate account, no lost or doubled event, nothing
        // outside the DLQ)
        let mut w = World::new().await;
        w.directory.set_replication_lag(TimeDelta::seconds(20));
        let chaos = SeededRandom::new(2026);
        let inject = |w: &World| match chaos.below(10) {
            0 => w.directory.fail_next_call(throttled()),
            1 => w
                .directory
                .fail_next_call(unavailable(UnavailableReason::Service)),
            2 => w
                .directory
                .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout)),
            3 => {
                w.directory.pass_next_call();
                w.directory
                    .fail_next_call_after_commit(unavailable(UnavailableReason::Service));
            }
            _ => {}
        };
        let ids: Vec<String> = (0..200).map(|i| format!("u{i:03}")).collect();
        for id in &ids {
            w.user(id).await;
        }
        let mut deferred = 0;
        for id in &ids {
            inject(&w);
            match w.bind(id).await {
                Outcome::Deferred { .. } => deferred += 1,
                Outcome::Done { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
            w.clock.advance(TimeDelta::milliseconds(50));
        }
        assert!(deferred > 20, "the faults bit: {deferred} binds deferred");
        let duplicate = SeededRandom::new(99);
        let outcomes = w
            .drain_with(|w, _| {
                inject(w);
                duplicate.below(10) == 0
            })
            .await;
        w.directory.clear_faults();
        assert!(outcomes.len() >= deferred);
        assert!(w.dead_letters.is_empty(), "nothing reached the DLQ");
        assert!(w.queue.snapshot().is_empty(), "no message left");
        assert_eq!(
            w.directory.active_user_count(&w.tenant.id),
            200,
            "no duplicates"
        );
        let mut objects = BTreeSet::new();
        for id in &ids {
            let b = w.binding(id).await;
            assert_eq!(b.state, BindingState::Provisioned, "{id}");
            assert_eq!(b.in_flight, None);
            objects.insert(World::object_id(&b));
        }
        assert_eq!(objects.len(), 200);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 200);
        assert_eq!(w.events.all().len(), 200, "no event for any failure");
        let welcomed: BTreeSet<UserId> = w.notifier.sent().into_iter().map(|n| n.user_id).collect();
        assert_eq!(w.notifier.sent().len(), 200);
        assert_eq!(welcomed.len(), 200);
        // Every kind of fault was met on the way (the failures list shows them, events do not).
        let codes: BTreeSet<String> = w.failures.all().into_iter().map(|f| f.code).collect();
        for code in [
            "throttled",
            "service_unavailable",
            "timeout",
            "not_yet_visible",
        ] {
            assert!(codes.contains(code), "{code} in {codes:?}");
        }
        assert!(
            outcomes.iter().any(
                |o| matches!(o, RetryOutcome::Ran(o) if matches!(**o, Outcome::AlreadyDone { .. }))
            ),
            "a duplicate delivery was met"
        );
    }

    #[tokio::test]
    async fn a_queue_failure_while_deferring_is_an_error_so_the_caller_retries() {
        // R-BIND-6 (nothing lost: the error reaches the caller, the claim is released)
        let w = World::new().await;
        w.user("adele").await;
        w.directory.fail_next_call(throttled());
        w.queue
            .fail_next_send(unavailable(UnavailableReason::Service));
        let bind = w.binder();
        let request = crate::usecase::bind::BindRequest::default();
        assert!(bind.bind(&uid("adele"), request).await.is_err());
        // The claim was dropped: the next request runs at once.
        assert!(matches!(w.bind("adele").await, Outcome::Done { .. }));
    }

    #[tokio::test]
    async fn a_user_bound_by_a_retried_bind_joins_its_bound_groups() {
        // R-GRP-1, R-BIND-6: the retry path runs the bind's group follow-up too
        use crate::model::{Group, GroupId, mail_nickname_for};
        use crate::ports::GroupStore;
        let w = World::new().await;
        w.user("adele").await;
        let sales = GroupId::parse("sales").unwrap();
        w.groups
            .create(&Group::new(
                sales.clone(),
                "Sales".to_owned(),
                [uid("adele")],
            ))
            .await
            .unwrap();
        SyncGroup::new(&w).bind(&sales, &w.tenant.id).await.unwrap();
        w.directory.fail_next_call(throttled());
        let Outcome::Deferred { retry, .. } = w.bind("adele").await else {
            panic!("deferred")
        };
        let members = || {
            w.directory
                .groups_named(&w.tenant.id, &mail_nickname_for(&sales))[0]
                .1
                .clone()
        };
        assert!(members().is_empty());
        w.clock.set(retry.not_before);
        let _ = w.queue.drain();
        let outcome = w.dispatcher().dispatch(&retry).await.unwrap();
        let RetryOutcome::Ran(ran) = outcome else {
            panic!("{outcome:?}")
        };
        let Outcome::Done { binding, .. } = *ran else {
            panic!("{ran:?}")
        };
        assert_eq!(members(), vec![World::object_id(&binding)]);
        assert!(w.queue.snapshot().is_empty(), "nothing left to retry");
    }
}
