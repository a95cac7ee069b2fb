//! The emulator's in-memory world: the seed file format, the directory of every tenant, the
//! app registrations, the realism switches and the controllable clock.
//!
//! Everything lives in one [`State`] behind one lock (see [`crate::AppState`]), so every request
//! sees a consistent snapshot and tests can assert on the raw state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::identity::IdentityState;

/// The controllable clock: wall-clock time shifted by an offset the admin API can advance.
///
/// Everything time-dependent (token expiry, code lifetime, replication lag, address release,
/// delta token expiry, the 30-day purge) reads [`Clock::now`], so tests can jump ahead.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Duration,
}

impl Clock {
    /// The emulator's current time.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&mut self, by: Duration) {
        self.offset += by;
    }

    /// How far the clock has been moved from wall-clock time.
    #[must_use]
    pub fn offset(&self) -> Duration {
        self.offset
    }
}

// ---------------------------------------------------------------------------------------------
// Seed file format (documented in README.md). Field names are camelCase like Graph's.
// ---------------------------------------------------------------------------------------------

/// The root of a seed file.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    /// App registrations (multi-tenant apps; a grant per tenant says what they may do there).
    #[serde(default)]
    pub applications: Vec<ApplicationSeed>,
    /// Tenants with their directories.
    #[serde(default)]
    pub tenants: Vec<TenantSeed>,
}

/// One app registration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationSeed {
    /// The client id (GUID).
    pub app_id: String,
    /// Display name, shown in audit records (`initiatedBy.app.displayName`).
    pub display_name: String,
    /// Client secrets; any unexpired one authenticates the client.
    #[serde(default)]
    pub secrets: Vec<SecretSeed>,
    /// Registered redirect URIs (the authorize request's `redirect_uri` must match one exactly).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Application permissions the app requests (granted to a tenant by admin consent).
    #[serde(default)]
    pub required_roles: Vec<String>,
    /// Delegated permissions the app requests (granted by an admin's consent).
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Tenants where the app is already consented (application permissions) at start.
    #[serde(default)]
    pub grants: Vec<GrantSeed>,
}

/// One client secret.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSeed {
    /// The secret value.
    pub value: SecretString,
    /// When the secret stops working (AADSTS7000222); `None` = never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A tenant-wide grant of an app (the result of an admin consent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantSeed {
    /// Tenant id (GUID) or one of its domain names.
    pub tenant: String,
    /// Granted application permissions, e.g. `User.ReadWrite.All`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Entra directory roles held by the app's service principal, e.g. `User Administrator`
    /// (needed to reset passwords app-only, graph-spec §3.4).
    #[serde(default)]
    pub directory_roles: Vec<String>,
}

/// One tenant.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSeed {
    /// Tenant id (GUID).
    pub id: String,
    /// Organization display name.
    pub display_name: String,
    /// Domains; exactly one `isInitial` and one `isDefault`.
    pub domains: Vec<DomainSeed>,
    /// Users (Graph property names; a few extra seed-only fields).
    #[serde(default)]
    pub users: Vec<UserSeed>,
    /// Security groups.
    #[serde(default)]
    pub groups: Vec<GroupSeed>,
    /// Administrators who can sign in at `/authorize` (created as users if not listed there).
    #[serde(default)]
    pub admins: Vec<AdminSeed>,
    /// Subscribed SKUs (licences).
    #[serde(default)]
    pub skus: Vec<SkuSeed>,
}

/// How a domain authenticates users (graph-spec §8.1 `authenticationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum AuthenticationType {
    /// Entra ID authenticates.
    Managed,
    /// An external identity provider (AD FS, GoDaddy, ...) authenticates.
    Federated,
}

/// One domain of a tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainSeed {
    /// The FQDN.
    pub name: String,
    /// `Managed` or `Federated`.
    pub authentication_type: AuthenticationType,
    /// Ownership verified (only verified domains may be used in UPNs).
    #[serde(default = "yes")]
    pub is_verified: bool,
    /// The default domain for new users.
    #[serde(default)]
    pub is_default: bool,
    /// The `*.onmicrosoft.com` domain.
    #[serde(default)]
    pub is_initial: bool,
}

fn yes() -> bool {
    true
}

/// One seeded user. Any Graph user property not named here (e.g. `givenName`, `jobTitle`,
/// `usageLocation`) may be given and is stored as is.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserSeed {
    /// Object id; a random GUID when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The UPN.
    pub user_principal_name: String,
    /// Display name; the UPN's local part when absent.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Sign-in allowed; default `true`.
    #[serde(default = "yes")]
    pub account_enabled: bool,
    /// Password (needed only for users who sign in at `/authorize`).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// SKU ids assigned to the user.
    #[serde(default)]
    pub licenses: Vec<String>,
    /// Built-in directory roles the user holds (display names, e.g. `User Administrator`).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Other Graph properties.
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// One seeded group.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSeed {
    /// Object id; a random GUID when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Display name.
    pub display_name: String,
    /// Mail nickname.
    pub mail_nickname: String,
    /// Default `true` (a security group).
    #[serde(default = "yes")]
    pub security_enabled: bool,
    /// Default `false`.
    #[serde(default)]
    pub mail_enabled: bool,
    /// `[]` for security groups, `["Unified"]` for Microsoft 365 groups.
    #[serde(default)]
    pub group_types: Vec<String>,
    /// Members: user or group ids or user UPNs.
    #[serde(default)]
    pub members: Vec<String>,
    /// Other Graph properties (e.g. `description`).
    #[serde(flatten)]
    pub properties: Map<String, Value>,
}

/// An administrator of a tenant.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminSeed {
    /// The admin's UPN (a user of the tenant; created if not among `users`).
    pub user_principal_name: String,
    /// The admin's password.
    pub password: SecretString,
    /// Display name for a user created from this entry.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Entra roles, default `["Global Administrator"]`.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// App ids this admin has consented to (delegated permissions) at start.
    #[serde(default)]
    pub consented_apps: Vec<String>,
}

/// A subscribed SKU.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SkuSeed {
    /// The SKU id (GUID).
    pub sku_id: String,
    /// E.g. `ENTERPRISEPACK`.
    pub sku_part_number: String,
    /// Purchased seats (`prepaidUnits.enabled`).
    pub enabled_units: u32,
    /// Service plans.
    #[serde(default)]
    pub service_plans: Vec<ServicePlanSeed>,
}

/// A service plan inside a SKU.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePlanSeed {
    /// Plan id (GUID).
    pub service_plan_id: String,
    /// Plan name, e.g. `EXCHANGE_S_ENTERPRISE`.
    pub service_plan_name: String,
}

/// Why a seed file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// Not valid JSON for the seed format.
    #[error("seed is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    /// Two tenants share an id or a domain.
    #[error("duplicate tenant id or domain `{0}`")]
    DuplicateTenant(String),
    /// Two applications share an app id.
    #[error("duplicate application `{0}`")]
    DuplicateApplication(String),
    /// A grant names a tenant the seed does not define.
    #[error("grant of application `{app}` names unknown tenant `{tenant}`")]
    UnknownGrantTenant {
        /// The application.
        app: String,
        /// The tenant key as written.
        tenant: String,
    },
    /// A group member is neither a user id/UPN nor a group id of the tenant.
    #[error("group `{group}` has unknown member `{member}`")]
    UnknownMember {
        /// The group's display name.
        group: String,
        /// The member as written.
        member: String,
    },
    /// A user's UPN repeats within a tenant.
    #[error("duplicate user `{0}`")]
    DuplicateUser(String),
    /// A directory role name is not one of the built-in roles the emulator knows.
    #[error("unknown directory role `{0}`")]
    UnknownRole(String),
}

impl Seed {
    /// Parses a seed file.
    ///
    /// # Errors
    /// [`SeedError::Parse`] when the JSON does not match the seed format.
    pub fn from_json(text: &str) -> Result<Self, SeedError> {
        Ok(serde_json::from_str(text)?)
    }
}

// ---------------------------------------------------------------------------------------------
// Runtime model
// ---------------------------------------------------------------------------------------------

/// The whole emulator state, guarded by the single lock in [`crate::AppState`].
#[derive(Debug, Default)]
pub struct State {
    /// The controllable clock.
    pub clock: Clock,
    /// Tenants by id (GUID, lower case).
    pub tenants: BTreeMap<String, Tenant>,
    /// App registrations by app id (lower case).
    pub applications: BTreeMap<String, Application>,
    /// Identity-platform state (codes, refresh tokens, issued access tokens), owned by
    /// `crate::identity`.
    pub identity: IdentityState,
    /// Realism switches and quotas set through `/_emulator/...`.
    pub realism: Realism,
}

/// An app registration at runtime.
#[derive(Debug)]
pub struct Application {
    /// Client id (GUID, lower case).
    pub app_id: String,
    /// Display name.
    pub display_name: String,
    /// Client secrets.
    pub secrets: Vec<ClientSecret>,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Application permissions the app requests.
    pub required_roles: Vec<String>,
    /// Delegated permissions the app requests.
    pub required_scopes: Vec<String>,
}

/// A client secret at runtime.
#[derive(Debug)]
pub struct ClientSecret {
    /// The secret value.
    pub value: SecretString,
    /// Expiry, `None` = never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an app may do in a tenant (admin consent + directory roles of its service principal).
#[derive(Debug, Clone, Default)]
pub struct AppGrant {
    /// Granted application permissions.
    pub roles: BTreeSet<String>,
    /// Entra directory roles of the app's service principal (e.g. `User Administrator`).
    pub directory_roles: BTreeSet<String>,
    /// Service principal object id in this tenant (shown in audit records).
    pub service_principal_id: String,
}

/// A domain at runtime (serialized as Graph's `domain` by the Graph layer).
#[derive(Debug, Clone)]
pub struct Domain {
    /// FQDN (as seeded; compared case-insensitively).
    pub name: String,
    /// `Managed` or `Federated`.
    pub authentication_type: AuthenticationType,
    /// Verified.
    pub is_verified: bool,
    /// Default domain.
    pub is_default: bool,
    /// Initial `*.onmicrosoft.com` domain.
    pub is_initial: bool,
}

/// An administrator who can sign in interactively (their password is on their [`User`]).
#[derive(Debug, Clone, Default)]
pub struct Admin {
    /// The admin's user object id.
    pub user_id: String,
    /// Entra roles (e.g. `Global Administrator`).
    pub roles: BTreeSet<String>,
    /// App ids this admin has consented to (delegated).
    pub consented_apps: BTreeSet<String>,
}

/// A user object.
#[derive(Debug)]
pub struct User {
    /// Object id (GUID, lower case).
    pub id: String,
    /// Every Graph property of the user (including `id`, `userPrincipalName`,
    /// `accountEnabled`, `assignedLicenses`, ...), as Graph returns them with `$select`.
    pub properties: Map<String, Value>,
    /// Current password (never returned by Graph).
    pub password: Option<SecretString>,
    /// Creation time (also the start of the replication-lag window).
    pub created_at: DateTime<Utc>,
    /// Until when reads do not see the object (replication lag, graph-spec §7.4).
    pub visible_from: DateTime<Utc>,
    /// Soft-deletion time, `Some` while in deleted items.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Tokens issued before this instant are revoked (admin password reset,
    /// revokeSignInSessions → AADSTS50173).
    pub tokens_valid_from: Option<DateTime<Utc>>,
}

/// A group object.
#[derive(Debug)]
pub struct Group {
    /// Object id (GUID, lower case).
    pub id: String,
    /// Every Graph property of the group.
    pub properties: Map<String, Value>,
    /// Member object ids (users and groups), in insertion order.
    pub members: Vec<String>,
    /// Owner object ids.
    pub owners: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Until when reads and member adds do not see the object (graph-spec §7.4).
    pub visible_from: DateTime<Utc>,
    /// Soft-deletion time (Microsoft 365 groups only; security groups are hard-deleted).
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A subscribed SKU at runtime.
#[derive(Debug, Clone)]
pub struct Sku {
    /// SKU id.
    pub sku_id: String,
    /// Part number.
    pub sku_part_number: String,
    /// Purchased seats.
    pub enabled_units: u32,
    /// Service plans.
    pub service_plans: Vec<ServicePlanSeed>,
}

/// One tenant's directory.
#[derive(Debug)]
pub struct Tenant {
    /// Tenant id (GUID, lower case).
    pub id: String,
    /// Organization display name.
    pub display_name: String,
    /// Creation time of the organization object.
    pub created_at: DateTime<Utc>,
    /// Domains.
    pub domains: Vec<Domain>,
    /// Users by object id (active and soft-deleted).
    pub users: BTreeMap<String, User>,
    /// Groups by object id (active and soft-deleted).
    pub groups: BTreeMap<String, Group>,
    /// Admins by user object id.
    pub admins: BTreeMap<String, Admin>,
    /// App grants by app id.
    pub app_grants: BTreeMap<String, AppGrant>,
    /// Subscribed SKUs.
    pub skus: Vec<Sku>,
    /// Directory audit records (Graph `directoryAudit` JSON), oldest first.
    pub audits: Vec<Value>,
    /// Change log for delta queries, oldest first.
    pub changes: Vec<Change>,
    /// Next change sequence number.
    pub next_change: u64,
    /// Addresses (UPNs / proxy addresses, lower case) still held after a soft delete, with the
    /// instant they are released.
    pub held_addresses: BTreeMap<String, HeldAddress>,
    /// Requests counted per surface and per route, for tests (`graph`, `identity`,
    /// `graph GET /v1.0/users`, ...).
    pub request_counts: BTreeMap<String, u64>,
    /// Delta generation: tokens of an older generation get 410 (reset hook, graph-spec §5).
    pub delta_epoch: u64,
    /// Activated directory roles by object id, with their members ([`crate::roles`]).
    pub directory_roles: BTreeMap<String, DirectoryRoleObject>,
    /// Each user's manager (user object id → manager's user object id), R-ATTR-1
    /// ([`crate::graph::manager`]).
    pub managers: BTreeMap<String, String>,
}

/// An activated directory role of a tenant (Graph's `directoryRole`).
#[derive(Debug, Clone)]
pub struct DirectoryRoleObject {
    /// Object id (GUID, lower case; differs per tenant).
    pub id: String,
    /// The built-in role's template id (the same in every tenant).
    pub role_template_id: String,
    /// E.g. `Global Administrator`.
    pub display_name: String,
    /// Microsoft's description of the role.
    pub description: String,
    /// Direct members: user and group object ids (service principals come from the app grants).
    pub members: Vec<String>,
}

/// Which kind of object a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ObjectKind {
    /// A user.
    User,
    /// A group.
    Group,
}

/// One entry of the delta change log.
#[derive(Debug, Clone)]
pub struct Change {
    /// Sequence number (monotonic per tenant).
    pub seq: u64,
    /// User or group.
    pub kind: ObjectKind,
    /// The object id.
    pub id: String,
    /// When the change happened.
    pub at: DateTime<Utc>,
    /// For group membership changes: the member id and whether it was added (`true`) or
    /// removed (`false`). For a user's change of kind [`ObjectKind::User`]: its manager's id
    /// and whether it was assigned (`true`) or removed (`false`) (R-ATTR-1).
    pub member: Option<(String, bool)>,
}

/// Realism switches, quotas and faults (set through `/_emulator/...`).
#[derive(Debug, Clone)]
pub struct Realism {
    /// New objects are invisible to reads and member adds for this long (graph-spec §7.4).
    pub replication_lag: Duration,
    /// How long a soft-deleted user's UPN/proxy addresses stay taken.
    pub address_release_delay: Duration,
    /// Emit `Retry-After` as fractional seconds (e.g. `2.128`) instead of whole seconds.
    pub fractional_retry_after: bool,
    /// Page size of delta responses (Graph chooses it; tests make it small).
    pub delta_page_size: usize,
    /// Default throttling quotas per (app, tenant) pair (graph-spec §7.2).
    pub quotas: Quotas,
    /// Quotas of one app across all tenants (graph-spec §7.2: 150,000 RU / 20 s, 70,000
    /// writes / 5 min).
    pub app_quotas: Quotas,
    /// Quotas of one tenant across all apps (graph-spec §7.2: 18,000 writes / 5 min; RU unlimited).
    pub tenant_quotas: Quotas,
    /// Quota overrides per (tenant id, app id).
    pub quota_overrides: BTreeMap<(String, String), Quotas>,
    /// Token buckets per (tenant id, app id); `("*", app)` app-wide, `(tenant, "*")` tenant-wide.
    pub buckets: BTreeMap<(String, String), Buckets>,
    /// Pending injected faults, matched in order.
    pub faults: Vec<Fault>,
    /// Next fault id.
    pub next_fault_id: u64,
}

impl Default for Realism {
    fn default() -> Self {
        Self {
            replication_lag: Duration::zero(),
            address_release_delay: Duration::zero(),
            fractional_retry_after: false,
            delta_page_size: 100,
            quotas: Quotas::default(),
            app_quotas: Quotas::app_default(),
            tenant_quotas: Quotas::tenant_default(),
            quota_overrides: BTreeMap::new(),
            buckets: BTreeMap::new(),
            faults: Vec::new(),
            next_fault_id: 1,
        }
    }
}

/// Throttling quotas of one (app, tenant) pair: resource units and writes per window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quotas {
    /// Resource units per `resource_unit_window`.
    pub resource_units: f64,
    /// Window of the resource-unit bucket.
    pub resource_unit_window: Duration,
    /// Writes per `write_window`.
    pub writes: f64,
    /// Window of the write bucket.
    pub write_window: Duration,
}

impl Default for Quotas {
    /// The "S" tenant size of graph-spec §7.2: 3,500 RU / 10 s and 3,000 writes / 2 min 30 s.
    fn default() -> Self {
        Self {
            resource_units: 3500.0,
            resource_unit_window: Duration::seconds(10),
            writes: 3000.0,
            write_window: Duration::seconds(150),
        }
    }
}

impl Quotas {
    /// One app across all tenants: 150,000 RU / 20 s and 70,000 writes / 5 min.
    #[must_use]
    pub fn app_default() -> Self {
        Self {
            resource_units: 150_000.0,
            resource_unit_window: Duration::seconds(20),
            writes: 70_000.0,
            write_window: Duration::minutes(5),
        }
    }

    /// One tenant across all apps: 18,000 writes / 5 min (no RU limit, modelled as 1e12).
    #[must_use]
    pub fn tenant_default() -> Self {
        Self {
            resource_units: 1e12,
            resource_unit_window: Duration::seconds(10),
            writes: 18_000.0,
            write_window: Duration::minutes(5),
        }
    }
}

/// The two token buckets of a throttling scope (pair, app-wide or tenant-wide).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buckets {
    /// Resource units left.
    pub resource_units: f64,
    /// Writes left.
    pub writes: f64,
    /// When the levels were last refilled.
    pub updated: DateTime<Utc>,
}

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// 429 with the §7.1 body and headers.
    #[serde(rename = "429")]
    TooManyRequests,
    /// 503 `serviceNotAvailable` with `Retry-After`.
    #[serde(rename = "503")]
    ServiceUnavailable,
    /// 504 Gateway Timeout.
    #[serde(rename = "504")]
    GatewayTimeout,
    /// 502 with an empty body (a proxy answered).
    #[serde(rename = "502-empty")]
    BadGatewayEmpty,
    /// The request is executed (the write commits), then the response is delayed by `delayMs`.
    TimeoutAfterCommit,
    /// The request is executed, then the connection is dropped without a response.
    DropAfterCommit,
}

/// An injected fault: the next `remaining` requests matching method and path get `kind`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Id (for listing).
    pub id: u64,
    /// HTTP method to match; `None` = any.
    pub method: Option<String>,
    /// Path to match exactly (e.g. `/v1.0/users`), or a prefix when it ends with `*`.
    pub path: String,
    /// Tenant id to match; `None` = any.
    pub tenant: Option<String>,
    /// What happens.
    pub kind: FaultKind,
    /// How many more requests it applies to.
    pub remaining: u32,
    /// Delay for `timeout-after-commit`, in milliseconds.
    pub delay_ms: u64,
    /// `Retry-After` value for 429/503 (default `1`).
    pub retry_after: Option<String>,
    /// 503/504 with an empty body instead of the JSON error.
    pub empty_body: bool,
}

/// An address (UPN, mail or proxy address) still taken by a soft-deleted user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAddress {
    /// The deleted user holding it.
    pub user_id: String,
    /// When it becomes free.
    pub release_at: DateTime<Utc>,
}

impl Tenant {
    /// Whether `name` is one of the tenant's domains (case-insensitive).
    #[must_use]
    pub fn domain(&self, name: &str) -> Option<&Domain> {
        self.domains
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name))
    }

    /// The active (not soft-deleted) user with this UPN (case-insensitive).
    #[must_use]
    pub fn active_user_by_upn(&self, upn: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.deleted_at.is_none() && u.upn().eq_ignore_ascii_case(upn))
    }

    /// The admin entry and user for this UPN, if the user is an admin of the tenant.
    #[must_use]
    pub fn admin_by_upn(&self, upn: &str) -> Option<(&Admin, &User)> {
        let user = self.active_user_by_upn(upn)?;
        self.admins.get(&user.id).map(|a| (a, user))
    }
}

impl User {
    /// The user's UPN.
    #[must_use]
    pub fn upn(&self) -> &str {
        self.properties
            .get("userPrincipalName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Whether sign-in is allowed (`accountEnabled`).
    #[must_use]
    pub fn account_enabled(&self) -> bool {
        self.properties
            .get("accountEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(true)
    }

    /// The display name.
    #[must_use]
    pub fn display_name(&self) -> &str {
        self.properties
            .get("displayName")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

impl State {
    /// Builds the state from a seed, with the clock at wall-clock time.
    ///
    /// # Errors
    /// A [`SeedError`] naming the first inconsistency (duplicate ids/domains, unknown grant
    /// tenant, unknown group member, duplicate user).
    pub fn from_seed(seed: Seed) -> Result<Self, SeedError> {
        let mut state = State::default();
        let now = state.clock.now();
        for t in seed.tenants {
            let tenant = build_tenant(t, now)?;
            for d in &tenant.domains {
                if state.resolve_tenant(&d.name).is_some() {
                    return Err(SeedError::DuplicateTenant(d.name.clone()));
                }
            }
            if state.tenants.contains_key(&tenant.id) {
                return Err(SeedError::DuplicateTenant(tenant.id.clone()));
            }
            state.tenants.insert(tenant.id.clone(), tenant);
        }
        for a in seed.applications {
            let app_id = a.app_id.to_ascii_lowercase();
            if state.applications.contains_key(&app_id) {
                return Err(SeedError::DuplicateApplication(app_id));
            }
            for g in a.grants {
                let tenant_id = state
                    .resolve_tenant(&g.tenant)
                    .map(|t| t.id.clone())
                    .ok_or_else(|| SeedError::UnknownGrantTenant {
                        app: app_id.clone(),
                        tenant: g.tenant.clone(),
                    })?;
                if let Some(tenant) = state.tenants.get_mut(&tenant_id) {
                    // The app's service principal is a member of these roles: activate them.
                    for name in &g.directory_roles {
                        if let Some(template) = crate::roles::template(name) {
                            tenant.activate_role(template);
                        }
                    }
                    tenant.app_grants.insert(
                        app_id.clone(),
                        AppGrant {
                            roles: g.roles.into_iter().collect(),
                            directory_roles: g.directory_roles.into_iter().collect(),
                            service_principal_id: new_id(),
                        },
                    );
                }
            }
            state.applications.insert(
                app_id.clone(),
                Application {
                    app_id,
                    display_name: a.display_name,
                    secrets: a
                        .secrets
                        .into_iter()
                        .map(|s| ClientSecret {
                            value: s.value,
                            expires_at: s.expires_at,
                        })
                        .collect(),
                    redirect_uris: a.redirect_uris,
                    required_roles: a.required_roles,
                    required_scopes: a.required_scopes,
                },
            );
        }
        Ok(state)
    }

    /// Finds a tenant by id (GUID) or by one of its domain names (case-insensitive), as the
    /// `{tenant}` segment of identity-platform URLs does.
    #[must_use]
    pub fn resolve_tenant(&self, key: &str) -> Option<&Tenant> {
        let key_lower = key.to_ascii_lowercase();
        self.tenants
            .get(&key_lower)
            .or_else(|| self.tenants.values().find(|t| t.domain(key).is_some()))
    }

    /// Mutable variant of [`State::resolve_tenant`].
    pub fn resolve_tenant_mut(&mut self, key: &str) -> Option<&mut Tenant> {
        let id = self.resolve_tenant(key)?.id.clone();
        self.tenants.get_mut(&id)
    }
}

/// A fresh lower-case GUID.
#[must_use]
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn build_tenant(seed: TenantSeed, now: DateTime<Utc>) -> Result<Tenant, SeedError> {
    let mut tenant = Tenant {
        id: seed.id.to_ascii_lowercase(),
        display_name: seed.display_name,
        created_at: now,
        domains: seed
            .domains
            .into_iter()
            .map(|d| Domain {
                name: d.name,
                authentication_type: d.authentication_type,
                is_verified: d.is_verified,
                is_default: d.is_default,
                is_initial: d.is_initial,
            })
            .collect(),
        users: BTreeMap::new(),
        groups: BTreeMap::new(),
        admins: BTreeMap::new(),
        app_grants: BTreeMap::new(),
        skus: seed
            .skus
            .into_iter()
            .map(|s| Sku {
                sku_id: s.sku_id.to_ascii_lowercase(),
                sku_part_number: s.sku_part_number,
                enabled_units: s.enabled_units,
                service_plans: s.service_plans,
            })
            .collect(),
        audits: Vec::new(),
        changes: Vec::new(),
        next_change: 1,
        held_addresses: BTreeMap::new(),
        request_counts: BTreeMap::new(),
        delta_epoch: 0,
        directory_roles: BTreeMap::new(),
        managers: BTreeMap::new(),
    };
    // Only the Global Administrator role is activated in every tenant (Graph docs,
    // `directoryRole`); the others on first assignment.
    if let Some(global) = crate::roles::template("Global Administrator") {
        tenant.activate_role(global);
    }
    // UPN (ASCII lower case, as `active_user_by_upn` compares) -> user id of every seeded user,
    // so each lookup is O(1) instead of a scan of the tenant (seeding stays linear).
    let mut by_upn = UpnIndex::default();
    let mut role_grants: Vec<(String, &'static crate::roles::RoleTemplate)> = Vec::new();
    for mut u in seed.users {
        if by_upn.get(&u.user_principal_name).is_some() {
            return Err(SeedError::DuplicateUser(u.user_principal_name));
        }
        let roles = std::mem::take(&mut u.roles);
        let user = seeded_user(u, now);
        for name in roles {
            let template = crate::roles::template(&name)
                .ok_or_else(|| SeedError::UnknownRole(name.clone()))?;
            role_grants.push((user.id.clone(), template));
        }
        tenant.record_change(ObjectKind::User, &user.id, now);
        by_upn.insert(&mut tenant, user);
    }
    for a in seed.admins {
        let user_id = match by_upn.get(&a.user_principal_name) {
            Some(id) => id.to_owned(),
            None => {
                let user = seeded_user(
                    UserSeed {
                        id: None,
                        user_principal_name: a.user_principal_name.clone(),
                        display_name: a.display_name.clone(),
                        account_enabled: true,
                        password: None,
                        licenses: Vec::new(),
                        roles: Vec::new(),
                        properties: Map::new(),
                    },
                    now,
                );
                let id = user.id.clone();
                tenant.record_change(ObjectKind::User, &id, now);
                by_upn.insert(&mut tenant, user);
                id
            }
        };
        if let Some(user) = tenant.users.get_mut(&user_id) {
            user.password = Some(a.password);
        }
        let admin_roles = a
            .roles
            .unwrap_or_else(|| vec!["Global Administrator".to_owned()]);
        for name in &admin_roles {
            let template =
                crate::roles::template(name).ok_or_else(|| SeedError::UnknownRole(name.clone()))?;
            role_grants.push((user_id.clone(), template));
        }
        tenant.admins.insert(
            user_id.clone(),
            Admin {
                user_id,
                roles: admin_roles.into_iter().collect(),
                consented_apps: a
                    .consented_apps
                    .into_iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
            },
        );
    }
    for (member, template) in role_grants {
        tenant.grant_role(template, &member);
    }
    let mut groups = Vec::new();
    for g in seed.groups {
        let id = g.id.clone().map_or_else(new_id, |s| s.to_ascii_lowercase());
        groups.push((id, g));
    }
    let group_ids: BTreeSet<String> = groups.iter().map(|(id, _)| id.clone()).collect();
    for (id, g) in groups {
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        for m in &g.members {
            let lower = m.to_ascii_lowercase();
            let member_id = if tenant.users.contains_key(&lower) || group_ids.contains(&lower) {
                lower
            } else if let Some(id) = by_upn.get(m) {
                id.to_owned()
            } else {
                return Err(SeedError::UnknownMember {
                    group: g.display_name.clone(),
                    member: m.clone(),
                });
            };
            if seen.insert(member_id.clone()) {
                members.push(member_id);
            }
        }
        let mut properties = g.properties;
        properties.insert("id".into(), Value::String(id.clone()));
        properties.insert("displayName".into(), Value::String(g.display_name));
        properties.insert("mailNickname".into(), Value::String(g.mail_nickname));
        properties.insert("securityEnabled".into(), Value::Bool(g.security_enabled));
        properties.insert("mailEnabled".into(), Value::Bool(g.mail_enabled));
        properties.insert(
            "groupTypes".into(),
            Value::Array(g.group_types.into_iter().map(Value::String).collect()),
        );
        properties.insert(
            "createdDateTime".into(),
            Value::String(graph_timestamp(now)),
        );
        tenant.record_change(ObjectKind::Group, &id, now);
        tenant.groups.insert(
            id.clone(),
            Group {
                id,
                properties,
                members,
                owners: Vec::new(),
                created_at: now,
                visible_from: now,
                deleted_at: None,
            },
        );
    }
    Ok(tenant)
}

/// The seeded users of one tenant by UPN, kept in step with `Tenant::users` while seeding.
///
/// Seeded users are all active, so a hit here is exactly what [`Tenant::active_user_by_upn`]
/// would find, without scanning the tenant.
#[derive(Debug, Default)]
struct UpnIndex(HashMap<String, String>);

impl UpnIndex {
    /// The id of the seeded user with this UPN (ASCII case-insensitive).
    fn get(&self, upn: &str) -> Option<&str> {
        self.0.get(&upn.to_ascii_lowercase()).map(String::as_str)
    }

    /// Inserts `user` into the tenant and the index. A user replacing one with the same object
    /// id drops the replaced user's UPN, as the replaced user is gone from the tenant.
    fn insert(&mut self, tenant: &mut Tenant, user: User) {
        let upn = user.upn().to_ascii_lowercase();
        let id = user.id.clone();
        if let Some(replaced) = tenant.users.insert(id.clone(), user) {
            let old = replaced.upn().to_ascii_lowercase();
            if self.0.get(&old) == Some(&id) {
                self.0.remove(&old);
            }
        }
        self.0.insert(upn, id);
    }
}

fn seeded_user(u: UserSeed, now: DateTime<Utc>) -> User {
    let id = u.id.map_or_else(new_id, |s| s.to_ascii_lowercase());
    let display_name = u.display_name.unwrap_or_else(|| {
        u.user_principal_name
            .split('@')
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    let mail_nickname = u
        .user_principal_name
        .split('@')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut properties = u.properties;
    properties.insert("id".into(), Value::String(id.clone()));
    properties.insert(
        "userPrincipalName".into(),
        Value::String(u.user_principal_name),
    );
    properties.insert("displayName".into(), Value::String(display_name));
    properties.insert("accountEnabled".into(), Value::Bool(u.account_enabled));
    properties
        .entry("mailNickname")
        .or_insert(Value::String(mail_nickname));
    properties.insert(
        "assignedLicenses".into(),
        Value::Array(
            u.licenses
                .into_iter()
                .map(|sku| {
                    serde_json::json!({"disabledPlans": [], "skuId": sku.to_ascii_lowercase()})
                })
                .collect(),
        ),
    );
    properties.insert(
        "createdDateTime".into(),
        Value::String(graph_timestamp(now)),
    );
    properties.insert(
        "lastPasswordChangeDateTime".into(),
        Value::String(graph_timestamp(now)),
    );
    // As for users created through Graph: sessions valid from creation (assumed, unconfirmed).
    properties
        .entry("signInSessionsValidFromDateTime")
        .or_insert(Value::String(graph_timestamp(now)));
    User {
        id,
        properties,
        password: u.password,
        created_at: now,
        visible_from: now,
        deleted_at: None,
        tokens_valid_from: None,
    }
}

impl Tenant {
    /// Appends a change-log entry for delta queries.
    pub fn record_change(&mut self, kind: ObjectKind, id: &str, at: DateTime<Utc>) {
        let seq = self.next_change;
        self.next_change += 1;
        self.changes.push(Change {
            seq,
            kind,
            id: id.to_owned(),
            at,
            member: None,
        });
    }

    /// Appends a membership change of a group for delta queries.
    pub fn record_member_change(
        &mut self,
        group_id: &str,
        member_id: &str,
        added: bool,
        at: DateTime<Utc>,
    ) {
        let seq = self.next_change;
        self.next_change += 1;
        self.changes.push(Change {
            seq,
            kind: ObjectKind::Group,
            id: group_id.to_owned(),
            at,
            member: Some((member_id.to_owned(), added)),
        });
    }
}

impl Tenant {
    /// Appends a manager change of user `user_id` for delta queries (`manager@delta`, R-ATTR-1).
    pub fn record_manager_change(
        &mut self,
        user_id: &str,
        manager_id: &str,
        assigned: bool,
        at: DateTime<Utc>,
    ) {
        let seq = self.next_change;
        self.next_change += 1;
        self.changes.push(Change {
            seq,
            kind: ObjectKind::User,
            id: user_id.to_owned(),
            at,
            member: Some((manager_id.to_owned(), assigned)),
        });
    }
}

/// Graph's timestamp format for `DateTimeOffset` properties: `2021-09-21T07:09:14Z`.
#[must_use]
pub fn graph_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(json: &str) -> Result<State, SeedError> {
        State::from_seed(Seed::from_json(json)?)
    }

    const TENANT: &str = r#"{"id": "0C5A7F3E-2D1B-4E6A-9F80-1A2B3C4D5E6F", "displayName": "T",
        "domains": [{"name": "t.onmicrosoft.com", "authenticationType": "Managed", "isInitial": true}]"#;

    // Seed format (README): ids are stored lower case and tenants resolve by id or domain.
    #[test]
    fn tenants_resolve_by_id_or_domain_case_insensitively() {
        let state = seed(&format!(r#"{{"tenants": [{TENANT}}}]}}"#)).expect("valid seed");
        assert!(
            state
                .resolve_tenant("0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f")
                .is_some()
        );
        assert!(state.resolve_tenant("T.ONMICROSOFT.COM").is_some());
        assert!(state.resolve_tenant("other.com").is_none());
    }

    // Seed format: admins become users with a password; group members may be UPNs.
    #[test]
    fn admins_become_users_and_members_resolve_by_upn() {
        let json = format!(
            r#"{{"tenants": [{TENANT}, "users": [{{"userPrincipalName": "a@t.onmicrosoft.com"}}],
               "groups": [{{"displayName": "G", "mailNickname": "g", "members": ["A@t.onmicrosoft.com"]}}],
               "admins": [{{"userPrincipalName": "boss@t.onmicrosoft.com", "password": "x"}}]}}]}}"#
        );
        let state = seed(&json).expect("valid seed");
        let t = state.resolve_tenant("t.onmicrosoft.com").expect("tenant");
        let (admin, user) = t.admin_by_upn("boss@t.onmicrosoft.com").expect("admin");
        assert!(user.password.is_some());
        assert!(admin.roles.contains("Global Administrator"));
        let g = t.groups.values().next().expect("group");
        assert_eq!(g.members.len(), 1);
    }

    // Seed format: inconsistencies are refused with a typed error.
    #[test]
    fn inconsistent_seeds_are_refused() {
        let unknown_member = format!(
            r#"{{"tenants": [{TENANT}, "groups": [{{"displayName": "G", "mailNickname": "g", "members": ["ghost@t.onmicrosoft.com"]}}]}}]}}"#
        );
        assert!(matches!(
            seed(&unknown_member),
            Err(SeedError::UnknownMember { .. })
        ));
        let duplicate = format!(r#"{{"tenants": [{TENANT}}}, {TENANT}}}]}}"#);
        assert!(matches!(
            seed(&duplicate),
            Err(SeedError::DuplicateTenant(_))
        ));
        let bad_grant = r#"{"applications": [{"appId": "x", "displayName": "x", "grants": [{"tenant": "nowhere"}]}]}"#;
        assert!(matches!(
            seed(bad_grant),
            Err(SeedError::UnknownGrantTenant { .. })
        ));
        assert!(matches!(
            seed(r#"{"tenants": [], "typo": 1}"#),
            Err(SeedError::Parse(_))
        ));
    }

    // Seed format: UPNs are unique per tenant ignoring ASCII case; admins and group members
    // find seeded users by UPN in any case, and a member named twice is listed once.
    #[test]
    fn seeded_upns_are_matched_case_insensitively() {
        let duplicate = format!(
            r#"{{"tenants": [{TENANT}, "users": [{{"userPrincipalName": "a@t.onmicrosoft.com"}},
               {{"userPrincipalName": "A@T.onmicrosoft.com"}}]}}]}}"#
        );
        assert!(matches!(
            seed(&duplicate),
            Err(SeedError::DuplicateUser(upn)) if upn == "A@T.onmicrosoft.com"
        ));
        let json = format!(
            r#"{{"tenants": [{TENANT}, "users": [{{"id": "AAAAAAAA-0000-0000-0000-000000000001", "userPrincipalName": "a@t.onmicrosoft.com"}}],
               "groups": [{{"displayName": "G", "mailNickname": "g",
                            "members": ["A@T.ONMICROSOFT.COM", "aaaaaaaa-0000-0000-0000-000000000001", "boss@t.onmicrosoft.com"]}}],
               "admins": [{{"userPrincipalName": "A@t.onmicrosoft.com", "password": "x"}},
                          {{"userPrincipalName": "boss@t.onmicrosoft.com", "password": "y"}},
                          {{"userPrincipalName": "BOSS@t.onmicrosoft.com", "password": "z"}}]}}]}}"#
        );
        let state = seed(&json).expect("valid seed");
        let t = state.resolve_tenant("t.onmicrosoft.com").expect("tenant");
        assert_eq!(t.users.len(), 2, "admins reuse the users with their UPN");
        assert_eq!(t.admins.len(), 2);
        let (_, a) = t
            .admin_by_upn("a@t.onmicrosoft.com")
            .expect("seeded user is admin");
        assert_eq!(a.id, "aaaaaaaa-0000-0000-0000-000000000001");
        let (_, boss) = t
            .admin_by_upn("boss@t.onmicrosoft.com")
            .expect("created admin");
        let g = t.groups.values().next().expect("group");
        assert_eq!(g.members, vec![a.id.clone(), boss.id.clone()]);
    }

    // Seed format: a later user with the same object id replaces the earlier one, whose UPN is
    // then free again (as it was before seeding used an index).
    #[test]
    fn a_replaced_seed_user_frees_its_upn() {
        let json = format!(
            r#"{{"tenants": [{TENANT}, "users": [
               {{"id": "aaaaaaaa-0000-0000-0000-000000000001", "userPrincipalName": "old@t.onmicrosoft.com"}},
               {{"id": "aaaaaaaa-0000-0000-0000-000000000001", "userPrincipalName": "new@t.onmicrosoft.com"}},
               {{"userPrincipalName": "old@t.onmicrosoft.com"}}]}}]}}"#
        );
        let state = seed(&json).expect("valid seed");
        let t = state.resolve_tenant("t.onmicrosoft.com").expect("tenant");
        assert_eq!(t.users.len(), 2);
        let old = t.active_user_by_upn("old@t.onmicrosoft.com").expect("old");
        assert_ne!(old.id, "aaaaaaaa-0000-0000-0000-000000000001");
        assert!(t.active_user_by_upn("new@t.onmicrosoft.com").is_some());
    }

    // The shipped example seed is valid.
    #[test]
    fn the_example_seed_loads() {
        let text = include_str!("../seeds/example.json");
        let state = seed(text).expect("example seed");
        assert_eq!(state.tenants.len(), 2);
        assert_eq!(state.applications.len(), 2);
    }
}
