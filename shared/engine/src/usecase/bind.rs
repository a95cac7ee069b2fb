//! Bind a directory user to the tenant its email domain routes to (DESIGN §4 "bind"): adopt the M365
//! account with that UPN or create it, unblock the binding's own account on a re-bind, and send the
//! welcome notification (R-BIND-1..4, R-BIND-6, R-BIND-8, R-BIND-10). A user disabled in the directory is not
//! bound (409 `user_disabled`, R-BIND-9).
//!
//! Races (R-BIND-12): a bind records its intent (binding `pending`, itself in flight) before it
//! writes to M365, so an unbind arriving meanwhile sees it and records its own intent over it. The
//! bind reads the binding again right before its final write: if a later request (an unbind, a
//! suspension) took the binding over, the bind records nothing and blocks the account it just
//! enabled or created. A directory password set while the user was unbound is pushed when the
//! account is unblocked or adopted (`user_password_update_provision`); a created account gets it at
//! creation.
//!
//! An account found by UPN is adopted only when it is not privileged — no directory role, not
//! the connection's consenting admin — or when the request says `adoptPrivileged` (R-BIND-11,
//! [`super::privilege`]): the API request is refused with 409 `privileged_account` and nothing is
//! written; a queued retry that meets one fails with that code on the binding. The check costs
//! reads on the adopt path only, never on the create path (DESIGN §5).
//!
//! A re-bind whose account M365 deleted less than 30 days ago restores it from `deletedItems`
//! instead of waiting for the address and creating an empty one, unless the request says
//! `"restore": false` (R-BIND-10, [`restore`]).
//!
//! A user the bind bound ([`Outcome::Done`], by the request or by its queued retry) joins the
//! security groups of its bound directory groups at once (R-GRP-1,
//! [`super::group_sync::SyncGroup::follow_binds`]); that follow-up never fails the bind — a
//! failure is logged or queued, and reconcile catches the group up.

use chrono::TimeDelta;

use crate::error::{Conflict, Error, Result, UnavailableReason};
use crate::model::{
    Binding, BindingState, DirectoryUser, EventKind, Failure, InFlight, M365ObjectId, NewM365User,
    OperationId, OperationKind, OperationSubject, RetryMessage, Tenant, TenantId, UserId,
    UserState, WelcomeNotification,
};
use crate::policy::routing::resolve_tenant;
use crate::ports::Ports;
use crate::ports::{BindingStore, Directory, Expect, FailureStore, Notifier, Sealer, UserStore};

use super::group_sync::SyncGroup;
use super::manager::SyncManager;

mod restore;
use super::licenses::Licenses;
use super::password::read_back_password_change;
use super::privilege::{adoption_details, privilege_of, refusal};
use super::{
    BoxFuture, Change, Effects, OnFailure, Outcome, Run, failure_id, generate_password,
    is_m365_not_found, is_stale, mail_nickname, patch_for,
};

/// A bind request (`PUT /users/{userId}/binding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindRequest {
    /// Send the welcome notification once bound (R-BIND-4); `true` unless the request says otherwise.
    pub welcome: bool,
    /// Adopt the account found by UPN even if it is privileged (R-BIND-11); `false` unless the
    /// request says `"adoptPrivileged": true`.
    pub adopt_privileged: bool,
    /// Restore the account from M365's `deletedItems` when it was deleted less than 30 days ago
    /// (R-BIND-10); `true` unless the request says `"restore": false` (then the bind waits for the
    /// address and creates a new account, R-BIND-8).
    pub restore: bool,
}

impl Default for BindRequest {
    fn default() -> Self {
        Self {
            welcome: true,
            adopt_privileged: false,
            restore: true,
        }
    }
}

use_case! {
    /// The bind use case.
    pub struct Bind {
        ports: [
            users: Users, tenants: Tenants, directory: Directory, sealer: Sealer, notifier: Notifier
        ],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
            /// Directory groups: a user the bind bound joins the security groups of its bound directory
            /// groups at once (R-GRP-1, [`Bind::follow_groups`]). `None` leaves that to the next
            /// reconcile (as if the bind stopped right after binding).
            groups: Option<&'a P::Groups> = bound_groups,
            /// Licences: a user the bind bound gets its tenant's and groups' licences at once
            /// (R-LIC-1, [`Bind::follow_licenses`]). `None` leaves that to the next reconcile.
            licenses: Option<Licenses<'a, P>> = Licenses::follow,
        ],
    }
}

/// The directory groups a bind on `ports` follows: all of them (see [`Bind::groups`]).
fn bound_groups<P: Ports>(ports: &P) -> Option<&P::Groups> {
    Some(ports.groups())
}

/// A replication-lag wait (graph-spec §7.4), retried like any transient failure.
fn not_yet_visible(source: Option<Error>) -> Error {
    Error::Unavailable {
        component: "graph",
        reason: UnavailableReason::NotYetVisible,
        retry_after: None,
        graph_request_id: None,
        source: source.map(|e| Box::new(e) as crate::error::BoxError),
    }
}

/// Whether a password push of a bind checks the account's privilege first (R-BIND-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recheck {
    /// The account's privilege was just checked (an adoption) or it is new (our create).
    None,
    /// Our own account, re-enabled: it may have been given a directory role since it was bound.
    Privilege,
}

const BIND_FAILURE: OnFailure = OnFailure {
    deferred: Some(BindingState::Pending),
    permanent: Some(BindingState::Error),
};

impl<P: Ports> Bind<'_, P> {
    /// Binds `user_id` (R-BIND-1): routes by email domain to an `active` tenant, then adopts the
    /// M365 user with that UPN (syncing attributes, enabling sign-in) or creates it with the sealed
    /// directory password (else a random compliant one). A `blocked`, `unselected`, `suspended` or
    /// `error` binding with an account gets that same account unblocked (R-BIND-5). A binding that is
    /// already `provisioned` is left alone ([`Outcome::Unchanged`]).
    ///
    /// The operation id is `user_bind/user:<id>/<binding version>`, so a repeated request claims the
    /// same ledger entry and changes nothing the second time.
    ///
    /// # Errors
    /// `NotFound` (user); `Routing` (no tenant, federated domain, tenant not active — nothing is
    /// written); `Conflict::BoundElsewhere`; store failures. M365 failures are not errors: they give
    /// [`Outcome::Deferred`] or [`Outcome::Failed`].
    #[tracing::instrument(skip_all, fields(op.kind = "user_bind", user.id = %user_id))]
    pub async fn bind(&self, user_id: &UserId, request: BindRequest) -> Result<Outcome> {
        let mut result = self.bind_once(user_id, request).await;
        super::report(&result);
        self.follow_groups(&result).await;
        self.follow_manager(&result).await;
        self.follow_licenses(&mut result).await;
        result
    }

    /// After a bind that bound the user ([`Outcome::Done`]): its account gets its bound manager's
    /// as manager, and its bound direct reports get its account ([`SyncManager::follow_bind`],
    /// R-ATTR-1). Never fails the bind. Skipped with the group follow-up (`groups: None`).
    async fn follow_manager(&self, result: &Result<Outcome>) {
        let (Ok(Outcome::Done { binding, .. }), Some(_)) = (result, self.groups) else {
            return;
        };
        let manager = SyncManager::<P> {
            actor: self.actor,
            fx: self.fx,
            users: self.users,
            directory: self.directory,
        };
        let followed: BoxFuture<'_, _> = Box::pin(manager.follow_bind(&binding.user_id));
        followed.await;
    }

    /// After a bind that bound the user ([`Outcome::Done`]): its licences are assigned now
    /// ([`Licenses::sync_user`], R-LIC-1), and the outcome's binding is the one stored after them
    /// (with its `licenseState`). Never fails the bind: a refusal is on the binding and reconcile
    /// retries it.
    async fn follow_licenses(&self, result: &mut Result<Outcome>) {
        let (Ok(Outcome::Done { binding, .. }), Some(licenses)) = (result, &self.licenses) else {
            return;
        };
        let synced: BoxFuture<'_, _> = Box::pin(licenses.sync_user(&binding.user_id));
        match synced.await {
            // Nothing due and nothing was granted: nothing was written.
            Ok(None | Some(crate::model::LicenseState::None)) => {}
            Ok(Some(_)) => match self.fx.bindings.get(&binding.user_id).await {
                Ok(Some(stored)) => *binding = stored,
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    error.code = e.code(),
                    "binding not read back after its licences"
                ),
            },
            Err(e) => tracing::warn!(
                error.code = e.code(),
                "bound user's licences not assigned now; reconcile catches up"
            ),
        }
    }

    /// After a bind that bound the user ([`Outcome::Done`]): the user joins the security groups
    /// of its bound directory groups now ([`SyncGroup::follow_binds`], R-GRP-1). Never fails the
    /// bind — it is done; a failure here is logged (a retryable push is queued by the group use
    /// case), and reconcile catches the group up (`members_now_bound`).
    async fn follow_groups(&self, result: &Result<Outcome>) {
        let (Ok(Outcome::Done { binding, .. }), Some(groups)) = (result, self.groups) else {
            return;
        };
        let sync = SyncGroup::<P> {
            actor: self.actor,
            fx: self.fx,
            groups,
            tenants: self.tenants,
            directory: self.directory,
        };
        // Boxed: the group use case's future is deep (debug test threads have 2 MiB stacks).
        let followed: BoxFuture<'_, _> = Box::pin(sync.follow_binds(std::slice::from_ref(binding)));
        match followed.await {
            Ok(outcomes) => {
                for (group, outcome) in outcomes {
                    tracing::info!(group.id = %group, outcome = outcome.as_str(), "bound user's group mirrored");
                }
            }
            Err(e) => tracing::warn!(
                error.code = e.code(),
                error.retryable = e.is_retryable(),
                "bound user's groups not mirrored now; reconcile catches them up"
            ),
        }
    }

    async fn bind_once(&self, user_id: &UserId, request: BindRequest) -> Result<Outcome> {
        let now = self.fx.now();
        let user = self.load_user(user_id).await?;
        if user.state == UserState::Disabled {
            return Err(Conflict::UserDisabled {
                user: user_id.clone(),
            }
            .into());
        }
        let tenant = resolve_tenant(self.tenants, &user.email).await?;
        let current = self.fx.bindings.get(user_id).await?;
        if let Some(b) = &current {
            let live = matches!(
                b.state,
                BindingState::Provisioned | BindingState::Pending | BindingState::Suspended
            );
            if b.tenant_id != tenant.id && live {
                return Err(Conflict::BoundElsewhere {
                    tenant: b.tenant_id.clone(),
                }
                .into());
            }
            if b.state == BindingState::Provisioned && b.in_flight.is_none() {
                return Ok(Outcome::Unchanged {
                    binding: current.clone(),
                });
            }
        }
        let subject = OperationSubject::User(user_id.clone());
        let intent = current.as_ref().map_or(0, |b| b.version);
        let op = OperationId::new(OperationKind::UserBind, &subject, intent);
        if let Some(ended) = self.fx.claim_new(&op, now, current.as_ref()).await? {
            return Ok(ended);
        }
        // A bind asked again while an earlier one waits takes its place, inheriting what the earlier
        // one knew: a create whose answer was lost (so the account found is "created", R-BIND-3)
        // and when the address wait began.
        let replaced = current.as_ref().and_then(|b| b.in_flight.as_ref());
        let earlier = replaced.filter(|f| f.kind == OperationKind::UserBind);
        let in_flight = InFlight {
            operation_id: op.clone(),
            kind: OperationKind::UserBind,
            since: earlier.map_or(now, |f| f.since),
            address_held_since: earlier.and_then(|f| f.address_held_since),
            // Also from an unbind or suspension that replaced a bind whose create was lost.
            create_sent_at: replaced.and_then(|f| f.create_sent_at),
            welcome: request.welcome,
            adopt_privileged: request.adopt_privileged,
            // The earlier operation's queued retry will be dropped as superseded: none is queued
            // for this one yet (R-REC-5).
            retry_due_at: None,
            no_restore: !request.restore,
            // A restore an earlier operation sent (answer lost) is recognized (R-BIND-10); else
            // the account of a binding marked deleted in M365 is the one to restore.
            restore_of: replaced
                .and_then(|f| f.restore_of.clone())
                .or_else(|| restore::deleted_account(current.as_ref(), &tenant.id)),
            actor: Some(self.actor.clone()),
        };
        let (binding, expect) = match current {
            Some(b) => {
                let expect = Expect::Version(b.version);
                // A moved or deleted account is not ours to unblock: find or create one (R-BIND-8).
                let moved = b.tenant_id != tenant.id || b.state == BindingState::DeletedInM365;
                let binding = Binding {
                    tenant_id: tenant.id.clone(),
                    m365_object_id: if moved { None } else { b.m365_object_id },
                    in_flight: Some(in_flight),
                    state: BindingState::Pending,
                    pending_reason: Some("binding".to_owned()),
                    // Said by this bind anew (R-BIND-10).
                    restored: false,
                    restore_conflict: None,
                    ..b
                };
                // Write-ahead (R-BIND-12): the intent is stored before M365 is touched, so an unbind
                // arriving meanwhile sees a bind under way (not a settled `blocked` binding) and
                // takes it over; this bind's final write then loses and it blocks the account again.
                match self.fx.bindings.put(&binding, expect).await {
                    Ok(stored) => {
                        let expect = Expect::Version(stored.version);
                        (stored, expect)
                    }
                    Err(e) => return self.fx.abandon(&op, Err(e)).await,
                }
            }
            None => {
                let mut b = Binding::pending(user_id.clone(), tenant.id.clone(), "binding");
                b.in_flight = Some(in_flight);
                (b, Expect::Absent)
            }
        };
        let run = Run::new(
            op,
            OperationKind::UserBind,
            user_id.clone(),
            now,
            None,
            self.actor,
        );
        let result = self.provision(&run, &user, &tenant, binding, expect).await;
        self.fx.abandon(&run.op, result).await
    }

    /// Re-runs a queued bind (called by [`super::retry::RetryDispatcher`]).
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_bind", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let mut result = self.retry_once(message, user_id).await;
        super::report(&result);
        self.follow_groups(&result).await;
        self.follow_manager(&result).await;
        self.follow_licenses(&mut result).await;
        result
    }

    async fn retry_once(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        self.fx
            .rerun(message, OperationKind::UserBind, user_id, async |run| {
                self.retry_claimed(run, user_id).await
            })
            .await
    }

    async fn retry_claimed(&self, run: &Run<'_>, user_id: &UserId) -> Result<Outcome> {
        let Some(binding) = self.fx.bindings.get(user_id).await? else {
            return self.fx.superseded(run).await;
        };
        if !run.owns(&binding) {
            return self.fx.superseded(run).await;
        }
        let expect = Expect::Version(binding.version);
        let user = match self.load_user(user_id).await {
            Ok(user) => user,
            Err(e @ Error::NotFound { .. }) => {
                return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await;
            }
            Err(e) => return Err(e),
        };
        if user.state == UserState::Disabled {
            // Disabled since the bind was asked (a suspension normally takes the binding over
            // first): the bind stops for good, R-BIND-9.
            let e = Error::Conflict(Conflict::UserDisabled {
                user: user_id.clone(),
            });
            return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await;
        }
        let tenant = match resolve_tenant(self.tenants, &user.email).await {
            Ok(tenant) if tenant.id == binding.tenant_id => tenant,
            Ok(_) => {
                // The email moved to another tenant's domain since the bind was asked: a new bind
                // request must decide; this one stops.
                let e = Error::Conflict(Conflict::BoundElsewhere {
                    tenant: binding.tenant_id.clone(),
                });
                return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await;
            }
            Err(e @ Error::Routing(_)) => {
                return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await;
            }
            Err(e) => return Err(e),
        };
        self.provision(run, &user, &tenant, binding, expect).await
    }

    async fn load_user(&self, user_id: &UserId) -> Result<DirectoryUser> {
        super::stored_user(self.users, user_id).await
    }

    /// Unblock, adopt or create; record the outcome. Boxed ([`BoxFuture`]): the caller's frame
    /// keeps a pointer, not this whole state.
    fn provision<'s>(
        &'s self,
        run: &'s Run<'_>,
        user: &'s DirectoryUser,
        tenant: &'s Tenant,
        binding: Binding,
        expect: Expect,
    ) -> BoxFuture<'s, Result<Outcome>> {
        Box::pin(self.provision_inline(run, user, tenant, binding, expect))
    }

    async fn provision_inline(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        tenant: &Tenant,
        mut binding: Binding,
        mut expect: Expect,
    ) -> Result<Outcome> {
        let unblockable = matches!(
            binding.state,
            BindingState::Blocked
                | BindingState::Unselected
                | BindingState::Suspended
                | BindingState::Error
                | BindingState::Pending
        );
        if let (Some(id), true) = (binding.m365_object_id.clone(), unblockable) {
            let mut enabled = self.enable(tenant, &id, user, None).await;
            let mut pushed = false;
            if enabled.is_ok() {
                // The account is ours, but it may have been given a directory role since it was
                // bound: unless it was adopted with `adoptPrivileged`, its password is then left
                // alone, as a password push would (R-BIND-11).
                match self
                    .push_password(run, user, &mut binding, &id, Recheck::Privilege)
                    .await
                {
                    Ok(p) => pushed = p,
                    Err(e) => enabled = Err(e),
                }
            }
            match enabled {
                Ok(()) => {
                    return self
                        .bound(run, user, binding, expect, id, Change::Unblocked, pushed)
                        .await;
                }
                // The account was deleted meanwhile: find or create one as for a first bind (R-BIND-8),
                // or restore it (R-BIND-10).
                Err(e) if is_m365_not_found(&e) => {
                    restore::remember_deleted(&mut binding, id);
                    binding.m365_object_id = None;
                }
                Err(e) => return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
            }
        }
        // Another account than the one unblocked above: whether it was adopted privileged is
        // decided anew (R-BIND-11).
        binding.adopted_privileged = false;
        let create_sent_at = binding.in_flight.as_ref().and_then(|f| f.create_sent_at);
        match self
            .directory
            .find_user_by_upn(&tenant.id, &user.email)
            .await
        {
            // The account a restore of this bind brought back, its answer lost (R-BIND-10).
            Ok(Some(found))
                if restore::is_restored(&binding, &found.id) && create_sent_at.is_none() =>
            {
                return self
                    .adopt_existing(run, user, tenant, binding, expect, found)
                    .await;
            }
            Ok(Some(found)) => {
                let change = if create_sent_at.is_some() {
                    Change::Created
                } else {
                    Change::Adopted
                };
                if change == Change::Adopted {
                    return self
                        .adopt_existing(run, user, tenant, binding, expect, found)
                        .await;
                }
                return self
                    .adopt(run, user, tenant, binding, expect, found, change)
                    .await;
            }
            // Our create's answer was lost and the account is not visible yet (graph-spec §7.4):
            // wait for the lookup rather than POST again. Past the grace the first create cannot
            // have committed unseen; a new POST is then safe (M365 refuses a taken UPN).
            Ok(None)
                if create_sent_at.is_some_and(|at| {
                    run.now - at
                        < TimeDelta::from_std(self.fx.policy.lookup_grace).unwrap_or_default()
                }) =>
            {
                let lag = not_yet_visible(None);
                return self.fx.fail(run, binding, expect, lag, BIND_FAILURE).await;
            }
            // No active account, and the binding's own account was deleted: restore it (R-BIND-10)
            // rather than wait for its address and create an empty one. Not after a create of this
            // bind was sent. (A first bind costs no deletedItems read: DESIGN §5.)
            Ok(None) if create_sent_at.is_none() && restore::has_candidate(&binding) => {
                match self
                    .restore_and_adopt(run, user, tenant, binding, expect)
                    .await?
                {
                    Ok(outcome) => return Ok(outcome),
                    Err((b, e)) => {
                        binding = b;
                        expect = e;
                    }
                }
            }
            Ok(None) => {}
            Err(e) => return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
        }
        // Write-ahead: remember that a create is being sent, so that if its answer is lost (timeout,
        // 5xx after commit, crash) the account found later counts as created, never as a second
        // create (R-BIND-2, graph-spec §7.3).
        if let Some(f) = binding.in_flight.as_mut() {
            f.create_sent_at = Some(run.now);
        }
        binding.state = BindingState::Pending;
        binding.pending_reason = Some("creating".to_owned());
        binding = self.fx.bindings.put(&binding, expect).await?;
        expect = Expect::Version(binding.version);
        let password = match &user.password {
            Some(sealed) => match self.sealer.open(&user.id, sealed).await {
                Ok(password) => password,
                Err(e) => return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
            },
            None => generate_password(self.fx.random),
        };
        let new = NewM365User {
            user_principal_name: user.email.clone(),
            mail_nickname: mail_nickname(&user.email),
            display_name: user.display_name.clone(),
            given_name: user.given_name.clone(),
            surname: user.surname.clone(),
            job_title: user.job_title.clone(),
            department: user.department.clone(),
            attributes: user.attributes.clone(),
            account_enabled: true,
            password,
        };
        match self.directory.create_user(&tenant.id, &new).await {
            Ok(created) => {
                // The account holds our password: keep M365's stamp of it (R-PWD-3). Graph's 201
                // has only the default projection, without `lastPasswordChangeDateTime`
                // (graph-spec §3.1, §3.3): one read fetches it.
                binding.m365_password_changed_at = match created.last_password_change {
                    Some(at) => Some(at),
                    None => {
                        read_back_password_change(self.directory, &tenant.id, &created.id, None)
                            .await
                    }
                };
                binding.pushed_password_set_at = sealed_password_set_at(user);
                self.bound(
                    run,
                    user,
                    binding,
                    expect,
                    created.id,
                    Change::Created,
                    false,
                )
                .await
            }
            // Our earlier create (answer lost) or a concurrent one: adopt it, never POST again —
            // the account the adapter found, or else the one a lookup finds.
            Err(Error::Conflict(Conflict::UpnExists {
                existing: Some(found),
                ..
            })) => {
                self.adopt(
                    run,
                    user,
                    tenant,
                    binding,
                    expect,
                    *found.0,
                    Change::Created,
                )
                .await
            }
            Err(Error::Conflict(Conflict::UpnExists { existing: None, .. })) => {
                match self
                    .directory
                    .find_user_by_upn(&tenant.id, &user.email)
                    .await
                {
                    Ok(Some(found)) => {
                        self.adopt(run, user, tenant, binding, expect, found, Change::Created)
                            .await
                    }
                    Ok(None) => {
                        let lag = not_yet_visible(None);
                        self.fx.fail(run, binding, expect, lag, BIND_FAILURE).await
                    }
                    Err(e) => self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
                }
            }
            // A 429 (or our own rate budget) means Graph did not run the request, and a create
            // refused because a deleted account still holds the address (R-BIND-6/8) is M365's
            // "no": either way nothing can have been created, so the next attempt (or the
            // admin's re-bind once the address is released) may POST at once instead of waiting
            // out the lookup grace meant for answers lost after a commit (graph-spec §7.1, §12).
            // Any earlier create of this bind was past that grace when this one was sent.
            // A deleted account holds the address: restore it if it has this UPN (R-BIND-10)
            // instead of waiting for the address; else wait as below.
            Err(
                e @ Error::Unavailable {
                    reason: UnavailableReason::AddressHeld,
                    ..
                },
            ) if restore::may_restore(&binding) => {
                if let Some(f) = binding.in_flight.as_mut() {
                    f.create_sent_at = None;
                }
                match self
                    .restore_and_adopt(run, user, tenant, binding, expect)
                    .await?
                {
                    Ok(outcome) => Ok(outcome),
                    Err((binding, expect)) => {
                        self.fx.fail(run, binding, expect, e, BIND_FAILURE).await
                    }
                }
            }
            Err(
                e @ (Error::Throttled { .. }
                | Error::Unavailable {
                    reason: UnavailableReason::AddressHeld,
                    ..
                }),
            ) => {
                if let Some(f) = binding.in_flight.as_mut() {
                    f.create_sent_at = None;
                }
                self.fx.fail(run, binding, expect, e, BIND_FAILURE).await
            }
            Err(e) => self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
        }
    }

    /// Adopts an account someone else made, unless it is privileged and the request did not say
    /// `adoptPrivileged` (R-BIND-11): then the API request is refused (409, nothing written) and a
    /// queued retry fails for good with `privileged_account` on the binding.
    async fn adopt_existing(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        tenant: &Tenant,
        mut binding: Binding,
        expect: Expect,
        found: crate::model::M365User,
    ) -> Result<Outcome> {
        let opted_in = binding
            .in_flight
            .as_ref()
            .is_some_and(|f| f.adopt_privileged);
        let privilege = match privilege_of(self.directory, &tenant.id, &found.id).await {
            Ok(privilege) => privilege,
            // Found a moment ago, gone now: replication lag or a concurrent delete; retry.
            Err(e) if is_m365_not_found(&e) => {
                let lag = not_yet_visible(Some(e));
                return self.fx.fail(run, binding, expect, lag, BIND_FAILURE).await;
            }
            Err(e) => return self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
        };
        if privilege.is_privileged() && !opted_in {
            let refused = refusal(&found.user_principal_name, &privilege);
            if run.previous.is_none() {
                // The admin's own request: a 409 with nothing written (the ledger claim is
                // released by the caller).
                return Err(refused);
            }
            return self
                .fx
                .fail(run, binding, expect, refused, BIND_FAILURE)
                .await;
        }
        binding.adopted_privileged = privilege.is_privileged();
        let details = adoption_details(opted_in, &privilege);
        self.adopt_with(
            run,
            user,
            tenant,
            binding,
            expect,
            found,
            Change::Adopted,
            Some(details),
        )
        .await
    }

    /// Takes ownership of an existing account: sync attributes, enable sign-in (R-BIND-2).
    #[allow(clippy::too_many_arguments)]
    async fn adopt(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        tenant: &Tenant,
        binding: Binding,
        expect: Expect,
        found: crate::model::M365User,
        change: Change,
    ) -> Result<Outcome> {
        self.adopt_with(run, user, tenant, binding, expect, found, change, None)
            .await
    }

    /// [`Self::adopt`] with extra event details. Boxed ([`BoxFuture`]).
    #[allow(clippy::too_many_arguments)]
    fn adopt_with<'s>(
        &'s self,
        run: &'s Run<'_>,
        user: &'s DirectoryUser,
        tenant: &'s Tenant,
        binding: Binding,
        expect: Expect,
        found: crate::model::M365User,
        change: Change,
        details: Option<serde_json::Value>,
    ) -> BoxFuture<'s, Result<Outcome>> {
        Box::pin(self.adopt_with_inline(run, user, tenant, binding, expect, found, change, details))
    }

    #[allow(clippy::too_many_arguments)]
    async fn adopt_with_inline(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        tenant: &Tenant,
        mut binding: Binding,
        expect: Expect,
        found: crate::model::M365User,
        change: Change,
        details: Option<serde_json::Value>,
    ) -> Result<Outcome> {
        // An account our own (answer-lost) create made holds our password: its stamp, read by the
        // lookup, is ours. An adopted account keeps a password we did not set: no stamp, so
        // reconcile judges it by the clock rule (R-PWD-3).
        binding.m365_password_changed_at = match change {
            Change::Created => found.last_password_change,
            _ => None,
        };
        binding.pushed_password_set_at = match change {
            Change::Created => sealed_password_set_at(user),
            _ => binding.pushed_password_set_at,
        };
        let mut enabled = self.enable(tenant, &found.id, user, Some(&found)).await;
        let mut pushed = false;
        if enabled.is_ok() {
            // An account we did not create holds a password we did not set: the directory's
            // replaces it (R-BIND-12: a password set while the user was unbound).
            // `adopt_existing` has just checked the account's privilege (R-BIND-11); an account
            // our own create made is not privileged.
            match self
                .push_password(run, user, &mut binding, &found.id, Recheck::None)
                .await
            {
                Ok(p) => pushed = p,
                Err(e) => enabled = Err(e),
            }
        }
        match enabled {
            Ok(()) => {
                self.bound_with(
                    run, user, binding, expect, found.id, change, pushed, details,
                )
                .await
            }
            // Found a moment ago, gone now: replication lag or a concurrent delete; retry.
            Err(e) if is_m365_not_found(&e) => {
                let lag = not_yet_visible(Some(e));
                self.fx.fail(run, binding, expect, lag, BIND_FAILURE).await
            }
            Err(e) => self.fx.fail(run, binding, expect, e, BIND_FAILURE).await,
        }
    }

    /// Brings the account's attributes in line with the directory and allows sign-in.
    async fn enable(
        &self,
        tenant: &Tenant,
        id: &M365ObjectId,
        user: &DirectoryUser,
        current: Option<&crate::model::M365User>,
    ) -> Result<()> {
        let patch = patch_for(user, current);
        if !patch.is_empty() {
            self.directory.update_user(&tenant.id, id, &patch).await?;
        }
        if current.is_none_or(|c| !c.account_enabled) {
            self.directory
                .set_account_enabled(&tenant.id, id, true)
                .await?;
        }
        Ok(())
    }

    /// Pushes the sealed directory password to the account when M365 does not hold it from us yet
    /// (set while the user was unbound, or an adopted account's own password), keeping M365's new
    /// stamp (R-PWD-3). `Ok(true)` when it pushed. A push M365 refuses for good (e.g. the app lacks
    /// the admin role password resets need, graph-spec §3.4) does not fail the bind: it is recorded
    /// as a failure and the next bind or password set tries again.
    ///
    /// With [`Recheck::Privilege`] an account not adopted with `adoptPrivileged` is checked first
    /// (R-BIND-11: roles, consenting admin; two reads, only when a push is due): a privileged one
    /// keeps its password and the refusal is recorded as a `privileged_account` failure.
    ///
    /// # Errors
    /// Retryable failures and a vanished account (the bind retries or finds another); store
    /// failures.
    async fn push_password(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        binding: &mut Binding,
        id: &M365ObjectId,
        recheck: Recheck,
    ) -> Result<bool> {
        let (Some(sealed), Some(set_at)) = (&user.password, user.password_changed_at) else {
            return Ok(false);
        };
        if binding.pushed_password_set_at == Some(set_at) {
            return Ok(false);
        }
        let tenant = binding.tenant_id.clone();
        let refused = if recheck == Recheck::Privilege && !binding.adopted_privileged {
            match privilege_of(self.directory, &tenant, id).await {
                Ok(privilege) if privilege.is_privileged() => Some(refusal(id, &privilege)),
                Ok(_) => None,
                Err(e) if e.is_retryable() || is_m365_not_found(&e) => return Err(e),
                // Fail closed: what cannot be checked is not written to.
                Err(e) => Some(e),
            }
        } else {
            None
        };
        let pushed = match (refused, self.sealer.open(&user.id, sealed).await) {
            (Some(refused), _) => Err(refused),
            (None, Ok(password)) => self.directory.set_password(&tenant, id, &password).await,
            (None, Err(e)) => Err(e),
        };
        match pushed {
            Ok(()) => {
                let before = binding.m365_password_changed_at;
                binding.m365_password_changed_at =
                    read_back_password_change(self.directory, &tenant, id, before).await;
                binding.pushed_password_set_at = Some(set_at);
                Ok(true)
            }
            Err(e) if e.is_retryable() || is_m365_not_found(&e) => Err(e),
            Err(e) => {
                let code = if e.is_conflict("privileged_account") {
                    "privileged_account"
                } else {
                    "password_not_pushed"
                };
                self.fx
                    .failures
                    .record(&Failure {
                        id: failure_id(&run.op, user.id.as_str(), code, run.now),
                        tenant_id: tenant,
                        user_id: Some(user.id.clone()),
                        operation_id: run.op.clone(),
                        code: code.to_owned(),
                        message: e.to_string(),
                        graph_request_id: e.graph_request_id().map(str::to_owned),
                        at: run.now,
                    })
                    .await?;
                Ok(false)
            }
        }
    }

    /// Records the bound state and its events, then sends the welcome notification. A binding a
    /// later request took over since this run read it is left to that request: see
    /// [`Self::lost`].
    #[allow(clippy::too_many_arguments)]
    async fn bound(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        binding: Binding,
        expect: Expect,
        id: M365ObjectId,
        change: Change,
        password_pushed: bool,
    ) -> Result<Outcome> {
        self.bound_with(
            run,
            user,
            binding,
            expect,
            id,
            change,
            password_pushed,
            None,
        )
        .await
    }

    /// [`Self::bound`] with extra event details (R-BIND-11: a privileged adoption's opt-in).
    /// Boxed ([`BoxFuture`]).
    #[allow(clippy::too_many_arguments)]
    fn bound_with<'s>(
        &'s self,
        run: &'s Run<'_>,
        user: &'s DirectoryUser,
        binding: Binding,
        expect: Expect,
        id: M365ObjectId,
        change: Change,
        password_pushed: bool,
        details: Option<serde_json::Value>,
    ) -> BoxFuture<'s, Result<Outcome>> {
        Box::pin(self.bound_with_inline(
            run,
            user,
            binding,
            expect,
            id,
            change,
            password_pushed,
            details,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    async fn bound_with_inline(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        mut binding: Binding,
        expect: Expect,
        id: M365ObjectId,
        change: Change,
        password_pushed: bool,
        details: Option<serde_json::Value>,
    ) -> Result<Outcome> {
        let welcome = binding.in_flight.as_ref().is_none_or(|f| f.welcome);
        let tenant_id = binding.tenant_id.clone();
        // The account this bind restored from deletedItems (R-BIND-10): said on the binding and
        // in the event.
        binding.restored = restore::is_restored(&binding, &id);
        let details = restore::details(binding.restored, details);
        let (current, now_stored) = self.fx.still_current(&run.user, expect).await?;
        let mut expect = expect;
        if !current {
            match now_stored {
                // Still ours (another writer only touched other fields): write over it.
                Some(b)
                    if b.in_flight
                        .as_ref()
                        .is_some_and(|f| f.operation_id == run.op) =>
                {
                    expect = Expect::Version(b.version);
                }
                other => return Box::pin(self.lost(run, &tenant_id, &id, other)).await,
            }
        }
        binding.state = BindingState::Provisioned;
        binding.m365_object_id = Some(id.clone());
        binding.pending_reason = None;
        binding.last_error = None;
        binding.in_flight = None;
        binding.suspended_reason = None;
        if password_pushed {
            self.fx
                .append_event(
                    run,
                    &binding,
                    EventKind::UserPasswordUpdateProvision,
                    Change::PasswordPushed.as_str(),
                )
                .await?;
        }
        let outcome = match self
            .fx
            .succeed_with(run, &binding, expect, change, details)
            .await
        {
            Ok(outcome) => outcome,
            // Taken over between the read above and the write (a few milliseconds): the events may
            // already be recorded, but the account must not stay enabled.
            Err(e) if is_stale(&e) => {
                let now_stored = self.fx.bindings.get(&run.user).await?;
                return Box::pin(self.lost(run, &tenant_id, &id, now_stored)).await;
            }
            Err(e) => return Err(e),
        };
        if welcome {
            let notification = WelcomeNotification {
                user_id: user.id.clone(),
                email: user.email.clone(),
                display_name: user.display_name.clone(),
                tenant_id: tenant_id.clone(),
                user_principal_name: user.email.clone(),
                m365_object_id: id,
                operation_id: run.op.clone(),
            };
            // The bind is done: a lost notification is a diagnostic, not a failed bind.
            if let Err(e) = self.fx_notify(&notification).await {
                self.fx
                    .failures
                    .record(&Failure {
                        id: failure_id(&run.op, user.id.as_str(), "welcome_not_sent", run.now),
                        tenant_id,
                        user_id: Some(user.id.clone()),
                        operation_id: run.op.clone(),
                        code: "welcome_not_sent".to_owned(),
                        message: e.to_string(),
                        graph_request_id: None,
                        at: run.now,
                    })
                    .await?;
            }
        }
        Ok(outcome)
    }

    async fn fx_notify(&self, notification: &WelcomeNotification) -> Result<()> {
        self.notifier.welcome(notification).await
    }

    /// This run's final write lost to a later request (R-BIND-12). When what won says the account
    /// must not sign in (an unbind or suspension in flight or done, a disabled user), the account
    /// this run enabled or created is blocked again; the binding is left to the winner (it learns
    /// the account's id if it did not know it) and nothing is recorded for this run.
    ///
    /// # Errors
    /// Store failures; a failed block (after the client's own retries): the failure is recorded
    /// and the error returned — the next reconcile sees the account enabled and blocks it.
    async fn lost(
        &self,
        run: &Run<'_>,
        tenant: &TenantId,
        id: &M365ObjectId,
        current: Option<Binding>,
    ) -> Result<Outcome> {
        let user = self.users.get(&run.user).await?;
        let Some(current) = current else {
            return self.fx.superseded(run).await;
        };
        if !account_must_be_blocked(&current, user.as_ref()) {
            // A later bind owns the account now and enables it itself.
            return self.fx.superseded(run).await;
        }
        if current.m365_object_id.is_none()
            && current.in_flight.is_none()
            && current.tenant_id == *tenant
        {
            // The winner never saw this account (a create it could not find): tell it, so a
            // re-bind unblocks this one and reconcile watches it. Best effort: a newer write wins.
            let known = Binding {
                m365_object_id: Some(id.clone()),
                ..current.clone()
            };
            match self
                .fx
                .bindings
                .put(&known, Expect::Version(current.version))
                .await
            {
                Ok(_) => {}
                Err(e) if is_stale(&e) => {}
                Err(e) => return Err(e),
            }
        }
        match self.directory.set_account_enabled(tenant, id, false).await {
            Ok(()) => {
                tracing::info!(tenant.id = %tenant, user.id = %id, "bind lost to a later request; account blocked again");
            }
            Err(e) if is_m365_not_found(&e) => {}
            Err(e) => {
                self.fx
                    .failures
                    .record(&Failure {
                        id: failure_id(&run.op, run.user.as_str(), e.code(), run.now),
                        tenant_id: tenant.clone(),
                        user_id: Some(run.user.clone()),
                        operation_id: run.op.clone(),
                        code: e.code().to_owned(),
                        message: e.to_string(),
                        graph_request_id: e.graph_request_id().map(str::to_owned),
                        at: run.now,
                    })
                    .await?;
                return Err(e);
            }
        }
        self.fx.superseded(run).await
    }
}

/// Whether `binding` (as a later request left it) says its account must not sign in: an unbind is
/// under way, the binding is `blocked` or `suspended`, or the user is disabled in the directory. A
/// later bind in flight owns the account and is left to it.
fn account_must_be_blocked(binding: &Binding, user: Option<&DirectoryUser>) -> bool {
    if user.is_some_and(|u| u.state == UserState::Disabled) {
        return true;
    }
    match binding.in_flight.as_ref().map(|f| f.kind) {
        Some(OperationKind::UserBind) => false,
        Some(OperationKind::UserUnbind) => true,
        _ => matches!(
            binding.state,
            BindingState::Blocked | BindingState::Suspended
        ),
    }
}

/// The directory stamp of the sealed password a create sends (`None` when none is set and a
/// random one is generated).
fn sealed_password_set_at(user: &DirectoryUser) -> Option<chrono::DateTime<chrono::Utc>> {
    user.password.as_ref().and(user.password_changed_at)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use secrecy::ExposeSecret;

    use super::*;
    use crate::error::{Conflict, UnavailableReason};
    use crate::model::{EventKind, OperationOutcome, TenantId};
    use crate::policy::password::check_entra;
    use crate::policy::routing::RoutingError;
    use crate::ports::Sealer;
    use crate::ports::{Claim, OperationLedger};
    use crate::usecase::RetryPolicy;
    use crate::usecase::retry::RetryOutcome;
    use crate::usecase::testkit::{
        ADDRESS_RELEASE, World, bind_deferred_by, secret, throttled, uid, unavailable,
    };

    #[tokio::test]
    async fn binding_a_new_user_creates_the_account_with_the_directory_attributes() {
        // R-BIND-2, R-BIND-3
        let w = World::new().await;
        let user = w.user("adele").await;
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("bound at once")
        };
        assert_eq!(change, Change::Created);
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(binding.tenant_id, w.tenant.id);
        let account = w
            .directory
            .user(&w.tenant.id, &World::object_id(&binding))
            .unwrap();
        assert_eq!(account.user_principal_name, "adele@contoso.com");
        assert_eq!(account.display_name, user.display_name);
        assert_eq!(account.given_name, user.given_name);
        assert_eq!(account.surname, user.surname);
        assert_eq!(account.job_title, user.job_title);
        assert_eq!(account.department, user.department);
        assert!(account.account_enabled);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert_eq!(w.events.all().len(), 1);
        let event = &w.events.all()[0];
        assert_eq!(event.user_id, Some(uid("adele")));
        assert_eq!(event.tenant_id, Some(w.tenant.id.clone()));
        assert!(w.queue.snapshot().is_empty());
        assert!(w.failures.all().is_empty());
    }

    #[tokio::test]
    async fn binding_creates_the_account_with_the_sealed_directory_password() {
        // R-BIND-2 (password: the sealed directory password)
        let w = World::new().await;
        let mut user = w.user("adele").await;
        user.password = Some(
            w.sealer
                .seal(&user.id, &secret("Directory-Pass-42"))
                .await
                .unwrap(),
        );
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
        w.bind("adele").await;
        let binding = w.binding("adele").await;
        let pushed = w
            .directory
            .password(&w.tenant.id, &World::object_id(&binding))
            .unwrap();
        assert_eq!(pushed.expose_secret(), "Directory-Pass-42");
    }

    #[tokio::test]
    async fn binding_without_a_directory_password_creates_a_random_entra_compliant_one() {
        // R-BIND-2 (else a random compliant one)
        let w = World::with_bound(&["adele", "alex"]).await;
        let p1 = w
            .directory
            .password(&w.tenant.id, &World::object_id(&w.binding("adele").await))
            .unwrap();
        let p2 = w
            .directory
            .password(&w.tenant.id, &World::object_id(&w.binding("alex").await))
            .unwrap();
        assert_eq!(check_entra(&p1), Ok(()));
        assert_eq!(check_entra(&p2), Ok(()));
        assert_ne!(p1.expose_secret(), p2.expose_secret());
        for _ in 0..200 {
            assert_eq!(check_entra(&generate_password(&w.random)), Ok(()));
        }
    }

    #[tokio::test]
    async fn binding_an_existing_m365_user_adopts_it_without_a_second_account() {
        // R-BIND-2, R-BIND-3
        let w = World::new().await;
        let user = w.user("adele").await;
        let existing = w
            .directory
            .create_user(
                &w.tenant.id,
                &NewM365User {
                    user_principal_name: user.email.clone(),
                    mail_nickname: "adele".into(),
                    display_name: "Old Name".into(),
                    given_name: None,
                    surname: Some("Vance".into()),
                    job_title: None,
                    department: Some("Sales".into()),
                    attributes: Default::default(),
                    account_enabled: false,
                    password: secret("Existing-Pass-1"),
                },
            )
            .await
            .unwrap();
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("adopted at once")
        };
        assert_eq!(change, Change::Adopted);
        assert_eq!(binding.m365_object_id, Some(existing.id.clone()));
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        let account = w.directory.user(&w.tenant.id, &existing.id).unwrap();
        assert!(account.account_enabled);
        assert_eq!(account.display_name, user.display_name);
        assert_eq!(account.given_name, user.given_name);
        assert_eq!(account.department, user.department);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 0);
        assert_eq!(w.events.all()[0].reason.as_deref(), Some("adopted"));
    }

    #[tokio::test]
    async fn binding_a_user_disabled_in_the_directory_is_refused_and_nothing_is_written() {
        // R-BIND-9 (409 user_disabled), R-SAFE-1
        let w = World::new().await;
        let mut user = w.user("adele").await;
        user.state = crate::model::UserState::Disabled;
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
        let err = w
            .binder()
            .bind(&uid("adele"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "user_disabled");
        assert!(matches!(
            err,
            Error::Conflict(Conflict::UserDisabled { .. })
        ));
        assert_eq!(w.bindings.get(&uid("adele")).await.unwrap(), None);
        assert_eq!(w.directory.calls(), 0);
        assert!(w.events.all().is_empty() && w.failures.all().is_empty());
        // Nor is a blocked binding of a disabled user unblocked.
        let mut user = w.users.get(&uid("adele")).await.unwrap().unwrap();
        user.state = crate::model::UserState::Active;
        let v = user.version;
        let mut user = w.users.replace(&user, v).await.unwrap();
        w.bind("adele").await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        user.state = crate::model::UserState::Disabled;
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
        let before = w.binding("adele").await;
        let calls = w.directory.calls();
        let err = w
            .binder()
            .bind(&uid("adele"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "user_disabled");
        assert_eq!(w.binding("adele").await, before);
        assert_eq!(w.directory.calls(), calls);
    }

    #[tokio::test]
    async fn a_password_set_while_unbound_is_pushed_when_the_user_is_bound_again() {
        // R-BIND-12 (a password set while unbound is applied on re-bind), R-PWD-2
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        w.clock.advance(TimeDelta::minutes(1));
        w.passwords()
            .set(&uid("adele"), &secret("First-Horse-11"))
            .await
            .unwrap();
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        w.clock.advance(TimeDelta::minutes(1));
        let set = w
            .passwords()
            .set(&uid("adele"), &secret("Second-Horse-22"))
            .await
            .unwrap();
        assert!(
            matches!(set.push, Outcome::Unchanged { .. }),
            "unbound: not pushed"
        );
        let held = w.directory.password(&w.tenant.id, &id).unwrap();
        assert_eq!(held.expose_secret(), "First-Horse-11");
        let pushes = w.count_events(EventKind::UserPasswordUpdateProvision);
        w.clock.advance(TimeDelta::minutes(1));
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("re-bound")
        };
        assert_eq!(change, Change::Unblocked);
        let now_held = w.directory.password(&w.tenant.id, &id).unwrap();
        assert_eq!(now_held.expose_secret(), "Second-Horse-22");
        assert_eq!(
            w.count_events(EventKind::UserPasswordUpdateProvision),
            pushes + 1
        );
        let user = w.users.get(&uid("adele")).await.unwrap().unwrap();
        assert_eq!(binding.pushed_password_set_at, user.password_changed_at);
        assert_eq!(
            binding.m365_password_changed_at,
            Some(w.now()),
            "M365's stamp kept"
        );
        // Unbound and bound again without a new password: nothing to push.
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        w.bind("adele").await;
        assert_eq!(
            w.count_events(EventKind::UserPasswordUpdateProvision),
            pushes + 1
        );
    }

    #[tokio::test]
    async fn a_password_m365_refuses_on_rebind_is_recorded_and_the_bind_still_completes() {
        // R-BIND-12, R-BIND-5 (the password is secondary to unblocking: a permanent refusal,
        // e.g. the app lacks the admin role resets need, is a diagnostic; a later bind retries)
        let w = World::with_bound(&["adele"]).await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        w.passwords()
            .set(&uid("adele"), &secret("Second-Horse-22"))
            .await
            .unwrap();
        w.directory.pass_next_call(); // attributes
        w.directory.pass_next_call(); // sign-in
        w.directory.pass_next_call(); // privilege: roles (R-BIND-11)
        w.directory.pass_next_call(); // privilege: consenting admin
        w.directory.fail_next_call(Error::Forbidden {
            graph_request_id: Some("req-403".into()),
        });
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("bound")
        };
        assert_eq!(change, Change::Unblocked);
        assert_eq!(binding.pushed_password_set_at, None, "still to push");
        let failure = w
            .failures
            .all()
            .into_iter()
            .find(|f| f.code == "password_not_pushed")
            .unwrap();
        assert_eq!(failure.graph_request_id.as_deref(), Some("req-403"));
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 0);
        // The next bind (after an unbind) pushes it.
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        w.bind("adele").await;
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
    }

    #[tokio::test]
    async fn a_rebind_leaves_the_password_of_an_account_made_privileged_since_alone() {
        // R-BIND-11 (a role granted after the bind counts), R-BIND-12 (the password set while
        // unbound waits; the account is still unblocked: it is ours)
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        let held_before = w.directory.password(&w.tenant.id, &id).unwrap();
        w.passwords()
            .set(&uid("adele"), &secret("Second-Horse-22"))
            .await
            .unwrap();
        w.directory
            .grant_role(&w.tenant.id, &id, "Helpdesk Administrator");
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("re-bound")
        };
        assert_eq!(change, Change::Unblocked);
        let held = w.directory.password(&w.tenant.id, &id).unwrap();
        assert_eq!(
            held.expose_secret(),
            held_before.expose_secret(),
            "no password write reached the privileged account"
        );
        assert_eq!(binding.pushed_password_set_at, None, "still to push");
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 0);
        let failure = w
            .failures
            .all()
            .into_iter()
            .find(|f| f.code == "privileged_account")
            .expect("the refusal is recorded");
        assert!(
            failure.message.contains("Helpdesk Administrator"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn adopting_an_existing_account_gives_it_the_directory_password() {
        // R-BIND-12 (set while the user had no binding), R-BIND-2
        let (w, _) = World::with_adeles_account("Her-Own-Pass-1").await;
        w.passwords()
            .set(&uid("adele"), &secret("Directory-Pass-42"))
            .await
            .unwrap();
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("adopted")
        };
        assert_eq!(change, Change::Adopted);
        let held = w
            .directory
            .password(&w.tenant.id, &World::object_id(&binding))
            .unwrap();
        assert_eq!(held.expose_secret(), "Directory-Pass-42");
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
        assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
        assert!(binding.m365_password_changed_at.is_some());
    }

    #[tokio::test]
    async fn a_rebind_records_its_intent_before_writing_to_m365() {
        // R-BIND-12 (write-ahead: an unbind arriving meanwhile sees a bind under way)
        let w = World::with_bound(&["adele"]).await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        let mut first_write = w
            .directory
            .hold_next("update_user", crate::testing::Stage::Before);
        let bind = w.bind("adele");
        let look = async {
            assert!(first_write.arrived().await);
            let during = w.binding("adele").await;
            first_write.release();
            during
        };
        let (bound, during) =
            crate::usecase::testkit::interleaved(async { tokio::join!(bind, look) }).await;
        assert_eq!(during.state, BindingState::Pending);
        assert_eq!(during.pending_reason.as_deref(), Some("binding"));
        assert_eq!(
            during.in_flight.as_ref().map(|f| f.kind),
            Some(OperationKind::UserBind)
        );
        assert!(matches!(bound, Outcome::Done { .. }));
    }

    #[tokio::test]
    async fn a_user_whose_domain_routes_nowhere_is_refused_and_nothing_is_written() {
        // R-BIND-1, R-SAFE-1
        let w = World::new().await;
        w.user_at("bob", "fabrikam.com").await;
        let err = w
            .binder()
            .bind(&uid("bob"), BindRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Routing(RoutingError::UnclaimedDomain { .. })
        ));
        assert_eq!(err.code(), "domain_not_connected");
        assert_eq!(w.bindings.get(&uid("bob")).await.unwrap(), None);
        assert_eq!(w.directory.calls(), 0);
        assert!(w.events.all().is_empty() && w.failures.all().is_empty());
    }

    #[tokio::test]
    async fn a_user_on_a_federated_domain_is_refused_with_a_clear_error() {
        // R-BIND-1, R-CONN-3
        let w = World::new().await;
        w.user_at("carol", "sso.contoso.com").await;
        let err = w
            .binder()
            .bind(&uid("carol"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "federated_domain");
        assert_eq!(w.bindings.get(&uid("carol")).await.unwrap(), None);
        assert_eq!(w.directory.calls(), 0);
    }

    #[tokio::test]
    async fn a_user_of_a_tenant_that_is_not_active_is_refused() {
        // R-BIND-1 (the tenant must be active)
        let w = World::new().await;
        w.user("adele").await;
        w.set_tenant_status(crate::model::TenantStatus::Deauthorized)
            .await;
        let err = w
            .binder()
            .bind(&uid("adele"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "tenant_not_active");
        assert_eq!(w.directory.calls(), 0);
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_as_not_found() {
        // R-SAFE-1
        let w = World::new().await;
        let err = w
            .binder()
            .bind(&uid("ghost"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
    }

    #[tokio::test]
    async fn binding_sends_one_welcome_notification_that_holds_no_password() {
        // R-BIND-4, R-SAFE-2
        let w = World::new().await;
        let mut user = w.user("adele").await;
        user.password = Some(
            w.sealer
                .seal(&user.id, &secret("Directory-Pass-42"))
                .await
                .unwrap(),
        );
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
        w.bind("adele").await;
        let sent = w.notifier.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].user_id, uid("adele"));
        assert_eq!(sent[0].email, user.email);
        let json = serde_json::to_string(&sent[0]).unwrap();
        assert!(!json.contains("Directory-Pass-42"));
        assert!(!json.to_lowercase().contains("password"));
        // The same request again changes nothing and sends nothing.
        assert!(matches!(w.bind("adele").await, Outcome::Unchanged { .. }));
        assert_eq!(w.notifier.sent().len(), 1);
    }

    #[tokio::test]
    async fn binding_with_welcome_false_sends_no_notification() {
        // R-BIND-4
        let w = World::new().await;
        w.user("adele").await;
        let outcome = w
            .binder()
            .bind(
                &uid("adele"),
                BindRequest {
                    welcome: false,
                    ..BindRequest::default()
                },
            )
            .await
            .unwrap();
        assert!(matches!(outcome, Outcome::Done { .. }));
        assert!(w.notifier.sent().is_empty());
    }

    #[tokio::test]
    async fn a_failed_welcome_notification_leaves_the_bind_done_and_is_recorded_as_a_failure() {
        // R-BIND-4, R-AUD-1
        let w = World::new().await;
        w.user("adele").await;
        w.notifier
            .fail_next(unavailable(UnavailableReason::Service));
        assert!(matches!(w.bind("adele").await, Outcome::Done { .. }));
        assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
        assert_eq!(w.failures.all()[0].code, "welcome_not_sent");
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
    }

    #[tokio::test]
    async fn binding_an_already_provisioned_user_changes_nothing() {
        // R-BIND-2 (idempotent)
        let w = World::with_bound(&["adele"]).await;
        let calls = w.directory.calls();
        let before = w.binding("adele").await;
        let Outcome::Unchanged { binding } = w.bind("adele").await else {
            panic!("unchanged")
        };
        assert_eq!(binding, Some(before));
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.events.all().len(), 1);
    }

    #[tokio::test]
    async fn a_user_bound_in_one_tenant_cannot_be_bound_to_another() {
        // R-BIND-1 (one tenant per user)
        let w = World::new().await;
        w.user("adele").await;
        let mut elsewhere = Binding::pending(uid("adele"), TenantId::generate(), "x");
        elsewhere.state = BindingState::Provisioned;
        w.bindings.put(&elsewhere, Expect::Absent).await.unwrap();
        let err = w
            .binder()
            .bind(&uid("adele"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "bound_elsewhere");
        assert_eq!(w.directory.calls(), 0);
    }

    #[tokio::test]
    async fn rebinding_a_blocked_binding_unblocks_the_same_account() {
        // R-BIND-5
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("unblocked")
        };
        assert_eq!(change, Change::Unblocked);
        assert_eq!(binding.m365_object_id, Some(id.clone()));
        assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
    }

    #[tokio::test]
    async fn rebinding_an_unselected_binding_unblocks_the_same_account() {
        // R-BIND-5, R-CONN-5 (reconnecting does not re-bind; binding again does)
        let w = World::with_bound(&["adele"]).await;
        let mut b = w.binding("adele").await;
        let id = World::object_id(&b);
        b.state = BindingState::Unselected;
        let v = b.version;
        w.bindings.put(&b, Expect::Version(v)).await.unwrap();
        let Outcome::Done { binding, change } = w.bind("adele").await else {
            panic!("rebound")
        };
        assert_eq!(change, Change::Unblocked);
        assert_eq!(binding.m365_object_id, Some(id));
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
    }

    #[tokio::test]
    async fn a_throttled_bind_is_pending_with_its_reason_and_queued_with_backoff() {
        // R-BIND-6, R-AUD-1
        let w = World::new().await;
        w.user("adele").await;
        w.directory.fail_next_call(throttled());
        let now = w.now();
        let Outcome::Deferred { binding, retry } = w.bind("adele").await else {
            panic!("deferred")
        };
        assert_eq!(binding.state, BindingState::Pending);
        assert_eq!(binding.pending_reason.as_deref(), Some("throttled"));
        let last = binding.last_error.clone().unwrap();
        assert_eq!(last.code, "throttled");
        assert_eq!(last.graph_request_id.as_deref(), Some("req-429"));
        assert_eq!(retry.attempt, 1);
        assert_eq!(retry.reason, "throttled");
        assert!(
            retry.not_before >= now + TimeDelta::seconds(3),
            "Retry-After honoured"
        );
        let queued = w.queue.snapshot();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message, retry);
        let failures = w.failures.all();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].graph_request_id.as_deref(), Some("req-429"));
        assert!(w.events.all().is_empty(), "never an event for a failure");
        // The claim was released: the retry can run it at once.
        let mut w = w;
        let outcomes = w.drain().await;
        assert!(matches!(
            outcomes.last(),
            Some(RetryOutcome::Ran(o)) if matches!(**o, Outcome::Done { change: Change::Created, .. })
        ));
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(binding.pending_reason, None);
        assert_eq!(binding.last_error, None);
        assert_eq!(binding.in_flight, None);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert_eq!(w.notifier.sent().len(), 1);
    }

    #[tokio::test]
    async fn backoff_grows_per_attempt_with_deterministic_jitter() {
        // R-BIND-6 (backoff + jitter; injected randomness)
        async fn delays(seed_world: &World) -> Vec<i64> {
            let mut out = Vec::new();
            for _ in 0..5 {
                seed_world
                    .directory
                    .fail_next_call(unavailable(UnavailableReason::Service));
            }
            let Outcome::Deferred { mut retry, .. } = seed_world.bind("adele").await else {
                panic!("deferred")
            };
            out.push((retry.not_before - seed_world.now()).num_milliseconds());
            for _ in 0..4 {
                seed_world.clock.set(retry.not_before);
                let _ = seed_world.queue.drain();
                let outcome = seed_world.dispatcher().dispatch(&retry).await.unwrap();
                let RetryOutcome::Ran(o) = outcome else {
                    panic!("ran")
                };
                let Outcome::Deferred { retry: next, .. } = *o else {
                    panic!("deferred again")
                };
                out.push((next.not_before - seed_world.now()).num_milliseconds());
                retry = next;
            }
            out
        }
        let a = World::new().await;
        a.user("adele").await;
        let b = World::new().await;
        b.user("adele").await;
        let da = delays(&a).await;
        assert_eq!(da, delays(&b).await, "same seed, same delays");
        // Equal jitter: attempt n waits between half and all of base · 2^(n-1).
        for (n, d) in da.iter().enumerate() {
            let full = 2_000_i64 << n;
            assert!(*d >= full / 2 && *d <= full, "attempt {}: {d} ms", n + 1);
        }
        let attempts: Vec<u32> = a
            .queue
            .snapshot()
            .iter()
            .map(|q| q.message.attempt)
            .collect();
        assert_eq!(attempts, vec![5]);
    }

    #[tokio::test]
    async fn a_create_that_timed_out_after_commit_is_resolved_by_lookup_never_a_second_create() {
        // R-BIND-2, R-BIND-3 (graph-spec §7.3)
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.pass_next_call(); // find_user_by_upn
        w.directory
            .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout));
        let Outcome::Deferred { binding, .. } = w.bind("adele").await else {
            panic!("deferred")
        };
        assert_eq!(binding.pending_reason.as_deref(), Some("timeout"));
        assert!(binding.in_flight.as_ref().unwrap().create_sent_at.is_some());
        assert_eq!(
            w.directory.active_user_count(&w.tenant.id),
            1,
            "it did commit"
        );
        w.drain().await;
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.directory.create_calls(), 1, "no second POST");
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 0);
        assert_eq!(w.notifier.sent().len(), 1);
    }

    #[tokio::test]
    async fn binding_again_while_a_lost_create_waits_records_the_account_as_created_once() {
        // R-BIND-2, R-BIND-3 (a repeated request replaces the queued one and inherits its knowledge)
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.pass_next_call();
        w.directory
            .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout));
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        let Outcome::Done { change, .. } = w.bind("adele").await else {
            panic!("bound by the second request")
        };
        assert_eq!(change, Change::Created);
        let outcomes = w.drain().await;
        assert_eq!(
            outcomes,
            vec![RetryOutcome::Ran(Box::new(Outcome::Superseded))]
        );
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert_eq!(w.events.all().len(), 1);
        assert_eq!(w.notifier.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_lost_create_under_replication_lag_converges_to_one_account() {
        // R-BIND-2, R-BIND-6 (eventual-consistency 404s, graph-spec §7.4)
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.set_replication_lag(TimeDelta::seconds(30));
        w.directory.pass_next_call();
        w.directory
            .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout));
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        let outcomes = w.drain().await;
        // While the new account is invisible, the retry waits for the lookup instead of POSTing.
        assert!(outcomes.iter().any(|o| matches!(
            o,
            RetryOutcome::Ran(o) if matches!(&**o, Outcome::Deferred { retry, .. } if retry.reason == "not_yet_visible")
        )));
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(
            w.directory.create_calls(),
            1,
            "no second POST within the grace"
        );
        assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_create_that_finds_the_upn_taken_adopts_the_account_the_directory_found_without_looking_again()
     {
        // R-BIND-2 (a concurrent create: adopt it, never POST again); the adapter's own lookup on
        // the conflict is the only one after the create (issue 13: one lookup, not two)
        let w = World::new().await;
        let user = w.user("adele").await;
        // Another creator commits the account between the bind's lookup and its create.
        let mut lookup = w
            .directory
            .hold_next("find_user_by_upn", crate::testing::Stage::AfterCommit);
        let racer = async {
            assert!(lookup.arrived().await);
            let other = w
                .m365_account(&user.email, "adele", "Adele", "Her-Own-Pass-1")
                .await;
            lookup.release();
            other
        };
        let (bound, other) =
            crate::usecase::testkit::interleaved(async { tokio::join!(w.bind("adele"), racer) })
                .await;
        let Outcome::Done { binding, change } = bound else {
            panic!("adopted: {bound:?}")
        };
        assert_eq!(change, Change::Created);
        assert_eq!(binding.m365_object_id, Some(other.id));
        assert_eq!(w.directory.create_calls(), 2, "the racer's and the bind's");
        assert_eq!(
            w.directory.find_calls(),
            1,
            "the bind's lookup before its create, none after the conflict"
        );
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
    }

    #[tokio::test]
    async fn a_create_that_never_committed_is_sent_again_after_the_lookup_grace() {
        // R-BIND-2, R-BIND-6 (a 5xx before commit: the lookup never finds it, so create again)
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.pass_next_call();
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Timeout));
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        w.drain().await;
        assert_eq!(w.directory.create_calls(), 2);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
    }

    #[tokio::test]
    async fn a_throttled_create_is_sent_again_at_the_next_retry_without_waiting_for_a_lookup() {
        // R-BIND-6 (a 429 means Graph did not run the POST: no lost create to look for)
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.pass_next_call();
        w.directory.fail_next_call(throttled());
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        let outcomes = w.drain().await;
        assert_eq!(
            outcomes.len(),
            1,
            "one retry finishes the bind: {outcomes:?}"
        );
        assert!(matches!(
            &outcomes[0],
            RetryOutcome::Ran(o) if matches!(&**o, Outcome::Done { change: Change::Created, .. })
        ));
        assert_eq!(w.directory.create_calls(), 2);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
    }

    #[tokio::test]
    async fn a_permanent_failure_puts_the_binding_in_error_without_an_event() {
        // R-BIND-6, R-AUD-1
        let w = World::new().await;
        w.user("adele").await;
        w.directory.fail_next_call(Error::Rejected {
            graph_code: "Request_BadRequest".into(),
            message: "Property userPrincipalName is invalid.".into(),
            graph_request_id: Some("req-400".into()),
        });
        let Outcome::Failed {
            binding,
            code,
            exhausted,
        } = w.bind("adele").await
        else {
            panic!("failed")
        };
        assert_eq!(code, "m365_rejected");
        assert!(!exhausted);
        assert_eq!(binding.state, BindingState::Error);
        assert_eq!(binding.in_flight, None);
        assert_eq!(
            binding.last_error.unwrap().graph_request_id.as_deref(),
            Some("req-400")
        );
        assert!(w.events.all().is_empty());
        assert!(w.queue.snapshot().is_empty());
        assert_eq!(w.failures.all().len(), 1);
        assert!(w.notifier.sent().is_empty());
        // The ledger remembers the failure; binding again (new intent) is allowed.
        let op = OperationId::new(
            OperationKind::UserBind,
            &OperationSubject::User(uid("adele")),
            0,
        );
        let claim = w.ledger.claim(&op, w.now(), w.now()).await.unwrap();
        assert_eq!(
            claim,
            Claim::AlreadyDone(OperationOutcome::Failed {
                code: "m365_rejected".into()
            })
        );
        assert!(matches!(
            w.bind("adele").await,
            Outcome::Done {
                change: Change::Created,
                ..
            }
        ));
    }

    async fn deleted_in_m365(w: &World) {
        w.user("adele").await;
        w.bind("adele").await;
        let id = World::object_id(&w.binding("adele").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        let outcome = w.unbinder().unbind(&uid("adele")).await.unwrap();
        assert!(matches!(
            outcome,
            Outcome::Done {
                change: Change::DeletedInM365,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn rebind_after_deletion_waits_out_the_address_release_and_recreates_the_account() {
        // R-BIND-8, R-BIND-6, R-BIND-10 (`restore: false`)
        let mut w = World::new().await;
        deleted_in_m365(&w).await;
        let old = World::object_id(&w.binding("adele").await);
        let start = w.now();
        let Outcome::Deferred { binding, retry } = w.bind_without_restore("adele").await else {
            panic!("address held")
        };
        assert_eq!(binding.state, BindingState::Pending);
        assert_eq!(binding.pending_reason.as_deref(), Some("address_held"));
        assert_eq!(retry.reason, "address_held");
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_ne!(binding.m365_object_id, Some(old));
        assert!(w.now() - start >= TimeDelta::hours(24));
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 2);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_rebind_right_after_the_address_release_creates_at_once_without_a_lookup_grace() {
        // R-BIND-6, R-BIND-8, R-BIND-10 (`restore: false`; M365 refused the create: nothing can have been committed)
        let w = World::new().await;
        deleted_in_m365(&w).await;
        let old = World::object_id(&w.binding("adele").await);
        let Outcome::Deferred { binding, .. } = w.bind_without_restore("adele").await else {
            panic!("address held")
        };
        let in_flight = binding.in_flight.unwrap();
        assert_eq!(
            in_flight.create_sent_at, None,
            "the refusal cleared the mark"
        );
        assert!(in_flight.address_held_since.is_some());
        // The address is released; the admin binds again seconds later (well within the
        // 60-second lookup grace that applies to a create whose answer was lost).
        w.clock.advance(ADDRESS_RELEASE);
        let creates = w.directory.create_calls();
        let Outcome::Done { binding, change } = w.bind_without_restore("adele").await else {
            panic!("created at once")
        };
        assert_eq!(change, Change::Created);
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_ne!(binding.m365_object_id, Some(old));
        assert_eq!(w.directory.create_calls(), creates + 1);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 2);
    }

    #[tokio::test]
    async fn a_deferral_records_on_the_binding_when_its_queued_retry_is_due() {
        // R-REC-5 (a queued retry can be told from a lost one)
        let w = World::new().await;
        let (binding, retry) = bind_deferred_by(&w, "adele", throttled()).await;
        let due = binding.in_flight.as_ref().unwrap().retry_due_at;
        assert_eq!(due, Some(retry.not_before));
        assert!(due.unwrap() > w.now());
        assert_eq!(
            w.binding("adele").await.in_flight.unwrap().retry_due_at,
            due
        );
        assert_eq!(w.queue.snapshot().len(), 1);
    }

    #[tokio::test]
    async fn an_address_still_held_keeps_retrying_for_48_hours_by_default_before_error() {
        // R-BIND-6, R-BIND-8, R-BIND-10 (`restore: false`)
        let mut w = World::with_policy(RetryPolicy::default(), TimeDelta::days(30)).await;
        deleted_in_m365(&w).await;
        let start = w.now();
        assert!(matches!(
            w.bind_without_restore("adele").await,
            Outcome::Deferred { .. }
        ));
        let outcomes = w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Error);
        assert_eq!(binding.last_error.unwrap().code, "address_held");
        let given_up_at = w.failures.all()[0].at;
        assert!(given_up_at - start >= TimeDelta::hours(48));
        assert!(given_up_at - start < TimeDelta::hours(49));
        assert!(matches!(
            outcomes
                .iter()
                .find(|o| matches!(o, RetryOutcome::DeadLetter { .. })),
            Some(RetryOutcome::DeadLetter { code }) if code == "address_held"
        ));
        assert_eq!(w.dead_letters.len(), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
    }

    #[tokio::test]
    async fn the_address_wait_is_configurable() {
        // R-BIND-6 (configurable), R-BIND-10 (`restore: false`)
        let policy = RetryPolicy {
            address_wait: std::time::Duration::from_secs(3600),
            address_interval: std::time::Duration::from_secs(600),
            ..RetryPolicy::default()
        };
        let mut w = World::with_policy(policy, TimeDelta::days(30)).await;
        deleted_in_m365(&w).await;
        // M365 gives no Retry-After here: the address interval applies.
        let start = w.now();
        w.directory.pass_next_call();
        w.directory
            .fail_next_call(unavailable(UnavailableReason::AddressHeld));
        assert!(matches!(
            w.bind_without_restore("adele").await,
            Outcome::Deferred { .. }
        ));
        w.drain().await;
        assert_eq!(w.binding("adele").await.state, BindingState::Error);
        let given_up_at = w.failures.all()[0].at;
        assert!(given_up_at - start >= TimeDelta::hours(1));
        assert!(given_up_at - start < TimeDelta::hours(3));
    }

    #[tokio::test]
    async fn a_sealed_password_that_cannot_be_opened_fails_the_bind_without_leaking_it() {
        // R-SAFE-2, R-BIND-6 (permanent)
        let w = World::new().await;
        let mut user = w.user("adele").await;
        let mut sealed = w
            .sealer
            .seal(&user.id, &secret("Directory-Pass-42"))
            .await
            .unwrap();
        if let Some(b) = sealed.ciphertext.first_mut() {
            *b ^= 1;
        }
        user.password = Some(sealed);
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
        let Outcome::Failed { code, .. } = w.bind("adele").await else {
            panic!("failed")
        };
        assert_eq!(code, "seal_tampered");
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 0);
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Error);
        assert!(!format!("{binding:?}").contains("Directory-Pass-42"));
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn an_account_we_created_keeps_m365s_password_stamp_and_an_adopted_one_has_none() {
        // R-PWD-3 (only a password we wrote is stamped; adopted accounts keep the clock rule)
        let mut w = World::new().await;
        w.user("adele").await;
        w.user("alex").await;
        w.bind("adele").await;
        let created = w.binding("adele").await;
        let account = w
            .directory
            .user(&w.tenant.id, &World::object_id(&created))
            .unwrap();
        assert!(created.m365_password_changed_at.is_some());
        assert_eq!(
            created.m365_password_changed_at,
            account.last_password_change
        );
        // A create whose answer was lost, found by the lookup: still ours, stamped.
        w.directory.pass_next_call();
        w.directory
            .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout));
        w.clock.advance(TimeDelta::minutes(1));
        w.bind("alex").await;
        w.drain().await;
        let found = w.binding("alex").await;
        assert_eq!(found.state, BindingState::Provisioned);
        assert_eq!(
            found.m365_password_changed_at,
            w.directory
                .user(&w.tenant.id, &World::object_id(&found))
                .unwrap()
                .last_password_change
        );
        assert!(found.m365_password_changed_at.is_some());
        // An existing account we adopt: its password is not ours.
        let user = w.user("ada").await;
        w.m365_account(&user.email, "ada", "Ada", "Existing-Pass-1")
            .await;
        w.bind("ada").await;
        let adopted = w.binding("ada").await;
        assert_eq!(adopted.state, BindingState::Provisioned);
        assert_eq!(adopted.m365_password_changed_at, None);
    }

    /// An M365 account with `id`'s email that an admin made (not us), signed-in allowed.
    async fn existing_account(w: &World, id: &str) -> crate::model::M365User {
        let user = w.users.get(&uid(id)).await.unwrap().unwrap();
        w.directory
            .create_user(
                &w.tenant.id,
                &NewM365User {
                    user_principal_name: user.email.clone(),
                    mail_nickname: id.into(),
                    display_name: "Admin Person".into(),
                    given_name: None,
                    surname: None,
                    job_title: Some("IT".into()),
                    department: None,
                    attributes: Default::default(),
                    account_enabled: true,
                    password: secret("Existing-Pass-1"),
                },
            )
            .await
            .unwrap()
    }

    fn adopt_privileged() -> BindRequest {
        BindRequest {
            adopt_privileged: true,
            ..BindRequest::default()
        }
    }

    #[tokio::test]
    async fn binding_refuses_to_adopt_an_m365_user_who_holds_a_directory_role_and_writes_nothing() {
        // R-BIND-11
        let w = World::new().await;
        w.user("adele").await;
        let existing = existing_account(&w, "adele").await;
        w.directory
            .grant_role(&w.tenant.id, &existing.id, "Global Administrator");
        let err = w
            .binder()
            .bind(&uid("adele"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "privileged_account");
        assert!(matches!(
            err,
            Error::Conflict(Conflict::PrivilegedAccount { .. })
        ));
        let message = err.to_string();
        assert!(message.contains("adele@contoso.com"), "{message}");
        assert!(message.contains("Global Administrator"), "{message}");
        assert!(message.contains("\"adoptPrivileged\": true"), "{message}");
        // Nothing written anywhere: no binding, no event, no failure, the account as it was.
        assert_eq!(w.bindings.get(&uid("adele")).await.unwrap(), None);
        assert!(w.events.all().is_empty() && w.failures.all().is_empty());
        assert!(w.queue.snapshot().is_empty());
        assert_eq!(
            w.directory.user(&w.tenant.id, &existing.id).unwrap(),
            existing
        );
        // The ledger claim was released: the same request with the opt-in goes through at once.
        let Outcome::Done { binding, change } = w
            .binder()
            .bind(&uid("adele"), adopt_privileged())
            .await
            .unwrap()
        else {
            panic!("adopted with the opt-in")
        };
        assert_eq!(change, Change::Adopted);
        assert_eq!(binding.m365_object_id, Some(existing.id));
        assert!(binding.adopted_privileged);
    }

    #[tokio::test]
    async fn binding_refuses_to_adopt_the_admin_who_consented_the_connection() {
        // R-BIND-11 (the consenting admin holds no role here: the consent alone is enough)
        let w = World::new().await;
        w.user("root").await;
        let admin = existing_account(&w, "root").await;
        w.directory
            .set_consenting_admin(&w.tenant.id, Some(&admin.id));
        let err = w
            .binder()
            .bind(&uid("root"), BindRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "privileged_account");
        assert!(err.to_string().contains("consented"), "{err}");
        assert_eq!(w.bindings.get(&uid("root")).await.unwrap(), None);
        assert!(w.directory.user(&w.tenant.id, &admin.id).unwrap().job_title == admin.job_title);
    }

    #[tokio::test]
    async fn adopting_a_privileged_account_with_adopt_privileged_is_recorded_in_the_event() {
        // R-BIND-11 ("kept in the event"), R-BIND-3
        let w = World::new().await;
        w.user("adele").await;
        let existing = existing_account(&w, "adele").await;
        w.directory
            .grant_role(&w.tenant.id, &existing.id, "User Administrator");
        w.directory
            .set_consenting_admin(&w.tenant.id, Some(&existing.id));
        w.binder()
            .bind(&uid("adele"), adopt_privileged())
            .await
            .unwrap();
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert!(
            binding.adopted_privileged,
            "the binding remembers the opt-in"
        );
        let events = w.events.all();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::UserUpdateProvision);
        let details = events[0].details.clone().unwrap();
        assert_eq!(details["m365ObjectId"], existing.id.as_str());
        assert_eq!(details["adoptPrivileged"], true);
        assert_eq!(details["privilege"]["consentingAdmin"], true);
        assert_eq!(
            details["privilege"]["directoryRoles"][0]["displayName"],
            "User Administrator"
        );
        assert_eq!(
            details["privilege"]["directoryRoles"][0]["roleTemplateId"],
            "fe930be7-5e62-47db-91af-98c3a49a38b1"
        );
    }

    #[tokio::test]
    async fn an_ordinary_account_adopted_with_the_opt_in_is_not_marked_privileged() {
        // R-BIND-11 (the flag says what was adopted, not what was asked)
        let w = World::new().await;
        w.user("alex").await;
        existing_account(&w, "alex").await;
        w.binder()
            .bind(&uid("alex"), adopt_privileged())
            .await
            .unwrap();
        assert!(!w.binding("alex").await.adopted_privileged);
        let details = w.events.all()[0].details.clone().unwrap();
        assert_eq!(details["adoptPrivileged"], true);
        assert!(details.get("privilege").is_none());
    }

    #[tokio::test]
    async fn a_queued_bind_that_meets_a_privileged_account_fails_with_privileged_account() {
        // R-BIND-11, R-BIND-6 (no request to answer 409 to: the binding says why)
        let mut w = World::new().await;
        w.user("adele").await;
        w.directory.fail_next_call(throttled());
        let Outcome::Deferred { .. } = w.bind("adele").await else {
            panic!("deferred by the throttled lookup")
        };
        // Meanwhile an admin creates the account in M365 and makes it a Global Administrator.
        let existing = existing_account(&w, "adele").await;
        w.directory
            .grant_role(&w.tenant.id, &existing.id, "Global Administrator");
        let outcomes = w.drain().await;
        // A permanent failure: the message goes to the DLQ with its reason.
        assert!(outcomes.iter().any(
            |o| matches!(o, RetryOutcome::DeadLetter { code } if code == "privileged_account")
        ));
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Error);
        assert_eq!(binding.m365_object_id, None, "not adopted");
        assert_eq!(
            binding.last_error.as_ref().map(|e| e.code.as_str()),
            Some("privileged_account")
        );
        assert!(
            w.failures
                .all()
                .iter()
                .any(|f| f.code == "privileged_account")
        );
        assert!(w.events.all().is_empty());
        assert_eq!(
            w.directory.user(&w.tenant.id, &existing.id).unwrap(),
            existing
        );
    }

    #[tokio::test]
    async fn creating_a_new_account_costs_no_privilege_check() {
        // R-BIND-11, DESIGN §5 (a new-user bind: ≤ 2 Graph requests)
        let w = World::new().await;
        w.user("adele").await;
        let Outcome::Done { change, .. } = w.bind("adele").await else {
            panic!("created")
        };
        assert_eq!(change, Change::Created);
        assert_eq!(w.directory.calls(), 2, "the lookup and the create only");
        assert!(!w.binding("adele").await.adopted_privileged);
    }

    /// Directory group `id` listing `members`, bound to the world's tenant (its security group
    /// created with the members bound so far).
    async fn bound_group(w: &World, id: &str, members: &[&str]) -> crate::model::GroupId {
        use crate::ports::GroupStore;
        let group_id = crate::model::GroupId::parse(id).unwrap();
        let group = crate::model::Group::new(
            group_id.clone(),
            format!("Group {id}"),
            members.iter().map(|m| uid(m)),
        );
        w.groups.create(&group).await.unwrap();
        crate::usecase::group_sync::SyncGroup::new(w)
            .bind(&group_id, &w.tenant.id)
            .await
            .unwrap();
        group_id
    }

    /// The M365 members of directory group `id`'s security group.
    fn m365_members(w: &World, id: &crate::model::GroupId) -> Vec<M365ObjectId> {
        let found = w
            .directory
            .groups_named(&w.tenant.id, &crate::model::mail_nickname_for(id));
        assert_eq!(found.len(), 1, "exactly one M365 group");
        found[0].1.clone()
    }

    #[tokio::test]
    async fn a_bound_user_joins_the_security_groups_of_its_bound_groups_at_once() {
        // R-GRP-1 (the bind itself runs the group follow-up, issue 13)
        let w = World::new().await;
        w.user("bob").await;
        w.user("carol").await;
        let sales = bound_group(&w, "sales", &["bob"]).await;
        let other = bound_group(&w, "other", &["carol"]).await;
        assert!(m365_members(&w, &sales).is_empty());
        let Outcome::Done { binding, .. } = w.bind("bob").await else {
            panic!("bound at once")
        };
        assert_eq!(m365_members(&w, &sales), vec![World::object_id(&binding)]);
        assert!(m365_members(&w, &other).is_empty(), "not Bob's group");
        let group = crate::ports::GroupStore::get(&w.groups, &sales)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(group.binding.unwrap().mirrored, vec![uid("bob")]);
    }

    #[tokio::test]
    async fn a_bind_that_binds_nobody_runs_no_group_follow_up() {
        // R-GRP-1 (only a user the bind bound joins; a deferred bind leaves the group alone)
        let w = World::new().await;
        w.user("bob").await;
        let sales = bound_group(&w, "sales", &["bob"]).await;
        w.directory.fail_next_call(throttled());
        let outcome = w.bind("bob").await;
        assert!(matches!(outcome, Outcome::Deferred { .. }), "{outcome:?}");
        assert!(m365_members(&w, &sales).is_empty());
        assert_eq!(w.queue.snapshot().len(), 1, "only the bind's own retry");
    }

    #[tokio::test]
    async fn a_failed_group_follow_up_leaves_the_bind_done() {
        // R-GRP-1: the bind is done; the group's push is queued and reconcile catches it up
        let w = World::new().await;
        w.user("bob").await;
        let sales = bound_group(&w, "sales", &["bob"]).await;
        // The bind's lookup and create pass; the follow-up's first Graph call is throttled.
        w.directory.pass_next_call();
        w.directory.pass_next_call();
        w.directory.fail_next_call(throttled());
        let outcome = w.bind("bob").await;
        let Outcome::Done { binding, change } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(change, Change::Created);
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(w.binding("bob").await.state, BindingState::Provisioned);
        assert!(m365_members(&w, &sales).is_empty());
        let queued = w.queue.snapshot();
        assert_eq!(queued.len(), 1, "{queued:?}");
        assert_eq!(queued[0].message.kind, OperationKind::GroupMembers);
        // The only failure recorded is the group push's, not the bind's.
        let failures = w.failures.all();
        assert!(
            failures
                .iter()
                .all(|f| f.user_id.is_none() && f.operation_id.as_str().starts_with("group_")),
            "{failures:?}"
        );
    }
}
