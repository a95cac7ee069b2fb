//! E-mail addresses and DNS domain names.
//!
//! A directory user's email is also its M365 user principal name (R-BIND-2) and its domain routes the
//! user to a tenant (R-BIND-1), so an [`Email`] is validated against the Entra UPN rules
//! (graph-spec §3.1: local part `A-Z a-z 0-9 ' . - _ ! # ^ ~`, no `.` before `@`, ≤ 64 characters
//! before `@`, ≤ 48 after, ≤ 113 in all) and stored lowercase, with its domain converted to ASCII
//! (IDNA / punycode) so that comparisons are case-insensitive and unambiguous.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest local part (before `@`) of a UPN (graph-spec §3.1).
pub const MAX_LOCAL_LEN: usize = 64;
/// Longest domain part (after `@`, in its ASCII form) of a UPN (graph-spec §3.1).
pub const MAX_DOMAIN_LEN: usize = 48;
/// Longest UPN (graph-spec §3.1).
pub const MAX_EMAIL_LEN: usize = 113;

/// Why a string was refused as an e-mail address or a domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Nothing was given.
    #[error("the email address is empty")]
    Empty,
    /// There is no `@`.
    #[error("the email address has no '@'")]
    MissingAt,
    /// There is more than one `@`.
    #[error("the email address has more than one '@'")]
    MultipleAt,
    /// Nothing before the `@`.
    #[error("the email address has nothing before '@'")]
    EmptyLocalPart,
    /// The local part is too long.
    #[error("the part before '@' has {len} characters; at most {MAX_LOCAL_LEN} are allowed")]
    LocalPartTooLong {
        /// Its length in characters.
        len: usize,
    },
    /// The local part holds a character a UPN cannot hold.
    #[error(
        "the character {character:?} is not allowed before '@' (allowed: letters A-Z, digits and ' . - _ ! # ^ ~)"
    )]
    LocalPartCharacter {
        /// The first offending character.
        character: char,
    },
    /// The local part starts or ends with a dot or has two dots in a row.
    #[error("the part before '@' must not start or end with '.' nor contain '..'")]
    LocalPartDots,
    /// Nothing after the `@`.
    #[error("the email address has nothing after '@'")]
    EmptyDomain,
    /// The domain is not a valid (internationalized) DNS name.
    #[error("the domain {domain:?} is not a valid domain name")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
    },
    /// The domain has a single label (`localhost`) or a numeric top-level label.
    #[error("the domain {domain:?} must be a fully qualified name such as example.com")]
    UnqualifiedDomain {
        /// The domain in its ASCII form.
        domain: String,
    },
    /// The domain, in its ASCII form, is too long.
    #[error("the domain has {len} characters in its ASCII form; at most {max} are allowed")]
    DomainTooLong {
        /// Its length.
        len: usize,
        /// The limit that applies.
        max: usize,
    },
    /// The whole address is too long.
    #[error("the email address has {len} characters; at most {MAX_EMAIL_LEN} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
    },
}

impl EmailError {
    /// Machine-readable code for API errors (R-SAFE-1).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidDomain { .. }
            | Self::UnqualifiedDomain { .. }
            | Self::DomainTooLong { .. } => "invalid_domain",
            _ => "invalid_email",
        }
    }
}

/// The text conversions of a validated string type whose text is in field `$field`: `Display`,
/// `FromStr` and `TryFrom<String>` (for serde) through its `parse`, `From<$name> for String`.
macro_rules! text_conversions {
    ($name:ident, $field:tt) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.$field)
            }
        }

        impl TryFrom<String> for $name {
            type Error = EmailError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.$field
            }
        }

        impl std::str::FromStr for $name {
            type Err = EmailError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

/// A DNS domain name in its lowercase ASCII (punycode) form, e.g. `xn--bcher-kva.example`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DomainName(String);

/// Longest DNS name (RFC 1035).
const MAX_DNS_NAME_LEN: usize = 253;

impl DomainName {
    /// Validates a domain (Unicode or ASCII, any case) and converts it to lowercase ASCII.
    ///
    /// # Errors
    /// [`EmailError`] naming the broken rule.
    pub fn parse(value: &str) -> Result<Self, EmailError> {
        Self::parse_with_limit(value, MAX_DNS_NAME_LEN)
    }

    fn parse_with_limit(value: &str, max: usize) -> Result<Self, EmailError> {
        if value.is_empty() {
            return Err(EmailError::EmptyDomain);
        }
        let invalid = || EmailError::InvalidDomain {
            domain: value.to_owned(),
        };
        // A trailing dot (root) is not part of a UPN domain.
        if value.ends_with('.') {
            return Err(invalid());
        }
        let ascii = idna::domain_to_ascii(value).map_err(|_| invalid())?;
        if ascii.is_empty() {
            return Err(invalid());
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        for label in &labels {
            let bad_char = !label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if label.is_empty()
                || label.len() > 63
                || bad_char
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(invalid());
            }
        }
        let numeric_tld = labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()));
        if labels.len() < 2 || numeric_tld {
            return Err(EmailError::UnqualifiedDomain { domain: ascii });
        }
        if ascii.len() > max {
            return Err(EmailError::DomainTooLong {
                len: ascii.len(),
                max,
            });
        }
        Ok(Self(ascii))
    }

    /// The domain in lowercase ASCII.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_conversions!(DomainName, 0);

/// A validated e-mail address usable as an M365 user principal name; lowercase, ASCII domain.
///
/// Equality is therefore case-insensitive with respect to the address as typed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email {
    value: String,
    at: usize,
}

impl Email {
    /// Validates an address and normalizes it (lowercase, ASCII domain).
    ///
    /// # Errors
    /// [`EmailError`] naming the broken rule.
    pub fn parse(value: &str) -> Result<Self, EmailError> {
        let value = value.trim();
        if value.is_empty() {
            return Err(EmailError::Empty);
        }
        let mut parts = value.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(_), None, _) => return Err(EmailError::MissingAt),
            (Some(local), Some(domain), None) => (local, domain),
            _ => return Err(EmailError::MultipleAt),
        };
        if local.is_empty() {
            return Err(EmailError::EmptyLocalPart);
        }
        if let Some(character) = local.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '\'' | '.' | '-' | '_' | '!' | '#' | '^' | '~'))
        }) {
            return Err(EmailError::LocalPartCharacter { character });
        }
        let local_len = local.len();
        if local_len > MAX_LOCAL_LEN {
            return Err(EmailError::LocalPartTooLong { len: local_len });
        }
        // Entra: no '.' immediately before '@'; RFC 5321 dot-atom: no leading or doubled dot.
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::LocalPartDots);
        }
        let domain = DomainName::parse_with_limit(domain, MAX_DOMAIN_LEN)?;
        let value = format!("{}@{}", local.to_ascii_lowercase(), domain.as_str());
        if value.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong { len: value.len() });
        }
        Ok(Self {
            value,
            at: local_len,
        })
    }

    /// The normalized address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The part before `@` (lowercase).
    #[must_use]
    pub fn local_part(&self) -> &str {
        &self.value[..self.at]
    }

    /// The domain part in lowercase ASCII.
    #[must_use]
    pub fn domain_str(&self) -> &str {
        &self.value[self.at + 1..]
    }

    /// The domain part as a [`DomainName`].
    #[must_use]
    pub fn domain(&self) -> DomainName {
        DomainName(self.domain_str().to_owned())
    }
}

text_conversions!(Email, value);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_email_is_stored_lowercase_so_comparison_ignores_case() {
        // R-BIND-1
        let a = Email::parse("Adele.Vance@Contoso.COM");
        let b = Email::parse("adele.vance@contoso.com");
        assert_eq!(a, b);
        assert_eq!(
            a.map(String::from),
            Ok("adele.vance@contoso.com".to_owned())
        );
    }

    #[test]
    fn an_email_exposes_its_local_part_and_domain() {
        // R-BIND-1
        let e = Email::parse("o'neil_x!#^~-1@sub.contoso.com");
        assert!(e.is_ok());
        if let Ok(e) = e {
            assert_eq!(e.local_part(), "o'neil_x!#^~-1");
            assert_eq!(e.domain_str(), "sub.contoso.com");
            assert_eq!(e.domain(), DomainName::parse("SUB.contoso.com").unwrap());
        }
    }

    #[test]
    fn an_internationalized_domain_is_converted_to_punycode() {
        // R-BIND-1
        let e = Email::parse("anna@Bücher.example").map(String::from);
        assert_eq!(e, Ok("anna@xn--bcher-kva.example".to_owned()));
        assert_eq!(
            DomainName::parse("bücher.example").map(String::from),
            Ok("xn--bcher-kva.example".to_owned())
        );
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        // R-SAFE-1
        assert_eq!(Email::parse("  a@b.com "), Email::parse("a@b.com"));
    }

    #[test]
    fn malformed_addresses_are_refused_with_a_precise_reason() {
        // R-SAFE-1
        let cases: &[(&str, EmailError)] = &[
            ("", EmailError::Empty),
            ("   ", EmailError::Empty),
            ("alice.contoso.com", EmailError::MissingAt),
            ("a@b@contoso.com", EmailError::MultipleAt),
            ("@contoso.com", EmailError::EmptyLocalPart),
            ("alice@", EmailError::EmptyDomain),
            (
                "a+tag@contoso.com",
                EmailError::LocalPartCharacter { character: '+' },
            ),
            (
                "a b@contoso.com",
                EmailError::LocalPartCharacter { character: ' ' },
            ),
            (
                "jösé@contoso.com",
                EmailError::LocalPartCharacter { character: 'ö' },
            ),
            (".a@contoso.com", EmailError::LocalPartDots),
            ("a.@contoso.com", EmailError::LocalPartDots),
            ("a..b@contoso.com", EmailError::LocalPartDots),
            (
                "alice@localhost",
                EmailError::UnqualifiedDomain {
                    domain: "localhost".into(),
                },
            ),
            (
                "alice@10.0.0.1",
                EmailError::UnqualifiedDomain {
                    domain: "10.0.0.1".into(),
                },
            ),
            (
                "alice@contoso..com",
                EmailError::InvalidDomain {
                    domain: "contoso..com".into(),
                },
            ),
            (
                "alice@-contoso.com",
                EmailError::InvalidDomain {
                    domain: "-contoso.com".into(),
                },
            ),
            (
                "alice@contoso.com.",
                EmailError::InvalidDomain {
                    domain: "contoso.com.".into(),
                },
            ),
            (
                "alice@con_toso.com",
                EmailError::InvalidDomain {
                    domain: "con_toso.com".into(),
                },
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Email::parse(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn the_upn_length_limits_apply() {
        // R-BIND-2 (graph-spec §3.1: ≤ 64 before '@', ≤ 48 after)
        let local64 = "a".repeat(64);
        assert!(Email::parse(&format!("{local64}@contoso.com")).is_ok());
        assert_eq!(
            Email::parse(&format!("{}@contoso.com", "a".repeat(65))),
            Err(EmailError::LocalPartTooLong { len: 65 })
        );
        let domain48 = format!("{}.com", "d".repeat(44));
        assert!(Email::parse(&format!("a@{domain48}")).is_ok());
        let domain49 = format!("{}.com", "d".repeat(45));
        assert_eq!(
            Email::parse(&format!("a@{domain49}")),
            Err(EmailError::DomainTooLong { len: 49, max: 48 })
        );
        // 64 + 1 + 48 = 113, the whole-UPN limit, is reachable and accepted.
        assert!(Email::parse(&format!("{local64}@{domain48}")).is_ok());
    }

    #[test]
    fn emails_round_trip_through_serde_with_validation() {
        // R-SAFE-1
        let ok: Result<Email, _> = serde_json::from_str("\"A@B.com\"");
        assert_eq!(ok.map(String::from).ok(), Some("a@b.com".to_owned()));
        let bad: Result<Email, _> = serde_json::from_str("\"nope\"");
        assert!(bad.is_err());
    }

    #[test]
    fn error_codes_distinguish_domain_problems() {
        // R-SAFE-1
        assert_eq!(EmailError::MissingAt.code(), "invalid_email");
        assert_eq!(
            EmailError::UnqualifiedDomain {
                domain: String::new()
            }
            .code(),
            "invalid_domain"
        );
    }
}
