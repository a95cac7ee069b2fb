//! Unbind a user (DESIGN §4 "unbind"): block sign-in in M365, never delete (R-BIND-5); an account
//! already deleted in M365 leaves the directory user unchanged and the binding `deleted_in_m365`
//! (R-BIND-8).

use crate::error::{Entity, Error, Result};
use crate::model::{
    Binding, BindingState, InFlight, M365ObjectId, OperationId, OperationKind, OperationSubject,
    RetryMessage, UserId,
};
use crate::ports::{
    BindingStore, Claim, Clock, Directory, EventStore, Expect, FailureStore, OperationLedger,
    Random, RetryQueue, UserStore,
};

use super::{Change, Effects, OnFailure, Outcome, Run, is_m365_not_found};

/// The unbind use case.
#[derive(Debug)]
pub struct Unbind<'a, B, E, F, L, Q, C, R, U, D> {
    /// Outcome recording.
    pub fx: Effects<'a, B, E, F, L, Q, C, R>,
    /// Directory users (the UPN of a binding whose create never answered).
    pub users: &'a U,
    /// M365.
    pub directory: &'a D,
}

/// While waiting, the binding keeps its state (the account still signs in); when the budget runs
/// out it becomes `error` (R-BIND-6).
const UNBIND_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: Some(BindingState::Error),
};

impl<B, E, F, L, Q, C, R, U, D> Unbind<'_, B, E, F, L, Q, C, R, U, D>
where
    B: BindingStore,
    E: EventStore,
    F: FailureStore,
    L: OperationLedger,
    Q: RetryQueue,
    C: Clock,
    R: Random,
    U: UserStore,
    D: Directory,
{
    /// Unbinds `user_id`: `accountEnabled=false` → binding `blocked` + `user_deprovision` (R-BIND-5).
    /// M365 404 → `deleted_in_m365`, no event, directory user untouched (R-BIND-8). A binding already
    /// `blocked`, `deleted_in_m365` or `unselected` is left alone ([`Outcome::Unchanged`]).
    ///
    /// # Errors
    /// `NotFound` (binding); store failures. M365 failures give [`Outcome::Deferred`] or
    /// [`Outcome::Failed`].
    #[tracing::instrument(skip_all, fields(op.kind = "user_unbind", user.id = %user_id))]
    pub async fn unbind(&self, user_id: &UserId) -> Result<Outcome> {
        let result = self.unbind_once(user_id).await;
        super::report(&result);
        result
    }

    async fn unbind_once(&self, user_id: &UserId) -> Result<Outcome> {
        let now = self.fx.now();
        let binding = self
            .fx
            .bindings
            .get(user_id)
            .await?
            .ok_or_else(|| Error::not_found(Entity::Binding, user_id))?;
        let settled = matches!(
            binding.state,
            BindingState::Blocked | BindingState::DeletedInM365 | BindingState::Unselected
        );
        if settled && binding.in_flight.is_none() {
            return Ok(Outcome::Unchanged {
                binding: Some(binding),
            });
        }
        let subject = OperationSubject::User(user_id.clone());
        let op = OperationId::new(OperationKind::UserUnbind, &subject, binding.version);
        match self.fx.claim(&op, now).await? {
            Claim::Claimed => {}
            Claim::InProgress { lease_until } => return Ok(Outcome::InProgress { lease_until }),
            Claim::AlreadyDone(outcome) => {
                return Ok(Outcome::AlreadyDone {
                    binding: Some(binding),
                    outcome,
                });
            }
        }
        let expect = Expect::Version(binding.version);
        let binding = Binding {
            in_flight: Some(InFlight {
                operation_id: op.clone(),
                kind: OperationKind::UserUnbind,
                since: now,
                address_held_since: None,
                create_sent_at: None,
                welcome: false,
                retry_due_at: None,
            }),
            ..binding
        };
        let run = Run::new(op, OperationKind::UserUnbind, user_id.clone(), now, None);
        let result = self.block(&run, binding, expect).await;
        self.fx.abandon(&run.op, result).await
    }

    /// Re-runs a queued unbind (called by [`super::retry::RetryDispatcher`]).
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_unbind", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let result = self.retry_once(message, user_id).await;
        super::report(&result);
        result
    }

    async fn retry_once(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let now = self.fx.now();
        let run = Run::new(
            message.operation_id.clone(),
            OperationKind::UserUnbind,
            user_id.clone(),
            now,
            Some(message),
        );
        match self.fx.claim(&run.op, now).await? {
            Claim::Claimed => {}
            Claim::InProgress { lease_until } => return Ok(Outcome::InProgress { lease_until }),
            Claim::AlreadyDone(outcome) => {
                let binding = self.fx.bindings.get(user_id).await?;
                return Ok(Outcome::AlreadyDone { binding, outcome });
            }
        }
        let result = async {
            match self.fx.bindings.get(user_id).await? {
                Some(b)
                    if b.in_flight
                        .as_ref()
                        .is_some_and(|f| f.operation_id == run.op) =>
                {
                    let expect = Expect::Version(b.version);
                    self.block(&run, b, expect).await
                }
                _ => self.fx.superseded(&run).await,
            }
        }
        .await;
        self.fx.abandon(&run.op, result).await
    }

    async fn block(&self, run: &Run<'_>, mut binding: Binding, expect: Expect) -> Result<Outcome> {
        let id = match binding.m365_object_id.clone() {
            Some(id) => id,
            None => match self.find_account(&binding).await {
                Ok(Some(id)) => id,
                Ok(None) => {
                    binding.state = BindingState::Blocked;
                    return self.settle(run, binding, expect, Change::NoAccount).await;
                }
                Err(e) => return self.fx.fail(run, binding, expect, e, UNBIND_FAILURE).await,
            },
        };
        match self
            .directory
            .set_account_enabled(&binding.tenant_id, &id, false)
            .await
        {
            Ok(()) => {
                binding.state = BindingState::Blocked;
                binding.m365_object_id = Some(id);
                self.settle(run, binding, expect, Change::Blocked).await
            }
            Err(e) if is_m365_not_found(&e) => {
                binding.state = BindingState::DeletedInM365;
                self.settle(run, binding, expect, Change::DeletedInM365)
                    .await
            }
            Err(e) => self.fx.fail(run, binding, expect, e, UNBIND_FAILURE).await,
        }
    }

    /// A binding whose create never answered may still have an account: look it up by UPN.
    async fn find_account(&self, binding: &Binding) -> Result<Option<M365ObjectId>> {
        let Some(user) = self.users.get(&binding.user_id).await? else {
            return Ok(None);
        };
        Ok(self
            .directory
            .find_user_by_upn(&binding.tenant_id, &user.email)
            .await?
            .map(|u| u.id))
    }

    async fn settle(
        &self,
        run: &Run<'_>,
        mut binding: Binding,
        expect: Expect,
        change: Change,
    ) -> Result<Outcome> {
        binding.pending_reason = None;
        binding.last_error = None;
        binding.in_flight = None;
        self.fx.succeed(run, &binding, expect, change).await
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::error::UnavailableReason;
    use crate::model::EventKind;
    use crate::ports::UserStore;
    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{World, throttled, uid, unavailable};

    #[tokio::test]
    async fn unbinding_blocks_sign_in_never_deletes_and_records_user_deprovision() {
        // R-BIND-5
        let w = World::new().await;
        w.user("adele").await;
        w.bind("adele").await;
        let id = World::object_id(&w.binding("adele").await);
        let Outcome::Done { binding, change } = w.unbinder().unbind(&uid("adele")).await.unwrap()
        else {
            panic!("unbound")
        };
        assert_eq!(change, Change::Blocked);
        assert_eq!(binding.state, BindingState::Blocked);
        assert_eq!(binding.m365_object_id, Some(id.clone()));
        let account = w.directory.user(&w.tenant.id, &id).expect("never deleted");
        assert!(!account.account_enabled);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
        let event = w
            .events
            .all()
            .into_iter()
            .find(|e| e.kind == EventKind::UserDeprovision)
            .unwrap();
        assert_eq!(event.user_id, Some(uid("adele")));
    }

    #[tokio::test]
    async fn unbinding_an_account_deleted_in_m365_leaves_the_directory_user_unchanged() {
        // R-BIND-8
        let w = World::new().await;
        let user = w.user("adele").await;
        w.bind("adele").await;
        let id = World::object_id(&w.binding("adele").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        let Outcome::Done { binding, change } = w.unbinder().unbind(&uid("adele")).await.unwrap()
        else {
            panic!("settled")
        };
        assert_eq!(change, Change::DeletedInM365);
        assert_eq!(binding.state, BindingState::DeletedInM365);
        assert_eq!(w.users.get(&uid("adele")).await.unwrap(), Some(user));
        assert_eq!(w.count_events(EventKind::UserDeprovision), 0);
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn unbinding_twice_changes_nothing_the_second_time() {
        // R-BIND-5 (idempotent)
        let w = World::new().await;
        w.user("adele").await;
        w.bind("adele").await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        let calls = w.directory.calls();
        let again = w.unbinder().unbind(&uid("adele")).await.unwrap();
        assert!(matches!(again, Outcome::Unchanged { .. }));
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
    }

    #[tokio::test]
    async fn unbinding_a_user_without_a_binding_is_not_found() {
        // R-SAFE-1
        let w = World::new().await;
        w.user("adele").await;
        let err = w.unbinder().unbind(&uid("adele")).await.unwrap_err();
        assert_eq!(err.code(), "not_found");
    }

    #[tokio::test]
    async fn a_throttled_unbind_waits_on_the_queue_and_then_blocks() {
        // R-BIND-5, R-BIND-6
        let mut w = World::new().await;
        w.user("adele").await;
        w.bind("adele").await;
        w.directory.fail_next_call(throttled());
        let Outcome::Deferred { binding, retry } =
            w.unbinder().unbind(&uid("adele")).await.unwrap()
        else {
            panic!("deferred")
        };
        // The account still signs in meanwhile: the state stays, the reason says why it waits.
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(binding.pending_reason.as_deref(), Some("throttled"));
        assert_eq!(retry.kind, OperationKind::UserUnbind);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 0);
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Blocked);
        assert_eq!(binding.pending_reason, None);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
    }

    #[tokio::test]
    async fn an_unbind_out_of_retries_leaves_the_binding_in_error_and_its_message_in_the_dlq() {
        // R-BIND-6
        let policy = crate::usecase::RetryPolicy {
            max_attempts: 1,
            ..crate::usecase::RetryPolicy::default()
        };
        let mut w = World::with_policy(policy, crate::usecase::testkit::ADDRESS_RELEASE).await;
        w.user("adele").await;
        w.bind("adele").await;
        w.directory.fail_next_call(throttled());
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Service));
        assert!(matches!(
            w.unbinder().unbind(&uid("adele")).await.unwrap(),
            Outcome::Deferred { .. }
        ));
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Error);
        assert_eq!(binding.last_error.unwrap().code, "service_unavailable");
        assert_eq!(w.dead_letters.len(), 1);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 0);
    }

    #[tokio::test]
    async fn an_unbind_replaced_by_a_rebind_is_dropped_when_its_retry_comes() {
        // R-BIND-5 (the latest request wins)
        let mut w = World::new().await;
        w.user("adele").await;
        w.bind("adele").await;
        let id = World::object_id(&w.binding("adele").await);
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Service));
        assert!(matches!(
            w.unbinder().unbind(&uid("adele")).await.unwrap(),
            Outcome::Deferred { .. }
        ));
        assert!(matches!(w.bind("adele").await, Outcome::Done { .. }));
        let outcomes = w.drain().await;
        assert_eq!(
            outcomes,
            vec![RetryOutcome::Ran(Box::new(Outcome::Superseded))]
        );
        assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
        assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 0);
    }

    #[tokio::test]
    async fn unbinding_while_the_create_never_answered_blocks_the_account_found_by_upn() {
        // R-BIND-5, R-BIND-2 (a create whose answer was lost)
        let w = World::new().await;
        w.user("adele").await;
        w.directory.pass_next_call();
        w.directory
            .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout));
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        let Outcome::Done { binding, change } = w.unbinder().unbind(&uid("adele")).await.unwrap()
        else {
            panic!("unbound")
        };
        assert_eq!(change, Change::Blocked);
        let id = World::object_id(&binding);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
    }
}
