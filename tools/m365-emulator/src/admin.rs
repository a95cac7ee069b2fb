//! The `/_emulator/...` control API (documented in README.md): clock, realism switches,
//! throttling quotas, fault injection, app grants, directory role membership, delta reset, and
//! raw state for assertions (users, groups, roles, audits, request counters per tenant).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use chrono::Duration;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::state::{
    AppGrant, Fault, FaultKind, ObjectKind, Quotas, Tenant, graph_timestamp, new_id,
};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No tenant with that id or domain.
    #[error("unknown tenant `{0}`")]
    UnknownTenant(String),
    /// The request body is not what the endpoint expects.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::UnknownTenant(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

/// The control routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_emulator/clock", get(clock))
        .route("/_emulator/clock/advance", post(advance))
        .route("/_emulator/realism", get(realism).put(set_realism))
        .route("/_emulator/quotas", put(set_quotas).delete(reset_quotas))
        .route(
            "/_emulator/faults",
            get(faults).post(add_fault).delete(clear_faults),
        )
        .route("/_emulator/state", get(full_state))
        .route("/_emulator/tenants/{tenant}", get(tenant))
        .route(
            "/_emulator/tenants/{tenant}/requests",
            get(requests).delete(reset_requests),
        )
        .route("/_emulator/tenants/{tenant}/audits", get(audits))
        .route("/_emulator/tenants/{tenant}/delta/reset", post(reset_delta))
        .route("/_emulator/tenants/{tenant}/grants/{app}", put(set_grant))
        .route("/_emulator/tenants/{tenant}/users/{user}", patch(edit_user))
        .route(
            "/_emulator/tenants/{tenant}/users/{user}/self-password-change",
            post(self_password_change),
        )
        .route(
            "/_emulator/tenants/{tenant}/roles/{role}/members",
            post(grant_role),
        )
        .route(
            "/_emulator/tenants/{tenant}/roles/{role}/members/{member}",
            delete(revoke_role),
        )
}

async fn clock(State(app): State<AppState>) -> Json<Value> {
    let state = app.lock();
    Json(json!({
        "now": state.clock.now().to_rfc3339(),
        "offsetMs": state.clock.offset().num_milliseconds()
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Advance {
    #[serde(default)]
    seconds: Option<f64>,
    #[serde(default)]
    ms: Option<i64>,
    #[serde(default)]
    days: Option<i64>,
}

async fn advance(State(app): State<AppState>, Json(body): Json<Advance>) -> Json<Value> {
    let mut by = Duration::zero();
    if let Some(s) = body.seconds {
        // Sub-millisecond precision is irrelevant here.
        by += Duration::milliseconds((s * 1000.0) as i64);
    }
    by += Duration::milliseconds(body.ms.unwrap_or(0));
    by += Duration::days(body.days.unwrap_or(0));
    let mut state = app.lock();
    state.clock.advance(by);
    Json(
        json!({"now": state.clock.now().to_rfc3339(), "offsetMs": state.clock.offset().num_milliseconds()}),
    )
}

fn realism_json(app: &AppState) -> Value {
    let state = app.lock();
    let r = &state.realism;
    json!({
        "replicationLagMs": r.replication_lag.num_milliseconds(),
        "addressReleaseDelayMs": r.address_release_delay.num_milliseconds(),
        "fractionalRetryAfter": r.fractional_retry_after,
        "deltaPageSize": r.delta_page_size,
        "quotas": quotas_json(&r.quotas),
        "appQuotas": quotas_json(&r.app_quotas),
        "tenantQuotas": quotas_json(&r.tenant_quotas),
    })
}

fn quotas_json(q: &Quotas) -> Value {
    json!({
        "resourceUnits": q.resource_units, "resourceUnitWindowMs": q.resource_unit_window.num_milliseconds(),
        "writes": q.writes, "writeWindowMs": q.write_window.num_milliseconds()
    })
}

async fn realism(State(app): State<AppState>) -> Json<Value> {
    Json(realism_json(&app))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RealismPatch {
    replication_lag_ms: Option<i64>,
    address_release_delay_ms: Option<i64>,
    fractional_retry_after: Option<bool>,
    delta_page_size: Option<usize>,
}

async fn set_realism(State(app): State<AppState>, Json(body): Json<RealismPatch>) -> Json<Value> {
    {
        let mut state = app.lock();
        let r = &mut state.realism;
        if let Some(v) = body.replication_lag_ms {
            r.replication_lag = Duration::milliseconds(v);
        }
        if let Some(v) = body.address_release_delay_ms {
            r.address_release_delay = Duration::milliseconds(v);
        }
        if let Some(v) = body.fractional_retry_after {
            r.fractional_retry_after = v;
        }
        if let Some(v) = body.delta_page_size {
            r.delta_page_size = v.max(1);
        }
    }
    Json(realism_json(&app))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuotaBody {
    /// `pair` (default), `app` (one app across tenants) or `tenant` (one tenant across apps).
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    app_id: Option<String>,
    resource_units: f64,
    #[serde(default)]
    resource_unit_window_ms: Option<i64>,
    writes: f64,
    #[serde(default)]
    write_window_ms: Option<i64>,
}

async fn set_quotas(
    State(app): State<AppState>,
    Json(body): Json<QuotaBody>,
) -> Result<Json<Value>, AdminError> {
    let quotas = Quotas {
        resource_units: body.resource_units,
        resource_unit_window: Duration::milliseconds(
            body.resource_unit_window_ms.unwrap_or(10_000),
        ),
        writes: body.writes,
        write_window: Duration::milliseconds(body.write_window_ms.unwrap_or(150_000)),
    };
    let mut state = app.lock();
    match body.scope.as_deref() {
        None | Some("pair") => {}
        Some("app") => {
            state.realism.app_quotas = quotas;
            state.realism.buckets.retain(|(t, _), _| t != "*");
            return Ok(Json(quotas_json(&quotas)));
        }
        Some("tenant") => {
            state.realism.tenant_quotas = quotas;
            state.realism.buckets.retain(|(_, a), _| a != "*");
            return Ok(Json(quotas_json(&quotas)));
        }
        Some(other) => return Err(AdminError::Invalid(format!("unknown scope `{other}`"))),
    }
    match (&body.tenant, &body.app_id) {
        (Some(t), Some(a)) => {
            let tenant_id = state
                .resolve_tenant(t)
                .map(|t| t.id.clone())
                .ok_or_else(|| AdminError::UnknownTenant(t.clone()))?;
            let key = (tenant_id, a.to_ascii_lowercase());
            state.realism.buckets.remove(&key);
            state.realism.quota_overrides.insert(key, quotas);
        }
        (None, None) => {
            state.realism.quotas = quotas;
            state.realism.buckets.clear();
        }
        _ => {
            return Err(AdminError::Invalid(
                "give both `tenant` and `appId`, or neither".into(),
            ));
        }
    }
    Ok(Json(quotas_json(&quotas)))
}

async fn reset_quotas(State(app): State<AppState>) -> StatusCode {
    let mut state = app.lock();
    state.realism.quotas = Quotas::default();
    state.realism.app_quotas = Quotas::app_default();
    state.realism.tenant_quotas = Quotas::tenant_default();
    state.realism.quota_overrides.clear();
    state.realism.buckets.clear();
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FaultBody {
    #[serde(default)]
    method: Option<String>,
    path: String,
    #[serde(default)]
    tenant: Option<String>,
    kind: FaultKind,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    retry_after: Option<String>,
    #[serde(default)]
    empty_body: bool,
}

fn one() -> u32 {
    1
}

async fn add_fault(
    State(app): State<AppState>,
    Json(body): Json<FaultBody>,
) -> Result<Json<Value>, AdminError> {
    let mut state = app.lock();
    let tenant = match &body.tenant {
        Some(t) => Some(
            state
                .resolve_tenant(t)
                .map(|t| t.id.clone())
                .ok_or_else(|| AdminError::UnknownTenant(t.clone()))?,
        ),
        None => None,
    };
    let id = state.realism.next_fault_id;
    state.realism.next_fault_id += 1;
    let fault = Fault {
        id,
        method: body.method.map(|m| m.to_ascii_uppercase()),
        path: body.path,
        tenant,
        kind: body.kind,
        remaining: body.count,
        delay_ms: body.delay_ms,
        retry_after: body.retry_after,
        empty_body: body.empty_body,
    };
    let out = serde_json::to_value(&fault).unwrap_or(Value::Null);
    state.realism.faults.push(fault);
    Ok(Json(out))
}

async fn faults(State(app): State<AppState>) -> Json<Value> {
    let state = app.lock();
    Json(json!({"faults": state.realism.faults}))
}

async fn clear_faults(State(app): State<AppState>) -> StatusCode {
    app.lock().realism.faults.clear();
    StatusCode::NO_CONTENT
}

fn tenant_json(t: &Tenant) -> Value {
    let users: Vec<Value> = t
        .users
        .values()
        .map(|u| {
            json!({
                "id": u.id,
                "properties": u.properties,
                "hasPassword": u.password.is_some(),
                "createdAt": u.created_at.to_rfc3339(),
                "visibleFrom": u.visible_from.to_rfc3339(),
                "deletedAt": u.deleted_at.map(|d| d.to_rfc3339()),
                "tokensValidFrom": u.tokens_valid_from.map(|d| d.to_rfc3339()),
            })
        })
        .collect();
    let groups: Vec<Value> = t
        .groups
        .values()
        .map(|g| {
            json!({
                "id": g.id, "properties": g.properties, "members": g.members, "owners": g.owners,
                "visibleFrom": g.visible_from.to_rfc3339(),
                "deletedAt": g.deleted_at.map(|d| d.to_rfc3339()),
            })
        })
        .collect();
    let grants: serde_json::Map<String, Value> = t
        .app_grants
        .iter()
        .map(|(app, g)| {
            (app.clone(), json!({"roles": g.roles, "directoryRoles": g.directory_roles, "servicePrincipalId": g.service_principal_id}))
        })
        .collect();
    let admins: Vec<Value> = t
        .admins
        .values()
        .map(|a| json!({"userId": a.user_id, "roles": a.roles, "consentedApps": a.consented_apps}))
        .collect();
    let held: serde_json::Map<String, Value> = t
        .held_addresses
        .iter()
        .map(|(addr, h)| {
            (
                addr.clone(),
                json!({"userId": h.user_id, "releaseAt": h.release_at.to_rfc3339()}),
            )
        })
        .collect();
    json!({
        "id": t.id, "displayName": t.display_name,
        "domains": t.domains.iter().map(|d| json!({
            "name": d.name, "authenticationType": d.authentication_type, "isVerified": d.is_verified,
            "isDefault": d.is_default, "isInitial": d.is_initial
        })).collect::<Vec<_>>(),
        "users": users, "groups": groups, "appGrants": grants, "admins": admins,
        "heldAddresses": held, "audits": t.audits, "requestCounts": t.request_counts,
        "directoryRoles": t.directory_roles.values().map(|r| json!({
            "id": r.id, "roleTemplateId": r.role_template_id, "displayName": r.display_name,
            "members": r.members,
        })).collect::<Vec<_>>(),
        "changeCount": t.changes.len(),
    })
}

async fn full_state(State(app): State<AppState>) -> Json<Value> {
    let state = app.lock();
    let tenants: Vec<Value> = state.tenants.values().map(tenant_json).collect();
    let apps: Vec<Value> = state
        .applications
        .values()
        .map(|a| json!({"appId": a.app_id, "displayName": a.display_name, "redirectUris": a.redirect_uris,
                        "requiredRoles": a.required_roles, "requiredScopes": a.required_scopes}))
        .collect();
    Json(json!({"now": state.clock.now().to_rfc3339(), "tenants": tenants, "applications": apps}))
}

async fn tenant(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let state = app.lock();
    let t = state
        .resolve_tenant(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    Ok(Json(tenant_json(t)))
}

async fn requests(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let state = app.lock();
    let t = state
        .resolve_tenant(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    Ok(Json(json!(t.request_counts)))
}

async fn reset_requests(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode, AdminError> {
    let mut state = app.lock();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    t.request_counts.clear();
    Ok(StatusCode::NO_CONTENT)
}

async fn audits(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let state = app.lock();
    let t = state
        .resolve_tenant(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    Ok(Json(json!(t.audits)))
}

async fn reset_delta(
    State(app): State<AppState>,
    Path(key): Path<String>,
) -> Result<StatusCode, AdminError> {
    let mut state = app.lock();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    t.delta_epoch += 1;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GrantBody {
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    directory_roles: Vec<String>,
}

async fn set_grant(
    State(app): State<AppState>,
    Path((key, app_id)): Path<(String, String)>,
    Json(body): Json<GrantBody>,
) -> Result<Json<Value>, AdminError> {
    let mut state = app.lock();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    let grant = t
        .app_grants
        .entry(app_id.to_ascii_lowercase())
        .or_insert_with(|| AppGrant {
            service_principal_id: new_id(),
            ..AppGrant::default()
        });
    grant.roles = body.roles.into_iter().collect();
    grant.directory_roles = body.directory_roles.into_iter().collect();
    // The app's service principal is a member of these roles: activate them.
    let activate: Vec<&'static crate::roles::RoleTemplate> = grant
        .directory_roles
        .iter()
        .filter_map(|r| crate::roles::template(r))
        .collect();
    let grant = grant.clone();
    for template in activate {
        t.activate_role(template);
    }
    Ok(Json(
        json!({"roles": grant.roles, "directoryRoles": grant.directory_roles}),
    ))
}

/// The id of a user (active or deleted) of `tenant` addressed by id or UPN.
fn user_id(tenant: &Tenant, key: &str) -> Option<String> {
    let lower = key.to_ascii_lowercase();
    if tenant.users.contains_key(&lower) {
        return Some(lower);
    }
    tenant
        .users
        .values()
        .find(|u| u.upn().eq_ignore_ascii_case(key))
        .map(|u| u.id.clone())
}

/// Edits a user's Graph properties behind Graph's back (an admin working in the portal):
/// no validation, no throttling, no request count; recorded for delta.
async fn edit_user(
    State(app): State<AppState>,
    Path((key, user)): Path<(String, String)>,
    Json(body): Json<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, AdminError> {
    let mut state = app.lock();
    let now = state.clock.now();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    let id =
        user_id(t, &user).ok_or_else(|| AdminError::Invalid(format!("unknown user `{user}`")))?;
    let u = t
        .users
        .get_mut(&id)
        .ok_or_else(|| AdminError::Invalid(format!("unknown user `{user}`")))?;
    for (k, v) in body {
        if k != "id" {
            u.properties.insert(k, v);
        }
    }
    let out = Value::Object(u.properties.clone());
    t.record_change(ObjectKind::User, &id, now);
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SelfPasswordChange {
    #[serde(default)]
    password: Option<secrecy::SecretString>,
}

/// The user changes their own password inside Microsoft 365: `lastPasswordChangeDateTime`
/// moves; confidential-client refresh tokens stay valid (graph-spec §1.4 matrix).
async fn self_password_change(
    State(app): State<AppState>,
    Path((key, user)): Path<(String, String)>,
    body: Option<Json<SelfPasswordChange>>,
) -> Result<Json<Value>, AdminError> {
    let mut state = app.lock();
    let now = state.clock.now();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    let id =
        user_id(t, &user).ok_or_else(|| AdminError::Invalid(format!("unknown user `{user}`")))?;
    let u = t
        .users
        .get_mut(&id)
        .ok_or_else(|| AdminError::Invalid(format!("unknown user `{user}`")))?;
    if let Some(Json(SelfPasswordChange { password: Some(p) })) = body {
        u.password = Some(p);
    }
    let at = graph_timestamp(now);
    u.properties
        .insert("lastPasswordChangeDateTime".into(), json!(at));
    t.record_change(ObjectKind::User, &id, now);
    Ok(Json(json!({"lastPasswordChangeDateTime": at})))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoleMember {
    /// A user (id or UPN) or a group (id).
    member: String,
}

/// The built-in role `key` (display name or template id) and the object `member` (user id or
/// UPN, or group id) of `t`.
fn role_and_member(
    t: &Tenant,
    key: &str,
    member: &str,
) -> Result<(&'static crate::roles::RoleTemplate, String), AdminError> {
    let template = crate::roles::template(key)
        .or_else(|| {
            t.find_role(key)
                .and_then(|r| crate::roles::template(&r.role_template_id))
        })
        .ok_or_else(|| AdminError::Invalid(format!("unknown directory role `{key}`")))?;
    let lower = member.to_ascii_lowercase();
    let id = user_id(t, member)
        .or_else(|| t.groups.contains_key(&lower).then_some(lower))
        .ok_or_else(|| AdminError::Invalid(format!("unknown user or group `{member}`")))?;
    Ok((template, id))
}

fn role_view(t: &Tenant, template: &crate::roles::RoleTemplate) -> Value {
    t.find_role(template.template_id).map_or(Value::Null, |r| {
        json!({
            "id": r.id, "roleTemplateId": r.role_template_id, "displayName": r.display_name,
            "members": r.members,
        })
    })
}

/// Grants a directory role to a user or group, as an admin does in the Entra portal: the role is
/// activated if needed; not counted, not throttled. Answers the role and whether it was added.
async fn grant_role(
    State(app): State<AppState>,
    Path((key, role)): Path<(String, String)>,
    Json(body): Json<RoleMember>,
) -> Result<Json<Value>, AdminError> {
    let mut state = app.lock();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    let (template, member) = role_and_member(t, &role, &body.member)?;
    let added = t.grant_role(template, &member);
    Ok(Json(
        json!({"role": role_view(t, template), "added": added}),
    ))
}

/// Takes a directory role back from a user or group. Answers the role and whether it was removed.
async fn revoke_role(
    State(app): State<AppState>,
    Path((key, role, member)): Path<(String, String, String)>,
) -> Result<Json<Value>, AdminError> {
    let mut state = app.lock();
    let t = state
        .resolve_tenant_mut(&key)
        .ok_or(AdminError::UnknownTenant(key))?;
    let (template, member) = role_and_member(t, &role, &member)?;
    let removed = t.revoke_role(template, &member);
    Ok(Json(
        json!({"role": role_view(t, template), "removed": removed}),
    ))
}
