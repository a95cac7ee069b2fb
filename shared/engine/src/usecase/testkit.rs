//! Shortcuts for the use-case tests on [`World`] (the public in-memory [`crate::ports::Ports`]):
//! each use case on the world, typical Graph failures, a guard for scripted interleavings.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::Effects;
use super::password::{PasswordSet, SetPassword};
use super::suspend::Suspension;
use super::unbind::Unbind;
use super::update::UpdateAttributes;
use crate::error::{Error, UnavailableReason};
use crate::model::{
    Binding, BindingState, Email, Group, GroupId, M365ObjectId, M365User, NewM365User,
};
use crate::ports::{BindingStore, Directory, Expect, GroupStore};
pub(crate) use crate::testing::{ADDRESS_RELEASE, World, email, uid};

pub(crate) type Fx<'a> = Effects<'a, World>;

pub(crate) fn throttled() -> Error {
    Error::Throttled {
        retry_after: Some(Duration::from_secs(3)),
        graph_request_id: Some("req-429".to_owned()),
    }
}

pub(crate) fn unavailable(reason: UnavailableReason) -> Error {
    Error::Unavailable {
        component: "graph",
        reason,
        retry_after: None,
        graph_request_id: Some(format!("req-{}", reason.as_str())),
        source: None,
    }
}

impl World {
    pub(crate) fn fx(&self) -> Fx<'_> {
        Effects::new(self)
    }

    pub(crate) fn unbinder(&self) -> Unbind<'_, World> {
        Unbind::new(self)
    }

    pub(crate) fn updater(&self) -> UpdateAttributes<'_, World> {
        UpdateAttributes::new(self)
    }

    pub(crate) fn passwords(&self) -> SetPassword<'_, World> {
        SetPassword::new(self)
    }

    pub(crate) fn suspension(&self) -> Suspension<'_, World> {
        Suspension::new(self)
    }

    /// Sets user `id`'s password to `password` (R-PWD-1).
    ///
    /// # Panics
    /// If the set fails.
    pub(crate) async fn set_password(&self, id: &str, password: &str) -> PasswordSet {
        self.passwords()
            .set(&uid(id), &secret(password))
            .await
            .expect("the password is set")
    }

    /// The password of M365 account `account` in the world's tenant, in clear.
    ///
    /// # Panics
    /// If the account has none.
    pub(crate) fn account_password(&self, account: &M365ObjectId) -> String {
        self.directory
            .password(&self.tenant.id, account)
            .expect("the account has a password")
            .expose_secret()
            .to_owned()
    }

    /// Directory group `id` as stored.
    ///
    /// # Panics
    /// If the read fails or the group does not exist.
    pub(crate) async fn stored_group(&self, id: &str) -> Group {
        self.groups
            .get(&gid(id))
            .await
            .expect("the group is read")
            .expect("the group exists")
    }

    /// Binds `id` with `adoptPrivileged` (R-BIND-11): its privileged account is adopted.
    ///
    /// # Panics
    /// If the bind fails.
    pub(crate) async fn bind_adopting_privileged(&self, id: &str) -> super::Outcome {
        self.bind_asking(
            id,
            super::bind::BindRequest {
                adopt_privileged: true,
                ..super::bind::BindRequest::default()
            },
        )
        .await
    }

    /// Binds `id` with `request`.
    ///
    /// # Panics
    /// If the bind fails.
    pub(crate) async fn bind_asking(
        &self,
        id: &str,
        request: super::bind::BindRequest,
    ) -> super::Outcome {
        self.binder().bind(&uid(id), request).await.unwrap()
    }

    /// Binds `id` with `"restore": false` (R-BIND-10): a deleted account is not restored; the
    /// bind waits for the address and creates a new one.
    ///
    /// # Panics
    /// If the bind fails.
    pub(crate) async fn bind_without_restore(&self, id: &str) -> super::Outcome {
        let request = super::bind::BindRequest {
            restore: false,
            ..super::bind::BindRequest::default()
        };
        self.bind_asking(id, request).await
    }

    /// A world with directory user `adele` (unbound) whose UPN an M365 account already holds,
    /// created with `password` (an account to adopt, restore or push to): the world and the account.
    ///
    /// # Panics
    /// If the fakes refuse it.
    pub(crate) async fn with_adeles_account(password: &str) -> (Self, M365User) {
        let w = Self::new().await;
        let user = w.user("adele").await;
        let account = w
            .m365_account(&user.email, "adele", "Adele", password)
            .await;
        (w, account)
    }

    /// An enabled M365 account with UPN `upn` in the world's tenant that somebody else made (an
    /// admin, or a create whose answer was lost): only its name and password set.
    pub(crate) async fn m365_account(
        &self,
        upn: &Email,
        nickname: &str,
        display_name: &str,
        password: &str,
    ) -> M365User {
        self.directory
            .create_user(
                &self.tenant.id,
                &NewM365User {
                    password: secret(password),
                    ..crate::testing::contract::new_m365_user(upn.clone(), nickname, display_name)
                },
            )
            .await
            .expect("the fake directory creates the account")
    }

    /// Changes R-ATTR-1 attributes of account `id` behind our back (an admin in the portal).
    ///
    /// # Panics
    /// If the fake directory refuses it.
    pub(crate) async fn change_in_m365(
        &self,
        id: &crate::model::M365ObjectId,
        attributes: crate::model::AttributesPatch,
    ) {
        let patch = crate::model::M365UserPatch {
            attributes,
            ..crate::model::M365UserPatch::default()
        };
        crate::ports::Directory::update_user(&self.directory, &self.tenant.id, id, &patch)
            .await
            .expect("the fake directory changes the account");
    }

    /// Binds `id` (welcome on) as if the bind stopped right after binding: its group follow-up
    /// (R-GRP-1) never runs, so only reconcile brings the user into its groups.
    pub(crate) async fn bind_without_group_follow_up(&self, id: &str) -> super::Outcome {
        let bind = super::bind::Bind {
            groups: None,
            ..super::bind::Bind::new(self)
        };
        bind.bind(&uid(id), super::bind::BindRequest::default())
            .await
            .expect("bind")
    }
}

/// Creates user `id` and binds it while Graph throttles the create: the bind is deferred (a retry
/// queued, R-BIND-6). The deferred outcome.
///
/// # Panics
/// If the bind is not deferred.
pub(crate) async fn deferred_bind(w: &World, id: &str) -> super::Outcome {
    let (binding, retry) = bind_deferred_by(w, id, throttled()).await;
    super::Outcome::Deferred { binding, retry }
}

/// Creates user `id` and binds it while Graph's first call fails with the retryable `error`: the
/// deferred bind's stored binding and queued retry (R-BIND-6).
///
/// # Panics
/// If the bind is not deferred.
pub(crate) async fn bind_deferred_by(
    w: &World,
    id: &str,
    error: Error,
) -> (Binding, crate::model::RetryMessage) {
    w.user(id).await;
    w.directory.fail_next_call(error);
    match w.bind(id).await {
        super::Outcome::Deferred { binding, retry } => (binding, retry),
        other => panic!("the bind is deferred: {other:?}"),
    }
}

/// Creates and binds user `id`, then makes Graph's next call fail with `error`: the bound user's
/// M365 object id.
///
/// # Panics
/// If the bind is not done.
pub(crate) async fn bound_user_failing_next(w: &World, id: &str, error: Error) -> M365ObjectId {
    w.user(id).await;
    let super::Outcome::Done { binding, .. } = w.bind(id).await else {
        panic!("bound")
    };
    w.directory.fail_next_call(error);
    World::object_id(&binding)
}

/// Creates user `id` with a pending binding (`reason`) and no M365 account yet, as a bind that
/// stopped before its create leaves it: the stored binding.
/// `n` bound users `u0..u{n-1}`, each with the directory password `password` (R-PWD-1).
///
/// # Panics
/// If a password is refused.
pub(crate) async fn bound_users_with_password(n: usize, password: &str) -> World {
    let w = World::new().await;
    for i in 0..n {
        let id = format!("u{i}");
        w.user(&id).await;
        w.passwords()
            .set(&uid(&id), &secret(password))
            .await
            .unwrap();
        w.bind(&id).await;
    }
    w
}

pub(crate) async fn pending_user(w: &World, id: &str, reason: &str) -> Binding {
    w.user(id).await;
    w.bindings
        .put(
            &Binding::pending(uid(id), w.tenant.id.clone(), reason),
            Expect::Absent,
        )
        .await
        .expect("the pending binding is stored")
}

/// Asserts that `outcome` is done with `change`, leaving the binding in `state`: the binding.
///
/// # Panics
/// If it is not.
#[track_caller]
pub(crate) fn assert_done(
    outcome: super::Outcome,
    change: super::Change,
    state: BindingState,
) -> Binding {
    let super::Outcome::Done {
        binding,
        change: made,
    } = outcome
    else {
        panic!("expected done with {change:?}, got {outcome:?}")
    };
    assert_eq!(made, change);
    assert_eq!(binding.state, state);
    binding
}

/// Awaits a scripted interleaving (R-BIND-12 race tests), failing instead of hanging when a held
/// call never arrives (the race did not happen as scripted).
pub(crate) async fn interleaved<F: std::future::Future>(race: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), race)
        .await
        .expect("the scripted interleaving did not complete: a held call never arrived")
}

pub(crate) fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// Group id `s`.
pub(crate) fn gid(s: &str) -> GroupId {
    GroupId::parse(s).unwrap()
}

/// Creates and binds user `id`; its M365 object id.
pub(crate) async fn bound_user(w: &World, id: &str) -> M365ObjectId {
    w.user(id).await;
    w.bind(id).await;
    World::object_id(&w.binding(id).await)
}
