//! Follow a bound user's directory `state` in M365 (R-BIND-9). A user whose `state` becomes
//! `disabled` gets sign-in blocked (`accountEnabled=false`) and its sessions revoked
//! (`revokeSignInSessions`): binding `suspended` with `suspendedReason: directory_disabled`, event
//! `user_deprovision` with reason `directory_disabled`. Back to `active`, the account gets the
//! directory's attributes and sign-in again (`user_update_provision`, reason `reactivated`) — unless
//! the directory password expired meanwhile: then it stays `suspended`, now with reason
//! `password_expired`, until a new password is set (R-PWD-4).
//!
//! The operation `user_state/user:<id>/<user version>` decides from the user and the binding as they
//! are when it runs ([`action`]), so a retry after a later change does what the latest state asks.
//! It records its intent on the binding (itself as the in-flight operation) before it writes to
//! M365: a queued bind is superseded, an unbind racing it sees it, and a bind that started before
//! the user was disabled loses its final binding write and blocks the account it enabled
//! (R-BIND-12). Throttling and 5xx defer it to the retry queue like every other write.

use chrono::{DateTime, Utc};

use crate::error::{Conflict, Entity, Error, Result};
use crate::model::{
    Binding, BindingError, BindingState, DirectoryUser, OperationId, OperationKind,
    OperationSubject, RetryMessage, SuspendedReason, UserId, UserState,
};
use crate::policy::password::DirectoryPasswordPolicy;
use crate::ports::Ports;
use crate::ports::{BindingStore, Directory, Expect, UserStore};

use super::{
    Change, Effects, INTENT_ATTEMPTS, OnFailure, Outcome, Run, account_of, is_m365_not_found,
    is_stale, patch_for,
};

use_case! {
    /// The directory-state use case.
    pub struct Suspension {
        ports: [users: Users, directory: Directory],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
            /// The directory password policy (its maximum age decides a re-activation, R-PWD-4).
            password_policy: &'a DirectoryPasswordPolicy = Ports::password_policy,
        ],
    }
}

/// What the user's directory state asks of its binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateAction {
    /// Disabled user, live binding: block sign-in, revoke sessions, `suspended`
    /// (`directory_disabled`).
    Suspend,
    /// Active user, binding suspended for `directory_disabled`: sign-in again.
    Reactivate,
    /// Active user, binding suspended for `directory_disabled`, password expired: stay
    /// suspended for `password_expired`.
    KeepSuspended,
    /// Nothing: the binding already follows the user's state, or is not bound.
    Nothing,
}

/// What `user`'s directory state asks of `binding` at `now` (R-BIND-9). A disabled user's
/// `provisioned`, `pending` or `error` binding, or one suspended for its password, is suspended;
/// `blocked`, `unselected` and `deleted_in_m365` bindings have nothing left to block. An active
/// user's binding suspended for `directory_disabled` is re-activated, or kept suspended for
/// `password_expired` when the directory password is older than the policy's maximum age.
#[must_use]
pub fn action(
    user: &DirectoryUser,
    binding: &Binding,
    policy: &DirectoryPasswordPolicy,
    now: DateTime<Utc>,
) -> StateAction {
    let suspension = binding.suspension();
    match user.state {
        UserState::Disabled => match binding.state {
            BindingState::Provisioned | BindingState::Pending | BindingState::Error => {
                StateAction::Suspend
            }
            BindingState::Suspended if suspension != Some(SuspendedReason::DirectoryDisabled) => {
                StateAction::Suspend
            }
            _ => StateAction::Nothing,
        },
        UserState::Active if suspension == Some(SuspendedReason::DirectoryDisabled) => {
            let expired = user
                .password_changed_at
                .is_some_and(|at| policy.is_expired(at, now));
            if expired {
                StateAction::KeepSuspended
            } else if binding.m365_object_id.is_some() {
                StateAction::Reactivate
            } else {
                StateAction::Nothing
            }
        }
        UserState::Active => StateAction::Nothing,
    }
}

/// What a saved directory user needs in M365.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSync {
    /// Nothing (unbound, or M365 already follows the user).
    Nothing,
    /// Its binding does not follow its `state`: run [`Suspension::apply`] (R-BIND-9; this also
    /// pushes the attributes on a re-activation).
    State,
    /// An attribute M365 holds changed: run [`super::update::UpdateAttributes::push`] (R-BIND-7).
    Attributes,
}

/// What `after` (the user as just stored; `before` as it was, if it existed) needs in M365 given
/// its `binding`. The state is checked against the binding, not against `before`, so saving the
/// same user again also catches up a state change whose earlier run did not finish.
#[must_use]
pub fn sync_needed(
    before: Option<&DirectoryUser>,
    after: &DirectoryUser,
    binding: Option<&Binding>,
    policy: &DirectoryPasswordPolicy,
    now: DateTime<Utc>,
) -> UserSync {
    let Some(binding) = binding else {
        return UserSync::Nothing;
    };
    if action(after, binding, policy, now) != StateAction::Nothing {
        UserSync::State
    } else if before.is_some_and(|b| super::update::attributes_changed(b, after)) {
        UserSync::Attributes
    } else {
        UserSync::Nothing
    }
}

/// While a suspension waits on the retry queue the binding keeps its state (the reason says why it
/// waits); when it gives up the binding shows `error` — the account may still sign in.
const SUSPEND_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: Some(BindingState::Error),
};

/// A re-activation that gives up leaves the account suspended.
const REACTIVATE_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: Some(BindingState::Suspended),
};

impl<P: Ports> Suspension<'_, P> {
    /// Brings `user_id`'s binding in line with the user's directory `state` (see [`action`]).
    /// Called after the user was stored with a changed `state`; an unbound user, or a binding that
    /// already follows the state, gives [`Outcome::Unchanged`] and writes nothing.
    ///
    /// # Errors
    /// `NotFound` (user); `Conflict::StaleVersion` when other requests kept changing the binding;
    /// store failures. M365 failures give [`Outcome::Deferred`] or [`Outcome::Failed`].
    #[tracing::instrument(skip_all, fields(op.kind = "user_state", user.id = %user_id))]
    pub async fn apply(&self, user_id: &UserId) -> Result<Outcome> {
        super::reported(self.apply_once(user_id).await)
    }

    async fn apply_once(&self, user_id: &UserId) -> Result<Outcome> {
        let now = self.fx.now();
        let user = super::stored_user(self.users, user_id).await?;
        let subject = OperationSubject::User(user_id.clone());
        let op = OperationId::new(OperationKind::UserState, &subject, user.version);
        let mut last = None;
        for _ in 0..INTENT_ATTEMPTS {
            let Some(binding) = self.fx.bindings.get(user_id).await? else {
                return Ok(Outcome::Unchanged { binding: None });
            };
            if action(&user, &binding, self.password_policy, now) == StateAction::Nothing {
                return Ok(Outcome::Unchanged {
                    binding: Some(binding),
                });
            }
            if let Some(ended) = self.fx.claim_new(&op, now, Some(&binding)).await? {
                return Ok(ended);
            }
            let run = Run::new(
                op.clone(),
                OperationKind::UserState,
                user_id.clone(),
                now,
                None,
                self.actor,
            );
            match self.fx.write_intent(&run, binding).await? {
                Ok(binding) => {
                    let result = self.act(&run, &user, binding).await;
                    return self.fx.abandon(&run.op, result).await;
                }
                // Another request wrote the binding since it was read: read it again.
                Err(stale) => last = Some(stale),
            }
        }
        Err(last.unwrap_or_else(|| Error::stale(Entity::Binding, 0)))
    }

    /// Re-runs a queued state operation with the user and binding as they are now.
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_state", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let result = self
            .fx
            .rerun(message, OperationKind::UserState, user_id, async |run| {
                let user = self.users.get(user_id).await?;
                let binding = self.fx.bindings.get(user_id).await?;
                match (user, binding) {
                    // Still ours: the latest state decides.
                    (Some(user), Some(binding)) if run.owns(&binding) => {
                        self.act(run, &user, binding).await
                    }
                    // A later bind, unbind or state change took the binding over.
                    _ => self.fx.superseded(run).await,
                }
            })
            .await;
        super::reported(result)
    }

    async fn act(&self, run: &Run<'_>, user: &DirectoryUser, binding: Binding) -> Result<Outcome> {
        match action(user, &binding, self.password_policy, run.now) {
            StateAction::Suspend => self.suspend(run, user, binding).await,
            StateAction::Reactivate => self.reactivate(run, user, binding).await,
            StateAction::KeepSuspended => {
                let mut binding = binding;
                binding.suspended_reason = Some(SuspendedReason::PasswordExpired);
                self.settle(run, binding, Change::KeptSuspended).await
            }
            StateAction::Nothing => {
                // The state changed back meanwhile: drop the intent, change nothing.
                let mut binding = binding;
                binding.in_flight = None;
                binding.pending_reason = None;
                let expect = Expect::Version(binding.version);
                match self.fx.bindings.put(&binding, expect).await {
                    Ok(_) => {}
                    Err(e) if is_stale(&e) => {}
                    Err(e) => return Err(e),
                }
                self.fx.superseded(run).await
            }
        }
    }

    /// Blocks sign-in, then revokes the sessions (in that order: revoked first, the user could
    /// sign in again before the block).
    async fn suspend(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        mut binding: Binding,
    ) -> Result<Outcome> {
        let expect = Expect::Version(binding.version);
        let grace = self.fx.policy.lookup_grace;
        let id = match account_of(self.directory, &binding, &user.email, run.now, grace).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                // A bind that never reached an account: it stops here; binding again once the user
                // is active creates or adopts it.
                binding.state = BindingState::Blocked;
                let stopped = BindingError {
                    code: Conflict::UserDisabled {
                        user: user.id.clone(),
                    }
                    .code()
                    .to_owned(),
                    message: "the user was disabled in the directory before the bind finished"
                        .to_owned(),
                    graph_request_id: None,
                    at: run.now,
                };
                return self
                    .settle_with(run, binding, Change::NoAccount, Some(stopped))
                    .await;
            }
            Err(e) => return self.fx.fail(run, binding, expect, e, SUSPEND_FAILURE).await,
        };
        let tenant = binding.tenant_id.clone();
        let mut result = self
            .directory
            .set_account_enabled(&tenant, &id, false)
            .await;
        if result.is_ok() {
            result = self.directory.revoke_sign_in_sessions(&tenant, &id).await;
        }
        match result {
            Ok(()) => {
                binding.state = BindingState::Suspended;
                binding.suspended_reason = Some(SuspendedReason::DirectoryDisabled);
                binding.m365_object_id = Some(id);
                self.settle(run, binding, Change::Suspended).await
            }
            Err(e) if is_m365_not_found(&e) => {
                binding.state = BindingState::DeletedInM365;
                binding.suspended_reason = None;
                self.settle(run, binding, Change::DeletedInM365).await
            }
            Err(e) => self.fx.fail(run, binding, expect, e, SUSPEND_FAILURE).await,
        }
    }

    /// The directory's attributes (they may have changed while suspended), then sign-in.
    async fn reactivate(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        mut binding: Binding,
    ) -> Result<Outcome> {
        let expect = Expect::Version(binding.version);
        let Some(id) = binding.m365_object_id.clone() else {
            return self.fx.superseded(run).await;
        };
        let tenant = binding.tenant_id.clone();
        let mut result = self
            .directory
            .update_user(&tenant, &id, &patch_for(user, None))
            .await;
        if result.is_ok() {
            result = self.directory.set_account_enabled(&tenant, &id, true).await;
        }
        match result {
            Ok(()) => {
                binding.state = BindingState::Provisioned;
                binding.suspended_reason = None;
                self.settle(run, binding, Change::Reactivated).await
            }
            Err(e) if is_m365_not_found(&e) => {
                binding.state = BindingState::DeletedInM365;
                binding.suspended_reason = None;
                self.settle(run, binding, Change::DeletedInM365).await
            }
            Err(e) => {
                self.fx
                    .fail(run, binding, expect, e, REACTIVATE_FAILURE)
                    .await
            }
        }
    }

    /// Records the outcome; a binding another request took over meanwhile keeps its state (the
    /// later request decides) and this run is superseded.
    async fn settle(&self, run: &Run<'_>, binding: Binding, change: Change) -> Result<Outcome> {
        self.settle_with(run, binding, change, None).await
    }

    async fn settle_with(
        &self,
        run: &Run<'_>,
        mut binding: Binding,
        change: Change,
        last_error: Option<BindingError>,
    ) -> Result<Outcome> {
        let expect = Expect::Version(binding.version);
        if binding.state != BindingState::Suspended {
            binding.suspended_reason = None;
        }
        binding.pending_reason = None;
        binding.last_error = last_error;
        binding.in_flight = None;
        match self.fx.succeed(run, &binding, expect, change).await {
            Err(e) if is_stale(&e) => self.fx.superseded(run).await,
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::error::UnavailableReason;
    use crate::model::EventKind;
    use crate::testing::Stage;
    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{
        World, assert_done, deferred_bind, interleaved, throttled, uid, unavailable,
    };

    async fn set_state(w: &World, id: &str, state: UserState) -> DirectoryUser {
        let mut user = w.users.get(&uid(id)).await.unwrap().unwrap();
        user.state = state;
        let v = user.version;
        w.users.replace(&user, v).await.unwrap()
    }

    async fn bound(w: &World, id: &str) -> crate::model::M365ObjectId {
        w.user(id).await;
        w.bind(id).await;
        World::object_id(&w.binding(id).await)
    }

    #[tokio::test]
    async fn a_user_disabled_in_the_directory_is_blocked_in_m365_with_sessions_revoked() {
        // R-BIND-9
        let w = World::new().await;
        let id = bound(&w, "adele").await;
        w.clock.advance(TimeDelta::minutes(5));
        set_state(&w, "adele", UserState::Disabled).await;
        let binding = assert_done(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Change::Suspended,
            BindingState::Suspended,
        );
        assert_eq!(
            binding.suspended_reason,
            Some(SuspendedReason::DirectoryDisabled)
        );
        assert_eq!(binding.in_flight, None);
        assert_eq!(binding.m365_object_id, Some(id.clone()));
        let account = w.directory.user(&w.tenant.id, &id).unwrap();
        assert!(!account.account_enabled, "sign-in blocked");
        assert_eq!(
            w.directory.sessions_valid_from(&w.tenant.id, &id),
            Some(w.now()),
            "sessions revoked now"
        );
        let events = w.events_of(EventKind::UserDeprovision);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].reason.as_deref(), Some("directory_disabled"));
        // The same state applied again changes nothing.
        let calls = w.directory.calls();
        assert!(matches!(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Outcome::Unchanged { .. }
        ));
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
    }

    #[tokio::test]
    async fn back_to_active_the_account_is_re_enabled_with_the_directory_attributes() {
        // R-BIND-9, R-BIND-7
        let w = World::new().await;
        let id = bound(&w, "adele").await;
        set_state(&w, "adele", UserState::Disabled).await;
        w.suspension().apply(&uid("adele")).await.unwrap();
        // Renamed while suspended: no push then (not provisioned).
        let mut user = set_state(&w, "adele", UserState::Active).await;
        user.job_title = Some("Director".into());
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
        let binding = assert_done(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Change::Reactivated,
            BindingState::Provisioned,
        );
        assert_eq!(binding.suspended_reason, None);
        let account = w.directory.user(&w.tenant.id, &id).unwrap();
        assert!(account.account_enabled);
        assert_eq!(account.job_title.as_deref(), Some("Director"));
        let update = w.events_with_reason("reactivated").remove(0);
        assert_eq!(update.kind, EventKind::UserUpdateProvision);
    }

    #[tokio::test]
    async fn back_to_active_with_an_expired_password_stays_suspended_for_password_expired() {
        // R-BIND-9, R-PWD-4
        let mut w = World::new().await;
        w.password_policy = DirectoryPasswordPolicy::new(8, [], Some(TimeDelta::days(30))).unwrap();
        let id = bound(&w, "adele").await;
        w.set_password("adele", "Correct-Horse-7").await;
        set_state(&w, "adele", UserState::Disabled).await;
        w.suspension().apply(&uid("adele")).await.unwrap();
        w.clock.advance(TimeDelta::days(31));
        set_state(&w, "adele", UserState::Active).await;
        let calls = w.directory.calls();
        let binding = assert_done(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Change::KeptSuspended,
            BindingState::Suspended,
        );
        assert_eq!(
            binding.suspended_reason,
            Some(SuspendedReason::PasswordExpired)
        );
        assert_eq!(w.directory.calls(), calls, "nothing to change in M365");
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 0);
        // A new password re-enables it (R-PWD-4).
        let set = w.set_password("adele", "Autumn-Leaves-42").await;
        assert!(matches!(
            set.push,
            Outcome::Done {
                change: Change::PasswordPushedAndReenabled,
                ..
            }
        ));
        assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
    }

    #[tokio::test]
    async fn a_password_set_while_disabled_is_pushed_but_does_not_re_enable_the_account() {
        // R-BIND-9 (only an expiry suspension is lifted by a new password), R-PWD-2
        let w = World::new().await;
        let id = bound(&w, "adele").await;
        set_state(&w, "adele", UserState::Disabled).await;
        w.suspension().apply(&uid("adele")).await.unwrap();
        let set = w.set_password("adele", "Correct-Horse-7").await;
        let binding = assert_done(set.push, Change::PasswordPushed, BindingState::Suspended);
        assert_eq!(
            binding.suspended_reason,
            Some(SuspendedReason::DirectoryDisabled)
        );
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
    }

    #[tokio::test]
    async fn a_throttled_suspension_waits_on_the_retry_queue_and_then_blocks() {
        // R-BIND-9, R-BIND-6 (through the retry queue like every write)
        let mut w = World::new().await;
        let id = bound(&w, "adele").await;
        set_state(&w, "adele", UserState::Disabled).await;
        w.directory.pass_next_call(); // the block
        w.directory.fail_next_call(throttled()); // the revocation
        let Outcome::Deferred { binding, retry } =
            w.suspension().apply(&uid("adele")).await.unwrap()
        else {
            panic!("deferred")
        };
        assert_eq!(retry.kind, OperationKind::UserState);
        assert_eq!(binding.pending_reason.as_deref(), Some("throttled"));
        assert_eq!(
            binding.in_flight.as_ref().map(|f| f.kind),
            Some(OperationKind::UserState)
        );
        assert_eq!(w.count_events(EventKind::UserDeprovision), 0);
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Suspended);
        assert_eq!(binding.pending_reason, None);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert!(w.directory.sessions_valid_from(&w.tenant.id, &id).is_some());
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_queued_suspension_whose_user_came_back_changes_nothing() {
        // R-BIND-9 (a retry does what the latest state asks)
        let mut w = World::new().await;
        let id = bound(&w, "adele").await;
        set_state(&w, "adele", UserState::Disabled).await;
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Service));
        assert!(matches!(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Outcome::Deferred { .. }
        ));
        set_state(&w, "adele", UserState::Active).await;
        let outcomes = w.drain().await;
        assert_eq!(
            outcomes,
            vec![RetryOutcome::Ran(Box::new(Outcome::Superseded))]
        );
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(binding.in_flight, None);
        assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 0);
    }

    #[tokio::test]
    async fn a_queued_bind_of_a_user_disabled_meanwhile_is_stopped_and_creates_nothing() {
        // R-BIND-9, R-BIND-12
        let mut w = World::new().await;
        deferred_bind(&w, "adele").await;
        set_state(&w, "adele", UserState::Disabled).await;
        let binding = assert_done(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Change::NoAccount,
            BindingState::Blocked,
        );
        assert_eq!(binding.last_error.unwrap().code, "user_disabled");
        let outcomes = w.drain().await;
        assert_eq!(
            outcomes,
            vec![RetryOutcome::Ran(Box::new(Outcome::Superseded))]
        );
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 0);
        assert!(w.events.all().is_empty());
    }

    #[tokio::test]
    async fn an_unbound_or_blocked_user_has_nothing_to_suspend() {
        // R-BIND-9
        let w = World::new().await;
        w.user("adele").await;
        set_state(&w, "adele", UserState::Disabled).await;
        assert_eq!(
            w.suspension().apply(&uid("adele")).await.unwrap(),
            Outcome::Unchanged { binding: None }
        );
        let id = bound(&w, "alex").await;
        w.unbinder().unbind(&uid("alex")).await.unwrap();
        set_state(&w, "alex", UserState::Disabled).await;
        let calls = w.directory.calls();
        assert!(matches!(
            w.suspension().apply(&uid("alex")).await.unwrap(),
            Outcome::Unchanged { .. }
        ));
        assert_eq!(w.directory.calls(), calls);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
    }

    #[tokio::test]
    async fn a_bind_racing_a_suspension_loses_and_blocks_the_account_it_enabled() {
        // R-BIND-9, R-BIND-12 (a bind that started before the user was disabled): its enable
        // reaches M365 only after the suspension finished, so only the losing bind can block it.
        let w = World::new().await;
        let id = bound(&w, "adele").await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        let mut enable = w.directory.hold_next("set_account_enabled", Stage::Before);
        let rebind = w.bind("adele");
        let script = async {
            assert!(enable.arrived().await, "the re-bind wrote its intent");
            set_state(&w, "adele", UserState::Disabled).await;
            let suspended = w.suspension().apply(&uid("adele")).await.unwrap();
            enable.release();
            suspended
        };
        let (rebind, suspended) = interleaved(async { tokio::join!(rebind, script) }).await;
        assert!(matches!(
            suspended,
            Outcome::Done {
                change: Change::Suspended,
                ..
            }
        ));
        assert_eq!(rebind, Outcome::Superseded);
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Suspended);
        assert!(
            !w.directory.user(&w.tenant.id, &id).unwrap().account_enabled,
            "the losing bind blocked the account it had enabled after the suspension"
        );
        assert_eq!(
            w.count_events(EventKind::UserUpdateProvision),
            0,
            "nothing recorded for the bind that lost"
        );
    }
}
