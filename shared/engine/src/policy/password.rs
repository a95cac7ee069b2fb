//! Password rules (R-PWD-1): Entra's cloud-user policy (graph-spec §3.7) plus the directory's own,
//! configurable policy. Every refusal names the rule broken, as a machine code and a message, and
//! never repeats any part of the password (R-SAFE-2).

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Entra's minimum password length (graph-spec §3.7).
pub const ENTRA_MIN_LENGTH: usize = 8;
/// Entra's maximum password length (graph-spec §3.7).
pub const ENTRA_MAX_LENGTH: usize = 256;
/// Number of character classes Entra requires (graph-spec §3.7).
pub const ENTRA_MIN_CLASSES: usize = 3;
/// The symbols Entra allows, verbatim from graph-spec §3.7 (blank space is allowed too).
pub const ENTRA_SYMBOLS: &str = "@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<>";

/// A character class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CharClass {
    /// `a-z`.
    Lowercase,
    /// `A-Z`.
    Uppercase,
    /// `0-9`.
    Digit,
    /// One of [`ENTRA_SYMBOLS`].
    Symbol,
}

impl CharClass {
    /// Every class.
    pub const ALL: [Self; 4] = [Self::Lowercase, Self::Uppercase, Self::Digit, Self::Symbol];

    /// The class of `c`, if it is in one. Blank space is allowed by Entra but is not counted as a
    /// symbol here: graph-spec §3.7 lists it apart from the symbols, and whether it counts toward
    /// the three classes is unconfirmed, so the stricter reading is taken.
    #[must_use]
    pub fn of(c: char) -> Option<Self> {
        if c.is_ascii_lowercase() {
            Some(Self::Lowercase)
        } else if c.is_ascii_uppercase() {
            Some(Self::Uppercase)
        } else if c.is_ascii_digit() {
            Some(Self::Digit)
        } else if ENTRA_SYMBOLS.contains(c) {
            Some(Self::Symbol)
        } else {
            None
        }
    }

    /// snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lowercase => "lowercase",
            Self::Uppercase => "uppercase",
            Self::Digit => "digit",
            Self::Symbol => "symbol",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Lowercase => "a lowercase letter",
            Self::Uppercase => "an uppercase letter",
            Self::Digit => "a digit",
            Self::Symbol => "a symbol",
        }
    }
}

/// A password rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRule {
    /// Fewer than 8 characters.
    #[error(
        "the password must have at least {ENTRA_MIN_LENGTH} characters (Microsoft Entra policy)"
    )]
    EntraMinLength,
    /// More than 256 characters.
    #[error(
        "the password must have at most {ENTRA_MAX_LENGTH} characters (Microsoft Entra policy)"
    )]
    EntraMaxLength,
    /// A character outside Entra's list (any non-ASCII character, control characters, …).
    #[error(
        "the password contains a character that is not allowed: only A-Z, a-z, 0-9, blank space and the symbols {ENTRA_SYMBOLS} are (Microsoft Entra policy)"
    )]
    EntraCharacters,
    /// Fewer than 3 of the 4 classes.
    #[error(
        "the password must contain characters of at least three of these classes: lowercase letters, uppercase letters, digits, symbols (Microsoft Entra policy)"
    )]
    EntraComplexity,
    /// Shorter than the directory's minimum.
    #[error("the password must have at least {min} characters (directory policy)")]
    DirectoryMinLength {
        /// The directory's minimum.
        min: usize,
    },
    /// A class the directory requires is missing.
    #[error("the password must contain {} (directory policy)", class.describe())]
    DirectoryRequiredClass {
        /// The missing class.
        class: CharClass,
    },
}

impl PasswordRule {
    /// Machine code of the rule.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::EntraMinLength => "entra_min_length",
            Self::EntraMaxLength => "entra_max_length",
            Self::EntraCharacters => "entra_characters",
            Self::EntraComplexity => "entra_complexity",
            Self::DirectoryMinLength { .. } => "directory_min_length",
            Self::DirectoryRequiredClass { class } => match class {
                CharClass::Lowercase => "directory_requires_lowercase",
                CharClass::Uppercase => "directory_requires_uppercase",
                CharClass::Digit => "directory_requires_digit",
                CharClass::Symbol => "directory_requires_symbol",
            },
        }
    }
}

/// A refused password: every rule it breaks, Entra's first (API code `password_policy`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the password does not meet the password policy: {}", describe(.violations))]
pub struct PasswordPolicyError {
    /// The broken rules (never empty).
    pub violations: Vec<PasswordRule>,
}

fn describe(violations: &[PasswordRule]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks Entra's policy alone (graph-spec §3.7); used for generated passwords too.
///
/// # Errors
/// [`PasswordPolicyError`] with every broken Entra rule.
pub fn check_entra(password: &SecretString) -> Result<(), PasswordPolicyError> {
    let violations = entra_violations(password.expose_secret());
    if violations.is_empty() {
        Ok(())
    } else {
        Err(PasswordPolicyError { violations })
    }
}

fn entra_violations(password: &str) -> Vec<PasswordRule> {
    let mut violations = Vec::new();
    let length = password.chars().count();
    if length < ENTRA_MIN_LENGTH {
        violations.push(PasswordRule::EntraMinLength);
    }
    if length > ENTRA_MAX_LENGTH {
        violations.push(PasswordRule::EntraMaxLength);
    }
    if password
        .chars()
        .any(|c| c != ' ' && CharClass::of(c).is_none())
    {
        violations.push(PasswordRule::EntraCharacters);
    }
    if classes(password).len() < ENTRA_MIN_CLASSES {
        violations.push(PasswordRule::EntraComplexity);
    }
    violations
}

fn classes(password: &str) -> BTreeSet<CharClass> {
    password.chars().filter_map(CharClass::of).collect()
}

/// Why a directory policy configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    /// A minimum above Entra's maximum could never be met.
    #[error("the minimum password length {min} exceeds the maximum of {ENTRA_MAX_LENGTH}")]
    MinLengthTooLarge {
        /// The configured minimum.
        min: usize,
    },
    /// A maximum age must be positive.
    #[error("the maximum password age must be positive")]
    NonPositiveMaxAge,
}

/// The directory's own password policy, applied on top of Entra's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPasswordPolicy {
    min_length: usize,
    required_classes: BTreeSet<CharClass>,
    max_age: Option<TimeDelta>,
}

impl Default for DirectoryPasswordPolicy {
    /// Entra's minimum, no required class, no expiry.
    fn default() -> Self {
        Self {
            min_length: ENTRA_MIN_LENGTH,
            required_classes: BTreeSet::new(),
            max_age: None,
        }
    }
}

impl DirectoryPasswordPolicy {
    /// A policy; a minimum below Entra's is allowed but Entra's still applies.
    ///
    /// # Errors
    /// [`PolicyConfigError`] for a minimum above 256 or a non-positive maximum age.
    pub fn new(
        min_length: usize,
        required_classes: impl IntoIterator<Item = CharClass>,
        max_age: Option<TimeDelta>,
    ) -> Result<Self, PolicyConfigError> {
        if min_length > ENTRA_MAX_LENGTH {
            return Err(PolicyConfigError::MinLengthTooLarge { min: min_length });
        }
        if max_age.is_some_and(|age| age <= TimeDelta::zero()) {
            return Err(PolicyConfigError::NonPositiveMaxAge);
        }
        Ok(Self {
            min_length,
            required_classes: required_classes.into_iter().collect(),
            max_age,
        })
    }

    /// The directory's minimum length.
    #[must_use]
    pub fn min_length(&self) -> usize {
        self.min_length
    }

    /// The classes every password must contain.
    #[must_use]
    pub fn required_classes(&self) -> &BTreeSet<CharClass> {
        &self.required_classes
    }

    /// How long a password stays valid, if it expires.
    #[must_use]
    pub fn max_age(&self) -> Option<TimeDelta> {
        self.max_age
    }

    /// Checks Entra's and the directory's rules (R-PWD-1).
    ///
    /// # Errors
    /// [`PasswordPolicyError`] listing every broken rule, Entra's first.
    pub fn validate(&self, password: &SecretString) -> Result<(), PasswordPolicyError> {
        let password = password.expose_secret();
        let mut violations = entra_violations(password);
        if password.chars().count() < self.min_length && self.min_length > ENTRA_MIN_LENGTH {
            violations.push(PasswordRule::DirectoryMinLength {
                min: self.min_length,
            });
        }
        let present = classes(password);
        for class in &self.required_classes {
            if !present.contains(class) {
                violations.push(PasswordRule::DirectoryRequiredClass { class: *class });
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(PasswordPolicyError { violations })
        }
    }

    /// When a password set at `changed_at` expires (`None`: never).
    #[must_use]
    pub fn expires_at(&self, changed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.max_age
            .and_then(|age| changed_at.checked_add_signed(age))
    }

    /// Whether a password set at `changed_at` has expired at `now` (R-PWD-4).
    #[must_use]
    pub fn is_expired(&self, changed_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.expires_at(changed_at).is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// The rules `password` breaks under `policy` (`None`: it is accepted).
    fn violations(policy: &DirectoryPasswordPolicy, password: &str) -> Option<Vec<PasswordRule>> {
        policy
            .validate(&secret(password))
            .err()
            .map(|e| e.violations)
    }

    fn entra(s: &str) -> Vec<PasswordRule> {
        check_entra(&secret(s))
            .err()
            .map(|e| e.violations)
            .unwrap_or_default()
    }

    #[test]
    fn a_password_with_three_classes_and_eight_characters_meets_the_entra_policy() {
        // R-PWD-1
        for ok in [
            "abcdEF12",
            "abcdef1!",
            "ABCDEF1!",
            "abcDEF!!",
            "xWwvJ]6NMw+bWH-d",
            "Aa1 Aa1 ",
        ] {
            assert_eq!(entra(ok), vec![], "{ok:?}");
        }
    }

    #[test]
    fn a_password_with_all_four_classes_is_accepted() {
        // R-PWD-1
        assert_eq!(entra("aB3$aB3$"), vec![]);
    }

    #[test]
    fn a_password_shorter_than_eight_characters_is_refused_by_the_entra_minimum() {
        // R-PWD-1
        assert_eq!(entra("aB3$aB3"), vec![PasswordRule::EntraMinLength]);
        assert_eq!(
            entra(""),
            vec![PasswordRule::EntraMinLength, PasswordRule::EntraComplexity]
        );
    }

    #[test]
    fn a_password_of_exactly_256_characters_is_accepted_and_257_refused() {
        // R-PWD-1
        let base = "aB3$".repeat(64);
        assert_eq!(entra(&base), vec![]);
        assert_eq!(
            entra(&format!("{base}a")),
            vec![PasswordRule::EntraMaxLength]
        );
    }

    #[test]
    fn a_password_with_only_two_classes_is_refused_by_the_complexity_rule() {
        // R-PWD-1
        for two in [
            "abcdefgh12",
            "ABCDEFGH12",
            "abcdEFGH",
            "abcd!!!!",
            "1234!!!!",
            "ABCD!!!!",
        ] {
            assert_eq!(entra(two), vec![PasswordRule::EntraComplexity], "{two:?}");
        }
        assert_eq!(entra("abcdefghij"), vec![PasswordRule::EntraComplexity]);
    }

    #[test]
    fn blank_space_is_allowed_but_does_not_count_as_a_symbol() {
        // R-PWD-1 (graph-spec §3.7 lists blank space apart; counting it is unconfirmed)
        assert_eq!(entra("abcd EFGH"), vec![PasswordRule::EntraComplexity]);
        assert_eq!(entra("abcd EF12"), vec![]);
    }

    #[test]
    fn every_listed_symbol_counts_as_a_symbol() {
        // R-PWD-1
        for symbol in ENTRA_SYMBOLS.chars() {
            assert_eq!(CharClass::of(symbol), Some(CharClass::Symbol), "{symbol:?}");
            assert_eq!(entra(&format!("abcdefg1{symbol}")), vec![], "{symbol:?}");
        }
    }

    #[test]
    fn unicode_and_unlisted_characters_are_refused() {
        // R-PWD-1
        for bad in [
            "abcDEF12é",
            "abcDEF12€",
            "abcDEF12\t",
            "abcDEF12\n",
            "abcDEF12\u{0}",
            "abcDEF12😀",
            "ABCdef12ß",
        ] {
            assert_eq!(entra(bad), vec![PasswordRule::EntraCharacters], "{bad:?}");
        }
    }

    #[test]
    fn the_length_counts_characters_not_bytes() {
        // R-PWD-1
        assert_eq!(
            entra("aB3é"),
            vec![PasswordRule::EntraMinLength, PasswordRule::EntraCharacters]
        );
    }

    #[test]
    fn every_refusal_names_its_rule_as_a_code_and_a_message() {
        // R-PWD-1
        let rules = [
            PasswordRule::EntraMinLength,
            PasswordRule::EntraMaxLength,
            PasswordRule::EntraCharacters,
            PasswordRule::EntraComplexity,
            PasswordRule::DirectoryMinLength { min: 12 },
            PasswordRule::DirectoryRequiredClass {
                class: CharClass::Lowercase,
            },
            PasswordRule::DirectoryRequiredClass {
                class: CharClass::Uppercase,
            },
            PasswordRule::DirectoryRequiredClass {
                class: CharClass::Digit,
            },
            PasswordRule::DirectoryRequiredClass {
                class: CharClass::Symbol,
            },
        ];
        let codes: BTreeSet<&str> = rules.iter().map(PasswordRule::code).collect();
        assert_eq!(codes.len(), rules.len(), "codes are distinct");
        for rule in &rules {
            assert!(!rule.to_string().is_empty());
        }
        assert!(
            PasswordRule::DirectoryMinLength { min: 12 }
                .to_string()
                .contains("12")
        );
        assert!(
            PasswordRule::DirectoryRequiredClass {
                class: CharClass::Digit
            }
            .to_string()
            .contains("a digit")
        );
    }

    #[test]
    fn a_refusal_never_repeats_the_password() {
        // R-SAFE-2
        let password = "short\u{e9}";
        let error = check_entra(&secret(password))
            .err()
            .map(|e| format!("{e} {e:?}"));
        assert!(
            error
                .as_deref()
                .is_some_and(|text| !text.contains(password))
        );
    }

    #[test]
    fn the_directory_minimum_length_is_enforced_on_top_of_entra() {
        // R-PWD-1
        let policy = DirectoryPasswordPolicy::new(12, [], None).unwrap();
        assert_eq!(
            violations(&policy, "aB3$aB3$aB3"),
            Some(vec![PasswordRule::DirectoryMinLength { min: 12 }])
        );
        assert!(policy.validate(&secret("aB3$aB3$aB3$")).is_ok());
    }

    #[test]
    fn a_directory_minimum_below_eight_still_gets_the_entra_minimum() {
        // R-PWD-1
        let policy = DirectoryPasswordPolicy::new(4, [], None).unwrap();
        assert_eq!(
            violations(&policy, "aB3$aB"),
            Some(vec![PasswordRule::EntraMinLength])
        );
    }

    #[test]
    fn a_class_required_by_the_directory_must_be_present_even_when_entra_is_satisfied() {
        // R-PWD-1
        let policy =
            DirectoryPasswordPolicy::new(8, [CharClass::Symbol, CharClass::Digit], None).unwrap();
        assert_eq!(
            violations(&policy, "abcDEF12"),
            Some(vec![PasswordRule::DirectoryRequiredClass {
                class: CharClass::Symbol
            }])
        );
        assert_eq!(
            violations(&policy, "abcDEF!!"),
            Some(vec![PasswordRule::DirectoryRequiredClass {
                class: CharClass::Digit
            }])
        );
        assert!(policy.validate(&secret("abcDE1!!")).is_ok());
    }

    #[test]
    fn every_broken_rule_is_reported_entra_first() {
        // R-PWD-1
        let policy = DirectoryPasswordPolicy::new(10, [CharClass::Uppercase], None).unwrap();
        assert_eq!(
            violations(&policy, "abc"),
            Some(vec![
                PasswordRule::EntraMinLength,
                PasswordRule::EntraComplexity,
                PasswordRule::DirectoryMinLength { min: 10 },
                PasswordRule::DirectoryRequiredClass {
                    class: CharClass::Uppercase
                },
            ])
        );
    }

    #[test]
    fn the_default_directory_policy_is_entra_alone() {
        // R-PWD-1
        let policy = DirectoryPasswordPolicy::default();
        assert!(policy.validate(&secret("abcDEF12")).is_ok());
        assert_eq!(policy.min_length(), 8);
        assert!(policy.required_classes().is_empty());
        assert_eq!(policy.max_age(), None);
    }

    #[test]
    fn impossible_directory_policies_are_refused() {
        // R-PWD-1
        assert_eq!(
            DirectoryPasswordPolicy::new(257, [], None),
            Err(PolicyConfigError::MinLengthTooLarge { min: 257 })
        );
        assert_eq!(
            DirectoryPasswordPolicy::new(8, [], Some(TimeDelta::zero())),
            Err(PolicyConfigError::NonPositiveMaxAge)
        );
    }

    #[test]
    fn a_password_expires_after_the_maximum_age() {
        // R-PWD-4
        let policy = DirectoryPasswordPolicy::new(8, [], Some(TimeDelta::days(90))).unwrap();
        let set = Utc::now();
        assert_eq!(policy.expires_at(set), Some(set + TimeDelta::days(90)));
        assert!(!policy.is_expired(set, set + TimeDelta::days(90) - TimeDelta::seconds(1)));
        assert!(policy.is_expired(set, set + TimeDelta::days(90)));
    }

    #[test]
    fn without_a_maximum_age_a_password_never_expires() {
        // R-PWD-4
        let policy = DirectoryPasswordPolicy::default();
        let set = Utc::now();
        assert_eq!(policy.expires_at(set), None);
        assert!(!policy.is_expired(set, set + TimeDelta::days(10_000)));
    }
}
