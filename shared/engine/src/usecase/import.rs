//! Import (R-IMP-1, R-IMP-2): an admin pages through a tenant's M365 users, each row saying
//! whether it is `new`, already `imported` (linked to a directory user) or in `conflict` (a
//! directory user has that email but is not linked to this account), and imports selected ones
//! as directory users bound to their existing accounts — without writing anything to M365.
//!
//! Cost stays flat with the tenant's size: one page call reads exactly one Graph page (`$top`
//! ≤ 999, `$select`, the prefix filtered by M365 itself) and looks each of its rows up in the
//! stores, so a 100,000-user tenant is walked page by page with the same cost per call. The
//! status filter is applied to the page read, so a page may hold fewer rows than asked for
//! (even none) while `nextCursor` says there is more.
//!
//! A privileged account — one holding a directory role, or the admin who consented the
//! connection — is not imported (`privileged_account`, the others still import) unless the
//! request says `adoptPrivileged`; its binding then remembers it (R-BIND-11). The tenant's
//! privileged accounts are read once per import request ([`super::privilege`]).
//!
//! The cursor handed to the caller is opaque and tamper-evident: it carries Graph's nextLink
//! (graph-spec §2.3: follow it whole), the tenant, the filters and an expiry, signed with
//! HMAC-SHA256 under a key only the deployment holds ([`CursorKey`], shared with every other
//! listing's cursors: `crate::policy::cursor`). A cursor altered, made up, expired or taken to
//! another tenant is refused with `invalid_cursor` before any Graph call.

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use crate::error::{Conflict, Error, FieldProblem, InvalidInput, Result};
use crate::model::{
    Binding, BindingState, DirectoryUser, Email, M365ObjectId, M365User, PageRequest, PageToken,
    Tenant, TenantId, TenantStatus, UserId,
};
use crate::policy::routing::{RoutingError, resolve_tenant};
use crate::ports::Ports;
use crate::ports::{BindingStore, Clock, Directory, Expect, UserStore};

use super::privilege::PrivilegedAccounts;

/// Rows per page when the caller does not say.
pub const DEFAULT_IMPORT_PAGE: u32 = 100;
/// Largest page: Graph's largest `$top` for directory collections (graph-spec §2.3).
pub const MAX_IMPORT_PAGE: u32 = 999;
/// Most accounts one import request may select (bounds the request's work and duration).
pub const MAX_IMPORT_BATCH: usize = 100;
/// Longest prefix filter (characters).
pub const MAX_PREFIX_LEN: usize = 64;
/// How long a cursor stays valid. Graph's skip tokens are short-lived too; an expired walk
/// starts again from the first page.
pub const CURSOR_LIFETIME: TimeDelta = TimeDelta::hours(1);
/// Store lookups (or Graph reads on import) in flight at once.
const CONCURRENCY: usize = 16;
/// Format version of the cursor state.
const CURSOR_VERSION: u8 = 1;
/// Prefix of the id given to an imported directory user: `m365-<object id>`, deterministic so a
/// repeated or interrupted import finds its own earlier work.
pub const IMPORTED_USER_ID_PREFIX: &str = "m365-";

pub use crate::policy::cursor::CursorKey;

/// Purpose of import cursors (keeps them apart from other signed cursors).
const IMPORT_PURPOSE: &str = "import";

/// The per-account failure code of a privileged account not opted in (R-BIND-11).
const PRIVILEGED: &str = "privileged_account";

/// What an import request decides privileged accounts by.
#[derive(Debug, Clone, Copy)]
struct Guard<'p> {
    privileged: &'p PrivilegedAccounts,
    adopt: bool,
}

/// What the signed cursor remembers between page calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CursorState {
    /// Format version.
    v: u8,
    /// The tenant walked.
    t: String,
    /// Status filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<ImportStatus>,
    /// Prefix filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    p: Option<String>,
    /// Page size.
    l: u32,
    /// Graph's nextLink.
    n: String,
    /// Expiry (Unix seconds).
    e: i64,
}

/// Where an M365 user stands with the directory (R-IMP-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// No directory user has its email.
    New,
    /// A directory user is linked (bound) to this very account.
    Imported,
    /// A directory user has its email but is not linked to this account.
    Conflict,
}

impl ImportStatus {
    /// The API name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Imported => "imported",
            Self::Conflict => "conflict",
        }
    }

    /// Parses the API name.
    ///
    /// # Errors
    /// `Invalid(Field "status")` for another value.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "new" => Ok(Self::New),
            "imported" => Ok(Self::Imported),
            "conflict" => Ok(Self::Conflict),
            _ => Err(Error::Invalid(InvalidInput::Field {
                field: "status",
                problem: FieldProblem::Empty,
            })),
        }
    }
}

/// A page request of `GET /tenants/{tenantId}/import`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportQuery {
    /// The `nextCursor` of the previous page; `None` for the first.
    pub cursor: Option<String>,
    /// Only rows with this status.
    pub status: Option<ImportStatus>,
    /// Only users whose UPN, mail or display name starts with this (case-insensitive).
    pub prefix: Option<String>,
    /// Rows to read from M365 (1–999, default 100); with a cursor, the cursor's size is kept.
    pub limit: Option<u32>,
}

/// One row of an import page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportRow {
    /// The M365 object id (what `POST …/import` selects).
    pub m365_id: M365ObjectId,
    /// UPN in M365.
    pub user_principal_name: String,
    /// Primary SMTP address.
    pub mail: Option<String>,
    /// Display name.
    pub display_name: String,
    /// Where it stands.
    pub status: ImportStatus,
}

/// One page of `GET /tenants/{tenantId}/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportPage {
    /// The rows of this page that pass the status filter.
    pub users: Vec<ImportRow>,
    /// Pass it back for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

/// What happened to one selected account (R-IMP-2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
pub enum ImportOutcome {
    /// A directory user is linked to the account (created now, or already linked before).
    #[serde(rename = "imported", rename_all = "camelCase")]
    Imported {
        /// The M365 object id as selected.
        m365_id: String,
        /// The linked directory user.
        user_id: UserId,
        /// It was linked before this request (a repeated import changes nothing).
        already: bool,
    },
    /// Not imported; nothing was written for it.
    #[serde(rename = "failed", rename_all = "camelCase")]
    Failed {
        /// The M365 object id as selected.
        m365_id: String,
        /// Why (`email_exists`, `not_found`, `invalid_m365_id`, a routing or email code, …).
        code: String,
    },
}

/// Options of `POST /tenants/{tenantId}/import`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Import privileged accounts too (R-BIND-11; `"adoptPrivileged": true`).
    pub adopt_privileged: bool,
}

impl ImportOutcome {
    fn failed(m365_id: &str, code: &str) -> Self {
        Self::Failed {
            m365_id: m365_id.to_owned(),
            code: code.to_owned(),
        }
    }
}

use_case! {
    /// The import use case: reads M365 through `directory` (never writes to it), writes directory
    /// users and bindings.
    pub struct Import {
        ports: [
            users: Users, bindings: Bindings, tenants: Tenants, directory: Directory, clock: Clock
        ],
        extra: [
            /// The cursor signing key.
            cursor_key: &'a CursorKey,
        ],
    }
}

impl<P: Ports> Import<'_, P> {
    /// One page of the tenant's M365 users with their status (R-IMP-1): one Graph request, and
    /// at most two store reads per row read.
    ///
    /// # Errors
    /// `NotFound` (tenant); `Routing(TenantNotActive)`; `Invalid(Cursor)` for a cursor that is
    /// altered, expired, of another tenant or with other filters; `Invalid(Field)` for a bad
    /// prefix; Graph and store errors.
    pub async fn page(&self, tenant_id: &TenantId, query: &ImportQuery) -> Result<ImportPage> {
        let tenant = self.active_tenant(tenant_id).await?;
        let prefix = match query.prefix.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(p) if p.chars().count() > MAX_PREFIX_LEN => {
                return Err(Error::Invalid(InvalidInput::Field {
                    field: "prefix",
                    problem: FieldProblem::TooLong {
                        max: MAX_PREFIX_LEN,
                    },
                }));
            }
            Some(p) => Some(p.to_owned()),
        };
        let now = self.clock.now();
        let (request, status, prefix) = match &query.cursor {
            None => {
                let limit = query
                    .limit
                    .unwrap_or(DEFAULT_IMPORT_PAGE)
                    .clamp(1, MAX_IMPORT_PAGE);
                (PageRequest::first(limit), query.status, prefix)
            }
            Some(cursor) => {
                let state = self
                    .cursor_key
                    .open::<CursorState>(IMPORT_PURPOSE, cursor)?;
                let expired = DateTime::<Utc>::from_timestamp(state.e, 0).is_none_or(|e| e <= now);
                // Filters given with a cursor must be the cursor's: a page walk keeps its filters.
                let other_filters = (query.status.is_some() && query.status != state.s)
                    || (prefix.is_some() && prefix != state.p);
                if state.v != CURSOR_VERSION
                    || state.t != tenant.id.as_str()
                    || expired
                    || other_filters
                {
                    return Err(Error::Invalid(InvalidInput::Cursor));
                }
                let request = PageRequest::after(PageToken::new(state.n), state.l);
                (request, state.s, state.p)
            }
        };
        let page = match &prefix {
            Some(p) => {
                self.directory
                    .list_users_with_prefix(&tenant.id, p, &request)
                    .await?
            }
            None => self.directory.list_users(&tenant.id, &request).await?,
        };
        // Indices, not references, go through the stream: a closure over a borrowed argument
        // would make the handler's future not `Send` (higher-ranked lifetime inference).
        let items = &page.items;
        let statuses: Vec<Result<ImportStatus>> = futures::stream::iter(0..items.len())
            .map(|i| self.status_of(&tenant.id, &items[i]))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut users = Vec::with_capacity(page.items.len());
        for (user, row_status) in page.items.iter().zip(statuses) {
            let row_status = row_status?;
            if status.is_none_or(|s| s == row_status) {
                users.push(ImportRow {
                    m365_id: user.id.clone(),
                    user_principal_name: user.user_principal_name.clone(),
                    mail: user.mail.clone(),
                    display_name: user.display_name.clone(),
                    status: row_status,
                });
            }
        }
        let next_cursor = match page.next {
            None => None,
            Some(next) => Some(self.cursor_key.seal(
                IMPORT_PURPOSE,
                &CursorState {
                    v: CURSOR_VERSION,
                    t: tenant.id.as_str().to_owned(),
                    s: status,
                    p: prefix,
                    l: u32::try_from(request.limit()).unwrap_or(MAX_IMPORT_PAGE),
                    n: next.as_str().to_owned(),
                    e: (now + CURSOR_LIFETIME).timestamp(),
                },
            )?),
        };
        tracing::info!(tenant.id = %tenant.id, rows = users.len(), more = next_cursor.is_some(), "import page read");
        Ok(ImportPage { users, next_cursor })
    }

    /// Imports the selected accounts (R-IMP-2): each becomes a directory user (id
    /// `m365-<object id>`, email = UPN, names from M365) with a binding to the account in state
    /// `provisioned` (`blocked` when sign-in is blocked in M365). M365 is only read. Each account
    /// succeeds or fails on its own; an email already in the directory fails with
    /// `email_exists`. Repeating an import answers `imported` (`already`) and writes nothing.
    ///
    /// # Errors
    /// `NotFound` (tenant); `Routing(TenantNotActive)`; `Invalid(Field "m365Ids")` for an empty
    /// or too long selection. Per-account problems are outcomes, not errors.
    pub async fn import(&self, tenant_id: &TenantId, ids: &[String]) -> Result<Vec<ImportOutcome>> {
        self.import_with(tenant_id, ids, ImportOptions::default())
            .await
    }

    /// [`Self::import`] with `options`: without `adopt_privileged` a privileged account (a
    /// directory role, or the connection's consenting admin) fails with `privileged_account`
    /// while the others import; with it, it imports and its binding remembers the opt-in
    /// (R-BIND-11). The tenant's privileged accounts are read once per request.
    ///
    /// # Errors
    /// As [`Self::import`]; Graph errors reading the privileged accounts (nothing is written).
    pub async fn import_with(
        &self,
        tenant_id: &TenantId,
        ids: &[String],
        options: ImportOptions,
    ) -> Result<Vec<ImportOutcome>> {
        if ids.is_empty() {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "m365Ids",
                problem: FieldProblem::Empty,
            }));
        }
        if ids.len() > MAX_IMPORT_BATCH {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "m365Ids",
                problem: FieldProblem::TooLong {
                    max: MAX_IMPORT_BATCH,
                },
            }));
        }
        let tenant = self.active_tenant(tenant_id).await?;
        let mut unique: Vec<&str> = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.contains(&id.as_str()) {
                unique.push(id);
            }
        }
        // Accounts of one request are imported one after another: two selected accounts may
        // share an email, and the email claim must decide between them deterministically.
        let mut outcomes = Vec::with_capacity(unique.len());
        // The selected accounts are read from M365 a few at a time (reads only, order kept).
        let fetched: Vec<Result<Option<M365User>>> = futures::stream::iter(0..unique.len())
            .map(|i| self.fetch(&tenant.id, unique[i]))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        // Read only when some account is there to import (a selection of unknown ids costs nothing).
        let privileged = if fetched.iter().any(|f| matches!(f, Ok(Some(_)))) {
            PrivilegedAccounts::load(self.directory, &tenant.id).await?
        } else {
            PrivilegedAccounts::default()
        };
        let guard = Guard {
            privileged: &privileged,
            adopt: options.adopt_privileged,
        };
        for (raw, fetched) in unique.into_iter().zip(fetched) {
            let outcome = self.import_one(&tenant, raw, fetched, guard).await;
            match &outcome {
                ImportOutcome::Imported {
                    user_id, already, ..
                } => {
                    tracing::info!(tenant.id = %tenant.id, user.id = %user_id, already, "m365 user imported");
                }
                ImportOutcome::Failed { code, .. } => {
                    tracing::info!(tenant.id = %tenant.id, error.code = %code, "m365 user not imported");
                }
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn active_tenant(&self, id: &TenantId) -> Result<Tenant> {
        let tenant = super::stored_tenant(self.tenants, id).await?;
        if tenant.status != TenantStatus::Active {
            return Err(Error::Routing(RoutingError::TenantNotActive {
                tenant: tenant.id.clone(),
                status: tenant.status,
            }));
        }
        Ok(tenant)
    }

    /// Whether `user` (the directory user with an email) is bound to `account` in `tenant`.
    async fn linked(
        &self,
        user: &UserId,
        tenant: &TenantId,
        account: &M365ObjectId,
    ) -> Result<bool> {
        Ok(self
            .bindings
            .get(user)
            .await?
            .is_some_and(|b| links(&b, tenant, account)))
    }

    async fn status_of(&self, tenant: &TenantId, m365: &M365User) -> Result<ImportStatus> {
        // A UPN that is no directory email (a guest's `#EXT#` name) cannot clash with one.
        let Ok(email) = Email::parse(&m365.user_principal_name) else {
            return Ok(ImportStatus::New);
        };
        match self.users.get_by_email(&email).await? {
            None => Ok(ImportStatus::New),
            Some(user) if self.linked(&user.id, tenant, &m365.id).await? => {
                Ok(ImportStatus::Imported)
            }
            Some(_) => Ok(ImportStatus::Conflict),
        }
    }

    /// The selected account, `None` for an id that is no object id or no active user.
    async fn fetch(&self, tenant: &TenantId, raw: &str) -> Result<Option<M365User>> {
        match M365ObjectId::parse(raw) {
            Ok(id) => self.directory.get_user(tenant, &id).await,
            Err(_) => Ok(None),
        }
    }

    async fn import_one(
        &self,
        tenant: &Tenant,
        raw: &str,
        fetched: Result<Option<M365User>>,
        guard: Guard<'_>,
    ) -> ImportOutcome {
        match self.try_import(tenant, raw, fetched, guard).await {
            Ok(outcome) => outcome,
            Err(e) => ImportOutcome::failed(raw, e.code()),
        }
    }

    async fn try_import(
        &self,
        tenant: &Tenant,
        raw: &str,
        fetched: Result<Option<M365User>>,
        guard: Guard<'_>,
    ) -> Result<ImportOutcome> {
        let Ok(id) = M365ObjectId::parse(raw) else {
            return Ok(ImportOutcome::failed(raw, "invalid_m365_id"));
        };
        let Some(m365) = fetched? else {
            return Ok(ImportOutcome::failed(raw, "not_found"));
        };
        let email = Email::parse(&m365.user_principal_name).map_err(InvalidInput::from)?;
        // The directory routes the email's domain to a tenant (R-BIND-1): it must be this one, or
        // later work on the user would go elsewhere.
        match resolve_tenant(self.tenants, &email).await {
            Ok(routed) if routed.id == tenant.id => {}
            Ok(_) => return Ok(ImportOutcome::failed(raw, "domain_of_another_tenant")),
            Err(e) => return Ok(ImportOutcome::failed(raw, e.code())),
        }
        let privileged = guard.privileged.of(&id).is_privileged();
        let refused = privileged && !guard.adopt;
        let user_id =
            UserId::parse(format!("{IMPORTED_USER_ID_PREFIX}{id}")).map_err(InvalidInput::from)?;
        let imported = |already| ImportOutcome::Imported {
            m365_id: raw.to_owned(),
            user_id: user_id.clone(),
            already,
        };
        match self.users.get_by_email(&email).await? {
            Some(existing) if self.linked(&existing.id, &tenant.id, &id).await? => {
                return Ok(ImportOutcome::Imported {
                    m365_id: raw.to_owned(),
                    user_id: existing.id,
                    already: true,
                });
            }
            Some(_) if refused => return Ok(ImportOutcome::failed(raw, PRIVILEGED)),
            // Our own user from an import interrupted before its binding: finish it below.
            Some(existing) if existing.id == user_id => {}
            Some(_) => return Ok(ImportOutcome::failed(raw, "email_exists")),
            None if refused => return Ok(ImportOutcome::failed(raw, PRIVILEGED)),
            None => {
                let user = directory_user(&user_id, &email, &m365);
                user.validate()?;
                match self.users.create(&user).await {
                    Ok(_) => {}
                    Err(Error::Conflict(Conflict::EmailExists { .. })) => {
                        return Ok(ImportOutcome::failed(raw, "email_exists"));
                    }
                    // The id is taken by an earlier import of this account whose UPN changed since.
                    Err(Error::Conflict(Conflict::AlreadyExists { .. })) => {
                        return Ok(ImportOutcome::failed(raw, "already_imported"));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let binding = Binding {
            user_id: user_id.clone(),
            tenant_id: tenant.id.clone(),
            m365_object_id: Some(id.clone()),
            // The account is taken as it is (nothing is written to M365): a blocked one stays blocked.
            state: if m365.account_enabled {
                BindingState::Provisioned
            } else {
                BindingState::Blocked
            },
            pending_reason: None,
            last_error: None,
            in_flight: None,
            m365_password_changed_at: None,
            version: 0,
            suspended_reason: None,
            pushed_password_set_at: None,
            adopted_privileged: privileged,
            account_lookup_version: None,
            restored: false,
            restore_conflict: None,
            licensing: None,
        };
        match self.bindings.put(&binding, Expect::Absent).await {
            Ok(_) => Ok(imported(false)),
            Err(Error::Conflict(Conflict::StaleVersion { .. })) => {
                // A concurrent import of the same account got there first, or someone bound the user.
                if self.linked(&user_id, &tenant.id, &id).await? {
                    Ok(imported(true))
                } else {
                    Ok(ImportOutcome::failed(raw, "bound_elsewhere"))
                }
            }
            Err(e) => Err(e),
        }
    }
}

fn links(binding: &Binding, tenant: &TenantId, account: &M365ObjectId) -> bool {
    &binding.tenant_id == tenant
        && binding.m365_object_id.as_ref() == Some(account)
        && !matches!(
            binding.state,
            BindingState::Unselected | BindingState::DeletedInM365
        )
}

fn directory_user(id: &UserId, email: &Email, m365: &M365User) -> DirectoryUser {
    let display_name = if m365.display_name.trim().is_empty() {
        email.local_part().to_owned()
    } else {
        m365.display_name.clone()
    };
    let mut user = DirectoryUser::new(id.clone(), email.clone(), display_name);
    user.given_name.clone_from(&m365.given_name);
    user.surname.clone_from(&m365.surname);
    user.job_title.clone_from(&m365.job_title);
    user.department.clone_from(&m365.department);
    user.attributes.clone_from(&m365.attributes);
    user
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use secrecy::SecretString;

    use super::*;
    use crate::model::NewM365User;
    use crate::ports::TenantStore;
    use crate::usecase::testkit::{World, email, uid};

    fn key() -> CursorKey {
        CursorKey::new(SecretString::from("k".repeat(48))).unwrap()
    }

    async fn m365(w: &World, local: &str, display: &str, enabled: bool) -> M365User {
        w.directory
            .create_user(
                &w.tenant.id,
                &NewM365User {
                    user_principal_name: email(&format!("{local}@contoso.com")),
                    mail_nickname: local.to_owned(),
                    display_name: display.to_owned(),
                    given_name: Some(format!("{display}-given")),
                    surname: None,
                    job_title: Some("Engineer".to_owned()),
                    department: None,
                    attributes: crate::testing::contract::every_attribute(),
                    account_enabled: enabled,
                    password: SecretString::from("Str0ng!Passw0rd"),
                },
            )
            .await
            .unwrap()
    }

    fn importer<'a>(w: &'a World, key: &'a CursorKey) -> Import<'a, World> {
        Import {
            actor: &w.actor,
            users: &w.users,
            bindings: &w.bindings,
            tenants: &w.tenants,
            directory: &w.directory,
            clock: &w.clock,
            cursor_key: key,
        }
    }

    fn status_of(page: &ImportPage, upn: &str) -> Option<ImportStatus> {
        page.users
            .iter()
            .find(|r| r.user_principal_name == upn)
            .map(|r| r.status)
    }

    #[tokio::test]
    async fn each_row_says_new_imported_or_conflict() {
        // R-IMP-1
        let w = World::new().await;
        let k = key();
        let adele = m365(&w, "adele", "Adele", true).await;
        m365(&w, "bob", "Bob", true).await;
        m365(&w, "carol", "Carol", true).await;
        // carol@ exists in the directory, not linked to the account: conflict.
        w.user("carol").await;
        let import = importer(&w, &k);
        import
            .import(&w.tenant.id, &[adele.id.to_string()])
            .await
            .unwrap();
        let page = import
            .page(&w.tenant.id, &ImportQuery::default())
            .await
            .unwrap();
        assert_eq!(page.users.len(), 3);
        assert_eq!(
            status_of(&page, "adele@contoso.com"),
            Some(ImportStatus::Imported)
        );
        assert_eq!(status_of(&page, "bob@contoso.com"), Some(ImportStatus::New));
        assert_eq!(
            status_of(&page, "carol@contoso.com"),
            Some(ImportStatus::Conflict)
        );
        assert_eq!(page.next_cursor, None);
    }

    #[tokio::test]
    async fn a_user_bound_to_another_account_is_a_conflict_not_imported() {
        // R-IMP-1
        let w = World::new().await;
        let k = key();
        let dave = m365(&w, "dave", "Dave", true).await;
        w.user("dave").await;
        // A binding of the directory user to some other account.
        let mut b = Binding::pending(uid("dave"), w.tenant.id.clone(), "x");
        b.state = BindingState::Provisioned;
        b.m365_object_id = Some(M365ObjectId::generate());
        w.bindings.put(&b, Expect::Absent).await.unwrap();
        let page = importer(&w, &k)
            .page(&w.tenant.id, &ImportQuery::default())
            .await
            .unwrap();
        assert_eq!(page.users[0].m365_id, dave.id);
        assert_eq!(page.users[0].status, ImportStatus::Conflict);
    }

    #[tokio::test]
    async fn status_and_prefix_filters_select_rows() {
        // R-IMP-1
        let w = World::new().await;
        let k = key();
        m365(&w, "anna", "Anna", true).await;
        m365(&w, "andy", "Andy", true).await;
        m365(&w, "zoe", "Zoe", true).await;
        w.user("andy").await;
        let import = importer(&w, &k);
        let prefixed = import
            .page(
                &w.tenant.id,
                &ImportQuery {
                    prefix: Some("AN".to_owned()),
                    ..ImportQuery::default()
                },
            )
            .await
            .unwrap();
        let mut upns: Vec<&str> = prefixed
            .users
            .iter()
            .map(|r| r.user_principal_name.as_str())
            .collect();
        upns.sort_unstable();
        assert_eq!(upns, ["andy@contoso.com", "anna@contoso.com"]);
        let conflicts = import
            .page(
                &w.tenant.id,
                &ImportQuery {
                    status: Some(ImportStatus::Conflict),
                    ..ImportQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(conflicts.users.len(), 1);
        assert_eq!(conflicts.users[0].user_principal_name, "andy@contoso.com");
        let new_an = import
            .page(
                &w.tenant.id,
                &ImportQuery {
                    status: Some(ImportStatus::New),
                    prefix: Some("an".to_owned()),
                    ..ImportQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(new_an.users.len(), 1);
        assert_eq!(new_an.users[0].user_principal_name, "anna@contoso.com");
    }

    #[tokio::test]
    async fn pages_walk_every_user_once_with_one_directory_call_each() {
        // R-IMP-1 (one page per call, Graph paging underneath)
        let w = World::new().await;
        let k = key();
        for i in 0..25 {
            m365(&w, &format!("u{i:02}"), &format!("User {i}"), true).await;
        }
        let import = importer(&w, &k);
        let mut seen = std::collections::BTreeSet::new();
        let mut query = ImportQuery {
            limit: Some(10),
            ..ImportQuery::default()
        };
        let mut pages = 0;
        loop {
            let before = w.directory.calls();
            let page = import.page(&w.tenant.id, &query).await.unwrap();
            assert_eq!(w.directory.calls() - before, 1);
            pages += 1;
            assert!(page.users.len() <= 10);
            for r in &page.users {
                assert!(seen.insert(r.m365_id.clone()), "a row came twice");
            }
            match page.next_cursor {
                Some(c) => {
                    query = ImportQuery {
                        cursor: Some(c),
                        ..ImportQuery::default()
                    }
                }
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(seen.len(), 25);
    }

    async fn first_cursor(w: &World, k: &CursorKey) -> String {
        for i in 0..3 {
            m365(w, &format!("p{i}"), &format!("P {i}"), true).await;
        }
        importer(w, k)
            .page(
                &w.tenant.id,
                &ImportQuery {
                    limit: Some(1),
                    ..ImportQuery::default()
                },
            )
            .await
            .unwrap()
            .next_cursor
            .unwrap()
    }

    #[tokio::test]
    async fn an_altered_or_made_up_cursor_is_refused_before_any_m365_call() {
        // R-IMP-1 (tamper-evident cursor), R-SAFE-1
        let w = World::new().await;
        let k = key();
        let cursor = first_cursor(&w, &k).await;
        let (payload, tag) = cursor.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        // Point the nextLink elsewhere, keep the old tag.
        bytes = text.replace("\"l\":1", "\"l\":999").into_bytes();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&bytes));
        let other_key = CursorKey::new(SecretString::from("x".repeat(48))).unwrap();
        let resigned = other_key
            .seal(
                IMPORT_PURPOSE,
                &serde_json::from_slice::<CursorState>(&bytes).unwrap(),
            )
            .unwrap();
        for bad in [
            forged,
            resigned,
            "garbage".to_owned(),
            format!("{payload}."),
        ] {
            let before = w.directory.calls();
            let err = importer(&w, &k)
                .page(
                    &w.tenant.id,
                    &ImportQuery {
                        cursor: Some(bad),
                        ..ImportQuery::default()
                    },
                )
                .await
                .unwrap_err();
            assert_eq!(err.code(), "invalid_cursor");
            assert_eq!(w.directory.calls(), before);
        }
    }

    #[tokio::test]
    async fn a_cursor_of_another_tenant_with_other_filters_or_expired_is_refused() {
        // R-IMP-1, R-SAFE-1
        let w = World::new().await;
        let k = key();
        let cursor = first_cursor(&w, &k).await;
        let mut other = crate::model::Tenant::pending(TenantId::generate(), "Other");
        other.status = TenantStatus::Active;
        w.tenants.create(&other).await.unwrap();
        let import = importer(&w, &k);
        let with = |c: &str| ImportQuery {
            cursor: Some(c.to_owned()),
            ..ImportQuery::default()
        };
        let err = import.page(&other.id, &with(&cursor)).await.unwrap_err();
        assert_eq!(err.code(), "invalid_cursor");
        let mut q = with(&cursor);
        q.status = Some(ImportStatus::Conflict);
        assert_eq!(
            import.page(&w.tenant.id, &q).await.unwrap_err().code(),
            "invalid_cursor"
        );
        // The same cursor works within its lifetime, and not after.
        import.page(&w.tenant.id, &with(&cursor)).await.unwrap();
        w.clock.advance(CURSOR_LIFETIME);
        assert_eq!(
            import
                .page(&w.tenant.id, &with(&cursor))
                .await
                .unwrap_err()
                .code(),
            "invalid_cursor"
        );
    }

    #[tokio::test]
    async fn importing_creates_linked_users_without_writing_to_m365() {
        // R-IMP-2
        let w = World::new().await;
        let k = key();
        let adele = m365(&w, "adele", "Adele", true).await;
        let blocked = m365(&w, "ben", "Ben", false).await;
        let before = w.directory.create_calls();
        let out = importer(&w, &k)
            .import(
                &w.tenant.id,
                &[adele.id.to_string(), blocked.id.to_string()],
            )
            .await
            .unwrap();
        let adele_uid = uid(&format!("m365-{}", adele.id));
        assert_eq!(
            out[0],
            ImportOutcome::Imported {
                m365_id: adele.id.to_string(),
                user_id: adele_uid.clone(),
                already: false
            }
        );
        let user = w.users.get(&adele_uid).await.unwrap().unwrap();
        assert_eq!(user.email, email("adele@contoso.com"));
        assert_eq!(user.display_name, "Adele");
        assert_eq!(user.given_name.as_deref(), Some("Adele-given"));
        assert_eq!(user.job_title.as_deref(), Some("Engineer"));
        assert_eq!(
            user.attributes,
            crate::testing::contract::every_attribute(),
            "R-ATTR-1: the account's attributes are the directory user's"
        );
        assert!(user.password.is_none());
        let b = w.bindings.get(&adele_uid).await.unwrap().unwrap();
        assert_eq!(b.state, BindingState::Provisioned);
        assert_eq!(b.tenant_id, w.tenant.id);
        assert_eq!(b.m365_object_id.as_ref(), Some(&adele.id));
        let ben = w
            .bindings
            .get(&uid(&format!("m365-{}", blocked.id)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ben.state, BindingState::Blocked);
        // M365 untouched: the accounts are as they were, nothing created.
        assert_eq!(w.directory.user(&w.tenant.id, &adele.id), Some(adele));
        assert_eq!(w.directory.user(&w.tenant.id, &blocked.id), Some(blocked));
        assert_eq!(w.directory.create_calls(), before);
        assert!(w.events.all().is_empty());
    }

    #[tokio::test]
    async fn an_email_already_in_the_directory_fails_that_user_while_the_others_import() {
        // R-IMP-2
        let w = World::new().await;
        let k = key();
        let carol = m365(&w, "carol", "Carol", true).await;
        let dan = m365(&w, "dan", "Dan", true).await;
        w.user("carol").await;
        let out = importer(&w, &k)
            .import(
                &w.tenant.id,
                &[
                    carol.id.to_string(),
                    dan.id.to_string(),
                    "not-a-guid".to_owned(),
                    M365ObjectId::generate().to_string(),
                ],
            )
            .await
            .unwrap();
        let codes: Vec<Option<&str>> = out
            .iter()
            .map(|o| match o {
                ImportOutcome::Failed { code, .. } => Some(code.as_str()),
                ImportOutcome::Imported { .. } => None,
            })
            .collect();
        assert_eq!(
            codes,
            [
                Some("email_exists"),
                None,
                Some("invalid_m365_id"),
                Some("not_found")
            ]
        );
        // The existing carol is left as she was, with no binding.
        assert!(w.bindings.get(&uid("carol")).await.unwrap().is_none());
        assert!(
            w.users
                .get(&uid(&format!("m365-{}", dan.id)))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_privileged_account_is_not_imported_unless_the_request_opts_in_and_the_others_import()
    {
        // R-BIND-11 (import: per-user `privileged_account`), R-IMP-2
        let w = World::new().await;
        let k = key();
        let admin = m365(&w, "root", "Root", true).await;
        let helpdesk = m365(&w, "desk", "Desk", true).await;
        let dan = m365(&w, "dan", "Dan", true).await;
        w.directory
            .set_consenting_admin(&w.tenant.id, Some(&admin.id));
        w.directory
            .grant_role(&w.tenant.id, &helpdesk.id, "Helpdesk Administrator");
        let ids = [
            admin.id.to_string(),
            helpdesk.id.to_string(),
            dan.id.to_string(),
        ];
        let out = importer(&w, &k).import(&w.tenant.id, &ids).await.unwrap();
        let codes: Vec<Option<&str>> = out
            .iter()
            .map(|o| match o {
                ImportOutcome::Failed { code, .. } => Some(code.as_str()),
                ImportOutcome::Imported { .. } => None,
            })
            .collect();
        assert_eq!(
            codes,
            [Some("privileged_account"), Some("privileged_account"), None]
        );
        // Nothing written for the refused two.
        for refused in [&admin, &helpdesk] {
            let id = uid(&format!("m365-{}", refused.id));
            assert!(w.users.get(&id).await.unwrap().is_none());
            assert!(w.bindings.get(&id).await.unwrap().is_none());
        }
        assert!(
            !w.binding(&format!("m365-{}", dan.id))
                .await
                .adopted_privileged
        );
        // With the opt-in they import, and their bindings remember it.
        let out = importer(&w, &k)
            .import_with(
                &w.tenant.id,
                &ids[..2],
                ImportOptions {
                    adopt_privileged: true,
                },
            )
            .await
            .unwrap();
        assert!(
            out.iter()
                .all(|o| matches!(o, ImportOutcome::Imported { already: false, .. })),
            "{out:?}"
        );
        for adopted in [&admin, &helpdesk] {
            let binding = w.binding(&format!("m365-{}", adopted.id)).await;
            assert!(binding.adopted_privileged);
            assert_eq!(binding.state, BindingState::Provisioned);
        }
    }

    #[tokio::test]
    async fn importing_again_changes_nothing_and_answers_imported() {
        // R-IMP-2 (idempotent)
        let w = World::new().await;
        let k = key();
        let adele = m365(&w, "adele", "Adele", true).await;
        let import = importer(&w, &k);
        let ids = [adele.id.to_string(), adele.id.to_string()];
        let first = import.import(&w.tenant.id, &ids).await.unwrap();
        assert_eq!(first.len(), 1, "a repeated id is imported once");
        let v = w.binding(&format!("m365-{}", adele.id)).await.version;
        let again = import.import(&w.tenant.id, &ids[..1]).await.unwrap();
        assert!(matches!(
            &again[0],
            ImportOutcome::Imported { already: true, .. }
        ));
        assert_eq!(w.binding(&format!("m365-{}", adele.id)).await.version, v);
    }

    #[tokio::test]
    async fn an_import_interrupted_before_its_binding_is_finished_by_a_retry() {
        // R-IMP-2 (a crash between the user and the binding write)
        let w = World::new().await;
        let k = key();
        let adele = m365(&w, "adele", "Adele", true).await;
        let id = uid(&format!("m365-{}", adele.id));
        w.users
            .create(&directory_user(&id, &email("adele@contoso.com"), &adele))
            .await
            .unwrap();
        let out = importer(&w, &k)
            .import(&w.tenant.id, &[adele.id.to_string()])
            .await
            .unwrap();
        assert!(matches!(
            &out[0],
            ImportOutcome::Imported { already: false, .. }
        ));
        assert_eq!(
            w.binding(id.as_str()).await.state,
            BindingState::Provisioned
        );
    }

    #[tokio::test]
    async fn a_selection_that_is_empty_or_too_long_or_a_tenant_not_active_is_refused() {
        // R-SAFE-1
        let w = World::new().await;
        let k = key();
        let import = importer(&w, &k);
        let err = import.import(&w.tenant.id, &[]).await.unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        let many: Vec<String> = (0..=MAX_IMPORT_BATCH)
            .map(|_| M365ObjectId::generate().to_string())
            .collect();
        assert_eq!(
            import.import(&w.tenant.id, &many).await.unwrap_err().code(),
            "invalid_field"
        );
        let err = import
            .page(&TenantId::generate(), &ImportQuery::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
        w.set_tenant_status(TenantStatus::Deauthorized).await;
        let err = import
            .page(&w.tenant.id, &ImportQuery::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "tenant_not_active");
        assert_eq!(w.directory.calls(), 0);
    }

    /// A read-only M365 of `size` users made up on the fly (user `i` has a fixed object id and
    /// UPN `u<i>@contoso.com`), paged by offset like Graph's skip tokens; it counts its calls.
    struct SyntheticDirectory {
        size: usize,
        calls: std::sync::atomic::AtomicU64,
    }

    impl SyntheticDirectory {
        fn user(i: usize) -> M365User {
            M365User::enabled(
                M365ObjectId::parse(format!("00000000-0000-4000-8000-{i:012}")).unwrap(),
                format!("u{i:06}@contoso.com"),
                format!("User {i}"),
            )
        }

        fn count(&self) {
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }

        fn calls(&self) -> u64 {
            self.calls.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    impl Directory for SyntheticDirectory {
        async fn find_user_by_upn(&self, _: &TenantId, _: &Email) -> Result<Option<M365User>> {
            unreachable!("import never looks users up by UPN")
        }
        async fn create_user(&self, _: &TenantId, _: &NewM365User) -> Result<M365User> {
            unreachable!("import never writes to M365")
        }
        async fn update_user(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
            _: &crate::model::M365UserPatch,
        ) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn set_account_enabled(&self, _: &TenantId, _: &M365ObjectId, _: bool) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn revoke_sign_in_sessions(&self, _: &TenantId, _: &M365ObjectId) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn manager_of(&self, _: &TenantId, _: &M365ObjectId) -> Result<Option<M365ObjectId>> {
            unreachable!("import never reads managers")
        }
        async fn set_manager(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
            _: &M365ObjectId,
        ) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn clear_manager(&self, _: &TenantId, _: &M365ObjectId) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn set_password(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
            _: &SecretString,
        ) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn list_users(
            &self,
            _: &TenantId,
            page: &PageRequest,
        ) -> Result<crate::model::Page<M365User>> {
            self.count();
            let start: usize = page
                .cursor
                .as_ref()
                .map_or(Ok(0), |c| c.as_str().parse())
                .map_err(|_| Error::Invalid(InvalidInput::Cursor))?;
            let end = (start + page.limit()).min(self.size);
            Ok(crate::model::Page {
                items: (start..end).map(Self::user).collect(),
                next: (end < self.size).then(|| PageToken::new(end.to_string())),
            })
        }
        async fn list_users_with_prefix(
            &self,
            _: &TenantId,
            _: &str,
            _: &PageRequest,
        ) -> Result<crate::model::Page<M365User>> {
            unreachable!("no prefix in this test")
        }
        async fn verified_domains(
            &self,
            _: &TenantId,
        ) -> Result<Vec<crate::model::VerifiedDomain>> {
            unreachable!("not used by import")
        }
        async fn organization_id(&self, _: &TenantId) -> Result<crate::model::M365TenantId> {
            unreachable!("not used by import")
        }
        async fn find_group_by_mail_nickname(
            &self,
            _: &TenantId,
            _: &str,
        ) -> Result<Option<crate::model::M365Group>> {
            unreachable!("not used by import")
        }
        async fn create_security_group(
            &self,
            _: &TenantId,
            _: &str,
            _: &str,
        ) -> Result<crate::model::M365Group> {
            unreachable!("import never writes to M365")
        }
        async fn add_group_member(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
            _: &M365ObjectId,
        ) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn remove_group_member(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
            _: &M365ObjectId,
        ) -> Result<()> {
            unreachable!("import never writes to M365")
        }
        async fn list_group_members(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
            _: &PageRequest,
        ) -> Result<crate::model::Page<M365ObjectId>> {
            unreachable!("not used by import")
        }
        async fn get_user(&self, _: &TenantId, id: &M365ObjectId) -> Result<Option<M365User>> {
            self.count();
            let i: usize = id.as_str()[24..].parse().unwrap();
            Ok((i < self.size).then(|| Self::user(i)))
        }
        async fn directory_roles_of(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
        ) -> Result<Vec<crate::model::DirectoryRole>> {
            unreachable!("import reads the tenant's role holders at once")
        }
        async fn consenting_admin(&self, _: &TenantId) -> Result<Option<M365ObjectId>> {
            self.count();
            Ok(None)
        }
        async fn directory_role_holders(
            &self,
            _: &TenantId,
        ) -> Result<std::collections::BTreeMap<M365ObjectId, Vec<crate::model::DirectoryRole>>>
        {
            self.count();
            Ok(std::collections::BTreeMap::new())
        }
        async fn get_deleted_user(
            &self,
            _: &TenantId,
            _: &M365ObjectId,
        ) -> Result<Option<crate::model::DeletedM365User>> {
            unreachable!("import lists live users only (R-BIND-10 restores on bind)")
        }
        async fn find_deleted_user_by_upn(
            &self,
            _: &TenantId,
            _: &Email,
        ) -> Result<Option<crate::model::DeletedM365User>> {
            unreachable!("import lists live users only (R-BIND-10 restores on bind)")
        }
        async fn restore_user(&self, _: &TenantId, _: &M365ObjectId) -> Result<M365User> {
            unreachable!("import never writes to M365")
        }
    }

    /// The world with its M365 replaced by a [`SyntheticDirectory`]: the one test whose M365 is
    /// too large for the fake (100,000 accounts made up on the fly) swaps that one port.
    #[derive(Debug)]
    struct Scaled<'w> {
        w: &'w World,
        directory: SyntheticDirectory,
    }

    impl std::fmt::Debug for SyntheticDirectory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SyntheticDirectory")
                .field("size", &self.size)
                .finish()
        }
    }

    impl crate::ports::Ports for Scaled<'_> {
        type Users = crate::testing::FakeUsers;
        type Groups = crate::testing::FakeGroups;
        type Tenants = crate::testing::FakeTenants;
        type Bindings = crate::testing::FakeBindings;
        type Events = crate::testing::FakeEvents;
        type Failures = crate::testing::FakeFailures;
        type Ledger = crate::testing::FakeLedger;
        type Queue = crate::testing::FakeRetryQueue;
        type Vault = crate::testing::FakeTokenVault;
        type Sealer = crate::testing::FakeSealer;
        type Directory = SyntheticDirectory;
        type Probe = crate::testing::FakeDirectory;
        type Notifier = crate::testing::FakeNotifier;
        type Identity = crate::testing::FakeIdentityPlatform;
        type Consents = crate::testing::FakePendingConsents;
        type Leases = crate::testing::FakeLeases;
        type UserDeltas = crate::testing::FakeUserDeltas;
        type GroupDeltas = crate::testing::FakeGroupDeltas;
        type Cursors = crate::testing::FakeReconcileCursors;
        type CursorKeys = crate::policy::cursor::CursorKey;
        type Clock = crate::testing::ManualClock;
        type Random = crate::testing::SeededRandom;
        type LicenseSettings = crate::testing::FakeLicenseSettings;
        type Licensing = crate::testing::FakeLicensing;
        type Mailer = crate::testing::FakeMailer;
        type Runs = crate::testing::FakeReconcileRuns;
        type Alerts = crate::testing::FakeAdminAlerts;
        type AlertIncidents = crate::testing::FakeAlertIncidents;
        type HeldPlans = crate::testing::FakeHeldPlans;
        fn users(&self) -> &Self::Users {
            self.w.users()
        }
        fn groups(&self) -> &Self::Groups {
            self.w.groups()
        }
        fn tenants(&self) -> &Self::Tenants {
            self.w.tenants()
        }
        fn bindings(&self) -> &Self::Bindings {
            self.w.bindings()
        }
        fn events(&self) -> &Self::Events {
            self.w.events()
        }
        fn failures(&self) -> &Self::Failures {
            self.w.failures()
        }
        fn ledger(&self) -> &Self::Ledger {
            self.w.ledger()
        }
        fn queue(&self) -> &Self::Queue {
            self.w.queue()
        }
        fn vault(&self) -> &Self::Vault {
            self.w.vault()
        }
        fn sealer(&self) -> &Self::Sealer {
            self.w.sealer()
        }
        fn directory(&self) -> &Self::Directory {
            &self.directory
        }
        fn probe(&self) -> &Self::Probe {
            self.w.probe()
        }
        fn notifier(&self) -> &Self::Notifier {
            self.w.notifier()
        }
        fn identity(&self) -> &Self::Identity {
            self.w.identity()
        }
        fn consents(&self) -> &Self::Consents {
            self.w.consents()
        }
        fn leases(&self) -> &Self::Leases {
            self.w.leases()
        }
        fn user_deltas(&self) -> &Self::UserDeltas {
            self.w.user_deltas()
        }
        fn group_deltas(&self) -> &Self::GroupDeltas {
            self.w.group_deltas()
        }
        fn cursors(&self) -> &Self::Cursors {
            self.w.cursors()
        }
        fn cursor_keys(&self) -> &Self::CursorKeys {
            self.w.cursor_keys()
        }
        fn clock(&self) -> &Self::Clock {
            self.w.clock()
        }
        fn random(&self) -> &Self::Random {
            self.w.random()
        }
        fn retry_policy(&self) -> &crate::usecase::RetryPolicy {
            self.w.retry_policy()
        }
        fn password_policy(&self) -> &crate::policy::password::DirectoryPasswordPolicy {
            self.w.password_policy()
        }
        fn license_settings(&self) -> &Self::LicenseSettings {
            self.w.license_settings()
        }
        fn licensing(&self) -> &Self::Licensing {
            self.w.licensing()
        }
        fn actor(&self) -> &crate::model::Actor {
            self.w.actor()
        }
        fn mailer(&self) -> &Self::Mailer {
            self.w.mailer()
        }
        fn runs(&self) -> &Self::Runs {
            self.w.runs()
        }
        fn alerts(&self) -> &Self::Alerts {
            self.w.alerts()
        }
        fn alert_incidents(&self) -> &Self::AlertIncidents {
            self.w.alert_incidents()
        }
        fn held_plans(&self) -> &Self::HeldPlans {
            self.w.held_plans()
        }
    }

    #[tokio::test]
    async fn a_100000_user_tenant_is_walked_and_imported_with_one_directory_call_per_page() {
        // R-IMP-1, R-IMP-2: no call grows with the tenant's size.
        const SIZE: usize = 100_000;
        let w = World::new().await;
        let k = key();
        let scaled = Scaled {
            w: &w,
            directory: SyntheticDirectory {
                size: SIZE,
                calls: std::sync::atomic::AtomicU64::new(0),
            },
        };
        let import = Import::new(&scaled, &k);
        let directory = &scaled.directory;
        let mut query = ImportQuery {
            limit: Some(MAX_IMPORT_PAGE),
            ..ImportQuery::default()
        };
        let (mut pages, mut rows) = (0_u64, 0_usize);
        let mut cursor_lengths = Vec::new();
        loop {
            let before = directory.calls();
            let page = import.page(&w.tenant.id, &query).await.unwrap();
            assert_eq!(directory.calls() - before, 1, "one directory call per page");
            pages += 1;
            rows += page.users.len();
            // Import the first ten rows of every tenth page along the way.
            if pages % 10 == 1 {
                let ids: Vec<String> = page.users[..10]
                    .iter()
                    .map(|r| r.m365_id.to_string())
                    .collect();
                let before = directory.calls();
                let out = import.import(&w.tenant.id, &ids).await.unwrap();
                assert_eq!(
                    directory.calls() - before,
                    10 + 2,
                    "one read per selected account, and the tenant's privileged accounts once \
                     (role holders, consenting admin; R-BIND-11)"
                );
                assert!(
                    out.iter()
                        .all(|o| matches!(o, ImportOutcome::Imported { .. }))
                );
            }
            match page.next_cursor {
                Some(c) => {
                    cursor_lengths.push(c.len());
                    query = ImportQuery {
                        cursor: Some(c),
                        ..ImportQuery::default()
                    };
                }
                None => break,
            }
        }
        assert_eq!(rows, SIZE);
        assert_eq!(pages, SIZE.div_ceil(MAX_IMPORT_PAGE as usize) as u64);
        // The cursor does not grow as the walk goes deeper (only the offset's digits change here).
        let (min, max) = (
            cursor_lengths.iter().min().unwrap(),
            cursor_lengths.iter().max().unwrap(),
        );
        assert!(max - min <= 8, "{min}..{max}");
        // The imported rows now show as imported (and only those).
        let page = import
            .page(
                &w.tenant.id,
                &ImportQuery {
                    status: Some(ImportStatus::Imported),
                    limit: Some(MAX_IMPORT_PAGE),
                    ..ImportQuery::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.users.len(), 10);
    }
}
