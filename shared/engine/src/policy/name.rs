//! Names people read (R-SAFE-1): a tenant's name, a directory user's display name, given name,
//! surname, job title and department, a directory group's name. They reach admin screens, the
//! CLI's tables, log lines, audit events and Microsoft 365 (where other people read them), so
//! characters that change how text around them is shown are refused with `invalid_name`:
//! - every control character (Unicode general category Cc: U+0000–U+001F and U+007F–U+009F,
//!   so NUL, TAB, LF, CR, ESC (terminal escape sequences), DEL and the C1 controls);
//! - the line and paragraph separators U+2028 and U+2029 (a line break by another name);
//! - the bidirectional embeddings and overrides U+202A–U+202E and isolates U+2066–U+2069
//!   ("Trojan Source" reordering: a name that displays as something else).
//!
//! Kept, on purpose: the implicit direction marks U+200E, U+200F and U+061C and the zero-width
//! (non-)joiners U+200C/U+200D, which right-to-left scripts, Indic scripts and emoji need and
//! which cannot reorder the text around them. Surrounding whitespace is trimmed by the callers
//! before the check (as before), so only a character left inside the name is refused.

use crate::error::InvalidInput;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// The name holds a control, line-separator or bidirectional-override character.
    #[error(
        "must not contain control, line-break or bidirectional-override characters \
         (found U+{code_point:04X} at character {position})"
    )]
    ForbiddenCharacter {
        /// The character's code point (shown as U+XXXX; the name itself is never echoed).
        code_point: u32,
        /// Its position in the name, counting characters from 1.
        position: usize,
    },
}

/// Whether `c` may not appear in a name.
#[must_use]
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Refuses a name holding a forbidden character ([`is_forbidden`]).
///
/// # Errors
/// [`InvalidInput::Name`] naming `field` and the first forbidden character.
pub fn check_name(field: &'static str, value: &str) -> Result<(), InvalidInput> {
    match value.chars().enumerate().find(|(_, c)| is_forbidden(*c)) {
        None => Ok(()),
        Some((i, c)) => Err(InvalidInput::Name {
            field,
            problem: NameProblem::ForbiddenCharacter {
                code_point: u32::from(c),
                position: i + 1,
            },
        }),
    }
}

/// [`check_name`] on an optional name (absent is fine).
///
/// # Errors
/// As [`check_name`].
pub fn check_optional_name(field: &'static str, value: Option<&str>) -> Result<(), InvalidInput> {
    value.map_or(Ok(()), |v| check_name(field, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_line_break_and_bidi_override_character_is_refused() {
        // R-SAFE-1
        let mut refused = Vec::new();
        for c in (0..=0x1F).chain(0x7F..=0x9F) {
            refused.push(char::from_u32(c).unwrap());
        }
        refused.extend(['\u{2028}', '\u{2029}']);
        refused.extend('\u{202A}'..='\u{202E}');
        refused.extend('\u{2066}'..='\u{2069}');
        for c in refused {
            let name = format!("Con{c}toso");
            assert_eq!(
                check_name("name", &name),
                Err(InvalidInput::Name {
                    field: "name",
                    problem: NameProblem::ForbiddenCharacter {
                        code_point: u32::from(c),
                        position: 4
                    }
                }),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn ordinary_names_in_every_script_pass() {
        // R-SAFE-1: accents, right-to-left text with its direction marks, joiners, emoji.
        for name in [
            "Contoso Ltd.",
            "Zoë O'Brien-Smith",
            "שלום\u{200F} Cohen",
            "محمد\u{061C} علي",
            "क्\u{200D}ष",
            "👩\u{200D}💻 Team",
            "Jean\u{00A0}Dupont",
            "",
        ] {
            assert_eq!(check_name("displayName", name), Ok(()), "{name}");
        }
    }

    #[test]
    fn the_error_names_the_field_and_code_point_but_never_echoes_the_name() {
        // R-SAFE-1, R-SAFE-2
        let err = check_name("surname", "secret\u{1b}[31mred").unwrap_err();
        assert_eq!(err.code(), "invalid_name");
        let text = err.to_string();
        assert!(text.starts_with("surname "), "{text}");
        assert!(text.contains("U+001B at character 7"), "{text}");
        assert!(!text.contains("secret"), "{text}");
        assert_eq!(check_optional_name("surname", None), Ok(()));
        assert!(check_optional_name("surname", Some("a\tb")).is_err());
    }
}
