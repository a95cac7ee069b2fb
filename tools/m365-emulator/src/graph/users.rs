//! Users (graph-spec §3): create with the §3.2 validation order and exact messages, get by id
//! or UPN, list with the OData subset, patch (incl. `accountEnabled` and `passwordProfile`),
//! soft delete, `$count`, `revokeSignInSessions`.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::odata::{self, Resource};
use super::{Caller, base_url, is_guid, json_body, no_content, odata as odata_response, perm};
use crate::AppState;
use crate::audit::{self, AuditEvent};
use crate::error::GraphError;
use crate::state::{
    AuthenticationType, HeldAddress, ObjectKind, State as World, Tenant, User, graph_timestamp,
};

/// Raw query pairs.
pub type RawQuery = Query<Vec<(String, String)>>;

/// Whether a user is visible to reads now: not soft-deleted and past its replication lag.
#[must_use]
pub fn visible(user: &User, now: DateTime<Utc>) -> bool {
    user.deleted_at.is_none() && user.visible_from <= now
}

/// Finds a visible user by object id or UPN, as `/users/{id|upn}` addresses it.
#[must_use]
pub fn find<'a>(tenant: &'a Tenant, key: &str, now: DateTime<Utc>) -> Option<&'a User> {
    let key = key.trim();
    if is_guid(key) {
        tenant
            .users
            .get(&key.to_ascii_lowercase())
            .filter(|u| visible(u, now))
    } else {
        tenant
            .users
            .values()
            .find(|u| visible(u, now) && u.upn().eq_ignore_ascii_case(key))
    }
}

fn invalid_value(prop: &str, resource: Resource) -> GraphError {
    GraphError::bad_request(format!(
        "Invalid value specified for property '{prop}' of resource '{}'.",
        resource.directory_name()
    ))
}

fn required(prop: &str, resource: Resource) -> GraphError {
    GraphError::bad_request(format!(
        "A value is required for property '{prop}' of resource '{}'.",
        resource.directory_name()
    ))
}

/// 400 for a property the type does not define (OData's message; INF for directory APIs).
pub fn unknown_property(prop: &str, resource: Resource) -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!(
            "The property '{prop}' does not exist on type '{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
            resource.odata_type()
        ),
    )
}

/// The §3.2 duplicate-value error (`ObjectConflict` detail).
#[must_use]
pub fn conflict(prop: &str) -> GraphError {
    let message = format!("Another object with the same value for property {prop} already exists.");
    GraphError::bad_request(message.clone()).with_detail("ObjectConflict", message, prop)
}

/// mailNickname rule: ASCII, ≤ 64, none of `@ () \ [] " ; : <> , SPACE` (graph-spec §4.1, TYPES).
#[must_use]
pub fn valid_mail_nickname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii() && !c.is_ascii_control() && !"@()\\[]\";:<>, ".contains(c))
}

/// UPN syntax of graph-spec §3.1 (concept-sspr-policy).
#[must_use]
pub fn valid_upn(upn: &str) -> bool {
    let Some((local, domain)) = upn.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && upn.len() <= 113
        && local.len() <= 64
        && domain.len() <= 48
        && !local.ends_with('.')
        && !local.starts_with('.')
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "'.-_!#^~".contains(c))
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

/// Entra password policy for cloud users (graph-spec §3.7): 8–256 characters from the allowed
/// set (ASCII letters, digits, listed symbols, space), and 3 of 4 classes unless
/// `DisableStrongPassword`.
#[must_use]
pub fn password_ok(password: &str, disable_strong: bool) -> bool {
    const SYMBOLS: &str = "@#$%^&*-_!+=[]{}|\\:',.?/`~\"();<> ";
    let len = password.chars().count();
    if !(8..=256).contains(&len) {
        return false;
    }
    if !password
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || SYMBOLS.contains(c))
    {
        return false;
    }
    if disable_strong {
        return true;
    }
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| SYMBOLS.contains(c)),
    ];
    classes.iter().filter(|c| **c).count() >= 3
}

fn complexity_error() -> GraphError {
    GraphError::bad_request(
        "The specified password does not comply with password complexity requirements. Please provide a different password.",
    )
}

/// Lower-cased addresses a user holds: UPN, mail, otherMails, proxy addresses (without prefix).
#[must_use]
pub fn addresses(properties: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["userPrincipalName", "mail"] {
        if let Some(s) = properties.get(key).and_then(Value::as_str) {
            out.push(s.to_lowercase());
        }
    }
    for key in ["otherMails", "proxyAddresses"] {
        if let Some(items) = properties.get(key).and_then(Value::as_array) {
            for s in items.iter().filter_map(Value::as_str) {
                let bare = s.split_once(':').map_or(s, |(_, a)| a);
                out.push(bare.to_lowercase());
            }
        }
    }
    out
}

/// Whether `address` is taken by another active user, or still held by a deleted one.
fn address_taken(tenant: &Tenant, address: &str, except: Option<&str>, now: DateTime<Utc>) -> bool {
    let address = address.to_lowercase();
    let active = tenant.users.values().any(|u| {
        u.deleted_at.is_none()
            && Some(u.id.as_str()) != except
            && addresses(&u.properties).contains(&address)
    });
    let held = tenant.held_addresses.get(&address).is_some_and(|h| {
        h.release_at > now
            && Some(h.user_id.as_str()) != except
            && tenant
                .users
                .get(&h.user_id)
                .is_none_or(|u| u.deleted_at.is_some())
    });
    active || held
}

fn check_upn_domain(tenant: &Tenant, upn: &str) -> Result<AuthenticationType, GraphError> {
    let domain = upn.rsplit('@').next().unwrap_or_default();
    match tenant.domain(domain) {
        Some(d) if d.is_verified => Ok(d.authentication_type),
        _ => {
            let message = "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.";
            Err(GraphError::bad_request(message).with_detail(
                "InvalidValue",
                message,
                "userPrincipalName",
            ))
        }
    }
}

fn valid_usage_location(v: &Value) -> bool {
    v.as_str().is_some_and(is_iso_country)
}

/// The officially assigned ISO 3166-1 alpha-2 codes: `usageLocation` is "a two-letter country
/// code (ISO standard 3166)" (property notes). That Graph refuses every code outside this list
/// with the `Invalid value specified…` error, and accepts all of them (Microsoft 365 is not sold
/// everywhere), is unconfirmed. Kept here, not taken from the engine: the emulator stands alone.
const ISO_COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG \
BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY \
CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ \
GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP \
KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU \
MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK \
TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

fn is_iso_country(code: &str) -> bool {
    code.len() == 2 && ISO_COUNTRIES.split(' ').any(|c| c == code)
}

/// Longest value of the organisation and contact properties (property notes, User):
/// `employeeId` 16, `companyName` 64 (also microsoftgraph/microsoft-graph-docs#7979), `mobilePhone`
/// 64, `city` and `country` 128; `officeLocation` 128 and each `businessPhones` entry 64 are
/// unconfirmed (the notes give none; the on-premises attribute ranges).
const MAX_LENGTHS: [(&str, usize); 7] = [
    ("employeeId", 16),
    ("officeLocation", 128),
    ("mobilePhone", 64),
    ("companyName", 64),
    ("city", 128),
    ("country", 128),
    ("businessPhones", 64),
];

/// `businessPhones` "is a string collection, [but] only one number can be set" (property notes).
const MAX_BUSINESS_PHONES: usize = 1;

/// Checks the organisation and contact properties of a create or update body: each a string
/// within its length or `null` (cleared), `businessPhones` an array of at most one such string.
/// Refusals are `Invalid value specified for property '…' of resource 'User'.` (the form Graph
/// uses for other bad values; the exact text for these properties is unconfirmed).
fn check_contact_properties(body: &Map<String, Value>) -> Result<(), GraphError> {
    let fits = |v: &Value, max: usize| v.as_str().is_some_and(|s| s.chars().count() <= max);
    for (prop, max) in MAX_LENGTHS {
        let Some(v) = body.get(prop) else { continue };
        let ok = if prop == "businessPhones" {
            v.as_array()
                .is_some_and(|a| a.len() <= MAX_BUSINESS_PHONES && a.iter().all(|p| fits(p, max)))
        } else {
            v.is_null() || fits(v, max)
        };
        if !ok {
            return Err(invalid_value(prop, Resource::User));
        }
    }
    Ok(())
}

fn check_known(body: &Map<String, Value>) -> Result<(), GraphError> {
    for key in body.keys() {
        if key.contains('@') {
            continue;
        }
        if !Resource::User.properties().contains(&key.as_str()) {
            return Err(unknown_property(key, Resource::User));
        }
    }
    Ok(())
}

fn context(base: &str, select: Option<&[String]>, entity: bool) -> String {
    let sel = select
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let suffix = if entity { "/$entity" } else { "" };
    format!("{base}/v1.0/$metadata#users{sel}{suffix}")
}

/// `POST /users` (graph-spec §3.1, §3.2).
///
/// # Errors
/// The §3.2 errors in the §11.4 order.
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_WRITE)?;
    let body = json_body(&body)?;
    check_known(&body)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let lag = state.realism.replication_lag;
    let tenant = tenant_mut(&mut state, &caller)?;

    // 1. required properties
    for prop in [
        "accountEnabled",
        "displayName",
        "mailNickname",
        "userPrincipalName",
        "passwordProfile",
    ] {
        if body.get(prop).is_none_or(Value::is_null) {
            return Err(required(prop, Resource::User));
        }
    }
    let password = body
        .get("passwordProfile")
        .and_then(|p| p.get("password"))
        .and_then(Value::as_str)
        .ok_or_else(|| required("passwordProfile", Resource::User))?
        .to_owned();
    if !body.get("accountEnabled").is_some_and(Value::is_boolean) {
        return Err(invalid_value("accountEnabled", Resource::User));
    }
    let display_name = body
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if display_name.trim().is_empty() || display_name.chars().count() > 256 {
        return Err(invalid_value("displayName", Resource::User));
    }
    if !body
        .get("mailNickname")
        .and_then(Value::as_str)
        .is_some_and(valid_mail_nickname)
    {
        return Err(invalid_value("mailNickname", Resource::User));
    }
    // 2. UPN syntax
    let upn = body
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !valid_upn(&upn) {
        return Err(GraphError::bad_request(
            "Property userPrincipalName is invalid.",
        ));
    }
    // 3. domain verified
    let auth_type = check_upn_domain(tenant, &upn)?;
    // 4. federated domain needs onPremisesImmutableId
    let immutable_id = body.get("onPremisesImmutableId").and_then(Value::as_str);
    if auth_type == AuthenticationType::Federated && immutable_id.is_none_or(str::is_empty) {
        return Err(GraphError::bad_request(
            "SourceAnchor is a required property for creation of a federated user.",
        ));
    }
    if let Some(imm) = immutable_id
        && (imm.contains('$') || imm.contains('_'))
    {
        return Err(invalid_value("onPremisesImmutableId", Resource::User));
    }
    if let Some(v) = body.get("usageLocation")
        && !v.is_null()
        && !valid_usage_location(v)
    {
        return Err(invalid_value("usageLocation", Resource::User));
    }
    check_contact_properties(&body)?;
    // 5. uniqueness among active objects (+ addresses still held after a soft delete)
    if address_taken(tenant, &upn, None, now) {
        return Err(conflict("userPrincipalName"));
    }
    let mut others = addresses(&body);
    others.retain(|a| !a.eq_ignore_ascii_case(&upn));
    if others.iter().any(|a| address_taken(tenant, a, None, now)) {
        return Err(conflict("proxyAddresses"));
    }
    if let Some(imm) = immutable_id
        && tenant.users.values().any(|u| {
            u.deleted_at.is_none()
                && u.properties
                    .get("onPremisesImmutableId")
                    .and_then(Value::as_str)
                    == Some(imm)
        })
    {
        return Err(conflict("onPremisesImmutableId"));
    }
    // 6. password policy
    let disable_strong = body
        .get("passwordPolicies")
        .and_then(Value::as_str)
        .is_some_and(|p| p.contains("DisableStrongPassword"));
    if !password_ok(&password, disable_strong) {
        return Err(complexity_error());
    }

    let id = crate::state::new_id();
    let mut properties = body.clone();
    properties.remove("passwordProfile");
    properties.retain(|k, _| !k.contains('@'));
    properties.insert("id".into(), json!(id));
    properties.insert("createdDateTime".into(), json!(graph_timestamp(now)));
    properties.insert(
        "lastPasswordChangeDateTime".into(),
        json!(graph_timestamp(now)),
    );
    // Sessions are valid from the account's creation until a revocation moves the instant
    // (assumed: graph-spec is silent on the initial value; unconfirmed).
    properties.insert(
        "signInSessionsValidFromDateTime".into(),
        json!(graph_timestamp(now)),
    );
    properties.entry("userType").or_insert(json!("Member"));
    properties.entry("creationType").or_insert(Value::Null);
    properties.entry("proxyAddresses").or_insert(json!([]));
    properties.entry("assignedLicenses").or_insert(json!([]));
    properties.entry("businessPhones").or_insert(json!([]));
    properties.entry("mail").or_insert(Value::Null);
    properties.insert("deletedDateTime".into(), Value::Null);
    let user = User {
        id: id.clone(),
        properties,
        password: Some(password.into()),
        created_at: now,
        visible_from: now + lag,
        deleted_at: None,
        tokens_valid_from: None,
    };
    let base = base_url(&headers);
    let mut out = Map::new();
    out.insert("@odata.context".into(), json!(context(&base, None, true)));
    out.extend(odata::project(&user.properties, Resource::User, None));
    tenant.users.insert(id.clone(), user);
    tenant.record_change(ObjectKind::User, &id, now);
    let tenant_id = tenant.id.clone();
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "UserManagement",
            activity: "Add user",
            operation_type: "Add",
            targets: vec![audit::user_target(&id, &upn, Vec::new())],
        },
    );
    drop(state);
    let mut response = odata_response(StatusCode::CREATED, &Value::Object(out));
    // Location form assumed (§13.11), like the group create body's `@odata.id`.
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{base}/v2/{tenant_id}/directoryObjects/{id}/Microsoft.DirectoryServices.User"
    )) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The caller's tenant.
///
/// # Errors
/// 401 when the tenant no longer exists.
pub fn tenant_mut<'a>(state: &'a mut World, caller: &Caller) -> Result<&'a mut Tenant, GraphError> {
    state
        .tenants
        .get_mut(caller.tenant_id())
        .ok_or_else(|| super::auth_error(crate::identity::AuthFailure::InvalidSignature))
}

/// The caller's tenant, read-only.
///
/// # Errors
/// 401 when the tenant no longer exists.
pub fn tenant_ref<'a>(state: &'a World, caller: &Caller) -> Result<&'a Tenant, GraphError> {
    state
        .tenants
        .get(caller.tenant_id())
        .ok_or_else(|| super::auth_error(crate::identity::AuthFailure::InvalidSignature))
}

/// `GET /users/{id|upn}` (graph-spec §3.3).
///
/// # Errors
/// 403 without a read permission, 404 (§2.7) when absent or not yet replicated.
pub async fn get(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    // `$expand=manager` (R-ATTR-1; `$levels` not modelled).
    let expand_manager =
        odata::param(&raw, "$expand").is_some_and(|e| e.trim().eq_ignore_ascii_case("manager"));
    let query = odata::Query::parse(raw, Resource::User, odata::eventual(&headers))?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let user = find(tenant, &key, now).ok_or_else(|| GraphError::not_found(&key))?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(context(&base_url(&headers), query.select.as_deref(), true)),
    );
    out.extend(odata::project(
        &user.properties,
        Resource::User,
        query.select.as_deref(),
    ));
    if expand_manager {
        super::manager::expand_into(&mut out, tenant, &user.id, now);
    }
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}

/// `GET /users` (graph-spec §2.3, §2.4, §3.3).
///
/// # Errors
/// 403 without a read permission; the query errors of [`odata::Query::parse`].
pub async fn list(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    let query = odata::Query::parse(raw, Resource::User, odata::eventual(&headers))?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let items: Vec<&Map<String, Value>> = tenant
        .users
        .values()
        .filter(|u| visible(u, now) && query.matches(&u.properties))
        .map(|u| &u.properties)
        .collect();
    let base = base_url(&headers);
    Ok(collection(
        &base,
        "/v1.0/users",
        &context(&base, query.select.as_deref(), false),
        &query,
        items,
        Resource::User,
    ))
}

/// Builds a paged collection response (`@odata.context`, `@odata.count` on the first page
/// with `$count=true` + `ConsistencyLevel: eventual`, `@odata.nextLink`, `value`).
pub fn collection(
    base: &str,
    path: &str,
    context: &str,
    query: &odata::Query,
    items: Vec<&Map<String, Value>>,
    resource: Resource,
) -> Response {
    let total = items.len();
    let (page, next) = query.page(items, 100);
    let mut out = Map::new();
    out.insert("@odata.context".into(), json!(context));
    if query.wants_count() {
        out.insert("@odata.count".into(), json!(total));
    }
    if let Some(token) = next {
        out.insert(
            "@odata.nextLink".into(),
            json!(query.next_link(base, path, &token)),
        );
    }
    out.insert(
        "value".into(),
        Value::Array(
            page.into_iter()
                .map(|p| Value::Object(odata::project(p, resource, query.select.as_deref())))
                .collect(),
        ),
    );
    odata_response(StatusCode::OK, &Value::Object(out))
}

/// `GET /users/$count` (graph-spec §2.4): needs `ConsistencyLevel: eventual`.
///
/// # Errors
/// 400 "$count is not currently supported." without the header.
pub async fn count(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_READ)?;
    if !odata::eventual(&headers) {
        return Err(GraphError::bad_request(
            "$count is not currently supported.",
        ));
    }
    let mut raw = raw;
    raw.push(("$count".into(), "true".into()));
    let query = odata::Query::parse(raw, Resource::User, true)?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let n = tenant
        .users
        .values()
        .filter(|u| visible(u, now) && query.matches(&u.properties))
        .count();
    let mut response = n.to_string().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

fn can_reset_passwords(state: &World, caller: &Caller) -> bool {
    let has_permission = caller.has_any(&[
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
        "User-PasswordProfile.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ]);
    let Some(tenant) = state.tenants.get(caller.tenant_id()) else {
        return false;
    };
    let has_role = match &caller.claims.user_upn {
        // Delegated: the signed-in user must hold an admin role.
        Some(upn) => tenant.admin_by_upn(upn).is_some_and(|(a, _)| {
            a.roles
                .iter()
                .any(|r| perm::PASSWORD_ADMIN_ROLES.contains(&r.as_str()))
        }),
        // App-only: the app's service principal must hold a directory role (§3.4).
        None => tenant
            .app_grants
            .get(&caller.claims.app_id)
            .is_some_and(|g| {
                g.directory_roles
                    .iter()
                    .any(|r| perm::PASSWORD_ADMIN_ROLES.contains(&r.as_str()))
            }),
    };
    has_permission && has_role
}

/// `PATCH /users/{id|upn}` (graph-spec §3.4): 204, or the validation errors.
///
/// # Errors
/// 400 for empty/invalid bodies and values, 403 without permission (password resets need an
/// admin role), 404 when the user is absent.
pub async fn update(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_WRITE)?;
    let body = super::patch_body(&body)?;
    check_known(&body)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let may_reset = can_reset_passwords(&state, &caller);
    let tenant = tenant_mut(&mut state, &caller)?;
    let user_id = find(tenant, &key, now)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::not_found(&key))?;
    let tenant_ref: &Tenant = tenant;
    let user = tenant_ref
        .users
        .get(&user_id)
        .ok_or_else(|| GraphError::not_found(&key))?;

    for read_only in [
        "id",
        "createdDateTime",
        "lastPasswordChangeDateTime",
        "deletedDateTime",
    ] {
        if body.contains_key(read_only) {
            return Err(GraphError::bad_request(format!(
                "Property '{read_only}' is read-only and cannot be set."
            )));
        }
    }
    if let Some(v) = body.get("accountEnabled")
        && !v.is_boolean()
    {
        return Err(invalid_value("accountEnabled", Resource::User));
    }
    if let Some(v) = body.get("displayName")
        && v.as_str()
            .is_none_or(|s| s.trim().is_empty() || s.chars().count() > 256)
    {
        return Err(invalid_value("displayName", Resource::User));
    }
    if let Some(v) = body.get("usageLocation")
        && !valid_usage_location(v)
    {
        return Err(invalid_value("usageLocation", Resource::User));
    }
    check_contact_properties(&body)?;
    if let Some(v) = body.get("mailNickname")
        && v.as_str().is_none_or(|s| !valid_mail_nickname(s))
    {
        return Err(invalid_value("mailNickname", Resource::User));
    }
    let current_domain_type = {
        let domain = user.upn().rsplit('@').next().unwrap_or_default();
        tenant_ref.domain(domain).map(|d| d.authentication_type)
    };
    if let Some(v) = body.get("userPrincipalName") {
        let upn = v.as_str().unwrap_or_default();
        if !valid_upn(upn) {
            return Err(GraphError::bad_request(
                "Property userPrincipalName is invalid.",
            ));
        }
        check_upn_domain(tenant_ref, upn)?;
        if address_taken(tenant_ref, upn, Some(&user_id), now) {
            return Err(conflict("userPrincipalName"));
        }
    }
    let mut new_addresses = addresses(&body);
    new_addresses.retain(|a| {
        Some(a.as_str())
            != body
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
                .as_deref()
    });
    if new_addresses
        .iter()
        .any(|a| address_taken(tenant_ref, a, Some(&user_id), now))
    {
        return Err(conflict("proxyAddresses"));
    }
    let new_password = match body.get("passwordProfile") {
        Some(profile) => {
            if !may_reset {
                return Err(GraphError::forbidden());
            }
            if current_domain_type == Some(AuthenticationType::Federated) {
                // Synthetic message: Graph's exact error is unconfirmed (§13.3); the rule
                // ("cannot be used for federated users") is documented.
                return Err(GraphError::bad_request(
                    "You cannot reset a password for a federated user.",
                ));
            }
            match profile.get("password").and_then(Value::as_str) {
                Some(p) => {
                    let disable_strong = body
                        .get("passwordPolicies")
                        .or_else(|| user.properties.get("passwordPolicies"))
                        .and_then(Value::as_str)
                        .is_some_and(|p| p.contains("DisableStrongPassword"));
                    if !password_ok(p, disable_strong) {
                        return Err(complexity_error());
                    }
                    Some(p.to_owned())
                }
                None => None,
            }
        }
        None => None,
    };

    let upn_for_audit = body
        .get("userPrincipalName")
        .and_then(Value::as_str)
        .map_or_else(|| user.upn().to_owned(), str::to_owned);
    let mut modified = Vec::new();
    let user = tenant
        .users
        .get_mut(&user_id)
        .ok_or_else(|| GraphError::not_found(&key))?;
    for (k, v) in &body {
        if k == "passwordProfile" || k.contains('@') {
            continue;
        }
        modified.push(audit::modified(k, user.properties.get(k), v));
        user.properties.insert(k.clone(), v.clone());
    }
    if let Some(p) = &new_password {
        user.password = Some(p.clone().into());
        user.properties.insert(
            "lastPasswordChangeDateTime".into(),
            json!(graph_timestamp(now)),
        );
        // An admin reset revokes the user's refresh tokens (§1.4 matrix; assumed for Graph resets).
        user.tokens_valid_from = Some(now);
    }
    tenant.record_change(ObjectKind::User, &user_id, now);
    if !modified.is_empty() {
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "UserManagement",
                activity: "Update user",
                operation_type: "Update",
                targets: vec![audit::user_target(&user_id, &upn_for_audit, modified)],
            },
        );
    }
    if new_password.is_some() {
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "UserManagement",
                activity: "Reset user password",
                operation_type: "Update",
                targets: vec![audit::user_target(&user_id, &upn_for_audit, Vec::new())],
            },
        );
    }
    Ok(no_content())
}

/// `DELETE /users/{id|upn}` (graph-spec §3.5): soft delete, 204.
///
/// # Errors
/// 403 without permission (or app-only deletion of an administrator), 404 when absent.
pub async fn delete(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_WRITE)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let release_delay = state.realism.address_release_delay;
    let tenant = tenant_mut(&mut state, &caller)?;
    let user_id = find(tenant, &key, now)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::not_found(&key))?;
    // App-only User.ReadWrite.All cannot delete users holding privileged admin roles (§3.5).
    if caller.claims.user_upn.is_none()
        && tenant
            .admins
            .get(&user_id)
            .is_some_and(|a| !a.roles.is_empty())
        && !caller.has_any(&["Directory.ReadWrite.All"])
    {
        return Err(GraphError::forbidden());
    }
    let user = tenant
        .users
        .get_mut(&user_id)
        .ok_or_else(|| GraphError::not_found(&key))?;
    user.deleted_at = Some(now);
    user.properties
        .insert("deletedDateTime".into(), json!(graph_timestamp(now)));
    let upn = user.upn().to_owned();
    let held = addresses(&user.properties);
    if release_delay > chrono::Duration::zero() {
        for a in held {
            tenant.held_addresses.insert(
                a,
                HeldAddress {
                    user_id: user_id.clone(),
                    release_at: now + release_delay,
                },
            );
        }
    }
    tenant.record_change(ObjectKind::User, &user_id, now);
    audit::record(
        &mut state,
        &caller,
        AuditEvent {
            category: "UserManagement",
            activity: "Delete user",
            operation_type: "Delete",
            targets: vec![audit::user_target(&user_id, &upn, Vec::new())],
        },
    );
    Ok(no_content())
}

/// `POST /users/{id}/revokeSignInSessions`: invalidates the user's refresh tokens
/// (→ AADSTS50173 at the token endpoint, graph-spec §1.4) and moves
/// `signInSessionsValidFromDateTime` to now; `200 {"value": true}`. Audited as "Invalidate all
/// refresh tokens for user" (activity name assumed, graph-spec §13.12).
///
/// # Errors
/// 403 without permission, 404 when absent.
pub async fn revoke_sessions(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    caller.require(perm::USERS_WRITE)?;
    let mut state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_mut(&mut state, &caller)?;
    let user_id = find(tenant, &key, now)
        .map(|u| u.id.clone())
        .ok_or_else(|| GraphError::not_found(&key))?;
    let mut upn = None;
    if let Some(user) = tenant.users.get_mut(&user_id) {
        user.tokens_valid_from = Some(now);
        user.properties.insert(
            "signInSessionsValidFromDateTime".into(),
            json!(graph_timestamp(now)),
        );
        upn = Some(user.upn().to_owned());
    }
    if let Some(upn) = upn {
        audit::record(
            &mut state,
            &caller,
            AuditEvent {
                category: "UserManagement",
                activity: "Invalidate all refresh tokens for user",
                operation_type: "Update",
                targets: vec![audit::user_target(&user_id, &upn, Vec::new())],
            },
        );
    }
    Ok(odata_response(
        StatusCode::OK,
        &json!({"@odata.context": format!("{}/v1.0/$metadata#Edm.Boolean", base_url(&headers)), "value": true}),
    ))
}

/// `POST /users/{id}/restore` is not how deleted users are restored: 404 (§3.6).
///
/// # Errors
/// Always 404 `Request_ResourceNotFound`.
pub async fn restore_not_here(Path(key): Path<String>) -> Result<Response, GraphError> {
    Err(GraphError::not_found(&key))
}

/// `GET /me` (delegated tokens only): the signed-in user.
///
/// # Errors
/// 400 for app-only tokens (Graph's message), 403 without a read permission, 404 when the
/// signed-in user no longer exists.
pub async fn me(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, GraphError> {
    let Some(upn) = caller.claims.user_upn.clone() else {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
        ));
    };
    // Any delegated user permission reads the signed-in user's own profile.
    if !caller.has_any(&["User.Read", "User.ReadBasic.All"]) {
        caller.require(perm::USERS_READ)?;
    }
    let query = odata::Query::parse(raw, Resource::User, odata::eventual(&headers))?;
    let state = app.lock();
    let now = state.clock.now();
    let tenant = tenant_ref(&state, &caller)?;
    let user = find(tenant, &upn, now).ok_or_else(|| GraphError::not_found(&upn))?;
    let mut out = Map::new();
    out.insert(
        "@odata.context".into(),
        json!(context(&base_url(&headers), query.select.as_deref(), true)),
    );
    out.extend(odata::project(
        &user.properties,
        Resource::User,
        query.select.as_deref(),
    ));
    Ok(odata_response(StatusCode::OK, &Value::Object(out)))
}
