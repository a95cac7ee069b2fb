//! Identity hooks of the `/_emulator/...` admin API: mint tokens for tests, reset an admin's
//! password or revoke a user's sessions (→ AADSTS50173), grant or revoke an app's consent
//! (→ AADSTS65001), tune lifetimes, and read the identity state for assertions.

use std::collections::BTreeSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    AccessClaims, IdentitySettings, RefreshGrant, granted_scopes, mint_access_token, random_token,
    revoke_user_sessions,
};
use crate::AppState;
use crate::error::GraphError;
use crate::request::TenantTag;
use crate::state::{AppGrant, State, graph_timestamp, new_id};

/// Admin-API errors are Graph-shaped (rendered by the request middleware); boxed because the
/// error type is large.
type AdminResult<T> = Result<T, Box<GraphError>>;

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> AdminResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("invalid JSON body: {e}"),
        ))
    })
}

fn not_found(what: &str) -> Box<GraphError> {
    Box::new(GraphError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{what} not found"),
    ))
}

fn tenant_id(state: &State, key: &str) -> AdminResult<String> {
    state
        .resolve_tenant(key)
        .map(|t| t.id.clone())
        .ok_or_else(|| not_found(&format!("tenant '{key}'")))
}

/// Body of `POST /_emulator/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct MintRequest {
    /// Tenant id or domain.
    tenant: String,
    /// Client id.
    app_id: String,
    /// Application permissions; default: the app's grant in the tenant (app-only tokens).
    roles: Option<Vec<String>>,
    /// Delegated permissions; default: what the user consented (delegated tokens).
    scopes: Option<Vec<String>>,
    /// The signed-in user for a delegated token.
    user_principal_name: Option<String>,
    /// Lifetime in seconds (may be negative for an already expired token); default the
    /// access-token lifetime setting.
    expires_in: Option<i64>,
    /// Also issue a refresh token (delegated tokens only).
    #[serde(default)]
    refresh_token: bool,
}

/// `POST /_emulator/tokens`: mints an access token (and optionally a refresh token) without a
/// grant flow.
pub(super) async fn mint(AxumState(app): AxumState<AppState>, body: Bytes) -> Response {
    let req: MintRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return (*e).into_response(),
    };
    let mut state = app.lock();
    match mint_locked(&mut state, req) {
        Ok((tenant, value)) => {
            let mut r = Json(value).into_response();
            r.extensions_mut().insert(TenantTag(tenant));
            r
        }
        Err(e) => (*e).into_response(),
    }
}

fn mint_locked(state: &mut State, req: MintRequest) -> AdminResult<(String, Value)> {
    let now = state.clock.now();
    let tenant_id = tenant_id(state, &req.tenant)?;
    let app_id = req.app_id.to_ascii_lowercase();
    if !state.applications.contains_key(&app_id) {
        return Err(not_found(&format!("application '{}'", req.app_id)));
    }
    let lifetime = req.expires_in.map_or(
        state.identity.settings.access_token_lifetime,
        Duration::seconds,
    );
    let tenant = state
        .tenants
        .get(&tenant_id)
        .ok_or_else(|| not_found("tenant"))?;
    let (roles, scopes, user) = match &req.user_principal_name {
        Some(upn) => {
            let user = tenant
                .active_user_by_upn(upn)
                .ok_or_else(|| not_found(&format!("user '{upn}'")))?;
            let scopes = req.scopes.clone().unwrap_or_else(|| {
                granted_scopes(state, &tenant_id, &app_id, &user.id)
                    .map(|s| s.into_iter().collect())
                    .or_else(|| {
                        state
                            .applications
                            .get(&app_id)
                            .map(|a| a.required_scopes.clone())
                    })
                    .unwrap_or_default()
            });
            (
                req.roles.clone().unwrap_or_default(),
                scopes,
                Some((user.id.clone(), user.upn().to_owned())),
            )
        }
        None => {
            let roles = req.roles.clone().unwrap_or_else(|| {
                tenant
                    .app_grants
                    .get(&app_id)
                    .map(|g| g.roles.iter().cloned().collect())
                    .unwrap_or_default()
            });
            (roles, req.scopes.clone().unwrap_or_default(), None)
        }
    };
    let token = mint_access_token(
        state,
        AccessClaims {
            tenant_id: tenant_id.clone(),
            app_id: app_id.clone(),
            roles,
            scopes,
            user_upn: user.as_ref().map(|(_, upn)| upn.clone()),
            expires_at: now + lifetime,
        },
    );
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": lifetime.num_seconds(),
        "access_token": token,
    });
    if req.refresh_token {
        let Some((user_id, _)) = user else {
            return Err(Box::new(GraphError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "refreshToken needs userPrincipalName",
            )));
        };
        let rt = random_token(48);
        state.identity.refresh_tokens.insert(
            rt.clone(),
            RefreshGrant {
                client_id: app_id,
                tenant_id: tenant_id.clone(),
                user_id,
                oidc_scopes: vec!["offline_access".to_owned()],
                auth_time: now,
                issued_at: now,
                last_used_at: now,
            },
        );
        if let Some(map) = body.as_object_mut() {
            map.insert("refresh_token".into(), json!(rt));
        }
    }
    Ok((tenant_id, body))
}

/// `GET /_emulator/identity/state`: issued codes, refresh tokens (by SHA-256 prefix, never the
/// token), consents, settings and the number of live access tokens.
pub(super) async fn raw_state(AxumState(app): AxumState<AppState>) -> Json<Value> {
    let state = app.lock();
    let now = state.clock.now();
    let id = &state.identity;
    let mut refresh: Vec<Value> = id
        .refresh_tokens
        .iter()
        .map(|(token, g)| {
            json!({
                "tokenSha256": hex_prefix(token),
                "clientId": g.client_id,
                "tenantId": g.tenant_id,
                "userId": g.user_id,
                "authTime": graph_timestamp(g.auth_time),
                "issuedAt": graph_timestamp(g.issued_at),
                "lastUsedAt": graph_timestamp(g.last_used_at),
            })
        })
        .collect();
    refresh.sort_by(|a, b| a["issuedAt"].as_str().cmp(&b["issuedAt"].as_str()));
    let codes: Vec<Value> = id
        .codes
        .values()
        .map(|c| {
            json!({
                "clientId": c.client_id,
                "tenantId": c.tenant_id,
                "userId": c.user_id,
                "issuedAt": graph_timestamp(c.issued_at),
                "redeemed": c.redeemed,
            })
        })
        .collect();
    let tenant_consents: Vec<Value> = id
        .tenant_consents
        .iter()
        .map(|((t, a), s)| json!({"tenantId": t, "appId": a, "scopes": s}))
        .collect();
    let user_consents: Vec<Value> = id
        .user_consents
        .iter()
        .map(|((t, a, u), s)| json!({"tenantId": t, "appId": a, "userId": u, "scopes": s}))
        .collect();
    Json(json!({
        "settings": settings_json(&id.settings),
        "liveAccessTokens": id.access_tokens.values().filter(|t| t.claims.expires_at > now).count(),
        "lastAccessTokenIssuedAt": id.access_tokens.values().map(|t| t.issued_at).max().map(graph_timestamp),
        "codes": codes,
        "refreshTokens": refresh,
        "tenantConsents": tenant_consents,
        "userConsents": user_consents,
    }))
}

fn hex_prefix(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn settings_json(s: &IdentitySettings) -> Value {
    json!({
        "accessTokenLifetimeSeconds": s.access_token_lifetime.num_seconds(),
        "codeLifetimeSeconds": s.code_lifetime.num_seconds(),
        "refreshIdleSeconds": s.refresh_idle.num_seconds(),
        "lockoutThreshold": s.lockout_threshold,
        "lockoutSeconds": s.lockout_duration.num_seconds(),
    })
}

/// `GET /_emulator/identity/settings`.
pub(super) async fn get_settings(AxumState(app): AxumState<AppState>) -> Json<Value> {
    Json(settings_json(&app.lock().identity.settings))
}

/// Body of `PUT /_emulator/identity/settings` (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SettingsPatch {
    access_token_lifetime_seconds: Option<i64>,
    code_lifetime_seconds: Option<i64>,
    refresh_idle_seconds: Option<i64>,
    lockout_threshold: Option<u32>,
    lockout_seconds: Option<i64>,
}

/// `PUT /_emulator/identity/settings`: changes lifetimes; answers the new settings.
pub(super) async fn put_settings(AxumState(app): AxumState<AppState>, body: Bytes) -> Response {
    let patch: SettingsPatch = match parse_body(&body) {
        Ok(p) => p,
        Err(e) => return (*e).into_response(),
    };
    let mut state = app.lock();
    let s = &mut state.identity.settings;
    if let Some(v) = patch.access_token_lifetime_seconds {
        s.access_token_lifetime = Duration::seconds(v);
    }
    if let Some(v) = patch.code_lifetime_seconds {
        s.code_lifetime = Duration::seconds(v);
    }
    if let Some(v) = patch.refresh_idle_seconds {
        s.refresh_idle = Duration::seconds(v);
    }
    if let Some(v) = patch.lockout_threshold {
        s.lockout_threshold = v.max(1);
    }
    if let Some(v) = patch.lockout_seconds {
        s.lockout_duration = Duration::seconds(v);
    }
    Json(settings_json(s)).into_response()
}

/// Body of `POST /_emulator/identity/tenants/{tenant}/apps/{app}/consent`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ConsentRequest {
    /// Application permissions to grant; default the app's required roles.
    roles: Option<Vec<String>>,
    /// Delegated scopes to grant tenant-wide; default the app's required scopes.
    scopes: Option<Vec<String>>,
    /// Directory roles for the app's service principal (e.g. `User Administrator`).
    #[serde(default)]
    directory_roles: Vec<String>,
}

/// `POST /_emulator/identity/tenants/{tenant}/apps/{app}/consent`: the effect of an admin
/// consent without the browser round trip. 204.
pub(super) async fn grant_consent(
    AxumState(app): AxumState<AppState>,
    Path((tenant, app_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let req: ConsentRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return (*e).into_response(),
    };
    let mut state = app.lock();
    let result = (|| {
        let tenant_id = tenant_id(&state, &tenant)?;
        let app_id = app_id.to_ascii_lowercase();
        let registration = state
            .applications
            .get(&app_id)
            .ok_or_else(|| not_found(&format!("application '{app_id}'")))?;
        let roles = req
            .roles
            .clone()
            .unwrap_or_else(|| registration.required_roles.clone());
        let scopes = req
            .scopes
            .clone()
            .unwrap_or_else(|| registration.required_scopes.clone());
        if let Some(t) = state.tenants.get_mut(&tenant_id) {
            let grant = t
                .app_grants
                .entry(app_id.clone())
                .or_insert_with(|| AppGrant {
                    roles: BTreeSet::new(),
                    directory_roles: BTreeSet::new(),
                    service_principal_id: new_id(),
                });
            grant.roles.extend(roles);
            grant
                .directory_roles
                .extend(req.directory_roles.iter().cloned());
        }
        state
            .identity
            .tenant_consents
            .entry((tenant_id.clone(), app_id))
            .or_default()
            .extend(scopes);
        Ok::<_, Box<GraphError>>(tenant_id)
    })();
    match result {
        Ok(t) => tagged_no_content(t),
        Err(e) => (*e).into_response(),
    }
}

/// `DELETE /_emulator/identity/tenants/{tenant}/apps/{app}/consent`: removes every consent of
/// the app in the tenant (tenant-wide grant, each admin's and user's delegated consent), so
/// the next refresh answers AADSTS65001 and app-only tokens carry no roles. 204.
pub(super) async fn revoke_consent(
    AxumState(app): AxumState<AppState>,
    Path((tenant, app_id)): Path<(String, String)>,
) -> Response {
    let mut state = app.lock();
    let tenant_id = match tenant_id(&state, &tenant) {
        Ok(t) => t,
        Err(e) => return (*e).into_response(),
    };
    let app_id = app_id.to_ascii_lowercase();
    if let Some(t) = state.tenants.get_mut(&tenant_id) {
        t.app_grants.remove(&app_id);
        for admin in t.admins.values_mut() {
            admin.consented_apps.remove(&app_id);
        }
    }
    let identity = &mut state.identity;
    identity
        .tenant_consents
        .remove(&(tenant_id.clone(), app_id.clone()));
    identity
        .user_consents
        .retain(|(t, a, _), _| !(*t == tenant_id && *a == app_id));
    tagged_no_content(tenant_id)
}

/// Body of `POST /_emulator/tenants/{tenant}/admins/{upn}/reset-password`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ResetPassword {
    /// The new password; the old one stays when absent.
    password: Option<SecretString>,
}

/// `POST /_emulator/tenants/{tenant}/admins/{upn}/reset-password`: an admin password reset in
/// the admin center, which revokes the admin's refresh tokens (§1.4 matrix → AADSTS50173). 204.
pub(super) async fn reset_password(
    AxumState(app): AxumState<AppState>,
    Path((tenant, upn)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let req: ResetPassword = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return (*e).into_response(),
    };
    let mut state = app.lock();
    let tenant_id = match tenant_id(&state, &tenant) {
        Ok(t) => t,
        Err(e) => return (*e).into_response(),
    };
    let user_id = state
        .tenants
        .get(&tenant_id)
        .and_then(|t| t.admin_by_upn(&upn))
        .map(|(_, u)| u.id.clone());
    let Some(user_id) = user_id else {
        return (*not_found(&format!("admin '{upn}'"))).into_response();
    };
    if let Some(password) = req.password
        && let Some(user) = state
            .tenants
            .get_mut(&tenant_id)
            .and_then(|t| t.users.get_mut(&user_id))
    {
        user.password = Some(password);
    }
    revoke_user_sessions(&mut state, &tenant_id, &user_id);
    tagged_no_content(tenant_id)
}

/// `POST /_emulator/tenants/{tenant}/users/{user}/revoke-sessions` (`{user}` = id or UPN): what
/// Graph's `revokeSignInSessions` does to refresh tokens (§1.4 → AADSTS50173). 204.
pub(super) async fn revoke_sessions(
    AxumState(app): AxumState<AppState>,
    Path((tenant, user)): Path<(String, String)>,
) -> Response {
    let mut state = app.lock();
    let tenant_id = match tenant_id(&state, &tenant) {
        Ok(t) => t,
        Err(e) => return (*e).into_response(),
    };
    let user_id = state.tenants.get(&tenant_id).and_then(|t| {
        let lower = user.to_ascii_lowercase();
        t.users
            .get(&lower)
            .filter(|u| u.deleted_at.is_none())
            .or_else(|| t.active_user_by_upn(&user))
            .map(|u| u.id.clone())
    });
    let Some(user_id) = user_id else {
        return (*not_found(&format!("user '{user}'"))).into_response();
    };
    revoke_user_sessions(&mut state, &tenant_id, &user_id);
    tagged_no_content(tenant_id)
}

fn tagged_no_content(tenant_id: String) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.extensions_mut().insert(TenantTag(tenant_id));
    r
}
