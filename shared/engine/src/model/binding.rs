//! Bindings: the link between a directory user and its M365 account in one tenant (R-BIND-1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{M365ObjectId, OperationId, OperationKind, TenantId, UserId};

/// State of a binding (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingState {
    /// Work is queued (retry), see `pending_reason` (R-BIND-6).
    Pending,
    /// The M365 account exists, is ours and can sign in.
    Provisioned,
    /// Unbound: sign-in blocked in M365 (R-BIND-5).
    Blocked,
    /// Sign-in blocked while the binding stays: the directory password expired (R-PWD-4) or the
    /// user is disabled in the directory (R-BIND-9); [`Binding::suspension`] says which.
    Suspended,
    /// The retry budget ran out; see `last_error` (R-BIND-6).
    Error,
    /// The account was deleted in M365 (R-BIND-8).
    DeletedInM365,
    /// The tenant was deauthorized (R-CONN-5).
    Unselected,
}

impl BindingState {
    /// The snake_case name used in the API and in store keys.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Provisioned => "provisioned",
            Self::Blocked => "blocked",
            Self::Suspended => "suspended",
            Self::Error => "error",
            Self::DeletedInM365 => "deleted_in_m365",
            Self::Unselected => "unselected",
        }
    }

    /// Every state, in declaration order.
    pub const ALL: [Self; 7] = [
        Self::Pending,
        Self::Provisioned,
        Self::Blocked,
        Self::Suspended,
        Self::Error,
        Self::DeletedInM365,
        Self::Unselected,
    ];
}

/// Why a binding is `suspended` (`suspendedReason` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuspendedReason {
    /// The directory password is older than the policy's maximum age (R-PWD-4): a new password
    /// re-enables the account.
    PasswordExpired,
    /// The user's `state` is `disabled` in the directory (R-BIND-9): back to `active`, the account
    /// is re-enabled (unless the password expired meanwhile).
    DirectoryDisabled,
}

impl SuspendedReason {
    /// The snake_case name used in the API and in event reasons.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordExpired => "password_expired",
            Self::DirectoryDisabled => "directory_disabled",
        }
    }
}

/// The last failure seen on a binding, with Graph's request id for diagnostics (R-AUD-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingError {
    /// Machine code (e.g. `throttled`, `upn_held`).
    pub code: String,
    /// Human message, without secrets.
    pub message: String,
    /// Graph's `request-id`, when Graph answered.
    pub graph_request_id: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// A directory user's binding to one tenant (one binding per user at most, R-BIND-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// The bound user.
    pub user_id: UserId,
    /// The tenant routed to by the user's email domain.
    pub tenant_id: TenantId,
    /// The M365 account, once created or adopted.
    pub m365_object_id: Option<M365ObjectId>,
    /// Current state.
    pub state: BindingState,
    /// Why it is `pending`, in words.
    pub pending_reason: Option<String>,
    /// Last failure.
    pub last_error: Option<BindingError>,
    /// The bind or unbind under way for this binding (waiting on the retry queue), if any.
    /// Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
    /// M365's `lastPasswordChangeDateTime` read back after our latest password write to this
    /// account (bind create, password push, reconcile overwrite; graph-spec §3.8): reconcile
    /// counts a password change as M365's only when M365 reports a later one (R-PWD-3). `None`
    /// when not known (records written before it existed, an adopted account, or the read-back
    /// failed): reconcile then falls back to comparing with our own clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m365_password_changed_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version assigned by the store (0 before the first write).
    pub version: u64,
    /// Why the binding is `suspended` (R-BIND-9, R-PWD-4); `None` in any other state. Records
    /// written before it existed were suspended only by password expiry: see
    /// [`Binding::suspension`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_reason: Option<SuspendedReason>,
    /// The directory's `passwordChangedAt` of the directory password we last wrote to this account
    /// (bind create, password push, re-bind, reconcile overwrite): a directory password set since
    /// (while the user was unbound, for instance) is pushed when the user is bound again
    /// (R-BIND-12). `None`: none written yet, or a record written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_password_set_at: Option<DateTime<Utc>>,
    /// The account was privileged (a directory role, or the connection's consenting admin) when
    /// it was adopted or imported, and the request said `adoptPrivileged` (R-BIND-11): password
    /// pushes and reconcile may write to it. Without it they leave a privileged account alone.
    /// Absent (false) in records written before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopted_privileged: bool,
    /// For a `blocked` or `suspended` binding without an object id: the version this binding got
    /// from reconcile's write recording that a lookup of its UPN in M365 found no account of ours
    /// (R-BIND-12). While the version is unchanged the lookup is not repeated; any later write (a
    /// new bind or unbind) moves the version and the binding is looked up again. Stores give a
    /// written binding the expected version + 1 (the bindings contract), which is what makes the
    /// mark predictable. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_lookup_version: Option<u64>,
    /// The latest bind restored the account from M365's `deletedItems` (R-BIND-10): same object
    /// id, with its mailbox, licences and group memberships. Reset by the next bind. Absent
    /// (false) in records written before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub restored: bool,
    /// Why the latest bind could not restore the deleted account it found (R-BIND-10: another
    /// object took its address meanwhile), so it fell back to the address wait and a new
    /// account. `None` when nothing was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_conflict: Option<String>,
    /// The licences we granted this user's account and how their assignment went (R-LIC-1).
    /// Absent until licences were first looked at for it (records written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licensing: Option<super::Licensing>,
}

// serde's `skip_serializing_if` takes a function of `&T`.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}

impl Binding {
    /// Why a `suspended` binding is suspended; `None` when it is not suspended. A suspended record
    /// without a reason predates [`SuspendedReason::DirectoryDisabled`]: password expiry was the
    /// only way to be suspended then.
    #[must_use]
    pub fn suspension(&self) -> Option<SuspendedReason> {
        (self.state == BindingState::Suspended).then(|| {
            self.suspended_reason
                .unwrap_or(SuspendedReason::PasswordExpired)
        })
    }

    /// A new binding in state `pending` (version 0).
    #[must_use]
    pub fn pending(user_id: UserId, tenant_id: TenantId, reason: impl Into<String>) -> Self {
        Self {
            user_id,
            tenant_id,
            m365_object_id: None,
            state: BindingState::Pending,
            pending_reason: Some(reason.into()),
            last_error: None,
            in_flight: None,
            m365_password_changed_at: None,
            version: 0,
            suspended_reason: None,
            pushed_password_set_at: None,
            adopted_privileged: false,
            account_lookup_version: None,
            restored: false,
            restore_conflict: None,
            licensing: None,
        }
    }
}

/// The state-changing operation (bind or unbind) a binding waits on. A retry whose operation id is
/// not this one was superseded by a later request and is dropped (R-BIND-5, R-BIND-6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    /// The operation.
    pub operation_id: OperationId,
    /// Its kind (`user_bind` or `user_unbind`).
    pub kind: OperationKind,
    /// When it started.
    pub since: DateTime<Utc>,
    /// When M365 first answered that a deleted account still holds the address (the address
    /// wait is measured from here, R-BIND-8).
    pub address_held_since: Option<DateTime<Utc>>,
    /// When a create was sent whose outcome is unknown (or may have committed): an account found
    /// by UPN afterwards is the one this operation created (R-BIND-2, R-BIND-3).
    pub create_sent_at: Option<DateTime<Utc>>,
    /// Whether to send the welcome notification once bound (R-BIND-4).
    pub welcome: bool,
    /// The bind request said `adoptPrivileged` (R-BIND-11): a privileged account found by UPN may
    /// be adopted. Absent (false) in records written before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub adopt_privileged: bool,
    /// When the retry message last queued for this operation is due (its `not_before`), recorded
    /// by every deferral that sends one (R-REC-5): reconcile re-queues an operation in flight for
    /// over an hour whose retry is long overdue, or that never had one (the message was lost, or
    /// the function died between two writes). `None`: no retry queued for this operation yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_due_at: Option<DateTime<Utc>>,
    /// The request said `"restore": false` (R-BIND-10): a deleted account is not restored, the
    /// bind waits for the address and creates a new one. Absent (false: restore) in records
    /// written before it existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_restore: bool,
    /// The deleted account this bind restores (R-BIND-10): the binding's own account, or one
    /// found by UPN among deleted users. Written before the restore is sent, so an account found
    /// afterwards with this id is the restored one even when the restore's answer was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_of: Option<M365ObjectId>,
    /// Who asked for the operation (R-AUD-1): its retries, even one re-queued by reconcile,
    /// record events in their name. Absent in records written before actors existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<super::Actor>,
}

impl InFlight {
    /// Operation `operation_id` of `kind`, waiting since `since`, with nothing sent yet, no
    /// welcome, no privileged adoption, no retry queued and nothing to restore.
    #[must_use]
    pub fn new(operation_id: OperationId, kind: OperationKind, since: DateTime<Utc>) -> Self {
        Self {
            operation_id,
            kind,
            since,
            address_held_since: None,
            create_sent_at: None,
            welcome: false,
            adopt_privileged: false,
            retry_due_at: None,
            no_restore: false,
            restore_of: None,
            actor: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OperationSubject;

    /// `user`'s first bind, in flight since now.
    fn user_bind(user: UserId) -> InFlight {
        let op = OperationId::new(OperationKind::UserBind, &OperationSubject::User(user), 0);
        InFlight::new(op, OperationKind::UserBind, Utc::now())
    }

    #[test]
    fn a_binding_round_trips_its_in_flight_operation_and_reads_records_without_one() {
        // R-BIND-6 (the waiting operation survives the store)
        let user = UserId::parse("alice").unwrap();
        let mut b = Binding::pending(user.clone(), TenantId::generate(), "throttled");
        let json = serde_json::to_value(&b).unwrap();
        assert!(json.get("inFlight").is_none(), "absent when there is none");
        b.in_flight = Some(InFlight {
            create_sent_at: Some(Utc::now()),
            ..user_bind(user)
        });
        let json = serde_json::to_value(&b).unwrap();
        assert!(json["inFlight"]["createSentAt"].is_string());
        let back: Binding = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn a_suspended_binding_says_why_and_old_suspended_records_read_as_password_expiry() {
        // R-BIND-9, R-PWD-4 (records written before the reason existed)
        let mut b = Binding::pending(UserId::parse("alice").unwrap(), TenantId::generate(), "x");
        assert_eq!(b.suspension(), None);
        b.state = BindingState::Suspended;
        let old = serde_json::to_value(&b).unwrap();
        assert!(old.get("suspendedReason").is_none());
        let read: Binding = serde_json::from_value(old).unwrap();
        assert_eq!(read.suspended_reason, None);
        assert_eq!(read.suspension(), Some(SuspendedReason::PasswordExpired));
        b.suspended_reason = Some(SuspendedReason::DirectoryDisabled);
        b.pushed_password_set_at = Some(Utc::now());
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["suspendedReason"], "directory_disabled");
        assert!(json["pushedPasswordSetAt"].is_string());
        let back: Binding = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.suspension(), Some(SuspendedReason::DirectoryDisabled));
        b.state = BindingState::Provisioned;
        assert_eq!(
            b.suspension(),
            None,
            "only a suspended binding is suspended"
        );
    }

    #[test]
    fn a_binding_remembers_a_privileged_adoption_and_reads_records_written_before_it_existed() {
        // R-BIND-11 (the opt-in survives the store; older records mean "not adopted that way")
        let mut b = Binding::pending(UserId::parse("alice").unwrap(), TenantId::generate(), "x");
        let old = serde_json::to_value(&b).unwrap();
        assert!(old.get("adoptedPrivileged").is_none(), "absent when false");
        let read: Binding = serde_json::from_value(old).unwrap();
        assert!(!read.adopted_privileged);
        b.adopted_privileged = true;
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["adoptedPrivileged"], true);
        let back: Binding = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn the_retry_due_time_and_the_lookup_mark_round_trip_and_are_absent_from_older_records() {
        // R-REC-5, R-BIND-12 (stored bindings written before the fields existed still load)
        let user = UserId::parse("alice").unwrap();
        let mut b = Binding::pending(user.clone(), TenantId::generate(), "throttled");
        b.in_flight = Some(InFlight {
            welcome: true,
            ..user_bind(user)
        });
        let old = serde_json::to_value(&b).unwrap();
        assert!(old["inFlight"].get("retryDueAt").is_none());
        assert!(old.get("accountLookupVersion").is_none());
        assert_eq!(serde_json::from_value::<Binding>(old).unwrap(), b);
        if let Some(f) = b.in_flight.as_mut() {
            f.retry_due_at = Some(Utc::now());
        }
        b.account_lookup_version = Some(3);
        let json = serde_json::to_value(&b).unwrap();
        assert!(json["inFlight"]["retryDueAt"].is_string());
        assert_eq!(json["accountLookupVersion"], 3);
        assert_eq!(serde_json::from_value::<Binding>(json).unwrap(), b);
    }

    #[test]
    fn a_binding_keeps_m365s_password_stamp_and_reads_records_written_before_it_existed() {
        // R-PWD-3 (stored bindings without the stamp still load: the clock rule applies to them)
        let mut b = Binding::pending(UserId::parse("alice").unwrap(), TenantId::generate(), "x");
        let old = serde_json::to_value(&b).unwrap();
        assert!(old.get("m365PasswordChangedAt").is_none());
        let read: Binding = serde_json::from_value(old).unwrap();
        assert_eq!(read.m365_password_changed_at, None);
        b.m365_password_changed_at = Some(Utc::now());
        let json = serde_json::to_value(&b).unwrap();
        assert!(json["m365PasswordChangedAt"].is_string());
        let back: Binding = serde_json::from_value(json).unwrap();
        assert_eq!(back, b);
    }
}
