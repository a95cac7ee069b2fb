//! The M365 side of a user, in our words (what the [`crate::ports::Directory`] port speaks).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Email, M365ObjectId};

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
    /// Whether sign-in is allowed.
    pub account_enabled: bool,
    /// `lastPasswordChangeDateTime` (R-PWD-3).
    pub last_password_change: Option<DateTime<Utc>>,
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
}

impl M365UserPatch {
    /// True when nothing would change (Graph refuses empty PATCH bodies, graph-spec §2.8).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
