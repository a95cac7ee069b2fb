//! A directory group's binding to one tenant's security group (R-GRP-1): which M365 group mirrors
//! it, how far the mirroring got, and which members could not be mirrored and why.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BindingError, GroupId, M365ObjectId, TenantId, UserId};

/// Longest mail nickname M365 accepts on a group (graph-spec §4.1: 64 characters).
pub const MAX_MAIL_NICKNAME: usize = 64;

/// The prefix of every mail nickname we derive, so our groups are recognisable in M365.
pub const MAIL_NICKNAME_PREFIX: &str = "m365sync-";

/// The mail nickname of the security group that mirrors directory group `id`: deterministic, so
/// a second bind (or a retry after a lost answer) finds and adopts the same M365 group instead of
/// creating another. Group ids use ASCII letters, digits, `-`, `_` and `.`, all valid in a
/// nickname (graph-spec §4.1: ≤ 64 characters, ASCII except `@ () \ [] " ; : <> , SPACE`); any
/// other character would become `-`. Nicknames compare case-insensitively in `$filter`, so an id
/// with capitals (lower-cased here) or one too long for 64 characters keeps a prefix and gets a
/// hash of the exact id: two different ids never share a nickname.
#[must_use]
pub fn mail_nickname_for(id: &GroupId) -> String {
    let cleaned: String = id
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let lossless = cleaned.eq_ignore_ascii_case(id.as_str())
        && id.as_str().chars().all(|c| !c.is_ascii_uppercase());
    let whole = format!("{MAIL_NICKNAME_PREFIX}{cleaned}");
    if lossless && whole.len() <= MAX_MAIL_NICKNAME {
        return whole;
    }
    // Lossy (case folded, characters replaced) or too long: disambiguate with a hash of the id.
    let digest = fnv1a(id.as_str().as_bytes());
    let hash = format!("{digest:016x}");
    let room = MAX_MAIL_NICKNAME - MAIL_NICKNAME_PREFIX.len() - hash.len() - 1;
    let head: String = cleaned.chars().take(room).collect();
    format!("{MAIL_NICKNAME_PREFIX}{head}-{hash}")
}

/// FNV-1a (64 bit): a stable, dependency-free hash for nickname disambiguation (not security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// State of a group binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBindingState {
    /// Work waits on the retry queue (e.g. replication lag of a new group), see `pending_reason`.
    Pending,
    /// The security group exists and its membership mirrors the bound members.
    Provisioned,
    /// A permanent failure or the retry budget ran out; see `last_error`.
    Error,
}

impl GroupBindingState {
    /// The snake_case name used in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Provisioned => "provisioned",
            Self::Error => "error",
        }
    }
}

/// Why a directory member is not mirrored into the security group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The user has no binding (or it was unselected at deauthorization).
    NotBound,
    /// The user is bound to another tenant.
    OtherTenant,
    /// The user's binding has no M365 account yet, or the account was deleted in M365.
    NoAccount,
}

/// A directory member left out of the mirror, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedMember {
    /// The directory user.
    pub user_id: UserId,
    /// Why.
    pub reason: SkipReason,
}

/// A directory group's binding to a tenant (R-GRP-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupBinding {
    /// The tenant the group is bound to.
    pub tenant_id: TenantId,
    /// The mail nickname the M365 group is found by ([`mail_nickname_for`]).
    pub mail_nickname: String,
    /// The M365 security group, once created or adopted.
    pub m365_group_id: Option<M365ObjectId>,
    /// Current state.
    pub state: GroupBindingState,
    /// Why it is pending (a machine code such as `not_yet_visible`).
    #[serde(default)]
    pub pending_reason: Option<String>,
    /// Retries used by the current pending run (0 when not pending).
    #[serde(default)]
    pub attempt: u32,
    /// Directory members mirrored into the M365 group at the last successful sync.
    #[serde(default)]
    pub mirrored: Vec<UserId>,
    /// Directory members left out at the last sync, with the reason.
    #[serde(default)]
    pub skipped: Vec<SkippedMember>,
    /// The last failure.
    #[serde(default)]
    pub last_error: Option<BindingError>,
    /// When the last successful sync finished.
    #[serde(default)]
    pub synced_at: Option<DateTime<Utc>>,
}

impl GroupBinding {
    /// A new binding of group `id` to `tenant`, pending its first sync.
    #[must_use]
    pub fn new(id: &GroupId, tenant: TenantId) -> Self {
        Self {
            tenant_id: tenant,
            mail_nickname: mail_nickname_for(id),
            m365_group_id: None,
            state: GroupBindingState::Pending,
            pending_reason: None,
            attempt: 0,
            mirrored: Vec::new(),
            skipped: Vec::new(),
            last_error: None,
            synced_at: None,
        }
    }
}

/// A group as M365 holds it (the parts the engine needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct M365Group {
    /// Object id.
    pub id: M365ObjectId,
    /// Display name (not unique in Entra).
    pub display_name: String,
    /// Mail nickname.
    pub mail_nickname: String,
    /// `securityEnabled` and not mail-enabled.
    pub is_security_group: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gid(s: &str) -> GroupId {
        GroupId::parse(s).unwrap()
    }

    #[test]
    fn the_mail_nickname_of_a_group_is_deterministic_and_within_m365_limits() {
        // R-GRP-1 (adopt by a nickname derived from the directory group)
        assert_eq!(mail_nickname_for(&gid("sales")), "m365sync-sales");
        assert_eq!(
            mail_nickname_for(&gid("sales")),
            mail_nickname_for(&gid("sales"))
        );
        let long = gid(&"g".repeat(64));
        let nick = mail_nickname_for(&long);
        assert!(nick.len() <= MAX_MAIL_NICKNAME, "{nick}");
        assert!(nick.starts_with(MAIL_NICKNAME_PREFIX));
    }

    #[test]
    fn ids_that_differ_only_in_case_get_different_lower_case_nicknames() {
        // R-GRP-1 (never adopt another directory group's M365 group)
        let a = mail_nickname_for(&gid("Sales"));
        let b = mail_nickname_for(&gid("sales"));
        assert_ne!(a, b);
        let c = mail_nickname_for(&gid("A.b_C-1"));
        assert_ne!(c, mail_nickname_for(&gid("a.b_c-1")));
        for n in [a, c] {
            assert!(
                n.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')),
                "{n}"
            );
        }
    }
}
