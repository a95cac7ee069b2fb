//! The `directory` function (DESIGN §3): the company directory and its audit trail.
//!
//! - `PUT /users/{userId}` upserts a directory user (`email`, `displayName` required; `givenName`,
//!   `surname`, `jobTitle`, `department`, `state` optional). When the user is bound and an
//!   attribute changed, the change is pushed to M365 → `user_update_provision` (R-BIND-7). When its
//!   `state` changed, the engine's [`Suspension`] follows it: `disabled` blocks sign-in and revokes
//!   the sessions (binding `suspended`, `suspendedReason: directory_disabled`, `user_deprovision`),
//!   `active` re-enables the account unless its password expired (R-BIND-9); the answer carries the
//!   binding. The email of a user with a live binding cannot change (it is the UPN the tenant was
//!   routed by).
//! - `GET /users/{userId}` shows the user (never the sealed password: only whether one is set).
//! - `PUT /groups/{groupId}` upserts a directory group (`name`, `members`); when the group is
//!   bound and its members changed, the adds and removes are pushed to its M365 security group
//!   (R-GRP-1).
//! - `GET /groups/{groupId}` shows the group with its binding.
//! - `PUT /groups/{groupId}/binding` `{"tenantId"}` binds the group to a tenant: a security group
//!   is created or adopted (by a mail nickname derived from the group id) and the members bound
//!   to that tenant are mirrored; the others are skipped and listed with the reason (R-GRP-1).
//!   `200` when mirrored, `202` while it waits on the retry queue (e.g. a new group's
//!   replication lag), `422` with the code when it failed. `GET /groups/{groupId}/binding` shows
//!   the binding state.
//! - `GET /events?userId=|tenantId=|type=` (exactly one) with `since` (RFC 3339), `cursor`,
//!   `limit`: events newest first (R-AUD-1).
//! - `GET /tenants/{tenantId}/failures?cursor=&limit=`: failures with Graph's request id.
//!
//! Every route validates its input first and answers a 4xx with a code and a message, writing
//! nothing (R-SAFE-1): names holding control or bidirectional-override characters are 400
//! `invalid_name` (`m365_engine::policy::name`); listing cursors are opaque, signed with the
//! deployment's cursor key and bound to their listing and filter, so a forged, altered or
//! foreign one is 400 `invalid_cursor` (`m365_engine::policy::cursor`).
//! `GET /users/{userId}/binding` is served by the `bind` function.

// Handlers short-circuit with the finished 4xx response as their error (built at most once per
// request), so `Result<_, Response>` is the natural shape here.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::Error;
use m365_engine::error::{Entity, FieldProblem, InvalidInput};
use m365_engine::model::{
    BindingState, DEFAULT_PAGE_LIMIT, DirectoryUser, Email, Event, EventKind, Failure, Group,
    GroupBinding, GroupId, PageRequest, TenantId, UserId, UserState,
};
use m365_engine::policy::cursor::CursorKey;
use m365_engine::ports::{
    BindingStore, Clock, EventFilter, EventQuery, EventStore, FailureStore, GroupStore, UserStore,
};
use m365_engine::usecase::group_sync::GroupOutcome;
use m365_engine::usecase::suspend::{Suspension, UserSync, sync_needed};
use m365_engine::usecase::update::{UpdateAttributes, attributes_changed};
use m365_lambda::api;
use m365_lambda::provision::{self, BindingView, Provisioning};
use serde::{Deserialize, Serialize};

/// Most members a group may list in one request.
pub const MAX_GROUP_MEMBERS: usize = 1_000;
/// Largest page a listing answers.
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutUser {
    email: String,
    display_name: String,
    given_name: Option<String>,
    surname: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    state: Option<UserState>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

/// A directory user as the API shows it (no password material, ever).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    /// Caller-chosen id.
    pub user_id: String,
    /// Email (the UPN in M365).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// Given name.
    pub given_name: Option<String>,
    /// Surname.
    pub surname: Option<String>,
    /// Job title.
    pub job_title: Option<String>,
    /// Department.
    pub department: Option<String>,
    /// `active` or `disabled`.
    pub state: UserState,
    /// Whether a directory password is set.
    pub password_set: bool,
    /// When it was last set.
    pub password_changed_at: Option<DateTime<Utc>>,
    /// Store version.
    pub version: u64,
}

impl From<&DirectoryUser> for UserView {
    fn from(u: &DirectoryUser) -> Self {
        Self {
            user_id: u.id.to_string(),
            email: u.email.to_string(),
            display_name: u.display_name.clone(),
            given_name: u.given_name.clone(),
            surname: u.surname.clone(),
            job_title: u.job_title.clone(),
            department: u.department.clone(),
            state: u.state,
            password_set: u.password.is_some(),
            password_changed_at: u.password_changed_at,
            version: u.version,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserUpserted {
    user: UserView,
    /// What happened in M365: `not_bound`, `unchanged`, or the push's outcome name.
    sync: &'static str,
    /// The binding after a state change was followed in M365 (R-BIND-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    binding: Option<BindingView>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PutGroupBinding {
    tenant_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupView {
    group_id: String,
    name: String,
    members: Vec<String>,
    version: u64,
    /// The binding to a tenant's security group, once bound.
    binding: Option<GroupBindingView>,
}

impl From<&Group> for GroupView {
    fn from(g: &Group) -> Self {
        Self {
            group_id: g.id.to_string(),
            name: g.name.clone(),
            members: g.members.iter().map(ToString::to_string).collect(),
            version: g.version,
            binding: g.binding.as_ref().map(|b| GroupBindingView::of(&g.id, b)),
        }
    }
}

/// A group binding as the API shows it: the stored binding (camelCase) with the group's id.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupBindingView {
    group_id: String,
    #[serde(flatten)]
    binding: GroupBinding,
}

impl GroupBindingView {
    fn of(id: &GroupId, binding: &GroupBinding) -> Self {
        Self {
            group_id: id.to_string(),
            binding: binding.clone(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupUpserted {
    group: GroupView,
    /// What happened in M365: `not_bound`, `unchanged`, or the push's outcome name.
    sync: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupBound {
    /// `done` or `deferred`.
    outcome: &'static str,
    /// `created`, `adopted` or `mirrored` when done.
    change: Option<&'static str>,
    added: usize,
    removed: usize,
    binding: Option<GroupBindingView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Events<'a> {
    events: &'a [Event],
    next_cursor: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failures<'a> {
    failures: &'a [Failure],
    next_cursor: Option<String>,
}

/// Handles one API Gateway request; every outcome is a response.
///
/// # Errors
/// Never: the `Result` is what `lambda_http::service_fn` expects.
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<C: Clock + Clone>(
    deps: &Provisioning<C>,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    // Graph calls stop before the invocation's deadline; cut-off work is re-queued (R-OPS-2).
    let deps = &deps.for_request(&request);
    let segments = provision::segments(&request);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result = match (request.method(), path.as_slice()) {
        (&Method::PUT, ["users", id]) => put_user(deps, &request, id).await,
        (&Method::GET, ["users", id]) => get_user(deps, id).await,
        (&Method::PUT, ["groups", id]) => put_group(deps, &request, id).await,
        (&Method::GET, ["groups", id]) => get_group(deps, id).await,
        (&Method::PUT, ["groups", id, "binding"]) => bind_group(deps, &request, id).await,
        (&Method::GET, ["groups", id, "binding"]) => get_group_binding(deps, id).await,
        (&Method::GET, ["events"]) => events(deps, &request).await,
        (&Method::GET, ["tenants", id, "failures"]) => failures(deps, &request, id).await,
        _ => Ok(provision::no_route("directory")),
    };
    let response = result.unwrap_or_else(|e| e);
    tracing::info!(
        http.status = response.status().as_u16(),
        "directory request handled"
    );
    Ok(response)
}

type Answer = Result<Response<Body>, Response<Body>>;

fn engine(e: impl Into<Error>) -> Response<Body> {
    api::engine_error(&e.into())
}

fn field(field: &'static str, problem: FieldProblem) -> Response<Body> {
    engine(InvalidInput::Field { field, problem })
}

fn blank_to_none(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

async fn put_user<C: Clock>(deps: &Provisioning<C>, request: &Request, raw: &str) -> Answer {
    let id = provision::user_id(raw)?;
    let body: PutUser = provision::json_body(request)?;
    let email = Email::parse(body.email.trim()).map_err(engine)?;
    let mut user = DirectoryUser::new(id.clone(), email, body.display_name.trim());
    user.given_name = blank_to_none(body.given_name);
    user.surname = blank_to_none(body.surname);
    user.job_title = blank_to_none(body.job_title);
    user.department = blank_to_none(body.department);
    user.state = body.state.unwrap_or_default();
    user.validate().map_err(engine)?;

    let users = &deps.app.users;
    let before = users.get(&id).await.map_err(engine)?;
    let binding = deps.app.bindings.get(&id).await.map_err(engine)?;
    let (stored, status) = match &before {
        None => (
            users.create(&user).await.map_err(engine)?,
            StatusCode::CREATED,
        ),
        Some(old) => {
            let live = binding.as_ref().is_some_and(|b| {
                !matches!(
                    b.state,
                    BindingState::Unselected | BindingState::DeletedInM365
                )
            });
            if live && old.email != user.email {
                return Err(api::error(
                    StatusCode::CONFLICT,
                    "email_change_while_bound",
                    "the email of a bound user is its M365 user principal name and cannot change; \
                     unbind first",
                ));
            }
            if !attributes_changed(old, &user) && old.email == user.email && old.state == user.state
            {
                // Nothing to store; M365 may still lag behind the state (a run cut short).
                (old.clone(), StatusCode::OK)
            } else {
                user.password = old.password.clone();
                user.password_changed_at = old.password_changed_at;
                (
                    users.replace(&user, old.version).await.map_err(engine)?,
                    StatusCode::OK,
                )
            }
        }
    };
    let now = deps.clock.now();
    let needed = sync_needed(
        before.as_ref(),
        &stored,
        binding.as_ref(),
        &deps.password_policy,
        now,
    );
    let unchanged = before
        .as_ref()
        .is_some_and(|old| old.version == stored.version);
    let mut shown = None;
    let sync = match (&binding, needed) {
        (_, UserSync::Nothing) if unchanged => "unchanged",
        (None, _) => "not_bound",
        (Some(_), UserSync::Nothing) => "unchanged",
        (Some(_), UserSync::State) => {
            let suspension = Suspension {
                fx: deps.effects(),
                users,
                directory: &deps.directory,
                password_policy: &deps.password_policy,
            };
            // A failed M365 write is on the binding and the retry queue. An error before anything
            // was queued is the caller's to see: the user is stored, and sending the same request
            // again catches the binding up (the state is compared with the binding, not with the
            // stored user).
            // Boxed: the use case's future is deep.
            let outcome = Box::pin(suspension.apply(&id)).await.map_err(engine)?;
            shown = outcome.binding().map(BindingView::from);
            outcome.as_str()
        }
        (Some(_), UserSync::Attributes) => {
            let update = UpdateAttributes {
                fx: deps.effects(),
                users,
                directory: &deps.directory,
            };
            // The user is stored either way; a failed push is on the binding and the retry queue.
            match update.push(&id).await {
                Ok(outcome) => outcome.as_str(),
                Err(e) => {
                    tracing::warn!(error.code = e.code(), "attribute push not started");
                    "not_pushed"
                }
            }
        }
    };
    Ok(api::json(
        status,
        &UserUpserted {
            user: UserView::from(&stored),
            sync,
            binding: shown,
        },
    ))
}

async fn get_user<C: Clock>(deps: &Provisioning<C>, raw: &str) -> Answer {
    let id = provision::user_id(raw)?;
    match deps.app.users.get(&id).await.map_err(engine)? {
        Some(u) => Ok(api::json(StatusCode::OK, &UserView::from(&u))),
        None => Err(engine(Error::not_found(Entity::User, id))),
    }
}

async fn put_group<C: Clock>(deps: &Provisioning<C>, request: &Request, raw: &str) -> Answer {
    let id = GroupId::parse(raw)
        .map_err(|e| api::error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()))?;
    let body: PutGroup = provision::json_body(request)?;
    if body.members.len() > MAX_GROUP_MEMBERS {
        return Err(field(
            "members",
            FieldProblem::TooLong {
                max: MAX_GROUP_MEMBERS,
            },
        ));
    }
    let members = body
        .members
        .iter()
        .map(|m| UserId::parse(m.as_str()))
        .collect::<Result<BTreeSet<_>, _>>()
        .map_err(engine)?;
    let mut group = Group::new(id.clone(), body.name.trim(), members);
    group.validate().map_err(engine)?;
    let groups = &deps.app.groups;
    let mut members_changed = false;
    let (stored, status) = match groups.get(&id).await.map_err(engine)? {
        None => (
            groups.create(&group).await.map_err(engine)?,
            StatusCode::CREATED,
        ),
        Some(old) => {
            members_changed = old.members != group.members;
            group.version = old.version;
            // The binding is the sync's, not the caller's: it survives the upsert.
            group.binding.clone_from(&old.binding);
            if old.name == group.name && old.members == group.members {
                (old, StatusCode::OK)
            } else {
                (
                    groups
                        .replace(&group, group.version)
                        .await
                        .map_err(engine)?,
                    StatusCode::OK,
                )
            }
        }
    };
    let (stored, sync) = if stored.binding.is_none() {
        (stored, "not_bound")
    } else if !members_changed {
        (stored, "unchanged")
    } else {
        // The group is stored either way; a failed push is on the binding and the retry queue.
        match group_sync(deps).push(&id).await {
            Ok(outcome) => {
                let name = outcome.as_str();
                (outcome.group().cloned().unwrap_or(stored), name)
            }
            Err(e) => {
                tracing::warn!(error.code = e.code(), "group membership push not started");
                (stored, "not_pushed")
            }
        }
    };
    Ok(api::json(
        status,
        &GroupUpserted {
            group: GroupView::from(&stored),
            sync,
        },
    ))
}

fn group_sync<C: Clock>(deps: &Provisioning<C>) -> m365_lambda::provision::DeployedSync<'_, C> {
    deps.group_sync()
}

fn group_id(raw: &str) -> Result<GroupId, Response<Body>> {
    GroupId::parse(raw).map_err(|e| api::error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()))
}

async fn get_group<C: Clock>(deps: &Provisioning<C>, raw: &str) -> Answer {
    let id = group_id(raw)?;
    match deps.app.groups.get(&id).await.map_err(engine)? {
        Some(g) => Ok(api::json(StatusCode::OK, &GroupView::from(&g))),
        None => Err(engine(Error::not_found(Entity::Group, id))),
    }
}

async fn get_group_binding<C: Clock>(deps: &Provisioning<C>, raw: &str) -> Answer {
    let id = group_id(raw)?;
    let group = deps
        .app
        .groups
        .get(&id)
        .await
        .map_err(engine)?
        .ok_or_else(|| engine(Error::not_found(Entity::Group, &id)))?;
    match &group.binding {
        Some(b) => Ok(api::json(StatusCode::OK, &GroupBindingView::of(&id, b))),
        None => Err(engine(Error::not_found(Entity::Binding, &id))),
    }
}

async fn bind_group<C: Clock>(deps: &Provisioning<C>, request: &Request, raw: &str) -> Answer {
    let id = group_id(raw)?;
    let body: PutGroupBinding = provision::json_body(request)?;
    let tenant = TenantId::parse(body.tenant_id.trim()).map_err(engine)?;
    let outcome = Box::pin(group_sync(deps).bind(&id, &tenant))
        .await
        .map_err(engine)?;
    let view = |g: &Group| g.binding.as_ref().map(|b| GroupBindingView::of(&g.id, b));
    let (status, change, added, removed) = match &outcome {
        GroupOutcome::Synced {
            change,
            added,
            removed,
            ..
        } => (StatusCode::OK, Some(change.as_str()), *added, *removed),
        GroupOutcome::Deferred { .. } => (StatusCode::ACCEPTED, None, 0, 0),
        GroupOutcome::Failed { code, group, .. } => {
            let message = group
                .binding
                .as_ref()
                .and_then(|b| b.last_error.as_ref())
                .map_or("the group binding failed", |e| e.message.as_str());
            return Err(api::error(StatusCode::UNPROCESSABLE_ENTITY, code, message));
        }
        // `bind` answers neither of these; shown as they are if it ever does.
        GroupOutcome::NotBound { .. } | GroupOutcome::Superseded => (StatusCode::OK, None, 0, 0),
    };
    Ok(api::json(
        status,
        &GroupBound {
            outcome: outcome.as_str(),
            change,
            added,
            removed,
            binding: outcome.group().and_then(view),
        },
    ))
}

/// The page a listing request asks for: `limit` checked, and `cursor` opened with the cursor key
/// for `listing` (the listing and its filter; a cursor of another one is `invalid_cursor`).
/// Returns the key too, to sign the next cursor with.
async fn page<C: Clock>(
    deps: &Provisioning<C>,
    request: &Request,
    listing: &str,
) -> Result<(PageRequest, CursorKey), Response<Body>> {
    let query = request.query_string_parameters();
    let limit = match query.first("limit").map(str::parse::<u32>) {
        None => DEFAULT_PAGE_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            return Err(field(
                "limit",
                FieldProblem::TooLong {
                    max: MAX_LIMIT as usize,
                },
            ));
        }
    };
    let key = deps.app.cursor_key.key().await.map_err(engine)?;
    let page = key
        .page_request(listing, query.first("cursor"), limit)
        .map_err(engine)?;
    Ok((page, key))
}

async fn events<C: Clock>(deps: &Provisioning<C>, request: &Request) -> Answer {
    let query = request.query_string_parameters();
    let filters = [
        query
            .first("userId")
            .map(|v| UserId::parse(v).map(EventFilter::User).map_err(engine)),
        query
            .first("tenantId")
            .map(|v| TenantId::parse(v).map(EventFilter::Tenant).map_err(engine)),
        query.first("type").map(|v| {
            v.parse::<EventKind>()
                .map(EventFilter::Kind)
                .map_err(|e| engine(InvalidInput::from(e)))
        }),
    ];
    let mut given = filters.into_iter().flatten();
    let filter = match (given.next(), given.next()) {
        (Some(f), None) => f?,
        _ => {
            return Err(api::error(
                StatusCode::BAD_REQUEST,
                "invalid_filter",
                "give exactly one of userId, tenantId or type",
            ));
        }
    };
    let since = match query.first("since") {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    api::error(
                        StatusCode::BAD_REQUEST,
                        "invalid_since",
                        "since must be an RFC 3339 time such as 2026-11-27T15:00:00Z",
                    )
                })?
                .with_timezone(&Utc),
        ),
    };
    let listing = match &filter {
        EventFilter::User(u) => format!("events/user/{u}"),
        EventFilter::Tenant(t) => format!("events/tenant/{t}"),
        EventFilter::Kind(k) => format!("events/type/{}", k.as_str()),
    };
    let listing = match since {
        Some(s) => format!(
            "{listing}/since/{}",
            s.timestamp_nanos_opt().unwrap_or_default()
        ),
        None => listing,
    };
    let (page, key) = page(deps, request, &listing).await?;
    let found = deps
        .app
        .events
        .query(&EventQuery {
            filter,
            since,
            page,
        })
        .await
        .map_err(engine)?;
    Ok(api::json(
        StatusCode::OK,
        &Events {
            events: &found.items,
            next_cursor: key
                .next_cursor(&listing, found.next.as_ref())
                .map_err(engine)?,
        },
    ))
}

async fn failures<C: Clock>(deps: &Provisioning<C>, request: &Request, raw: &str) -> Answer {
    let tenant = TenantId::parse(raw).map_err(engine)?;
    let listing = format!("failures/{tenant}");
    let (page, key) = page(deps, request, &listing).await?;
    let found = deps
        .app
        .failures
        .list_by_tenant(&tenant, &page)
        .await
        .map_err(engine)?;
    Ok(api::json(
        StatusCode::OK,
        &Failures {
            failures: &found.items,
            next_cursor: key
                .next_cursor(&listing, found.next.as_ref())
                .map_err(engine)?,
        },
    ))
}
