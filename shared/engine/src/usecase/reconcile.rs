//! Reconcile one tenant (DESIGN §4 "reconcile"): read the users delta since the saved link (a full
//! listing on the first run or after Graph lost the state), plan the repairs of the drift it shows,
//! check the safeguard, then apply the plan (or return it on a dry run) and save the new link.
//!
//! Drift repaired (R-REC-1): a `blocked` or `suspended` user enabled in M365 is blocked again and its
//! sessions revoked (R-BIND-9); a `provisioned` user found disabled in the directory (its suspension
//! never ran) is suspended (`directory_disabled`); a
//! `provisioned` user's attributes changed in M365 are overwritten with the directory's; a password
//! changed in M365 after our last push is overwritten with the sealed directory password
//! (`user_password_update_provision`, R-PWD-3); an account deleted in M365 turns the binding into
//! `deleted_in_m365` (R-BIND-8); a `provisioned` user with a `managerId` whose manager is bound in
//! the tenant, reported by the delta (`manager@delta`) with another manager, gets the directory's
//! manager set again (`set_manager`, R-ATTR-1; [`super::manager`]). The password-expiry sweep (R-PWD-4) suspends `provisioned` users
//! whose directory password is older than the policy's maximum age (`user_deprovision`, reason
//! `password_expired`, binding `suspended` with `suspendedReason: password_expired`);
//! [`super::password::SetPassword`] re-enables them.
//!
//! A dry run reads but writes nothing: no Graph write, no store write, no cursor (R-REC-2). A pass
//! is planned ([`Reconcile::plan_pass`]) before it is applied ([`Reconcile::apply_pass`]): the
//! deployed path, [`super::reconcile_pass::ReconcilePass`], counts the safeguard (R-REC-3) over the
//! whole round, group member removals included, and holds a tripped pass's plan for an admin
//! ([`super::held`]). [`Reconcile::run`] alone (one users pass, no groups, no round) checks the
//! same threshold against the pass and, tripped, records `reconcile_safeguard_tripped` and writes
//! nothing, without holding. A trip also alerts the admins (`safeguard_tripped`, with the number
//! of changes held) once per incident (R-OPS-1, `usecase::alerts`); a pass applied within the
//! safeguard, or an admin's decision on the held plan, ends the incident.
//!
//! Graph cost grows with the changes (R-REC-1, DESIGN §5): the delta pages plus one write per
//! repair. Store reads are per bound user only for the expiry sweep (DynamoDB, not Graph). One
//! invocation reads at most [`ReconcileSettings::max_pages`] delta pages; when the round is longer
//! it applies what it read, saves the round's next-page link and reports `complete: false`, so the
//! next pass resumes where it stopped and no invocation runs long (the passes are chained through
//! the reconcile queue, see [`super::reconcile_queue`]).
//!
//! A full listing (the first round, or the one after Graph answered 410 to the saved link) does
//! not report deletions: it simply omits deleted accounts (graph-spec §5). So when a full listing
//! completes, the bindings that expect an account (`provisioned`, `blocked`, `suspended`, and
//! `pending`/`error` with an object id, none with an operation in flight — that operation meets
//! the deletion itself) are compared with every id the listing returned; the missing ones are
//! planned as `mark_deleted` (`missingFromListing: true`), counted by the safeguard, and each is
//! looked up once more (`GET /users/{id}`) before its binding becomes `deleted_in_m365` (R-REC-4,
//! R-BIND-8). A listing of several passes saves the bound ids each pass saw
//! ([`ReconcileCursors::put_seen`], in parts of at most [`SEEN_PART_MAX`]) before it saves the
//! next-page link together with the listing's start ([`ReconcileCursors::put_in_full_listing`]);
//! the last pass reads them back. If a part is gone nothing is marked. Replication lag: an
//! account bound shortly before or during the listing may be missing from it legitimately, so a
//! binding whose user has a provisioning event later than the listing's start less
//! [`ReconcileSettings::listing_lag`] is never taken for deleted.
//!
//! A `blocked` or `suspended` binding without an object id (what an unbind racing an in-flight
//! bind can leave, R-BIND-12) is looked up by UPN, at most
//! [`ReconcileSettings::max_account_lookups`] per pass: an account that a bind of this user
//! created or adopted (its provisioning event names it) is blocked if enabled (`block`) or linked
//! if disabled (`link_account`), so later rounds watch it; otherwise (no account, or one an admin
//! made by hand) nothing changes and the binding records that it was looked up
//! ([`Binding::account_lookup_version`]) until it changes again.
//!
//! Each pass also reports the binds and unbinds stuck without a queued retry (R-REC-5,
//! [`super::stuck`]) for its caller to re-queue.
//!
//! Privileged accounts (R-BIND-11): when a pass plans writes to M365, it reads the tenant's
//! privileged accounts once (every directory role holder and the connection's consenting admin;
//! one read plus one per activated role, see [`super::privilege`]) and a repair that would write
//! to one whose binding was not adopted with `adoptPrivileged` is not applied: the plan entry says
//! `skipped: privileged_account` (with why), a failure is recorded, the safeguard does not count
//! it, and the cursor still moves. A pass without writes reads nothing more.
//!
//! Delta items carry "at least the changed properties" (graph-spec §5); an attribute cleared in
//! M365 comes as JSON `null` ([`UserChange`] keeps it as `Some(None)`), which is drift when the
//! directory has a value and nothing when both are empty. Of several items for one user in a
//! round the later wins, property by property, an explicit `null` included.
//!
//! Our own repairs show up in the next round: a re-blocked or patched user then matches and needs
//! nothing. A password we write moves `lastPasswordChangeDateTime` too. After each password write
//! (bind create, push, overwrite here) M365's new stamp is read back and kept on the binding
//! ([`Binding::m365_password_changed_at`]); a change counts as M365's only when M365 reports a
//! later stamp — M365 time against M365 time, immune to skew between our clock and M365's.
//! Bindings without a stamp (written before it existed, adopted accounts, or a read-back that
//! failed; see [`super::password::read_back_password_change`]) keep the clock rule: the change
//! must be later than our last push (the newest `user_create_provision` or
//! `user_password_update_provision` event of the user) plus [`ReconcileSettings::push_grace`]
//! (clock skew and Graph latency); a change made in M365 within that grace after our push is not
//! seen, and a skew larger than the grace makes our own push look like M365's (overwritten once,
//! then stamped). Events are kept 90 days: a user whose last push is older is overwritten once
//! more, which records a fresh event (and a stamp) and is stable from then on.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{
    AlertKind, Binding, BindingState, DirectoryUser, Event, EventId, EventKind, Failure,
    M365ObjectId, M365UserPatch, OperationId, OperationKind, OperationSubject, PageRequest,
    SuspendedReason, TenantId, UserId, UserState,
};
use crate::policy::password::DirectoryPasswordPolicy;
use crate::policy::safeguard::Safeguard;
use crate::ports::Ports;
use crate::ports::{
    BindingStore, Clock, DeltaLink, DeltaStream, Directory, EventFilter, EventQuery, EventStore,
    Expect, FailureStore, FullListing, ReconcileCursors, SEEN_PART_MAX, Sealer, UserChange,
    UserDeltas, UserStore,
};

use super::held::HeldRepair;
use super::manager::{WantedManager, wanted_manager};
use super::password::read_back_password_change;
use super::privilege::PrivilegedAccounts;
use super::stuck::{StuckSettings, StuckWork, find_stuck};
use super::{failure_id, is_m365_not_found};

/// How a reconcile run behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileSettings {
    /// The most users one delta round may block, suspend or remove, group member removals
    /// included (R-REC-3): `10%` of the tenant's bound users (the default) or a number.
    pub safeguard: Safeguard,
    /// Delta pages read by one invocation before it applies and saves its place.
    pub max_pages: u32,
    /// The directory password policy (R-PWD-4): its maximum age decides which passwords expired
    /// ([`DirectoryPasswordPolicy::is_expired`], the one rule every function applies); no maximum
    /// age: passwords never expire.
    pub password_policy: DirectoryPasswordPolicy,
    /// Whether this run sweeps expired passwords when the policy has a maximum age (the sweep
    /// reads every provisioned user; the reconcile function sweeps on a round's first pass only).
    pub sweep_expiry: bool,
    /// How much later than our last push an M365 password change must be to count as M365's
    /// (the clock rule, used only for bindings without a read-back stamp).
    pub push_grace: TimeDelta,
    /// How long before a full listing began an account must have been bound for its absence
    /// from the listing to count as a deletion (R-REC-4): covers Graph's replication lag and a
    /// bind that was running when the listing began.
    pub listing_lag: TimeDelta,
    /// When a bind or unbind in flight counts as stuck, and how many are re-queued per pass
    /// (R-REC-5).
    pub stuck: StuckSettings,
    /// Most UPN lookups of `blocked`/`suspended` bindings without an object id per pass
    /// (R-BIND-12).
    pub max_account_lookups: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            safeguard: Safeguard::default(),
            max_pages: 50,
            password_policy: DirectoryPasswordPolicy::default(),
            sweep_expiry: true,
            push_grace: TimeDelta::minutes(2),
            listing_lag: TimeDelta::minutes(15),
            stuck: StuckSettings::default(),
            max_account_lookups: 20,
        }
    }
}

/// What a planned repair does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    /// A `blocked`/`suspended` user enabled in M365: block sign-in again.
    Block,
    /// M365 attributes differ from the directory's: overwrite them.
    UpdateAttributes,
    /// The password was changed in M365: overwrite it with the directory password.
    OverwritePassword,
    /// The account was deleted in M365: the binding becomes `deleted_in_m365`.
    MarkDeleted,
    /// The directory password expired: suspend sign-in (binding `suspended`).
    SuspendExpired,
    /// The user is disabled in the directory but its binding is still `provisioned` (the
    /// suspension was lost): block sign-in, revoke sessions, binding `suspended` (R-BIND-9).
    SuspendDisabled,
    /// A `blocked`/`suspended` binding without an object id whose account (ours, found by UPN)
    /// is disabled already: record the object id so later rounds watch it (R-BIND-12).
    LinkAccount,
    /// M365 reports another manager (`manager@delta`) than the bound account of the directory's
    /// `managerId`: set that one again (R-ATTR-1).
    SetManager,
}

impl RepairKind {
    /// The snake_case name (plan output, event reasons).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::UpdateAttributes => "update_attributes",
            Self::OverwritePassword => "overwrite_password",
            Self::MarkDeleted => "mark_deleted",
            Self::SuspendExpired => "suspend_expired",
            Self::SuspendDisabled => "suspend_disabled",
            Self::LinkAccount => "link_account",
            Self::SetManager => "set_manager",
        }
    }

    /// Whether the safeguard counts it (it blocks or removes a user, R-REC-3).
    #[must_use]
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Self::Block | Self::MarkDeleted | Self::SuspendExpired | Self::SuspendDisabled
        )
    }

    /// Whether it writes to the M365 account (everything but marking a deletion, R-BIND-11).
    #[must_use]
    pub fn writes_m365(self) -> bool {
        !matches!(self, Self::MarkDeleted)
    }

    fn event(self) -> Option<(EventKind, &'static str)> {
        match self {
            Self::Block => Some((EventKind::UserDeprovision, "reconcile_blocked_again")),
            Self::UpdateAttributes => {
                Some((EventKind::UserUpdateProvision, "reconcile_attributes"))
            }
            Self::OverwritePassword => Some((
                EventKind::UserPasswordUpdateProvision,
                "reconcile_password_overwritten",
            )),
            Self::SuspendExpired => Some((EventKind::UserDeprovision, "password_expired")),
            Self::SuspendDisabled => Some((EventKind::UserDeprovision, "directory_disabled")),
            Self::SetManager => Some((EventKind::UserUpdateProvision, "reconcile_manager")),
            Self::MarkDeleted | Self::LinkAccount => None,
        }
    }
}

/// One planned repair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repair {
    /// What it does.
    pub kind: RepairKind,
    /// The directory user.
    pub user_id: UserId,
    /// The M365 account.
    pub m365_object_id: M365ObjectId,
    /// For attribute drift: the attributes overwritten.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<&'static str>,
    #[serde(skip)]
    patch: M365UserPatch,
    /// For a password overwrite: the M365 change being overwritten (its stamp).
    #[serde(skip)]
    m365_password_change: Option<DateTime<Utc>>,
    /// Set when the repair is not applied: `privileged_account` — the account holds a directory
    /// role or consented the connection, and its binding was not adopted with `adoptPrivileged`
    /// (R-BIND-11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
    /// Why it was skipped, in words (also the recorded failure's message).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_why: Option<String>,
    /// For `mark_deleted`: the account was not in a complete full listing (R-REC-4), rather than
    /// reported removed by the delta; it is looked up once more before the binding is marked.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub missing_from_listing: bool,
    /// For `set_manager`: the manager's account to set (R-ATTR-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager: Option<M365ObjectId>,
}

/// Why a run stopped before writing (R-REC-3).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SafeguardTrip {
    /// Users the plan would block, suspend or remove.
    pub destructive: usize,
    /// The tenant's bound users.
    pub bound: usize,
    /// The threshold (`10%` or `500`).
    pub threshold: Safeguard,
    /// The most destructive changes the threshold allows the round in this tenant.
    pub allowed: usize,
    /// Group member removals the pass would make (counted with `destructive`).
    #[serde(default)]
    pub group_removals: usize,
    /// Destructive changes applied by the round's earlier passes (counted too).
    #[serde(default)]
    pub earlier: usize,
    /// The round's count: `earlier + destructive + groupRemovals`, more than `allowed`.
    pub round_total: usize,
}

/// What a run found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Nothing was written (R-REC-2).
    pub dry_run: bool,
    /// This run listed every user (first run, or Graph lost the delta state).
    pub full_sync: bool,
    /// Delta pages read.
    pub pages: u32,
    /// The delta round finished; `false`: the next run resumes where this one stopped.
    pub complete: bool,
    /// The tenant's bound users (the safeguard's base).
    pub bound: usize,
    /// The repairs planned.
    pub plan: Vec<Repair>,
    /// Set when the safeguard stopped the run.
    pub safeguard: Option<SafeguardTrip>,
    /// Repairs applied.
    pub applied: usize,
    /// Repairs that failed (recorded in the failures list); a retryable one keeps the cursor.
    pub failed: usize,
    /// Repairs not applied because the account is privileged (R-BIND-11; each recorded in the
    /// failures list as `privileged_account`).
    #[serde(default)]
    pub skipped: usize,
    /// Binds and unbinds in flight with no retry on its way (R-REC-5): the caller re-queues them
    /// ([`super::stuck::RequeueStuck`]) unless this is a dry run or the safeguard stopped it.
    pub stuck: Vec<StuckWork>,
    /// UPN lookups of `blocked`/`suspended` bindings without an object id made by this pass
    /// (R-BIND-12).
    pub account_lookups: usize,
}

impl ReconcileReport {
    /// The report of a writing pass that did nothing because a plan is held (R-REC-3).
    #[must_use]
    pub fn held(tenant: &TenantId) -> Self {
        Self {
            tenant_id: tenant.clone(),
            dry_run: false,
            full_sync: false,
            pages: 0,
            complete: false,
            bound: 0,
            plan: Vec::new(),
            safeguard: None,
            applied: 0,
            failed: 0,
            skipped: 0,
            stuck: Vec::new(),
            account_lookups: 0,
        }
    }
}

use_case! {
    /// The reconcile use case.
    pub struct Reconcile {
        ports: [
            bindings: Bindings, events: Events, failures: Failures, users: Users,
            directory: Directory, sealer: Sealer, deltas: UserDeltas = user_deltas,
            cursors: Cursors, clock: Clock
        ],
        built: [
            /// Admin alerts: a trip alerts `safeguard_tripped` once per incident (R-OPS-1).
            alerting: super::alerts::Alerting<'a, P> = super::alerts::Alerting::new,
        ],
        extra: [
            /// Behaviour.
            settings: &'a ReconcileSettings,
        ],
    }
}

/// What the delta round of one invocation gave.
#[derive(Debug)]
struct Round {
    changes: BTreeMap<M365ObjectId, UserChange>,
    /// This pass began a full listing (no saved link, or Graph lost the state: 410).
    full: bool,
    pages: u32,
    /// The link to save after applying: the final link, or the next page's.
    save: Option<String>,
    complete: bool,
}

/// A users pass read and planned, not applied yet: what [`Reconcile::apply_pass`] (or a held
/// plan, [`super::held`]) needs.
#[derive(Debug)]
pub(crate) struct UsersPass {
    /// The plan (nothing applied yet).
    pub(crate) report: ReconcileReport,
    /// The link the pass started from (`None`: a full listing from scratch).
    pub(crate) start: Option<String>,
    round: Round,
    listing: Option<FullListing>,
    pub(crate) bindings: Vec<Binding>,
    pub(crate) users: HashMap<UserId, DirectoryUser>,
    seen: Vec<M365ObjectId>,
    none_found: Vec<Binding>,
}

impl UsersPass {
    /// The repairs the safeguard counts: blocks, suspensions and removals not skipped.
    pub(crate) fn destructive(&self) -> usize {
        self.report
            .plan
            .iter()
            .filter(|r| r.kind.is_destructive() && r.skipped.is_none())
            .count()
    }

    /// The link a pass after this one starts from, once it is saved.
    pub(crate) fn next_link(&self) -> Option<&str> {
        self.round.save.as_deref()
    }

    /// Drops the repairs an admin rejected (R-REC-3) that do not come from this round's delta
    /// (the expiry sweep, account lookups) and whose binding and user have not changed since;
    /// answers how many were dropped.
    pub(crate) fn drop_rejected(&mut self, rejected: &[super::held::RejectedRepair]) -> usize {
        if rejected.is_empty() {
            return 0;
        }
        let before = self.report.plan.len();
        let (changes, bindings, users) = (&self.round.changes, &self.bindings, &self.users);
        self.report.plan.retain(|repair| {
            if changes.contains_key(&repair.m365_object_id) {
                return true;
            }
            let binding = bindings.iter().find(|b| b.user_id == repair.user_id);
            let user_version = users.get(&repair.user_id).map(|u| u.version);
            !rejected.iter().any(|r| {
                r.kind == repair.kind
                    && r.user_id == repair.user_id
                    && binding.is_some_and(|b| b.version == r.binding_version)
                    && r.user_version == user_version
            })
        });
        before - self.report.plan.len()
    }

    /// What a held plan keeps to move the cursor past this pass later: the seen ids of an
    /// unfinished full listing are saved now (our bookkeeping, not a repair).
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn hold<P: Ports>(
        &self,
        reconcile: &Reconcile<'_, P>,
        tenant: &TenantId,
    ) -> Result<Option<UsersResume>> {
        reconcile
            .save_seen(
                tenant,
                self.listing,
                self.round.complete,
                self.round.save.as_deref(),
                &self.seen,
            )
            .await
    }
}

/// How the users cursor moves past a pass (kept by a held plan until it is decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum UsersResume {
    /// Save this link (a finished round's, or an incremental round's next page).
    Link {
        /// The link.
        link: String,
    },
    /// Save this next-page link of a full listing, with the listing's state (R-REC-4).
    FullListing {
        /// The link.
        link: String,
        /// When the listing began.
        started_at: DateTime<Utc>,
        /// Parts of seen ids saved.
        parts: u32,
    },
}

/// What became of one repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Written.
    Done,
    /// Not applied: a privileged account (recorded as a failure).
    Skipped,
    /// An account missing from a full listing was found: nothing to do.
    StillThere,
    /// Failed (recorded); `hold`: the cursor should not move past it.
    Failed {
        /// Retryable or a conflict.
        hold: bool,
        /// Retryable (throttled, unavailable, the deadline): worth trying again soon.
        retryable: bool,
    },
}

impl Repair {
    /// The repair as a held plan keeps it, with the versions it was planned against.
    pub(crate) fn to_held(&self, binding_version: u64, user_version: Option<u64>) -> HeldRepair {
        HeldRepair {
            kind: self.kind,
            user_id: self.user_id.clone(),
            m365_object_id: self.m365_object_id.clone(),
            attributes: self.attributes.iter().map(|a| (*a).to_owned()).collect(),
            skipped: self.skipped.map(str::to_owned),
            skipped_why: self.skipped_why.clone(),
            missing_from_listing: self.missing_from_listing,
            manager: self.manager.clone(),
            m365_password_change: self.m365_password_change,
            binding_version,
            user_version,
        }
    }

    /// A held repair to apply again, with the attribute patch computed now.
    pub(crate) fn from_held(held: &HeldRepair, patch: M365UserPatch) -> Self {
        Self {
            kind: held.kind,
            user_id: held.user_id.clone(),
            m365_object_id: held.m365_object_id.clone(),
            attributes: Vec::new(),
            patch,
            m365_password_change: held.m365_password_change,
            skipped: match held.skipped.as_deref() {
                Some(_) => Some("privileged_account"),
                None => None,
            },
            skipped_why: held.skipped_why.clone(),
            missing_from_listing: held.missing_from_listing,
            manager: held.manager.clone(),
        }
    }
}

/// Folds a later item for the same user into an earlier one: what the later reports wins, a
/// reported `null` (`Some(None)`) included; what it does not report keeps the earlier value.
fn merge(into: &mut UserChange, later: UserChange) {
    fn keep<T>(slot: &mut Option<T>, later: Option<T>) {
        if later.is_some() {
            *slot = later;
        }
    }
    into.removed = later.removed;
    keep(&mut into.display_name, later.display_name);
    keep(&mut into.given_name, later.given_name);
    keep(&mut into.surname, later.surname);
    keep(&mut into.job_title, later.job_title);
    keep(&mut into.department, later.department);
    into.attributes.merge(later.attributes);
    keep(&mut into.account_enabled, later.account_enabled);
    keep(&mut into.last_password_change, later.last_password_change);
    keep(&mut into.manager, later.manager);
}

/// The attributes M365 reports differently from the directory (only those reported): a reported
/// `null` restores the directory's value when it has one; both empty is no drift.
fn attribute_patch(
    user: &DirectoryUser,
    change: &UserChange,
) -> (M365UserPatch, Vec<&'static str>) {
    let mut patch = M365UserPatch::default();
    let mut names = Vec::new();
    if change
        .display_name
        .as_ref()
        .is_some_and(|d| d != &user.display_name)
    {
        patch.display_name = Some(user.display_name.clone());
        names.push("displayName");
    }
    let mut field = |reported: &Option<Option<String>>,
                     want: &Option<String>,
                     slot: &mut Option<Option<String>>,
                     name| {
        if let Some(have) = reported
            && have != want
        {
            *slot = Some(want.clone());
            names.push(name);
        }
    };
    field(
        &change.given_name,
        &user.given_name,
        &mut patch.given_name,
        "givenName",
    );
    field(
        &change.surname,
        &user.surname,
        &mut patch.surname,
        "surname",
    );
    field(
        &change.job_title,
        &user.job_title,
        &mut patch.job_title,
        "jobTitle",
    );
    field(
        &change.department,
        &user.department,
        &mut patch.department,
        "department",
    );
    // R-ATTR-1
    let (attributes, drifted) = user.attributes.repair(&change.attributes);
    patch.attributes = attributes;
    names.extend(drifted);
    (patch, names)
}

/// A binding that still points at a live account we manage.
fn is_bound(binding: &Binding) -> bool {
    !matches!(
        binding.state,
        BindingState::Unselected | BindingState::DeletedInM365
    )
}

/// A binding whose account must exist in M365 and that no operation is acting on (an operation
/// in flight meets a deleted account itself): an absence from a full listing means a deletion
/// (R-REC-4). `pending` and `error` with an object id count: their account was found or made.
fn expects_account(binding: &Binding) -> bool {
    binding.m365_object_id.is_some()
        && binding.in_flight.is_none()
        && matches!(
            binding.state,
            BindingState::Provisioned
                | BindingState::Blocked
                | BindingState::Suspended
                | BindingState::Pending
                | BindingState::Error
        )
}

/// A binding that says sign-in is blocked but does not know its account (e.g. an unbind that
/// raced an in-flight bind, R-BIND-12), not looked up since its last change.
fn needs_account_lookup(binding: &Binding) -> bool {
    binding.m365_object_id.is_none()
        && binding.in_flight.is_none()
        && matches!(
            binding.state,
            BindingState::Blocked | BindingState::Suspended
        )
        && binding.account_lookup_version != Some(binding.version)
}

/// The bound accounts (object ids of the tenant's bindings) that this pass's delta pages
/// returned as present.
fn seen_bound(round: &Round, bindings: &[Binding]) -> Vec<M365ObjectId> {
    bindings
        .iter()
        .filter_map(|b| b.m365_object_id.as_ref())
        .filter(|id| round.changes.get(*id).is_some_and(|c| !c.removed))
        .cloned()
        .collect()
}

/// What the lookups of bindings without an object id found (R-BIND-12).
#[derive(Default)]
struct Lookups {
    /// `block` (ours, enabled) or `link_account` (ours, disabled).
    repairs: Vec<Repair>,
    /// Looked up, no account of ours: marked so they are not looked up again until they change.
    none_found: Vec<Binding>,
    /// Lookups made.
    made: usize,
}

fn is_provisioning(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::UserCreateProvision | EventKind::UserUpdateProvision
    )
}

/// Most pages of a user's events read to decide about one account (50 events each).
const EVENT_PAGES: usize = 4;

impl<P: Ports> Reconcile<'_, P> {
    /// Reconciles `tenant` once: delta → plan → safeguard → apply (unless `dry_run`) → save link.
    ///
    /// # Errors
    /// Delta and store read failures (nothing is saved then; the next run starts from the same
    /// link). Failures of single repairs are recorded and counted instead.
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile", tenant.id = %tenant, dry_run))]
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<ReconcileReport> {
        let result = self.run_once(tenant, dry_run).await;
        match &result {
            Ok(r) => tracing::info!(
                full_sync = r.full_sync,
                pages = r.pages,
                complete = r.complete,
                planned = r.plan.len(),
                applied = r.applied,
                failed = r.failed,
                safeguard_tripped = r.safeguard.is_some(),
                stuck = r.stuck.len(),
                account_lookups = r.account_lookups,
                "reconcile finished"
            ),
            Err(e) => tracing::warn!(
                error.code = e.code(),
                error.retryable = e.is_retryable(),
                "reconcile not done"
            ),
        }
        result
    }

    async fn run_once(&self, tenant: &TenantId, dry_run: bool) -> Result<ReconcileReport> {
        let mut pass = self.plan_pass(tenant, dry_run).await?;
        let destructive = pass.destructive();
        let allowed = self.settings.safeguard.allowed(pass.report.bound);
        if destructive > allowed {
            let trip = SafeguardTrip {
                destructive,
                bound: pass.report.bound,
                threshold: self.settings.safeguard,
                allowed,
                group_removals: 0,
                earlier: 0,
                round_total: destructive,
            };
            if !dry_run {
                self.record_trip(tenant, pass.start.as_deref(), &trip, None)
                    .await?;
            }
            pass.report.safeguard = Some(trip);
            return Ok(pass.report);
        }
        if dry_run {
            return Ok(pass.report);
        }
        Ok(self.apply_pass(tenant, pass).await?.0)
    }

    /// Reads this pass's delta pages and plans the repairs, writing nothing (R-REC-2): the
    /// safeguard's check and the writes are the caller's ([`Self::apply_pass`]).
    pub(crate) async fn plan_pass(&self, tenant: &TenantId, dry_run: bool) -> Result<UsersPass> {
        let start = self.cursors.get(tenant, DeltaStream::Users).await?;
        // A full listing that an earlier pass began goes on from a next-page link (R-REC-4).
        let going_on = match start {
            Some(_) => self.cursors.full_listing(tenant).await?,
            None => None,
        };
        let began = self.clock.now();
        let round = self.read_delta(tenant, start.as_deref()).await?;
        let listing = if round.full {
            Some(FullListing {
                started_at: began,
                parts: 0,
            })
        } else {
            going_on
        };
        let bindings = self.bindings_of(tenant).await?;
        let bound = bindings.iter().filter(|b| is_bound(b)).count();
        let (mut plan, users) = self.plan(&round, &bindings).await?;
        let seen = seen_bound(&round, &bindings);
        if let Some(listing) = &listing
            && round.complete
        {
            plan.extend(
                self.missing_from_listing(tenant, listing, &round, &seen, &bindings)
                    .await?,
            );
        }
        let lookups = self.account_lookups(tenant, &bindings).await?;
        plan.extend(lookups.repairs);
        self.skip_privileged(tenant, &mut plan, &bindings).await?;
        let report = ReconcileReport {
            tenant_id: tenant.clone(),
            dry_run,
            full_sync: listing.is_some(),
            pages: round.pages,
            complete: round.complete,
            bound,
            plan,
            safeguard: None,
            applied: 0,
            failed: 0,
            skipped: 0,
            stuck: find_stuck(&bindings, self.clock.now(), &self.settings.stuck),
            account_lookups: lookups.made,
        };
        Ok(UsersPass {
            report,
            start,
            round,
            listing,
            bindings,
            users,
            seen,
            none_found: lookups.none_found,
        })
    }

    /// Applies a planned pass (the safeguard let it through) and saves the link past it;
    /// answers the report and whether the link was saved (a retryable failure, or a conflict,
    /// keeps the cursor so the next pass reads the same pages again).
    ///
    /// # Errors
    /// Store failures while recording or saving.
    pub(crate) async fn apply_pass(
        &self,
        tenant: &TenantId,
        pass: UsersPass,
    ) -> Result<(ReconcileReport, bool)> {
        let UsersPass {
            mut report,
            start,
            round,
            listing,
            bindings,
            users,
            seen,
            none_found,
        } = pass;
        // Applied: within the safeguard, so any safeguard incident of the tenant is over.
        self.safeguard_passed(tenant).await;
        let by_user: HashMap<&UserId, &Binding> =
            bindings.iter().map(|b| (&b.user_id, b)).collect();
        let run_key = start.as_deref().unwrap_or("full");
        let mut hold_cursor = false;
        for repair in &report.plan {
            let Some(binding) = by_user.get(&repair.user_id) else {
                continue;
            };
            match self
                .apply_repair(tenant, run_key, repair, binding, users.get(&repair.user_id))
                .await?
            {
                Applied::Done => report.applied += 1,
                Applied::Skipped => report.skipped += 1,
                Applied::StillThere => {}
                Applied::Failed { hold, .. } => {
                    report.failed += 1;
                    hold_cursor |= hold;
                }
            }
        }
        self.mark_looked_up(&none_found).await;
        let mut saved = false;
        if !hold_cursor
            && let Some(resume) = self
                .save_seen(
                    tenant,
                    listing,
                    round.complete,
                    round.save.as_deref(),
                    &seen,
                )
                .await?
        {
            self.resume(tenant, &resume).await?;
            saved = true;
        }
        Ok((report, saved))
    }

    /// Applies one repair (a privileged account's is recorded as a failure instead, R-BIND-11; an
    /// account missing from a full listing is looked at once more first, R-REC-4).
    ///
    /// # Errors
    /// Store failures while recording; a repair's own failure is recorded and answered as
    /// [`Applied::Failed`].
    pub(crate) async fn apply_repair(
        &self,
        tenant: &TenantId,
        run_key: &str,
        repair: &Repair,
        binding: &Binding,
        user: Option<&DirectoryUser>,
    ) -> Result<Applied> {
        if let Some(code) = repair.skipped {
            tracing::info!(user.id = %repair.user_id, repair = repair.kind.as_str(), error.code = code, "repair skipped");
            let why = repair.skipped_why.clone().unwrap_or_default();
            let refused = Error::Conflict(crate::error::Conflict::PrivilegedAccount {
                account: repair.m365_object_id.to_string(),
                why,
            });
            self.record_failure(tenant, repair, &refused).await?;
            return Ok(Applied::Skipped);
        }
        // An account missing from a full listing is looked at once more before its binding
        // is marked: a paging anomaly or a restore during the round must not end our watch
        // over a live account (R-REC-4).
        let gone = if repair.missing_from_listing {
            self.directory
                .get_user(tenant, &repair.m365_object_id)
                .await
                .map(|found| found.is_none())
        } else {
            Ok(true)
        };
        let result = match gone {
            Ok(true) => self.apply(tenant, run_key, repair, binding, user).await,
            Ok(false) => {
                tracing::info!(user.id = %repair.user_id, "account missing from the full listing is still there: left alone");
                return Ok(Applied::StillThere);
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => Ok(Applied::Done),
            Err(e) => {
                let retryable = e.is_retryable();
                let hold = retryable || matches!(e, Error::Conflict(_));
                self.record_failure(tenant, repair, &e).await?;
                Ok(Applied::Failed { hold, retryable })
            }
        }
    }

    /// Saves the seen ids of an unfinished full listing (R-REC-4) and answers what moves the
    /// users cursor past this pass (`None`: nothing to save). Seen ids first, then (in
    /// [`Self::resume`]) the link that moves past them: a crash in between re-reads the same
    /// pages and rewrites the same part numbers.
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn save_seen(
        &self,
        tenant: &TenantId,
        listing: Option<FullListing>,
        complete: bool,
        save: Option<&str>,
        seen: &[M365ObjectId],
    ) -> Result<Option<UsersResume>> {
        let Some(link) = save else {
            return Ok(None);
        };
        Ok(Some(match listing {
            Some(mut listing) if !complete => {
                for part in seen.chunks(SEEN_PART_MAX) {
                    self.cursors
                        .put_seen(tenant, &listing, listing.parts, part)
                        .await?;
                    listing.parts += 1;
                }
                UsersResume::FullListing {
                    link: link.to_owned(),
                    started_at: listing.started_at,
                    parts: listing.parts,
                }
            }
            _ => UsersResume::Link {
                link: link.to_owned(),
            },
        }))
    }

    /// Moves the users cursor as `resume` says.
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn resume(&self, tenant: &TenantId, resume: &UsersResume) -> Result<()> {
        match resume {
            UsersResume::Link { link } => self.cursors.put(tenant, DeltaStream::Users, link).await,
            UsersResume::FullListing {
                link,
                started_at,
                parts,
            } => {
                let listing = FullListing {
                    started_at: *started_at,
                    parts: *parts,
                };
                self.cursors
                    .put_in_full_listing(tenant, link, &listing)
                    .await
            }
        }
    }

    /// Marks the repairs that would write to a privileged account not adopted with
    /// `adoptPrivileged` as skipped (R-BIND-11). Reads the tenant's privileged accounts once, and
    /// only when some repair writes to an account not adopted that way.
    async fn skip_privileged(
        &self,
        tenant: &TenantId,
        plan: &mut [Repair],
        bindings: &[Binding],
    ) -> Result<()> {
        let trusted: std::collections::HashSet<&UserId> = bindings
            .iter()
            .filter(|b| b.adopted_privileged)
            .map(|b| &b.user_id)
            .collect();
        let checked = |r: &Repair| r.kind.writes_m365() && !trusted.contains(&r.user_id);
        if !plan.iter().any(checked) {
            return Ok(());
        }
        let privileged = PrivilegedAccounts::load(self.directory, tenant).await?;
        for repair in plan.iter_mut().filter(|r| checked(r)) {
            let privilege = privileged.of(&repair.m365_object_id);
            if privilege.is_privileged() {
                repair.skipped = Some("privileged_account");
                repair.skipped_why = Some(privilege.describe());
            }
        }
        Ok(())
    }

    async fn read_delta(&self, tenant: &TenantId, start: Option<&str>) -> Result<Round> {
        let mut changes: BTreeMap<M365ObjectId, UserChange> = BTreeMap::new();
        let mut full = start.is_none();
        let mut link = start.map(str::to_owned);
        let mut pages = 0;
        while pages < self.settings.max_pages.max(1) {
            let page = self.deltas.users_delta(tenant, link.as_deref()).await?;
            pages += 1;
            if page.restarted {
                // A new full listing: what the lost round gave is superseded.
                full = true;
                changes.clear();
            }
            for change in page.changes {
                match changes.get_mut(&change.id) {
                    Some(seen) => merge(seen, change),
                    None => {
                        changes.insert(change.id.clone(), change);
                    }
                }
            }
            match page.next {
                DeltaLink::More(next) => link = Some(next),
                DeltaLink::Done(done) => {
                    return Ok(Round {
                        changes,
                        full,
                        pages,
                        save: Some(done),
                        complete: true,
                    });
                }
            }
        }
        Ok(Round {
            changes,
            full,
            pages,
            save: link,
            complete: false,
        })
    }

    async fn bindings_of(&self, tenant: &TenantId) -> Result<Vec<Binding>> {
        let mut all = Vec::new();
        let mut request = PageRequest::first(1000);
        loop {
            let page = self.bindings.list_by_tenant(tenant, None, &request).await?;
            all.extend(page.items);
            match page.next {
                Some(next) => request = PageRequest::after(next, 1000),
                None => return Ok(all),
            }
        }
    }

    async fn plan(
        &self,
        round: &Round,
        bindings: &[Binding],
    ) -> Result<(Vec<Repair>, HashMap<UserId, DirectoryUser>)> {
        let now = self.clock.now();
        let mut plan = Vec::new();
        let mut users = HashMap::new();
        for binding in bindings.iter().filter(|b| is_bound(b)) {
            let Some(object) = binding.m365_object_id.clone() else {
                continue;
            };
            let change = round.changes.get(&object);
            let expiry_due = self.settings.sweep_expiry
                && self.settings.password_policy.max_age().is_some()
                && binding.state == BindingState::Provisioned;
            if change.is_none() && !expiry_due {
                continue;
            }
            let Some(user) = self.users.get(&binding.user_id).await? else {
                continue;
            };
            let repair = |kind, attributes, patch| Repair {
                kind,
                user_id: binding.user_id.clone(),
                m365_object_id: object.clone(),
                attributes,
                patch,
                m365_password_change: None,
                skipped: None,
                skipped_why: None,
                missing_from_listing: false,
                manager: None,
            };
            if change.is_some_and(|c| c.removed) {
                plan.push(repair(
                    RepairKind::MarkDeleted,
                    Vec::new(),
                    M365UserPatch::default(),
                ));
                continue;
            }
            if binding.state == BindingState::Provisioned && user.state == UserState::Disabled {
                plan.push(repair(
                    RepairKind::SuspendDisabled,
                    Vec::new(),
                    M365UserPatch::default(),
                ));
                users.insert(user.id.clone(), user);
                continue;
            }
            let expired = expiry_due
                && user
                    .password_changed_at
                    .is_some_and(|at| self.settings.password_policy.is_expired(at, now));
            if expired {
                plan.push(repair(
                    RepairKind::SuspendExpired,
                    Vec::new(),
                    M365UserPatch::default(),
                ));
                users.insert(user.id.clone(), user);
                continue;
            }
            let Some(change) = change else {
                continue;
            };
            match binding.state {
                BindingState::Blocked | BindingState::Suspended
                    if change.account_enabled == Some(true) =>
                {
                    plan.push(repair(
                        RepairKind::Block,
                        Vec::new(),
                        M365UserPatch::default(),
                    ));
                }
                BindingState::Provisioned => {
                    let (patch, names) = attribute_patch(&user, change);
                    if !patch.is_empty() {
                        plan.push(repair(RepairKind::UpdateAttributes, names, patch));
                    }
                    // R-ATTR-1: only a user with a `managerId` whose manager is bound in this
                    // tenant is compared; M365's manager of others is not the directory's to
                    // repair (a cleared `managerId` is removed when it is saved).
                    if let Some(reported) = &change.manager
                        && let WantedManager::Account(_, want) =
                            wanted_manager(self.bindings, &user, binding).await?
                        && reported.as_ref() != Some(&want)
                    {
                        plan.push(Repair {
                            manager: Some(want),
                            ..repair(RepairKind::SetManager, Vec::new(), M365UserPatch::default())
                        });
                    }
                    if self
                        .password_changed_in_m365(binding, &user, change)
                        .await?
                    {
                        plan.push(Repair {
                            m365_password_change: change.last_password_change,
                            ..repair(
                                RepairKind::OverwritePassword,
                                Vec::new(),
                                M365UserPatch::default(),
                            )
                        });
                    }
                }
                _ => {}
            }
            users.insert(user.id.clone(), user);
        }
        Ok((plan, users))
    }

    /// Whether M365 reports a password change later than our last write (R-PWD-3).
    async fn password_changed_in_m365(
        &self,
        binding: &Binding,
        user: &DirectoryUser,
        change: &UserChange,
    ) -> Result<bool> {
        let (Some(_), Some(changed)) = (&user.password, change.last_password_change) else {
            return Ok(false);
        };
        // M365 time against M365 time: the stamp read back after our latest write.
        if let Some(ours) = binding.m365_password_changed_at {
            return Ok(changed > ours);
        }
        // No stamp: the clock rule (our clock against M365's, with a grace for skew).
        let grace = self.settings.push_grace;
        // Our pushes happen after the directory password was set: an M365 change before that
        // is older than any push of it (this also spares the events query for most users).
        if user
            .password_changed_at
            .is_some_and(|set| changed <= set + grace)
        {
            return Ok(false);
        }
        Ok(self
            .last_push(&user.id)
            .await?
            .is_none_or(|pushed| changed > pushed + grace))
    }

    async fn last_push(&self, user: &UserId) -> Result<Option<DateTime<Utc>>> {
        let page = self
            .events
            .query(&EventQuery {
                filter: EventFilter::User(user.clone()),
                since: None,
                page: PageRequest::first(50),
            })
            .await?;
        Ok(page
            .items
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::UserCreateProvision | EventKind::UserPasswordUpdateProvision
                )
            })
            .map(|e| e.at)
            .max())
    }

    /// The bindings whose account a complete full listing did not return (R-REC-4): every id
    /// the listing's earlier passes saved plus this pass's, against the bindings that expect an
    /// account and were bound before the listing began (less [`ReconcileSettings::listing_lag`]).
    async fn missing_from_listing(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
        round: &Round,
        seen_now: &[M365ObjectId],
        bindings: &[Binding],
    ) -> Result<Vec<Repair>> {
        let earlier = if listing.parts == 0 {
            Vec::new()
        } else {
            match self.cursors.seen(tenant, listing).await? {
                Some(ids) => ids,
                None => {
                    // Without every part nothing can be called missing; the next full listing
                    // (the next 410) looks again.
                    tracing::warn!(
                        parts = listing.parts,
                        "full listing's seen ids incomplete: missing accounts not checked"
                    );
                    return Ok(Vec::new());
                }
            }
        };
        let seen: HashSet<&M365ObjectId> = earlier.iter().chain(seen_now).collect();
        // Reported by this pass (removed ones are planned as deletions already) or seen before.
        let absent: Vec<(&Binding, &M365ObjectId)> = bindings
            .iter()
            .filter(|b| expects_account(b))
            .filter_map(|b| b.m365_object_id.as_ref().map(|id| (b, id)))
            .filter(|(_, id)| !seen.contains(id) && !round.changes.contains_key(*id))
            .collect();
        // Once more are confirmed missing than the safeguard allows, the run stops anyway: the
        // rest are planned unchecked, so a wrongly empty listing costs at most that many event
        // reads, not one per bound user.
        let bound = bindings.iter().filter(|b| is_bound(b)).count();
        let limit = self.settings.safeguard.allowed(bound);
        let cutoff = listing.started_at - self.settings.listing_lag;
        let mut missing = Vec::new();
        for (binding, id) in absent {
            let trips = missing.len() > limit;
            // Bound while the listing ran (or just before): the listing may legitimately not
            // show the account yet (graph-spec §5, §7.4).
            if !trips && self.provisioned_since(&binding.user_id, cutoff).await? {
                tracing::info!(user.id = %binding.user_id, "account missing from the full listing was bound during it: not marked");
                continue;
            }
            missing.push(Repair {
                kind: RepairKind::MarkDeleted,
                user_id: binding.user_id.clone(),
                m365_object_id: id.clone(),
                attributes: Vec::new(),
                patch: M365UserPatch::default(),
                m365_password_change: None,
                skipped: None,
                skipped_why: None,
                missing_from_listing: true,
                manager: None,
            });
        }
        Ok(missing)
    }

    /// Whether `user` has a provisioning event (create, adopt, unblock, update) at or after
    /// `since`: its binding may have got its account then.
    async fn provisioned_since(&self, user: &UserId, since: DateTime<Utc>) -> Result<bool> {
        let mut request = PageRequest::first(50);
        for _ in 0..EVENT_PAGES {
            let page = self
                .events
                .query(&EventQuery {
                    filter: EventFilter::User(user.clone()),
                    since: Some(since),
                    page: request,
                })
                .await?;
            if page.items.iter().any(|e| is_provisioning(e.kind)) {
                return Ok(true);
            }
            match page.next {
                Some(next) => request = PageRequest::after(next, 50),
                None => return Ok(false),
            }
        }
        // More events than we read since the cutoff: be safe, do not call it missing.
        Ok(true)
    }

    /// Whether the account `id` is one a bind of `user` created or adopted (its provisioning
    /// event names it): only such an account is ours to block or watch (R-BIND-12).
    async fn provisioned_account(&self, user: &UserId, id: &M365ObjectId) -> Result<bool> {
        let mut request = PageRequest::first(50);
        for _ in 0..EVENT_PAGES {
            let page = self
                .events
                .query(&EventQuery {
                    filter: EventFilter::User(user.clone()),
                    since: None,
                    page: request,
                })
                .await?;
            let named = page.items.iter().any(|e| {
                is_provisioning(e.kind)
                    && e.details
                        .as_ref()
                        .and_then(|d| d.get("m365ObjectId"))
                        .and_then(serde_json::Value::as_str)
                        == Some(id.as_str())
            });
            if named {
                return Ok(true);
            }
            match page.next {
                Some(next) => request = PageRequest::after(next, 50),
                None => return Ok(false),
            }
        }
        Ok(false)
    }

    /// Looks up (by UPN, at most [`ReconcileSettings::max_account_lookups`]) the `blocked` and
    /// `suspended` bindings that do not know their account (R-BIND-12): an account of ours found
    /// enabled is blocked, one found disabled is linked; no account, or one we never provisioned
    /// (an admin may have made it by hand), is left alone and the binding marked as looked up.
    async fn account_lookups(&self, tenant: &TenantId, bindings: &[Binding]) -> Result<Lookups> {
        let mut out = Lookups::default();
        let due = bindings.iter().filter(|b| needs_account_lookup(b));
        for binding in due.take(self.settings.max_account_lookups) {
            let Some(user) = self.users.get(&binding.user_id).await? else {
                // No directory user, no UPN to look up.
                out.none_found.push(binding.clone());
                continue;
            };
            out.made += 1;
            let found = match self.directory.find_user_by_upn(tenant, &user.email).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(user.id = %binding.user_id, error.code = e.code(), error.retryable = e.is_retryable(), "account lookup failed");
                    // A transient failure is looked up again by the next pass; a permanent one
                    // would fail every time and hold a slot others need.
                    if !e.is_retryable() {
                        out.none_found.push(binding.clone());
                    }
                    continue;
                }
            };
            let ours = match &found {
                Some(account) => {
                    self.provisioned_account(&binding.user_id, &account.id)
                        .await?
                }
                None => false,
            };
            match found {
                Some(account) if ours => out.repairs.push(Repair {
                    kind: if account.account_enabled {
                        RepairKind::Block
                    } else {
                        RepairKind::LinkAccount
                    },
                    user_id: binding.user_id.clone(),
                    m365_object_id: account.id,
                    attributes: Vec::new(),
                    patch: M365UserPatch::default(),
                    m365_password_change: None,
                    skipped: None,
                    skipped_why: None,
                    missing_from_listing: false,
                    manager: None,
                }),
                _ => out.none_found.push(binding.clone()),
            }
        }
        Ok(out)
    }

    /// Records on each binding that its lookup found nothing of ours (see
    /// [`Binding::account_lookup_version`]); a binding changed meanwhile is looked up again.
    async fn mark_looked_up(&self, bindings: &[Binding]) {
        for binding in bindings {
            let mut next = binding.clone();
            // Stores write expected + 1 (ports: versioned records).
            next.account_lookup_version = Some(binding.version + 1);
            if let Err(e) = self
                .bindings
                .put(&next, Expect::Version(binding.version))
                .await
            {
                tracing::info!(user.id = %binding.user_id, error.code = e.code(), "account lookup not recorded");
            }
        }
    }

    async fn apply(
        &self,
        tenant: &TenantId,
        run_key: &str,
        repair: &Repair,
        binding: &Binding,
        user: Option<&DirectoryUser>,
    ) -> Result<()> {
        let id = &repair.m365_object_id;
        let mut next = binding.clone();
        // A binding that did not know its account learns it (R-BIND-12).
        if next.m365_object_id.is_none() {
            next.m365_object_id = Some(id.clone());
        }
        let write = match repair.kind {
            RepairKind::SuspendExpired => {
                self.directory.set_account_enabled(tenant, id, false).await
            }
            RepairKind::Block | RepairKind::SuspendDisabled => {
                // Whoever signed in while the account was enabled is signed out too (R-BIND-9).
                match self.directory.set_account_enabled(tenant, id, false).await {
                    Ok(()) => self.directory.revoke_sign_in_sessions(tenant, id).await,
                    Err(e) => Err(e),
                }
            }
            RepairKind::UpdateAttributes => {
                self.directory.update_user(tenant, id, &repair.patch).await
            }
            RepairKind::OverwritePassword => {
                let sealed = user.and_then(|u| u.password.as_ref());
                match sealed {
                    Some(sealed) => {
                        let password = self.sealer.open(&repair.user_id, sealed).await?;
                        let written = self.directory.set_password(tenant, id, &password).await;
                        if written.is_ok() {
                            next.pushed_password_set_at = user.and_then(|u| u.password_changed_at);
                            // Our stamp must be later than the change we overwrote.
                            let before = repair
                                .m365_password_change
                                .max(binding.m365_password_changed_at);
                            next.m365_password_changed_at =
                                read_back_password_change(self.directory, tenant, id, before).await;
                        }
                        written
                    }
                    None => return Ok(()),
                }
            }
            RepairKind::SetManager => match &repair.manager {
                Some(manager) => self.directory.set_manager(tenant, id, manager).await,
                None => return Ok(()),
            },
            RepairKind::MarkDeleted | RepairKind::LinkAccount => Ok(()),
        };
        match write {
            Ok(()) => {}
            Err(e) if is_m365_not_found(&e) => {
                next.state = BindingState::DeletedInM365;
                next.pending_reason = None;
                self.bindings
                    .put(&next, Expect::Version(binding.version))
                    .await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        match repair.kind {
            RepairKind::MarkDeleted => {
                next.state = BindingState::DeletedInM365;
                next.pending_reason = None;
            }
            RepairKind::SuspendExpired => {
                next.state = BindingState::Suspended;
                next.suspended_reason = Some(SuspendedReason::PasswordExpired);
            }
            RepairKind::SuspendDisabled => {
                next.state = BindingState::Suspended;
                next.suspended_reason = Some(SuspendedReason::DirectoryDisabled);
            }
            _ => {}
        }
        if let Some((kind, reason)) = repair.kind.event() {
            self.events
                .append(&Event {
                    actor: Some(self.actor.clone()),
                    id: EventId::derive(&[
                        tenant.as_str(),
                        run_key,
                        repair.user_id.as_str(),
                        reason,
                    ]),
                    kind,
                    at: self.clock.now(),
                    user_id: Some(repair.user_id.clone()),
                    tenant_id: Some(tenant.clone()),
                    operation_id: Some(operation(tenant)),
                    reason: Some(reason.to_owned()),
                    details: Some(match &repair.manager {
                        Some(manager) => serde_json::json!({
                            "m365ObjectId": id,
                            "manager": { "m365ObjectId": manager },
                        }),
                        None => serde_json::json!({ "m365ObjectId": id }),
                    }),
                })
                .await?;
        }
        if next != *binding {
            self.bindings
                .put(&next, Expect::Version(binding.version))
                .await?;
        }
        Ok(())
    }

    /// Records `reconcile_safeguard_tripped` (with the held plan's id and size when the pass was
    /// held, R-REC-3).
    ///
    /// # Errors
    /// Store failures.
    pub(crate) async fn record_trip(
        &self,
        tenant: &TenantId,
        start: Option<&str>,
        trip: &SafeguardTrip,
        held: Option<(&str, usize)>,
    ) -> Result<()> {
        let now = self.clock.now();
        self.events
            .append(&Event {
                actor: Some(self.actor.clone()),
                id: EventId::derive(&[
                    tenant.as_str(),
                    start.unwrap_or("full"),
                    "safeguard",
                    &now.timestamp().to_string(),
                ]),
                kind: EventKind::ReconcileSafeguardTripped,
                at: now,
                user_id: None,
                tenant_id: Some(tenant.clone()),
                operation_id: Some(operation(tenant)),
                reason: Some("safeguard_threshold_exceeded".to_owned()),
                details: Some({
                    let mut details = serde_json::json!({
                        "destructive": trip.destructive,
                        "bound": trip.bound,
                        "threshold": trip.threshold,
                        "allowed": trip.allowed,
                        "groupRemovals": trip.group_removals,
                        "earlier": trip.earlier,
                        "roundTotal": trip.round_total,
                    });
                    if let Some((plan, items)) = held {
                        details["heldPlan"] = serde_json::json!({ "id": plan, "items": items });
                    }
                    details
                }),
            })
            .await?;
        self.alert_trip(tenant, trip, held.map(|(_, items)| items))
            .await;
        Ok(())
    }

    /// Alerts `safeguard_tripped` with the number of changes held, once per incident (R-OPS-1):
    /// the hourly pass that trips again while the incident is open publishes nothing. A failed
    /// publish is logged; the next trip publishes it.
    async fn alert_trip(&self, tenant: &TenantId, trip: &SafeguardTrip, held: Option<usize>) {
        let held = held.unwrap_or(trip.destructive);
        let raised = self
            .alerting
            .raise(
                tenant,
                AlertKind::SafeguardTripped,
                format!(
                    "Reconcile stopped at the safeguard: this round would block, suspend or remove {} of {} bound users (allowed {}, threshold {}). Nothing was changed; {held} change(s) are held: review them at GET /tenants/{tenant}/reconcile/held, then approve or reject.",
                    trip.round_total, trip.bound, trip.allowed, trip.threshold,
                ),
                serde_json::json!({
                    "held": held,
                    "destructive": trip.round_total,
                    "bound": trip.bound,
                    "allowed": trip.allowed,
                    "threshold": trip.threshold,
                }),
            )
            .await;
        if let Err(e) = raised {
            tracing::warn!(
                error.code = e.code(),
                "safeguard alert not published; the next trip retries"
            );
        }
    }

    /// A real pass within the safeguard ends the tenant's safeguard incident (R-OPS-1).
    pub(crate) async fn safeguard_passed(&self, tenant: &TenantId) {
        if let Err(e) = self
            .alerting
            .resolve(AlertKind::SafeguardTripped, tenant)
            .await
        {
            tracing::warn!(error.code = e.code(), "safeguard incident not resolved");
        }
    }

    async fn record_failure(
        &self,
        tenant: &TenantId,
        repair: &Repair,
        error: &Error,
    ) -> Result<()> {
        let op = operation(tenant);
        let at = self.clock.now();
        self.failures
            .record(&Failure {
                id: failure_id(&op, repair.user_id.as_str(), error.code(), at),
                tenant_id: tenant.clone(),
                user_id: Some(repair.user_id.clone()),
                operation_id: op,
                code: error.code().to_owned(),
                message: error.to_string(),
                graph_request_id: error.graph_request_id().map(str::to_owned),
                at,
            })
            .await
    }
}

fn operation(tenant: &TenantId) -> OperationId {
    OperationId::new(
        OperationKind::Reconcile,
        &OperationSubject::Tenant(tenant.clone()),
        "run",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;
    use crate::ports::Directory;
    use crate::testing::{FakeReconcileCursors, FakeUserDeltas};
    use crate::usecase::testkit::{World, secret, uid};

    const GOOD: &str = "Correct-Horse-7";

    type TestReconcile<'a> = Reconcile<'a, World>;

    struct Rig<'a> {
        w: &'a World,
        deltas: FakeUserDeltas,
        cursors: FakeReconcileCursors,
        settings: ReconcileSettings,
    }

    impl<'a> Rig<'a> {
        fn new(w: &'a World) -> Self {
            Self {
                w,
                deltas: FakeUserDeltas::new(&w.directory),
                cursors: FakeReconcileCursors::new(),
                settings: ReconcileSettings::default(),
            }
        }

        /// Rounds of `size` users per page, one page per pass: a round takes several passes.
        fn paged(w: &'a World, size: usize) -> Self {
            Self {
                deltas: FakeUserDeltas::with_page_size(&w.directory, size),
                settings: ReconcileSettings {
                    max_pages: 1,
                    ..ReconcileSettings::default()
                },
                ..Self::new(w)
            }
        }

        /// Passes until the round completes; every pass's report.
        async fn round(&self) -> Vec<ReconcileReport> {
            let mut passes = Vec::new();
            loop {
                let report = self.run(false).await;
                let complete = report.complete;
                passes.push(report);
                if complete {
                    return passes;
                }
                assert!(passes.len() < 100, "the round ends");
            }
        }

        fn reconcile(&self) -> TestReconcile<'_> {
            Reconcile {
                actor: &self.w.actor,
                bindings: &self.w.bindings,
                events: &self.w.events,
                failures: &self.w.failures,
                users: &self.w.users,
                directory: &self.w.directory,
                sealer: &self.w.sealer,
                deltas: &self.deltas,
                cursors: &self.cursors,
                clock: &self.w.clock,
                alerting: super::super::alerts::Alerting::new(self.w),
                settings: &self.settings,
            }
        }

        async fn run(&self, dry_run: bool) -> ReconcileReport {
            self.reconcile()
                .run(&self.w.tenant.id, dry_run)
                .await
                .unwrap()
        }
    }

    /// `n` bound users `u0..u{n-1}`, each with a directory password, then a first (full) run.
    /// Entra's minimum, no required class, passwords expiring after `age` (R-PWD-4).
    fn expiring_after(age: TimeDelta) -> DirectoryPasswordPolicy {
        DirectoryPasswordPolicy::new(8, [], Some(age)).unwrap()
    }

    async fn world_with(n: usize) -> World {
        crate::usecase::testkit::bound_users_with_password(n, GOOD).await
    }

    fn object(w: &World, b: &Binding) -> M365ObjectId {
        let _ = w;
        b.m365_object_id.clone().unwrap()
    }

    fn kinds(report: &ReconcileReport) -> Vec<(RepairKind, UserId)> {
        report
            .plan
            .iter()
            .map(|r| (r.kind, r.user_id.clone()))
            .collect()
    }

    #[tokio::test]
    async fn the_first_run_is_a_full_sync_and_an_unchanged_tenant_then_costs_only_its_delta_page() {
        // R-REC-1
        let w = world_with(12).await;
        let rig = Rig::new(&w);
        let first = rig.run(false).await;
        assert!(first.full_sync && first.complete);
        assert_eq!(first.bound, 12);
        assert!(first.plan.is_empty(), "{:?}", first.plan);
        let calls = w.directory.calls();
        let second = rig.run(false).await;
        assert!(!second.full_sync);
        assert!(second.plan.is_empty());
        // The fake's delta reads one listing call per page; no writes.
        assert_eq!(w.directory.calls() - calls, 1);
        assert_eq!(rig.deltas.pages(), 2);
    }

    #[tokio::test]
    async fn a_blocked_user_enabled_in_m365_is_blocked_again_and_the_next_run_finds_nothing() {
        // R-REC-1
        let w = world_with(12).await;
        w.unbinder().unbind(&uid("u1")).await.unwrap();
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u1").await);
        w.directory
            .set_account_enabled(&w.tenant.id, &id, true)
            .await
            .unwrap();
        let report = rig.run(false).await;
        assert_eq!(kinds(&report), vec![(RepairKind::Block, uid("u1"))]);
        assert_eq!(report.applied, 1);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.binding("u1").await.state, BindingState::Blocked);
        assert!(rig.run(false).await.plan.is_empty());
    }

    async fn disable_in_directory(w: &World, id: &str) {
        let mut user = w.users.get(&uid(id)).await.unwrap().unwrap();
        user.state = UserState::Disabled;
        let v = user.version;
        w.users.replace(&user, v).await.unwrap();
    }

    #[tokio::test]
    async fn a_user_suspended_in_the_directory_enabled_in_m365_is_blocked_again_and_signed_out() {
        // R-BIND-9, R-REC-1 (a suspended user found enabled in M365)
        let w = world_with(12).await;
        disable_in_directory(&w, "u1").await;
        w.suspension().apply(&uid("u1")).await.unwrap();
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u1").await);
        w.directory
            .set_account_enabled(&w.tenant.id, &id, true)
            .await
            .unwrap();
        w.clock.advance(TimeDelta::minutes(10));
        let report = rig.run(false).await;
        assert_eq!(kinds(&report), vec![(RepairKind::Block, uid("u1"))]);
        assert_eq!(report.applied, 1);
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(
            w.directory.sessions_valid_from(&w.tenant.id, &id),
            Some(w.now()),
            "whoever signed in meanwhile is signed out"
        );
        let b = w.binding("u1").await;
        assert_eq!(b.state, BindingState::Suspended);
        assert_eq!(b.suspended_reason, Some(SuspendedReason::DirectoryDisabled));
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn a_provisioned_user_found_disabled_in_the_directory_is_suspended_by_reconcile() {
        // R-BIND-9, R-BIND-12 (a suspension that never ran: reconcile is the safety net for the
        // users it reads — here through the expiry sweep, which reads every provisioned user)
        let w = world_with(12).await;
        let mut rig = Rig::new(&w);
        rig.settings.password_policy = expiring_after(TimeDelta::days(90));
        rig.run(false).await;
        disable_in_directory(&w, "u2").await;
        let dry = rig.run(true).await;
        assert_eq!(kinds(&dry), vec![(RepairKind::SuspendDisabled, uid("u2"))]);
        assert!(
            dry.plan[0].kind.is_destructive(),
            "counted by the safeguard"
        );
        let report = rig.run(false).await;
        assert_eq!(report.applied, 1);
        let b = w.binding("u2").await;
        let id = object(&w, &b);
        assert_eq!(b.state, BindingState::Suspended);
        assert_eq!(b.suspended_reason, Some(SuspendedReason::DirectoryDisabled));
        assert!(!w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert!(w.directory.sessions_valid_from(&w.tenant.id, &id).is_some());
        let event = w.event(EventKind::UserDeprovision);
        assert_eq!(event.reason.as_deref(), Some("directory_disabled"));
        assert_eq!(event.user_id, Some(uid("u2")));
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn drift_of_an_r_attr_1_attribute_is_repaired_and_an_unset_usage_location_is_left() {
        // R-ATTR-1, R-REC-1
        let w = world_with(1).await;
        let mut user = w.users.get(&uid("u0")).await.unwrap().unwrap();
        user.attributes.city = Some("Redmond".into());
        let version = user.version;
        w.users.replace(&user, version).await.unwrap();
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u0").await);
        let drift = crate::model::AttributesPatch {
            city: Some(Some("Paris".into())),
            usage_location: Some(Some("FR".into())),
            ..Default::default()
        };
        w.change_in_m365(&id, drift).await;
        let report = rig.run(false).await;
        assert_eq!(report.plan.len(), 1);
        assert_eq!(report.plan[0].attributes, vec!["city"]);
        let m365 = w.directory.user(&w.tenant.id, &id).unwrap();
        assert_eq!(m365.attributes.city.as_deref(), Some("Redmond"));
        assert_eq!(m365.attributes.usage_location.as_deref(), Some("FR"));
        assert!(rig.run(false).await.plan.is_empty(), "repaired once");
    }

    #[tokio::test]
    async fn attribute_drift_is_overwritten_with_the_directory_values_once() {
        // R-REC-1
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u0").await);
        let patch = M365UserPatch {
            job_title: Some(Some("Pirate".to_owned())),
            ..M365UserPatch::default()
        };
        w.directory
            .update_user(&w.tenant.id, &id, &patch)
            .await
            .unwrap();
        let report = rig.run(false).await;
        assert_eq!(report.plan.len(), 1);
        assert_eq!(report.plan[0].kind, RepairKind::UpdateAttributes);
        assert_eq!(report.plan[0].attributes, vec!["jobTitle"]);
        let m365 = w.directory.user(&w.tenant.id, &id).unwrap();
        assert_eq!(m365.job_title.as_deref(), Some("Engineer"));
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn a_password_changed_in_m365_is_overwritten_with_the_sealed_directory_password() {
        // R-PWD-3
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u2").await);
        w.clock.advance(TimeDelta::minutes(30));
        w.directory
            .set_password(&w.tenant.id, &id, &secret("Changed-In-M365-1"))
            .await
            .unwrap();
        let before = w.count_events(EventKind::UserPasswordUpdateProvision);
        let report = rig.run(false).await;
        assert_eq!(
            kinds(&report),
            vec![(RepairKind::OverwritePassword, uid("u2"))]
        );
        let pushed = w.directory.password(&w.tenant.id, &id).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&pushed), GOOD);
        assert_eq!(
            w.count_events(EventKind::UserPasswordUpdateProvision),
            before + 1
        );
        // Our own overwrite moved lastPasswordChangeDateTime: not drift.
        w.clock.advance(TimeDelta::minutes(30));
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn our_own_password_push_is_not_mistaken_for_an_m365_change() {
        // R-PWD-3
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        w.clock.advance(TimeDelta::hours(2));
        w.passwords()
            .set(&uid("u0"), &secret("Another-Horse-8"))
            .await
            .unwrap();
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn an_account_deleted_in_m365_marks_the_binding_deleted_in_m365() {
        // R-REC-1, R-BIND-8
        let w = world_with(12).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u3").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        let report = rig.run(false).await;
        assert_eq!(kinds(&report), vec![(RepairKind::MarkDeleted, uid("u3"))]);
        assert_eq!(w.binding("u3").await.state, BindingState::DeletedInM365);
        let again = rig.run(false).await;
        assert!(again.plan.is_empty());
        assert_eq!(again.bound, 11);
    }

    #[tokio::test]
    async fn a_dry_run_returns_the_plan_and_writes_nothing() {
        // R-REC-2
        let w = world_with(12).await;
        w.unbinder().unbind(&uid("u1")).await.unwrap();
        let rig = Rig::new(&w);
        rig.run(false).await;
        let puts = rig.cursors.puts();
        let id = object(&w, &w.binding("u1").await);
        w.directory
            .set_account_enabled(&w.tenant.id, &id, true)
            .await
            .unwrap();
        let events = w.events.all().len();
        let binding = w.binding("u1").await;
        let calls = w.directory.calls();
        let report = rig.run(true).await;
        assert!(report.dry_run);
        assert_eq!(kinds(&report), vec![(RepairKind::Block, uid("u1"))]);
        assert_eq!(report.applied, 0);
        assert_eq!(
            w.directory.calls() - calls,
            3,
            "only reads: the delta page and, as the plan writes, the privileged accounts (role \
             holders, consenting admin; R-BIND-11)"
        );
        assert!(w.directory.user(&w.tenant.id, &id).unwrap().account_enabled);
        assert_eq!(w.events.all().len(), events);
        assert_eq!(w.binding("u1").await, binding);
        assert_eq!(rig.cursors.puts(), puts);
        // The real run afterwards still sees (and repairs) the drift.
        assert_eq!(rig.run(false).await.applied, 1);
    }

    #[tokio::test]
    async fn the_safeguard_stops_a_run_blocking_more_than_ten_percent_and_records_it() {
        // R-REC-3
        let w = world_with(10).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        for i in 0..2 {
            let id = object(&w, &w.binding(&format!("u{i}")).await);
            w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        }
        let puts = rig.cursors.puts();
        let report = rig.run(false).await;
        let trip = report.safeguard.clone().unwrap();
        assert_eq!((trip.destructive, trip.bound), (2, 10));
        assert_eq!(report.applied, 0);
        assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
        assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
        assert_eq!(
            rig.cursors.puts(),
            puts,
            "the cursor stays: the drift is seen again"
        );
        // A dry run reports the trip without recording it.
        let dry = rig.run(true).await;
        assert!(dry.safeguard.is_some());
        assert_eq!(w.count_events(EventKind::ReconcileSafeguardTripped), 1);
    }

    #[tokio::test]
    async fn a_safeguard_trip_alerts_once_with_the_changes_held_until_a_pass_is_within_it() {
        // R-OPS-1, R-REC-3 (once per incident: the hourly trips while it is open alert nothing)
        use crate::ports::AlertIncidents;
        let w = world_with(10).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        for i in 0..2 {
            let id = object(&w, &w.binding(&format!("u{i}")).await);
            w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        }
        for _ in 0..3 {
            assert!(rig.run(false).await.safeguard.is_some());
            w.clock.advance(chrono::TimeDelta::hours(1));
        }
        assert!(
            rig.run(true).await.safeguard.is_some(),
            "a dry run alerts nothing"
        );
        let alerts = w.alerts.of(AlertKind::SafeguardTripped);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].tenant_id, w.tenant.id);
        assert_eq!(alerts[0].details["held"], 2);
        assert_eq!(alerts[0].details["bound"], 10);
        assert!(
            alerts[0].message.contains("2 of 10"),
            "{}",
            alerts[0].message
        );
        // An admin lets the changes through (a higher limit here); the pass within the
        // safeguard ends the incident, and a later trip alerts again.
        let mut rig = rig;
        rig.settings.safeguard = crate::policy::safeguard::Safeguard::Share(1.0);
        assert!(rig.run(false).await.safeguard.is_none());
        assert!(
            w.alert_incidents
                .get(&w.tenant.id, AlertKind::SafeguardTripped)
                .await
                .unwrap()
                .is_none()
        );
        rig.settings.safeguard = crate::policy::safeguard::Safeguard::Share(0.0);
        for i in 2..4 {
            let id = object(&w, &w.binding(&format!("u{i}")).await);
            w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        }
        assert!(rig.run(false).await.safeguard.is_some());
        assert_eq!(w.alerts.of(AlertKind::SafeguardTripped).len(), 2);
    }

    #[tokio::test]
    async fn one_removal_in_ten_is_within_the_safeguard() {
        // R-REC-3
        let w = world_with(10).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u0").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        let report = rig.run(false).await;
        assert!(report.safeguard.is_none());
        assert_eq!(report.applied, 1);
    }

    #[tokio::test]
    async fn an_expired_password_suspends_the_account_and_a_new_password_re_enables_it() {
        // R-PWD-4
        let w = world_with(12).await;
        let mut rig = Rig::new(&w);
        rig.settings.password_policy = expiring_after(TimeDelta::days(90));
        rig.run(false).await;
        // u5's password is renewed at day 60; the others expire at day 90.
        w.clock.advance(TimeDelta::days(60));
        for i in 0..12 {
            if i != 5 {
                continue;
            }
            w.passwords()
                .set(&uid(&format!("u{i}")), &secret("Renewed-Horse-9"))
                .await
                .unwrap();
        }
        w.clock.advance(TimeDelta::days(31));
        rig.settings.safeguard = Safeguard::Share(1.0);
        let report = rig.run(false).await;
        assert_eq!(
            report
                .plan
                .iter()
                .filter(|r| r.kind == RepairKind::SuspendExpired)
                .count(),
            11
        );
        let b = w.binding("u0").await;
        assert_eq!(b.state, BindingState::Suspended);
        assert_eq!(b.suspended_reason, Some(SuspendedReason::PasswordExpired));
        assert!(
            !w.directory
                .user(&w.tenant.id, &object(&w, &b))
                .unwrap()
                .account_enabled
        );
        assert_eq!(w.binding("u5").await.state, BindingState::Provisioned);
        let expired = w
            .events
            .all()
            .into_iter()
            .filter(|e| {
                e.kind == EventKind::UserDeprovision
                    && e.reason.as_deref() == Some("password_expired")
            })
            .count();
        assert_eq!(expired, 11);
        assert!(
            rig.run(false).await.plan.is_empty(),
            "suspended stays suspended"
        );
        // A new password re-enables the account (SetPassword handles `suspended`).
        w.passwords()
            .set(&uid("u0"), &secret("Fresh-Horse-10"))
            .await
            .unwrap();
        let b = w.binding("u0").await;
        assert_eq!(b.state, BindingState::Provisioned);
        assert!(
            w.directory
                .user(&w.tenant.id, &object(&w, &b))
                .unwrap()
                .account_enabled
        );
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn mass_expiry_trips_the_safeguard() {
        // R-REC-3, R-PWD-4
        let w = world_with(10).await;
        let mut rig = Rig::new(&w);
        rig.settings.password_policy = expiring_after(TimeDelta::days(1));
        w.clock.advance(TimeDelta::days(2));
        let report = rig.run(false).await;
        assert!(report.safeguard.is_some());
        assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
    }

    fn missing(report: &ReconcileReport) -> Vec<UserId> {
        report
            .plan
            .iter()
            .filter(|r| r.missing_from_listing)
            .map(|r| r.user_id.clone())
            .collect()
    }

    #[tokio::test]
    async fn a_first_full_listing_marks_a_bound_account_deleted_in_m365_before_it() {
        // R-REC-4, R-BIND-8 (first run: the account is simply absent from the listing)
        let w = world_with(12).await;
        let id = object(&w, &w.binding("u3").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        w.clock.advance(TimeDelta::hours(1));
        let rig = Rig::new(&w);
        let report = rig.run(false).await;
        assert!(report.full_sync && report.complete);
        assert_eq!(kinds(&report), vec![(RepairKind::MarkDeleted, uid("u3"))]);
        assert_eq!(missing(&report), vec![uid("u3")]);
        assert_eq!(report.applied, 1);
        assert_eq!(w.binding("u3").await.state, BindingState::DeletedInM365);
        let json = serde_json::to_value(&report.plan[0]).unwrap();
        assert_eq!(json["missingFromListing"], true);
        assert_eq!(json["kind"], "mark_deleted");
        let again = rig.run(false).await;
        assert!(again.plan.is_empty());
        assert_eq!(again.bound, 11);
    }

    #[tokio::test]
    async fn a_full_listing_after_graph_lost_the_delta_state_marks_accounts_deleted_meanwhile() {
        // R-REC-4 (410: the restarted listing does not report removals, it omits them)
        let w = world_with(12).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        for u in ["u2", "u9"] {
            let id = object(&w, &w.binding(u).await);
            w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        }
        w.clock.advance(TimeDelta::hours(1));
        rig.deltas.lose_state();
        let rig = Rig {
            settings: ReconcileSettings {
                safeguard: crate::policy::safeguard::Safeguard::Share(0.25),
                ..ReconcileSettings::default()
            },
            ..rig
        };
        let report = rig.run(false).await;
        assert!(report.full_sync);
        assert_eq!(missing(&report), vec![uid("u2"), uid("u9")]);
        assert_eq!(report.applied, 2);
        assert_eq!(w.binding("u2").await.state, BindingState::DeletedInM365);
        assert_eq!(w.binding("u9").await.state, BindingState::DeletedInM365);
        assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
        assert!(
            w.events
                .all()
                .iter()
                .all(|e| e.kind != EventKind::UserDeprovision),
            "a deletion seen is not a change we made: no event"
        );
    }

    #[tokio::test]
    async fn accounts_missing_from_a_full_listing_count_toward_the_safeguard() {
        // R-REC-4, R-REC-3
        let w = world_with(10).await;
        for u in ["u1", "u2"] {
            let id = object(&w, &w.binding(u).await);
            w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        }
        w.clock.advance(TimeDelta::hours(1));
        let rig = Rig::new(&w);
        let report = rig.run(false).await;
        assert_eq!(report.safeguard.as_ref().unwrap().destructive, 2);
        assert_eq!(w.binding("u1").await.state, BindingState::Provisioned);
        assert_eq!(rig.cursors.puts(), 0, "the listing is read again next time");
    }

    #[tokio::test]
    async fn a_full_listing_spanning_passes_remembers_what_it_saw_and_marks_only_the_missing() {
        // R-REC-4 (a round of several passes; the ids seen are saved between passes)
        let w = world_with(10).await;
        let id = object(&w, &w.binding("u7").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        w.clock.advance(TimeDelta::hours(1));
        let mut rig = Rig::paged(&w, 3);
        rig.settings.safeguard = Safeguard::Share(0.2);
        let passes = rig.round().await;
        assert_eq!(passes.len(), 3, "9 accounts in pages of 3");
        assert!(passes.iter().all(|p| p.full_sync), "every pass knows");
        assert!(passes[..2].iter().all(|p| p.plan.is_empty()));
        assert_eq!(missing(&passes[2]), vec![uid("u7")]);
        assert_eq!(rig.cursors.seen_parts(), 2, "one part per unfinished pass");
        assert_eq!(w.binding("u7").await.state, BindingState::DeletedInM365);
        assert_eq!(w.binding("u6").await.state, BindingState::Provisioned);
        // The next round is incremental and finds nothing.
        let next = rig.round().await;
        assert!(next.iter().all(|p| !p.full_sync && p.plan.is_empty()));
        // A dry run of the last pass of a listing plans what the pass will do, writing nothing.
        rig.deltas.lose_state();
        let id = object(&w, &w.binding("u1").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        assert!(
            !rig.run(false).await.complete,
            "8 accounts: pages of 3, 3, 2"
        );
        assert!(!rig.run(false).await.complete);
        let puts = rig.cursors.puts();
        let dry = rig.run(true).await;
        assert!(dry.complete && dry.full_sync && dry.safeguard.is_none());
        assert_eq!(missing(&dry), vec![uid("u1")]);
        assert_eq!(dry.applied, 0);
        assert_eq!(w.binding("u1").await.state, BindingState::Provisioned);
        assert_eq!(rig.cursors.puts(), puts);
        let last = rig.run(false).await;
        assert_eq!(missing(&last), vec![uid("u1")]);
        assert_eq!(w.binding("u1").await.state, BindingState::DeletedInM365);
    }

    #[tokio::test]
    async fn a_full_listing_whose_saved_ids_are_gone_marks_nothing() {
        // R-REC-4 (never mark from an incomplete memory of the listing)
        let w = world_with(10).await;
        let id = object(&w, &w.binding("u7").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        w.clock.advance(TimeDelta::hours(1));
        let rig = Rig::paged(&w, 3);
        assert!(!rig.run(false).await.complete);
        assert!(!rig.run(false).await.complete);
        rig.cursors.lose_seen_parts();
        let last = rig.run(false).await;
        assert!(last.complete);
        assert!(last.plan.is_empty(), "{:?}", last.plan);
        assert_eq!(w.binding("u0").await.state, BindingState::Provisioned);
        assert_eq!(w.binding("u7").await.state, BindingState::Provisioned);
    }

    #[tokio::test]
    async fn an_account_bound_while_the_listing_ran_is_not_taken_for_deleted() {
        // R-REC-4 (replication lag: a new account may be missing from a listing)
        let w = world_with(6).await;
        w.clock.advance(TimeDelta::hours(1));
        let mut rig = Rig::paged(&w, 3);
        // Not the safeguard's business here: what is (not) planned is.
        rig.settings.safeguard = Safeguard::Share(0.5);
        assert!(!rig.run(false).await.complete);
        // Bound after the listing began: its account is not in the round.
        w.user("late").await;
        w.bind("late").await;
        // And one bound just before, still replicating: the listing does not show it.
        w.directory.set_replication_lag(TimeDelta::minutes(5));
        let passes = rig.round().await;
        assert!(passes.iter().all(|p| p.plan.is_empty()), "{passes:?}");
        assert_eq!(w.binding("late").await.state, BindingState::Provisioned);
        // Without a provisioning event (a binding made by import records none) the lookup
        // before marking is what protects an account the listing missed.
        let user = w.user("imported").await;
        let account = w
            .m365_account(&user.email, "imported", "Imported", "Existing-Pass-1")
            .await;
        let mut b = Binding::pending(user.id.clone(), w.tenant.id.clone(), "x");
        b.state = BindingState::Provisioned;
        b.m365_object_id = Some(account.id.clone());
        b.pending_reason = None;
        w.bindings.put(&b, Expect::Absent).await.unwrap();
        rig.deltas.lose_state();
        let first = rig.run(false).await;
        assert!(
            first.full_sync && !first.complete,
            "the round froze without it"
        );
        w.clock.advance(TimeDelta::minutes(10));
        let passes = rig.round().await;
        let last = passes.last().unwrap();
        assert_eq!(missing(last), vec![uid("imported")]);
        assert!(last.safeguard.is_none());
        assert_eq!(last.applied, 0, "looked up before marking: still there");
        assert_eq!(w.binding("imported").await.state, BindingState::Provisioned);
    }

    #[tokio::test]
    async fn a_binding_with_an_operation_in_flight_is_left_to_it() {
        // R-REC-4 (the operation meets the deleted account itself)
        let w = world_with(10).await;
        let id = object(&w, &w.binding("u4").await);
        w.directory
            .fail_next_call(crate::usecase::testkit::throttled());
        w.unbinder().unbind(&uid("u4")).await.unwrap();
        assert!(w.binding("u4").await.in_flight.is_some());
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        w.clock.advance(TimeDelta::hours(1));
        let report = Rig::new(&w).run(false).await;
        assert!(report.plan.is_empty(), "{:?}", report.plan);
    }

    /// A `blocked` binding that lost its object id (an unbind that raced an in-flight bind,
    /// R-BIND-12), its account in M365 as the race left it.
    async fn blocked_without_object_id(w: &World, id: &str, enabled: bool) -> M365ObjectId {
        w.user(id).await;
        w.bind(id).await;
        let mut b = w.binding(id).await;
        let account = object(w, &b);
        w.directory
            .set_account_enabled(&w.tenant.id, &account, enabled)
            .await
            .unwrap();
        b.state = BindingState::Blocked;
        b.m365_object_id = None;
        w.bindings
            .put(&b, Expect::Version(b.version))
            .await
            .unwrap();
        account
    }

    #[tokio::test]
    async fn a_blocked_binding_without_an_object_id_whose_account_is_enabled_gets_it_blocked() {
        // R-BIND-12
        let w = world_with(10).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let account = blocked_without_object_id(&w, "race", true).await;
        let linked = blocked_without_object_id(&w, "quiet", false).await;
        let report = rig.run(false).await;
        assert_eq!(report.account_lookups, 2);
        let mut planned = kinds(&report);
        planned.sort();
        assert_eq!(
            planned,
            vec![
                (RepairKind::Block, uid("race")),
                (RepairKind::LinkAccount, uid("quiet"))
            ]
        );
        assert!(
            !w.directory
                .user(&w.tenant.id, &account)
                .unwrap()
                .account_enabled
        );
        let b = w.binding("race").await;
        assert_eq!(
            (b.state, b.m365_object_id),
            (BindingState::Blocked, Some(account))
        );
        assert_eq!(
            w.binding("quiet").await.m365_object_id,
            Some(linked.clone())
        );
        let blocked_again = w.events_with_reason("reconcile_blocked_again").len();
        assert_eq!(blocked_again, 1, "only the account we changed");
        let next = rig.run(false).await;
        assert_eq!(next.account_lookups, 0);
        assert!(next.plan.is_empty());
        // Watched from now on: enabled in M365 again, blocked again by the delta.
        w.directory
            .set_account_enabled(&w.tenant.id, &linked, true)
            .await
            .unwrap();
        assert_eq!(
            kinds(&rig.run(false).await),
            vec![(RepairKind::Block, uid("quiet"))]
        );
    }

    #[tokio::test]
    async fn an_account_we_never_provisioned_or_none_at_all_is_left_alone_and_looked_up_once() {
        // R-BIND-12 (an account an admin made by hand is not ours to block)
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        // Unbound before any account existed: blocked, no account.
        let user = w.user("never").await;
        let mut b = Binding::pending(user.id.clone(), w.tenant.id.clone(), "x");
        b.state = BindingState::Blocked;
        w.bindings.put(&b, Expect::Absent).await.unwrap();
        // Later an admin creates an account with that UPN in M365.
        w.m365_account(&user.email, "never", "By hand", "Existing-Pass-1")
            .await;
        let report = rig.run(false).await;
        assert_eq!(report.account_lookups, 1);
        assert!(report.plan.is_empty(), "{:?}", report.plan);
        let b = w.binding("never").await;
        assert_eq!(b.m365_object_id, None);
        assert_eq!(b.account_lookup_version, Some(b.version));
        let calls = w.directory.calls();
        assert_eq!(rig.run(false).await.account_lookups, 0, "looked up once");
        assert_eq!(w.directory.calls() - calls, 1, "only the delta page");
        // A dry run looks up but records nothing.
        let mut changed = w.binding("never").await;
        changed.account_lookup_version = None;
        w.bindings
            .put(&changed, Expect::Version(changed.version))
            .await
            .unwrap();
        assert_eq!(rig.run(true).await.account_lookups, 1);
        assert_eq!(rig.run(true).await.account_lookups, 1);
    }

    #[tokio::test]
    async fn account_lookups_are_bounded_per_pass() {
        // R-BIND-12 (bounded Graph cost per pass)
        let w = world_with(1).await;
        let mut rig = Rig::new(&w);
        rig.settings.max_account_lookups = 2;
        rig.run(false).await;
        for i in 0..5 {
            let user = w.user(&format!("b{i}")).await;
            let mut b = Binding::pending(user.id, w.tenant.id.clone(), "x");
            b.state = BindingState::Blocked;
            w.bindings.put(&b, Expect::Absent).await.unwrap();
        }
        let made: Vec<usize> = [
            rig.run(false).await,
            rig.run(false).await,
            rig.run(false).await,
            rig.run(false).await,
        ]
        .iter()
        .map(|r| r.account_lookups)
        .collect();
        assert_eq!(made, vec![2, 2, 1, 0]);
    }

    #[tokio::test]
    async fn a_binding_whose_directory_user_is_gone_does_not_hold_a_lookup_slot_forever() {
        // R-BIND-12 (bounded lookups must still reach every binding)
        let w = world_with(10).await;
        let mut rig = Rig::new(&w);
        rig.settings.max_account_lookups = 1;
        rig.run(false).await;
        let mut orphan = Binding::pending(uid("gone"), w.tenant.id.clone(), "x");
        orphan.state = BindingState::Blocked;
        w.bindings.put(&orphan, Expect::Absent).await.unwrap();
        let account = blocked_without_object_id(&w, "race", true).await;
        let mut made = 0;
        for _ in 0..3 {
            let report = rig.run(false).await;
            assert!(report.safeguard.is_none());
            made += report.account_lookups;
        }
        assert_eq!(made, 1, "the orphan has no UPN to look up");
        assert!(
            !w.directory
                .user(&w.tenant.id, &account)
                .unwrap()
                .account_enabled
        );
        let orphan = w.binding("gone").await;
        assert_eq!(orphan.account_lookup_version, Some(orphan.version));
    }

    #[tokio::test]
    async fn a_pass_reports_stuck_work_and_a_dry_run_does_not_requeue_it() {
        // R-REC-5 (found by the pass; the caller re-queues)
        let w = world_with(3).await;
        w.user("slow").await;
        w.directory
            .fail_next_call(crate::usecase::testkit::throttled());
        w.bind("slow").await;
        assert_eq!(w.queue.drain().len(), 1, "the retry is lost");
        let rig = Rig::new(&w);
        assert!(rig.run(false).await.stuck.is_empty(), "not an hour yet");
        w.clock.advance(TimeDelta::hours(2));
        let report = rig.run(true).await;
        assert_eq!(report.stuck.len(), 1);
        assert_eq!(report.stuck[0].user_id, uid("slow"));
        assert!(w.queue.snapshot().is_empty());
    }

    #[tokio::test]
    async fn a_lost_delta_state_restarts_with_a_full_sync() {
        // R-REC-1 (graph-spec §5: 410 → full resync)
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        rig.deltas.lose_state();
        let report = rig.run(false).await;
        assert!(report.full_sync);
        assert!(report.plan.is_empty());
    }

    fn reported(id: &M365ObjectId) -> UserChange {
        crate::testing::bare_change(id, false)
    }

    #[tokio::test]
    async fn a_job_title_cleared_in_m365_is_restored_from_the_directory_once() {
        // R-REC-1 (a cleared attribute comes as null, graph-spec §5)
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = object(&w, &w.binding("u1").await);
        let clear = M365UserPatch {
            job_title: Some(None),
            ..M365UserPatch::default()
        };
        w.directory
            .update_user(&w.tenant.id, &id, &clear)
            .await
            .unwrap();
        let report = rig.run(false).await;
        assert_eq!(
            kinds(&report),
            vec![(RepairKind::UpdateAttributes, uid("u1"))]
        );
        assert_eq!(report.plan[0].attributes, vec!["jobTitle"]);
        let m365 = w.directory.user(&w.tenant.id, &id).unwrap();
        assert_eq!(m365.job_title.as_deref(), Some("Engineer"));
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn a_reported_null_is_drift_only_where_the_directory_has_a_value() {
        // R-REC-1
        let w = World::new().await;
        let mut user = w.user("u0").await;
        user.department = None;
        let id = M365ObjectId::generate();
        let change = UserChange {
            given_name: Some(None),
            surname: Some(Some("Vance".to_owned())),
            job_title: Some(None),
            department: Some(None),
            ..reported(&id)
        };
        let (patch, names) = attribute_patch(&user, &change);
        assert_eq!(names, vec!["givenName", "jobTitle"]);
        assert_eq!(patch.given_name, Some(Some("u0-given".to_owned())));
        assert_eq!(patch.job_title, Some(Some("Engineer".to_owned())));
        assert_eq!(patch.department, None, "empty on both sides: no patch");
        assert_eq!(patch.surname, None, "equal: no patch");
        // Nothing reported: nothing compared.
        let (patch, names) = attribute_patch(&user, &reported(&id));
        assert!(patch.is_empty() && names.is_empty());
    }

    #[test]
    fn of_several_delta_items_for_one_user_a_later_null_overrides_an_earlier_value() {
        // R-REC-1 (graph-spec §5: the same entity may appear more than once; merge in order)
        let id = M365ObjectId::generate();
        let mut merged = UserChange {
            job_title: Some(Some("Pirate".to_owned())),
            department: Some(Some("Sales".to_owned())),
            surname: Some(None),
            ..reported(&id)
        };
        merge(
            &mut merged,
            UserChange {
                job_title: Some(None),
                surname: Some(Some("Doe".to_owned())),
                ..reported(&id)
            },
        );
        assert_eq!(merged.job_title, Some(None), "a later null wins");
        assert_eq!(merged.surname, Some(Some("Doe".to_owned())));
        assert_eq!(
            merged.department,
            Some(Some("Sales".to_owned())),
            "not reported later: kept"
        );
    }

    /// `n` bound users as in [`world_with`], with M365's clock running `ahead` of ours.
    async fn skewed_world(n: usize, ahead: TimeDelta) -> World {
        let w = World::new().await;
        w.directory.set_clock_skew(ahead);
        for i in 0..n {
            let id = format!("u{i}");
            w.user(&id).await;
            w.passwords().set(&uid(&id), &secret(GOOD)).await.unwrap();
            w.bind(&id).await;
        }
        w
    }

    #[tokio::test]
    async fn our_password_push_is_not_taken_for_an_m365_change_when_m365s_clock_runs_ten_minutes_ahead()
     {
        // R-PWD-3 (M365 time against M365 time; the clock rule's grace is 2 minutes)
        let w = skewed_world(3, TimeDelta::minutes(10)).await;
        let rig = Rig::new(&w);
        assert!(rig.run(false).await.plan.is_empty(), "bind creates");
        w.clock.advance(TimeDelta::hours(1));
        w.passwords()
            .set(&uid("u0"), &secret("Another-Horse-8"))
            .await
            .unwrap();
        let binding = w.binding("u0").await;
        let m365 = w
            .directory
            .user(&w.tenant.id, &object(&w, &binding))
            .unwrap();
        assert_eq!(
            binding.m365_password_changed_at, m365.last_password_change,
            "the push stored M365's own stamp"
        );
        assert_eq!(
            m365.last_password_change,
            Some(w.clock.now() + TimeDelta::minutes(10))
        );
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn an_m365_password_change_moments_after_our_push_is_seen_by_its_stamp() {
        // R-PWD-3 (the clock rule would miss it: within its 2-minute grace)
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        w.clock.advance(TimeDelta::hours(1));
        w.passwords()
            .set(&uid("u1"), &secret("Another-Horse-8"))
            .await
            .unwrap();
        w.clock.advance(TimeDelta::seconds(30));
        let id = object(&w, &w.binding("u1").await);
        w.directory
            .set_password(&w.tenant.id, &id, &secret("Changed-In-M365-1"))
            .await
            .unwrap();
        // Graph's stamps have whole seconds: let the overwrite's be a later one.
        w.clock.advance(TimeDelta::seconds(5));
        let report = rig.run(false).await;
        assert_eq!(
            kinds(&report),
            vec![(RepairKind::OverwritePassword, uid("u1"))]
        );
        let pushed = w.directory.password(&w.tenant.id, &id).unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&pushed),
            "Another-Horse-8"
        );
        assert_eq!(
            w.binding("u1").await.m365_password_changed_at,
            w.directory
                .user(&w.tenant.id, &id)
                .unwrap()
                .last_password_change,
            "the overwrite stored its own stamp"
        );
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn a_push_whose_stamp_could_not_be_read_back_falls_back_to_the_clock_rule_and_settles() {
        // R-PWD-3 (fallback: no stamp → our clock against M365's; a skew beyond the grace makes
        // our own push look like M365's once, then the overwrite's stamp settles it)
        let w = skewed_world(3, TimeDelta::minutes(10)).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        w.clock.advance(TimeDelta::hours(1));
        // The privilege check (two reads, R-BIND-11) and the push's PATCH go through; its
        // read-back fails.
        for _ in 0..3 {
            w.directory.pass_next_call();
        }
        w.directory
            .fail_next_call(crate::usecase::testkit::throttled());
        w.passwords()
            .set(&uid("u2"), &secret("Another-Horse-8"))
            .await
            .unwrap();
        assert_eq!(w.binding("u2").await.m365_password_changed_at, None);
        w.clock.advance(TimeDelta::seconds(5));
        let report = rig.run(false).await;
        assert_eq!(
            kinds(&report),
            vec![(RepairKind::OverwritePassword, uid("u2"))]
        );
        assert!(w.binding("u2").await.m365_password_changed_at.is_some());
        w.clock.advance(TimeDelta::hours(1));
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn a_binding_stored_before_the_stamp_existed_keeps_the_clock_rule() {
        // R-PWD-3 (old bindings: a change later than our last push + grace is M365's)
        let w = world_with(3).await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        for id in ["u0", "u1"] {
            let mut b = w.binding(id).await;
            b.m365_password_changed_at = None;
            w.bindings
                .put(&b, Expect::Version(b.version))
                .await
                .unwrap();
        }
        w.clock.advance(TimeDelta::hours(1));
        let id = object(&w, &w.binding("u1").await);
        w.directory
            .set_password(&w.tenant.id, &id, &secret("Changed-In-M365-1"))
            .await
            .unwrap();
        let report = rig.run(false).await;
        assert_eq!(
            kinds(&report),
            vec![(RepairKind::OverwritePassword, uid("u1"))],
            "u0 unchanged, u1 changed an hour after our push"
        );
        assert!(rig.run(false).await.plan.is_empty());
    }

    #[tokio::test]
    async fn reconcile_never_writes_to_a_privileged_account_not_adopted_that_way_and_says_so() {
        // R-BIND-11 (roles granted after binding, the consenting admin), R-REC-1, R-REC-3
        let w = world_with(12).await;
        w.unbinder().unbind(&uid("u1")).await.unwrap();
        w.unbinder().unbind(&uid("u5")).await.unwrap();
        let rig = Rig::new(&w);
        rig.run(false).await;
        let id = |n: &str| {
            let w = &w;
            let n = n.to_owned();
            async move { object(w, &w.binding(&n).await) }
        };
        let (u1, u2, u3, u4, u5) = (
            id("u1").await,
            id("u2").await,
            id("u3").await,
            id("u4").await,
            id("u5").await,
        );
        // Drift on five accounts; four of them are privileged by now.
        for blocked in [&u1, &u5] {
            w.directory
                .set_account_enabled(&w.tenant.id, blocked, true)
                .await
                .unwrap();
        }
        let pirate = M365UserPatch {
            job_title: Some(Some("Pirate".to_owned())),
            ..M365UserPatch::default()
        };
        for drifted in [&u2, &u3] {
            w.directory
                .update_user(&w.tenant.id, drifted, &pirate)
                .await
                .unwrap();
        }
        w.clock.advance(TimeDelta::hours(1));
        w.directory
            .set_password(&w.tenant.id, &u4, &secret("Changed-In-M365-1"))
            .await
            .unwrap();
        w.directory
            .grant_role(&w.tenant.id, &u1, "Global Administrator");
        w.directory
            .grant_role(&w.tenant.id, &u5, "User Administrator");
        w.directory.set_consenting_admin(&w.tenant.id, Some(&u2));
        w.helpdesk_group_with(&u4);
        let failures = w.failures.all().len();
        let puts = rig.cursors.puts();

        let dry = rig.run(true).await;
        assert_eq!(dry.plan.len(), 5, "{:?}", dry.plan);
        assert!(
            dry.safeguard.is_none(),
            "skipped blocks do not count (2 of 12 would)"
        );

        let report = rig.run(false).await;
        let skipped: Vec<(RepairKind, UserId)> = report
            .plan
            .iter()
            .filter(|r| r.skipped == Some("privileged_account"))
            .map(|r| (r.kind, r.user_id.clone()))
            .collect();
        assert_eq!(skipped.len(), 4, "{:?}", report.plan);
        for expected in [
            (RepairKind::Block, uid("u1")),
            (RepairKind::UpdateAttributes, uid("u2")),
            (RepairKind::OverwritePassword, uid("u4")),
            (RepairKind::Block, uid("u5")),
        ] {
            assert!(skipped.contains(&expected), "{expected:?} in {skipped:?}");
        }
        assert!(report.safeguard.is_none());
        assert_eq!((report.applied, report.skipped, report.failed), (1, 4, 0));
        // The skip is visible: in the plan (with why) and in the failures list.
        let json = serde_json::to_value(&report).unwrap();
        let u2_entry = json["plan"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["userId"] == "u2")
            .unwrap()
            .clone();
        assert_eq!(u2_entry["skipped"], "privileged_account");
        assert!(
            u2_entry["skippedWhy"]
                .as_str()
                .unwrap()
                .contains("consented"),
            "{u2_entry}"
        );
        assert_eq!(json["skipped"], 4);
        let new_failures: Vec<_> = w.failures.all()[failures..].to_vec();
        assert_eq!(new_failures.len(), 4);
        assert!(new_failures.iter().all(|f| f.code == "privileged_account"));
        // M365 untouched for the privileged four, repaired for u3.
        let m365 = |id: &M365ObjectId| w.directory.user(&w.tenant.id, id).unwrap();
        assert!(m365(&u1).account_enabled && m365(&u5).account_enabled);
        assert_eq!(m365(&u2).job_title.as_deref(), Some("Pirate"));
        assert_eq!(m365(&u3).job_title.as_deref(), Some("Engineer"));
        let pw = w.directory.password(&w.tenant.id, &u4).unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&pw),
            "Changed-In-M365-1"
        );
        assert_eq!(w.binding("u1").await.state, BindingState::Blocked);
        // Skipping is a decision, not a failure to retry: the cursor moved on.
        assert!(rig.cursors.puts() > puts);
    }

    #[tokio::test]
    async fn reconcile_repairs_a_privileged_account_adopted_with_adopt_privileged() {
        // R-BIND-11 (adopted that way: reconcile keeps it in line), R-REC-1
        let w = World::new().await;
        let user = w.user("root").await;
        let existing = w
            .directory
            .create_user(
                &w.tenant.id,
                &crate::model::NewM365User {
                    user_principal_name: user.email.clone(),
                    mail_nickname: "root".into(),
                    display_name: user.display_name.clone(),
                    given_name: user.given_name.clone(),
                    surname: user.surname.clone(),
                    job_title: user.job_title.clone(),
                    department: user.department.clone(),
                    attributes: Default::default(),
                    account_enabled: true,
                    password: secret("Existing-Pass-1"),
                },
            )
            .await
            .unwrap();
        w.directory
            .grant_role(&w.tenant.id, &existing.id, "Global Administrator");
        w.bind_adopting_privileged("root").await;
        let rig = Rig::new(&w);
        rig.run(false).await;
        let patch = M365UserPatch {
            job_title: Some(Some("Pirate".to_owned())),
            ..M365UserPatch::default()
        };
        w.directory
            .update_user(&w.tenant.id, &existing.id, &patch)
            .await
            .unwrap();
        let calls = w.directory.calls();
        let report = rig.run(false).await;
        assert_eq!((report.applied, report.skipped), (1, 0));
        assert!(report.plan[0].skipped.is_none());
        let m365 = w.directory.user(&w.tenant.id, &existing.id).unwrap();
        assert_eq!(m365.job_title, user.job_title);
        assert_eq!(
            w.directory.calls() - calls,
            2,
            "the delta page and the PATCH: no privileged read when every write is to accounts \
             adopted that way"
        );
    }
}
