//! The Microsoft identity platform side (graph-spec §1): the admin's authorization URL with PKCE
//! S256 and `state`, the code exchange, the refresh-token grant with rotation, and client
//! credentials, all through the `oauth2` crate over our own `reqwest` client.
//!
//! Token-endpoint errors are classified on `error` (+ `error_codes`), never on the description
//! (graph-spec §1.6): `invalid_grant` means the tenant must be reauthorized (R-CONN-4),
//! `invalid_client` and friends are configuration errors — `invalid_client` / `unauthorized_client`
//! (our client refused: wrong or expired secret) become the engine's `ClientConfiguration`, which
//! token refresh records, alerts and fails loudly on (R-OPS-1) — and 429/5xx/
//! `temporarily_unavailable` are retried later.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use m365_engine::error::UnavailableReason;
use m365_engine::model::{M365TenantId, TenantTokens};
use oauth2::basic::{
    BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenResponse,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::parse_retry_after;

/// The Graph resource prefix of delegated scopes and of the client-credentials `/.default` scope.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";

/// Delegated scopes the connect flow asks for by default (`offline_access` for the refresh token).
pub const DEFAULT_SCOPES: &[&str] = &[
    "offline_access",
    "https://graph.microsoft.com/User.ReadWrite.All",
    "https://graph.microsoft.com/Group.ReadWrite.All",
    "https://graph.microsoft.com/GroupMember.ReadWrite.All",
    "https://graph.microsoft.com/Domain.Read.All",
    "https://graph.microsoft.com/Organization.Read.All",
    // Directory roles and their members (R-BIND-11: privileged accounts are never taken over).
    "https://graph.microsoft.com/RoleManagement.Read.Directory",
];

/// The token endpoint's error body (graph-spec §1.6). Only the machine-readable members are kept;
/// `error_description` is read for nothing but its AADSTS prefix when `error_codes` is missing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenErrorResponse {
    /// `invalid_grant`, `invalid_client`, …
    pub error: String,
    /// Human text beginning `AADSTS<n>: ` (kept out of logs and `Display`).
    #[serde(default)]
    pub error_description: Option<String>,
    /// AADSTS numbers.
    #[serde(default)]
    pub error_codes: Vec<u32>,
    /// e.g. `consent_required` (graph-spec §1.4).
    #[serde(default)]
    pub suberror: Option<String>,
}

impl TokenErrorResponse {
    /// The first AADSTS code, from `error_codes` or else the description's `AADSTS<n>:` prefix.
    #[must_use]
    pub fn aadsts(&self) -> Option<u32> {
        self.error_codes.first().copied().or_else(|| {
            let rest = self.error_description.as_deref()?.strip_prefix("AADSTS")?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
    }
}

impl std::fmt::Display for TokenErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.aadsts() {
            Some(code) => write!(f, "{} (AADSTS{code})", self.error),
            None => f.write_str(&self.error),
        }
    }
}

impl oauth2::ErrorResponse for TokenErrorResponse {}

/// A failed call to the token endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The grant was refused (`invalid_grant`: expired, revoked, consent withdrawn, user disabled…):
    /// an admin must connect the tenant again (R-CONN-4). Never retried.
    #[error("reauthorization required (AADSTS{aadsts:?}, suberror {suberror:?})")]
    ReauthorizationRequired {
        /// The AADSTS code (700082, 50173, 65001, …), when given.
        aadsts: Option<u32>,
        /// `suberror`, e.g. `consent_required`.
        suberror: Option<String>,
    },
    /// Our client registration or request is wrong (`invalid_client`: bad or expired secret;
    /// `unauthorized_client`, `invalid_scope`, `invalid_request`, …). Never retried.
    #[error("identity platform configuration error: {error} (AADSTS{aadsts:?})")]
    Configuration {
        /// The OAuth `error` value.
        error: String,
        /// The AADSTS code, when given.
        aadsts: Option<u32>,
    },
    /// The identity platform is throttling or unavailable (429, 5xx, `temporarily_unavailable`,
    /// connection failure): retry later.
    #[error("identity platform unavailable (status {status:?})")]
    Unavailable {
        /// HTTP status, when the platform answered.
        status: Option<u16>,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
        /// The client timeout fired.
        timeout: bool,
    },
    /// The platform answered something that is not a documented token response. The body is
    /// deliberately not kept: it may hold tokens.
    #[error("unexpected token endpoint response")]
    Malformed,
    /// A configured URL is invalid.
    #[error("invalid identity platform URL")]
    Url,
    /// The caller's persistence step for rotated tokens failed; the new tokens were discarded
    /// (they are never used unsaved).
    #[error("saving the rotated tokens failed")]
    Persist(#[source] Box<m365_engine::Error>),
}

impl TokenError {
    /// Classifies a token-endpoint error body (graph-spec §1.4–§1.6, §12).
    #[must_use]
    pub fn from_response(response: &TokenErrorResponse) -> Self {
        let aadsts = response.aadsts();
        // The `error` value paired with some codes (50057, 50076, 700016, 90002) is unconfirmed
        // (graph-spec §13.7); we branch on `error` as Microsoft advises, never on the description.
        match response.error.as_str() {
            "invalid_grant" | "interaction_required" | "consent_required" => {
                Self::ReauthorizationRequired {
                    aadsts,
                    suberror: response.suberror.clone(),
                }
            }
            "temporarily_unavailable" | "server_error" => Self::Unavailable {
                status: None,
                retry_after: None,
                timeout: false,
            },
            other => Self::Configuration {
                error: other.to_owned(),
                aadsts,
            },
        }
    }

    /// Whether retrying later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } => true,
            Self::Persist(inner) => inner.is_retryable(),
            _ => false,
        }
    }
}

impl From<TokenError> for m365_engine::Error {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::ReauthorizationRequired { aadsts, .. } => Self::ReauthorizationRequired {
                // 0 only when the platform gave no AADSTS code at all.
                aadsts: aadsts.unwrap_or(0),
            },
            TokenError::Unavailable {
                status: Some(429),
                retry_after,
                ..
            } => Self::Throttled {
                retry_after,
                graph_request_id: None,
            },
            TokenError::Unavailable {
                retry_after,
                timeout,
                ..
            } => Self::Unavailable {
                component: "identity",
                reason: if timeout {
                    UnavailableReason::Timeout
                } else {
                    UnavailableReason::Service
                },
                retry_after,
                graph_request_id: None,
                source: None,
            },
            TokenError::Persist(inner) => *inner,
            // Our client itself is refused (graph-spec §1.5: wrong secret AADSTS7000215, expired
            // secret 7000222, no secret 7000218, app not in the tenant 700016): an admin must fix
            // the app registration or the stored secret (R-OPS-1).
            TokenError::Configuration { error, aadsts }
                if matches!(error.as_str(), "invalid_client" | "unauthorized_client") =>
            {
                Self::ClientConfiguration { error, aadsts }
            }
            other
            @ (TokenError::Configuration { .. } | TokenError::Malformed | TokenError::Url) => {
                Self::Infrastructure {
                    component: "identity",
                    source: Box::new(other),
                }
            }
        }
    }
}

/// Transport-level failure of a token request (kept internal; mapped onto [`TokenError`]).
#[derive(Debug, thiserror::Error)]
enum Transport {
    #[error("token endpoint unreachable")]
    Send(#[source] reqwest::Error),
    #[error("token endpoint answered {status}")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("token request could not be built")]
    Build,
}

/// Tokens from the token endpoint. `Debug` redacts them.
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// Access token for Graph.
    pub access_token: SecretString,
    /// Refresh token (absent for client credentials and without `offline_access`).
    pub refresh_token: Option<SecretString>,
    /// When the access token expires (from `expires_in`; one hour when absent).
    pub expires_at: DateTime<Utc>,
    /// Granted scopes, when the platform echoed them.
    pub scopes: Vec<String>,
}

impl TokenSet {
    /// The vault form of these tokens; `None` without a refresh token. The issuing Microsoft
    /// tenant is not known from the response (the connect callback reads it with the token,
    /// R-CONN-7): see [`TokenSet::to_tenant_tokens_of`].
    #[must_use]
    pub fn to_tenant_tokens(&self) -> Option<TenantTokens> {
        self.to_tenant_tokens_of(None)
    }

    /// The vault form of these tokens, naming the Microsoft tenant that issued them (the one
    /// whose authority they were redeemed at); `None` without a refresh token.
    #[must_use]
    pub fn to_tenant_tokens_of(&self, issuer: Option<&M365TenantId>) -> Option<TenantTokens> {
        Some(TenantTokens {
            access_token: self.access_token.clone(),
            refresh_token: self.refresh_token.clone()?,
            expires_at: self.expires_at,
            m365_tenant_id: issuer.cloned(),
        })
    }

    fn from_response(response: &BasicTokenResponse, now: DateTime<Utc>) -> Self {
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1));
        Self {
            access_token: SecretString::from(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|r| SecretString::from(r.secret().clone())),
            expires_at: now + lifetime,
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        }
    }
}

/// The start of an admin's sign-in: the URL to send the browser to, and what the callback needs
/// (the caller stores `state` and the PKCE verifier until the callback, R-SAFE-3).
#[derive(Debug)]
pub struct AuthorizationStart {
    /// The `/authorize` URL (response_type=code, PKCE S256, state).
    pub url: reqwest::Url,
    /// The CSRF `state` value the callback must echo.
    pub state: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: SecretString,
}

type MsClient<HasAuthUrl> = oauth2::Client<
    TokenErrorResponse,
    BasicTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    HasAuthUrl,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Client of the identity platform for one app registration.
#[derive(Debug, Clone)]
pub struct IdentityClient {
    http: reqwest::Client,
    base: String,
    client_id: String,
    client_secret: SecretString,
    redirect_uri: Option<String>,
    scopes: Vec<String>,
}

impl IdentityClient {
    /// A client for the app `client_id` at `base` (e.g. `https://login.microsoftonline.com`).
    /// `http` must not follow redirects (see [`crate::GraphClientBuilder`]).
    #[must_use]
    pub fn new(
        http: reqwest::Client,
        base: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            http,
            base: base.into().trim_end_matches('/').to_owned(),
            client_id: client_id.into(),
            client_secret,
            redirect_uri: None,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Sets the registered redirect URI of the code flow.
    #[must_use]
    pub fn with_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// The app's client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn endpoint(&self, authority: &str, leaf: &str) -> String {
        format!("{}/{authority}/oauth2/v2.0/{leaf}", self.base)
    }

    fn client(&self, authority: &str) -> Result<MsClient<EndpointNotSet>, TokenError> {
        let token_url =
            TokenUrl::new(self.endpoint(authority, "token")).map_err(|_| TokenError::Url)?;
        let mut client = oauth2::Client::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.client_secret.expose_secret().to_owned(),
            ))
            // Microsoft accepts the secret in the body (graph-spec §1.2); Basic would need it URL-encoded.
            .set_auth_type(oauth2::AuthType::RequestBody)
            .set_token_uri(token_url);
        if let Some(uri) = &self.redirect_uri {
            client = client
                .set_redirect_uri(RedirectUrl::new(uri.clone()).map_err(|_| TokenError::Url)?);
        }
        Ok(client)
    }

    /// The admin's sign-in URL for `authority` (`organizations` before the tenant is known, or a
    /// tenant id), with a fresh PKCE S256 challenge and `state` (R-CONN-1, R-SAFE-3).
    ///
    /// # Errors
    /// [`TokenError::Url`] for a bad base or redirect URI.
    pub fn authorization_url(&self, authority: &str) -> Result<AuthorizationStart, TokenError> {
        let auth_url =
            AuthUrl::new(self.endpoint(authority, "authorize")).map_err(|_| TokenError::Url)?;
        let client = self.client(authority)?.set_auth_uri(auth_url);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .add_extra_param("response_mode", "query")
            .url();
        Ok(AuthorizationStart {
            url,
            state: state.secret().clone(),
            pkce_verifier: SecretString::from(verifier.secret().clone()),
        })
    }

    /// Redeems an authorization code (with its PKCE verifier) for tokens.
    ///
    /// # Errors
    /// [`TokenError`] classified per graph-spec §12 (a reused or expired code is `invalid_grant`).
    pub async fn exchange_code(
        &self,
        authority: &str,
        code: &SecretString,
        pkce_verifier: &SecretString,
    ) -> Result<TokenSet, TokenError> {
        let client = self.client(authority)?;
        let http = |request| send(self.http.clone(), request);
        let response = client
            .exchange_code(AuthorizationCode::new(code.expose_secret().to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                pkce_verifier.expose_secret().to_owned(),
            ))
            .request_async(&http)
            .await
            .map_err(classify)?;
        Ok(TokenSet::from_response(&response, Utc::now()))
    }

    /// Redeems `refresh_token`. The rotated tokens are handed to `persist` BEFORE they are
    /// returned, so a new access token is never used unless its refresh token was saved
    /// (R-CONN-4). Microsoft keeps the old refresh token valid (graph-spec §1.4), so a lost
    /// response costs nothing; when no new refresh token is returned the old one is kept.
    ///
    /// # Errors
    /// [`TokenError`] per graph-spec §12; [`TokenError::Persist`] when `persist` fails.
    pub async fn refresh<F, Fut>(
        &self,
        authority: &str,
        refresh_token: &SecretString,
        persist: F,
    ) -> Result<TokenSet, TokenError>
    where
        F: FnOnce(TokenSet) -> Fut,
        Fut: Future<Output = Result<(), m365_engine::Error>>,
    {
        let client = self.client(authority)?;
        let http = |request| send(self.http.clone(), request);
        let old = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = client
            .exchange_refresh_token(&old)
            .request_async(&http)
            .await
            .map_err(classify)?;
        let mut tokens = TokenSet::from_response(&response, Utc::now());
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        persist(tokens.clone())
            .await
            .map_err(|e| TokenError::Persist(Box::new(e)))?;
        Ok(tokens)
    }

    /// App-only tokens (`client_credentials`, scope `https://graph.microsoft.com/.default`).
    ///
    /// # Errors
    /// [`TokenError`] per graph-spec §1.5, §12.
    pub async fn client_credentials(&self, authority: &str) -> Result<TokenSet, TokenError> {
        let client = self.client(authority)?;
        let http = |request| send(self.http.clone(), request);
        let response = client
            .exchange_client_credentials()
            .add_scope(Scope::new(format!("{GRAPH_RESOURCE}/.default")))
            .request_async(&http)
            .await
            .map_err(classify)?;
        Ok(TokenSet::from_response(&response, Utc::now()))
    }
}

/// Sends a token request with our client; 429 and 5xx become transport errors so that their
/// status and `Retry-After` survive (oauth2 would only see an unparseable body).
async fn send(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, Transport> {
    let request = reqwest::Request::try_from(request).map_err(|_| Transport::Build)?;
    let response = client.execute(request).await.map_err(Transport::Send)?;
    let status = response.status();
    if status.as_u16() == 429 || status.is_server_error() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        return Err(Transport::Status {
            status: status.as_u16(),
            retry_after,
        });
    }
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(Transport::Send)?;
    let mut out = HttpResponse::new(body.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn classify(e: RequestTokenError<Transport, TokenErrorResponse>) -> TokenError {
    match e {
        RequestTokenError::ServerResponse(response) => TokenError::from_response(&response),
        RequestTokenError::Request(Transport::Status {
            status,
            retry_after,
        }) => TokenError::Unavailable {
            status: Some(status),
            retry_after,
            timeout: false,
        },
        RequestTokenError::Request(Transport::Send(source)) => TokenError::Unavailable {
            status: None,
            retry_after: None,
            timeout: source.is_timeout(),
        },
        RequestTokenError::Request(Transport::Build) => TokenError::Url,
        // The body of a parse failure may hold tokens: it is dropped here.
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => TokenError::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> TokenErrorResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn invalid_grant_on_the_token_endpoint_requires_reauthorization_with_its_aadsts_code() {
        // graph-spec §12 row 1; R-CONN-4
        for (json, code) in [
            (
                r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.","error_codes":[700082]}"#,
                700_082,
            ),
            (
                r#"{"error":"invalid_grant","error_description":"AADSTS50173: The provided grant has expired.","error_codes":[50173]}"#,
                50_173,
            ),
            (
                r#"{"error":"invalid_grant","suberror":"consent_required","error_description":"AADSTS65001: The user or administrator has not consented.","error_codes":[65001]}"#,
                65_001,
            ),
            (
                r#"{"error":"invalid_grant","error_description":"AADSTS50057: The user account is disabled."}"#,
                50_057,
            ),
        ] {
            let e = TokenError::from_response(&body(json));
            assert!(
                matches!(e, TokenError::ReauthorizationRequired { aadsts: Some(c), .. } if c == code),
                "{e:?}"
            );
            assert!(!e.is_retryable());
            let engine = m365_engine::Error::from(e);
            assert!(
                matches!(engine, m365_engine::Error::ReauthorizationRequired { aadsts } if aadsts == code)
            );
            assert!(!engine.is_retryable());
        }
    }

    #[test]
    fn consent_required_suberror_is_kept() {
        // graph-spec §1.4 (65001 + suberror); R-CONN-4
        let e = TokenError::from_response(&body(
            r#"{"error":"invalid_grant","suberror":"consent_required","error_codes":[65001]}"#,
        ));
        assert!(
            matches!(e, TokenError::ReauthorizationRequired { suberror: Some(s), .. } if s == "consent_required")
        );
    }

    #[test]
    fn invalid_client_on_the_token_endpoint_is_a_configuration_error_and_not_retried() {
        // graph-spec §12 row 2 (AADSTS7000215 / 7000222)
        for code in [7_000_215, 7_000_222] {
            let e = TokenError::from_response(&body(&format!(
                r#"{{"error":"invalid_client","error_description":"AADSTS{code}: Invalid client secret provided.","error_codes":[{code}]}}"#
            )));
            assert!(
                matches!(&e, TokenError::Configuration { error, aadsts: Some(c) } if error == "invalid_client" && *c == code)
            );
            let engine = m365_engine::Error::from(e);
            assert!(
                matches!(&engine, m365_engine::Error::ClientConfiguration { error, aadsts: Some(c) } if error == "invalid_client" && *c == code),
                "{engine:?}"
            );
            assert!(!engine.is_retryable());
            assert_eq!(engine.code(), "configuration_error");
        }
        // R-OPS-1: unauthorized_client (AADSTS700016, the app is not in the tenant) likewise.
        let e = TokenError::from_response(&body(
            r#"{"error":"unauthorized_client","error_description":"AADSTS700016: Application not found.","error_codes":[700016]}"#,
        ));
        assert!(matches!(
            m365_engine::Error::from(e),
            m365_engine::Error::ClientConfiguration {
                aadsts: Some(700_016),
                ..
            }
        ));
        // Other request errors stay internal failures (our bug, not the admin's configuration).
        let e =
            TokenError::from_response(&body(r#"{"error":"invalid_scope","error_codes":[70011]}"#));
        assert!(matches!(
            m365_engine::Error::from(e),
            m365_engine::Error::Infrastructure {
                component: "identity",
                ..
            }
        ));
    }

    #[test]
    fn temporarily_unavailable_5xx_and_429_on_the_token_endpoint_are_retried() {
        // graph-spec §12 row 3
        let e = TokenError::from_response(&body(r#"{"error":"temporarily_unavailable"}"#));
        assert!(e.is_retryable());
        assert!(m365_engine::Error::from(e).is_retryable());
        let e = classify(RequestTokenError::Request(Transport::Status {
            status: 503,
            retry_after: None,
        }));
        assert!(e.is_retryable() && m365_engine::Error::from(e).is_retryable());
        let e = classify(RequestTokenError::Request(Transport::Status {
            status: 429,
            retry_after: Some(Duration::from_millis(2128)),
        }));
        let engine = m365_engine::Error::from(e);
        assert!(matches!(engine, m365_engine::Error::Throttled { .. }));
        assert_eq!(engine.retry_after(), Some(Duration::from_millis(2128)));
    }

    #[test]
    fn the_aadsts_code_is_read_from_the_description_when_error_codes_is_missing() {
        // graph-spec §1.6
        assert_eq!(
            body(r#"{"error":"invalid_grant","error_description":"AADSTS70000: x"}"#).aadsts(),
            Some(70_000)
        );
        assert_eq!(body(r#"{"error":"invalid_grant"}"#).aadsts(), None);
    }

    #[test]
    fn token_sets_never_show_tokens_in_debug_output() {
        // R-SAFE-2
        let tokens = TokenSet {
            access_token: SecretString::from("at-very-secret".to_owned()),
            refresh_token: Some(SecretString::from("rt-very-secret".to_owned())),
            expires_at: Utc::now(),
            scopes: Vec::new(),
        };
        let debug = format!("{tokens:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
    }

    #[test]
    fn the_authorization_url_carries_pkce_s256_state_and_offline_access() {
        // R-CONN-1, R-SAFE-3
        let client = IdentityClient::new(
            reqwest::Client::new(),
            "https://login.example.test/",
            "app-id",
            SecretString::from("s".to_owned()),
        )
        .with_redirect_uri("http://localhost:8400/oauth/callback");
        let start = client.authorization_url("organizations").unwrap();
        let pairs: std::collections::HashMap<_, _> = start.url.query_pairs().into_owned().collect();
        assert_eq!(start.url.path(), "/organizations/oauth2/v2.0/authorize");
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert_eq!(pairs["state"], start.state);
        assert_eq!(pairs["client_id"], "app-id");
        assert!(pairs["scope"].split(' ').any(|s| s == "offline_access"));
        assert!(pairs["code_challenge"].len() >= 43);
        assert!(!pairs.contains_key("client_secret"));
        let again = client.authorization_url("organizations").unwrap();
        assert_ne!(start.state, again.state, "state is fresh per sign-in");
    }
}
