//! The HTML the sign-in and consent pages render, plus the small URL helpers they and the token
//! endpoint need (form decoding, query encoding, redirects).

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// Decodes an `application/x-www-form-urlencoded` body or query string (`+` is a space).
/// A repeated name keeps its first value.
#[must_use]
pub(super) fn parse_form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

/// Percent-decodes one form component (`+` → space; invalid escapes are kept literally).
#[must_use]
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Percent-encodes a query component (everything but RFC 3986 unreserved characters).
#[must_use]
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
#[must_use]
pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How the authorization response travels back to the client (§1.2 `response_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseMode {
    /// `?code=...` on the redirect URI (the default for the code flow).
    Query,
    /// `#code=...`.
    Fragment,
    /// An auto-submitting HTML form POSTed to the redirect URI.
    FormPost,
}

/// The response carrying `params` back to `redirect_uri`: a 302 for `query`/`fragment`, an
/// auto-submitting form page for `form_post`.
#[must_use]
pub(super) fn redirect(
    redirect_uri: &str,
    mode: ResponseMode,
    params: &[(&str, &str)],
) -> Response {
    if mode == ResponseMode::FormPost {
        let mut inputs = String::new();
        for (k, v) in params {
            let _ = write!(
                inputs,
                r#"<input type="hidden" name="{}" value="{}"/>"#,
                html_escape(k),
                html_escape(v)
            );
        }
        let body = format!(
            r#"<!DOCTYPE html><html><head><title>Working...</title></head><body onload="document.forms[0].submit()"><form method="POST" action="{}">{inputs}<noscript><input type="submit" value="Continue"/></noscript></form></body></html>"#,
            html_escape(redirect_uri)
        );
        return Html(body).into_response();
    }
    let encoded: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let joined = encoded.join("&");
    let location = match mode {
        ResponseMode::Fragment => format!("{redirect_uri}#{joined}"),
        _ if redirect_uri.contains('?') => format!("{redirect_uri}&{joined}"),
        _ => format!("{redirect_uri}?{joined}"),
    };
    let mut response = StatusCode::FOUND.into_response();
    match HeaderValue::from_str(&location) {
        Ok(v) => {
            response.headers_mut().insert(header::LOCATION, v);
            response
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            50_011,
            "The redirect URI is not valid.",
        ),
    }
}

/// A sign-in error page that does not redirect (unknown client, unregistered redirect URI,
/// unknown tenant: the service cannot trust the redirect URI then). The AADSTS code is in the
/// page and in the `x-ms-ests-error` header so scripts need not parse HTML (that header name
/// is the emulator's own).
#[must_use]
pub(super) fn error_page(status: StatusCode, code: u32, message: &str) -> Response {
    let body = format!(
        r#"<!DOCTYPE html><html><head><title>Sign in to your account</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p id="error">AADSTS{code}: {}</p></body></html>"#,
        html_escape(message)
    );
    let mut response = (status, Html(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&code.to_string()) {
        response.headers_mut().insert("x-ms-ests-error", v);
    }
    response
}

/// What the sign-in page shows.
#[derive(Debug)]
pub(super) struct SignInPage<'a> {
    /// Page title, e.g. "Sign in" or "Permissions requested".
    pub title: &'a str,
    /// The app asking.
    pub app_name: &'a str,
    /// Permissions listed for consent.
    pub permissions: &'a [String],
    /// Whether this is a tenant-wide (admin) consent.
    pub admin_consent: bool,
    /// The original request parameters, carried as hidden fields.
    pub hidden: &'a HashMap<String, String>,
    /// Prefilled login (`login_hint`).
    pub login_hint: &'a str,
    /// An error from a previous attempt (`(AADSTS code, text)`).
    pub error: Option<(u32, &'a str)>,
}

/// Renders the sign-in + consent page. Submitting it POSTs the hidden parameters plus
/// `login`, `passwd` and `action=accept|cancel` back to the same URL.
#[must_use]
pub(super) fn sign_in_page(page: &SignInPage<'_>) -> Response {
    let mut hidden = String::new();
    let mut keys: Vec<&String> = page.hidden.keys().collect();
    keys.sort();
    for k in keys {
        if matches!(k.as_str(), "login" | "passwd" | "action") {
            continue;
        }
        let _ = write!(
            hidden,
            r#"<input type="hidden" name="{}" value="{}"/>"#,
            html_escape(k),
            html_escape(&page.hidden[k])
        );
    }
    let mut perms = String::new();
    for p in page.permissions {
        let _ = write!(perms, "<li>{}</li>", html_escape(p));
    }
    let error = page.error.map_or_else(String::new, |(code, text)| {
        format!(
            r#"<p id="error" role="alert">AADSTS{code}: {}</p>"#,
            html_escape(text)
        )
    });
    let scope_note = if page.admin_consent {
        "Accepting grants these permissions to the app for your whole organization."
    } else {
        "Accepting lets the app use these permissions on your behalf."
    };
    let body = format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"/><title>{title}</title></head><body>
<h1>{title}</h1>
<p><b>{app}</b> (m365-emulator) is requesting access.</p>
{error}
<form method="POST">
{hidden}
<label>Email, phone, or Skype <input type="email" name="login" value="{login}" autocomplete="username"/></label><br/>
<label>Password <input type="password" name="passwd" autocomplete="current-password"/></label>
<h2>Permissions requested</h2><ul>{perms}</ul><p>{scope_note}</p>
<button type="submit" name="action" value="accept">Accept</button>
<button type="submit" name="action" value="cancel">Cancel</button>
</form></body></html>"#,
        title = html_escape(page.title),
        app = html_escape(page.app_name),
        login = html_escape(page.login_hint),
    );
    let mut response = Html(body).into_response();
    if let Some((code, _)) = page.error
        && let Ok(v) = HeaderValue::from_str(&code.to_string())
    {
        response.headers_mut().insert("x-ms-ests-error", v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_plus_escapes_and_broken_escapes() {
        // RFC 6749 §2.3.1 / application/x-www-form-urlencoded, as the token endpoint receives it
        let form = parse_form(b"a=x+y%2Fz&b=%zz&c=caf%C3%A9&a=second&d");
        assert_eq!(form["a"], "x y/z");
        assert_eq!(form["b"], "%zz");
        assert_eq!(form["c"], "café");
        assert_eq!(form["d"], "");
    }

    #[test]
    fn query_encoding_round_trips_through_decoding() {
        let raw = "AADSTS65004: denied.\r\nTrace ID: 1 & more=?#";
        let encoded = percent_encode(raw);
        assert!(
            encoded
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c))
        );
        assert_eq!(percent_decode(&encoded), raw);
    }

    #[test]
    fn html_escaping_neutralises_markup() {
        assert_eq!(
            html_escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
