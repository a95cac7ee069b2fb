//! A user's manager (R-ATTR-1): `GET /users/{id|upn}/manager`, `PUT /users/{id}/manager/$ref`,
//! `DELETE /users/{id}/manager/$ref`, and the `manager@delta` changes of users delta.
//!
//! graph-spec is silent on the relation (it only says `$select=…,manager` on users delta tracks
//! it, §5). Modelled on Microsoft's documentation ("List manager", "Assign manager", "Remove
//! manager") and public reports:
//! - GET answers the manager as a `directoryObject` entity (`@odata.context`
//!   `…/$metadata#directoryObjects/$entity`, `@odata.type` `#microsoft.graph.user`), 404
//!   `Request_ResourceNotFound` "Resource 'manager' does not exist or one of its queried
//!   reference-property objects are not present." when there is none (that body is reported by
//!   users of `Get-MgUserManager`; confirmed in public issue threads, not in graph-spec).
//! - PUT `$ref` with `{"@odata.id": ".../users/{managerId}"}` answers 204 (documented). Errors
//!   unconfirmed: an unknown user or manager is the usual 404 for that key; a missing
//!   `@odata.id` or a non-GUID reference is 400 `Request_BadRequest` as on `members/$ref`; a user
//!   as their own manager is refused with 400 (message assumed).
//! - DELETE `$ref` answers 204 (documented); with no manager it is the GET's 404 (assumed).
//! - A soft-deleted manager is no manager for reads (GET 404) while the link is kept, so a
//!   restore brings it back; a purged manager's links are dropped (both unconfirmed).
//! - `GET /users/{id}?$expand=manager` adds `manager` (the manager's default projection); absent
//!   without one (`$levels` is not modelled).
//! - `manager@delta` on a user of a users delta selecting `manager`: one reference
//!   (`@odata.type`, `id`), with `@removed: {"reason": "deleted"}` when the manager was removed
//!   (the shape of `members@delta`; the removal's shape is unconfirmed). The initial round lists
//!   each user's current manager.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::groups::referenced_id;
use super::odata::{self, Resource};
use super::users::{RawQuery, find, tenant_mut, tenant_ref, visible};
use super::{Caller, base_url, is_guid, no_content, odata as odata_response, perm};
use crate::AppState;
use crate::error::GraphError;
use crate::state::Tenant;

/// Graph's 404 when a user has no manager.
fn no_manager() -> GraphError {
    GraphError::not_found("manager")
}

/// The id of `user`'s manager when that manager is a live user now.
#[must_use]
pub fn manager_of<'a>(tenant: &'a Tenant, user: &str, now: DateTime<Utc>) -> Option<&'a str> {
    let manager = tenant.managers.get(user)?;
    tenant
        .users
        .get(manager)
        .filter(|m| visible(m, now))
        .map(|m| m.id.as_str())
}

/// The object id of the visible user `key` (id or UPN), or Graph's 404 for it.
fn user_id(tenant: &Tenant, key: &str, now: DateTime<Utc>) -> Result<String, GraphError> {
    find(tenant, key, now)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::not_found(key))
}

/// `GET /users/{id|upn}/manager`.
///
/// # Errors
/// 403 without a read permission, 404 for an unknown user or when it has no manager.
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    let query = odata::Query::parse(raw, Resource::User, odata::eventual(&headers))?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let user = find(tenant, &key, now).ok_or_else(|| GraphError::not_found(&key))?;
    let manager = manager_of(tenant, &user.id, now)
        .and_then(|id| tenant.users.get(id))
        .ok_or_else(no_manager)?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#directoryObjects/$entity",
            base_url(&headers)
        )),
    );
    out.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    out.extend(odata::project(
        &manager.properties,
        Resource::User,
        query.select.as_deref(),
    ));
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// `PUT /users/{id}/manager/$ref`: 204.
///
/// # Errors
/// 400 for a missing or malformed reference or a user as its own manager, 403 without write
/// permission, 404 for an unknown user or manager.
pub async fn put(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_WRITE)?;
    let raw = referenced_id(&body)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let user_id = user_id(tenant, &key, now)?;
    if !is_guid(&raw) {
        return Err(GraphError::bad_request(format!(
            "Invalid object identifier '{raw}'."
        )));
    }
    let manager_id = raw.to_ascii_lowercase();
    if !tenant
        .users
        .get(&manager_id)
        .is_some_and(|m| visible(m, now))
    {
        return Err(GraphError::not_found(&raw));
    }
    if manager_id == user_id {
        // Message assumed (unconfirmed): Entra refuses a user as its own manager.
        return Err(GraphError::bad_request(
            "A user cannot be assigned as their own manager.",
        ));
    }
    if tenant.managers.get(&user_id) != Some(&manager_id) {
        tenant.managers.insert(user_id.clone(), manager_id.clone());
        tenant.record_manager_change(&user_id, &manager_id, true, now);
    }
    Ok(no_content())
}

/// `DELETE /users/{id}/manager/$ref`: 204.
///
/// # Errors
/// 403 without write permission, 404 for an unknown user or when it has no manager.
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_WRITE)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let user_id = user_id(tenant, &key, now)?;
    if manager_of(tenant, &user_id, now).is_none() {
        return Err(no_manager());
    }
    if let Some(manager_id) = tenant.managers.remove(&user_id) {
        tenant.record_manager_change(&user_id, &manager_id, false, now);
    }
    Ok(no_content())
}

/// Adds `user`'s manager to a user object read with `$expand=manager` (`manager`: the manager's
/// default projection with `@odata.type`; absent without a manager — Graph's shape for an empty
/// single-valued navigation property, unconfirmed).
pub fn expand_into(out: &mut Map<String, Value>, tenant: &Tenant, user: &str, now: DateTime<Utc>) {
    let Some(manager) = manager_of(tenant, user, now).and_then(|id| tenant.users.get(id)) else {
        return;
    };
    let mut object = Map::new();
    object.insert("@odata.type".into(), json!("#microsoft.graph.user"));
    object.extend(odata::project(&manager.properties, Resource::User, None));
    out.insert("manager".into(), Value::Object(object));
}

/// Drops every link to or from `id` (a purged user).
pub fn forget(tenant: &mut Tenant, id: &str) {
    tenant.managers.remove(id);
    tenant.managers.retain(|_, manager| manager != id);
}

/// The `manager@delta` value reporting `manager` (assigned, or removed when `assigned` is false).
#[must_use]
pub fn delta_ref(manager: &str, assigned: bool) -> Value {
    let mut v = json!({"@odata.type": "#microsoft.graph.user", "id": manager});
    if !assigned {
        v["@removed"] = json!({"reason": "deleted"});
    }
    Value::Array(vec![v])
}
