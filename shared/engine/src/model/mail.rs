//! Welcome emails (R-NOT-1): the message the `notify` function hands to SES ([`OutgoingEmail`])
//! and the deployment's template it is written from ([`WelcomeTemplate`]: sender, subject and a
//! short body, set by stack parameters and checked once at cold start).
//!
//! What a welcome email may say is fixed here: the template's placeholders are the user's display
//! name, the M365 sign-in address and the tenant's name ([`Placeholder`]); nothing else of the user
//! reaches the text, so a password (which the notification never carries, R-SAFE-2) cannot either.

use super::Email;
use crate::policy::name::is_forbidden;

/// Longest subject template (characters). The rendered subject adds at most a display name.
pub const MAX_SUBJECT_LEN: usize = 256;
/// Longest body template (characters): a short text, not a newsletter (it travels in an
/// environment variable, and Lambda holds at most 4 KB of them per function).
pub const MAX_BODY_LEN: usize = 2_000;

/// One email to send: plain text, one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The sender (an SES identity).
    pub from: Email,
    /// The one recipient.
    pub to: Email,
    /// The subject line (no line breaks).
    pub subject: String,
    /// The plain-text body.
    pub body: String,
}

/// What a welcome template may mention, written `{displayName}`, `{signInAddress}` and
/// `{tenantName}` in the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// The directory user's display name.
    DisplayName,
    /// The M365 sign-in address (the UPN, equal to the directory email, R-BIND-2).
    SignInAddress,
    /// The name the tenant was connected under.
    TenantName,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Self; 3] = [Self::DisplayName, Self::SignInAddress, Self::TenantName];

    /// Its name inside the braces.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::DisplayName => "displayName",
            Self::SignInAddress => "signInAddress",
            Self::TenantName => "tenantName",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Why a welcome template was refused (the text itself is never echoed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The sender is not an email address.
    #[error("the sender is not a valid email address: {0}")]
    Sender(#[source] super::EmailError),
    /// The subject or the body is empty.
    #[error("the {part} is empty")]
    Empty {
        /// `subject` or `body`.
        part: &'static str,
    },
    /// The subject or the body is too long.
    #[error("the {part} has more than {max} characters")]
    TooLong {
        /// `subject` or `body`.
        part: &'static str,
        /// The limit.
        max: usize,
    },
    /// A control character in the subject (a line break there would start a new mail header) or
    /// a control character other than a line break or tab in the body.
    #[error("the {part} holds a control character (U+{code_point:04X})")]
    ControlCharacter {
        /// `subject` or `body`.
        part: &'static str,
        /// The character.
        code_point: u32,
    },
    /// A `{…}` that is not one of the placeholders, or a `{` never closed.
    #[error(
        "the {part} has an unknown placeholder (allowed: {{displayName}}, {{signInAddress}}, {{tenantName}})"
    )]
    UnknownPlaceholder {
        /// `subject` or `body`.
        part: &'static str,
    },
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// The deployment's welcome email: sender, subject and body with placeholders, checked once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WelcomeTemplate {
    sender: Email,
    subject: Vec<Piece>,
    body: Vec<Piece>,
}

/// What a welcome email is written from.
#[derive(Debug, Clone, Copy)]
pub struct WelcomeValues<'a> {
    /// The user's display name.
    pub display_name: &'a str,
    /// The M365 sign-in address.
    pub sign_in_address: &'a Email,
    /// The tenant's name.
    pub tenant_name: &'a str,
}

impl WelcomeTemplate {
    /// The default subject.
    pub const DEFAULT_SUBJECT: &'static str = "Your Microsoft 365 account is ready";
    /// The default body (`\n` written as the two characters, as stack parameters hold it).
    pub const DEFAULT_BODY: &'static str = "Hello {displayName},\\n\\nyour Microsoft 365 account \
        in {tenantName} is ready. Sign in at https://www.office.com as {signInAddress} with your \
        company directory password.\\n\\nThis message was sent automatically; please do not reply.";

    /// Checks and parses a template. In `body`, the two characters `\n` stand for a line break
    /// (a stack parameter is one line); `{name}` is a [`Placeholder`]; `{{` and `}}` are literal
    /// braces.
    ///
    /// # Errors
    /// [`TemplateError`] for a bad sender, an empty or overlong part, a control character, an
    /// unknown placeholder.
    pub fn new(sender: &str, subject: &str, body: &str) -> Result<Self, TemplateError> {
        let sender = Email::parse(sender.trim()).map_err(TemplateError::Sender)?;
        let subject = subject.trim();
        let body = body.trim().replace("\\n", "\n");
        check_part("subject", subject, MAX_SUBJECT_LEN, false)?;
        check_part("body", &body, MAX_BODY_LEN, true)?;
        Ok(Self {
            sender,
            subject: parse("subject", subject)?,
            body: parse("body", &body)?,
        })
    }

    /// The sender.
    #[must_use]
    pub fn sender(&self) -> &Email {
        &self.sender
    }

    /// The email to `to`, written from `values`.
    #[must_use]
    pub fn render(&self, to: &Email, values: &WelcomeValues<'_>) -> OutgoingEmail {
        OutgoingEmail {
            from: self.sender.clone(),
            to: to.clone(),
            subject: fill(&self.subject, values),
            body: fill(&self.body, values),
        }
    }
}

fn check_part(
    part: &'static str,
    text: &str,
    max: usize,
    line_breaks: bool,
) -> Result<(), TemplateError> {
    if text.is_empty() {
        return Err(TemplateError::Empty { part });
    }
    if text.chars().count() > max {
        return Err(TemplateError::TooLong { part, max });
    }
    let allowed = |c: char| line_breaks && matches!(c, '\n' | '\t');
    match text.chars().find(|c| is_forbidden(*c) && !allowed(*c)) {
        Some(c) => Err(TemplateError::ControlCharacter {
            part,
            code_point: u32::from(c),
        }),
        None => Ok(()),
    }
}

fn parse(part: &'static str, text: &str) -> Result<Vec<Piece>, TemplateError> {
    let unknown = || TemplateError::UnknownPlaceholder { part };
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                let placeholder = Placeholder::parse(&name)
                    .filter(|_| closed)
                    .ok_or_else(unknown)?;
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Value(placeholder));
            }
            '}' => return Err(unknown()),
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

fn fill(pieces: &[Piece], values: &WelcomeValues<'_>) -> String {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Value(Placeholder::DisplayName) => out.push_str(values.display_name),
            Piece::Value(Placeholder::SignInAddress) => {
                out.push_str(values.sign_in_address.as_str());
            }
            Piece::Value(Placeholder::TenantName) => out.push_str(values.tenant_name),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(email: &Email) -> WelcomeValues<'_> {
        WelcomeValues {
            display_name: "Adele Vance",
            sign_in_address: email,
            tenant_name: "Contoso",
        }
    }

    #[test]
    fn the_default_template_names_the_user_the_address_and_the_tenant() {
        // R-NOT-1
        let template = WelcomeTemplate::new(
            "welcome@contoso.com",
            WelcomeTemplate::DEFAULT_SUBJECT,
            WelcomeTemplate::DEFAULT_BODY,
        )
        .unwrap();
        let to = Email::parse("adele@contoso.com").unwrap();
        let mail = template.render(&to, &values(&to));
        assert_eq!(mail.from.as_str(), "welcome@contoso.com");
        assert_eq!(mail.to, to);
        assert_eq!(mail.subject, "Your Microsoft 365 account is ready");
        assert!(
            mail.body
                .starts_with("Hello Adele Vance,\n\nyour Microsoft 365 account in Contoso")
        );
        assert!(mail.body.contains("as adele@contoso.com with"));
        assert!(
            !mail.body.contains("\\n"),
            "line breaks are real: {}",
            mail.body
        );
    }

    #[test]
    fn placeholders_fill_the_subject_too_and_double_braces_are_literal() {
        // R-NOT-1
        let template = WelcomeTemplate::new(
            "w@contoso.com",
            "Welcome {displayName} {{x}}",
            "{tenantName}",
        )
        .unwrap();
        let to = Email::parse("adele@contoso.com").unwrap();
        let mail = template.render(&to, &values(&to));
        assert_eq!(mail.subject, "Welcome Adele Vance {x}");
        assert_eq!(mail.body, "Contoso");
    }

    #[test]
    fn a_bad_sender_subject_or_body_is_refused_with_its_reason() {
        // R-NOT-1: checked at cold start, every problem named without echoing the text
        let bad =
            |s: &str, subj: &str, body: &str| WelcomeTemplate::new(s, subj, body).unwrap_err();
        assert!(matches!(
            bad("not an address", "s", "b"),
            TemplateError::Sender(_)
        ));
        assert_eq!(
            bad("w@contoso.com", " ", "b"),
            TemplateError::Empty { part: "subject" }
        );
        assert_eq!(
            bad("w@contoso.com", "s", ""),
            TemplateError::Empty { part: "body" }
        );
        assert_eq!(
            bad("w@contoso.com", &"s".repeat(257), "b"),
            TemplateError::TooLong {
                part: "subject",
                max: MAX_SUBJECT_LEN
            }
        );
        assert_eq!(
            bad("w@contoso.com", "Hi\r\nBcc: x@evil.example", "b"),
            TemplateError::ControlCharacter {
                part: "subject",
                code_point: 0x0D
            }
        );
        assert_eq!(
            bad("w@contoso.com", "s", "Your password is {password}"),
            TemplateError::UnknownPlaceholder { part: "body" }
        );
        assert_eq!(
            bad("w@contoso.com", "s", "{displayName"),
            TemplateError::UnknownPlaceholder { part: "body" }
        );
        assert_eq!(
            bad("w@contoso.com", "s}", "b"),
            TemplateError::UnknownPlaceholder { part: "subject" }
        );
        let message = bad("w@contoso.com", "s", "secret {oops}").to_string();
        assert!(!message.contains("secret"), "{message}");
    }
}
