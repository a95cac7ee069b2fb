//! The `directory` function (DESIGN §3): the company directory and its audit trail. [`handle`]
//! decodes a request, makes one call into the engine (`m365_engine::usecase::directory`, where
//! the rules are) and encodes the answer ([`views`]).
//!
//! - `PUT /users/{userId}` ([`UpsertUser`]): a bound user's changed attributes are pushed
//!   (R-BIND-7); a changed `state` is followed — `disabled` blocks sign-in and revokes sessions,
//!   `active` re-enables the account unless its password expired — and the answer carries the
//!   binding (R-BIND-9); a live binding's email cannot change: 409 `email_change_while_bound`.
//!   `GET /users/{userId}` shows the user (only whether a password is set, never the password).
//! - `PUT /groups/{groupId}` ([`UpsertGroup`]): a bound group whose members changed is mirrored
//!   to its security group (R-GRP-1). `GET /groups/{groupId}` shows it with its binding.
//! - `PUT /groups/{groupId}/binding` `{"tenantId"}` ([`SyncGroup::bind`]): `200` mirrored, `202`
//!   waiting on the retry queue, `422` with the code when it failed; `GET` shows the binding.
//! - `GET /events?userId=|tenantId=|type=` (exactly one), `since`, `cursor`, `limit`, and
//!   `GET /tenants/{tenantId}/failures` ([`AuditTrail`], R-AUD-1).
//! - `GET`/`PUT /tenants/{tenantId}/settings` ([`Licenses`], R-LIC-1): usage location, default
//!   licences, `removeLicensesOnUnbind`; SKUs and plans checked against the tenant's
//!   `subscribedSkus` (`400 unknown_sku` / `unknown_service_plan` listing the known names). A
//!   group binding's `licenses` are checked the same way before anything is written, and a
//!   group whose members changed has their licences brought in line.
//!
//! Bad input is a 4xx with a code and a message, nothing written (R-SAFE-1); cursors are signed
//! and bound to their listing (`invalid_cursor`). `main` bounds the ports by the request's
//! deadline (R-OPS-2). `GET /users/{userId}/binding` is served by the `bind` function.

// Handlers short-circuit with the finished 4xx response as their error (built at most once per
// request), so `Result<_, Response>` is the natural shape here.
#![allow(clippy::result_large_err)]

mod views;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::Error;
use m365_engine::error::Entity;
use m365_engine::model::{Group, GroupId, TenantId};
use m365_engine::ports::{GroupStore, Ports, UserStore};
use m365_engine::usecase::directory::{AuditTrail, PageAsk, UpsertGroup, UpsertUser};
use m365_engine::usecase::group_sync::SyncGroup;
use m365_engine::usecase::licenses::{Licenses, SettingsInput};
use m365_lambda::{api, provision};

pub use m365_engine::usecase::directory::{MAX_GROUP_MEMBERS, MAX_LIMIT};
pub use views::UserView;

/// Serves the directory's routes (users, groups, group bindings, events, failures) on `ports`;
/// any other route is a `404 route_not_found`.
///
/// # Errors
/// Never (see [`provision::Handled`]).
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(ports: &P, request: Request) -> provision::Handled {
    let answer = match (request.method(), provision::path(&request).as_slice()) {
        (&Method::PUT, ["users", id]) => put_user(ports, &request, id).await,
        (&Method::GET, ["users", id]) => get_user(ports, id).await,
        (&Method::PUT, ["groups", id]) => put_group(ports, &request, id).await,
        (&Method::GET, ["groups", id]) => get_group(ports, id).await.map(|g| views::group(&g)),
        (&Method::PUT, ["groups", id, "binding"]) => bind_group(ports, &request, id).await,
        (&Method::GET, ["groups", id, "binding"]) => get_group_binding(ports, id).await,
        (&Method::GET, ["events"]) => events(ports, &request).await,
        (&Method::GET, ["tenants", id, "failures"]) => failures(ports, &request, id).await,
        (&Method::GET, ["tenants", id, "settings"]) => get_settings(ports, id).await,
        (&Method::PUT, ["tenants", id, "settings"]) => put_settings(ports, &request, id).await,
        _ => Ok(api::no_route("directory")),
    };
    provision::handled("directory", answer)
}

use provision::Answer;

fn engine(e: impl Into<Error>) -> Response<Body> {
    api::engine_error(&e.into())
}

fn group_id(raw: &str) -> Answer<GroupId> {
    GroupId::parse(raw).map_err(|e| api::error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()))
}

fn page(request: &Request) -> PageAsk<'_> {
    let query = request.query_string_parameters_ref();
    PageAsk {
        cursor: query.and_then(|q| q.first("cursor")),
        limit: query.and_then(|q| q.first("limit")),
    }
}

async fn put_user<P: Ports>(ports: &P, request: &Request, raw: &str) -> Answer {
    let id = provision::user_id(raw)?;
    let body: views::PutUser = provision::json_body(request)?;
    let saved = UpsertUser::new(ports).upsert(&id, body.into()).await;
    Ok(views::user_upserted(&saved.map_err(engine)?))
}

async fn get_user<P: Ports>(ports: &P, raw: &str) -> Answer {
    let id = provision::user_id(raw)?;
    match ports.users().get(&id).await.map_err(engine)? {
        Some(u) => Ok(api::json(StatusCode::OK, &UserView::from(&u))),
        None => Err(engine(Error::not_found(Entity::User, id))),
    }
}

async fn put_group<P: Ports>(ports: &P, request: &Request, raw: &str) -> Answer {
    let id = group_id(raw)?;
    let body: views::PutGroup = provision::json_body(request)?;
    let before = ports.groups().get(&id).await.map_err(engine)?;
    let saved = UpsertGroup::new(ports)
        .upsert(&id, body.into())
        .await
        .map_err(engine)?;
    // Members who joined or left a bound group get their licences brought in line (R-LIC-1).
    if let Some(before) = before.filter(|g| g.binding.is_some()) {
        let moved = before.members.symmetric_difference(&saved.group.members);
        Licenses::new(ports).follow_members(moved).await;
    }
    Ok(views::group_upserted(&saved))
}

async fn get_settings<P: Ports>(ports: &P, raw: &str) -> Answer {
    let tenant = TenantId::parse(raw).map_err(engine)?;
    let settings = Licenses::new(ports).settings(&tenant).await;
    Ok(views::settings(&settings.map_err(engine)?))
}

async fn put_settings<P: Ports>(ports: &P, request: &Request, raw: &str) -> Answer {
    let tenant = TenantId::parse(raw).map_err(engine)?;
    let body: SettingsInput = provision::json_body(request)?;
    let settings = Licenses::new(ports).put_settings(&tenant, body).await;
    Ok(views::settings(&settings.map_err(engine)?))
}

async fn get_group<P: Ports>(ports: &P, raw: &str) -> Answer<Group> {
    let id = group_id(raw)?;
    let found = ports.groups().get(&id).await.map_err(engine)?;
    found.ok_or_else(|| engine(Error::not_found(Entity::Group, id)))
}

async fn get_group_binding<P: Ports>(ports: &P, raw: &str) -> Answer {
    let group = get_group(ports, raw).await?;
    views::group_binding(&group).ok_or_else(|| engine(Error::not_found(Entity::Binding, &group.id)))
}

async fn bind_group<P: Ports>(ports: &P, request: &Request, raw: &str) -> Answer {
    let id = group_id(raw)?;
    let body: views::PutGroupBinding = provision::json_body(request)?;
    let tenant = TenantId::parse(body.tenant_id.trim()).map_err(engine)?;
    let licenses = Licenses::new(ports);
    // Checked before the group is bound: bad licences write nothing (R-LIC-1, R-SAFE-1).
    let resolved = match &body.licenses {
        Some(asked) => Some(
            licenses
                .check_group_licenses(&tenant, asked)
                .await
                .map_err(engine)?,
        ),
        None => None,
    };
    // Boxed: the use case's future is deep.
    let outcome = Box::pin(SyncGroup::new(ports).bind(&id, &tenant))
        .await
        .map_err(engine)?;
    if let (Some(resolved), Some(group)) = (resolved, outcome.group()) {
        let set = Box::pin(licenses.set_group_licenses(group, &tenant, resolved));
        set.await.map_err(engine)?;
    }
    Ok(views::group_bound(&outcome))
}

async fn events<P: Ports>(ports: &P, request: &Request) -> Answer {
    let (filter, since) = views::event_filter(&request.query_string_parameters())?;
    let listed = AuditTrail::new(ports)
        .events(filter, since, page(request))
        .await;
    Ok(views::events(&listed.map_err(engine)?))
}

async fn failures<P: Ports>(ports: &P, request: &Request, raw: &str) -> Answer {
    let tenant = TenantId::parse(raw).map_err(engine)?;
    let listed = AuditTrail::new(ports)
        .failures(&tenant, page(request))
        .await;
    Ok(views::failures(&listed.map_err(engine)?))
}
