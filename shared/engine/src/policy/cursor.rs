//! Opaque, signed pagination cursors (R-SAFE-1, R-IMP-1): every `nextCursor` the API hands out
//! is state signed with HMAC-SHA256 under a key only the deployment holds ([`CursorKey`]), so a
//! cursor that was altered, made up, signed under another key, made for another purpose or
//! taken to another listing is refused with `invalid_cursor` before anything reads a store or
//! Microsoft Graph with it.
//!
//! Format: `base64url(JSON state) "." base64url(HMAC-SHA256(purpose ‖ 0x00 ‖ JSON state))`. The
//! purpose (`import`, `page`) keeps the kinds of cursor apart, so one can never be replayed as
//! the other. Store listings ([`CursorKey::sign_page`]) wrap the store's own page token with the
//! name of the listing it belongs to (e.g. `events/user/alice`): a cursor of one listing or
//! filter does not open another.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, FieldProblem, InvalidInput, Result};
use crate::model::{PageRequest, PageToken};

type HmacSha256 = Hmac<Sha256>;

/// Longest cursor accepted (characters); a longer one is refused before any decoding.
pub const MAX_CURSOR_LEN: usize = 4096;
/// Least key material (bytes): HMAC-SHA256 wants at least its output size.
pub const MIN_CURSOR_KEY_LEN: usize = 32;
/// Purpose of the cursors of store listings ([`CursorKey::sign_page`]).
const PAGE_PURPOSE: &str = "page";
/// Format version of a store listing's cursor state.
const PAGE_VERSION: u8 = 1;

/// The key cursors are signed with (the deployment's cursor key secret). `Debug` never shows it.
#[derive(Clone)]
pub struct CursorKey(SecretString);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey([REDACTED])")
    }
}

fn invalid() -> Error {
    Error::Invalid(InvalidInput::Cursor)
}

/// What a store listing's cursor carries.
#[derive(Debug, Serialize, Deserialize)]
struct PageState {
    /// Format version.
    v: u8,
    /// The listing (and filter) the token belongs to.
    l: String,
    /// The store's page token.
    n: String,
}

impl CursorKey {
    /// Wraps key material (the deployment's cursor key secret).
    ///
    /// # Errors
    /// `Invalid(Field "cursorKey" Empty)` for a key shorter than [`MIN_CURSOR_KEY_LEN`] bytes.
    pub fn new(secret: SecretString) -> Result<Self> {
        if secret.expose_secret().len() < MIN_CURSOR_KEY_LEN {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "cursorKey",
                problem: FieldProblem::Empty,
            }));
        }
        Ok(Self(secret))
    }

    fn mac(&self, purpose: &str) -> Result<HmacSha256> {
        // HMAC takes keys of every length (RFC 2104): this never fails in practice.
        let mut mac =
            HmacSha256::new_from_slice(self.0.expose_secret().as_bytes()).map_err(|_| {
                Error::Invalid(InvalidInput::Field {
                    field: "cursorKey",
                    problem: FieldProblem::Empty,
                })
            })?;
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        Ok(mac)
    }

    /// Seals `state` as an opaque cursor for `purpose`.
    ///
    /// # Errors
    /// `Infrastructure` when the state does not serialize (never for plain data).
    pub fn seal<T: Serialize>(&self, purpose: &str, state: &T) -> Result<String> {
        let payload = serde_json::to_vec(state).map_err(|e| Error::Infrastructure {
            component: "cursor",
            source: Box::new(e),
        })?;
        let mut mac = self.mac(purpose)?;
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        ))
    }

    /// Opens a cursor [`CursorKey::seal`]ed for `purpose` under this key.
    ///
    /// # Errors
    /// `Invalid(Cursor)` when the cursor is too long, malformed, signed under another key or
    /// for another purpose, altered, or not the expected state.
    pub fn open<T: DeserializeOwned>(&self, purpose: &str, cursor: &str) -> Result<T> {
        if cursor.len() > MAX_CURSOR_LEN {
            return Err(invalid());
        }
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let mut mac = self.mac(purpose)?;
        mac.update(&payload);
        // Constant-time comparison.
        mac.verify_slice(&tag).map_err(|_| invalid())?;
        serde_json::from_slice(&payload).map_err(|_| invalid())
    }

    /// The API cursor of a store's page token of `listing` (a name for the listing and its
    /// filters, e.g. `events/tenant/<id>`).
    ///
    /// # Errors
    /// As [`CursorKey::seal`].
    pub fn sign_page(&self, listing: &str, token: &PageToken) -> Result<String> {
        self.seal(
            PAGE_PURPOSE,
            &PageState {
                v: PAGE_VERSION,
                l: listing.to_owned(),
                n: token.as_str().to_owned(),
            },
        )
    }

    /// The store's page token inside an API cursor of `listing`.
    ///
    /// # Errors
    /// `Invalid(Cursor)` as [`CursorKey::open`], or when the cursor belongs to another listing.
    pub fn open_page(&self, listing: &str, cursor: &str) -> Result<PageToken> {
        let state: PageState = self.open(PAGE_PURPOSE, cursor)?;
        if state.v != PAGE_VERSION || state.l != listing {
            return Err(invalid());
        }
        Ok(PageToken::new(state.n))
    }

    /// The page request of `listing` for an API `cursor` (`None`: the first page).
    ///
    /// # Errors
    /// As [`CursorKey::open_page`].
    pub fn page_request(
        &self,
        listing: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<PageRequest> {
        Ok(match cursor {
            None => PageRequest::first(limit),
            Some(c) => PageRequest::after(self.open_page(listing, c)?, limit),
        })
    }

    /// The API `nextCursor` of a store's `next` page token of `listing`.
    ///
    /// # Errors
    /// As [`CursorKey::seal`].
    pub fn next_cursor(&self, listing: &str, next: Option<&PageToken>) -> Result<Option<String>> {
        next.map(|t| self.sign_page(listing, t)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fill: &str) -> CursorKey {
        CursorKey::new(SecretString::from(fill.repeat(48))).unwrap()
    }

    #[test]
    fn a_signed_page_cursor_opens_to_the_stores_token_for_its_own_listing() {
        // R-SAFE-1
        let k = key("k");
        let token = PageToken::new("eyJsIjoiVEVOQU5UIn0");
        let cursor = k.sign_page("tenants", &token).unwrap();
        assert!(!cursor.contains("eyJsIjoiVEVOQU5UIn0"), "opaque: {cursor}");
        assert_eq!(k.open_page("tenants", &cursor).unwrap(), token);
        let request = k.page_request("tenants", Some(&cursor), 7).unwrap();
        assert_eq!(request.cursor, Some(token.clone()));
        assert_eq!(request.limit, 7);
        assert_eq!(
            k.next_cursor("tenants", Some(&token))
                .unwrap()
                .map(|c| k.open_page("tenants", &c).unwrap()),
            Some(token)
        );
        assert_eq!(k.next_cursor("tenants", None).unwrap(), None);
        assert_eq!(
            k.page_request("tenants", None, 5).unwrap(),
            PageRequest::first(5)
        );
    }

    #[test]
    fn forged_tampered_foreign_and_oversized_cursors_are_invalid() {
        // R-SAFE-1
        let k = key("k");
        let cursor = k
            .sign_page("events/tenant/t1", &PageToken::new("start"))
            .unwrap();
        let (payload, tag) = cursor.split_once('.').unwrap();
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        let altered = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(text.replace("start", "other"))
        );
        let other_key = key("x")
            .sign_page("events/tenant/t1", &PageToken::new("start"))
            .unwrap();
        let import_purpose = k
            .seal(
                "import",
                &serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            )
            .unwrap();
        let unsigned = URL_SAFE_NO_PAD.encode(&text);
        for bad in [
            altered,
            other_key,
            import_purpose,
            unsigned,
            format!("{payload}."),
            format!(".{tag}"),
            "garbage".to_owned(),
            "a.b.c".to_owned(),
            String::new(),
            format!("{cursor}{}", "A".repeat(MAX_CURSOR_LEN)),
        ] {
            assert_eq!(
                k.open_page("events/tenant/t1", &bad).unwrap_err().code(),
                "invalid_cursor",
                "{bad}"
            );
        }
        // A genuine cursor of another listing (another filter) does not open this one.
        assert_eq!(
            k.open_page("events/tenant/t2", &cursor).unwrap_err().code(),
            "invalid_cursor"
        );
        assert_eq!(
            k.page_request("failures/t1", Some(&cursor), 5)
                .unwrap_err()
                .code(),
            "invalid_cursor"
        );
        assert!(k.open_page("events/tenant/t1", &cursor).is_ok());
    }

    #[test]
    fn the_cursor_key_never_prints_and_must_be_long_enough() {
        // R-SAFE-2
        let k = CursorKey::new(SecretString::from("s3cr3t-".repeat(8))).unwrap();
        assert!(!format!("{k:?}").contains("s3cr3t"));
        assert!(CursorKey::new(SecretString::from("x".repeat(31))).is_err());
        assert!(CursorKey::new(SecretString::from("x".repeat(32))).is_ok());
    }
}
