//! The identity platform's error body (graph-spec §1.6), shared by every grant of the token
//! endpoint, and the exact AADSTS texts the emulator answers with (§1.4, §1.5, §1.6).
//!
//! Clients must branch on `error`, `error_codes` and `suberror`, never on the description; the
//! texts still follow the documented/observed wording so logs read like the real service's.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::request::RequestIds;

/// A token-endpoint (or authorize-page) error: HTTP status, OAuth `error`, AADSTS number, text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} AADSTS{code}: {message}")]
pub struct AadError {
    /// HTTP status (400, or 401 for `invalid_client`).
    pub status: StatusCode,
    /// OAuth `error` value, e.g. `invalid_grant`.
    pub error: &'static str,
    /// The AADSTS number (`error_codes[0]`).
    pub code: u32,
    /// Text after `AADSTS<n>: ` in `error_description`.
    pub message: String,
    /// Optional `suberror` (e.g. `consent_required` with 65001, graph-spec §1.4).
    pub suberror: Option<&'static str>,
}

impl AadError {
    fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            code,
            message: message.into(),
            suberror: None,
        }
    }

    /// 400 `invalid_request` with this AADSTS number and text (authorize-page errors; the
    /// redirect chooses its own `error` value).
    #[must_use]
    pub fn new_authorize(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", code, message)
    }

    /// The same error with another OAuth `error` value.
    #[must_use]
    pub fn with_error(mut self, error: &'static str) -> Self {
        self.error = error;
        self
    }

    /// 400 `invalid_request` AADSTS900144: a required parameter is missing.
    #[must_use]
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    /// 400 `unsupported_grant_type` AADSTS70003 (text unconfirmed, graph-spec §13.7).
    #[must_use]
    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70_003,
            format!("The app requested an unsupported grant type '{grant}'."),
        )
    }

    /// 400 `invalid_request` AADSTS90002: the `{tenant}` segment names no tenant (`error`
    /// pairing and exact text unconfirmed, graph-spec §13.7).
    #[must_use]
    pub fn unknown_tenant(tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90_002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }

    /// 400 `invalid_request` AADSTS9001023: the grant needs a tenant-specific endpoint (§1.1).
    #[must_use]
    pub fn grant_needs_tenant() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            9_001_023,
            "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations or tenant-specific endpoint.",
        )
    }

    /// 400 `unauthorized_client` AADSTS700016: unknown client id (`error` value unconfirmed,
    /// graph-spec §13.7).
    #[must_use]
    pub fn unknown_client(client_id: &str, directory: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{directory}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    /// 401 `invalid_client` AADSTS7000215: wrong client secret (graph-spec §1.5).
    #[must_use]
    pub fn invalid_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    }

    /// 401 `invalid_client` AADSTS7000222: the secret matched but has expired (status
    /// unconfirmed, graph-spec §13.7).
    #[must_use]
    pub fn expired_secret(client_id: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_222,
            format!(
                "The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."
            ),
        )
    }

    /// 401 `invalid_client` AADSTS7000218: no client secret or assertion (status unconfirmed,
    /// graph-spec §13.7; the emulator picks 401 like the other `invalid_client` errors).
    #[must_use]
    pub fn missing_client_secret() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    }

    /// 400 `invalid_scope` AADSTS1002012: client credentials without `/.default` (§1.5).
    #[must_use]
    pub fn scope_needs_default(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1_002_012,
            format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )
    }

    /// 400 `invalid_scope` AADSTS70011: a scope of an unknown resource (§1.5/§1.6).
    #[must_use]
    pub fn invalid_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70_011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        )
    }

    /// 400 `invalid_grant` AADSTS54005: the authorization code was already redeemed (§1.2).
    #[must_use]
    pub fn code_already_redeemed() -> Self {
        Self::invalid_grant(
            54_005,
            "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.",
        )
    }

    /// 400 `invalid_grant` AADSTS70008: the authorization code is past its ~10 minutes (§1.2).
    #[must_use]
    pub fn code_expired() -> Self {
        Self::invalid_grant(
            70_008,
            "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.",
        )
    }

    /// 400 `invalid_grant` AADSTS700005: the code belongs to another tenant (§1.6).
    #[must_use]
    pub fn code_other_tenant() -> Self {
        Self::invalid_grant(
            700_005,
            "Provided Authorization Code is intended to use against other tenant, thus rejected.",
        )
    }

    /// 400 `invalid_grant` AADSTS50148: PKCE verifier does not match the challenge (§1.6).
    #[must_use]
    pub fn pkce_mismatch() -> Self {
        Self::invalid_grant(
            50_148,
            "The code_verifier provided does not match the code_challenge supplied in the authorization request for PKCE.",
        )
    }

    /// 400 `invalid_grant` AADSTS9002313: a code or refresh token the service never issued
    /// (`error` value unconfirmed, graph-spec §1.4: the emulator picks `invalid_grant`).
    #[must_use]
    pub fn malformed_grant() -> Self {
        Self::invalid_grant(
            9_002_313,
            "Invalid request. Request is malformed or invalid.",
        )
    }

    /// 400 `invalid_grant` AADSTS70000: the grant exists but was issued to another client or
    /// redirect URI (text unconfirmed).
    #[must_use]
    pub fn grant_mismatch(what: &str) -> Self {
        Self::invalid_grant(
            70_000,
            format!("The provided value for the '{what}' parameter is not valid."),
        )
    }

    /// 400 `invalid_grant` AADSTS700082: refresh token idle too long (§1.4).
    #[must_use]
    pub fn refresh_inactive(issued: DateTime<Utc>, inactive: chrono::Duration) -> Self {
        Self::invalid_grant(
            700_082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for {}.",
                aad_instant(issued),
                timespan(inactive)
            ),
        )
    }

    /// 400 `invalid_grant` AADSTS50173: the grant predates the user's TokensValidFrom (§1.4).
    #[must_use]
    pub fn grant_revoked(auth_time: DateTime<Utc>, valid_from: DateTime<Utc>) -> Self {
        Self::invalid_grant(
            50_173,
            format!(
                "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '{}' and the TokensValidFrom date (before which tokens are not valid) for this user is '{}'.",
                aad_instant(auth_time),
                aad_instant(valid_from)
            ),
        )
    }

    /// 400 `invalid_grant` AADSTS50057: the user is disabled (`error` pairing unconfirmed,
    /// graph-spec §13.7).
    #[must_use]
    pub fn user_disabled() -> Self {
        Self::invalid_grant(
            50_057,
            "User account is disabled. The account has been disabled by an administrator.",
        )
    }

    /// 400 `invalid_grant` AADSTS50034: the user no longer exists in the directory.
    #[must_use]
    pub fn user_not_found(upn: &str, directory: &str) -> Self {
        Self::invalid_grant(
            50_034,
            format!(
                "The user account {upn} does not exist in the {directory} directory. To sign into this application, the account must be added to the directory."
            ),
        )
    }

    /// 400 `invalid_grant` AADSTS50020 (UserUnauthorized): a user of another tenant at a
    /// tenant-specific authority — on the sign-in page of `/{tenant}/oauth2/v2.0/authorize`, and
    /// for a refresh token redeemed at `/{tenant}/oauth2/v2.0/token` of a tenant the user does
    /// not belong to (R-CONN-7). graph-spec §1 does not document 50020; the code and its meaning
    /// ("user account from identity provider does not exist in tenant") are Microsoft's
    /// documented ones (reference-error-codes: UserUnauthorized), the exact wording below and the
    /// `invalid_grant` pairing on the token endpoint are unconfirmed.
    #[must_use]
    pub fn user_not_in_tenant(
        upn: &str,
        home_tenant: &str,
        tenant_name: &str,
        app_id: &str,
        app_name: &str,
    ) -> Self {
        Self::invalid_grant(
            50_020,
            format!(
                "User account '{upn}' from identity provider 'https://sts.windows.net/{home_tenant}/' does not exist in tenant '{tenant_name}' and cannot access the application '{app_id}'({app_name}) in that tenant. The account needs to be added as an external user in the tenant first. Sign out and sign in again with a different Azure Active Directory user account."
            ),
        )
    }

    /// 400 `invalid_grant` + `suberror: consent_required` AADSTS65001 (§1.4).
    #[must_use]
    pub fn consent_missing(app_id: &str, app_name: &str) -> Self {
        let mut e = Self::invalid_grant(
            65_001,
            format!(
                "The user or administrator has not consented to use the application with ID '{app_id}' named '{app_name}'. Send an interactive authorization request for this user and resource."
            ),
        );
        e.suberror = Some("consent_required");
        e
    }

    /// 400 `invalid_grant` with this AADSTS number and text.
    #[must_use]
    pub fn invalid_grant(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", code, message)
    }

    /// `error_description`: `AADSTS<n>: <text>\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …`.
    #[must_use]
    pub fn description(&self, ids: &RequestIds, now: DateTime<Utc>) -> String {
        format!(
            "AADSTS{}: {}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.code,
            self.message,
            ids.request_id,
            ids.client_request_id,
            timestamp(now)
        )
    }

    /// The §1.6 JSON body. The trace id is the response's `request-id`, the correlation id the
    /// client's `client-request-id` (or the request id when none was sent).
    #[must_use]
    pub fn body(&self, ids: &RequestIds, now: DateTime<Utc>) -> Value {
        let mut body = json!({
            "error": self.error,
            "error_description": self.description(ids, now),
            "error_codes": [self.code],
            "timestamp": timestamp(now),
            "trace_id": ids.request_id,
            "correlation_id": ids.client_request_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={}", self.code),
        });
        if let (Some(sub), Some(map)) = (self.suberror, body.as_object_mut()) {
            map.insert("suberror".into(), Value::String(sub.to_owned()));
        }
        body
    }

    /// The complete token-endpoint response.
    #[must_use]
    pub fn into_response_with(self, ids: &RequestIds, now: DateTime<Utc>) -> Response {
        let mut response = (self.status, Json(self.body(ids, now))).into_response();
        no_store(&mut response);
        response
    }
}

/// Adds the `Cache-Control: no-store` / `Pragma: no-cache` pair token responses carry.
pub fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `timestamp` format of §1.6: `YYYY-MM-DD HH:MM:SSZ` (a space, not `T`).
#[must_use]
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// Instants inside AADSTS texts: `2018-10-25T23:35:11.9832872Z` (seven fraction digits).
#[must_use]
pub fn aad_instant(at: DateTime<Utc>) -> String {
    let nanos = at.timestamp_subsec_nanos() / 100;
    format!("{}.{nanos:07}Z", at.format("%Y-%m-%dT%H:%M:%S"))
}

/// A .NET `TimeSpan` rendering (`d.hh:mm:ss`), as AADSTS700082 reports inactivity.
#[must_use]
pub fn timespan(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    format!(
        "{days}.{:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_instants_have_seven_fraction_digits_and_timespans_are_dotnet_style() {
        // graph-spec §1.4 (700082 / 50173 texts: `2018-10-25T23:35:11.9832872Z`, inactive for `d.hh:mm:ss`)
        let at = DateTime::parse_from_rfc3339("2018-10-25T23:35:11.983287200Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("valid instant");
        assert_eq!(aad_instant(at), "2018-10-25T23:35:11.9832872Z");
        assert_eq!(timestamp(at), "2018-10-25 23:35:11Z");
        assert_eq!(
            timespan(chrono::Duration::days(90) + chrono::Duration::seconds(3725)),
            "90.01:02:05"
        );
    }
}
