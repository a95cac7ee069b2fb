//! Identifier newtypes: every id that crosses a port or the HTTP API is validated once, at the edge,
//! so stores, logs and Graph calls never see an unchecked string.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which id type refused it.
        kind: &'static str,
    },
    /// The id is longer than allowed.
    #[error("{kind} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Which id type refused it.
        kind: &'static str,
        /// Length of the refused id, in characters.
        len: usize,
        /// Maximum length.
        max: usize,
    },
    /// The id holds a character outside its charset.
    #[error("{kind} contains the character {character:?}; only {allowed} are allowed")]
    Character {
        /// Which id type refused it.
        kind: &'static str,
        /// The first offending character.
        character: char,
        /// The allowed charset, in words.
        allowed: &'static str,
    },
    /// The id must start with a letter or digit.
    #[error("{kind} must start with a letter or a digit")]
    Start {
        /// Which id type refused it.
        kind: &'static str,
    },
    /// The id must be a GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
    #[error("{kind} must be a GUID such as 00000000-0000-0000-0000-000000000000")]
    NotGuid {
        /// Which id type refused it.
        kind: &'static str,
    },
}

impl IdError {
    /// Machine-readable code for API errors (R-SAFE-1).
    #[must_use]
    pub fn code(&self) -> &'static str {
        "invalid_id"
    }
}

/// Longest caller-chosen directory id (user or group).
pub const MAX_DIRECTORY_ID_LEN: usize = 64;

fn validate_directory_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = value.chars().count();
    if len > MAX_DIRECTORY_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            len,
            max: MAX_DIRECTORY_ID_LEN,
        });
    }
    // A safe charset: the id appears in URL paths, DynamoDB keys and operation ids (`:` and `/` are separators).
    if let Some(character) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::Character {
            kind,
            character,
            allowed: "ASCII letters, digits, '-', '_' and '.'",
        });
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(IdError::Start { kind });
    }
    Ok(())
}

fn validate_guid(kind: &'static str, value: &str) -> Result<String, IdError> {
    // Only the hyphenated 36-character form is accepted: it is the form Graph and the identity platform use.
    if value.len() != 36 {
        return Err(IdError::NotGuid { kind });
    }
    uuid::Uuid::try_parse(value)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| IdError::NotGuid { kind })
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $validate:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            ///
            /// # Errors
            /// [`IdError`] naming the broken rule.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value: String = value.into();
                let normalized: String = ($validate)($kind, value.as_str())?;
                Ok(Self(normalized))
            }

            /// The id as a string.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

fn directory_id(kind: &'static str, value: &str) -> Result<String, IdError> {
    validate_directory_id(kind, value).map(|()| value.to_owned())
}

string_id!(
    /// A directory user's id, chosen by the caller of `PUT /users/{userId}`:
    /// 1–64 ASCII letters, digits, `-`, `_`, `.`, starting with a letter or digit.
    UserId,
    "user id",
    directory_id
);
string_id!(
    /// A directory group's id, chosen by the caller of `PUT /groups/{groupId}` (same rules as [`UserId`]).
    GroupId,
    "group id",
    directory_id
);
string_id!(
    /// Our id of a connected M365 tenant, created at `POST /tenants` (a lowercase GUID).
    TenantId,
    "tenant id",
    validate_guid
);
string_id!(
    /// Microsoft's tenant id (the directory GUID, `tid`).
    M365TenantId,
    "M365 tenant id",
    validate_guid
);
string_id!(
    /// The Graph object id of a user or group in an M365 tenant (a GUID).
    M365ObjectId,
    "M365 object id",
    validate_guid
);
string_id!(
    /// Id of one recorded event (a GUID).
    EventId,
    "event id",
    validate_guid
);

impl TenantId {
    /// A fresh random tenant id.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }
}

impl EventId {
    /// A fresh random event id. Recorded events and failures use [`EventId::derive`] instead; this
    /// is for tests and fixtures.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The deterministic id of the event (or failure) that `parts` identify — e.g. the
    /// operation id and the event kind: the same parts give the same id, so a retried or
    /// redelivered step appends the same event, which the store keeps once (STYLE
    /// "Idempotency"). The first 16 bytes of SHA-256 over the parts joined by `#`, as a version-8
    /// (custom) UUID; the formula is the one every recorded event id has used, so ids of events
    /// already stored stay comparable. Parts should not contain `#` (the join would make
    /// `["a#b", "c"]` and `["a", "b#c"]` one id).
    #[must_use]
    pub fn derive(parts: &[&str]) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(parts.join("#").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(
            uuid::Builder::from_custom_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string(),
        )
    }
}

impl M365ObjectId {
    /// A fresh random object id (what Graph assigns on create; used by fakes).
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_event_id_is_the_same_for_the_same_parts_and_a_valid_guid() {
        // R-AUD-1 ("each accepted change recorded exactly once"), STYLE "Idempotency"
        let id = EventId::derive(&["user_bind:user:alice:0", "user_create_provision"]);
        // SHA-256 of "user_bind:user:alice:0#user_create_provision", first 16 bytes, version 8:
        // the formula events were recorded with before `derive` existed.
        assert_eq!(id.as_str(), "c0849dbd-f0e9-86a4-b482-08118e40b3e6");
        assert_eq!(
            id,
            EventId::derive(&["user_bind:user:alice:0", "user_create_provision"])
        );
        assert_eq!(EventId::parse(id.as_str()), Ok(id.clone()));
        assert_eq!(
            EventId::derive(&["a", "b", "c"]).as_str(),
            "16500f03-750d-836c-8ee3-be758495f0f9"
        );
        assert_ne!(
            id,
            EventId::derive(&["user_bind:user:alice:0", "user_update_provision"])
        );
        assert_ne!(EventId::derive(&["a", "b"]), EventId::derive(&["b", "a"]));
    }

    #[test]
    fn a_directory_id_of_letters_digits_and_separators_is_accepted() {
        // R-SAFE-1
        for ok in ["u1", "alice.smith", "A-b_c.9", &"x".repeat(64)] {
            assert_eq!(UserId::parse(ok).map(String::from), Ok(ok.to_owned()));
            assert!(GroupId::parse(ok).is_ok());
        }
    }

    #[test]
    fn an_empty_directory_id_is_refused() {
        // R-SAFE-1
        assert_eq!(UserId::parse(""), Err(IdError::Empty { kind: "user id" }));
    }

    #[test]
    fn a_directory_id_longer_than_64_characters_is_refused() {
        // R-SAFE-1
        assert!(matches!(
            UserId::parse("x".repeat(65)),
            Err(IdError::TooLong {
                len: 65,
                max: 64,
                ..
            })
        ));
    }

    #[test]
    fn a_directory_id_with_an_unsafe_character_names_the_character() {
        // R-SAFE-1
        for (bad, c) in [
            ("a/b", '/'),
            ("a b", ' '),
            ("a:b", ':'),
            ("é", 'é'),
            ("a#", '#'),
        ] {
            assert!(
                matches!(UserId::parse(bad), Err(IdError::Character { character, .. }) if character == c),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_directory_id_starting_with_a_separator_is_refused() {
        // R-SAFE-1
        assert_eq!(
            GroupId::parse(".x"),
            Err(IdError::Start { kind: "group id" })
        );
        assert_eq!(
            GroupId::parse("-x"),
            Err(IdError::Start { kind: "group id" })
        );
    }

    #[test]
    fn guid_ids_are_lowercased_and_other_forms_refused() {
        // R-SAFE-1
        let id = M365ObjectId::parse("87D349ED-44D7-43E1-9A83-5F2406DEE5BD").map(String::from);
        assert_eq!(id, Ok("87d349ed-44d7-43e1-9a83-5f2406dee5bd".to_owned()));
        for bad in [
            "",
            "not-a-guid",
            "87d349ed44d743e19a835f2406dee5bd",
            "{87d349ed-44d7-43e1-9a83-5f2406dee5bd}",
        ] {
            assert!(
                matches!(TenantId::parse(bad), Err(IdError::NotGuid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn ids_deserialize_through_validation() {
        // R-SAFE-1
        let ok: Result<UserId, _> = serde_json::from_str("\"alice\"");
        assert!(ok.is_ok());
        let bad: Result<UserId, _> = serde_json::from_str("\"a/b\"");
        assert!(bad.is_err());
        assert!(TenantId::generate().as_str().len() == 36);
    }
}
