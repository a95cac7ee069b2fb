//! Deleted items (graph-spec §3.5, §3.6): the cast-required listing, get, restore (200 with
//! the object; `newUserPrincipalName`, `autoReconcileProxyConflict`), permanent delete, and
//! the 30-day purge driven by the emulator clock.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::odata::{self, Resource};
use super::users::{RawQuery, addresses, conflict, tenant_mut, tenant_ref, valid_upn};
use super::{Caller, base_url, no_content, odata as odata_response, perm};
use crate::AppState;
use crate::audit::{self, AuditEvent};
use crate::error::GraphError;
use crate::state::{ObjectKind, Tenant};

/// Deleted objects are purged after this long (§3.5).
pub const RETENTION_DAYS: i64 = 30;

/// Permanently removes objects soft-deleted more than 30 days ago.
pub fn purge_expired(tenant: &mut Tenant, now: DateTime<Utc>) {
    let limit = now - Duration::days(RETENTION_DAYS);
    let users: Vec<String> = tenant
        .users
        .values()
        .filter(|u| u.deleted_at.is_some_and(|d| d <= limit))
        .map(|u| u.id.clone())
        .collect();
    for id in users {
        tenant.users.remove(&id);
        super::groups::remove_everywhere(tenant, &id, now);
        super::manager::forget(tenant, &id);
        tenant.record_change(ObjectKind::User, &id, now);
    }
    let groups: Vec<String> = tenant
        .groups
        .values()
        .filter(|g| g.deleted_at.is_some_and(|d| d <= limit))
        .map(|g| g.id.clone())
        .collect();
    for id in groups {
        tenant.groups.remove(&id);
        super::groups::remove_everywhere(tenant, &id, now);
        tenant.record_change(ObjectKind::Group, &id, now);
    }
}

/// `GET /directory/deletedItems` without a cast: 400 (§3.6).
///
/// # Errors
/// Always 400.
pub async fn list_untyped() -> Result<Response, GraphError> {
    Err(GraphError::bad_request(
        "Calling GET /directory/deletedItems without a type is not supported.",
    ))
}

fn deleted_view(
    properties: &Map<String, Value>,
    resource: Resource,
    select: Option<&[String]>,
) -> Map<String, Value> {
    let mut o = odata::project(properties, resource, select);
    if select.is_none() {
        o.insert(
            "deletedDateTime".into(),
            properties
                .get("deletedDateTime")
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    o
}

/// `GET /directory/deletedItems/microsoft.graph.user`.
///
/// # Errors
/// 403 without permission; query errors.
pub async fn list_users(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    list(app, caller, raw, headers, Resource::User)
}

/// `GET /directory/deletedItems/microsoft.graph.group`.
///
/// # Errors
/// 403 without permission; query errors.
pub async fn list_groups(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_READ)?;
    list(app, caller, raw, headers, Resource::Group)
}

fn list(
    app: AppState,
    caller: Caller,
    raw: Vec<(String, String)>,
    headers: HeaderMap,
    resource: Resource,
) -> Result<Response, GraphError> {
    let query = odata::Query::parse(raw, resource, odata::eventual(&headers))?;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let views: Vec<Map<String, Value>> = match resource {
        Resource::User => tenant
            .users
            .values()
            .filter(|u| u.deleted_at.is_some() && query.matches(&u.properties))
            .map(|u| deleted_view(&u.properties, resource, query.select.as_deref()))
            .collect(),
        Resource::Group => tenant
            .groups
            .values()
            .filter(|g| g.deleted_at.is_some() && query.matches(&g.properties))
            .map(|g| deleted_view(&g.properties, resource, query.select.as_deref()))
            .collect(),
        // Directory roles are never deleted (not routed here).
        Resource::DirectoryRole => Vec::new(),
    };
    let items: Vec<&Map<String, Value>> = views.iter().collect();
    let (page, next) = query.page(items, 100);
    let base = base_url(&headers);
    let cast = resource.odata_type();
    let mut out = Map::new();
    // `@odata.context` of cast lists is unconfirmed (§13.10).
    out.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#directoryObjects/{cast}")),
    );
    if let Some(token) = next {
        out.insert(
            "@odata.nextLink".into(),
            json!(query.next_link(
                &base,
                &format!("/v1.0/directory/deletedItems/{cast}"),
                &token
            )),
        );
    }
    out.insert(
        "value".into(),
        Value::Array(page.into_iter().map(|o| Value::Object(o.clone())).collect()),
    );
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// `GET /directory/deletedItems/{id}`.
///
/// # Errors
/// 403 without permission, 404 when no deleted object has the id.
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller
        .require(perm::USERS_READ)
        .or_else(|_| caller.require(perm::GROUPS_READ))?;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let id = key.to_ascii_lowercase();
    let (resource, properties) =
        if let Some(u) = tenant.users.get(&id).filter(|u| u.deleted_at.is_some()) {
            (Resource::User, &u.properties)
        } else if let Some(g) = tenant.groups.get(&id).filter(|g| g.deleted_at.is_some()) {
            (Resource::Group, &g.properties)
        } else {
            return Err(GraphError::not_found(&key));
        };
    Ok(odata_response(
        StatusCode::OK,
        &Value::Object(entity(&base_url(&headers), resource, properties)),
    ))
}

fn entity(base: &str, resource: Resource, properties: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#directoryObjects/$entity")),
    );
    out.insert(
        "@odata.type".into(),
        json!(format!("#{}", resource.odata_type())),
    );
    out.extend(deleted_view(properties, resource, None));
    out
}

/// `DELETE /directory/deletedItems/{id}`: permanent deletion, 204.
///
/// # Errors
/// 403 without permission, 404 when no deleted object has the id.
pub async fn purge(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, GraphError> {
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let id = key.to_ascii_lowercase();
    let mut target;
    if tenant
        .users
        .get(&id)
        .is_some_and(|u| u.deleted_at.is_some())
    {
        caller.require(perm::USERS_WRITE)?;
        let user = tenant
            .users
            .remove(&id)
            .ok_or_else(|| GraphError::not_found(&key))?;
        super::groups::remove_everywhere(tenant, &id, now);
        super::manager::forget(tenant, &id);
        tenant.record_change(ObjectKind::User, &id, now);
        target = audit::user_target(&id, user.upn(), Vec::new());
    } else if tenant
        .groups
        .get(&id)
        .is_some_and(|g| g.deleted_at.is_some())
    {
        caller.require(perm::GROUPS_WRITE)?;
        let group = tenant
            .groups
            .remove(&id)
            .ok_or_else(|| GraphError::not_found(&key))?;
        super::groups::remove_everywhere(tenant, &id, now);
        tenant.record_change(ObjectKind::Group, &id, now);
        target = audit::group_target(
            &id,
            group
                .properties
                .get("displayName")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        // Only Microsoft 365 groups are ever in deleted items.
        target["groupType"] = json!("unifiedGroups");
    } else {
        return Err(GraphError::not_found(&key));
    }
    let category = if target["type"] == "User" {
        "UserManagement"
    } else {
        "GroupManagement"
    };
    let activity = if target["type"] == "User" {
        "Hard delete user"
    } else {
        "Hard delete group"
    };
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category,
            activity,
            operation_type: "Delete",
            targets: vec![target],
        },
    );
    Ok(no_content())
}

/// `POST /directory/deletedItems/{id}/restore` (graph-spec §3.6): 200 with the object.
///
/// A restored user is the same object: same id, with its licences (`assignedLicenses`, still
/// consuming seats while deleted) and group memberships (soft-deleted users keep them) —
/// graph-spec §3.5 [DOC]. Its other properties come back as they were at deletion, including
/// `accountEnabled`, directory roles and `lastPasswordChangeDateTime` (unconfirmed: graph-spec
/// is silent). The hold on its addresses (realism `addressReleaseDelayMs`) applies to new
/// accounts only and ends with the restore (unconfirmed). Past 30 days the user was purged:
/// 404 (§3.6).
///
/// # Errors
/// 400 when the UPN (or, without `autoReconcileProxyConflict`, a proxy address) is now used by
/// an active user (message INF, §13.4), 403, 404 when no deleted object has the id.
pub async fn restore(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let options: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        super::json_body(&body)?
    };
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let id = key.to_ascii_lowercase();
    if let Some(g) = tenant
        .groups
        .get_mut(&id)
        .filter(|g| g.deleted_at.is_some())
    {
        caller.require(perm::GROUPS_WRITE)?;
        g.deleted_at = None;
        g.properties.insert("deletedDateTime".into(), Value::Null);
        let body = entity(&base_url(&headers), Resource::Group, &g.properties);
        let name = g
            .properties
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        tenant.record_change(ObjectKind::Group, &id, now);
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "GroupManagement",
                activity: "Restore group",
                operation_type: "Update",
                targets: vec![audit::group_target(&id, &name)],
            },
        );
        return Ok(odata_response(StatusCode::OK, &Value::Object(body)));
    }
    // App-only restore of users is assumed allowed with User.ReadWrite.All (§13.5).
    caller.require(perm::USERS_WRITE)?;
    let user = tenant
        .users
        .get(&id)
        .filter(|u| u.deleted_at.is_some())
        .ok_or_else(|| GraphError::not_found(&key))?;
    let new_upn = options
        .get("newUserPrincipalName")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let upn = new_upn.clone().unwrap_or_else(|| user.upn().to_owned());
    if new_upn.is_some() {
        if !valid_upn(&upn) {
            return Err(GraphError::bad_request(
                "Property userPrincipalName is invalid.",
            ));
        }
        let domain = upn.rsplit('@').next().unwrap_or_default();
        if !tenant.domain(domain).is_some_and(|d| d.is_verified) {
            let message = "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.";
            return Err(GraphError::bad_request(message).with_detail(
                "InvalidValue",
                message,
                "userPrincipalName",
            ));
        }
    }
    let active_addresses: Vec<String> = tenant
        .users
        .values()
        .filter(|u| u.deleted_at.is_none() && u.id != id)
        .flat_map(|u| addresses(&u.properties))
        .collect();
    if active_addresses.contains(&upn.to_lowercase()) {
        return Err(conflict("userPrincipalName"));
    }
    let reconcile = options
        .get("autoReconcileProxyConflict")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut props = user.properties.clone();
    props.insert("userPrincipalName".into(), json!(upn));
    let clashing: Vec<String> = addresses(&props)
        .into_iter()
        .filter(|a| *a != upn.to_lowercase() && active_addresses.contains(a))
        .collect();
    if !clashing.is_empty() {
        if !reconcile {
            return Err(conflict("proxyAddresses"));
        }
        if let Some(list) = props
            .get_mut("proxyAddresses")
            .and_then(Value::as_array_mut)
        {
            list.retain(|p| {
                let s = p.as_str().unwrap_or_default();
                let bare = s.split_once(':').map_or(s, |(_, a)| a).to_lowercase();
                !clashing.contains(&bare)
            });
        }
    }
    props.insert("deletedDateTime".into(), Value::Null);
    let response = entity(&base_url(&headers), Resource::User, &props);
    if let Some(u) = tenant.users.get_mut(&id) {
        u.properties = props;
        u.deleted_at = None;
    }
    tenant.held_addresses.retain(|_, h| h.user_id != id);
    tenant.record_change(ObjectKind::User, &id, now);
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "UserManagement",
            activity: "Restore user",
            operation_type: "Update",
            targets: vec![audit::user_target(&id, &upn, Vec::new())],
        },
    );
    Ok(odata_response(StatusCode::OK, &Value::Object(response)))
}
