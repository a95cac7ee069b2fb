//! Microsoft Graph v1.0 surface (`/v1.0/...`): routing, authentication of the bearer token
//! (graph-spec §2.6), permission checks (§11.3), fault injection and throttling (§7) around
//! every handler, and response helpers shared by the resource modules.

pub mod batch;
pub mod deleted;
pub mod delta;
pub mod directory;
pub mod groups;
pub mod manager;
pub mod odata;
pub mod roles;
pub mod users;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::Value;

use crate::AppState;
use crate::error::GraphError;
use crate::identity::{self, AccessClaims, AuthFailure};
use crate::request::TenantTag;
use crate::state::FaultKind;
use crate::throttle::{self, Admission};

/// The authenticated caller of a Graph request, put into the request extensions by the guard.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's claims.
    pub claims: AccessClaims,
}

impl Caller {
    /// The tenant the token is bound to (every Graph read and write is scoped to it).
    #[must_use]
    pub fn tenant_id(&self) -> &str {
        &self.claims.tenant_id
    }

    /// Whether the token carries any of `permissions` (as an app role or a delegated scope).
    #[must_use]
    pub fn has_any(&self, permissions: &[&str]) -> bool {
        let scope_name = |s: &String| s.rsplit('/').next().unwrap_or_default().to_owned();
        permissions.iter().any(|p| {
            self.claims.roles.iter().any(|r| r.eq_ignore_ascii_case(p))
                || self
                    .claims
                    .scopes
                    .iter()
                    .any(|s| scope_name(s).eq_ignore_ascii_case(p))
        })
    }

    /// 403 `Authorization_RequestDenied` unless the token carries one of `permissions`.
    ///
    /// # Errors
    /// [`GraphError::forbidden`].
    pub fn require(&self, permissions: &[&str]) -> Result<(), GraphError> {
        if self.has_any(permissions) {
            Ok(())
        } else {
            Err(GraphError::forbidden())
        }
    }
}

/// Permission sets per operation (graph-spec §11.3).
pub mod perm {
    /// Read users.
    pub const USERS_READ: &[&str] = &[
        "User.Read.All",
        "User.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    /// Create, update, delete users.
    pub const USERS_WRITE: &[&str] = &["User.ReadWrite.All", "Directory.ReadWrite.All"];
    /// Assign licences.
    pub const LICENSE_WRITE: &[&str] = &[
        "User.ReadWrite.All",
        "Directory.ReadWrite.All",
        "LicenseAssignment.ReadWrite.All",
    ];
    /// Read groups and members.
    pub const GROUPS_READ: &[&str] = &[
        "Group.Read.All",
        "Group.ReadWrite.All",
        "GroupMember.Read.All",
        "GroupMember.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    /// Create groups.
    pub const GROUPS_CREATE: &[&str] = &[
        "Group.Create",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    /// Update and delete groups.
    pub const GROUPS_WRITE: &[&str] = &["Group.ReadWrite.All", "Directory.ReadWrite.All"];
    /// Add and remove members.
    pub const MEMBERS_WRITE: &[&str] = &[
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ];
    /// Read domains.
    pub const DOMAINS_READ: &[&str] = &[
        "Domain.Read.All",
        "Domain.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    /// Read the organization and subscribed SKUs.
    pub const ORG_READ: &[&str] = &[
        "Organization.Read.All",
        "Organization.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    ];
    /// Read directory audits.
    pub const AUDIT_READ: &[&str] = &["AuditLog.Read.All"];
    /// Read directory roles and their members (Graph docs, List directoryRoles / List members).
    pub const ROLES_READ: &[&str] = &[
        "RoleManagement.Read.Directory",
        "RoleManagement.ReadWrite.Directory",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    ];
    /// Directory roles that allow app-only password resets (graph-spec §3.4).
    pub const PASSWORD_ADMIN_ROLES: &[&str] = &[
        "User Administrator",
        "Privileged Authentication Administrator",
        "Global Administrator",
        "Helpdesk Administrator",
        "Password Administrator",
        "Authentication Administrator",
    ];
}

/// The Graph router (routes plus the guard), without state.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1.0/users", get(users::list).post(users::create))
        .route("/v1.0/users/delta", get(delta::users))
        // The SDKs call functions with parentheses (`delta()`) and casts with the short
        // namespace (`graph.user`); Graph accepts every spelling.
        .route("/v1.0/users/delta()", get(delta::users))
        .route("/v1.0/users/microsoft.graph.delta()", get(delta::users))
        .route("/v1.0/groups/delta()", get(delta::groups))
        .route("/v1.0/groups/microsoft.graph.delta()", get(delta::groups))
        .route(
            "/v1.0/directory/deletedItems/graph.user",
            get(deleted::list_users),
        )
        .route(
            "/v1.0/directory/deletedItems/graph.group",
            get(deleted::list_groups),
        )
        .route(
            "/v1.0/directory/deletedItems/{id}/graph.restore",
            post(deleted::restore),
        )
        .route(
            "/v1.0/groups/{id}/members/microsoft.graph.user",
            get(groups::user_members),
        )
        .route(
            "/v1.0/groups/{id}/members/graph.user",
            get(groups::user_members),
        )
        .route(
            "/v1.0/groups/{id}/members/microsoft.graph.group",
            get(groups::group_members),
        )
        .route(
            "/v1.0/groups/{id}/members/graph.group",
            get(groups::group_members),
        )
        .route("/v1.0/me", get(users::me))
        .route("/v1.0/users/$count", get(users::count))
        .route(
            "/v1.0/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route(
            "/v1.0/users/{id}/assignLicense",
            post(directory::assign_license),
        )
        .route(
            "/v1.0/users/{id}/licenseDetails",
            get(directory::license_details),
        )
        .route(
            "/v1.0/users/{id}/revokeSignInSessions",
            post(users::revoke_sessions),
        )
        .route("/v1.0/users/{id}/restore", post(users::restore_not_here))
        .route("/v1.0/users/{id}/manager", get(manager::get))
        .route(
            "/v1.0/users/{id}/manager/$ref",
            put(manager::put).delete(manager::delete),
        )
        .route("/v1.0/users/{id}/memberOf", get(roles::member_of))
        .route(
            "/v1.0/users/{id}/memberOf/microsoft.graph.directoryRole",
            get(roles::member_of_roles),
        )
        .route(
            "/v1.0/users/{id}/memberOf/graph.directoryRole",
            get(roles::member_of_roles),
        )
        .route(
            "/v1.0/users/{id}/memberOf/microsoft.graph.group",
            get(roles::member_of_groups),
        )
        .route(
            "/v1.0/users/{id}/memberOf/graph.group",
            get(roles::member_of_groups),
        )
        .route(
            "/v1.0/users/{id}/transitiveMemberOf",
            get(roles::transitive_member_of),
        )
        .route(
            "/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.directoryRole",
            get(roles::transitive_member_of_roles),
        )
        .route(
            "/v1.0/users/{id}/transitiveMemberOf/graph.directoryRole",
            get(roles::transitive_member_of_roles),
        )
        .route(
            "/v1.0/users/{id}/transitiveMemberOf/microsoft.graph.group",
            get(roles::transitive_member_of_groups),
        )
        .route(
            "/v1.0/users/{id}/transitiveMemberOf/graph.group",
            get(roles::transitive_member_of_groups),
        )
        .route("/v1.0/directoryRoles", get(roles::list))
        .route("/v1.0/directoryRoles/{id}", get(roles::get))
        .route("/v1.0/directoryRoles/{id}/members", get(roles::members))
        .route("/v1.0/groups", get(groups::list).post(groups::create))
        .route("/v1.0/groups/delta", get(delta::groups))
        .route(
            "/v1.0/groups/{id}",
            get(groups::get)
                .patch(groups::update)
                .delete(groups::delete),
        )
        .route("/v1.0/groups/{id}/members", get(groups::members))
        .route("/v1.0/groups/{id}/members/$ref", post(groups::add_member))
        .route(
            "/v1.0/groups/{id}/members/{member}/$ref",
            delete(groups::remove_member),
        )
        .route("/v1.0/directory/deletedItems", get(deleted::list_untyped))
        .route(
            "/v1.0/directory/deletedItems/microsoft.graph.user",
            get(deleted::list_users),
        )
        .route(
            "/v1.0/directory/deletedItems/microsoft.graph.group",
            get(deleted::list_groups),
        )
        .route(
            "/v1.0/directory/deletedItems/{id}",
            get(deleted::get).delete(deleted::purge),
        )
        .route(
            "/v1.0/directory/deletedItems/{id}/restore",
            post(deleted::restore),
        )
        .route(
            "/v1.0/directory/deletedItems/{id}/microsoft.graph.restore",
            post(deleted::restore),
        )
        .route("/v1.0/domains", get(directory::domains))
        .route("/v1.0/domains/{id}", get(directory::domain))
        .route("/v1.0/organization", get(directory::organization))
        .route("/v1.0/subscribedSkus", get(directory::subscribed_skus))
        .route("/v1.0/auditLogs/directoryAudits", get(directory::audits))
        .route("/v1.0/$batch", post(batch::batch))
        .route_layer(from_fn_with_state(state.clone(), guard))
}

/// `/v1.0/...` paths no route matches: Graph's 400 for an unknown segment.
pub async fn unknown_segment(req: Request) -> Response {
    let path = req.uri().path();
    let segment = path
        .trim_start_matches("/v1.0/")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("Resource not found for the segment '{segment}'."),
    )
    .into_response()
}

/// Marker in request extensions: this request is an item of a `$batch`.
#[derive(Debug, Clone, Copy)]
pub struct BatchItem;

/// Authentication, fault injection and throttling around every Graph handler.
async fn guard(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let bearer = match bearer(req.headers()) {
        Ok(b) => b,
        Err(f) => return auth_error(f).into_response(),
    };
    let claims = {
        let state = app.lock();
        match identity::authenticate(&state, &bearer) {
            Ok(c) if state.tenants.contains_key(&c.tenant_id) => Ok(c),
            // A token for a tenant the emulator does not know cannot read anything (INF).
            Ok(_) => Err(AuthFailure::InvalidSignature),
            Err(f) => Err(f),
        }
    };
    let claims = match claims {
        Ok(c) => c,
        Err(f) => return auth_error(f).into_response(),
    };
    let tenant_id = claims.tenant_id.clone();
    let app_id = claims.app_id.clone();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let is_batch = path == "/v1.0/$batch";
    req.extensions_mut().insert(Caller { claims });

    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let counter = if req.extensions().get::<BatchItem>().is_some() {
        "graph.batch_item"
    } else {
        "graph"
    };
    let (fault, admission) = {
        let mut state = app.lock();
        let now = state.clock.now();
        if let Some(tenant) = state.tenants.get_mut(&tenant_id) {
            deleted::purge_expired(tenant, now);
            *tenant.request_counts.entry(counter.to_owned()).or_default() += 1;
            *tenant
                .request_counts
                .entry(format!("{counter} {method} {route}"))
                .or_default() += 1;
        }
        let fault = throttle::take_fault(&mut state.realism, &method, &path, &tenant_id);
        let admission = if is_batch || fault.is_some() {
            Admission::free()
        } else {
            let cost = throttle::cost(&method, &path, &query);
            throttle::admit(&mut state.realism, &tenant_id, &app_id, cost, now)
        };
        if admission.rejection.is_some()
            && let Some(tenant) = state.tenants.get_mut(&tenant_id)
        {
            // Throttled requests, for tests measuring how close a client runs to its quota.
            *tenant
                .request_counts
                .entry(format!("{counter}.throttled"))
                .or_default() += 1;
        }
        (fault, admission)
    };

    let mut response = match fault {
        Some(f)
            if matches!(
                f.kind,
                FaultKind::TimeoutAfterCommit | FaultKind::DropAfterCommit
            ) =>
        {
            let response = next.run(req).await;
            if f.kind == FaultKind::DropAfterCommit {
                return throttle::dropped_connection();
            }
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms)).await;
            response
        }
        Some(f) => throttle::fault_response(&f),
        None => match admission.rejection {
            Some(error) => error.into_response(),
            None => next.run(req).await,
        },
    };
    if let Some(ru) = admission.resource_units
        && let Ok(v) = HeaderValue::from_str(&ru.to_string())
    {
        response.headers_mut().insert("x-ms-resource-unit", v);
    }
    if let Some(pct) = admission.limit_percentage
        && let Ok(v) = HeaderValue::from_str(&format!("{pct:.1}"))
    {
        response
            .headers_mut()
            .insert("x-ms-throttle-limit-percentage", v);
    }
    response.extensions_mut().insert(TenantTag(tenant_id));
    response
}

fn bearer(headers: &HeaderMap) -> Result<String, AuthFailure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(AuthFailure::Empty);
    };
    let value = value.to_str().map_err(|_| AuthFailure::Malformed)?.trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        None if value.eq_ignore_ascii_case("bearer") => "",
        _ => return Err(AuthFailure::Malformed),
    };
    if token.is_empty() {
        return Err(AuthFailure::Empty);
    }
    Ok(token.to_owned())
}

/// The 401 of graph-spec §2.6 for each authentication failure.
#[must_use]
pub fn auth_error(failure: AuthFailure) -> GraphError {
    let message = match failure {
        // "Access token is empty." is INF (§13.11).
        AuthFailure::Empty => "Access token is empty.",
        AuthFailure::Malformed => {
            "IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format. (JWS): 'EncodedHeader.EncodedPayload.EncodedSignature'. (JWE): 'EncodedProtectedHeader.EncodedEncryptedKey.EncodedInitializationVector.EncodedCiphertext.EncodedAuthenticationTag'."
        }
        // Text assumed (a token this emulator did not issue).
        AuthFailure::InvalidSignature => "IDX10511: Signature validation failed.",
        AuthFailure::Expired => "Lifetime validation failed, the token is expired.",
    };
    GraphError::unauthorized(message)
}

/// The base URL of the emulator as the client addressed it (`http://host:port`), for
/// `@odata.context`, nextLinks and deltaLinks.
#[must_use]
pub fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A JSON response with Graph's OData content type and `OData-Version` header.
pub fn odata(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, Body::from(body.to_string())).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        ),
    );
    headers.insert("odata-version", HeaderValue::from_static("4.0"));
    response
}

/// 204 No Content.
pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Whether `s` is a GUID (object ids), so `/users/{x}` knows id from UPN.
#[must_use]
pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// Parses a JSON body, mapping failures to Graph's errors (empty body → §2.8).
///
/// # Errors
/// 400 `BadRequest` for an empty or invalid body.
pub fn json_body(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, GraphError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        ));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        // Message assumed for unparsable bodies.
        _ => Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
        )),
    }
}

/// A PATCH body: like [`json_body`], and `{}` is an empty payload too (§2.8).
///
/// # Errors
/// 400 `BadRequest` "Empty Payload. JSON content expected." for an empty body or `{}`.
pub fn patch_body(bytes: &[u8]) -> Result<serde_json::Map<String, Value>, GraphError> {
    let body = json_body(bytes)?;
    if body.is_empty() {
        return Err(GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Empty Payload. JSON content expected.",
        ));
    }
    Ok(body)
}

/// Whether `method` writes.
#[must_use]
pub fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
