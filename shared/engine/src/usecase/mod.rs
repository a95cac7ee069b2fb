//! Use cases: the provisioning flows of DESIGN §4, each a struct holding only the ports it needs
//! (most declared with `use_case!`, which also writes their `new(ports, …)`).
//!
//! - [`bind::Bind`]: route, adopt or create, unblock (R-BIND-1..4, R-BIND-6, R-BIND-8);
//! - [`unbind::Unbind`]: block sign-in and revoke sessions, never delete (R-BIND-5, R-BIND-8,
//!   R-BIND-9);
//! - [`update::UpdateAttributes`]: push a bound user's attributes (R-BIND-7);
//! - [`manager::SyncManager`]: link a bound user's account to its bound manager's (R-ATTR-1);
//! - [`password::SetPassword`]: validate, seal, store and push a password (R-PWD-1, R-PWD-2, R-PWD-4);
//! - [`suspend::Suspension`]: follow the user's directory `state` — suspend a disabled user's
//!   account and revoke its sessions, re-enable it when the user is active again (R-BIND-9);
//! - [`group_sync::SyncGroup`]: bind a directory group to a tenant's security group and mirror
//!   its bound members (R-GRP-1);
//! - [`directory::UpsertUser`], [`directory::UpsertGroup`]: save a directory user or group and
//!   bring M365 in line (R-BIND-7, R-BIND-9, R-GRP-1); [`directory::AuditTrail`]: the audit
//!   listings (R-AUD-1);
//! - [`notify::DeliverWelcome`]: deliver a queued welcome notification as an email, once, to
//!   the right address, without a password (R-NOT-1);
//! - [`retry::RetryDispatcher`]: re-drive a [`RetryMessage`] from the retry queue (R-BIND-6).
//! - [`reconcile_queue::ReconcileQueue`]: fan reconciliation out through a queue, one leased,
//!   bounded pass per message (R-REC-1).
//! - [`reconcile_pass::ReconcilePass`]: one pass of a tenant's reconcile — users, stuck work,
//!   groups unless the safeguard tripped, expiry on a round's first pass (R-REC-1..5, R-PWD-4).
//! - [`held::HeldPlans`]: a round the safeguard stopped is held (its plan stored per tenant) until
//!   an admin approves it (applied once, re-checked) or rejects it (R-REC-3).
//! - `privilege` (crate-internal): which M365 accounts are privileged — a directory role, or the
//!   connection's consenting admin — so bind and import refuse to adopt them and password pushes
//!   and reconcile leave them alone unless adopted with `adoptPrivileged` (R-BIND-11).
//! - [`stuck::RequeueStuck`]: re-queue binds and unbinds whose retry was lost, found by each
//!   reconcile pass (R-REC-5).
//!
//! What they share lives here: [`Effects`] records the outcome of an operation the same way for every
//! use case — exactly one event per successful change (with an id derived from the operation, so a
//! repeated append is kept once), never an event for a failure; failures go to the binding's last
//! error and the failures list with Graph's request id; retryable failures put the operation on the
//! retry queue with backoff and jitter ([`RetryPolicy`]).

/// Declares a use case: a struct holding the ports it needs — each field `name: Type` is a
/// `&'a P::Type` taken from [`Ports`] by the accessor of the same name (`name: Type = accessor`
/// where they differ) — then fields built from the bundle (`built: [name: Type = path::to::fn]`
/// is `fn(ports)`, e.g. `Effects::new`), then any extra fields (`extra: [name: Type]`), and its
/// `new(ports, extras…)`
/// constructor that takes the ports from the bundle and the extras as given. One declaration instead of a struct
/// and a constructor repeating the same field list (issue 13).
macro_rules! use_case {
    (@get $ports:ident $field:ident) => { $ports.$field() };
    (@get $ports:ident $field:ident $acc:ident) => { $ports.$acc() };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            ports: [$($field:ident: $ty:ident $(= $acc:ident)?),* $(,)?],
            $(built: [$($(#[$bmeta:meta])* $built:ident: $bty:ty = $($ctor:ident)::+),* $(,)?],)?
            $(extra: [$($(#[$xmeta:meta])* $extra:ident: $xty:ty),* $(,)?],)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis struct $name<'a, P: Ports> {
            $(
                #[doc = concat!("The [`Ports::", stringify!($ty), "`] port.")]
                pub $field: &'a P::$ty,
            )*
            $($($(#[$bmeta])* pub $built: $bty,)*)?
            $($($(#[$xmeta])* pub $extra: $xty,)*)?
            /// Who asks (R-AUD-1): recorded on every event this use case writes.
            pub actor: &'a crate::model::Actor,
        }

        impl<'a, P: Ports> $name<'a, P> {
            /// The use case on `ports`.
            #[must_use]
            pub fn new(ports: &'a P $($(, $extra: $xty)*)?) -> Self {
                Self {
                    $($field: use_case!(@get ports $field $($acc)?),)*
                    $($($built: $($ctor)::+(ports),)*)?
                    $($($extra,)*)?
                    actor: ports.actor(),
                }
            }
        }
    };
}

pub mod alerts;
pub mod bind;
pub mod connect;
pub mod directory;
pub mod group_sync;
pub mod held;
pub mod import;
pub mod licenses;
pub mod manager;
pub mod notify;
pub mod password;
pub(crate) mod privilege;
pub mod reconcile;
pub mod reconcile_groups;
pub mod reconcile_pass;
pub mod reconcile_queue;
pub mod reconcile_runs;
pub mod retry;
pub mod stuck;
pub mod suspend;
pub mod token_refresh;
pub mod unbind;
pub mod update;

#[cfg(test)]
mod actor_tests;
#[cfg(test)]
mod attribute_sync;
#[cfg(test)]
mod deadline_tests;
#[cfg(test)]
mod testkit;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::SecretString;

use crate::error::{Entity, Error, Result, UnavailableReason};
use crate::model::{
    Binding, BindingError, BindingState, DirectoryUser, EventId, EventKind, Failure, InFlight,
    M365User, M365UserPatch, OperationId, OperationKind, OperationOutcome, OperationSubject,
    RetryMessage, Tenant, TenantId, UserId,
};
use crate::policy::password::{CharClass, ENTRA_SYMBOLS};
use crate::policy::retry::spread;
use crate::ports::Ports;
use crate::ports::{
    BindingStore, Claim, Clock, EventStore, Expect, FailureStore, OperationLedger, Random,
    RetryQueue, TenantStore, UserStore,
};

/// The one retry policy, defined with the one backoff formula in [`crate::policy::retry`];
/// re-exported here, where the use cases have always taken it from.
pub use crate::policy::retry::RetryPolicy;

/// What a successful operation changed (the ledger's `detail` and the event's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A new M365 account was created (`user_create_provision`).
    Created,
    /// An existing M365 account was adopted (`user_update_provision`).
    Adopted,
    /// The binding's own account was re-enabled (`user_update_provision`).
    Unblocked,
    /// Sign-in was blocked (`user_deprovision`).
    Blocked,
    /// Unbound before any account existed: nothing to block in M365 (no event).
    NoAccount,
    /// The account was found deleted in M365 (no event: we changed nothing, R-BIND-8).
    DeletedInM365,
    /// Attributes were pushed (`user_update_provision`).
    AttributesUpdated,
    /// The password was pushed (`user_password_update_provision`).
    PasswordPushed,
    /// The password was pushed and the suspended account re-enabled (`user_password_update_provision`).
    PasswordPushedAndReenabled,
    /// The user is disabled in the directory: sign-in blocked and sessions revoked
    /// (`user_deprovision` with reason `directory_disabled`, R-BIND-9).
    Suspended,
    /// The user is active again in the directory: the suspended account was re-enabled
    /// (`user_update_provision`, R-BIND-9).
    Reactivated,
    /// The user is active again but the directory password expired meanwhile: the account stays
    /// suspended, now for `password_expired` (no event: nothing changed in M365, R-PWD-4).
    KeptSuspended,
    /// The account's manager was set or removed (`user_update_provision`, R-ATTR-1).
    ManagerUpdated,
}

impl Change {
    /// snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Adopted => "adopted",
            Self::Unblocked => "unblocked",
            Self::Blocked => "blocked",
            Self::NoAccount => "no_account",
            Self::DeletedInM365 => "deleted_in_m365",
            Self::AttributesUpdated => "attributes_updated",
            Self::PasswordPushed => "password_pushed",
            Self::PasswordPushedAndReenabled => "password_pushed_and_reenabled",
            Self::Suspended => "directory_disabled",
            Self::Reactivated => "reactivated",
            Self::KeptSuspended => "password_expired",
            Self::ManagerUpdated => "manager_updated",
        }
    }

    /// The event this change records, if it changed M365.
    #[must_use]
    pub fn event_kind(self) -> Option<EventKind> {
        match self {
            Self::Created => Some(EventKind::UserCreateProvision),
            Self::Adopted
            | Self::Unblocked
            | Self::AttributesUpdated
            | Self::Reactivated
            | Self::ManagerUpdated => Some(EventKind::UserUpdateProvision),
            Self::Blocked | Self::Suspended => Some(EventKind::UserDeprovision),
            Self::PasswordPushed | Self::PasswordPushedAndReenabled => {
                Some(EventKind::UserPasswordUpdateProvision)
            }
            Self::NoAccount | Self::DeletedInM365 | Self::KeptSuspended => None,
        }
    }
}

/// How one run of an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done now.
    Done {
        /// The stored binding.
        binding: Binding,
        /// What changed.
        change: Change,
    },
    /// Nothing to do (already bound, not bound, already blocked…); nothing was written.
    Unchanged {
        /// The binding as it is.
        binding: Option<Binding>,
    },
    /// A retryable failure: the operation waits on the retry queue (binding `pending` for a bind).
    Deferred {
        /// The stored binding, with its reason and last error.
        binding: Binding,
        /// What was queued.
        retry: RetryMessage,
    },
    /// A permanent failure, or the retry budget ran out (`exhausted`).
    Failed {
        /// The stored binding, with its last error.
        binding: Binding,
        /// Machine code of the failure.
        code: &'static str,
        /// True when the retry budget (attempts or address wait) ran out.
        exhausted: bool,
    },
    /// The ledger says this operation finished already: nothing was done again.
    AlreadyDone {
        /// The binding as it is.
        binding: Option<Binding>,
        /// What the first run recorded.
        outcome: OperationOutcome,
    },
    /// Another worker holds the operation's lease.
    InProgress {
        /// When that lease ends.
        lease_until: DateTime<Utc>,
    },
    /// A later request replaced this operation (e.g. an unbind after a queued bind, or one that
    /// took the binding over before a bind's final write, R-BIND-12): dropped.
    Superseded,
}

variant_names!(Outcome::as_str, "snake_case name of the outcome." {
    Done => "done",
    Unchanged => "unchanged",
    Deferred => "deferred",
    Failed => "failed",
    AlreadyDone => "already_done",
    InProgress => "in_progress",
    Superseded => "superseded",
});

impl Outcome {
    /// The binding after the operation, when the outcome carries one.
    #[must_use]
    pub fn binding(&self) -> Option<&Binding> {
        match self {
            Self::Done { binding, .. }
            | Self::Deferred { binding, .. }
            | Self::Failed { binding, .. } => Some(binding),
            Self::Unchanged { binding } | Self::AlreadyDone { binding, .. } => binding.as_ref(),
            Self::InProgress { .. } | Self::Superseded => None,
        }
    }
}

/// One `info!` per operation with its outcome (STYLE "Tracing and secrets"): names, codes and the
/// ids of the enclosing span only, never messages (they may hold an email address).
pub(crate) fn report(result: &Result<Outcome>) {
    match result {
        Ok(outcome) => {
            let (change, code, attempt) = match outcome {
                Outcome::Done { change, .. } => (Some(change.as_str()), None, None),
                Outcome::Deferred { retry, .. } => {
                    (None, Some(retry.reason.as_str()), Some(retry.attempt))
                }
                Outcome::Failed { code, .. } => (None, Some(*code), None),
                _ => (None, None, None),
            };
            tracing::info!(
                outcome = outcome.as_str(),
                change,
                error.code = code,
                retry.attempt = attempt,
                "operation finished"
            );
        }
        Err(e) => tracing::warn!(
            error.code = e.code(),
            error.retryable = e.is_retryable(),
            "operation not done"
        ),
    }
}

/// [`report`]s `result` and hands it back: the last step of every public use-case call.
pub(crate) fn reported(result: Result<Outcome>) -> Result<Outcome> {
    report(&result);
    result
}

use_case! {
    /// The ports every use case records its outcome with (bindings, events, failures, ledger, retry
    /// queue) plus time, randomness and the retry policy.
    pub struct Effects {
        ports: [
            bindings: Bindings, events: Events, failures: Failures, ledger: Ledger, queue: Queue,
            clock: Clock, random: Random
        ],
        built: [
            /// Retry policy.
            policy: &'a RetryPolicy = Ports::retry_policy,
        ],
    }
}

impl<P: Ports> Clone for Effects<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Ports> Copy for Effects<'_, P> {}

/// `user_id`'s stored directory user; `NotFound` when there is none.
pub(crate) async fn stored_user<U: UserStore>(
    users: &U,
    user_id: &UserId,
) -> Result<DirectoryUser> {
    users
        .get(user_id)
        .await?
        .ok_or_else(|| Error::not_found(Entity::User, user_id))
}

/// Tenant `id` as stored; `NotFound` when there is none.
pub(crate) async fn stored_tenant<T: TenantStore>(tenants: &T, id: &TenantId) -> Result<Tenant> {
    tenants
        .get(id)
        .await?
        .ok_or_else(|| Error::not_found(Entity::Tenant, id))
}

/// One run of an operation: its id, kind, subject user, start time and, for a retry, the message.
#[derive(Debug, Clone)]
pub(crate) struct Run<'m> {
    pub(crate) op: OperationId,
    pub(crate) kind: OperationKind,
    pub(crate) user: UserId,
    pub(crate) now: DateTime<Utc>,
    pub(crate) previous: Option<&'m RetryMessage>,
    /// Who asked for the operation (R-AUD-1): a retry keeps its first request's actor.
    pub(crate) actor: crate::model::Actor,
}

impl<'m> Run<'m> {
    /// Whether `binding` has this run's operation in flight (no later request took it over).
    pub(crate) fn owns(&self, binding: &Binding) -> bool {
        binding
            .in_flight
            .as_ref()
            .is_some_and(|f| f.operation_id == self.op)
    }

    pub(crate) fn new(
        op: OperationId,
        kind: OperationKind,
        user: UserId,
        now: DateTime<Utc>,
        previous: Option<&'m RetryMessage>,
        asker: &crate::model::Actor,
    ) -> Self {
        let actor = previous
            .and_then(|m| m.actor.clone())
            .unwrap_or_else(|| asker.clone());
        Self {
            op,
            kind,
            user,
            now,
            previous,
            actor,
        }
    }
}

/// What a failure does to the binding's state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OnFailure {
    /// State while waiting for a retry (`None`: unchanged).
    pub(crate) deferred: Option<BindingState>,
    /// State after a permanent failure (`None`: unchanged).
    pub(crate) permanent: Option<BindingState>,
}

/// How retries of a failure are budgeted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryClass {
    /// Throttling, 5xx, timeouts, replication lag: counted attempts with exponential backoff.
    Transient,
    /// An address held by a deleted account: a wall-clock budget ([`RetryPolicy::address_wait`]).
    AddressHeld,
    /// The tenant needs reauthorization: parked, never failed (R-CONN-4).
    Parked,
}

const REAUTHORIZATION_REASON: &str = "reauthorization_required";

fn retry_class_of_reason(reason: &str) -> RetryClass {
    match reason {
        r if r == UnavailableReason::AddressHeld.as_str() => RetryClass::AddressHeld,
        REAUTHORIZATION_REASON => RetryClass::Parked,
        _ => RetryClass::Transient,
    }
}

fn retry_class(error: &Error) -> Option<RetryClass> {
    match error {
        Error::ReauthorizationRequired { .. } => Some(RetryClass::Parked),
        Error::Unavailable {
            reason: UnavailableReason::AddressHeld,
            ..
        } => Some(RetryClass::AddressHeld),
        e if e.is_retryable() => Some(RetryClass::Transient),
        _ => None,
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// True when `error` says the M365 account does not exist (deleted, or never created).
pub(crate) fn is_m365_not_found(error: &Error) -> bool {
    matches!(
        error,
        Error::NotFound {
            entity: Entity::M365User,
            ..
        }
    )
}

/// True when `error` is a lost optimistic-concurrency race on the binding.
pub(crate) fn is_stale(error: &Error) -> bool {
    matches!(
        error,
        Error::Conflict(crate::error::Conflict::StaleVersion { .. })
    )
}

/// How many times a use case re-reads the binding and records its intent again when another
/// request wrote the binding between its read and its write (R-BIND-12).
pub(crate) const INTENT_ATTEMPTS: u32 = 3;

/// The M365 account of `binding`, looked up by `upn` when the binding does not know it yet (a
/// create whose answer never came, or an adoption not finished). `Ok(None)`: there is none. A
/// create sent less than `grace` before `now` may not be visible yet (graph-spec §7.4): then the
/// answer is a retryable `not_yet_visible`, never "no account".
///
/// # Errors
/// Graph errors; `Unavailable(NotYetVisible)` within the grace.
pub(crate) async fn account_of<D: crate::ports::Directory>(
    directory: &D,
    binding: &Binding,
    upn: &crate::model::Email,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<Option<crate::model::M365ObjectId>> {
    if let Some(id) = &binding.m365_object_id {
        return Ok(Some(id.clone()));
    }
    if let Some(found) = directory.find_user_by_upn(&binding.tenant_id, upn).await? {
        return Ok(Some(found.id));
    }
    let sent = binding.in_flight.as_ref().and_then(|f| f.create_sent_at);
    if sent.is_some_and(|at| now - at < delta(grace)) {
        return Err(Error::Unavailable {
            component: "graph",
            reason: UnavailableReason::NotYetVisible,
            retry_after: None,
            graph_request_id: None,
            source: None,
        });
    }
    Ok(None)
}

/// A boxed, sendable future: what the use cases' deeper steps return, so each caller's stack frame
/// holds a pointer instead of the callee's whole state (unoptimized builds keep a slot per awaited
/// future in every frame of the poll chain).
pub(crate) type BoxFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A deterministic event id for (`op`, `kind`): a re-run of the same operation appends the same
/// event, which the store keeps once (exactly one event per change, even after a crash).
pub(crate) fn event_id(op: &OperationId, kind: EventKind) -> EventId {
    EventId::derive(&[op.as_str(), kind.as_str()])
}

/// The deterministic id of a failure of `op` about `subject` (a user or group id) with `code`,
/// recorded at `at`: the same failure written twice (a store call retried after a lost answer)
/// is one record, and two failures of one operation — each attempt's, with its own Graph
/// request id — stay two (failures are diagnostics per occurrence, R-AUD-1).
pub(crate) fn failure_id(
    op: &OperationId,
    subject: &str,
    code: &str,
    at: DateTime<Utc>,
) -> EventId {
    EventId::derive(&[
        op.as_str(),
        "failure",
        subject,
        code,
        &at.timestamp_micros().to_string(),
    ])
}

impl<P: Ports> Effects<'_, P> {
    /// Now, from the clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Claims `op` in the ledger for one lease.
    pub(crate) async fn claim(&self, op: &OperationId, now: DateTime<Utc>) -> Result<Claim> {
        self.ledger
            .claim(op, now, now + delta(self.policy.lease))
            .await
    }

    /// Claims a new run of `op`: `None` when claimed (the caller runs it), else the outcome that
    /// ends it at once — another worker's lease, or what a finished run recorded (with `binding`,
    /// as the caller read it).
    pub(crate) async fn claim_new(
        &self,
        op: &OperationId,
        now: DateTime<Utc>,
        binding: Option<&Binding>,
    ) -> Result<Option<Outcome>> {
        Ok(match self.claim(op, now).await? {
            Claim::Claimed => None,
            Claim::InProgress { lease_until } => Some(Outcome::InProgress { lease_until }),
            Claim::AlreadyDone(outcome) => Some(Outcome::AlreadyDone {
                binding: binding.cloned(),
                outcome,
            }),
        })
    }

    /// Claims the run of a queued operation (`message`, of `kind`, about `user`): `Ok(run)` when
    /// claimed, else the outcome that ends it at once — another worker's lease, or what a
    /// finished run recorded (with the binding as it is now).
    pub(crate) async fn claim_retry<'m>(
        &self,
        message: &'m RetryMessage,
        kind: OperationKind,
        user: &UserId,
    ) -> Result<std::result::Result<Run<'m>, Outcome>> {
        let now = self.now();
        let run = Run::new(
            message.operation_id.clone(),
            kind,
            user.clone(),
            now,
            Some(message),
            self.actor,
        );
        Ok(match self.claim(&run.op, now).await? {
            Claim::Claimed => Ok(run),
            Claim::InProgress { lease_until } => Err(Outcome::InProgress { lease_until }),
            Claim::AlreadyDone(outcome) => {
                let binding = self.bindings.get(user).await?;
                Err(Outcome::AlreadyDone { binding, outcome })
            }
        })
    }

    /// Re-runs a queued operation (`message`, of `kind`, about `user`): claims it
    /// ([`Effects::claim_retry`]), runs `body` on the claimed run and records its end
    /// ([`Effects::abandon`]); an operation that cannot be claimed ends at once with the outcome
    /// the claim gave.
    pub(crate) async fn rerun<'m>(
        &self,
        message: &'m RetryMessage,
        kind: OperationKind,
        user: &UserId,
        body: impl AsyncFnOnce(&Run<'m>) -> Result<Outcome>,
    ) -> Result<Outcome> {
        let run = match self.claim_retry(message, kind, user).await? {
            Ok(run) => run,
            Err(ended) => return Ok(ended),
        };
        let result = body(&run).await;
        self.abandon(&run.op, result).await
    }

    /// Writes `binding` with `run`'s operation in flight before M365 is touched (write-ahead,
    /// R-BIND-12), keeping the lost-create mark of an operation it replaces (the account that one
    /// may have made is still looked for; its queued retry is dropped as superseded, R-REC-5).
    /// `Ok(Ok(stored))`: the intent stands. `Ok(Err(stale))`: another request wrote the binding
    /// since it was read — the claim is released and the caller reads again (at most
    /// [`INTENT_ATTEMPTS`] times). Other store failures drop the claim and are the error.
    pub(crate) async fn write_intent(
        &self,
        run: &Run<'_>,
        binding: Binding,
    ) -> Result<std::result::Result<Binding, Error>> {
        let expect = Expect::Version(binding.version);
        let replaced = binding.in_flight.as_ref();
        let in_flight = InFlight {
            create_sent_at: replaced.and_then(|f| f.create_sent_at),
            // Like `create_sent_at`: a restore whose answer was lost is recognized later.
            restore_of: replaced.and_then(|f| f.restore_of.clone()),
            actor: Some(run.actor.clone()),
            ..InFlight::new(run.op.clone(), run.kind, run.now)
        };
        let intent = Binding {
            in_flight: Some(in_flight),
            ..binding
        };
        match self.bindings.put(&intent, expect).await {
            Ok(stored) => Ok(Ok(stored)),
            Err(e) if is_stale(&e) => {
                self.ledger.release(&run.op).await?;
                Ok(Err(e))
            }
            Err(e) => self.abandon(&run.op, Err(e)).await,
        }
    }

    /// Drops the claim of a run that failed on our side (a store error), so a retry need not wait
    /// for the lease; the original error is what the caller sees.
    pub(crate) async fn abandon<T>(&self, op: &OperationId, result: Result<T>) -> Result<T> {
        if result.is_err() {
            // The release failing too changes nothing: the lease expires on its own.
            drop(self.ledger.release(op).await);
        }
        result
    }

    fn ledger_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + delta(self.policy.ledger_ttl)
    }

    /// Completes `run`'s operation in the ledger with `outcome`, kept for the ledger's TTL.
    async fn complete(&self, run: &Run<'_>, outcome: &OperationOutcome) -> Result<()> {
        self.ledger
            .complete(&run.op, outcome, self.ledger_expiry(run.now))
            .await
    }

    /// Completes a superseded operation so a redelivery is acknowledged at once.
    pub(crate) async fn superseded(&self, run: &Run<'_>) -> Result<Outcome> {
        let outcome = OperationOutcome::Succeeded {
            detail: Some("superseded".to_owned()),
        };
        self.complete(run, &outcome).await?;
        Ok(Outcome::Superseded)
    }

    /// Records a success: the event of `change` (if it changed M365), the binding, then the ledger.
    pub(crate) async fn succeed(
        &self,
        run: &Run<'_>,
        binding: &Binding,
        expect: Expect,
        change: Change,
    ) -> Result<Outcome> {
        self.succeed_with(run, binding, expect, change, None).await
    }

    /// [`Self::succeed`] with `extra` fields (a JSON object) added to the event's details, e.g. a
    /// privileged adoption's opt-in (R-BIND-11).
    pub(crate) async fn succeed_with(
        &self,
        run: &Run<'_>,
        binding: &Binding,
        expect: Expect,
        change: Change,
        extra: Option<serde_json::Value>,
    ) -> Result<Outcome> {
        if let Some(kind) = change.event_kind() {
            self.append_event_with(run, binding, kind, change.as_str(), extra)
                .await?;
        }
        let stored = self.bindings.put(binding, expect).await?;
        let outcome = OperationOutcome::Succeeded {
            detail: Some(change.as_str().to_owned()),
        };
        self.complete(run, &outcome).await?;
        Ok(Outcome::Done {
            binding: stored,
            change,
        })
    }

    /// Appends the event `kind` of `run` about `binding`'s account (its id derives from the
    /// operation and the kind: a re-run appends the same event, kept once).
    pub(crate) async fn append_event(
        &self,
        run: &Run<'_>,
        binding: &Binding,
        kind: EventKind,
        reason: &str,
    ) -> Result<()> {
        self.append_event_with(run, binding, kind, reason, None)
            .await
    }

    /// [`Self::append_event`] with `extra` fields (a JSON object) added to the event's details,
    /// e.g. a privileged adoption's opt-in (R-BIND-11).
    pub(crate) async fn append_event_with(
        &self,
        run: &Run<'_>,
        binding: &Binding,
        kind: EventKind,
        reason: &str,
        extra: Option<serde_json::Value>,
    ) -> Result<()> {
        let mut details = binding
            .m365_object_id
            .as_ref()
            .map(|id| serde_json::json!({ "m365ObjectId": id }));
        if let Some(serde_json::Value::Object(fields)) = extra
            && !fields.is_empty()
        {
            match details.as_mut() {
                Some(serde_json::Value::Object(map)) => map.extend(fields),
                _ => details = Some(serde_json::Value::Object(fields)),
            }
        }
        let event = crate::model::Event {
            id: event_id(&run.op, kind),
            kind,
            at: run.now,
            user_id: Some(run.user.clone()),
            tenant_id: Some(binding.tenant_id.clone()),
            operation_id: Some(run.op.clone()),
            reason: Some(reason.to_owned()),
            details,
            actor: Some(run.actor.clone()),
        };
        self.events.append(&event).await
    }

    /// Whether the stored binding of `user` is still the one `expect` names: read right before a
    /// final write, so that a run which lost the binding to a later request (an unbind that
    /// recorded its intent, R-BIND-12) records nothing instead of an event for a change that
    /// does not stand.
    pub(crate) async fn still_current(
        &self,
        user: &UserId,
        expect: Expect,
    ) -> Result<(bool, Option<Binding>)> {
        let current = self.bindings.get(user).await?;
        let same = match expect {
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current.as_ref().is_some_and(|b| b.version == v),
        };
        Ok((same, current))
    }

    /// Records a failure of M365 (never as an event): retryable ones are deferred to the retry
    /// queue with backoff and jitter until the budget runs out; the others are permanent.
    ///
    /// Boxed: it is awaited at many points of every use case, and an inline future of this size at
    /// each of them made the callers' stack frames large enough to overflow a 2 MiB thread stack
    /// in unoptimized builds.
    pub(crate) fn fail<'s>(
        &'s self,
        run: &'s Run<'_>,
        binding: Binding,
        expect: Expect,
        error: Error,
        on: OnFailure,
    ) -> BoxFuture<'s, Result<Outcome>> {
        Box::pin(self.fail_inline(run, binding, expect, error, on))
    }

    async fn fail_inline(
        &self,
        run: &Run<'_>,
        mut binding: Binding,
        expect: Expect,
        error: Error,
        on: OnFailure,
    ) -> Result<Outcome> {
        let now = run.now;
        let code = error.code();
        let message = error.to_string();
        let graph_request_id = error.graph_request_id().map(str::to_owned);
        self.failures
            .record(&Failure {
                id: failure_id(&run.op, run.user.as_str(), code, now),
                tenant_id: binding.tenant_id.clone(),
                user_id: Some(run.user.clone()),
                operation_id: run.op.clone(),
                code: code.to_owned(),
                message: message.clone(),
                graph_request_id: graph_request_id.clone(),
                at: now,
            })
            .await?;
        binding.last_error = Some(BindingError {
            code: code.to_owned(),
            message,
            graph_request_id,
            at: now,
        });
        if let Some(class) = retry_class(&error) {
            if class == RetryClass::AddressHeld
                && run.owns(&binding)
                && let Some(f) = binding.in_flight.as_mut()
            {
                f.address_held_since.get_or_insert(now);
            }
            let attempt = match run.previous {
                Some(m) if class == RetryClass::Parked => m.attempt,
                Some(m) if retry_class_of_reason(&m.reason) == class => m.attempt + 1,
                _ => 1,
            };
            let exhausted = match class {
                RetryClass::Transient => self.policy.exhausted(attempt),
                RetryClass::AddressHeld => binding
                    .in_flight
                    .as_ref()
                    .and_then(|f| f.address_held_since)
                    .is_some_and(|since| now - since >= delta(self.policy.address_wait)),
                RetryClass::Parked => false,
            };
            if !exhausted {
                // An address wait never sleeps past the end of its budget, so the last check
                // happens when the budget runs out (not at a far `Retry-After`).
                let remaining = binding
                    .in_flight
                    .as_ref()
                    .and_then(|f| f.address_held_since)
                    .filter(|_| class == RetryClass::AddressHeld)
                    .and_then(|since| {
                        (since + delta(self.policy.address_wait) - now)
                            .to_std()
                            .ok()
                    });
                let retry = RetryMessage {
                    operation_id: run.op.clone(),
                    kind: run.kind,
                    subject: OperationSubject::User(run.user.clone()),
                    attempt,
                    not_before: now
                        + delta(self.delay(class, attempt, error.retry_after(), remaining)),
                    reason: code.to_owned(),
                    actor: Some(run.actor.clone()),
                };
                if let Some(state) = on.deferred {
                    binding.state = state;
                }
                // Reconcile tells a lost retry from a queued one by this (R-REC-5).
                if run.owns(&binding)
                    && let Some(f) = binding.in_flight.as_mut()
                {
                    f.retry_due_at = Some(retry.not_before);
                }
                binding.pending_reason = Some(code.to_owned());
                let stored = self.bindings.put(&binding, expect).await?;
                self.queue.send(&retry, retry.send_delay(now)).await?;
                self.ledger.release(&run.op).await?;
                return Ok(Outcome::Deferred {
                    binding: stored,
                    retry,
                });
            }
            return self.give_up(run, binding, expect, code, on, true).await;
        }
        self.give_up(run, binding, expect, code, on, false).await
    }

    async fn give_up(
        &self,
        run: &Run<'_>,
        mut binding: Binding,
        expect: Expect,
        code: &'static str,
        on: OnFailure,
        exhausted: bool,
    ) -> Result<Outcome> {
        binding.pending_reason = None;
        if let Some(state) = on.permanent {
            binding.state = state;
            if run.owns(&binding) {
                binding.in_flight = None;
            }
        }
        let stored = self.bindings.put(&binding, expect).await?;
        let outcome = OperationOutcome::Failed {
            code: code.to_owned(),
        };
        self.complete(run, &outcome).await?;
        Ok(Outcome::Failed {
            binding: stored,
            code,
            exhausted,
        })
    }

    /// The wait before the next attempt ([`crate::policy::retry`]'s one formula): exponential
    /// backoff with equal jitter for transient failures (never shorter than `Retry-After`,
    /// graph-spec §7.1), the service's hint or the address interval for a held address, the park
    /// interval for a paused tenant.
    fn delay(
        &self,
        class: RetryClass,
        attempt: u32,
        retry_after: Option<Duration>,
        cap: Option<Duration>,
    ) -> Duration {
        match class {
            RetryClass::Transient => self
                .policy
                .transient_wait(attempt, retry_after, self.random),
            RetryClass::AddressHeld => {
                let wait = retry_after.unwrap_or(self.policy.address_interval);
                let wait = cap.map_or(wait, |cap| wait.min(cap));
                spread(wait, self.random)
            }
            RetryClass::Parked => spread(self.policy.park_interval, self.random),
        }
    }
}

/// The attribute changes that make `current` (or, with `None`, any account) match `user`.
pub(crate) fn patch_for(user: &DirectoryUser, current: Option<&M365User>) -> M365UserPatch {
    fn differs(want: &Option<String>, have: Option<&Option<String>>) -> Option<Option<String>> {
        (have != Some(want)).then(|| want.clone())
    }
    M365UserPatch {
        display_name: (current.map(|c| &c.display_name) != Some(&user.display_name))
            .then(|| user.display_name.clone()),
        given_name: differs(&user.given_name, current.map(|c| &c.given_name)),
        surname: differs(&user.surname, current.map(|c| &c.surname)),
        job_title: differs(&user.job_title, current.map(|c| &c.job_title)),
        department: differs(&user.department, current.map(|c| &c.department)),
        // R-ATTR-1: against the account only what differs; for any account all of them.
        attributes: current.map_or_else(
            || crate::model::AttributesPatch::full(&user.attributes),
            |c| user.attributes.patch_from(&c.attributes).0,
        ),
    }
}

/// Length of generated passwords.
pub const GENERATED_PASSWORD_LEN: usize = 20;

/// A random password that meets Entra's policy (graph-spec §3.7): one character of each of the four
/// classes, the rest from all of them, shuffled. Used when the directory holds no password.
#[must_use]
pub fn generate_password(random: &impl Random) -> SecretString {
    const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
    const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    const DIGITS: &str = "0123456789";
    let all: Vec<char> = [LOWER, UPPER, DIGITS, ENTRA_SYMBOLS]
        .concat()
        .chars()
        .collect();
    let pick = |set: &[char]| {
        let index = usize::try_from(random.below(set.len() as u64)).unwrap_or(0);
        set.get(index).copied().unwrap_or('a')
    };
    let mut chars: Vec<char> = CharClass::ALL
        .iter()
        .map(|class| {
            let set: Vec<char> = all
                .iter()
                .copied()
                .filter(|c| CharClass::of(*c) == Some(*class))
                .collect();
            pick(&set)
        })
        .collect();
    while chars.len() < GENERATED_PASSWORD_LEN {
        chars.push(pick(&all));
    }
    // Fisher–Yates, so the guaranteed classes are not always first.
    for i in (1..chars.len()).rev() {
        let j = usize::try_from(random.below(i as u64 + 1)).unwrap_or(0);
        chars.swap(i, j);
    }
    SecretString::from(chars.into_iter().collect::<String>())
}

/// A `mailNickname` for `email` (graph-spec §3.1: required, ≤ 64 characters, no spaces or `@`):
/// the local part restricted to letters, digits, `.`, `-` and `_`.
#[must_use]
pub fn mail_nickname(email: &crate::model::Email) -> String {
    let nickname: String = email
        .local_part()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    let trimmed = nickname.trim_matches('.');
    if trimmed.is_empty() {
        "user".to_owned()
    } else {
        trimmed.to_owned()
    }
}
