//! Directory users: the source of truth that m365-sync binds to M365 accounts.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Email, UserAttributes, UserId};
use crate::error::{FieldProblem, InvalidInput};
use crate::policy::name::{check_name, check_optional_name};

/// Whether a directory user may work (as set by the directory's admin in `PUT /users/{userId}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// The user is active.
    #[default]
    Active,
    /// The user is disabled in the directory.
    Disabled,
}

/// A password sealed with AES-256-GCM by a [`crate::ports::Sealer`]; safe to store, useless without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedPassword {
    /// Version of the seal key that sealed it (opening needs the same version).
    pub key_version: String,
    /// The 96-bit nonce.
    #[serde(with = "base64_bytes")]
    pub nonce: Vec<u8>,
    /// Ciphertext with its authentication tag.
    #[serde(with = "base64_bytes")]
    pub ciphertext: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// A user of the company directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryUser {
    /// Caller-chosen id.
    pub id: UserId,
    /// Unique (case-insensitively) across the directory; becomes the M365 UPN.
    pub email: Email,
    /// First name.
    pub given_name: Option<String>,
    /// Last name.
    pub surname: Option<String>,
    /// Name shown in M365 (required by Graph on create).
    pub display_name: String,
    /// Job title.
    pub job_title: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// `employeeId`, `officeLocation`, phones, `companyName`, `usageLocation`, `city`, `country`
    /// (R-ATTR-1; absent in records written before they existed).
    #[serde(flatten)]
    pub attributes: UserAttributes,
    /// Active or disabled in the directory.
    pub state: UserState,
    /// The sealed directory password, if one was set (R-PWD-1). Never returned by the API.
    pub password: Option<SealedPassword>,
    /// When the password was last set (for expiry, R-PWD-4).
    pub password_changed_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency version assigned by the store (0 before the first write).
    pub version: u64,
    /// The directory user whose M365 account becomes this user's `manager` once both are bound
    /// in the same tenant (R-ATTR-1). Never the user itself; a user id not (yet) in the directory
    /// is accepted — it is linked when such a user exists and is bound. Absent in items stored
    /// before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<UserId>,
    /// Where the welcome email goes instead of the M365 address (R-NOT-1), e.g. a personal address
    /// the employee reads before their mailbox exists. Absent in items stored before the field
    /// existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_email: Option<Email>,
}

impl DirectoryUser {
    /// A new user with only the required fields (version 0, no password).
    #[must_use]
    pub fn new(id: UserId, email: Email, display_name: impl Into<String>) -> Self {
        Self {
            id,
            email,
            given_name: None,
            surname: None,
            display_name: display_name.into(),
            job_title: None,
            department: None,
            attributes: UserAttributes::default(),
            state: UserState::Active,
            password: None,
            password_changed_at: None,
            version: 0,
            manager_id: None,
            notification_email: None,
        }
    }

    /// Where this user's welcome email goes (R-NOT-1): the `notificationEmail` when set, else the
    /// M365 sign-in address (the directory email, which is the UPN, R-BIND-2).
    #[must_use]
    pub fn welcome_recipient(&self) -> &Email {
        self.notification_email.as_ref().unwrap_or(&self.email)
    }

    /// Checks the attribute limits M365 enforces (v1.0 property notes: displayName 1–256 characters,
    /// givenName, surname and department ≤ 64, jobTitle ≤ 128), so bad input is refused before any
    /// write (R-SAFE-1) instead of failing later in Graph; and that none of these free-text
    /// attributes holds a control or bidirectional-override character
    /// ([`crate::policy::name`]); then the R-ATTR-1 attributes ([`UserAttributes::problems`]).
    ///
    /// # Errors
    /// The first [`InvalidInput::Field`] or [`InvalidInput::Name`] found among the names; else
    /// every problem of the R-ATTR-1 attributes (one, or [`InvalidInput::Several`]).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        self.validate_names()?;
        InvalidInput::all(self.attributes.problems()).map_or(Ok(()), Err)
    }

    fn validate_names(&self) -> Result<(), InvalidInput> {
        if self.display_name.trim().is_empty() {
            return Err(InvalidInput::Field {
                field: "displayName",
                problem: FieldProblem::Empty,
            });
        }
        check_name("displayName", &self.display_name)?;
        check_optional_name("givenName", self.given_name.as_deref())?;
        check_optional_name("surname", self.surname.as_deref())?;
        check_optional_name("jobTitle", self.job_title.as_deref())?;
        check_optional_name("department", self.department.as_deref())?;
        check_len("displayName", Some(&self.display_name), MAX_DISPLAY_NAME)?;
        check_len("givenName", self.given_name.as_deref(), 64)?;
        check_len("surname", self.surname.as_deref(), 64)?;
        check_len("jobTitle", self.job_title.as_deref(), 128)?;
        check_len("department", self.department.as_deref(), 64)?;
        // R-ATTR-1: M365 refuses a user as its own manager; refused before any write.
        if self.manager_id.as_ref() == Some(&self.id) {
            return Err(InvalidInput::Field {
                field: "managerId",
                problem: FieldProblem::OwnId,
            });
        }
        Ok(())
    }
}

/// Longest display name of a user or group in M365.
pub const MAX_DISPLAY_NAME: usize = 256;

/// Refuses `value` when it has more than `max` characters.
pub(crate) fn check_len(
    field: &'static str,
    value: Option<&str>,
    max: usize,
) -> Result<(), InvalidInput> {
    match value {
        Some(v) if v.chars().count() > max => Err(InvalidInput::Field {
            field,
            problem: FieldProblem::TooLong { max },
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_cannot_be_its_own_manager() {
        // R-ATTR-1
        let mut u = user();
        u.manager_id = Some(u.id.clone());
        assert_eq!(
            u.validate(),
            Err(InvalidInput::Field {
                field: "managerId",
                problem: FieldProblem::OwnId
            })
        );
        u.manager_id = Some(UserId::parse("not-yet-in-the-directory").unwrap());
        assert_eq!(u.validate(), Ok(()), "an unknown manager id is accepted");
    }

    #[test]
    fn a_user_stored_before_manager_id_existed_still_loads() {
        // R-ATTR-1
        let mut json = serde_json::to_value(user()).unwrap();
        assert!(json.get("managerId").is_none(), "absent when unset");
        json.as_object_mut().unwrap().remove("managerId");
        let loaded: DirectoryUser = serde_json::from_value(json).unwrap();
        assert_eq!(loaded.manager_id, None);
        let mut with = user();
        with.manager_id = Some(UserId::parse("boss").unwrap());
        let round: DirectoryUser =
            serde_json::from_value(serde_json::to_value(&with).unwrap()).unwrap();
        assert_eq!(round, with);
    }

    #[test]
    fn the_welcome_goes_to_the_notification_email_when_set_else_to_the_m365_address() {
        // R-NOT-1
        let mut u = user();
        assert_eq!(u.welcome_recipient().as_str(), "alice@contoso.com");
        u.notification_email = Some(Email::parse("alice.home@example.org").unwrap());
        assert_eq!(u.welcome_recipient().as_str(), "alice.home@example.org");
        let doc = serde_json::to_value(&u).unwrap();
        assert_eq!(doc["notificationEmail"], "alice.home@example.org");
        assert_eq!(serde_json::from_value::<DirectoryUser>(doc).unwrap(), u);
        let old = serde_json::to_value(user()).unwrap();
        assert!(old.get("notificationEmail").is_none(), "absent when unset");
    }

    fn user() -> DirectoryUser {
        DirectoryUser::new(
            UserId::parse("alice").unwrap(),
            Email::parse("alice@contoso.com").unwrap(),
            "Alice",
        )
    }

    #[test]
    fn a_user_within_the_m365_attribute_limits_is_valid() {
        // R-SAFE-1
        let mut u = user();
        u.display_name = "d".repeat(256);
        u.given_name = Some("g".repeat(64));
        u.surname = Some("s".repeat(64));
        u.job_title = Some("j".repeat(128));
        u.department = Some("é".repeat(64));
        assert_eq!(u.validate(), Ok(()));
    }

    #[test]
    fn a_stored_user_written_before_the_r_attr_1_attributes_still_loads() {
        // R-ATTR-1: the Dynamo adapter stores this JSON document
        let old = serde_json::json!({
            "id": "alice", "email": "alice@contoso.com", "givenName": null, "surname": null,
            "displayName": "Alice", "jobTitle": null, "department": null, "state": "active",
            "password": null, "passwordChangedAt": null, "version": 3
        });
        let loaded: DirectoryUser = serde_json::from_value(old).unwrap();
        assert_eq!(loaded.attributes, UserAttributes::default());
        let mut u = user();
        u.attributes.city = Some("Oslo".into());
        u.attributes.business_phones = vec!["+47 1".into()];
        let doc = serde_json::to_value(&u).unwrap();
        assert_eq!(
            doc["city"],
            serde_json::json!("Oslo"),
            "flat in the document"
        );
        assert_eq!(serde_json::from_value::<DirectoryUser>(doc).unwrap(), u);
    }

    #[test]
    fn every_bad_attribute_is_reported_at_once() {
        // R-ATTR-1
        let mut u = user();
        u.attributes.employee_id = Some("e".repeat(17));
        u.attributes.usage_location = Some("XX".into());
        let err = u.validate().unwrap_err();
        assert!(
            matches!(&err, InvalidInput::Several(all) if all.len() == 2),
            "{err:?}"
        );
        assert_eq!(err.code(), "invalid_field");
        let message = err.to_string();
        assert!(
            message.contains("employeeId is too long (the limit is 16)"),
            "{message}"
        );
        assert!(message.contains("usageLocation is not valid"), "{message}");
    }

    #[test]
    fn a_blank_display_name_is_refused() {
        // R-SAFE-1
        let mut u = user();
        u.display_name = "  ".into();
        assert_eq!(
            u.validate(),
            Err(InvalidInput::Field {
                field: "displayName",
                problem: FieldProblem::Empty
            })
        );
    }

    type Breaker = fn(&mut DirectoryUser);

    #[test]
    fn a_control_or_bidi_override_character_in_any_name_attribute_is_refused_by_name() {
        // R-SAFE-1
        let cases: [(&str, Breaker); 5] = [
            ("displayName", |u| u.display_name = "Alice\u{0}Admin".into()),
            ("givenName", |u| {
                u.given_name = Some("Al\u{1b}[2Jice".into())
            }),
            ("surname", |u| u.surname = Some("Smith\r\nInjected".into())),
            ("jobTitle", |u| {
                u.job_title = Some("CEO\u{202E}txt.exe".into())
            }),
            ("department", |u| {
                u.department = Some("Sales\u{2066}".into())
            }),
        ];
        for (field, break_it) in cases {
            let mut u = user();
            break_it(&mut u);
            let err = u.validate().unwrap_err();
            assert_eq!(err.code(), "invalid_name", "{field}");
            assert!(
                matches!(err, InvalidInput::Name { field: f, .. } if f == field),
                "{err:?}"
            );
        }
    }

    #[test]
    fn each_attribute_over_its_m365_limit_is_refused_by_name() {
        // R-SAFE-1
        let cases: [(&str, Breaker, usize); 5] = [
            ("displayName", |u| u.display_name = "d".repeat(257), 256),
            ("givenName", |u| u.given_name = Some("g".repeat(65)), 64),
            ("surname", |u| u.surname = Some("s".repeat(65)), 64),
            ("jobTitle", |u| u.job_title = Some("j".repeat(129)), 128),
            ("department", |u| u.department = Some("d".repeat(65)), 64),
        ];
        for (field, break_it, max) in cases {
            let mut u = user();
            break_it(&mut u);
            assert_eq!(
                u.validate(),
                Err(InvalidInput::Field {
                    field,
                    problem: FieldProblem::TooLong { max }
                })
            );
        }
    }
}
