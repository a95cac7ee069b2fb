//! `POST /{tenant}/oauth2/v2.0/token` (graph-spec §1.2, §1.4, §1.5, §1.6): the
//! `client_credentials`, `authorization_code` and `refresh_token` grants with the documented
//! AADSTS errors.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::aadsts::{AadError, no_store};
use super::page::{parse_form, percent_decode};
use super::{
    AccessClaims, PkceMethod, RefreshGrant, Scope, classify_scope, granted_scopes,
    mint_access_token, random_token,
};
use crate::AppState;
use crate::request::{RequestIds, TenantTag};
use crate::state::{Fault, FaultKind, State};
use crate::throttle;

/// Which tenant the `{tenant}` path segment selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TenantKey {
    /// `common`, `organizations` or `consumers`: the tenant comes from the user or the grant.
    Multi,
    /// One tenant (its lower-case GUID).
    Tenant(String),
}

/// Resolves the `{tenant}` segment (GUID, verified domain, or a multi-tenant alias, §1.1).
pub(super) fn resolve_tenant_key(state: &State, key: &str) -> Result<TenantKey, AadError> {
    let lower = key.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations" | "consumers") {
        return Ok(TenantKey::Multi);
    }
    state
        .resolve_tenant(key)
        .map(|t| TenantKey::Tenant(t.id.clone()))
        .ok_or_else(|| AadError::unknown_tenant(key))
}

/// The token endpoint handler. Faults injected through `/_emulator/faults` whose path matches
/// the token URL (e.g. `/{tenant}/oauth2/v2.0/token`, as the client writes it) apply here too.
pub(super) async fn token(
    AxumState(app): AxumState<AppState>,
    Path(tenant): Path<String>,
    OriginalUri(uri): OriginalUri,
    axum::Extension(ids): axum::Extension<RequestIds>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = parse_form(&body);
    let basic = basic_credentials(&headers);
    let (fault, response) = match locked_token(&app, &tenant, uri.path(), &params, basic, &ids) {
        Outcome::Fault(f) => return fault_response(&f, &ids, app.lock().clock.now()),
        Outcome::Processed(fault, response) => (fault, response),
    };
    match fault {
        // The grant was processed (a refresh token may have rotated) but the client never
        // learns the outcome: what a client timeout after commit looks like.
        Some(f) if f.kind == FaultKind::DropAfterCommit => throttle::dropped_connection(),
        Some(f) => {
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms)).await;
            response
        }
        None => response,
    }
}

/// `GET` on the token endpoint: 400 `invalid_request` AADSTS900561 (the status and text are the
/// emulator's reading of the documented code; unconfirmed).
pub(super) async fn token_get(
    AxumState(app): AxumState<AppState>,
    axum::Extension(ids): axum::Extension<RequestIds>,
) -> Response {
    let now = app.lock().clock.now();
    AadError::new_authorize(
        900_561,
        "The endpoint only accepts POST, OPTIONS requests. Received a GET request.",
    )
    .into_response_with(&ids, now)
}

/// What the locked part of the token endpoint decided.
enum Outcome {
    /// An injected fault answers instead of the grant.
    Fault(Fault),
    /// The grant was processed; an after-commit fault may still delay or drop the response.
    Processed(Option<Fault>, Response),
}

/// The synchronous part of the token endpoint, under the state lock: takes a matching fault and,
/// unless the fault answers instead of the grant, processes the grant.
fn locked_token(
    app: &AppState,
    tenant: &str,
    path: &str,
    params: &HashMap<String, String>,
    basic: Option<(String, String)>,
    ids: &RequestIds,
) -> Outcome {
    let mut state = app.lock();
    let now = state.clock.now();
    let path_tenant = state
        .resolve_tenant(tenant)
        .map(|t| t.id.clone())
        .unwrap_or_default();
    let fault = throttle::take_fault(&mut state.realism, &Method::POST, path, &path_tenant);
    if let Some(f) = fault.clone()
        && !matches!(
            f.kind,
            FaultKind::TimeoutAfterCommit | FaultKind::DropAfterCommit
        )
    {
        return Outcome::Fault(f);
    }
    let mut tag = None;
    let result = handle(&mut state, tenant, params, basic, now, &mut tag);
    drop(state);
    let mut response = match result {
        Ok(body) => {
            let mut r = Json(body).into_response();
            no_store(&mut r);
            r
        }
        Err(e) => {
            tracing::info!(
                aadsts = e.code,
                oauth.error = e.error,
                "token request refused"
            );
            e.into_response_with(ids, now)
        }
    };
    if let Some(tenant_id) = tag {
        response.extensions_mut().insert(TenantTag(tenant_id));
    }
    Outcome::Processed(fault, response)
}

/// An injected token-endpoint failure. 429 and 503 carry the §1.6 body with
/// `error: temporarily_unavailable` (the client rule of graph-spec §12: retry later) and a
/// `Retry-After`; the AADSTS numbers chosen (90055 throttling, 90033 transient) and the 429
/// pairing are unconfirmed. 504, `502-empty` and `emptyBody` answer without a body.
fn fault_response(fault: &Fault, ids: &RequestIds, now: DateTime<Utc>) -> Response {
    let error = match fault.kind {
        FaultKind::TooManyRequests => AadError {
            status: StatusCode::TOO_MANY_REQUESTS,
            error: "temporarily_unavailable",
            code: 90_055,
            message: "TenantThrottlingError - There are too many incoming requests. Please try again later.".to_owned(),
            suberror: None,
        },
        FaultKind::ServiceUnavailable if !fault.empty_body => AadError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            code: 90_033,
            message: "A transient error has occurred. Please try again.".to_owned(),
            suberror: None,
        },
        FaultKind::ServiceUnavailable => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        FaultKind::GatewayTimeout => return StatusCode::GATEWAY_TIMEOUT.into_response(),
        FaultKind::BadGatewayEmpty | FaultKind::TimeoutAfterCommit | FaultKind::DropAfterCommit => {
            return StatusCode::BAD_GATEWAY.into_response();
        }
    };
    let mut response = error.into_response_with(ids, now);
    let retry_after = fault.retry_after.as_deref().unwrap_or("1");
    if let Ok(v) = HeaderValue::from_str(retry_after) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Client id and secret from an `Authorization: Basic` header (RFC 6749 §2.3.1: both are
/// form-urlencoded before base64).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((percent_decode(id), percent_decode(secret)))
}

fn handle(
    state: &mut State,
    tenant_key: &str,
    params: &HashMap<String, String>,
    basic: Option<(String, String)>,
    now: DateTime<Utc>,
    tag: &mut Option<String>,
) -> Result<Value, AadError> {
    let key = resolve_tenant_key(state, tenant_key)?;
    if let TenantKey::Tenant(id) = &key {
        *tag = Some(id.clone());
    }
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let grant_type =
        param("grant_type").ok_or_else(|| AadError::missing_parameter("grant_type"))?;
    let (basic_id, basic_secret) = basic.map_or((None, None), |(i, s)| (Some(i), Some(s)));
    let client_id = param("client_id")
        .map(str::to_owned)
        .or(basic_id)
        .ok_or_else(|| AadError::missing_parameter("client_id"))?
        .to_ascii_lowercase();
    let directory = match &key {
        TenantKey::Tenant(id) => state
            .tenants
            .get(id)
            .map_or_else(|| tenant_key.to_owned(), |t| t.display_name.clone()),
        TenantKey::Multi => tenant_key.to_owned(),
    };
    if !state.applications.contains_key(&client_id) {
        return Err(AadError::unknown_client(&client_id, &directory));
    }
    if !matches!(
        grant_type,
        "client_credentials" | "authorization_code" | "refresh_token"
    ) {
        return Err(AadError::unsupported_grant_type(grant_type));
    }
    let secret = param("client_secret").map(str::to_owned).or(basic_secret);
    authenticate_client(state, &client_id, secret.as_deref(), grant_type, now)?;
    match grant_type {
        "client_credentials" => client_credentials(state, &key, &client_id, param("scope"), now),
        "authorization_code" => authorization_code(state, &key, &client_id, params, now, tag),
        _ => refresh(state, &key, &client_id, params, now, tag),
    }
}

/// Confidential clients must present a current secret; apps without secrets are public clients
/// and may redeem codes and refresh tokens without one (never client credentials).
fn authenticate_client(
    state: &State,
    client_id: &str,
    secret: Option<&str>,
    grant_type: &str,
    now: DateTime<Utc>,
) -> Result<(), AadError> {
    let Some(app) = state.applications.get(client_id) else {
        return Err(AadError::unknown_client(client_id, "common"));
    };
    let Some(secret) = secret else {
        if app.secrets.is_empty() && grant_type != "client_credentials" {
            return Ok(());
        }
        return Err(AadError::missing_client_secret());
    };
    let mut expired_match = false;
    for s in &app.secrets {
        if s.value.expose_secret() == secret {
            if s.expires_at.is_none_or(|at| at > now) {
                return Ok(());
            }
            expired_match = true;
        }
    }
    if expired_match {
        Err(AadError::expired_secret(client_id))
    } else {
        Err(AadError::invalid_secret(client_id))
    }
}

fn client_credentials(
    state: &mut State,
    key: &TenantKey,
    client_id: &str,
    scope: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, AadError> {
    let TenantKey::Tenant(tenant_id) = key else {
        // Unconfirmed which text the real service sends for client credentials over
        // /common (graph-spec §1.1 quotes AADSTS9001023 for grants refused there).
        return Err(AadError::grant_needs_tenant());
    };
    let scope = scope.ok_or_else(|| AadError::missing_parameter("scope"))?;
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    for s in &scopes {
        if !s.ends_with("/.default") {
            return Err(AadError::scope_needs_default(s));
        }
    }
    if scopes.len() != 1 || classify_scope(scopes[0]) != Scope::GraphDefault {
        return Err(AadError::invalid_scope(scope));
    }
    // Before admin consent the token is still issued, without roles; Graph then answers 403
    // (graph-spec §1.3, an assumption).
    let roles: Vec<String> = state
        .tenants
        .get(tenant_id)
        .and_then(|t| t.app_grants.get(client_id))
        .map(|g| g.roles.iter().cloned().collect())
        .unwrap_or_default();
    let lifetime = state.identity.settings.access_token_lifetime;
    let token = mint_access_token(
        state,
        AccessClaims {
            tenant_id: tenant_id.clone(),
            app_id: client_id.to_owned(),
            roles,
            scopes: Vec::new(),
            user_upn: None,
            expires_at: now + lifetime,
        },
    );
    Ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.num_seconds(),
        "ext_expires_in": lifetime.num_seconds(),
        "access_token": token,
    }))
}

fn authorization_code(
    state: &mut State,
    key: &TenantKey,
    client_id: &str,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
    tag: &mut Option<String>,
) -> Result<Value, AadError> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let code_value = param("code").ok_or_else(|| AadError::missing_parameter("code"))?;
    let redirect_uri =
        param("redirect_uri").ok_or_else(|| AadError::missing_parameter("redirect_uri"))?;
    let code = state
        .identity
        .codes
        .get(code_value)
        .cloned()
        .ok_or_else(AadError::malformed_grant)?;
    *tag = Some(code.tenant_id.clone());
    if code.client_id != client_id {
        return Err(AadError::grant_mismatch("code"));
    }
    if let TenantKey::Tenant(id) = key
        && *id != code.tenant_id
    {
        return Err(AadError::code_other_tenant());
    }
    if code.redeemed {
        return Err(AadError::code_already_redeemed());
    }
    if now > code.issued_at + state.identity.settings.code_lifetime {
        return Err(AadError::code_expired());
    }
    if code.redirect_uri != redirect_uri {
        return Err(AadError::grant_mismatch("redirect_uri"));
    }
    if let Some((challenge, method)) = &code.challenge {
        // Missing verifier: the emulator answers AADSTS900144 (the real code is unconfirmed).
        let verifier =
            param("code_verifier").ok_or_else(|| AadError::missing_parameter("code_verifier"))?;
        let computed = match method {
            PkceMethod::Plain => verifier.to_owned(),
            PkceMethod::S256 => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())),
        };
        if computed != *challenge {
            return Err(AadError::pkce_mismatch());
        }
    }
    if let Some(c) = state.identity.codes.get_mut(code_value) {
        c.redeemed = true;
    }
    let oidc: Vec<String> = code
        .scopes
        .iter()
        .filter_map(|s| match classify_scope(s) {
            Scope::Oidc(o) => Some(o),
            _ => None,
        })
        .collect();
    issue_user_tokens(
        state,
        UserGrant {
            tenant_id: code.tenant_id,
            client_id: client_id.to_owned(),
            user_id: code.user_id,
            oidc_scopes: oidc,
            auth_time: code.issued_at,
            nonce: code.nonce,
        },
        param("scope"),
        now,
    )
}

fn refresh(
    state: &mut State,
    key: &TenantKey,
    client_id: &str,
    params: &HashMap<String, String>,
    now: DateTime<Utc>,
    tag: &mut Option<String>,
) -> Result<Value, AadError> {
    let param = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let rt = param("refresh_token").ok_or_else(|| AadError::missing_parameter("refresh_token"))?;
    let grant = state
        .identity
        .refresh_tokens
        .get(rt)
        .cloned()
        .ok_or_else(AadError::malformed_grant)?;
    *tag = Some(grant.tenant_id.clone());
    if grant.client_id != client_id {
        return Err(AadError::grant_mismatch("refresh_token"));
    }
    if let TenantKey::Tenant(id) = key
        && *id != grant.tenant_id
    {
        // graph-spec §1.4: refresh tokens "aren't tied to a resource or tenant" — but the user
        // is: at another tenant's authority the user has no account (they are no guest there in
        // this emulator), so the grant is refused the way a sign-in there is, AADSTS50020
        // (R-CONN-7). Unconfirmed: Microsoft documents no answer for this case.
        let upn = state
            .tenants
            .get(&grant.tenant_id)
            .and_then(|t| t.users.get(&grant.user_id))
            .map_or_else(|| grant.user_id.clone(), |u| u.upn().to_owned());
        let tenant_name = state
            .tenants
            .get(id)
            .map_or_else(|| id.clone(), |t| t.display_name.clone());
        let app_name = state
            .applications
            .get(client_id)
            .map(|a| a.display_name.clone())
            .unwrap_or_default();
        return Err(AadError::user_not_in_tenant(
            &upn,
            &grant.tenant_id,
            &tenant_name,
            client_id,
            &app_name,
        ));
    }
    let idle = now - grant.last_used_at;
    if idle > state.identity.settings.refresh_idle {
        return Err(AadError::refresh_inactive(grant.issued_at, idle));
    }
    // The old token stays valid (§1.4: rotation without revocation); its use still counts as
    // activity for its own inactivity window.
    if let Some(old) = state.identity.refresh_tokens.get_mut(rt) {
        old.last_used_at = now;
    }
    issue_user_tokens(
        state,
        UserGrant {
            tenant_id: grant.tenant_id,
            client_id: client_id.to_owned(),
            user_id: grant.user_id,
            oidc_scopes: grant.oidc_scopes,
            auth_time: grant.auth_time,
            nonce: None,
        },
        param("scope"),
        now,
    )
}

/// A delegated grant being turned into tokens.
struct UserGrant {
    tenant_id: String,
    client_id: String,
    user_id: String,
    oidc_scopes: Vec<String>,
    auth_time: DateTime<Utc>,
    /// The authorize request's `nonce` (code redemption only).
    nonce: Option<String>,
}

/// Checks the user and the consent, then issues access token, refresh token (with
/// `offline_access`) and ID token (with `openid`) for a delegated grant.
fn issue_user_tokens(
    state: &mut State,
    grant: UserGrant,
    requested_scope: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, AadError> {
    let Some(tenant) = state.tenants.get(&grant.tenant_id) else {
        return Err(AadError::unknown_tenant(&grant.tenant_id));
    };
    let user = tenant
        .users
        .get(&grant.user_id)
        .filter(|u| u.deleted_at.is_none())
        .ok_or_else(|| AadError::user_not_found(&grant.user_id, &tenant.display_name))?;
    if let Some(valid_from) = user.tokens_valid_from
        && valid_from > grant.auth_time
    {
        return Err(AadError::grant_revoked(grant.auth_time, valid_from));
    }
    if !user.account_enabled() {
        return Err(AadError::user_disabled());
    }
    let upn = user.upn().to_owned();
    let display_name = user.display_name().to_owned();
    let app_name = state
        .applications
        .get(&grant.client_id)
        .map(|a| a.display_name.clone())
        .unwrap_or_default();
    let granted = granted_scopes(state, &grant.tenant_id, &grant.client_id, &grant.user_id)
        .ok_or_else(|| AadError::consent_missing(&grant.client_id, &app_name))?;
    let mut oidc: Vec<String> = grant.oidc_scopes.clone();
    if let Some(scope) = requested_scope {
        for s in scope.split_whitespace() {
            match classify_scope(s) {
                Scope::Graph(name) => {
                    if !granted.iter().any(|g| g.eq_ignore_ascii_case(&name)) {
                        return Err(AadError::consent_missing(&grant.client_id, &app_name));
                    }
                }
                Scope::GraphDefault => {}
                // OIDC scopes on the token leg only narrow what comes back.
                Scope::Oidc(o) => {
                    if !oidc.contains(&o) && o != "offline_access" && o != "openid" {
                        oidc.push(o);
                    }
                }
                Scope::Other(_) => return Err(AadError::invalid_scope(scope)),
            }
        }
    }
    let graph_scopes: Vec<String> = granted.into_iter().collect();
    let lifetime = state.identity.settings.access_token_lifetime;
    let access = mint_access_token(
        state,
        AccessClaims {
            tenant_id: grant.tenant_id.clone(),
            app_id: grant.client_id.clone(),
            roles: Vec::new(),
            scopes: graph_scopes.clone(),
            user_upn: Some(upn.clone()),
            expires_at: now + lifetime,
        },
    );
    // `scope` echo: Graph permissions by short name plus the OIDC scopes granted (the exact
    // echo format is unconfirmed, graph-spec §13.6).
    let mut echo: Vec<String> = graph_scopes;
    echo.extend(grant.oidc_scopes.iter().cloned());
    let mut body = Map::new();
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("scope".into(), json!(echo.join(" ")));
    body.insert("expires_in".into(), json!(lifetime.num_seconds()));
    body.insert("ext_expires_in".into(), json!(lifetime.num_seconds()));
    body.insert("access_token".into(), json!(access));
    if grant.oidc_scopes.iter().any(|s| s == "offline_access") {
        let rt = random_token(48);
        state.identity.refresh_tokens.insert(
            rt.clone(),
            RefreshGrant {
                client_id: grant.client_id.clone(),
                tenant_id: grant.tenant_id.clone(),
                user_id: grant.user_id.clone(),
                oidc_scopes: grant.oidc_scopes.clone(),
                auth_time: grant.auth_time,
                issued_at: now,
                last_used_at: now,
            },
        );
        body.insert("refresh_token".into(), json!(rt));
    }
    if grant.oidc_scopes.iter().any(|s| s == "openid") {
        body.insert(
            "id_token".into(),
            json!(id_token(&grant, &upn, &display_name, now, lifetime)),
        );
    }
    Ok(Value::Object(body))
}

/// An unsigned (`alg: none`) ID token with the v2.0 claims a client reads.
fn id_token(
    grant: &UserGrant,
    upn: &str,
    name: &str,
    now: DateTime<Utc>,
    lifetime: chrono::Duration,
) -> String {
    let header = json!({"typ": "JWT", "alg": "none"});
    let mut payload = json!({
        "aud": grant.client_id,
        "iss": format!("https://login.microsoftonline.com/{}/v2.0", grant.tenant_id),
        "iat": now.timestamp(),
        "nbf": now.timestamp(),
        "exp": (now + lifetime).timestamp(),
        "name": name,
        "oid": grant.user_id,
        "preferred_username": upn,
        "sub": grant.user_id,
        "tid": grant.tenant_id,
        "ver": "2.0",
    });
    if let (Some(nonce), Some(map)) = (&grant.nonce, payload.as_object_mut()) {
        map.insert("nonce".into(), json!(nonce));
    }
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    )
}
