//! Directory roles over Graph (the role model is [`crate::roles`]): `GET /directoryRoles`,
//! `GET /directoryRoles/{id}` and `GET /directoryRoles/{id}/members` (also addressed by
//! `roleTemplateId=…`), and a user's memberships `GET /users/{id}/memberOf` and
//! `transitiveMemberOf`, with the OData casts `/microsoft.graph.directoryRole` and
//! `/microsoft.graph.group`.
//!
//! Sources (graph-spec is silent on directory roles; Microsoft Graph docs, microsoft-graph-docs
//! `api-reference/v1.0/api/directoryrole-list.md`, `directoryrole-list-members.md`,
//! `user-list-memberof.md`, `resources/directoryrole.md`):
//! - roles and their members need `RoleManagement.Read.Directory` (or `Directory.Read.All` and
//!   the ReadWrite variants); without it the emulator answers graph-spec §2.6's 403;
//! - memberships list groups, directory roles (and administrative units, not modelled) with
//!   `@odata.type`; an app that may read memberships but not roles gets the roles with "limited
//!   information": their type and id, every other property `null` (Graph docs, permissions
//!   overview; the exact shape is unconfirmed);
//! - `GET /directoryRoles` takes no query options (the emulator ignores any but `$select`,
//!   unconfirmed what Graph answers); role members are returned in one page of at most 1,000
//!   (the docs: "doesn't support pagination using `$top`");
//! - an OData cast on memberships is served without `ConsistencyLevel: eventual` (the docs list
//!   casts among advanced queries yet show a cast request without the header; unconfirmed).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::odata::{self, DIRECTORY_ROLE_PROPERTIES, GROUP_PROPERTIES, Resource};
use super::users::{RawQuery, tenant_ref};
use super::{Caller, base_url, odata as odata_response, perm};
use crate::AppState;
use crate::error::GraphError;
use crate::state::{DirectoryRoleObject, State as World, Tenant};

/// Role members per response (Graph docs: "returns a default of 1,000 objects").
const MAX_ROLE_MEMBERS: usize = 1000;

/// A role as a `directoryRole` JSON object, projected to `select`; with `typed`, the
/// `@odata.type` a `directoryObject` collection carries.
fn role_json(
    role: &DirectoryRoleObject,
    select: Option<&[String]>,
    typed: bool,
) -> Map<String, Value> {
    let mut properties = Map::new();
    properties.insert("id".into(), json!(role.id));
    properties.insert("deletedDateTime".into(), Value::Null);
    properties.insert("description".into(), json!(role.description));
    properties.insert("displayName".into(), json!(role.display_name));
    properties.insert("roleTemplateId".into(), json!(role.role_template_id));
    let mut out = Map::new();
    if typed {
        out.insert(
            "@odata.type".into(),
            json!("#microsoft.graph.directoryRole"),
        );
    }
    out.extend(odata::project(&properties, Resource::DirectoryRole, select));
    out.insert("id".into(), json!(role.id));
    out
}

/// A role with "limited information": type and id, the other properties `null`.
fn limited_role_json(role: &DirectoryRoleObject) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert(
        "@odata.type".into(),
        json!("#microsoft.graph.directoryRole"),
    );
    for name in DIRECTORY_ROLE_PROPERTIES {
        out.insert((*name).to_owned(), Value::Null);
    }
    out.insert("id".into(), json!(role.id));
    out
}

fn find_role<'t>(tenant: &'t Tenant, key: &str) -> Result<&'t DirectoryRoleObject, GraphError> {
    tenant
        .find_role(key)
        .ok_or_else(|| GraphError::not_found(key))
}

/// `$select` only (the role endpoints take no other query option the emulator honours).
fn role_select(raw: &[(String, String)]) -> Result<Option<Vec<String>>, GraphError> {
    let only_select: Vec<(String, String)> = raw
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("$select"))
        .cloned()
        .collect();
    Ok(odata::Query::parse(only_select, Resource::DirectoryRole, false)?.select)
}

/// `GET /directoryRoles`: the activated roles of the tenant.
///
/// # Errors
/// 403 without a role-reading permission; 400 for an unknown `$select` property.
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::ROLES_READ)?;
    let select = role_select(&raw)?;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let value: Vec<Value> = tenant
        .directory_roles
        .values()
        .map(|r| Value::Object(role_json(r, select.as_deref(), false)))
        .collect();
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#directoryRoles", base_url(&headers)),
        "value": value,
    });
    Ok(odata_response(StatusCode::OK, &body))
}

/// `GET /directoryRoles/{id}` (or `roleTemplateId=…`): one activated role.
///
/// # Errors
/// 403 without a role-reading permission; 404 `Request_ResourceNotFound` for a role that is not
/// activated (graph-spec §2.7 template).
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::ROLES_READ)?;
    let select = role_select(&raw)?;
    let state = app.lock();
    let tenant = tenant_ref(&state, &caller)?;
    let role = find_role(tenant, &key)?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!(
            "{}/v1.0/$metadata#directoryRoles/$entity",
            base_url(&headers)
        )),
    );
    out.extend(role_json(role, select.as_deref(), false));
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// `GET /directoryRoles/{id}/members`: users (default user projection or `$select`), groups and
/// the service principals of apps granted the role, with `@odata.type`, in one page.
///
/// # Errors
/// 403 without a role-reading permission; 404 for a role that is not activated; 400 for an
/// unknown `$select` property.
pub async fn members(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::ROLES_READ)?;
    let only_select: Vec<(String, String)> = raw
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("$select"))
        .collect();
    let query = odata::Query::parse(only_select, Resource::User, false)?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let role = find_role(tenant, &key)?;
    let mut value: Vec<Value> = Vec::new();
    for member in &role.members {
        if let Some(u) = tenant
            .users
            .get(member)
            .filter(|u| super::users::visible(u, now))
        {
            let mut o = Map::new();
            o.insert("@odata.type".into(), json!("#microsoft.graph.user"));
            o.extend(odata::project(
                &u.properties,
                Resource::User,
                query.select.as_deref(),
            ));
            o.insert("id".into(), json!(u.id));
            value.push(Value::Object(o));
        } else if let Some(g) = tenant
            .groups
            .get(member)
            .filter(|g| super::groups::visible(g, now))
        {
            let select: Option<Vec<String>> = query.select.as_ref().map(|s| {
                s.iter()
                    .filter(|p| GROUP_PROPERTIES.contains(&p.as_str()))
                    .cloned()
                    .collect()
            });
            let mut o = Map::new();
            o.insert("@odata.type".into(), json!("#microsoft.graph.group"));
            o.extend(odata::project(
                &g.properties,
                Resource::Group,
                select.as_deref(),
            ));
            o.insert("id".into(), json!(g.id));
            value.push(Value::Object(o));
        }
    }
    value.extend(service_principals(&state, tenant, role));
    value.truncate(MAX_ROLE_MEMBERS);
    let body = json!({
        "@odata.context": format!("{}/v1.0/$metadata#directoryObjects", base_url(&headers)),
        "value": value,
    });
    Ok(odata_response(StatusCode::OK, &body))
}

/// The service principals of the apps whose grant in `tenant` holds `role` (shape assumed:
/// `@odata.type`, `id`, `appId`, `displayName`).
fn service_principals(state: &World, tenant: &Tenant, role: &DirectoryRoleObject) -> Vec<Value> {
    tenant
        .app_grants
        .iter()
        .filter(|(_, g)| {
            g.directory_roles
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&role.display_name))
        })
        .map(|(app_id, g)| {
            let name = state
                .applications
                .get(app_id)
                .map_or("", |a| a.display_name.as_str());
            json!({
                "@odata.type": "#microsoft.graph.servicePrincipal",
                "id": g.service_principal_id,
                "appId": app_id,
                "displayName": name,
            })
        })
        .collect()
}

/// Which objects a membership listing is cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cast {
    /// Every type (`directoryObjects`).
    None,
    /// `/microsoft.graph.group`.
    Group,
    /// `/microsoft.graph.directoryRole`.
    DirectoryRole,
}

impl Cast {
    fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Group => "/microsoft.graph.group",
            Self::DirectoryRole => "/microsoft.graph.directoryRole",
        }
    }

    fn context(self) -> &'static str {
        match self {
            Self::None => "directoryObjects",
            Self::Group => "groups",
            Self::DirectoryRole => "directoryRoles",
        }
    }
}

/// Parses a membership query: `$select` may name properties of groups or of directory roles
/// (the listing holds both); the rest is validated as for groups.
fn membership_query(
    raw: Vec<(String, String)>,
    cast: Cast,
    eventual: bool,
) -> Result<odata::Query, GraphError> {
    let resource = match cast {
        Cast::DirectoryRole => Resource::DirectoryRole,
        Cast::None | Cast::Group => Resource::Group,
    };
    if cast != Cast::None {
        return odata::Query::parse(raw, resource, eventual);
    }
    let (selects, rest): (Vec<_>, Vec<_>) = raw
        .iter()
        .cloned()
        .partition(|(k, _)| k.eq_ignore_ascii_case("$select"));
    let mut query = odata::Query::parse(rest, Resource::Group, eventual)?;
    query.raw = raw;
    if let Some((_, value)) = selects.last() {
        let mut names = Vec::new();
        for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let known = GROUP_PROPERTIES
                .iter()
                .chain(DIRECTORY_ROLE_PROPERTIES)
                .find(|p| p.eq_ignore_ascii_case(name));
            match known {
                Some(p) => names.push((*p).to_owned()),
                // Message assumed, as for other unknown `$select` properties.
                None => {
                    return Err(GraphError::new(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!(
                            "Could not find a property named '{name}' on type 'microsoft.graph.directoryObject'."
                        ),
                    ));
                }
            }
        }
        query.select = Some(names);
    }
    Ok(query)
}

fn memberships(
    app: &AppState,
    caller: &Caller,
    key: &str,
    raw: Vec<(String, String)>,
    headers: &HeaderMap,
    transitive: bool,
    cast: Cast,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_READ)?;
    let query = membership_query(raw, cast, odata::eventual(headers))?;
    let full_roles = caller.has_any(perm::ROLES_READ);
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, caller)?;
    let user = super::users::find(tenant, key, now).ok_or_else(|| GraphError::not_found(key))?;
    let mut objects: Vec<Map<String, Value>> = Vec::new();
    if cast != Cast::DirectoryRole {
        let select: Option<Vec<String>> = query.select.as_ref().map(|s| {
            s.iter()
                .filter(|p| GROUP_PROPERTIES.contains(&p.as_str()))
                .cloned()
                .collect()
        });
        for id in tenant.groups_containing(&user.id, transitive, now) {
            if let Some(g) = tenant.groups.get(&id) {
                let mut o = Map::new();
                o.insert("@odata.type".into(), json!("#microsoft.graph.group"));
                o.extend(odata::project(
                    &g.properties,
                    Resource::Group,
                    select.as_deref(),
                ));
                o.insert("id".into(), json!(g.id));
                objects.push(o);
            }
        }
    }
    if cast != Cast::Group {
        let select: Option<Vec<String>> = query.select.as_ref().map(|s| {
            s.iter()
                .filter(|p| DIRECTORY_ROLE_PROPERTIES.contains(&p.as_str()))
                .cloned()
                .collect()
        });
        for role in tenant.roles_of(&user.id, transitive, now) {
            objects.push(if full_roles {
                role_json(role, select.as_deref(), true)
            } else {
                limited_role_json(role)
            });
        }
    }
    let items: Vec<&Map<String, Value>> = objects.iter().filter(|o| query.matches(o)).collect();
    let total = items.len();
    let (page, next) = query.page(items, 100);
    let base = base_url(headers);
    let segment = if transitive {
        "transitiveMemberOf"
    } else {
        "memberOf"
    };
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#{}", cast.context())),
    );
    if query.wants_count() {
        out.insert("@odata.count".into(), json!(total));
    }
    if let Some(token) = next {
        out.insert(
            "@odata.nextLink".into(),
            json!(query.next_link(
                &base,
                &format!("/v1.0/users/{key}/{segment}{}", cast.suffix()),
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

macro_rules! membership_handler {
    ($(#[$doc:meta])* $name:ident, $transitive:expr, $cast:expr) => {
        $(#[$doc])*
        ///
        /// # Errors
        /// 403 without a membership-reading permission, 404 for an unknown user, query errors.
        pub async fn $name(
            State(app): State<AppState>,
            Extension(caller): Extension<Caller>,
            Path(key): Path<String>,
            Query(raw): RawQuery,
            headers: HeaderMap,
        ) -> Result<Response, GraphError> {
            memberships(&app, &caller, &key, raw, &headers, $transitive, $cast)
        }
    };
}

membership_handler!(
    /// `GET /users/{id}/memberOf`: the groups and directory roles the user is a direct member of.
    member_of,
    false,
    Cast::None
);
membership_handler!(
    /// `GET /users/{id}/memberOf/microsoft.graph.group`.
    member_of_groups,
    false,
    Cast::Group
);
membership_handler!(
    /// `GET /users/{id}/memberOf/microsoft.graph.directoryRole`.
    member_of_roles,
    false,
    Cast::DirectoryRole
);
membership_handler!(
    /// `GET /users/{id}/transitiveMemberOf`: groups (nested ones too) and directory roles held
    /// directly or through a group.
    transitive_member_of,
    true,
    Cast::None
);
membership_handler!(
    /// `GET /users/{id}/transitiveMemberOf/microsoft.graph.group`.
    transitive_member_of_groups,
    true,
    Cast::Group
);
membership_handler!(
    /// `GET /users/{id}/transitiveMemberOf/microsoft.graph.directoryRole`.
    transitive_member_of_roles,
    true,
    Cast::DirectoryRole
);
