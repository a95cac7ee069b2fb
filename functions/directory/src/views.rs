//! The wire shapes of the directory routes: request bodies (unknown fields refused, R-SAFE-1) and
//! the `GET /events` query decoded into the engine's terms, and the answers encoded from the use
//! cases' outcomes (never a sealed password: only whether one is set).

use chrono::{DateTime, Utc};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use m365_engine::Error;
use m365_engine::error::InvalidInput;
use m365_engine::model::{
    DirectoryUser, Event, EventKind, Failure, Group, GroupBinding, GroupId, TenantId,
    UserAttributes, UserId, UserState,
};
use m365_engine::ports::EventFilter;
use m365_engine::usecase::directory::{GroupDraft, GroupUpserted, Listed, UserDraft, UserUpserted};
use m365_engine::usecase::group_sync::GroupOutcome;
use m365_lambda::api;
use m365_lambda::api::BindingView;
use serde::{Deserialize, Serialize};

/// `PUT /users/{userId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PutUser {
    email: String,
    display_name: String,
    given_name: Option<String>,
    surname: Option<String>,
    job_title: Option<String>,
    department: Option<String>,
    state: Option<UserState>,
    // R-ATTR-1 (listed here: `deny_unknown_fields` does not combine with `flatten`).
    employee_id: Option<String>,
    office_location: Option<String>,
    mobile_phone: Option<String>,
    business_phones: Option<Vec<String>>,
    company_name: Option<String>,
    usage_location: Option<String>,
    city: Option<String>,
    country: Option<String>,
    /// R-ATTR-1: the manager's directory user id.
    manager_id: Option<String>,
    /// R-NOT-1: where the welcome email goes instead of the M365 address.
    notification_email: Option<String>,
}

impl From<PutUser> for UserDraft {
    fn from(b: PutUser) -> Self {
        Self {
            email: b.email,
            display_name: b.display_name,
            given_name: b.given_name,
            surname: b.surname,
            job_title: b.job_title,
            department: b.department,
            state: b.state,
            attributes: UserAttributes {
                employee_id: b.employee_id,
                office_location: b.office_location,
                mobile_phone: b.mobile_phone,
                business_phones: b.business_phones.unwrap_or_default(),
                company_name: b.company_name,
                usage_location: b.usage_location,
                city: b.city,
                country: b.country,
            },
            manager_id: b.manager_id,
            notification_email: b.notification_email,
        }
    }
}

/// `PUT /groups/{groupId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PutGroup {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

impl From<PutGroup> for GroupDraft {
    fn from(b: PutGroup) -> Self {
        Self {
            name: b.name,
            members: b.members,
        }
    }
}

/// `PUT /groups/{groupId}/binding`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PutGroupBinding {
    pub(crate) tenant_id: String,
    /// The group's licences for its bound members (R-LIC-1); absent keeps those set before,
    /// `[]` removes them.
    #[serde(default)]
    pub(crate) licenses: Option<Vec<m365_engine::model::LicenseRequest>>,
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
    /// `employeeId`, `officeLocation`, `mobilePhone`, `businessPhones`, `companyName`,
    /// `usageLocation`, `city`, `country` (R-ATTR-1; unset ones are `null`, phones `[]`).
    #[serde(flatten)]
    pub attributes: UserAttributes,
    /// `active` or `disabled`.
    pub state: UserState,
    /// Whether a directory password is set.
    pub password_set: bool,
    /// When it was last set.
    pub password_changed_at: Option<DateTime<Utc>>,
    /// Store version.
    pub version: u64,
    /// The manager's directory user id (R-ATTR-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manager_id: Option<String>,
    /// Where the welcome email goes instead of the M365 address (R-NOT-1); `null` when unset.
    pub notification_email: Option<String>,
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
            attributes: u.attributes.clone(),
            state: u.state,
            password_set: u.password.is_some(),
            password_changed_at: u.password_changed_at,
            version: u.version,
            manager_id: u.manager_id.as_ref().map(ToString::to_string),
            notification_email: u.notification_email.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserUpsertedView {
    user: UserView,
    /// What happened in M365: `not_bound`, `unchanged`, `not_pushed`, or the push's outcome name.
    sync: &'static str,
    /// The binding after a state change was followed in M365 (R-BIND-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    binding: Option<BindingView>,
}

fn saved(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// `201` for a new user, `200` otherwise: the user, its sync and, after a state change, its
/// binding.
pub(crate) fn user_upserted(saved_user: &UserUpserted) -> Response<Body> {
    let view = UserUpsertedView {
        user: UserView::from(&saved_user.user),
        sync: saved_user.sync.as_str(),
        binding: saved_user.sync.binding().map(BindingView::from),
    };
    api::json(saved(saved_user.created), &view)
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

/// `GET /groups/{groupId}`.
pub(crate) fn group(group: &Group) -> Response<Body> {
    api::json(StatusCode::OK, &GroupView::from(group))
}

/// `GET /groups/{groupId}/binding`, when the group is bound.
pub(crate) fn group_binding(group: &Group) -> Option<Response<Body>> {
    let binding = group.binding.as_ref()?;
    Some(api::json(
        StatusCode::OK,
        &GroupBindingView::of(&group.id, binding),
    ))
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
struct GroupUpsertedView {
    group: GroupView,
    /// What happened in M365: `not_bound`, `unchanged`, `not_pushed`, or the push's outcome name.
    sync: &'static str,
}

/// `201` for a new group, `200` otherwise: the group (with its binding) and its sync.
pub(crate) fn group_upserted(saved_group: &GroupUpserted) -> Response<Body> {
    let view = GroupUpsertedView {
        group: GroupView::from(&saved_group.group),
        sync: saved_group.sync.as_str(),
    };
    api::json(saved(saved_group.created), &view)
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

/// The answer of a group bind (R-GRP-1): `200` when mirrored, `202` while it waits on the retry
/// queue, `422` with the code when it failed.
pub(crate) fn group_bound(outcome: &GroupOutcome) -> Response<Body> {
    let (status, change, added, removed) = match outcome {
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
            return api::error(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        }
        // `bind` answers neither of these; shown as they are if it ever does.
        GroupOutcome::NotBound { .. } | GroupOutcome::Superseded => (StatusCode::OK, None, 0, 0),
    };
    let binding = outcome
        .group()
        .and_then(|g| g.binding.as_ref().map(|b| GroupBindingView::of(&g.id, b)));
    let view = GroupBound {
        outcome: outcome.as_str(),
        change,
        added,
        removed,
        binding,
    };
    api::json(status, &view)
}

/// The `GET /events` filter — exactly one of `userId`, `tenantId`, `type` — and `since`
/// (RFC 3339), as the engine takes them; a 400 with its code otherwise.
pub(crate) fn event_filter(
    query: &lambda_http::aws_lambda_events::query_map::QueryMap,
) -> Result<(EventFilter, Option<DateTime<Utc>>), Response<Body>> {
    let engine = |e: Error| api::engine_error(&e);
    let filters = [
        query
            .first("userId")
            .map(|v| UserId::parse(v).map(EventFilter::User).map_err(Error::from)),
        query.first("tenantId").map(|v| {
            TenantId::parse(v)
                .map(EventFilter::Tenant)
                .map_err(Error::from)
        }),
        query.first("type").map(|v| {
            v.parse::<EventKind>()
                .map(EventFilter::Kind)
                .map_err(|e| Error::from(InvalidInput::from(e)))
        }),
    ];
    let mut given = filters.into_iter().flatten();
    let filter = match (given.next(), given.next()) {
        (Some(f), None) => f.map_err(engine)?,
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
    Ok((filter, since))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Events<'a> {
    events: &'a [Event],
    next_cursor: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failures<'a> {
    failures: &'a [Failure],
    next_cursor: Option<&'a str>,
}

/// `{"events", "nextCursor"}`.
pub(crate) fn events(listed: &Listed<Event>) -> Response<Body> {
    let view = Events {
        events: &listed.items,
        next_cursor: listed.next_cursor.as_deref(),
    };
    api::json(StatusCode::OK, &view)
}

/// `{"failures", "nextCursor"}`.
pub(crate) fn failures(listed: &Listed<Failure>) -> Response<Body> {
    let view = Failures {
        failures: &listed.items,
        next_cursor: listed.next_cursor.as_deref(),
    };
    api::json(StatusCode::OK, &view)
}

/// A tenant's licence settings as the API shows them (R-LIC-1): names only.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsView {
    tenant_id: String,
    usage_location: Option<String>,
    licenses: Vec<m365_engine::model::LicenseRequest>,
    remove_licenses_on_unbind: bool,
}

/// `200` with the tenant's licence settings.
pub(crate) fn settings(s: &m365_engine::model::TenantSettings) -> Response<Body> {
    let view = SettingsView {
        tenant_id: s.tenant_id.to_string(),
        usage_location: s.usage_location.as_ref().map(ToString::to_string),
        licenses: s
            .licenses
            .iter()
            .map(m365_engine::model::ResolvedLicense::request)
            .collect(),
        remove_licenses_on_unbind: s.remove_licenses_on_unbind,
    };
    api::json(StatusCode::OK, &view)
}
