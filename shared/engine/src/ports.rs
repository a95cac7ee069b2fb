//! Ports: the traits the engine needs from the outside world, named for their role (STYLE "Ports").
//!
//! Adapters: `DynamoUsers`, `DynamoGroups`, `DynamoTenants`, `DynamoBindings`, `DynamoEvents`,
//! `DynamoFailures`, `DynamoLedger` (m365-aws), `SqsRetryQueue`, `SecretsManagerTokenVault`,
//! `SecretsManagerSealer`, `SnsAdminAlerts`, `DynamoAlertIncidents`, and `GraphDirectory`
//! (m365-graph). In-memory fakes live in
//! [`crate::testing`] and the behaviour every implementation must show is the contract suite in
//! [`crate::testing::contract`].
//!
//! Versioned records (`version` field) follow one rule: a create stores version 1; an update
//! succeeds only if the stored version equals the expected one and stores expected + 1; the
//! written record (with its new version) is returned.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::error::Result;
use crate::model::{
    AdminAlert, AlertIncident, AlertKind, Binding, BindingState, DirectoryRole, DirectoryUser,
    DomainName, Email, Event, EventKind, Failure, Group, GroupId, M365Group, M365ObjectId,
    M365TenantId, M365User, M365UserPatch, NewM365User, OperationId, OperationOutcome, Page,
    PageRequest, RequestToken, RetryMessage, SealedPassword, Tenant, TenantId, TenantTokens,
    UserId, VerifiedDomain, WelcomeNotification,
};

/// Directory users, unique by id and by email (case-insensitive).
pub trait UserStore: Send + Sync {
    /// Stores a new user (its `version` is ignored; the stored one is 1).
    ///
    /// # Errors
    /// `Conflict::AlreadyExists` if the id exists; `Conflict::EmailExists` if another user has the email.
    fn create(&self, user: &DirectoryUser) -> impl Future<Output = Result<DirectoryUser>> + Send;

    /// Replaces a user whose stored version is `expected_version`; a changed email is re-claimed
    /// atomically (the old one is freed).
    ///
    /// # Errors
    /// `NotFound`; `Conflict::StaleVersion`; `Conflict::EmailExists` if the new email belongs to another user.
    fn replace(
        &self,
        user: &DirectoryUser,
        expected_version: u64,
    ) -> impl Future<Output = Result<DirectoryUser>> + Send;

    /// The user with this id.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(&self, id: &UserId) -> impl Future<Output = Result<Option<DirectoryUser>>> + Send;

    /// The user with this email.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get_by_email(
        &self,
        email: &Email,
    ) -> impl Future<Output = Result<Option<DirectoryUser>>> + Send;

    /// All users, each once, in an order the store chooses (stable across pages).
    ///
    /// # Errors
    /// `Invalid(Cursor)` for a foreign cursor; infrastructure failures.
    fn list(&self, page: &PageRequest) -> impl Future<Output = Result<Page<DirectoryUser>>> + Send;

    /// The users whose `managerId` is `manager` (its direct reports), each once, ordered by id;
    /// empty for a user nobody reports to. Reads in proportion to the reports, never every user
    /// (R-ATTR-1: a manager bound later is linked to its bound reports on every bind).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn reports_of(
        &self,
        manager: &UserId,
    ) -> impl Future<Output = Result<Vec<DirectoryUser>>> + Send;
}

/// Directory groups.
pub trait GroupStore: Send + Sync {
    /// Stores a new group (version 1).
    ///
    /// # Errors
    /// `Conflict::AlreadyExists` if the id exists.
    fn create(&self, group: &Group) -> impl Future<Output = Result<Group>> + Send;

    /// Replaces a group whose stored version is `expected_version`.
    ///
    /// # Errors
    /// `NotFound`; `Conflict::StaleVersion`.
    fn replace(
        &self,
        group: &Group,
        expected_version: u64,
    ) -> impl Future<Output = Result<Group>> + Send;

    /// The group with this id.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(&self, id: &GroupId) -> impl Future<Output = Result<Option<Group>>> + Send;

    /// All groups, each once, in an order the store chooses (stable across pages).
    ///
    /// # Errors
    /// `Invalid(Cursor)`; infrastructure failures.
    fn list(&self, page: &PageRequest) -> impl Future<Output = Result<Page<Group>>> + Send;

    /// The groups listing `member` among their members, each once, ordered by id; empty for a
    /// user in no group. Reads in proportion to the user's groups, never every group (R-GRP-1's
    /// "a bound user joins its groups now" runs on every bind).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn groups_of_member(&self, member: &UserId) -> impl Future<Output = Result<Vec<Group>>> + Send;

    /// Deletes a group (no-op if absent).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn delete(&self, id: &GroupId) -> impl Future<Output = Result<()>> + Send;
}

/// Tenants and the one-tenant-per-domain claims (R-CONN-2).
pub trait TenantStore: Send + Sync {
    /// Stores a new tenant (version 1).
    ///
    /// # Errors
    /// `Conflict::AlreadyExists` if the id exists.
    fn create(&self, tenant: &Tenant) -> impl Future<Output = Result<Tenant>> + Send;

    /// The tenant with this id.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(&self, id: &TenantId) -> impl Future<Output = Result<Option<Tenant>>> + Send;

    /// All tenants, each once, in an order the store chooses (stable across pages).
    ///
    /// # Errors
    /// `Invalid(Cursor)`; infrastructure failures.
    fn list(&self, page: &PageRequest) -> impl Future<Output = Result<Page<Tenant>>> + Send;

    /// Replaces a tenant whose stored version is `expected_version`.
    ///
    /// # Errors
    /// `NotFound`; `Conflict::StaleVersion`.
    fn update(
        &self,
        tenant: &Tenant,
        expected_version: u64,
    ) -> impl Future<Output = Result<Tenant>> + Send;

    /// Claims every domain for `tenant`, all or nothing. Domains the tenant already holds are fine
    /// (idempotent re-claim).
    ///
    /// # Errors
    /// `Conflict::DomainClaimed` naming the first domain held by another tenant (nothing is claimed then).
    fn claim_domains(
        &self,
        tenant: &TenantId,
        domains: &[DomainName],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Releases those of `domains` that `tenant` holds (others are left alone).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn release_domains(
        &self,
        tenant: &TenantId,
        domains: &[DomainName],
    ) -> impl Future<Output = Result<()>> + Send;

    /// The tenant holding `domain`.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn tenant_for_domain(
        &self,
        domain: &DomainName,
    ) -> impl Future<Output = Result<Option<TenantId>>> + Send;
}

/// What to expect of the stored binding when writing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Create: no binding for the user yet.
    Absent,
    /// Update: the stored binding has this version.
    Version(u64),
}

/// Bindings, one per user (R-BIND-1).
pub trait BindingStore: Send + Sync {
    /// The user's binding.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(&self, user: &UserId) -> impl Future<Output = Result<Option<Binding>>> + Send;

    /// Writes the binding if `expect` holds.
    ///
    /// # Errors
    /// `Conflict::StaleVersion` (with `expected` 0 for [`Expect::Absent`]) when it does not.
    fn put(
        &self,
        binding: &Binding,
        expect: Expect,
    ) -> impl Future<Output = Result<Binding>> + Send;

    /// A tenant's bindings, optionally only those in `state`, each once, in an order the store chooses.
    ///
    /// # Errors
    /// `Invalid(Cursor)`; infrastructure failures.
    fn list_by_tenant(
        &self,
        tenant: &TenantId,
        state: Option<BindingState>,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<Binding>>> + Send;
}

/// Which events to list (`GET /events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// Events of one user.
    User(UserId),
    /// Events of one tenant.
    Tenant(TenantId),
    /// Events of one type.
    Kind(EventKind),
}

/// An events query: newest first, optionally only at or after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// The index to read.
    pub filter: EventFilter,
    /// Oldest instant included.
    pub since: Option<DateTime<Utc>>,
    /// Page position and size.
    pub page: PageRequest,
}

/// Audit events (R-AUD-1), kept 90 days.
pub trait EventStore: Send + Sync {
    /// Records an event (appending the same event id twice keeps one).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn append(&self, event: &Event) -> impl Future<Output = Result<()>> + Send;

    /// Events matching `query`, newest first (ties: greater id first).
    ///
    /// # Errors
    /// `Invalid(Cursor)`; infrastructure failures.
    fn query(&self, query: &EventQuery) -> impl Future<Output = Result<Page<Event>>> + Send;
}

/// Failure diagnostics (R-AUD-1).
pub trait FailureStore: Send + Sync {
    /// Records a failure.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn record(&self, failure: &Failure) -> impl Future<Output = Result<()>> + Send;

    /// A tenant's failures, newest first (ties: greater id first).
    ///
    /// # Errors
    /// `Invalid(Cursor)`; infrastructure failures.
    fn list_by_tenant(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<Failure>>> + Send;
}

/// Result of claiming an operation in the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the operation until its lease ends.
    Claimed,
    /// Another worker holds an unexpired lease: leave it (the message comes back later).
    InProgress {
        /// When that lease ends.
        lease_until: DateTime<Utc>,
    },
    /// It finished already: acknowledge without calling Graph again.
    AlreadyDone(OperationOutcome),
}

/// The idempotency ledger (STYLE "Idempotency").
pub trait OperationLedger: Send + Sync {
    /// Claims `id` at `now` with a lease until `lease_until`. An expired lease (≤ `now`) is taken over.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn claim(
        &self,
        id: &OperationId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Claim>> + Send;

    /// Marks `id` done with `outcome`; the entry may be dropped after `expires_at` (TTL).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn complete(
        &self,
        id: &OperationId,
        outcome: &OperationOutcome,
        expires_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Drops an unfinished claim so a retry can claim it at once (no-op if absent or done).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn release(&self, id: &OperationId) -> impl Future<Output = Result<()>> + Send;
}

/// The producer side of the retry queue.
pub trait RetryQueue: Send + Sync {
    /// Sends `message`, invisible for `delay` (callers pass [`RetryMessage::send_delay`]; at most 15 minutes).
    ///
    /// # Errors
    /// `Invalid` for a delay above 15 minutes; infrastructure failures.
    fn send(
        &self,
        message: &RetryMessage,
        delay: Duration,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// One received message and the handle that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub message: RetryMessage,
    /// Opaque handle for [`RetryQueueConsumer::ack`].
    pub receipt: String,
    /// How many times it has been received (1 the first time).
    pub receive_count: u32,
}

/// The consumer side of the retry queue. In production Lambda's SQS trigger receives and no use
/// case calls this port: it exists so that one contract (`testing::contract::retry_queue`) proves
/// the fake and the SQS adapter deliver, delay, hide and acknowledge alike, and so that
/// `testing::World` can drain its queue. (The local stack and the integration tests read SQS
/// with the SDK directly.)
pub trait RetryQueueConsumer: Send + Sync {
    /// Receives up to `max` (1–10, SQS's limit) visible messages, waiting up to `wait` (≤ 20 s) for
    /// one; each received message is hidden for `visibility` and comes back after it unless acknowledged.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>>> + Send;

    /// Deletes a received message.
    ///
    /// # Errors
    /// Infrastructure failures only (an unknown or spent receipt is not an error).
    fn ack(&self, receipt: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Per-tenant OAuth tokens (R-CONN-1, R-CONN-4).
pub trait TokenVault: Send + Sync {
    /// The current tokens.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<TenantTokens>>> + Send;

    /// The tokens before the last put (kept for one rotation).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get_previous(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<TenantTokens>>> + Send;

    /// Stores the tokens of a completed consent (R-CONN-1): creates the tenant's secret, or, when
    /// it exists (a reconnect), adds a new current version (the old current becomes previous).
    /// Only the connect callback calls it, and only after it has decided to keep the tokens
    /// (R-CONN-7); everyone else uses [`TokenVault::update`], which never creates (R-CONN-8,
    /// R-SAFE-4: only `connect` may create token secrets). Repeating a create with the same
    /// `request` token and content is a no-op.
    ///
    /// # Errors
    /// `Conflict::RequestTokenReused` when `request` was used with other content.
    fn create(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Stores rotated tokens of a tenant that has tokens (refresh, R-CONN-4); the old current
    /// becomes previous. Never creates the secret: once a deauthorization deleted it, a refresh
    /// that was in flight cannot bring the tokens back (R-CONN-8). Repeating an update with the
    /// same `request` token and content is a no-op.
    ///
    /// # Errors
    /// `NotFound` (entity `TenantTokens`) when the tenant has no tokens (never stored, or
    /// deleted); `Conflict::RequestTokenReused` when `request` was used with other content.
    fn update(
        &self,
        tenant: &TenantId,
        tokens: &TenantTokens,
        request: &RequestToken,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Deletes the tenant's tokens at once (no-op if absent, R-CONN-5); only a later
    /// [`TokenVault::create`] (a new consent) stores tokens again.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn delete(&self, tenant: &TenantId) -> impl Future<Output = Result<()>> + Send;
}

/// Password sealing with AES-256-GCM (R-PWD-1). The ciphertext is bound to the user id (associated
/// data), so it cannot be moved to another user.
pub trait Sealer: Send + Sync {
    /// Seals `password` for `user` with the current key.
    ///
    /// # Errors
    /// Key store failures.
    fn seal(
        &self,
        user: &UserId,
        password: &SecretString,
    ) -> impl Future<Output = Result<SealedPassword>> + Send;

    /// Opens a sealed password of `user` with the key version it names.
    ///
    /// # Errors
    /// `Seal(Tampered)` if it was altered or belongs to another user; `Seal(UnknownKeyVersion)`.
    fn open(
        &self,
        user: &UserId,
        sealed: &SealedPassword,
    ) -> impl Future<Output = Result<SecretString>> + Send;
}

/// The time source.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The M365 side (Graph), in our words. Implemented by `GraphDirectory` (later issue) and by
/// [`crate::testing::FakeDirectory`]. Every call names our tenant; the adapter finds its tokens.
pub trait Directory: Send + Sync {
    /// The active user with this UPN (case-insensitive); soft-deleted users are not found.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn find_user_by_upn(
        &self,
        tenant: &TenantId,
        upn: &Email,
    ) -> impl Future<Output = Result<Option<M365User>>> + Send;

    /// Creates a user.
    ///
    /// # Errors
    /// `Conflict::UpnExists` (adopt instead), carrying the account holding the UPN when the adapter
    /// looked it up to tell it from a deleted one; `Unavailable(AddressHeld)` while a deleted account holds
    /// the address; `Rejected` for an unverified/federated domain or a non-compliant password.
    fn create_user(
        &self,
        tenant: &TenantId,
        user: &NewM365User,
    ) -> impl Future<Output = Result<M365User>> + Send;

    /// Changes attributes (an empty patch is a no-op, never sent).
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`) when the user does not exist (or was deleted).
    fn update_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        patch: &M365UserPatch,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Allows or blocks sign-in (`accountEnabled`).
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`).
    fn set_account_enabled(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        enabled: bool,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Revokes the user's sign-in sessions and refresh tokens
    /// (`POST /users/{id}/revokeSignInSessions`): M365 moves `signInSessionsValidFromDateTime` to
    /// now, so a blocked account's open sessions end too (R-BIND-9, R-BIND-5; graph-spec §3.4,
    /// §1.4). Safe to repeat (a second call only moves the instant again).
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`).
    fn revoke_sign_in_sessions(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Sets the password without forcing a change at next sign-in.
    ///
    /// # Errors
    /// `NotFound`; `Rejected` for a non-compliant password or a federated user.
    fn set_password(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        password: &SecretString,
    ) -> impl Future<Output = Result<()>> + Send;

    /// One page of the tenant's active users, ordered as M365 orders them.
    ///
    /// # Errors
    /// `Invalid(Cursor)`; Graph errors.
    fn list_users(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<M365User>>> + Send;

    /// The tenant's verified domains with their kind.
    ///
    /// # Errors
    /// Graph errors.
    fn verified_domains(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Vec<VerifiedDomain>>> + Send;

    /// Microsoft's id of the tenant (`GET /organization`, graph-spec §3.9) with the tenant's stored
    /// tokens. (The connect callback reads it with the just-issued token instead, through
    /// [`TenantProbe`], before anything is stored — R-CONN-7.)
    ///
    /// # Errors
    /// Graph errors.
    fn organization_id(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<M365TenantId>> + Send;

    /// The active user with this object id (`GET /users/{id}`), `None` when absent or deleted
    /// (R-IMP-2 reads the selected accounts; nothing is written).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12 (a 404 is `Ok(None)`).
    fn get_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<Option<M365User>>> + Send;

    /// One page of the tenant's active users whose UPN, mail or display name starts with
    /// `prefix` (case-insensitive), filtered by M365 itself so a page costs one request whatever
    /// the tenant's size (R-IMP-1). Paged like [`Directory::list_users`].
    ///
    /// # Errors
    /// `Invalid(Cursor)`; Graph errors.
    fn list_users_with_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<M365User>>> + Send;

    /// The group with this mail nickname (case-insensitive), if any (R-GRP-1: adopt).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn find_group_by_mail_nickname(
        &self,
        tenant: &TenantId,
        nickname: &str,
    ) -> impl Future<Output = Result<Option<M365Group>>> + Send;

    /// Creates a security group (`securityEnabled`, not mail-enabled, no group types). A create
    /// whose answer was lost is resolved by looking the nickname up, never re-sent blindly.
    ///
    /// # Errors
    /// Retryable errors while the outcome is unknown; `Rejected` for invalid names.
    fn create_security_group(
        &self,
        tenant: &TenantId,
        display_name: &str,
        nickname: &str,
    ) -> impl Future<Output = Result<M365Group>> + Send;

    /// Adds `member` to `group`; "already a member" is success.
    ///
    /// # Errors
    /// `Unavailable(NotYetVisible)` while a new group or user replicates (retryable);
    /// `NotFound` (entity `Group` or `M365User`).
    fn add_group_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes `member` from `group`; "not a member" is success.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn remove_group_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// One page of the object ids of `group`'s direct members.
    ///
    /// # Errors
    /// `NotFound` (entity `Group`); `Invalid(Cursor)`; Graph errors.
    fn list_group_members(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        page: &PageRequest,
    ) -> impl Future<Output = Result<Page<M365ObjectId>>> + Send;

    /// M365's `lastPasswordChangeDateTime` of the active user `id` (graph-spec §3.8), read after
    /// a password write of ours so reconcile can compare M365 time with M365 time (R-PWD-3);
    /// `None` when the user is absent or M365 does not say. A read: it costs no write budget.
    /// The default reads the whole user with [`Directory::get_user`].
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12 (a 404 is `Ok(None)`).
    fn last_password_change(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>>> + Send {
        async move {
            Ok(self
                .get_user(tenant, id)
                .await?
                .and_then(|u| u.last_password_change))
        }
    }

    /// The directory roles the active user `id` holds, directly or through a role-assignable
    /// group (`GET /users/{id}/transitiveMemberOf/microsoft.graph.directoryRole`), sorted and
    /// without duplicates; empty for an ordinary user (R-BIND-11). One read.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`) when the user does not exist; Graph errors mapped per
    /// graph-spec §12 (`Forbidden` when the connection may not read memberships).
    fn directory_roles_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<Vec<DirectoryRole>>> + Send;

    /// The M365 account whose delegated consent the tenant's connection carries (`GET /me` with
    /// the connection's tokens), or `None` when the connection has no signed-in user (app-only
    /// tokens). Adapters may cache it per tenant for a few minutes: it changes only with a
    /// reconnect (R-BIND-11).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn consenting_admin(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<M365ObjectId>>> + Send;

    /// Every account of the tenant that holds an activated directory role, with its roles
    /// (sorted, without duplicates), for a reconcile pass that checks all its planned writes at
    /// once (R-BIND-11): `GET /directoryRoles`, then each role's members; a member that is a
    /// (role-assignable) group counts for each of its member users. The cost is one read plus one
    /// per activated role (and per role-holding group), whatever the tenant's size.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12 (`Forbidden` when the connection may not read
    /// directory roles: `RoleManagement.Read.Directory`).
    fn directory_role_holders(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<BTreeMap<M365ObjectId, Vec<DirectoryRole>>>> + Send;

    /// The manager of the active user `id` (`GET /users/{id}/manager`), `None` when it has none
    /// (R-ATTR-1). One read.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`) for an unknown user; Graph errors mapped per graph-spec §12.
    fn manager_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<Option<M365ObjectId>>> + Send;

    /// Makes `manager` the manager of `id` (`PUT /users/{id}/manager/$ref`, R-ATTR-1); assigning
    /// the current manager again is success.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`: the user or the manager); `Unavailable(NotYetVisible)`
    /// while a new account replicates (retryable).
    fn set_manager(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        manager: &M365ObjectId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes `id`'s manager (`DELETE /users/{id}/manager/$ref`, R-ATTR-1); "no manager" is
    /// success.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`) for an unknown user; Graph errors mapped per graph-spec §12.
    fn clear_manager(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The soft-deleted user `id` in the tenant's `deletedItems`
    /// (`GET /directory/deletedItems/{id}`, graph-spec §3.6), `None` when there is none (never
    /// deleted, active again, purged after 30 days, or not a user). A read (R-BIND-10).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12 (a 404 is `Ok(None)`).
    fn get_deleted_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<Option<crate::model::DeletedM365User>>> + Send;

    /// The soft-deleted user whose UPN is `upn` (case-insensitive), the most recently deleted
    /// when several are (`GET /directory/deletedItems/microsoft.graph.user?$filter=
    /// userPrincipalName eq '…'`, graph-spec §3.6). A read (R-BIND-10).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn find_deleted_user_by_upn(
        &self,
        tenant: &TenantId,
        upn: &Email,
    ) -> impl Future<Output = Result<Option<crate::model::DeletedM365User>>> + Send;

    /// Restores the soft-deleted user `id` (`POST /directory/deletedItems/{id}/restore`,
    /// graph-spec §3.6): the same account comes back with its licences and group memberships
    /// (§3.5). A write (rate-budgeted like every write). Not repeated blindly: a restore whose
    /// answer was lost is recognized by the caller finding the account active.
    ///
    /// # Errors
    /// `Conflict::RestoreConflict` when another active object now holds the account's UPN,
    /// mail or a proxy address; `NotFound` (entity `M365User`) when no deleted user has the id
    /// (never deleted, restored already, purged); Graph errors mapped per graph-spec §12.
    fn restore_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> impl Future<Output = Result<M365User>> + Send;
}

/// Outgoing notifications to employees (R-BIND-4): the notifications queue in production.
pub trait Notifier: Send + Sync {
    /// Sends the welcome notification of a newly bound user.
    ///
    /// # Errors
    /// Delivery failures (the bind itself stays done).
    fn welcome(
        &self,
        notification: &WelcomeNotification,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Email delivery (R-NOT-1): SES v2 in production (`SesMailer`, m365-aws),
/// [`crate::testing::FakeMailer`] in tests.
pub trait Mailer: Send + Sync {
    /// Sends one email; answers the provider's message id.
    ///
    /// # Errors
    /// Throttling and outages (retryable); a refused message or sender (permanent).
    fn send(
        &self,
        email: &crate::model::OutgoingEmail,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// A source of randomness: retry jitter and generated passwords. Injected so tests are
/// deterministic; production uses [`ThreadRandom`].
pub trait Random: Send + Sync {
    /// A uniformly random `u64`.
    fn next_u64(&self) -> u64;

    /// A uniformly random number in `0..bound` (0 when `bound` is 0).
    fn below(&self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        // Rejection sampling keeps the distribution uniform (no modulo bias).
        let zone = u64::MAX - (u64::MAX % bound);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % bound;
            }
        }
    }
}

/// Cryptographically secure randomness from `rand`'s thread-local generator (ChaCha, seeded and
/// reseeded from the operating system), good for generated passwords.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    fn next_u64(&self) -> u64 {
        rand::RngCore::next_u64(&mut rand::rng())
    }
}

/// The start of an admin's sign-in (R-CONN-1): the URL to send the browser to, and what the
/// callback must verify (R-SAFE-3). `Debug` redacts the verifier.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    /// The identity platform's authorize URL (response type code, PKCE S256, `state`, `offline_access`).
    pub url: String,
    /// The `state` value the callback must echo.
    pub state: String,
    /// The PKCE verifier the code exchange must present.
    pub pkce_verifier: SecretString,
}

/// The identity platform in our words (R-CONN-1, R-CONN-4): sign-in URL, code exchange, refresh.
/// Implemented by `GraphIdentity` (m365-graph) and [`crate::testing::FakeIdentityPlatform`].
///
/// Every call names the authority it goes to: `None` before the Microsoft tenant is known
/// (`organizations`), else that tenant's own authority (`/{m365TenantId}`, R-CONN-7), where only
/// its own users can sign in and only its own grants are redeemed.
pub trait IdentityPlatform: Send + Sync {
    /// A fresh sign-in request at `tenant`'s authority: new `state` and PKCE verifier each time.
    ///
    /// # Errors
    /// Configuration errors (a bad base or redirect URL).
    fn authorization_request(&self, tenant: Option<&M365TenantId>) -> Result<AuthorizationRequest>;

    /// Redeems an authorization code with its PKCE verifier at `tenant`'s authority (the one the
    /// sign-in was started at). The tokens name `tenant` when it is given.
    ///
    /// # Errors
    /// `ReauthorizationRequired` (the platform's `invalid_grant`: a wrong verifier, a reused or
    /// expired code); retryable errors for throttling and outages; `Infrastructure` for
    /// configuration errors.
    fn exchange_code(
        &self,
        code: &SecretString,
        pkce_verifier: &SecretString,
        tenant: Option<&M365TenantId>,
    ) -> impl Future<Output = Result<TenantTokens>> + Send;

    /// Redeems a refresh token at `tenant`'s authority. The caller saves the returned (rotated)
    /// tokens before using them; they name `tenant` when it is given.
    ///
    /// # Errors
    /// `ReauthorizationRequired` with the AADSTS code on `invalid_grant`; retryable errors for
    /// throttling and outages; `Infrastructure` for configuration errors.
    fn refresh(
        &self,
        refresh_token: &SecretString,
        tenant: Option<&M365TenantId>,
    ) -> impl Future<Output = Result<TenantTokens>> + Send;
}

/// What a just-issued access token says about the Microsoft tenant it belongs to: read at the
/// OAuth callback with that token itself, before anything is stored (R-CONN-7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentedTenant {
    /// Microsoft's id of the tenant (`GET /organization`, graph-spec §3.9).
    pub m365_tenant_id: M365TenantId,
    /// Its verified domains with their kind (`GET /domains`, graph-spec §8.1).
    pub domains: Vec<VerifiedDomain>,
}

/// Reads which Microsoft tenant an access token belongs to, with nothing but that token: the
/// connect callback asks it before writing anything, so tokens of the wrong tenant are never
/// stored, not even for a moment (R-CONN-7). Implemented by `GraphDirectory` (m365-graph, two
/// Graph reads with the given token) and [`crate::testing::FakeDirectory`].
pub trait TenantProbe: Send + Sync {
    /// The organization and verified domains visible with `access_token`; `tenant` (ours, the one
    /// being connected) only names the work in logs and errors.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12 (the token is used as is: a 401 is final).
    fn probe(
        &self,
        tenant: &TenantId,
        access_token: &SecretString,
    ) -> impl Future<Output = Result<ConsentedTenant>> + Send;
}

/// A sign-in under way: what the OAuth callback needs to verify `state` and PKCE (R-SAFE-3).
/// `Debug` redacts the verifier.
#[derive(Debug, Clone)]
pub struct PendingConsent {
    /// The `state` sent to the identity platform (the key).
    pub state: String,
    /// The tenant being connected.
    pub tenant_id: TenantId,
    /// The PKCE verifier of this sign-in.
    pub pkce_verifier: SecretString,
    /// After this instant the sign-in is void (the store may drop it: TTL).
    pub expires_at: DateTime<Utc>,
    /// The tenant's [`Tenant::consent_epoch`] when the sign-in started: a deauthorization since
    /// then voids it (R-CONN-8).
    pub consent_epoch: u64,
    /// The Microsoft tenant whose authority the sign-in was sent to (`None`: `organizations`);
    /// the code is redeemed at the same authority (R-CONN-7).
    pub authority: Option<M365TenantId>,
    /// Who started the sign-in (R-AUD-1): the `tenant_connected` event names them, not the
    /// anonymous callback. `None` in sign-ins stored before actors existed.
    pub requested_by: Option<crate::model::Actor>,
}

/// Sign-ins under way, keyed by `state`, each usable once and only until it expires (R-SAFE-3).
pub trait PendingConsents: Send + Sync {
    /// Stores a sign-in.
    ///
    /// # Errors
    /// `Conflict::AlreadyExists` if the state is already stored; infrastructure failures.
    fn put(&self, pending: &PendingConsent) -> impl Future<Output = Result<()>> + Send;

    /// Removes and returns the sign-in of `state`, unless absent or expired at `now` (then `None`):
    /// a state can be redeemed once.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn take(
        &self,
        state: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<PendingConsent>>> + Send;
}

/// Named leases shared by every process (single flight, e.g. one token refresh per tenant, R-CONN-4).
pub trait Leases: Send + Sync {
    /// Takes the lease `name` for `holder` until `until`, if it is free, expired (≤ `now`) or
    /// already held by `holder` (then extended). Returns whether `holder` holds it now.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn acquire(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Gives the lease back if `holder` holds it (no-op otherwise).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn release(&self, name: &str, holder: &str) -> impl Future<Output = Result<()>> + Send;
}

/// Publishes admin alerts (R-OPS-1). Implemented by `SnsAdminAlerts` (m365-aws: the stack's
/// `AdminAlerts` SNS topic, whose subscribers are the admins' email and anything else) and
/// [`crate::testing::FakeAdminAlerts`]. Deduplication is not its business: the engine publishes
/// once per incident through [`AlertIncidents`] (`usecase::alerts::Alerting`).
pub trait AdminAlerts: Send + Sync {
    /// Publishes `alert`.
    ///
    /// # Errors
    /// Retryable errors when the service is throttling or unavailable; `Infrastructure` otherwise.
    fn publish(&self, alert: &AdminAlert) -> impl Future<Output = Result<()>> + Send;
}

/// Open alert incidents, one per (tenant, kind) (R-OPS-1: once per incident, not every run).
/// Implemented by `DynamoAlertIncidents` (m365-aws, the tenants table, item
/// `ALERT#<tenant id>#<kind>` / `ALERT`) and [`crate::testing::FakeAlertIncidents`].
///
/// An incident is claimed before its alert is published and marked published after: a claim
/// lasts until `until`, so a publisher that crashed in between is replaced once its claim ran out
/// (the alert then goes out, at least once), while concurrent or redelivered invocations of the
/// same incident find it claimed or published and publish nothing.
pub trait AlertIncidents: Send + Sync {
    /// Opens the incident of (`tenant`, `kind`) at `now` and claims its publication until `until`
    /// — or re-claims an open one whose alert was never confirmed published and whose claim ran
    /// out at `now` (keeping its `opened_at`). Returns the incident when the caller must publish
    /// its alert, `None` when it is already published or another caller holds the claim.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn claim(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<AlertIncident>>> + Send;

    /// Marks the incident opened at `opened_at` as published (no-op when it was resolved or
    /// re-opened meanwhile).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn mark_published(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        opened_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Closes the incident of (`tenant`, `kind`): the next occurrence is a new incident with a new
    /// alert. Returns whether one was open.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn resolve(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The open incident of (`tenant`, `kind`), if any.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
    ) -> impl Future<Output = Result<Option<AlertIncident>>> + Send;
}

/// The answer of a [`RateBudget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetDecision {
    /// The units were taken: go ahead now.
    Granted,
    /// Nothing was taken: ask again after this long (when the units should be there).
    Wait(Duration),
}

/// A token bucket's size: `capacity` units, refilled continuously at `capacity` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Most units available at once (the burst), at least 1.
    pub capacity: u32,
    /// Time to refill an empty bucket, more than zero.
    pub window: Duration,
}

impl RateLimit {
    /// Graph's documented write limit per app and tenant: 3,000 writes per 150 s (graph-spec §7.2).
    pub const GRAPH_WRITES: Self = Self {
        capacity: 3_000,
        window: Duration::from_secs(150),
    };

    /// Default share of a Graph limit the budget grants: the rest is a safety margin for clock
    /// skew between processes and for writes this budget does not see.
    pub const DEFAULT_SHARE: f64 = 0.95;

    /// `share` (0–1) of this limit: the capacity scaled down (at least 1), the same window, so the
    /// refill rate scales too.
    #[must_use]
    pub fn scaled(self, share: f64) -> Self {
        let share = share.clamp(0.0, 1.0);
        // Within u32 by construction (share ≤ 1).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let capacity = ((f64::from(self.capacity) * share).floor() as u32).max(1);
        Self {
            capacity,
            window: self.window,
        }
    }

    /// Units refilled per second.
    #[must_use]
    pub fn per_second(self) -> f64 {
        f64::from(self.capacity) / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Per-tenant Graph rate budget shared by every concurrent function (DESIGN §2 "Graph usage",
/// graph-spec §7.2): a token bucket per tenant, so bulk work paces itself under Graph's write limit
/// instead of colliding with 429s. Implemented by `DynamoRateBudget` (m365-aws) and
/// [`crate::testing::FakeRateBudget`].
pub trait RateBudget: Send + Sync {
    /// Takes `cost` units of `tenant`'s budget at `now` if the bucket holds them
    /// ([`BudgetDecision::Granted`]); otherwise takes nothing and answers how long until it will
    /// ([`BudgetDecision::Wait`]). A new tenant's bucket starts full.
    ///
    /// # Errors
    /// `Invalid(Field "cost")` for a cost of 0 or above the bucket's capacity (it could never be
    /// granted); infrastructure failures.
    fn acquire(
        &self,
        tenant: &TenantId,
        cost: u32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<BudgetDecision>> + Send;
}

/// One user as a users delta round reports it (R-REC-1, graph-spec §5): the attributes present
/// on the page ("at least the changed ones"; `None` = not reported), or a removal. The clearable
/// attributes tell a cleared value apart from an absent one: `Some(None)` is a reported JSON
/// `null` (e.g. an admin cleared the job title), which is drift when the directory has a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// The M365 object id.
    pub id: M365ObjectId,
    /// Soft- or hard-deleted in M365 (`@removed`).
    pub removed: bool,
    /// Display name, when reported (Graph never clears it, graph-spec §3.4).
    pub display_name: Option<String>,
    /// Given name, when reported (`Some(None)`: reported cleared).
    pub given_name: Option<Option<String>>,
    /// Surname, when reported (`Some(None)`: reported cleared).
    pub surname: Option<Option<String>>,
    /// Job title, when reported (`Some(None)`: reported cleared).
    pub job_title: Option<Option<String>>,
    /// Department, when reported (`Some(None)`: reported cleared).
    pub department: Option<Option<String>>,
    /// The R-ATTR-1 attributes reported (`Some(None)`: reported cleared).
    pub attributes: crate::model::AttributesPatch,
    /// Sign-in allowed, when reported.
    pub account_enabled: Option<bool>,
    /// `lastPasswordChangeDateTime`, when reported (R-PWD-3).
    pub last_password_change: Option<DateTime<Utc>>,
    /// The manager, when reported (`manager@delta`, R-ATTR-1): `Some(Some(id))` assigned,
    /// `Some(None)` removed. Graph reports it only for rounds that select `manager` and only
    /// when it changed (or, on a full listing, when the user has one).
    pub manager: Option<Option<M365ObjectId>>,
}

/// Where a users delta page leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaLink {
    /// More pages in this round: pass this link next.
    More(String),
    /// The round is complete: save this link and start from it next time.
    Done(String),
}

/// One page of a users delta round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDeltaPage {
    /// Changed or removed users (the same user may appear more than once: later wins).
    pub changes: Vec<UserChange>,
    /// Next page or the round's final link.
    pub next: DeltaLink,
    /// The saved state was lost (410) and this page starts a full listing.
    pub restarted: bool,
}

/// Users delta queries (graph-spec §5) for reconcile (R-REC-1). Implemented by `GraphDirectory`
/// (m365-graph) and [`crate::testing::FakeUserDeltas`].
pub trait UserDeltas: Send + Sync {
    /// The page at `link` (a more-link or a saved done-link), or the initial full listing when
    /// `link` is `None`. A lost state restarts the listing and says so (`restarted`).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn users_delta(
        &self,
        tenant: &TenantId,
        link: Option<&str>,
    ) -> impl Future<Output = Result<UserDeltaPage>> + Send;
}

/// Which delta round a reconcile cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeltaStream {
    /// The users delta (R-REC-1, R-PWD-3).
    Users,
    /// The groups delta with `members@delta` (group membership drift, R-REC-1).
    Groups,
}

impl DeltaStream {
    /// The snake_case name (store keys, logs).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Groups => "groups",
        }
    }
}

/// The per-tenant reconcile cursors (DESIGN §2 "Data"): the delta link of each stream to start the
/// next run from. Implemented by `DynamoReconcileCursors` (m365-aws) and
/// [`crate::testing::FakeReconcileCursors`].
pub trait ReconcileCursors: Send + Sync {
    /// The saved link (`None`: never reconciled, the next run is a full sync).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(
        &self,
        tenant: &TenantId,
        stream: DeltaStream,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Saves the link to start from next time (replacing the previous one).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn put(
        &self,
        tenant: &TenantId,
        stream: DeltaStream,
        link: &str,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The full listing of the users delta under way for `tenant` (R-REC-4), saved with the users
    /// link by [`ReconcileCursors::put_in_full_listing`]; `None` once a plain
    /// [`ReconcileCursors::put`] replaced the link (the round finished, or it is not full).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn full_listing(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<FullListing>>> + Send;

    /// Saves the users link of a full listing that goes on in a later pass, together with the
    /// listing's state, in one write (a link saved without its listing would make the next pass
    /// take the rest of the full listing for an incremental round).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn put_in_full_listing(
        &self,
        tenant: &TenantId,
        link: &str,
        listing: &FullListing,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Saves part number `part` of the bound accounts the full listing `listing` has returned so
    /// far (at most [`SEEN_PART_MAX`] ids), replacing a part of that number written before.
    ///
    /// # Errors
    /// `Invalid` for more than [`SEEN_PART_MAX`] ids; infrastructure failures.
    fn put_seen(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
        part: u32,
        ids: &[M365ObjectId],
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every id of parts `0..listing.parts` of `listing`, or `None` when one of them is gone
    /// (expired, or never written): the listing can then not tell which accounts are missing.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn seen(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
    ) -> impl Future<Output = Result<Option<Vec<M365ObjectId>>>> + Send;
}

/// Most ids in one part of a full listing's seen ids ([`ReconcileCursors::put_seen`]): 16 bytes
/// each when packed, so a part stays far below DynamoDB's 400 KB item limit.
pub const SEEN_PART_MAX: usize = 10_000;

/// A full listing of the users delta (the first round, or the one after Graph lost the delta
/// state) that spans several reconcile passes (R-REC-4): which round it is and how much of what
/// it returned is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FullListing {
    /// When its first page was read (by our clock); names the round.
    pub started_at: DateTime<Utc>,
    /// Parts of seen ids saved so far ([`ReconcileCursors::put_seen`] numbers `0..parts`).
    pub parts: u32,
}

/// One group as a groups delta round reports it (graph-spec §5): its membership changes
/// (`members@delta`, users only; on a full round, every member as added), or its removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembershipChange {
    /// The M365 group's object id.
    pub id: M365ObjectId,
    /// Deleted in M365 (`@removed`).
    pub removed: bool,
    /// Users added (or listed, on a full round).
    pub added: Vec<M365ObjectId>,
    /// Users removed from the group.
    pub dropped: Vec<M365ObjectId>,
}

/// One page of a groups delta round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDeltaPage {
    /// Changed groups (a large group may come on several pages: merge them).
    pub changes: Vec<GroupMembershipChange>,
    /// Next page or the round's final link.
    pub next: DeltaLink,
    /// The saved state was lost (410) and this page starts a full listing.
    pub restarted: bool,
}

/// Groups delta queries with membership (graph-spec §5) for reconcile's group drift (R-REC-1).
/// Implemented by `GraphDirectory` (m365-graph) and [`crate::testing::FakeGroupDeltas`].
pub trait GroupDeltas: Send + Sync {
    /// The page at `link`, or the initial full listing when `link` is `None`.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    fn groups_delta(
        &self,
        tenant: &TenantId,
        link: Option<&str>,
    ) -> impl Future<Output = Result<GroupDeltaPage>> + Send;
}

/// A reconcile plan held by the safeguard (R-REC-3), as stored: the engine's JSON document
/// ([`crate::usecase::held::HeldPlan`]) under its id. Opaque to the adapters, which only key it
/// by tenant and compare ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRecord {
    /// The plan's id (unique per tenant and hold).
    pub plan_id: String,
    /// The plan, as JSON.
    pub body: String,
}

/// How many destructive changes the passes of a delta round applied so far (R-REC-3: the
/// safeguard counts the whole round). Valid only for the pass that starts from the links it
/// names: a pass starting elsewhere begins a new round.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundTally {
    /// The users link the previous pass saved.
    pub users: Option<String>,
    /// The groups link the previous pass saved.
    pub groups: Option<String>,
    /// Blocks, suspensions, removals and group member removals applied by the round so far.
    pub destructive: usize,
}

/// Held reconcile plans, at most one per tenant, and each tenant's round tally (R-REC-3).
/// Implemented by `DynamoHeldPlans` (m365-aws) and [`crate::testing::FakeHeldPlans`].
pub trait HeldPlanStore: Send + Sync {
    /// The tenant's held plan, if any.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn get(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<HeldRecord>>> + Send;

    /// Stores `record` as the tenant's held plan unless one is held already (`false` then,
    /// nothing written).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn hold(
        &self,
        tenant: &TenantId,
        record: &HeldRecord,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Deletes the tenant's held plan if it is still `plan_id` (a conditional delete): `true`
    /// when this call deleted it, `false` when it was gone or another plan is held.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn release(
        &self,
        tenant: &TenantId,
        plan_id: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The tenant's round tally, if a round is under way.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn tally(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<RoundTally>>> + Send;

    /// Replaces the tenant's round tally (`None`: deletes it; the round is over).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn put_tally(
        &self,
        tenant: &TenantId,
        tally: Option<&RoundTally>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The repairs of the tenant's last rejected plan that do not come from the delta (the
    /// engine's JSON document), kept so they are not proposed again until they change.
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn rejected(&self, tenant: &TenantId) -> impl Future<Output = Result<Option<String>>> + Send;

    /// Replaces the tenant's rejected repairs (`None`: deletes them).
    ///
    /// # Errors
    /// Infrastructure failures only.
    fn put_rejected(
        &self,
        tenant: &TenantId,
        body: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// The key signing pagination cursors (R-SAFE-1): read once, then from memory.
pub trait CursorKeys: Send + Sync {
    /// The key.
    ///
    /// # Errors
    /// Infrastructure failures; a secret holding no usable key.
    fn key(&self) -> impl Future<Output = Result<crate::policy::cursor::CursorKey>> + Send;
}

/// A key at hand is its own source (tests, or a caller that read it already).
impl CursorKeys for crate::policy::cursor::CursorKey {
    async fn key(&self) -> Result<crate::policy::cursor::CursorKey> {
        Ok(self.clone())
    }
}

/// Reconcile runs requested through the API (R-OPS-2): one record per run, created when the API
/// accepts it and updated by each of its passes. Implemented by `DynamoReconcileRuns` (ledger
/// table, with a TTL) and [`crate::testing::FakeReconcileRuns`].
pub trait ReconcileRuns: Send + Sync {
    /// Stores a new run.
    ///
    /// # Errors
    /// Store failures; a run with the same id already stored is a conflict.
    fn create(&self, run: &crate::model::ReconcileRun) -> impl Future<Output = Result<()>> + Send;

    /// The run `run` of `tenant`; `None` when unknown or when it belongs to another tenant.
    ///
    /// # Errors
    /// Store failures.
    fn get(
        &self,
        tenant: &TenantId,
        run: &crate::model::RunId,
    ) -> impl Future<Output = Result<Option<crate::model::ReconcileRun>>> + Send;

    /// Replaces the run if its stored version is still `expected` (the stored version becomes
    /// `run.version`); `Ok(false)` when another update came first.
    ///
    /// # Errors
    /// Store failures.
    fn update(
        &self,
        run: &crate::model::ReconcileRun,
        expected: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Licence settings (R-LIC-1): each tenant's settings and each bound group's licences.
/// Implemented by `DynamoLicenseSettings` (tenants table) and
/// [`crate::testing::FakeLicenseSettings`].
pub trait LicenseSettingsStore: Send + Sync {
    /// The tenant's settings; `None` when never configured.
    ///
    /// # Errors
    /// Store failures.
    fn settings(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<crate::model::TenantSettings>>> + Send;

    /// Stores the tenant's settings (last write wins).
    ///
    /// # Errors
    /// Store failures.
    fn put_settings(
        &self,
        settings: &crate::model::TenantSettings,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The group's licences; `None` when it has none.
    ///
    /// # Errors
    /// Store failures.
    fn group_licenses(
        &self,
        group: &crate::model::GroupId,
    ) -> impl Future<Output = Result<Option<crate::model::GroupLicenses>>> + Send;

    /// Stores the group's licences (empty `licenses`: none).
    ///
    /// # Errors
    /// Store failures.
    fn put_group_licenses(
        &self,
        licenses: &crate::model::GroupLicenses,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// How an `assignLicense` went when M365 answered (graph-spec §9.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenseWrite {
    /// Assigned (and removed) as asked.
    Done,
    /// No seat left in a SKU ("… does not have any available licenses"): nothing changed.
    NoSeats {
        /// Graph's `request-id`.
        graph_request_id: Option<String>,
        /// Graph's message.
        message: String,
    },
}

/// M365's licences (graph-spec §9), per tenant: implemented by `GraphDirectory` and by
/// [`crate::testing::FakeLicensing`] (a licence directory with seats).
pub trait LicenseDirectory: Send + Sync {
    /// The SKUs the tenant subscribes to (`GET /subscribedSkus`).
    ///
    /// # Errors
    /// Graph errors.
    fn subscribed_skus(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Vec<crate::model::SubscribedSku>>> + Send;

    /// Sets the account's `usageLocation` (PATCH), which M365 needs before a licence.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`); `Rejected` for a value M365 refuses.
    fn set_usage_location(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        location: &crate::model::UsageLocation,
    ) -> impl Future<Output = Result<()>> + Send;

    /// `assignLicense`: adds `add` (SKU id with disabled plan ids) and removes `remove` (SKU ids).
    /// No seat left is [`LicenseWrite::NoSeats`], not an error.
    ///
    /// # Errors
    /// `NotFound`; `Rejected` (no usage location, unknown SKU); throttling and outages.
    fn assign_licenses(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        add: &[(String, Vec<String>)],
        remove: &[String],
    ) -> impl Future<Output = Result<LicenseWrite>> + Send;
}

/// Every port the use cases are built from, as one bundle: a use case is `Bind<'a, P: Ports>`,
/// built by `Bind::new(&ports)`, instead of one type parameter per port it touches.
///
/// Exactly two implementations exist: the deployed one in `m365-lambda` (DynamoDB, SQS, Secrets
/// Manager, Graph) and the in-memory `testing::World` of the fakes. One adapter may serve several
/// roles (Graph's `Directory` is also the `TenantProbe` and the delta readers), so a bundle
/// returns the same object from several accessors.
pub trait Ports: Send + Sync {
    /// Directory users.
    type Users: UserStore + std::fmt::Debug;
    /// Directory groups.
    type Groups: GroupStore + std::fmt::Debug;
    /// Tenants and domain claims.
    type Tenants: TenantStore + std::fmt::Debug;
    /// Bindings.
    type Bindings: BindingStore + std::fmt::Debug;
    /// Audit events.
    type Events: EventStore + std::fmt::Debug;
    /// Failure diagnostics.
    type Failures: FailureStore + std::fmt::Debug;
    /// The idempotency ledger.
    type Ledger: OperationLedger + std::fmt::Debug;
    /// The retry queue (producer side).
    type Queue: RetryQueue + std::fmt::Debug;
    /// Per-tenant OAuth tokens.
    type Vault: TokenVault + std::fmt::Debug;
    /// Password sealing.
    type Sealer: Sealer + std::fmt::Debug;
    /// M365, per tenant.
    type Directory: Directory + std::fmt::Debug;
    /// Which Microsoft tenant a just-issued token belongs to (R-CONN-7).
    type Probe: TenantProbe + std::fmt::Debug;
    /// Welcome notifications.
    type Notifier: Notifier + std::fmt::Debug;
    /// The identity platform (consent, code and refresh-token redemption).
    type Identity: IdentityPlatform + std::fmt::Debug;
    /// OAuth sign-ins under way.
    type Consents: PendingConsents + std::fmt::Debug;
    /// Single-flight leases.
    type Leases: Leases + std::fmt::Debug;
    /// M365 user changes since a cursor.
    type UserDeltas: UserDeltas + std::fmt::Debug;
    /// M365 group membership changes since a cursor.
    type GroupDeltas: GroupDeltas + std::fmt::Debug;
    /// Reconcile's delta cursors.
    type Cursors: ReconcileCursors + std::fmt::Debug;
    /// The key signing pagination cursors.
    type CursorKeys: CursorKeys + std::fmt::Debug;
    /// Time.
    type Clock: Clock + std::fmt::Debug;
    /// Jitter and generated passwords.
    type Random: Random + std::fmt::Debug;
    /// Licence settings (R-LIC-1).
    type LicenseSettings: LicenseSettingsStore + std::fmt::Debug;
    /// M365's licences (R-LIC-1).
    type Licensing: LicenseDirectory + std::fmt::Debug;
    /// Email delivery (R-NOT-1).
    type Mailer: Mailer + std::fmt::Debug;
    /// Reconcile runs requested through the API (R-OPS-2).
    type Runs: ReconcileRuns + std::fmt::Debug;
    /// Admin alerts (R-OPS-1).
    type Alerts: AdminAlerts + std::fmt::Debug;
    /// Open alert incidents (R-OPS-1: once per incident).
    type AlertIncidents: AlertIncidents + std::fmt::Debug;
    /// Held reconcile plans (R-REC-3).
    type HeldPlans: HeldPlanStore + std::fmt::Debug;

    /// Directory users.
    fn users(&self) -> &Self::Users;
    /// Directory groups.
    fn groups(&self) -> &Self::Groups;
    /// Tenants and domain claims.
    fn tenants(&self) -> &Self::Tenants;
    /// Bindings.
    fn bindings(&self) -> &Self::Bindings;
    /// Audit events.
    fn events(&self) -> &Self::Events;
    /// Failure diagnostics.
    fn failures(&self) -> &Self::Failures;
    /// The idempotency ledger.
    fn ledger(&self) -> &Self::Ledger;
    /// The retry queue.
    fn queue(&self) -> &Self::Queue;
    /// Per-tenant OAuth tokens.
    fn vault(&self) -> &Self::Vault;
    /// Password sealing.
    fn sealer(&self) -> &Self::Sealer;
    /// M365.
    fn directory(&self) -> &Self::Directory;
    /// The tenant probe.
    fn probe(&self) -> &Self::Probe;
    /// Welcome notifications.
    fn notifier(&self) -> &Self::Notifier;
    /// The identity platform.
    fn identity(&self) -> &Self::Identity;
    /// OAuth sign-ins under way.
    fn consents(&self) -> &Self::Consents;
    /// Single-flight leases.
    fn leases(&self) -> &Self::Leases;
    /// M365 user changes.
    fn user_deltas(&self) -> &Self::UserDeltas;
    /// M365 group membership changes.
    fn group_deltas(&self) -> &Self::GroupDeltas;
    /// Reconcile's delta cursors.
    fn cursors(&self) -> &Self::Cursors;
    /// The key signing pagination cursors.
    fn cursor_keys(&self) -> &Self::CursorKeys;
    /// Time.
    fn clock(&self) -> &Self::Clock;
    /// Jitter and generated passwords.
    fn random(&self) -> &Self::Random;
    /// How failed operations are retried.
    fn retry_policy(&self) -> &crate::usecase::RetryPolicy;
    /// The directory password policy (length, classes, maximum age).
    fn password_policy(&self) -> &crate::policy::password::DirectoryPasswordPolicy;
    /// Licence settings.
    fn license_settings(&self) -> &Self::LicenseSettings;
    /// M365's licences.
    fn licensing(&self) -> &Self::Licensing;
    /// Who asks (R-AUD-1): the request's principal, `local` on the local stack, `schedule` for
    /// scheduled work. Every event the use cases write names it.
    fn actor(&self) -> &crate::model::Actor;
    /// Email delivery.
    fn mailer(&self) -> &Self::Mailer;
    /// Reconcile runs requested through the API.
    fn runs(&self) -> &Self::Runs;
    /// Admin alerts.
    fn alerts(&self) -> &Self::Alerts;
    /// Open alert incidents.
    fn alert_incidents(&self) -> &Self::AlertIncidents;
    /// Held reconcile plans.
    fn held_plans(&self) -> &Self::HeldPlans;
}
