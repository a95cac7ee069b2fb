//! Set a user's password (DESIGN §4 "password"): validate against the directory and Entra policy,
//! seal, store, and push it to the bound M365 account; an account suspended because its password
//! expired is re-enabled (R-PWD-1, R-PWD-2, R-PWD-4) — one suspended because the user is disabled
//! in the directory gets the password but stays blocked (R-BIND-9). A password set while the user
//! is unbound is pushed by the next bind (R-BIND-12). The clear password never leaves this call except to M365: the retry
//! queue carries only the operation id and a retry re-opens the sealed copy (R-SAFE-2).
//!
//! A privileged account (a directory role, or the connection's consenting admin — checked afresh
//! before every push, so a role granted after the binding counts) is not pushed to unless its
//! binding was adopted with `adoptPrivileged`: the password stays stored, the push fails with
//! `privileged_account` on the binding and in the failures list (R-BIND-11).

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::error::Result;
use crate::model::{
    Binding, BindingState, DirectoryUser, M365ObjectId, OperationId, OperationKind,
    OperationSubject, RetryMessage, SuspendedReason, TenantId, UserId, UserState,
};
use crate::policy::password::DirectoryPasswordPolicy;
use crate::ports::Ports;
use crate::ports::{BindingStore, Directory, Expect, Sealer, UserStore};

use super::privilege::{privilege_of, refusal};
use super::{Change, Effects, OnFailure, Outcome, Run, is_m365_not_found};

use_case! {
    /// The password use case.
    pub struct SetPassword {
        ports: [users: Users, directory: Directory, sealer: Sealer],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
            /// The directory's password policy (Entra's applies on top).
            policy: &'a DirectoryPasswordPolicy = Ports::password_policy,
        ],
    }
}

/// What setting a password did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSet {
    /// The stored user, with its new sealed password.
    pub user: DirectoryUser,
    /// The push to M365 ([`Outcome::Unchanged`] when the user is not bound).
    pub push: Outcome,
}

/// The account keeps its state while a push waits or after it failed.
const PUSH_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: None,
};

/// M365's `lastPasswordChangeDateTime` right after a password write of ours (R-PWD-3), read back
/// with one `GET` (a read: no write budget), to be stored on the binding so reconcile compares
/// M365 time with M365 time instead of with our clock.
///
/// Only a value later than `before` (our previous write's stamp, or the M365 change being
/// overwritten) is trusted: graph-spec says nothing about read-after-write on this property
/// (unconfirmed; §7.4 warns that "a recently updated property" may not be visible at once), so an
/// older or equal value may predate our write. A failed read, an absent (still replicating) user
/// or such a stale value gives `None`: reconcile then uses its clock rule for this binding until
/// our next write. Whole-second stamps make a write in the same second as `before` look stale too;
/// that only costs the fallback. A read that returns a newer stamp that still predates our write
/// (M365's own change, replicated before ours) makes the next reconcile overwrite the password once
/// more, after which the stamp is right: the error is one extra write, never a missed change.
pub(super) async fn read_back_password_change<D: Directory>(
    directory: &D,
    tenant: &TenantId,
    id: &M365ObjectId,
    before: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match directory.last_password_change(tenant, id).await {
        Ok(Some(at)) if before.is_none_or(|b| at > b) => Some(at),
        Ok(stale) => {
            tracing::info!(
                tenant.id = %tenant,
                user.id = %id,
                read = ?stale,
                "password stamp not confirmed by the read-back; reconcile uses the clock rule"
            );
            None
        }
        Err(e) => {
            tracing::warn!(
                tenant.id = %tenant,
                user.id = %id,
                error.code = e.code(),
                graph.request_id = e.graph_request_id(),
                "password stamp read-back failed; reconcile uses the clock rule"
            );
            None
        }
    }
}

fn pushable(binding: &Binding) -> bool {
    matches!(
        binding.state,
        BindingState::Provisioned | BindingState::Suspended
    ) && binding.m365_object_id.is_some()
}

impl<P: Ports> SetPassword<'_, P> {
    /// Validates `password` (R-PWD-1; a refusal names every broken rule and stores nothing), seals
    /// it, stores it on the user, and if the user is `provisioned` or `suspended` pushes it with
    /// `forceChangePasswordNextSignIn=false` → `user_password_update_provision` (R-PWD-2); an
    /// account suspended for `password_expired` of an active user is re-enabled and the binding
    /// becomes `provisioned` (R-PWD-4); one suspended for `directory_disabled` stays suspended.
    ///
    /// # Errors
    /// `PasswordPolicy`; `NotFound` (user); `Conflict::StaleVersion` (the user changed meanwhile);
    /// sealing and store failures. M365 failures give [`Outcome::Deferred`] or [`Outcome::Failed`].
    #[tracing::instrument(skip_all, fields(op.kind = "user_password", user.id = %user_id))]
    pub async fn set(&self, user_id: &UserId, password: &SecretString) -> Result<PasswordSet> {
        let result = self.set_once(user_id, password).await;
        match &result {
            Ok(set) => super::report(&Ok(set.push.clone())),
            Err(e) => tracing::warn!(
                error.code = e.code(),
                error.retryable = e.is_retryable(),
                "password not set"
            ),
        }
        result
    }

    async fn set_once(&self, user_id: &UserId, password: &SecretString) -> Result<PasswordSet> {
        let mut user = super::stored_user(self.users, user_id).await?;
        self.policy.validate(password)?;
        let now = self.fx.now();
        user.password = Some(self.sealer.seal(user_id, password).await?);
        user.password_changed_at = Some(now);
        let expected = user.version;
        let user = self.users.replace(&user, expected).await?;
        let Some(binding) = self.fx.bindings.get(user_id).await?.filter(pushable) else {
            let binding = self.fx.bindings.get(user_id).await?;
            return Ok(PasswordSet {
                user,
                push: Outcome::Unchanged { binding },
            });
        };
        let subject = OperationSubject::User(user_id.clone());
        let op = OperationId::new(OperationKind::UserPassword, &subject, user.version);
        let push = match self.fx.claim_new(&op, now, Some(&binding)).await? {
            Some(ended) => ended,
            None => {
                let run = Run::new(
                    op,
                    OperationKind::UserPassword,
                    user_id.clone(),
                    now,
                    None,
                    self.actor,
                );
                let result = self.push(&run, &user, binding, password).await;
                self.fx.abandon(&run.op, result).await?
            }
        };
        Ok(PasswordSet { user, push })
    }

    /// Re-runs a queued push with the sealed password as stored now.
    ///
    /// # Errors
    /// Store and sealing failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_password", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let result = self
            .fx
            .rerun(message, OperationKind::UserPassword, user_id, async |run| {
                let user = self.users.get(user_id).await?;
                let binding = self.fx.bindings.get(user_id).await?.filter(pushable);
                let sealed = user.as_ref().and_then(|u| u.password.clone());
                match (user, binding, sealed) {
                    (Some(user), Some(binding), Some(sealed)) => {
                        let password = self.sealer.open(user_id, &sealed).await?;
                        self.push(run, &user, binding, &password).await
                    }
                    _ => self.fx.superseded(run).await,
                }
            })
            .await;
        super::reported(result)
    }

    async fn push(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        mut binding: Binding,
        password: &SecretString,
    ) -> Result<Outcome> {
        let expect = Expect::Version(binding.version);
        let Some(id) = binding.m365_object_id.clone() else {
            return self.fx.superseded(run).await;
        };
        let tenant = binding.tenant_id.clone();
        if !binding.adopted_privileged {
            match privilege_of(self.directory, &tenant, &id).await {
                Ok(privilege) if privilege.is_privileged() => {
                    let refused = refusal(&id, &privilege);
                    return self
                        .fx
                        .fail(run, binding, expect, refused, PUSH_FAILURE)
                        .await;
                }
                // Not privileged; or gone, which the write below finds out and records.
                Ok(_) => {}
                Err(e) if is_m365_not_found(&e) => {}
                Err(e) => return self.fx.fail(run, binding, expect, e, PUSH_FAILURE).await,
            }
        }
        let mut result = self.directory.set_password(&tenant, &id, password).await;
        if result.is_ok() {
            let before = binding.m365_password_changed_at;
            binding.m365_password_changed_at =
                read_back_password_change(self.directory, &tenant, &id, before).await;
        }
        if result.is_ok() {
            binding.pushed_password_set_at = user.password_changed_at;
        }
        // Only an expiry suspension is lifted by a new password; a user disabled in the directory
        // stays blocked until it is active again (R-BIND-9).
        let reenable = binding.suspension() == Some(SuspendedReason::PasswordExpired)
            && user.state == UserState::Active;
        if result.is_ok() && reenable {
            result = self.directory.set_account_enabled(&tenant, &id, true).await;
        }
        match result {
            Ok(()) => {
                if binding.state != BindingState::Suspended || reenable {
                    binding.state = BindingState::Provisioned;
                    binding.suspended_reason = None;
                }
                binding.pending_reason = None;
                binding.last_error = None;
                let change = if reenable {
                    Change::PasswordPushedAndReenabled
                } else {
                    Change::PasswordPushed
                };
                self.fx.succeed(run, &binding, expect, change).await
            }
            Err(e) if is_m365_not_found(&e) => {
                binding.state = BindingState::DeletedInM365;
                binding.pending_reason = None;
                self.fx
                    .succeed(run, &binding, expect, Change::DeletedInM365)
                    .await
            }
            Err(e) => self.fx.fail(run, binding, expect, e, PUSH_FAILURE).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::error::Error;
    use crate::model::EventKind;
    use crate::policy::password::{CharClass, PasswordRule};
    use crate::ports::Expect;
    use crate::usecase::testkit::{World, assert_done, secret, throttled, uid};

    const GOOD: &str = "Correct-Horse-7";

    #[tokio::test]
    async fn a_policy_violating_password_is_refused_with_the_rule_named_and_nothing_stored() {
        // R-PWD-1
        let w = World::new().await;
        let user = w.user("adele").await;
        w.bind("adele").await;
        let calls = w.directory.calls();
        let err = w
            .passwords()
            .set(&uid("adele"), &secret("short"))
            .await
            .unwrap_err();
        let Error::PasswordPolicy(policy) = &err else {
            panic!("policy error")
        };
        assert!(policy.violations.contains(&PasswordRule::EntraMinLength));
        assert_eq!(err.code(), "password_policy");
        assert!(
            !err.to_string().contains("short"),
            "never repeats the password"
        );
        assert_eq!(w.users.get(&uid("adele")).await.unwrap(), Some(user));
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 0);
    }

    #[tokio::test]
    async fn a_password_breaking_a_directory_rule_is_refused_by_that_rule() {
        // R-PWD-1 (directory policy on top of Entra's)
        let mut w = World::new().await;
        w.password_policy = DirectoryPasswordPolicy::new(12, [CharClass::Symbol], None).unwrap();
        w.user("adele").await;
        let err = w
            .passwords()
            .set(&uid("adele"), &secret("Abcdefgh1234"))
            .await
            .unwrap_err();
        let Error::PasswordPolicy(policy) = err else {
            panic!("policy error")
        };
        assert_eq!(
            policy.violations,
            vec![PasswordRule::DirectoryRequiredClass {
                class: CharClass::Symbol
            }]
        );
        assert_eq!(
            w.users.get(&uid("adele")).await.unwrap().unwrap().password,
            None
        );
    }

    #[tokio::test]
    async fn a_password_is_stored_sealed_for_that_user_only() {
        // R-PWD-1, R-SAFE-2
        let w = World::new().await;
        w.user("adele").await;
        w.user("alex").await;
        let set = w.set_password("adele", GOOD).await;
        assert_eq!(set.push, Outcome::Unchanged { binding: None });
        let sealed = set.user.password.clone().unwrap();
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains(GOOD));
        assert!(!serde_json::to_string(&set.user).unwrap().contains(GOOD));
        assert_eq!(set.user.password_changed_at, Some(w.now()));
        let opened = w.sealer.open(&uid("adele"), &sealed).await.unwrap();
        assert_eq!(opened.expose_secret(), GOOD);
        assert_eq!(
            w.sealer
                .open(&uid("alex"), &sealed)
                .await
                .unwrap_err()
                .code(),
            "seal_tampered"
        );
        assert_eq!(w.directory.calls(), 0, "an unbound user is not pushed");
    }

    #[tokio::test]
    async fn a_bound_users_password_is_pushed_with_user_password_update_provision() {
        // R-PWD-2
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        w.clock.advance(chrono::TimeDelta::hours(1));
        let set = w.set_password("adele", GOOD).await;
        let Outcome::Done { change, .. } = set.push else {
            panic!("pushed")
        };
        assert_eq!(change, Change::PasswordPushed);
        assert_eq!(w.account_password(&id), GOOD);
        assert_eq!(
            w.directory
                .user(&w.tenant.id, &id)
                .unwrap()
                .last_password_change,
            Some(w.now())
        );
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
        let event = w.event(EventKind::UserPasswordUpdateProvision);
        assert!(!serde_json::to_string(&event).unwrap().contains(GOOD));
    }

    #[tokio::test]
    async fn setting_a_password_re_enables_a_suspended_account() {
        // R-PWD-4
        let w = World::with_bound(&["adele"]).await;
        let mut b = w.binding("adele").await;
        let id = World::object_id(&b);
        w.directory
            .set_account_enabled(&w.tenant.id, &id, false)
            .await
            .unwrap();
        b.state = BindingState::Suspended;
        let v = b.version;
        w.bindings.put(&b, Expect::Version(v)).await.unwrap();
        let set = w.set_password("adele", GOOD).await;
        assert_done(
            set.push,
            Change::PasswordPushedAndReenabled,
            BindingState::Provisioned,
        );
        assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
    }

    #[tokio::test]
    async fn a_throttled_push_is_retried_from_the_sealed_copy_and_no_message_holds_the_password() {
        // R-PWD-2, R-PWD-1 (never queued in clear), R-SAFE-2
        let mut w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        w.directory.fail_next_call(throttled());
        let set = w.set_password("adele", GOOD).await;
        assert!(matches!(set.push, Outcome::Deferred { .. }));
        for queued in w.queue.snapshot() {
            assert!(
                !serde_json::to_string(&queued.message)
                    .unwrap()
                    .contains(GOOD)
            );
        }
        for failure in w.failures.all() {
            assert!(!format!("{failure:?}").contains(GOOD));
        }
        w.drain().await;
        assert_eq!(w.account_password(&id), GOOD);
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
    }

    #[tokio::test]
    async fn a_password_set_before_binding_becomes_the_account_password_at_bind() {
        // R-PWD-1, R-BIND-2
        let w = World::new().await;
        w.user("adele").await;
        w.set_password("adele", GOOD).await;
        w.bind("adele").await;
        let id = World::object_id(&w.binding("adele").await);
        assert_eq!(w.account_password(&id), GOOD);
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 0);
    }

    #[tokio::test]
    async fn a_push_keeps_m365s_password_stamp_read_back_with_one_extra_call() {
        // R-PWD-3 (M365 time against M365 time), R-PWD-2
        let w = World::with_bound(&["adele"]).await;
        let created = w.binding("adele").await;
        let id = World::object_id(&created);
        assert_eq!(
            created.m365_password_changed_at,
            w.directory
                .user(&w.tenant.id, &id)
                .unwrap()
                .last_password_change,
            "the create's stamp"
        );
        w.clock.advance(chrono::TimeDelta::hours(1));
        let calls = w.directory.calls();
        w.set_password("adele", GOOD).await;
        assert_eq!(
            w.directory.calls() - calls,
            4,
            "the privilege check (roles, consenting admin; R-BIND-11), the PATCH and one read"
        );
        assert_eq!(
            w.binding("adele").await.m365_password_changed_at,
            Some(w.now())
        );
    }

    #[tokio::test]
    async fn a_read_back_not_later_than_the_known_stamp_is_not_trusted() {
        // R-PWD-3 (read-after-write on lastPasswordChangeDateTime is unconfirmed, graph-spec §7.4)
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        let now = Some(w.now());
        let read = |before| read_back_password_change(&w.directory, &w.tenant.id, &id, before);
        assert_eq!(read(None).await, now);
        assert_eq!(
            read(Some(w.now() - chrono::TimeDelta::seconds(1))).await,
            now
        );
        assert_eq!(read(now).await, None, "equal: may predate our write");
        w.directory.fail_next_call(throttled());
        assert_eq!(read(None).await, None, "a failed read");
    }

    #[tokio::test]
    async fn a_password_is_not_pushed_to_an_account_that_became_privileged_after_binding() {
        // R-BIND-11 (a role granted after the binding counts), R-PWD-1 (still stored)
        let w = World::with_bound(&["adele", "root"]).await;
        let adele = World::object_id(&w.binding("adele").await);
        let root = World::object_id(&w.binding("root").await);
        let before = |id| w.directory.password(&w.tenant.id, id).unwrap();
        let (adele_before, root_before) = (before(&adele), before(&root));
        w.directory
            .grant_role(&w.tenant.id, &adele, "Global Administrator");
        w.directory.set_consenting_admin(&w.tenant.id, Some(&root));
        for (id, account, old) in [
            ("adele", &adele, adele_before),
            ("root", &root, root_before),
        ] {
            let done = w.passwords().set(&uid(id), &secret(GOOD)).await.unwrap();
            let Outcome::Failed {
                code,
                binding,
                exhausted,
            } = done.push
            else {
                panic!("{id}: not pushed, and it says so")
            };
            assert_eq!(code, "privileged_account");
            assert!(!exhausted);
            assert_eq!(binding.state, BindingState::Provisioned, "{id}: state kept");
            let error = binding.last_error.unwrap();
            assert_eq!(error.code, "privileged_account");
            assert!(
                error.message.contains("adoptPrivileged"),
                "{}",
                error.message
            );
            assert!(done.user.password.is_some(), "{id}: the password is stored");
            let now = w.directory.password(&w.tenant.id, account).unwrap();
            assert_eq!(
                now.expose_secret(),
                old.expose_secret(),
                "{id}: M365 untouched"
            );
        }
        assert!(
            w.directory
                .user(&w.tenant.id, &adele)
                .unwrap()
                .account_enabled
        );
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 0);
        assert_eq!(
            w.failures
                .all()
                .iter()
                .filter(|f| f.code == "privileged_account")
                .count(),
            2
        );
        assert!(w.queue.snapshot().is_empty(), "nothing to retry");
    }

    #[tokio::test]
    async fn a_privileged_account_adopted_with_adopt_privileged_gets_its_password_pushed() {
        // R-BIND-11 (adopted that way: pushes go on), R-PWD-2
        let (w, existing) = World::with_adeles_account("Existing-Pass-1").await;
        w.directory
            .grant_role(&w.tenant.id, &existing.id, "Global Administrator");
        w.bind_adopting_privileged("adele").await;
        assert!(w.binding("adele").await.adopted_privileged);
        let calls = w.directory.calls();
        let done = w.set_password("adele", GOOD).await;
        assert!(matches!(done.push, Outcome::Done { .. }), "{:?}", done.push);
        let pushed = w.directory.password(&w.tenant.id, &existing.id).unwrap();
        assert_eq!(pushed.expose_secret(), GOOD);
        assert_eq!(
            w.directory.calls() - calls,
            2,
            "no privilege check for an account adopted that way: the PATCH and one read"
        );
    }
}
