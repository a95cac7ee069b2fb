//! Groups and membership (graph-spec §4): create (201 with the §4.1 shape), get, list, patch
//! (incl. `members@odata.bind`), delete (security groups permanently), `members/$ref` add and
//! remove with the exact directory messages, list members with `@odata.type`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::odata::{self, Resource};
use super::users::{
    RawQuery, collection, conflict, tenant_mut, tenant_ref, unknown_property, valid_mail_nickname,
    visible as user_visible,
};
use super::{Caller, base_url, is_guid, json_body, no_content, odata as odata_response, perm};
use crate::AppState;
use crate::audit::{self, AuditEvent};
use crate::error::GraphError;
use crate::state::{Group, ObjectKind, Tenant, graph_timestamp};

/// Whether a group is visible now (not deleted, past its replication lag).
#[must_use]
pub fn visible(group: &Group, now: DateTime<Utc>) -> bool {
    group.deleted_at.is_none() && group.visible_from <= now
}

fn is_unified(properties: &Map<String, Value>) -> bool {
    properties
        .get("groupTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| {
            t.iter().any(|v| {
                v.as_str()
                    .is_some_and(|s| s.eq_ignore_ascii_case("Unified"))
            })
        })
}

fn context(base: &str, select: Option<&[String]>, entity: bool) -> String {
    let sel = select
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let suffix = if entity { "/$entity" } else { "" };
    format!("{base}/v1.0/$metadata#groups{sel}{suffix}")
}

/// The object id at the end of an `@odata.id` / `@odata.bind` URL.
pub(super) fn reference_id(url: &str) -> &str {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// The object id a `$ref` body's `@odata.id` names (400 when the body or the property is missing).
///
/// # Errors
/// 400 `Request_BadRequest`.
pub(super) fn referenced_id(body: &[u8]) -> Result<String, GraphError> {
    let body = json_body(body)?;
    let url = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| GraphError::bad_request("A value is required for property '@odata.id'."))?;
    Ok(reference_id(url).to_owned())
}

/// What a member id refers to.
enum MemberKind {
    User,
    Group,
}

fn member_kind(tenant: &Tenant, id: &str, now: DateTime<Utc>) -> Option<MemberKind> {
    if tenant.users.get(id).is_some_and(|u| user_visible(u, now)) {
        Some(MemberKind::User)
    } else if tenant.groups.get(id).is_some_and(|g| visible(g, now)) {
        Some(MemberKind::Group)
    } else {
        None
    }
}

/// Validates member references for a bind list (≤ 20 with owners), returning their ids.
fn bind_ids(
    tenant: &Tenant,
    values: Option<&Value>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, GraphError> {
    let Some(values) = values else {
        return Ok(Vec::new());
    };
    let urls = values.as_array().ok_or_else(|| {
        GraphError::bad_request("Invalid value for property 'members@odata.bind'.")
    })?;
    let mut ids = Vec::new();
    for url in urls {
        let raw = reference_id(url.as_str().unwrap_or_default());
        if !is_guid(raw) {
            return Err(GraphError::bad_request(format!(
                "Invalid object identifier '{raw}'."
            )));
        }
        let id = raw.to_ascii_lowercase();
        if member_kind(tenant, &id, now).is_none() {
            return Err(GraphError::not_found(raw));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn find_id(tenant: &Tenant, key: &str, now: DateTime<Utc>) -> Option<String> {
    let id = key.to_ascii_lowercase();
    tenant
        .groups
        .get(&id)
        .filter(|g| visible(g, now))
        .map(|g| g.id.clone())
}

/// `POST /groups` (graph-spec §4.1).
///
/// # Errors
/// 400 for missing/invalid properties or an M365 mailNickname clash, 403 without permission,
/// 404 for an unknown member/owner in the bind lists.
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_CREATE)?;
    let body = json_body(&body)?;
    for key in body.keys() {
        if key != "members@odata.bind"
            && key != "owners@odata.bind"
            && !key.starts_with('@')
            && !Resource::Group.properties().contains(&key.as_str())
        {
            return Err(unknown_property(key, Resource::Group));
        }
    }
    for prop in [
        "displayName",
        "mailEnabled",
        "mailNickname",
        "securityEnabled",
    ] {
        if body.get(prop).is_none_or(Value::is_null) {
            return Err(GraphError::bad_request(format!(
                "A value is required for property '{prop}' of resource 'Group'."
            )));
        }
    }
    let invalid = |p: &str| {
        GraphError::bad_request(format!(
            "Invalid value specified for property '{p}' of resource 'Group'."
        ))
    };
    let display_name = body
        .get("displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("displayName"))?
        .to_owned();
    if display_name.trim().is_empty() || display_name.chars().count() > 256 {
        return Err(invalid("displayName"));
    }
    let nickname = body
        .get("mailNickname")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !valid_mail_nickname(&nickname) {
        return Err(invalid("mailNickname"));
    }
    for b in ["mailEnabled", "securityEnabled"] {
        if !body.get(b).is_some_and(Value::is_boolean) {
            return Err(invalid(b));
        }
    }
    let mut state = app.lock();
    let now = state.clock.now();
    let lag = state.realism.replication_lag;
    let tenant = tenant_mut(&mut state, &caller)?;
    let unified = is_unified(&body);
    if unified
        && tenant.groups.values().any(|g| {
            g.deleted_at.is_none()
                && is_unified(&g.properties)
                && g.properties
                    .get("mailNickname")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(&nickname))
        })
    {
        return Err(conflict("mailNickname"));
    }
    let members = bind_ids(tenant, body.get("members@odata.bind"), now)?;
    let owners = bind_ids(tenant, body.get("owners@odata.bind"), now)?;
    if members.len() + owners.len() > 20 {
        // Limit documented (§4.1); message assumed.
        return Err(GraphError::bad_request(
            "A maximum of 20 members and owners can be added when creating a group.",
        ));
    }

    let id = crate::state::new_id();
    let ts = graph_timestamp(now);
    let mut properties = json!({
        "id": id, "deletedDateTime": null, "classification": null, "createdDateTime": ts,
        "description": null, "displayName": display_name, "expirationDateTime": null,
        "groupTypes": [], "isAssignableToRole": null, "mail": null, "mailEnabled": false,
        "mailNickname": nickname, "membershipRule": null, "membershipRuleProcessingState": null,
        "onPremisesDomainName": null, "onPremisesLastSyncDateTime": null,
        "onPremisesNetBiosName": null, "onPremisesSamAccountName": null,
        "onPremisesSecurityIdentifier": null, "onPremisesSyncEnabled": null,
        "preferredDataLocation": null, "preferredLanguage": null, "proxyAddresses": [],
        "renewedDateTime": ts, "resourceBehaviorOptions": [], "resourceProvisioningOptions": [],
        "securityEnabled": true, "securityIdentifier": security_identifier(&id), "theme": null,
        "visibility": null, "onPremisesProvisioningErrors": []
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    for (k, v) in &body {
        if !k.contains('@') {
            properties.insert(k.clone(), v.clone());
        }
    }
    let tenant_id = tenant.id.clone();
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(context(&base_url(&headers), None, true)),
    );
    out.insert(
        "@odata.id".into(),
        json!(format!(
            "{}/v2/{tenant_id}/directoryObjects/{id}/Microsoft.DirectoryServices.Group",
            base_url(&headers)
        )),
    );
    out.extend(odata::project(&properties, Resource::Group, None));
    tenant.groups.insert(
        id.clone(),
        Group {
            id: id.clone(),
            properties,
            members: members.clone(),
            owners,
            created_at: now,
            visible_from: now + lag,
            deleted_at: None,
        },
    );
    tenant.record_change(ObjectKind::Group, &id, now);
    for m in &members {
        tenant.record_member_change(&id, m, true, now);
    }
    let member_upns: Vec<(String, String)> = members
        .iter()
        .map(|m| {
            (
                m.clone(),
                tenant
                    .users
                    .get(m)
                    .map(|u| u.upn().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "GroupManagement",
            activity: "Add group",
            operation_type: "Add",
            targets: vec![audit::group_target(&id, &display_name)],
        },
    );
    for (m, upn) in member_upns {
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "GroupManagement",
                activity: "Add member to group",
                operation_type: "Assign",
                targets: vec![
                    audit::user_target(&m, &upn, Vec::new()),
                    audit::group_target(&id, &display_name),
                ],
            },
        );
    }
    Ok(odata_response(StatusCode::CREATED, &Value::Object(out)))
}

/// A SID in the `S-1-12-1-…` form Entra derives from the object id.
fn security_identifier(id: &str) -> String {
    let bytes = uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .unwrap_or_default();
    let part = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    format!("S-1-12-1-{}-{}-{}-{}", part(0), part(4), part(8), part(12))
}

/// `GET /groups/{id}`.
///
/// # Errors
/// 403 without permission, 404 when absent or not yet replicated.
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_READ)?;
    let query = odata::Query::parse(raw, Resource::Group, odata::eventual(&headers))?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let group = find_id(tenant, &key, now)
        .and_then(|id| tenant.groups.get(&id))
        .ok_or_else(|| GraphError::not_found(&key))?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(context(&base_url(&headers), query.select.as_deref(), true)),
    );
    out.extend(odata::project(
        &group.properties,
        Resource::Group,
        query.select.as_deref(),
    ));
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// `GET /groups`.
///
/// # Errors
/// 403 without permission; query errors.
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_READ)?;
    let query = odata::Query::parse(raw, Resource::Group, odata::eventual(&headers))?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let items: Vec<&Map<String, Value>> = tenant
        .groups
        .values()
        .filter(|g| visible(g, now) && query.matches(&g.properties))
        .map(|g| &g.properties)
        .collect();
    let base = base_url(&headers);
    Ok(collection(
        &base,
        "/v1.0/groups",
        &context(&base, query.select.as_deref(), false),
        &query,
        items,
        Resource::Group,
    ))
}

/// `PATCH /groups/{id}`: properties and `members@odata.bind` (≤ 20; all or nothing).
///
/// # Errors
/// 400 for invalid bodies, 403 without permission, 404 when absent.
pub async fn update(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    let body = super::patch_body(&body)?;
    let only_members = body.keys().all(|k| k == "members@odata.bind");
    if only_members {
        caller.require(perm::MEMBERS_WRITE)?;
    } else {
        caller.require(perm::GROUPS_WRITE)?;
    }
    for key in body.keys() {
        if key != "members@odata.bind"
            && key != "owners@odata.bind"
            && !key.starts_with('@')
            && !Resource::Group.properties().contains(&key.as_str())
        {
            return Err(unknown_property(key, Resource::Group));
        }
    }
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let id = find_id(tenant, &key, now).ok_or_else(|| GraphError::not_found(&key))?;
    if let Some(v) = body.get("displayName")
        && v.as_str().is_none_or(|s| s.trim().is_empty())
    {
        return Err(GraphError::bad_request(
            "Invalid value specified for property 'displayName' of resource 'Group'.",
        ));
    }
    let new_members = bind_ids(tenant, body.get("members@odata.bind"), now)?;
    if new_members.len() > 20 {
        return Err(GraphError::bad_request(
            "A maximum of 20 members can be added in a single request.",
        ));
    }
    let group = tenant
        .groups
        .get(&id)
        .ok_or_else(|| GraphError::not_found(&key))?;
    if new_members.iter().any(|m| group.members.contains(m)) {
        return Err(already_member());
    }
    let mut modified = Vec::new();
    let group = tenant
        .groups
        .get_mut(&id)
        .ok_or_else(|| GraphError::not_found(&key))?;
    for (k, v) in &body {
        if !k.contains('@') {
            modified.push(audit::modified(k, group.properties.get(k), v));
            group.properties.insert(k.clone(), v.clone());
        }
    }
    group.members.extend(new_members.iter().cloned());
    let display_name = group
        .properties
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !modified.is_empty() {
        tenant.record_change(ObjectKind::Group, &id, now);
    }
    for m in &new_members {
        tenant.record_member_change(&id, m, true, now);
    }
    let upns: Vec<(String, String)> = new_members
        .iter()
        .map(|m| {
            let upn = tenant
                .users
                .get(m)
                .map(|u| u.upn().to_owned())
                .unwrap_or_default();
            (m.clone(), upn)
        })
        .collect();
    if !modified.is_empty() {
        let mut target = audit::group_target(&id, &display_name);
        target["modifiedProperties"] = Value::Array(modified);
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "GroupManagement",
                activity: "Update group",
                operation_type: "Update",
                targets: vec![target],
            },
        );
    }
    for (m, upn) in upns {
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "GroupManagement",
                activity: "Add member to group",
                operation_type: "Assign",
                targets: vec![
                    audit::user_target(&m, &upn, Vec::new()),
                    audit::group_target(&id, &display_name),
                ],
            },
        );
    }
    Ok(no_content())
}

/// `DELETE /groups/{id}`: security groups are deleted permanently, Microsoft 365 groups go to
/// deleted items (graph-spec §3.6, §4.5).
///
/// # Errors
/// 403 without permission, 404 when absent.
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_WRITE)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let id = find_id(tenant, &key, now).ok_or_else(|| GraphError::not_found(&key))?;
    let display_name;
    if tenant
        .groups
        .get(&id)
        .is_some_and(|g| is_unified(&g.properties))
    {
        let group = tenant
            .groups
            .get_mut(&id)
            .ok_or_else(|| GraphError::not_found(&key))?;
        group.deleted_at = Some(now);
        group
            .properties
            .insert("deletedDateTime".into(), json!(graph_timestamp(now)));
        display_name = group
            .properties
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
    } else {
        let group = tenant
            .groups
            .remove(&id)
            .ok_or_else(|| GraphError::not_found(&key))?;
        display_name = group
            .properties
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        remove_everywhere(tenant, &id, now);
    }
    tenant.record_change(ObjectKind::Group, &id, now);
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "GroupManagement",
            activity: "Delete group",
            operation_type: "Delete",
            targets: vec![audit::group_target(&id, &display_name)],
        },
    );
    Ok(no_content())
}

/// Removes an object from every group's members (permanent deletion), recording the changes.
pub fn remove_everywhere(tenant: &mut Tenant, member_id: &str, now: DateTime<Utc>) {
    let groups: Vec<String> = tenant
        .groups
        .values()
        .filter(|g| g.members.iter().any(|m| m == member_id))
        .map(|g| g.id.clone())
        .collect();
    for gid in groups {
        if let Some(g) = tenant.groups.get_mut(&gid) {
            g.members.retain(|m| m != member_id);
        }
        tenant.record_member_change(&gid, member_id, false, now);
    }
}

fn already_member() -> GraphError {
    GraphError::bad_request(
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
}

/// `GET /groups/{id}/members` (graph-spec §4.4): directoryObjects with `@odata.type`, paged.
///
/// # Errors
/// 403 without permission, 404 when the group is absent; query errors.
pub async fn members(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    members_of(&app, &caller, &key, raw, &headers, None)
}

/// `GET /groups/{id}/members/microsoft.graph.user` (or `graph.user`): user members only.
///
/// # Errors
/// As [`members`].
pub async fn user_members(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    members_of(&app, &caller, &key, raw, &headers, Some(Resource::User))
}

/// `GET /groups/{id}/members/microsoft.graph.group` (or `graph.group`): group members only.
///
/// # Errors
/// As [`members`].
pub async fn group_members(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    members_of(&app, &caller, &key, raw, &headers, Some(Resource::Group))
}

fn members_of(
    app: &AppState,
    caller: &Caller,
    key: &str,
    raw: Vec<(String, String)>,
    headers: &HeaderMap,
    cast: Option<Resource>,
) -> Result<Response, GraphError> {
    let key = key.to_owned();
    caller.require(perm::GROUPS_READ)?;
    let query = odata::Query::parse(
        raw,
        cast.unwrap_or(Resource::User),
        odata::eventual(headers),
    )?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, caller)?;
    let group = find_id(tenant, &key, now)
        .and_then(|id| tenant.groups.get(&id))
        .ok_or_else(|| GraphError::not_found(&key))?;
    let mut objects: Vec<Map<String, Value>> = Vec::new();
    for m in &group.members {
        if let Some(u) = tenant
            .users
            .get(m)
            .filter(|u| u.deleted_at.is_none() && cast != Some(Resource::Group))
        {
            let mut o = Map::new();
            o.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            o.extend(odata::project(
                &u.properties,
                Resource::User,
                query.select.as_deref(),
            ));
            o.insert("id".into(), json!(u.id));
            objects.push(o);
        } else if let Some(g) = tenant
            .groups
            .get(m)
            .filter(|g| g.deleted_at.is_none() && cast != Some(Resource::User))
        {
            let mut o = Map::new();
            o.insert("@odata.type".into(), json!("#microsoft.graph.group"));
            let select: Option<Vec<String>> = query.select.as_ref().map(|s| {
                s.iter()
                    .filter(|p| Resource::Group.properties().contains(&p.as_str()))
                    .cloned()
                    .collect()
            });
            o.extend(odata::project(
                &g.properties,
                Resource::Group,
                select.as_deref(),
            ));
            o.insert("id".into(), json!(g.id));
            objects.push(o);
        }
    }
    let items: Vec<&Map<String, Value>> = objects.iter().filter(|o| query.matches(o)).collect();
    let total = items.len();
    let (page, next) = query.page(items, 100);
    let base = base_url(headers);
    let (context, suffix) = match cast {
        None => ("directoryObjects", String::new()),
        Some(r) => (
            if r == Resource::User {
                "users"
            } else {
                "groups"
            },
            format!("/{}", r.odata_type()),
        ),
    };
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#{context}")),
    );
    if query.wants_count() {
        out.insert("@odata.count".into(), json!(total));
    }
    if let Some(token) = next {
        out.insert(
            "@odata.nextLink".into(),
            json!(query.next_link(
                &base,
                &format!("/v1.0/groups/{key}/members{suffix}"),
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

/// `POST /groups/{id}/members/$ref` (graph-spec §4.2, §7.4).
///
/// # Errors
/// 400 already a member / invalid id / group still replicating, 403, 404 unknown group or member.
pub async fn add_member(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(perm::MEMBERS_WRITE)?;
    let raw = referenced_id(&body)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let gid = key.to_ascii_lowercase();
    let group = match tenant.groups.get(&gid) {
        Some(g) if g.deleted_at.is_none() => g,
        _ => return Err(GraphError::not_found(&key)),
    };
    if group.visible_from > now {
        // A group still replicating (§7.4, beta doc note).
        return Err(GraphError::bad_request(
            "The source resource object or one of the objects being referenced do not exist.",
        ));
    }
    if !is_guid(&raw) {
        return Err(GraphError::bad_request(format!(
            "Invalid object identifier '{raw}'."
        )));
    }
    let mid = raw.to_ascii_lowercase();
    let kind = member_kind(tenant, &mid, now).ok_or_else(|| GraphError::not_found(&raw))?;
    if is_unified(&group.properties) && matches!(kind, MemberKind::Group) {
        // Microsoft 365 groups accept users only (§4.2); message assumed.
        return Err(GraphError::bad_request(
            "Adding a group as a member of a Microsoft 365 group is not supported.",
        ));
    }
    if group.members.contains(&mid) {
        return Err(already_member());
    }
    let display_name = group
        .properties
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let upn = tenant
        .users
        .get(&mid)
        .map(|u| u.upn().to_owned())
        .unwrap_or_default();
    if let Some(g) = tenant.groups.get_mut(&gid) {
        g.members.push(mid.clone());
    }
    tenant.record_member_change(&gid, &mid, true, now);
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "GroupManagement",
            activity: "Add member to group",
            operation_type: "Assign",
            targets: vec![
                audit::user_target(&mid, &upn, Vec::new()),
                audit::group_target(&gid, &display_name),
            ],
        },
    );
    Ok(no_content())
}

/// `DELETE /groups/{id}/members/{member}/$ref` (graph-spec §4.3): 404 when not a member.
///
/// # Errors
/// 400 for a non-GUID member id, 403, 404 unknown group or not a member.
pub async fn remove_member(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((key, member)): Path<(String, String)>,
) -> Result<Response, GraphError> {
    caller.require(perm::MEMBERS_WRITE)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let gid = find_id(tenant, &key, now).ok_or_else(|| GraphError::not_found(&key))?;
    if !is_guid(&member) {
        return Err(GraphError::unsupported_query(
            "Unsupported referenced-object resource identifier for link property 'members'.",
        ));
    }
    let mid = member.to_ascii_lowercase();
    let group = tenant
        .groups
        .get_mut(&gid)
        .ok_or_else(|| GraphError::not_found(&key))?;
    if !group.members.contains(&mid) {
        return Err(GraphError::not_found(&member));
    }
    group.members.retain(|m| *m != mid);
    let display_name = group
        .properties
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let upn = tenant
        .users
        .get(&mid)
        .map(|u| u.upn().to_owned())
        .unwrap_or_default();
    tenant.record_member_change(&gid, &mid, false, now);
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "GroupManagement",
            activity: "Remove member from group",
            operation_type: "Unassign",
            targets: vec![
                audit::user_target(&mid, &upn, Vec::new()),
                audit::group_target(&gid, &display_name),
            ],
        },
    );
    Ok(no_content())
}

/// `GET /users/{id|upn}/memberOf`: the groups and directory roles a user is a direct member of,
/// as directoryObjects (served by [`super::roles::member_of`]).
///
/// # Errors
/// 403 without a group or directory read permission, 404 when the user is absent.
pub async fn member_of(
    state: State<AppState>,
    caller: Extension<Caller>,
    key: Path<String>,
    raw: RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    super::roles::member_of(state, caller, key, raw, headers).await
}
