//! The M365 side of a user, in our words (what the [`crate::ports::Directory`] port speaks).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{AttributesPatch, Email, M365ObjectId, UserAttributes};

/// A user as M365 holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct M365User {
    /// Graph object id.
    pub id: M365ObjectId,
    /// UPN as M365 spells it (not necessarily a valid directory [`Email`]: guests, legacy names).
    pub user_principal_name: String,
    /// Primary SMTP address (`null` for unlicensed users, graph-spec §3.1).
    pub mail: Option<String>,
    /// Display name.
    pub display_name: String,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub surname: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// The R-ATTR-1 attributes as M365 holds them.
    #[serde(flatten)]
    pub attributes: UserAttributes,
    /// Whether sign-in is allowed.
    pub account_enabled: bool,
    /// `lastPasswordChangeDateTime` (R-PWD-3).
    pub last_password_change: Option<DateTime<Utc>>,
}

impl M365User {
    /// An enabled account with just its id, UPN and display name: no mail, names, attributes
    /// or password change (fixtures and synthetic directories build the rest on it).
    #[must_use]
    pub fn enabled(
        id: M365ObjectId,
        user_principal_name: impl Into<String>,
        display_name: impl Into<String>,
    ) -> Self {
        Self {
            id,
            user_principal_name: user_principal_name.into(),
            mail: None,
            display_name: display_name.into(),
            given_name: None,
            surname: None,
            job_title: None,
            department: None,
            attributes: UserAttributes::default(),
            account_enabled: true,
            last_password_change: None,
        }
    }
}

/// What the engine asks M365 to create. `Debug` redacts the password.
#[derive(Debug, Clone)]
pub struct NewM365User {
    /// UPN = the directory email (R-BIND-2).
    pub user_principal_name: Email,
    /// `mailNickname` (≤ 64 characters, graph-spec §3.1).
    pub mail_nickname: String,
    /// Display name.
    pub display_name: String,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub surname: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// The R-ATTR-1 attributes (unset ones are not sent).
    pub attributes: UserAttributes,
    /// Whether sign-in is allowed from the start.
    pub account_enabled: bool,
    /// Initial password (the directory's, or a random compliant one).
    pub password: SecretString,
}

/// Attribute changes for an existing M365 user: `None` leaves a field as it is
/// (PATCH semantics, graph-spec §3.4); `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct M365UserPatch {
    /// New display name (it cannot be cleared in M365).
    pub display_name: Option<String>,
    /// New first name.
    pub given_name: Option<Option<String>>,
    /// New last name.
    pub surname: Option<Option<String>>,
    /// New job title.
    pub job_title: Option<Option<String>>,
    /// New department.
    pub department: Option<Option<String>>,
    /// Changes to the R-ATTR-1 attributes.
    pub attributes: AttributesPatch,
}

impl M365UserPatch {
    /// True when nothing would change (Graph refuses empty PATCH bodies, graph-spec §2.8).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A directory (administrator) role an M365 account holds (R-BIND-11), as Graph's
/// `directoryRole` names it (`displayName`, `roleTemplateId`). Both may be unknown when the
/// connection may list memberships but not read roles (Graph then returns the object's type and
/// id only: "limited information").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryRole {
    /// E.g. `Global Administrator`.
    pub display_name: Option<String>,
    /// The built-in role's template id (e.g. `62e90394-69f5-4237-9190-012177145e10`).
    pub role_template_id: Option<String>,
}

impl DirectoryRole {
    /// The name to show: the display name, else the template id, else `a directory role`.
    #[must_use]
    pub fn label(&self) -> &str {
        self.display_name
            .as_deref()
            .or(self.role_template_id.as_deref())
            .unwrap_or("a directory role")
    }
}

/// Why an M365 account counts as privileged (R-BIND-11): the directory roles it holds (directly
/// or through a role-assignable group) and whether it is the admin whose consent the tenant's
/// connection carries. m365-sync adopts, or writes to, such an account only when the binding
/// was asked with `adoptPrivileged`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Privilege {
    /// The directory roles held (sorted, without duplicates).
    pub directory_roles: Vec<DirectoryRole>,
    /// The account consented the connection (its delegated tokens are this admin's).
    pub consenting_admin: bool,
}

impl Privilege {
    /// True when the account holds a role or consented the connection.
    #[must_use]
    pub fn is_privileged(&self) -> bool {
        self.consenting_admin || !self.directory_roles.is_empty()
    }

    /// In words, for error messages: `holds Global Administrator; consented the connection`.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.directory_roles.is_empty() {
            let names: Vec<&str> = self
                .directory_roles
                .iter()
                .map(DirectoryRole::label)
                .collect();
            parts.push(format!("holds the directory role {}", names.join(", ")));
        }
        if self.consenting_admin {
            parts.push("is the admin who consented the tenant's connection".to_owned());
        }
        if parts.is_empty() {
            "is not privileged".to_owned()
        } else {
            parts.join(" and ")
        }
    }
}

/// A soft-deleted M365 user in the tenant's `deletedItems` (graph-spec §3.5, §3.6): restorable,
/// with its mailbox, licences and group memberships, until M365 purges it 30 days after
/// `deleted_at` (R-BIND-10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedM365User {
    /// Graph object id (restore brings back the same id).
    pub id: M365ObjectId,
    /// UPN as the deleted item shows it.
    pub user_principal_name: String,
    /// `deletedDateTime`; `None` when Graph did not say.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl DeletedM365User {
    /// M365 keeps deleted users this long, then purges them (graph-spec §3.6).
    pub const RETENTION_DAYS: i64 = 30;

    /// Whether M365 still keeps it at `now` (deleted less than 30 days ago; an unknown
    /// deletion time counts as restorable: M365 answers 404 to the restore otherwise).
    #[must_use]
    pub fn restorable_at(&self, now: DateTime<Utc>) -> bool {
        self.deleted_at
            .is_none_or(|at| now - at < chrono::TimeDelta::days(Self::RETENTION_DAYS))
    }
}
