//! Microsoft identity platform surface (graph-spec §1): token, authorize and admin-consent
//! endpoints, the validation of the access tokens Graph calls present (§2.6), and the identity
//! hooks of the `/_emulator/...` admin API.
//!
//! Everything lives in [`IdentityState`] inside the one locked [`State`]; expiries read the
//! emulator clock, so tests can jump ahead instead of waiting.
//!
//! Token formats (§1.7): authorization codes and refresh tokens are opaque random strings;
//! access tokens are JWT-shaped (`header.payload.signature`, base64url) so clients can decode
//! `tid`, `appid`, `roles`/`scp` and `exp`, but the emulator validates them by looking them up,
//! not by signature. An access token stays valid until it expires even after the user's
//! sessions are revoked (the real service behaves so for apps without continuous access
//! evaluation); revocation hits the refresh token (AADSTS50173).

mod aadsts;
mod admin;
mod authorize;
mod page;
mod token;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use crate::AppState;
use crate::state::State;

pub use aadsts::AadError;

/// Microsoft Graph's resource URI, the only resource the emulator issues tokens for.
pub const GRAPH_RESOURCE: &str = "https://graph.microsoft.com";
/// Microsoft Graph's well-known application id (an alternative resource identifier).
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";

/// Lifetimes the identity platform applies; adjustable through
/// `PUT /_emulator/identity/settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentitySettings {
    /// Access-token lifetime (`expires_in`); 3599 s like the real service's typical value.
    pub access_token_lifetime: Duration,
    /// Authorization-code lifetime ("about 10 minutes", §1.2).
    pub code_lifetime: Duration,
    /// Refresh-token inactivity window (90 days, §1.4; the equality of the inactivity window
    /// with the documented lifetime is unconfirmed, graph-spec §13.14).
    pub refresh_idle: Duration,
    /// Failed sign-ins before a lockout (AADSTS50053), default 10 (§3.7).
    pub lockout_threshold: u32,
    /// Lockout duration, default 1 minute (§3.7).
    pub lockout_duration: Duration,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            access_token_lifetime: Duration::seconds(3599),
            code_lifetime: Duration::minutes(10),
            refresh_idle: Duration::days(90),
            lockout_threshold: 10,
            lockout_duration: Duration::minutes(1),
        }
    }
}

/// Identity-platform state kept inside the locked [`State`] (`state.identity`).
///
/// Its `Debug` output shows counts only: codes and tokens are credentials.
#[derive(Default)]
pub struct IdentityState {
    /// Lifetimes and thresholds.
    pub settings: IdentitySettings,
    access_tokens: HashMap<String, IssuedAccessToken>,
    codes: HashMap<String, AuthCode>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    /// Delegated scopes consented tenant-wide by admin consent: (tenant id, app id) → scopes.
    tenant_consents: BTreeMap<(String, String), BTreeSet<String>>,
    /// Delegated scopes consented by one user beyond the app's required scopes:
    /// (tenant id, app id, user id) → scopes.
    user_consents: BTreeMap<(String, String, String), BTreeSet<String>>,
    /// Failed sign-ins per user id: (count, locked until).
    failed_sign_ins: HashMap<String, (u32, Option<DateTime<Utc>>)>,
}

impl std::fmt::Debug for IdentityState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityState")
            .field("settings", &self.settings)
            .field("access_tokens", &self.access_tokens.len())
            .field("codes", &self.codes.len())
            .field("refresh_tokens", &self.refresh_tokens.len())
            .field("tenant_consents", &self.tenant_consents)
            .field("user_consents", &self.user_consents)
            .finish_non_exhaustive()
    }
}

/// What a valid access token says: who the caller is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// Tenant id (GUID, lower case; the key of `State::tenants`).
    pub tenant_id: String,
    /// Client id of the calling app.
    pub app_id: String,
    /// Application permissions (`roles` claim), app-only tokens.
    pub roles: Vec<String>,
    /// Delegated permissions (`scp` claim), user tokens.
    pub scopes: Vec<String>,
    /// The signed-in user for delegated tokens; `None` for app-only tokens.
    pub user_upn: Option<String>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
}

/// Why a bearer token was refused; the Graph layer maps each to 401
/// `InvalidAuthenticationToken` with the graph-spec §2.6 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No token (missing header or empty bearer).
    #[error("access token is empty")]
    Empty,
    /// Not a well-formed token.
    #[error("access token is malformed")]
    Malformed,
    /// Well-formed but not issued by this emulator (or its signature does not verify).
    #[error("access token signature is invalid")]
    InvalidSignature,
    /// Past its expiry.
    #[error("access token is expired")]
    Expired,
}

#[derive(Debug, Clone)]
struct IssuedAccessToken {
    claims: AccessClaims,
    issued_at: DateTime<Utc>,
}

/// PKCE transformation (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PkceMethod {
    Plain,
    S256,
}

#[derive(Debug, Clone)]
struct AuthCode {
    client_id: String,
    tenant_id: String,
    user_id: String,
    redirect_uri: String,
    /// Requested scopes as sent (OIDC scopes and Graph scopes, short names).
    scopes: Vec<String>,
    challenge: Option<(String, PkceMethod)>,
    /// OIDC `nonce` of the authorize request, echoed in the ID token.
    nonce: Option<String>,
    issued_at: DateTime<Utc>,
    redeemed: bool,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    client_id: String,
    tenant_id: String,
    user_id: String,
    /// OIDC scopes of the original request (`openid`, `offline_access`, ...).
    oidc_scopes: Vec<String>,
    /// When the user signed in (the grant's issue time; AADSTS50173 compares it).
    auth_time: DateTime<Utc>,
    /// When this refresh token was issued.
    issued_at: DateTime<Utc>,
    /// Last redemption (or issue); the inactivity window runs from here.
    last_used_at: DateTime<Utc>,
}

/// Identity-platform routes (`/{tenant}/oauth2/v2.0/...`, `/{tenant}/v2.0/adminconsent`,
/// `/{tenant}/adminconsent`, and identity admin hooks under `/_emulator/...`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(token::token).get(token::token_get),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::authorize_page).post(authorize::authorize_submit),
        )
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(authorize::admin_consent_page_v2).post(authorize::admin_consent_submit_v2),
        )
        .route(
            "/{tenant}/adminconsent",
            get(authorize::admin_consent_page_v1).post(authorize::admin_consent_submit_v1),
        )
        .route("/_emulator/tokens", post(admin::mint))
        .route("/_emulator/identity/state", get(admin::raw_state))
        .route(
            "/_emulator/identity/settings",
            get(admin::get_settings).put(admin::put_settings),
        )
        .route(
            "/_emulator/identity/tenants/{tenant}/apps/{app}/consent",
            post(admin::grant_consent).delete(admin::revoke_consent),
        )
        .route(
            "/_emulator/tenants/{tenant}/admins/{upn}/reset-password",
            post(admin::reset_password),
        )
        .route(
            "/_emulator/tenants/{tenant}/users/{user}/revoke-sessions",
            post(admin::revoke_sessions),
        )
}

/// Validates a bearer token (the part after `Bearer `) against the emulator clock.
///
/// # Errors
/// An [`AuthFailure`] saying why the token is refused: [`AuthFailure::Empty`] for blank
/// input, [`AuthFailure::Malformed`] unless it is three base64url segments whose first two
/// decode to JSON objects, [`AuthFailure::InvalidSignature`] for a well-formed token this
/// emulator did not issue, [`AuthFailure::Expired`] once `exp` has passed.
pub fn authenticate(state: &State, bearer: &str) -> Result<AccessClaims, AuthFailure> {
    let bearer = bearer.trim();
    if bearer.is_empty() {
        return Err(AuthFailure::Empty);
    }
    // Issued tokens are well-formed by construction: only an unknown token needs the shape check.
    let Some(issued) = state.identity.access_tokens.get(bearer) else {
        return Err(if is_jwt_shaped(bearer) {
            AuthFailure::InvalidSignature
        } else {
            AuthFailure::Malformed
        });
    };
    if issued.claims.expires_at <= state.clock.now() {
        return Err(AuthFailure::Expired);
    }
    Ok(issued.claims.clone())
}

/// Issues an access token carrying exactly these claims (for the admin API and tests).
pub fn mint_access_token(state: &mut State, claims: AccessClaims) -> String {
    let now = state.clock.now();
    let user_oid = claims.user_upn.as_deref().and_then(|upn| {
        state
            .tenants
            .get(&claims.tenant_id)
            .and_then(|t| t.active_user_by_upn(upn))
            .map(|u| u.id.clone())
    });
    let sp_oid = state
        .tenants
        .get(&claims.tenant_id)
        .and_then(|t| t.app_grants.get(&claims.app_id))
        .map(|g| g.service_principal_id.clone());
    let mut payload = json!({
        "aud": GRAPH_RESOURCE,
        "iss": format!("https://sts.windows.net/{}/", claims.tenant_id),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": claims.expires_at.timestamp(),
        "appid": claims.app_id,
        "azp": claims.app_id,
        "tid": claims.tenant_id,
        "oid": user_oid.or(sp_oid),
        "uti": random_token(16),
        "ver": "1.0",
    });
    if let Some(map) = payload.as_object_mut() {
        if !claims.roles.is_empty() {
            map.insert("roles".into(), json!(claims.roles));
        }
        if !claims.scopes.is_empty() {
            map.insert("scp".into(), json!(claims.scopes.join(" ")));
        }
        if let Some(upn) = &claims.user_upn {
            map.insert("upn".into(), json!(upn));
            map.insert("unique_name".into(), json!(upn));
        }
    }
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "m365-emulator"});
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        random_token(32)
    );
    let identity = &mut state.identity;
    // Keep memory bounded in long runs: drop long-expired tokens now and then.
    if identity.access_tokens.len() > 50_000 {
        identity
            .access_tokens
            .retain(|_, t| t.claims.expires_at > now - Duration::hours(1));
    }
    identity.access_tokens.insert(
        token.clone(),
        IssuedAccessToken {
            claims,
            issued_at: now,
        },
    );
    token
}

/// Revokes every refresh token of a user issued before now: sets `tokens_valid_from`, so the
/// next refresh answers AADSTS50173 (§1.4 revocation matrix, §1.7). Graph's
/// `revokeSignInSessions` and admin password resets call this.
///
/// Returns `false` when the tenant or user does not exist.
pub fn revoke_user_sessions(state: &mut State, tenant_id: &str, user_id: &str) -> bool {
    let now = state.clock.now();
    match state
        .tenants
        .get_mut(tenant_id)
        .and_then(|t| t.users.get_mut(user_id))
    {
        Some(user) => {
            user.tokens_valid_from = Some(now);
            true
        }
        None => false,
    }
}

fn is_jwt_shaped(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return false;
    }
    parts[..2].iter().all(|p| {
        URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|v| v.is_object())
    })
}

/// A random base64url string of `bytes` random bytes.
fn random_token(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    rand::Rng::fill(&mut rand::rng(), buf.as_mut_slice());
    URL_SAFE_NO_PAD.encode(buf)
}

/// OpenID Connect scopes (not Graph permissions) the platform accepts alongside Graph scopes.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// A requested delegated scope, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    /// `openid`, `profile`, `email`, `offline_access`.
    Oidc(String),
    /// A Graph permission (short name, e.g. `User.ReadWrite.All`).
    Graph(String),
    /// `https://graph.microsoft.com/.default`: everything consented.
    GraphDefault,
    /// Anything else (another resource).
    Other(String),
}

fn classify_scope(raw: &str) -> Scope {
    let lower = raw.to_ascii_lowercase();
    if OIDC_SCOPES.contains(&lower.as_str()) {
        return Scope::Oidc(lower);
    }
    let rest = lower
        .strip_prefix(GRAPH_RESOURCE)
        .or_else(|| lower.strip_prefix(GRAPH_APP_ID));
    match rest {
        Some(r) => {
            let name = r.trim_start_matches('/');
            if name == ".default" {
                Scope::GraphDefault
            } else if name.is_empty() || name.contains('/') {
                Scope::Other(raw.to_owned())
            } else {
                // Keep the caller's casing of the permission name (`User.ReadWrite.All`).
                Scope::Graph(raw[raw.len() - name.len()..].to_owned())
            }
        }
        // A bare name without a resource means Microsoft Graph (§1.2 examples).
        None if !raw.contains('/') && !raw.contains(':') && !raw.is_empty() => {
            Scope::Graph(raw.to_owned())
        }
        None => Scope::Other(raw.to_owned()),
    }
}

/// The delegated Graph scopes a user has consented to for an app in a tenant, or `None` when
/// there is no consent at all (neither the user's nor tenant-wide).
fn granted_scopes(
    state: &State,
    tenant_id: &str,
    app_id: &str,
    user_id: &str,
) -> Option<BTreeSet<String>> {
    let tenant = state.tenants.get(tenant_id)?;
    let app = state.applications.get(app_id)?;
    let user_consented = tenant
        .admins
        .get(user_id)
        .is_some_and(|a| a.consented_apps.contains(app_id));
    let extra_user = state.identity.user_consents.get(&(
        tenant_id.to_owned(),
        app_id.to_owned(),
        user_id.to_owned(),
    ));
    let tenant_wide = state
        .identity
        .tenant_consents
        .get(&(tenant_id.to_owned(), app_id.to_owned()));
    if !user_consented && extra_user.is_none() && tenant_wide.is_none() {
        return None;
    }
    let mut scopes: BTreeSet<String> = BTreeSet::new();
    if user_consented {
        scopes.extend(app.required_scopes.iter().cloned());
    }
    for set in [extra_user, tenant_wide].into_iter().flatten() {
        scopes.extend(set.iter().cloned());
    }
    // OIDC scopes (`offline_access`, ...) are not Graph permissions and never appear in `scp`.
    scopes.retain(|s| !matches!(classify_scope(s), Scope::Oidc(_)));
    Some(scopes)
}

/// Whether a Graph delegated permission needs an administrator's consent. Every `*.All`
/// permission the provisioning surface uses is admin-restricted (§1.2); the rule "ends with
/// `.All`" is the emulator's simplification.
fn admin_restricted(scope: &str) -> bool {
    scope.to_ascii_lowercase().ends_with(".all")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_codes_or_tokens() {
        // R-SAFE-2: tokens never appear in logs or Debug output
        let mut state = State::default();
        let now = state.clock.now();
        let token = mint_access_token(
            &mut state,
            AccessClaims {
                tenant_id: "t".into(),
                app_id: "a".into(),
                roles: Vec::new(),
                scopes: Vec::new(),
                user_upn: None,
                expires_at: now + Duration::hours(1),
            },
        );
        let shown = format!("{:?}", state.identity);
        assert!(!shown.contains(&token));
        assert!(!shown.contains(token.split('.').nth(2).unwrap_or("x")));
        assert!(shown.contains("access_tokens: 1"));
    }

    #[test]
    fn scopes_are_classified_by_resource() {
        // graph-spec §1.2 (scope forms) and §1.5 (`/.default`)
        assert_eq!(
            classify_scope("https://graph.microsoft.com/User.ReadWrite.All"),
            Scope::Graph("User.ReadWrite.All".into())
        );
        assert_eq!(
            classify_scope("User.Read"),
            Scope::Graph("User.Read".into())
        );
        assert_eq!(
            classify_scope("https://graph.microsoft.com//.default"),
            Scope::GraphDefault
        );
        assert_eq!(
            classify_scope("00000003-0000-0000-c000-000000000000/.default"),
            Scope::GraphDefault
        );
        assert_eq!(
            classify_scope("OFFLINE_ACCESS"),
            Scope::Oidc("offline_access".into())
        );
        assert!(matches!(
            classify_scope("https://outlook.office.com/Mail.Send"),
            Scope::Other(_)
        ));
        assert!(admin_restricted("Group.ReadWrite.All"));
        assert!(!admin_restricted("User.Read"));
    }
}
