//! Directory security groups (R-GRP-1).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::user::{MAX_DISPLAY_NAME, check_len};
use super::{GroupBinding, GroupId, UserId};
use crate::error::{FieldProblem, InvalidInput};
use crate::policy::name::check_name;

/// A group of the company directory; only its bound members are mirrored to M365.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// Caller-chosen id.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Member user ids.
    pub members: BTreeSet<UserId>,
    /// Optimistic-concurrency version assigned by the store (0 before the first write).
    pub version: u64,
    /// Its binding to a tenant's security group, once bound (R-GRP-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<GroupBinding>,
}

impl Group {
    /// A new group (version 0).
    #[must_use]
    pub fn new(
        id: GroupId,
        name: impl Into<String>,
        members: impl IntoIterator<Item = UserId>,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            members: members.into_iter().collect(),
            version: 0,
            binding: None,
        }
    }

    /// Checks the name against M365's group display-name rules (required, ≤ 256 characters) and
    /// refuses control and bidirectional-override characters in it ([`crate::policy::name`]).
    ///
    /// # Errors
    /// [`InvalidInput::Field`] or [`InvalidInput::Name`] for `name`.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.name.trim().is_empty() {
            return Err(InvalidInput::Field {
                field: "name",
                problem: FieldProblem::Empty,
            });
        }
        check_name("name", &self.name)?;
        check_len("name", Some(&self.name), MAX_DISPLAY_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_name_must_be_present_and_at_most_256_characters() {
        // R-GRP-1, R-SAFE-1
        let id = GroupId::parse("sales").unwrap();
        assert_eq!(
            Group::new(id.clone(), "n".repeat(256), []).validate(),
            Ok(())
        );
        assert_eq!(
            Group::new(id.clone(), " ", []).validate(),
            Err(InvalidInput::Field {
                field: "name",
                problem: FieldProblem::Empty
            })
        );
        assert_eq!(
            Group::new(id, "n".repeat(257), []).validate(),
            Err(InvalidInput::Field {
                field: "name",
                problem: FieldProblem::TooLong { max: 256 }
            })
        );
    }

    #[test]
    fn a_group_name_with_a_control_or_bidi_override_character_is_refused() {
        // R-GRP-1, R-SAFE-1
        let id = GroupId::parse("sales").unwrap();
        for name in [
            "Sales\u{0}",
            "Sa\u{1b}[1mles",
            "Sales\nAdmins",
            "Sales\u{202E}sniamdA",
        ] {
            let err = Group::new(id.clone(), name, []).validate().unwrap_err();
            assert_eq!(err.code(), "invalid_name", "{name:?}");
        }
    }
}
