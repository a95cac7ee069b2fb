//! Unbind a user (DESIGN §4 "unbind"): block sign-in in M365 and revoke the user's sessions, never
//! delete (R-BIND-5, R-BIND-9); an account already deleted in M365 leaves the directory user
//! unchanged and the binding `deleted_in_m365` (R-BIND-8).
//!
//! The unbind records its intent (the binding with the unbind in flight) before it writes to M365
//! (R-BIND-12): a bind racing it loses its final binding write to that intent and blocks the
//! account it enabled, and a retry of the replaced bind is dropped. When another request wrote the
//! binding between the unbind's read and its intent, the unbind reads it again (a few times).

use crate::error::{Entity, Error, Result};
use crate::model::{
    Binding, BindingState, OperationId, OperationKind, OperationSubject, RetryMessage, UserId,
};
use crate::ports::Ports;
use crate::ports::{BindingStore, Directory, Expect, UserStore};

use super::{
    Change, Effects, INTENT_ATTEMPTS, OnFailure, Outcome, Run, account_of, is_m365_not_found,
};

use_case! {
    /// The unbind use case.
    pub struct Unbind {
        ports: [users: Users, directory: Directory],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
            /// Licences: removed after the unbind when the tenant's `removeLicensesOnUnbind` is
            /// set (R-LIC-1, [`Licenses::release`]).
            licenses: Option<super::licenses::Licenses<'a, P>> = super::licenses::Licenses::follow,
        ],
    }
}

/// While waiting, the binding keeps its state (the account still signs in); when the budget runs
/// out it becomes `error` (R-BIND-6).
const UNBIND_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: Some(BindingState::Error),
};

impl<P: Ports> Unbind<'_, P> {
    /// Unbinds `user_id`: records the intent, then `accountEnabled=false` and
    /// `revokeSignInSessions` → binding `blocked` + `user_deprovision` (R-BIND-5, R-BIND-9). M365
    /// 404 → `deleted_in_m365`, no event, directory user untouched (R-BIND-8). A binding already
    /// `blocked`, `deleted_in_m365` or `unselected` with nothing in flight is left alone
    /// ([`Outcome::Unchanged`]).
    ///
    /// # Errors
    /// `NotFound` (binding); store failures. M365 failures give [`Outcome::Deferred`] or
    /// [`Outcome::Failed`].
    #[tracing::instrument(skip_all, fields(op.kind = "user_unbind", user.id = %user_id))]
    pub async fn unbind(&self, user_id: &UserId) -> Result<Outcome> {
        let result = super::reported(self.unbind_once(user_id).await);
        self.release_licenses(&result).await;
        result
    }

    /// After an unbind that blocked the account: its licences are removed when the tenant says
    /// so (R-LIC-1). Never fails the unbind.
    async fn release_licenses(&self, result: &Result<Outcome>) {
        let (Ok(Outcome::Done { binding, .. }), Some(licenses)) = (result, &self.licenses) else {
            return;
        };
        let released: super::BoxFuture<'_, _> = Box::pin(licenses.release(&binding.user_id));
        if let Err(e) = released.await {
            tracing::warn!(
                error.code = e.code(),
                "unbound user's licences not removed now"
            );
        }
    }

    async fn unbind_once(&self, user_id: &UserId) -> Result<Outcome> {
        let now = self.fx.now();
        let mut last = None;
        for _ in 0..INTENT_ATTEMPTS {
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
            if let Some(ended) = self.fx.claim_new(&op, now, Some(&binding)).await? {
                return Ok(ended);
            }
            let run = Run::new(
                op,
                OperationKind::UserUnbind,
                user_id.clone(),
                now,
                None,
                self.actor,
            );
            // The intent first (R-BIND-12): a bind finishing after this point loses its final
            // write and blocks what it enabled. A create the replaced bind sent may still appear:
            // the intent keeps looking for it.
            match self.fx.write_intent(&run, binding).await? {
                Ok(stored) => {
                    let expect = Expect::Version(stored.version);
                    let result = self.block(&run, stored, expect).await;
                    return self.fx.abandon(&run.op, result).await;
                }
                Err(stale) => last = Some(stale),
            }
        }
        Err(last.unwrap_or_else(|| Error::stale(Entity::Binding, 0)))
    }

    /// Re-runs a queued unbind (called by [`super::retry::RetryDispatcher`]).
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_unbind", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let result = self
            .fx
            .rerun(
                message,
                OperationKind::UserUnbind,
                user_id,
                async |run| match self.fx.bindings.get(user_id).await? {
                    Some(b) if run.owns(&b) => {
                        let expect = Expect::Version(b.version);
                        self.block(run, b, expect).await
                    }
                    _ => self.fx.superseded(run).await,
                },
            )
            .await;
        let result = super::reported(result);
        self.release_licenses(&result).await;
        result
    }

    async fn block(&self, run: &Run<'_>, mut binding: Binding, expect: Expect) -> Result<Outcome> {
        let id = match self.find_account(run, &binding).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                binding.state = BindingState::Blocked;
                return self.settle(run, binding, expect, Change::NoAccount).await;
            }
            Err(e) => return self.fx.fail(run, binding, expect, e, UNBIND_FAILURE).await,
        };
        let tenant = binding.tenant_id.clone();
        let mut result = self
            .directory
            .set_account_enabled(&tenant, &id, false)
            .await;
        if result.is_ok() {
            // Blocked first, then the open sessions end (R-BIND-9: unbind revokes sessions too).
            result = self.directory.revoke_sign_in_sessions(&tenant, &id).await;
        }
        match result {
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

    /// The binding's account; one whose create never answered may still have one: look it up by
    /// UPN (waiting out replication lag after a create, graph-spec §7.4).
    async fn find_account(
        &self,
        run: &Run<'_>,
        binding: &Binding,
    ) -> Result<Option<crate::model::M365ObjectId>> {
        if let Some(id) = &binding.m365_object_id {
            return Ok(Some(id.clone()));
        }
        let Some(user) = self.users.get(&binding.user_id).await? else {
            return Ok(None);
        };
        let grace = self.fx.policy.lookup_grace;
        account_of(self.directory, binding, &user.email, run.now, grace).await
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
        binding.suspended_reason = None;
        self.fx.succeed(run, &binding, expect, change).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UnavailableReason;
    use crate::model::EventKind;
    use crate::ports::UserStore;
    use crate::testing::Stage;
    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{World, interleaved, throttled, uid, unavailable};
    use chrono::TimeDelta;

    #[tokio::test]
    async fn unbinding_blocks_sign_in_never_deletes_and_records_user_deprovision() {
        // R-BIND-5
        let w = World::with_bound(&["adele"]).await;
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
        let event = w.event(EventKind::UserDeprovision);
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
        let w = World::with_bound(&["adele"]).await;
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
        let mut w = World::with_bound(&["adele"]).await;
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
        let mut w = World::with_max_attempts(1).await;
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
        let mut w = World::with_bound(&["adele"]).await;
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
    async fn unbinding_revokes_the_sessions_after_blocking_sign_in() {
        // R-BIND-9 (unbind revokes sessions too), R-BIND-5
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        assert_eq!(w.directory.sessions_valid_from(&w.tenant.id, &id), None);
        w.clock.advance(chrono::TimeDelta::minutes(3));
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        assert_eq!(
            w.directory.sessions_valid_from(&w.tenant.id, &id),
            Some(w.now())
        );
        // A revocation that fails waits on the queue; the retry blocks and revokes again.
        let mut w2 = World::new().await;
        w2.user("alex").await;
        w2.bind("alex").await;
        let id = World::object_id(&w2.binding("alex").await);
        w2.directory.pass_next_call();
        w2.directory.fail_next_call(throttled());
        assert!(matches!(
            w2.unbinder().unbind(&uid("alex")).await.unwrap(),
            Outcome::Deferred { .. }
        ));
        assert_eq!(w2.directory.sessions_valid_from(&w2.tenant.id, &id), None);
        w2.drain().await;
        assert_eq!(w2.binding("alex").await.state, BindingState::Blocked);
        assert!(
            w2.directory
                .sessions_valid_from(&w2.tenant.id, &id)
                .is_some()
        );
        assert_eq!(w2.count_events(EventKind::UserDeprovision), 1);
    }

    /// Both sides of a race end the same way: account blocked, binding `blocked` with the
    /// account's id, one `user_deprovision`, no enabled account behind a binding that says
    /// otherwise (R-BIND-12).
    fn assert_unbind_won(w: &World, id: &crate::model::M365ObjectId, binding: &Binding) {
        assert_eq!(binding.state, BindingState::Blocked, "{binding:?}");
        assert_eq!(binding.in_flight, None);
        assert_eq!(binding.m365_object_id.as_ref(), Some(id));
        assert!(
            !w.directory.user(&w.tenant.id, id).unwrap().account_enabled,
            "the account is blocked"
        );
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
    }

    /// Adele bound, then unbound: her binding is `blocked` with her account.
    async fn blocked(w: &World) -> crate::model::M365ObjectId {
        w.user("adele").await;
        w.bind("adele").await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1, "one so far");
        World::object_id(&w.binding("adele").await)
    }

    #[tokio::test]
    async fn an_unbind_whose_intent_comes_after_the_binds_final_write_blocks_the_account() {
        // R-BIND-12 (bind finishing first): the unbind read the binding while the bind was under
        // way, the bind's final write landed first, the unbind's intent then conflicts, is
        // re-read and wins.
        let w = World::new().await;
        let id = blocked(&w).await;
        let events_before = w.events.all().len();
        let (bind_done, bind_finished) = futures::channel::oneshot::channel::<()>();
        let mut bind_graph = w.directory.hold_next("set_account_enabled", Stage::Before);
        let bind = async {
            let outcome = w.bind("adele").await;
            let _ = bind_done.send(());
            outcome
        };
        let unbind = async {
            assert!(
                bind_graph.arrived().await,
                "the bind wrote its intent and reached M365"
            );
            let mut intent = w.bindings.hold_next_put();
            let director = async {
                assert!(intent.arrived().await, "the unbind read the binding");
                bind_graph.release();
                bind_finished.await.unwrap();
                intent.release();
            };
            let (unbinder, adele) = (w.unbinder(), uid("adele"));
            let (outcome, ()) = tokio::join!(unbinder.unbind(&adele), director);
            outcome.unwrap()
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert!(matches!(
            bound,
            Outcome::Done {
                change: Change::Unblocked,
                ..
            }
        ));
        let Outcome::Done { binding, change } = unbound else {
            panic!("unbound")
        };
        assert_eq!(change, Change::Blocked);
        // The first unbind's event plus this one; the bind's re-enable stands in the trail too.
        assert_eq!(w.count_events(EventKind::UserDeprovision), 2);
        assert_eq!(w.events.all().len(), events_before + 2);
        assert_eq!(binding.state, BindingState::Blocked);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert!(w.directory.sessions_valid_from(&w.tenant.id, &id).is_some());
    }

    #[tokio::test]
    async fn a_bind_whose_enable_lands_after_a_finished_unbind_blocks_the_account_again() {
        // R-BIND-12 (unbind first): the unbind recorded its intent, blocked and settled while the
        // bind's enable was on its way; the enable lands afterwards, the bind's final write loses
        // and the bind blocks what it enabled, recording nothing.
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        // A pending re-bind (its unblock throttled) that the retry worker runs now.
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        let mut enable = w.directory.hold_next("set_account_enabled", Stage::Before);
        let bind = w.bind("adele");
        let unbind = async {
            assert!(enable.arrived().await);
            let outcome = w.unbinder().unbind(&uid("adele")).await.unwrap();
            enable.release();
            outcome
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert!(matches!(
            unbound,
            Outcome::Done {
                change: Change::Blocked,
                ..
            }
        ));
        assert_eq!(bound, Outcome::Superseded);
        assert_eq!(
            w.count_events(EventKind::UserUpdateProvision),
            0,
            "nothing false"
        );
        assert_eq!(
            w.count_events(EventKind::UserDeprovision),
            2,
            "both unbinds"
        );
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Blocked);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert!(w.queue.snapshot().is_empty(), "nothing left to run");
    }

    #[tokio::test]
    async fn an_unbind_intent_between_the_binds_graph_write_and_its_final_write_wins() {
        // R-BIND-12: the bind's enable committed in M365; before the bind writes the binding, the
        // unbind records its intent (its own Graph call still to come). The bind loses, blocks
        // the account, and the unbind then blocks and revokes as usual.
        let w = World::new().await;
        let id = blocked(&w).await;
        let mut enabled = w
            .directory
            .hold_next("set_account_enabled", Stage::AfterCommit);
        let bind = w.bind("adele");
        let unbind = async {
            assert!(enabled.arrived().await);
            assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
            // The unbind's own block waits until the bind has seen it lost.
            let mut unbind_block = w.directory.hold_next("set_account_enabled", Stage::Before);
            let director = async {
                assert!(
                    unbind_block.arrived().await,
                    "the unbind's intent is stored"
                );
                enabled.release();
                // The bind's compensating block and the unbind's block both go through.
                unbind_block.release();
            };
            let (unbinder, adele) = (w.unbinder(), uid("adele"));
            let (outcome, ()) = tokio::join!(unbinder.unbind(&adele), director);
            outcome.unwrap()
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert_eq!(bound, Outcome::Superseded);
        assert!(matches!(
            unbound,
            Outcome::Done {
                change: Change::Blocked,
                ..
            }
        ));
        let binding = w.binding("adele").await;
        assert_eq!(
            w.count_events(EventKind::UserUpdateProvision),
            0,
            "nothing false"
        );
        assert_eq!(binding.state, BindingState::Blocked);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(
            w.count_events(EventKind::UserDeprovision),
            2,
            "both unbinds"
        );
    }

    #[tokio::test]
    async fn an_unbind_racing_a_first_bind_blocks_the_account_the_bind_is_creating() {
        // R-BIND-12 (the case: without it the account stayed enabled behind a `blocked`
        // binding without an object id): the create commits, the unbind finds the account by UPN,
        // blocks it, and the bind's final write loses.
        let w = World::new().await;
        w.user("adele").await;
        let mut created = w.directory.hold_next("create_user", Stage::AfterCommit);
        let bind = w.bind("adele");
        let unbind = async {
            assert!(created.arrived().await);
            let outcome = w.unbinder().unbind(&uid("adele")).await.unwrap();
            created.release();
            outcome
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert_eq!(bound, Outcome::Superseded);
        let Outcome::Done { binding, change } = unbound else {
            panic!("unbound")
        };
        assert_eq!(change, Change::Blocked);
        let id = World::object_id(&binding);
        assert_unbind_won(&w, &id, &w.binding("adele").await);
        assert_eq!(
            w.count_events(EventKind::UserCreateProvision),
            0,
            "nothing false"
        );
        assert!(
            w.notifier.sent().is_empty(),
            "no welcome for a bind that lost"
        );
    }

    #[tokio::test]
    async fn a_create_not_yet_visible_to_the_unbind_is_waited_for_and_blocked() {
        // R-BIND-12, graph-spec §7.4: the unbind's lookup misses the new account (replication
        // lag); it waits on the queue instead of settling "no account", and the losing bind tells
        // the binding which account it made.
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.set_replication_lag(TimeDelta::seconds(20));
        let mut created = w.directory.hold_next("create_user", Stage::AfterCommit);
        let bind = w.bind("adele");
        let unbind = async {
            assert!(created.arrived().await);
            let outcome = w.unbinder().unbind(&uid("adele")).await.unwrap();
            created.release();
            outcome
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert_eq!(bound, Outcome::Superseded);
        let Outcome::Deferred { retry, .. } = unbound else {
            panic!("the unbind waits for the account to show: {unbound:?}")
        };
        assert_eq!(retry.reason, "not_yet_visible");
        let accounts = w.directory.active_user_count(&w.tenant.id);
        assert_eq!(accounts, 1);
        w.drain().await;
        let binding = w.binding("adele").await;
        let id = World::object_id(&binding);
        assert_unbind_won(&w, &id, &binding);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 0);
    }

    #[tokio::test]
    async fn a_create_landing_after_the_unbind_recorded_its_intent_is_blocked_by_the_losing_bind() {
        // R-BIND-12 (unbind first, create path): the unbind's lookup finds nothing yet and waits
        // on the queue (a create is under way); the create then commits, the bind loses its final
        // write and blocks the new account at once; the unbind's retry finds it and settles.
        let mut w = World::new().await;
        w.user("adele").await;
        let mut create = w.directory.hold_next("create_user", Stage::Before);
        let bind = w.bind("adele");
        let unbind = async {
            assert!(create.arrived().await, "the create is about to be sent");
            let outcome = w.unbinder().unbind(&uid("adele")).await.unwrap();
            create.release();
            outcome
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert_eq!(bound, Outcome::Superseded);
        assert!(
            matches!(&unbound, Outcome::Deferred { retry, .. } if retry.reason == "not_yet_visible"),
            "{unbound:?}"
        );
        let accounts = w.directory.active_user_count(&w.tenant.id);
        assert_eq!(accounts, 1);
        let found = w
            .directory
            .find_user_by_upn(
                &w.tenant.id,
                &crate::model::Email::parse("adele@contoso.com").unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            !found.account_enabled,
            "blocked by the bind that lost, before any retry"
        );
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_unbind_won(&w, &found.id, &binding);
        assert_eq!(
            w.count_events(EventKind::UserCreateProvision),
            0,
            "nothing false"
        );
    }

    #[tokio::test]
    async fn a_bind_taken_over_between_its_check_and_its_write_still_blocks_the_account() {
        // R-BIND-12 (the narrow window: the unbind's intent lands after the bind's last read and
        // before its final write). The account ends blocked behind a blocked binding; the bind's
        // event, appended before its write, is the known limit of this window (see the report).
        let w = World::new().await;
        let id = blocked(&w).await;
        let mut enabled = w
            .directory
            .hold_next("set_account_enabled", Stage::AfterCommit);
        let bind = w.bind("adele");
        let unbind = async {
            assert!(enabled.arrived().await);
            let mut final_write = w.bindings.hold_next_put();
            enabled.release();
            assert!(
                final_write.arrived().await,
                "the bind checked and is about to write"
            );
            // The hold caught the bind's write, so the unbind's own writes go through.
            let outcome = w.unbinder().unbind(&uid("adele")).await.unwrap();
            final_write.release();
            outcome
        };
        let (bound, unbound) = interleaved(async { tokio::join!(bind, unbind) }).await;
        assert_eq!(bound, Outcome::Superseded);
        assert!(matches!(unbound, Outcome::Done { .. }));
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Blocked);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
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
