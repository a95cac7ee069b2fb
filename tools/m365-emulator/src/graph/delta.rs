//! Delta queries for users and groups (graph-spec §5): an initial round over current objects,
//! then changes since an opaque deltaToken from the tenant's change log; `@removed` with
//! `changed` (soft-deleted) or `deleted` (gone), `members@delta` for groups, nextLink/deltaLink
//! paging, `$deltaToken=latest`, 410 + `Location` after a reset or a token older than 7 days.

use std::collections::BTreeMap;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::odata::{self, Resource, param};
use super::users::{RawQuery, tenant_ref};
use super::{Caller, base_url, odata as odata_response, perm};
use crate::AppState;
use crate::error::GraphError;
use crate::state::{ObjectKind, Tenant};

/// Delta tokens expire after this long (§5).
pub const TOKEN_LIFETIME_DAYS: i64 = 7;

/// A delta round in progress or finished (the content of skip and delta tokens).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    /// Changes after this sequence number (0 = initial round).
    from: u64,
    /// Up to this sequence number (inclusive).
    to: u64,
    /// Items already returned in this round (change rounds).
    offset: usize,
    /// The last id returned by an initial round's page: the next page starts after it. Keyset
    /// paging keeps an object that exists throughout the round from being skipped when others
    /// are created or deleted meanwhile (assumed of Graph's skip tokens, unconfirmed: graph-spec
    /// §5 is silent; a sync API that skipped live objects would be useless for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<String>,
    /// `$select`.
    select: Option<Vec<String>>,
    /// `$filter=id eq '…' or …` scoping.
    ids: Option<Vec<String>>,
    /// When the round started (token age).
    issued: DateTime<Utc>,
    /// The tenant's delta generation when issued.
    #[serde(default)]
    epoch: u64,
}

fn encode(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode(s: &str) -> Option<Cursor> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// `GET /users/delta`.
///
/// # Errors
/// 403, 400 for unsupported options or a bad token, 410 for an expired or reset token.
pub async fn users(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    delta(&app, &caller, raw, &headers, ObjectKind::User)
}

/// `GET /groups/delta`.
///
/// # Errors
/// 403, 400 for unsupported options or a bad token, 410 for an expired or reset token.
pub async fn groups(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::GROUPS_READ)?;
    delta(&app, &caller, raw, &headers, ObjectKind::Group)
}

fn scoped_ids(filter: &str) -> Result<Vec<String>, GraphError> {
    let expr = odata::parse_filter(filter)?;
    let mut ids = Vec::new();
    fn walk(e: &odata::Expr, ids: &mut Vec<String>) -> bool {
        match e {
            odata::Expr::Or(a, b) => walk(a, ids) && walk(b, ids),
            odata::Expr::Cmp(
                p,
                odata::CmpOp::Eq,
                odata::Literal::Str(v) | odata::Literal::Guid(v),
            ) if p == "id" => {
                ids.push(v.to_ascii_lowercase());
                true
            }
            _ => false,
        }
    }
    if walk(&expr, &mut ids) {
        Ok(ids)
    } else {
        Err(GraphError::unsupported_query(
            "Only 'id eq' clauses joined by 'or' are supported in $filter for delta queries.",
        ))
    }
}

fn delta(
    app: &AppState,
    caller: &Caller,
    raw: Vec<(String, String)>,
    headers: &HeaderMap,
    kind: ObjectKind,
) -> Result<Response, GraphError> {
    let resource = match kind {
        ObjectKind::User => Resource::User,
        ObjectKind::Group => Resource::Group,
    };
    let segment = match kind {
        ObjectKind::User => "users",
        ObjectKind::Group => "groups",
    };
    for unsupported in ["$top", "$expand", "$orderby"] {
        if param(&raw, unsupported).is_some() {
            // Documented as unsupported on users/groups delta (§5); message assumed.
            return Err(GraphError::unsupported_query(format!(
                "{unsupported} is not supported with delta query on {segment}."
            )));
        }
    }
    let base = base_url(headers);
    let state = app.lock();
    let now = state.clock.now();
    let page_size = state.realism.delta_page_size.max(1);
    let tenant = tenant_ref(&state, caller)?;
    let current = tenant.next_change.saturating_sub(1);
    let initial_url = format!("{base}/v1.0/{segment}/delta");

    let cursor = if let Some(token) = param(&raw, "$deltatoken") {
        if token.eq_ignore_ascii_case("latest") {
            let select = select_of(&raw, resource)?;
            let c = Cursor {
                from: current,
                to: current,
                offset: 0,
                after: None,
                select,
                ids: None,
                issued: now,
                epoch: tenant.delta_epoch,
            };
            let body = json!({
                "@odata.context": format!("{base}/v1.0/$metadata#{segment}"),
                "@odata.deltaLink": format!("{base}/v1.0/{segment}/delta?$deltatoken={}", encode(&c)),
                "value": []
            });
            return Ok(odata_response(StatusCode::OK, &body));
        }
        let c = decode(token).ok_or_else(|| GraphError::bad_request("Invalid delta token."))?;
        if c.epoch != tenant.delta_epoch {
            return Ok(gone(
                "resyncRequired",
                "Resync required. Replace any local cached data with the latest data from the server.",
                &initial_url,
            ));
        }
        if now - c.issued > Duration::days(TOKEN_LIFETIME_DAYS) {
            return Ok(gone(
                "syncStateNotFound",
                "The sync state is not found or has expired.",
                &initial_url,
            ));
        }
        Cursor {
            from: c.to,
            to: replicated_up_to(tenant, kind, c.to, current, now),
            offset: 0,
            after: None,
            select: c.select,
            ids: c.ids,
            issued: now,
            epoch: c.epoch,
        }
    } else if let Some(token) = param(&raw, "$skiptoken") {
        let c = decode(token).ok_or_else(|| GraphError::bad_request("Invalid skip token."))?;
        if c.epoch != tenant.delta_epoch {
            return Ok(gone(
                "resyncRequired",
                "Resync required. Replace any local cached data with the latest data from the server.",
                &initial_url,
            ));
        }
        c
    } else {
        let select = select_of(&raw, resource)?;
        let ids = param(&raw, "$filter").map(scoped_ids).transpose()?;
        Cursor {
            from: 0,
            to: replicated_up_to(tenant, kind, 0, current, now),
            offset: 0,
            after: None,
            select,
            ids,
            issued: now,
            epoch: tenant.delta_epoch,
        }
    };

    let items = round_items(tenant, kind, &cursor, now);
    let (page, next) = if cursor.from == 0 {
        // Initial round: current objects in id order, each page after the last id returned.
        let mut rest: Vec<Value> = items
            .into_iter()
            .filter(|o| {
                cursor
                    .after
                    .as_deref()
                    .is_none_or(|after| o["id"].as_str().is_some_and(|id| id > after))
            })
            .collect();
        let more = rest.len() > page_size;
        rest.truncate(page_size);
        let next = more.then(|| Cursor {
            after: rest
                .last()
                .and_then(|o| o["id"].as_str())
                .map(str::to_owned),
            ..cursor.clone()
        });
        (rest, next)
    } else {
        let total = items.len();
        let page: Vec<Value> = items
            .into_iter()
            .skip(cursor.offset)
            .take(page_size)
            .collect();
        let next_offset = cursor.offset + page.len();
        let next = (next_offset < total).then(|| Cursor {
            offset: next_offset,
            ..cursor.clone()
        });
        (page, next)
    };
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(format!("{base}/v1.0/$metadata#{segment}")),
    );
    if let Some(next) = next {
        out.insert(
            "@odata.nextLink".into(),
            json!(format!(
                "{base}/v1.0/{segment}/delta?$skiptoken={}",
                encode(&next)
            )),
        );
    } else {
        let done = Cursor {
            from: cursor.to,
            to: cursor.to,
            offset: 0,
            after: None,
            ..cursor
        };
        out.insert(
            "@odata.deltaLink".into(),
            json!(format!(
                "{base}/v1.0/{segment}/delta?$deltatoken={}",
                encode(&done)
            )),
        );
    }
    out.insert("value".into(), Value::Array(page));
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// The last sequence number a new round may cover: just before the first change of an object
/// that is still replicating (graph-spec §5, §7.4: "recent changes may appear only on a later
/// call"), so the next round reports it instead of losing it. Replays are allowed.
fn replicated_up_to(
    tenant: &Tenant,
    kind: ObjectKind,
    from: u64,
    current: u64,
    now: DateTime<Utc>,
) -> u64 {
    let replicating = |id: &str| match kind {
        ObjectKind::User => tenant
            .users
            .get(id)
            .is_some_and(|u| u.deleted_at.is_none() && u.visible_from > now),
        ObjectKind::Group => tenant
            .groups
            .get(id)
            .is_some_and(|g| g.deleted_at.is_none() && g.visible_from > now),
    };
    tenant
        .changes
        .iter()
        .filter(|c| c.kind == kind && c.seq > from && c.seq <= current && replicating(&c.id))
        .map(|c| c.seq - 1)
        .min()
        .map_or(current, |s| s.max(from))
}

fn select_of(
    raw: &[(String, String)],
    resource: Resource,
) -> Result<Option<Vec<String>>, GraphError> {
    let only_select: Vec<(String, String)> = raw
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("$select"))
        .cloned()
        .collect();
    Ok(odata::Query::parse(only_select, resource, false)?.select)
}

fn gone(code: &'static str, message: &str, location: &str) -> Response {
    // 410 + Location of the initial query (§5); code/message pairing assumed.
    let mut response = GraphError::new(StatusCode::GONE, code, message).into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

fn member_ref(tenant: &Tenant, id: &str, removed: bool) -> Value {
    let odata_type = if tenant.groups.contains_key(id) {
        "#microsoft.graph.group"
    } else {
        "#microsoft.graph.user"
    };
    let mut v = json!({"@odata.type": odata_type, "id": id});
    if removed {
        v["@removed"] = json!({"reason": "deleted"});
    }
    v
}

fn round_items(
    tenant: &Tenant,
    kind: ObjectKind,
    cursor: &Cursor,
    now: DateTime<Utc>,
) -> Vec<Value> {
    let resource = match kind {
        ObjectKind::User => Resource::User,
        ObjectKind::Group => Resource::Group,
    };
    let with_members = kind == ObjectKind::Group
        && cursor
            .select
            .as_ref()
            .is_none_or(|s| s.iter().any(|p| p == "members"));
    // Users track their manager only when `$select` names it (graph-spec §5, R-ATTR-1).
    let with_manager = kind == ObjectKind::User
        && cursor
            .select
            .as_ref()
            .is_some_and(|s| s.iter().any(|p| p == "manager"));
    let select: Option<Vec<String>> = cursor.select.as_ref().map(|s| {
        let mut s: Vec<String> = s
            .iter()
            .filter(|p| *p != "members" && *p != "manager")
            .cloned()
            .collect();
        if !s.iter().any(|p| p == "id") {
            s.push("id".into());
        }
        s
    });
    let in_scope = |id: &str| {
        cursor
            .ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|i| i == id))
    };
    let object = |id: &str| -> Option<(Map<String, Value>, bool)> {
        match kind {
            ObjectKind::User => tenant.users.get(id).map(|u| {
                let mut o = odata::project(&u.properties, resource, select.as_deref());
                o.insert("id".into(), json!(u.id));
                (o, u.deleted_at.is_some() || u.visible_from > now)
            }),
            ObjectKind::Group => tenant.groups.get(id).map(|g| {
                let mut o = odata::project(&g.properties, resource, select.as_deref());
                o.insert("id".into(), json!(g.id));
                (o, g.deleted_at.is_some() || g.visible_from > now)
            }),
        }
    };
    let mut out = Vec::new();
    if cursor.from == 0 {
        let ids: Vec<String> = match kind {
            ObjectKind::User => tenant.users.keys().cloned().collect(),
            ObjectKind::Group => tenant.groups.keys().cloned().collect(),
        };
        for id in ids.iter().filter(|i| in_scope(i)) {
            if let Some((mut o, hidden)) = object(id) {
                if hidden {
                    continue;
                }
                if with_members && let Some(g) = tenant.groups.get(id) {
                    let refs: Vec<Value> = g
                        .members
                        .iter()
                        .map(|m| member_ref(tenant, m, false))
                        .collect();
                    o.insert("members@delta".into(), Value::Array(refs));
                }
                if with_manager && let Some(manager) = super::manager::manager_of(tenant, id, now) {
                    o.insert(
                        "manager@delta".into(),
                        super::manager::delta_ref(manager, true),
                    );
                }
                out.push(Value::Object(o));
            }
        }
        return out;
    }
    // Changes in (from, to], latest state per object, in order of last change.
    let mut order: Vec<String> = Vec::new();
    let mut member_changes: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    let mut object_changed: BTreeMap<String, bool> = BTreeMap::new();
    let mut manager_changes: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for c in tenant
        .changes
        .iter()
        .filter(|c| c.kind == kind && c.seq > cursor.from && c.seq <= cursor.to)
    {
        if !in_scope(&c.id) {
            continue;
        }
        order.retain(|i| *i != c.id);
        order.push(c.id.clone());
        match &c.member {
            Some((m, assigned)) if kind == ObjectKind::User => {
                manager_changes.insert(c.id.clone(), (m.clone(), *assigned));
            }
            Some((m, added)) => {
                member_changes
                    .entry(c.id.clone())
                    .or_default()
                    .insert(m.clone(), *added);
            }
            None => {
                object_changed.insert(c.id.clone(), true);
            }
        }
    }
    for id in order {
        match object(&id) {
            None => out.push(json!({"id": id, "@removed": {"reason": "deleted"}})),
            Some((_, true))
                if tenant
                    .users
                    .get(&id)
                    .is_some_and(|u| u.deleted_at.is_some())
                    || tenant
                        .groups
                        .get(&id)
                        .is_some_and(|g| g.deleted_at.is_some()) =>
            {
                out.push(json!({"id": id, "@removed": {"reason": "changed"}}));
            }
            Some((_, true)) => {}
            Some((mut o, false)) => {
                if with_members && let Some(changes) = member_changes.get(&id) {
                    let refs: Vec<Value> = changes
                        .iter()
                        .map(|(m, added)| member_ref(tenant, m, !added))
                        .collect();
                    o.insert("members@delta".into(), Value::Array(refs));
                } else if with_manager && let Some((manager, assigned)) = manager_changes.get(&id) {
                    o.insert(
                        "manager@delta".into(),
                        super::manager::delta_ref(manager, *assigned),
                    );
                } else if !object_changed.contains_key(&id) {
                    // Only membership changed and members are not tracked.
                    continue;
                }
                out.push(Value::Object(o));
            }
        }
    }
    out
}
