//! `GraphDirectory`: the engine's [`Directory`] port over Microsoft Graph (graph-spec §3, §8).
//!
//! Creates are never blindly repeated: a `POST /users` whose outcome is unknown (timeout, 5xx)
//! is resolved by looking the UPN up (R-BIND-2, graph-spec §7.3), and a UPN conflict is told
//! apart from an address still held by a deleted account by the same lookup, whose account the
//! conflict carries (`Conflict::UpnExists::existing`: the caller adopts it without looking again). A 404 on a user this
//! instance created moments ago is replication delay and is retried (graph-spec §7.4, §12).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use m365_engine::error::{Conflict, Entity, ExistingUser, InvalidInput, UnavailableReason};
use m365_engine::model::{
    Email, M365ObjectId, M365TenantId, M365User, M365UserPatch, NewM365User, Page, PageRequest,
    PageToken, TenantId, VerifiedDomain,
};
use m365_engine::ports::{ConsentedTenant, Directory, TenantProbe};
use m365_engine::{Error, Result};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::time::Instant;

use crate::client::{Call, GraphClient, TokenProvider};
use crate::error::{ErrorClass, GraphError};
use crate::model::{
    Collection, DOMAIN_SELECT, GraphDomain, GraphUser, MAX_TOP, USER_SELECT, create_user_body,
    created_user, odata_string, patch_user_body,
};
use crate::tokens::StaticToken;

/// A tenant's organization (`GET /organization`, graph-spec §3.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Microsoft's tenant id.
    pub id: M365TenantId,
    /// The organization's name.
    pub display_name: String,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOrganization {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
}

/// The [`Directory`] adapter over Microsoft Graph. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GraphDirectory<P> {
    client: GraphClient,
    tokens: P,
    deadline: Option<Instant>,
    /// Objects this instance created, with when: a 404 on them is replication delay.
    recent: Arc<Mutex<HashMap<String, Instant>>>,
    /// Each tenant's consenting admin, remembered a few minutes (R-BIND-11, [`crate::roles`]).
    admins: crate::roles::AdminCache,
}

impl<P: TokenProvider> GraphDirectory<P> {
    /// An adapter calling Graph through `client` with tokens from `tokens`.
    #[must_use]
    pub fn new(client: GraphClient, tokens: P) -> Self {
        Self {
            client,
            tokens,
            deadline: None,
            recent: Arc::new(Mutex::new(HashMap::new())),
            admins: crate::roles::AdminCache::default(),
        }
    }

    pub(crate) fn admin_cache(&self) -> &crate::roles::AdminCache {
        &self.admins
    }

    /// A view whose in-process retries never run past `deadline` (e.g. the Lambda deadline minus
    /// a margin); what is left over goes back to the retry queue.
    #[must_use]
    pub fn with_deadline(&self, deadline: Instant) -> Self
    where
        P: Clone,
    {
        Self {
            deadline: Some(deadline),
            ..self.clone()
        }
    }

    /// The token provider.
    #[must_use]
    pub fn tokens(&self) -> &P {
        &self.tokens
    }

    /// The Graph client.
    #[must_use]
    pub fn client(&self) -> &GraphClient {
        &self.client
    }

    /// The signed-in tenant's organization: Microsoft's tenant id (R-CONN-1 stores it) and name.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12; `Infrastructure` when Graph sends no organization.
    pub async fn organization(&self, tenant: &TenantId) -> Result<Organization> {
        let url = self
            .client
            .url("/organization", &[("$select", "id,displayName")])?;
        let page: Collection<RawOrganization> = self.get(tenant, url).await?.json()?;
        let org = page.value.into_iter().next().ok_or(GraphError::InvalidId)?;
        Ok(Organization {
            id: M365TenantId::parse(org.id).map_err(|_| GraphError::InvalidId)?,
            display_name: org.display_name.unwrap_or_default(),
        })
    }

    /// Sends `requests` as `$batch` envelopes of 20 (see [`GraphClient::batch`]) within this
    /// directory's deadline.
    pub async fn batch(
        &self,
        tenant: &TenantId,
        requests: &[crate::batch::BatchRequest],
    ) -> crate::batch::BatchResults {
        self.client
            .batch(&self.tokens, tenant, requests, self.deadline())
            .await
    }

    /// One page of the users delta (see [`GraphClient::users_delta`]).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    pub async fn users_delta(
        &self,
        tenant: &TenantId,
        link: Option<&str>,
    ) -> Result<crate::delta::DeltaPage<crate::delta::DeltaUser>> {
        Ok(self
            .client
            .users_delta(&self.tokens, tenant, link, self.deadline())
            .await?)
    }

    /// One page of the groups delta (see [`GraphClient::groups_delta`]).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    pub async fn groups_delta(
        &self,
        tenant: &TenantId,
        link: Option<&str>,
    ) -> Result<crate::delta::DeltaPage<crate::delta::DeltaGroup>> {
        Ok(self
            .client
            .groups_delta(&self.tokens, tenant, link, self.deadline())
            .await?)
    }

    pub(crate) fn deadline(&self) -> Instant {
        let budget = Instant::now() + self.client.http_retry().budget;
        self.deadline.map_or(budget, |d| d.min(budget))
    }

    pub(crate) fn remember(&self, id: &M365ObjectId) {
        let now = Instant::now();
        let window = self.client.http_retry().not_yet_visible_window;
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.retain(|_, at| now.duration_since(*at) < window);
        recent.insert(id.as_str().to_owned(), now);
    }

    pub(crate) fn is_recent(&self, id: &M365ObjectId) -> bool {
        let window = self.client.http_retry().not_yet_visible_window;
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent
            .get(id.as_str())
            .is_some_and(|at| at.elapsed() < window)
    }

    pub(crate) async fn get(
        &self,
        tenant: &TenantId,
        url: reqwest::Url,
    ) -> Result<crate::client::Response, GraphError> {
        self.client
            .execute(&self.tokens, tenant, &Call::get(url), self.deadline())
            .await
    }

    /// Every page of the collection at `url` (nextLinks inside our Graph base only).
    pub(crate) async fn collect<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        mut url: reqwest::Url,
    ) -> Result<Vec<T>, GraphError> {
        let mut out = Vec::new();
        loop {
            let page: Collection<T> = self.get(tenant, url).await?.json()?;
            out.extend(page.value);
            match page.next_link {
                Some(next) if self.client.owns(&next) => {
                    url = reqwest::Url::parse(&next).map_err(|_| GraphError::Url)?;
                }
                _ => return Ok(out),
            }
        }
    }

    /// The URL of one page: the cursor (Graph's whole nextLink, graph-spec §2.3), which must point
    /// into our Graph base or our bearer token would go elsewhere; without one, the first page
    /// `path` with `query` and `$top` (the page limit within Graph's maximum).
    pub(crate) fn page_url(
        &self,
        page: &PageRequest,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Url> {
        match &page.cursor {
            Some(cursor) if self.client.owns(cursor.as_str()) => {
                reqwest::Url::parse(cursor.as_str())
                    .map_err(|_| Error::Invalid(InvalidInput::Cursor))
            }
            Some(_) => Err(Error::Invalid(InvalidInput::Cursor)),
            None => {
                let top = page.limit.clamp(1, MAX_TOP).to_string();
                let mut query = query.to_vec();
                query.push(("$top", top.as_str()));
                Ok(self.client.url(path, &query)?)
            }
        }
    }

    async fn find(&self, tenant: &TenantId, upn: &Email) -> Result<Option<M365User>, GraphError> {
        let filter = format!("userPrincipalName eq {}", odata_string(upn.as_str()));
        let url = self
            .client
            .url("/users", &[("$filter", &filter), ("$select", USER_SELECT)])?;
        let page: Collection<GraphUser> = self.get(tenant, url).await?.json()?;
        Ok(page.value.into_iter().find_map(GraphUser::into_m365))
    }

    /// PATCHes a user (idempotent: retried); a 404 is `NotFound`, or replication delay for a user
    /// created here moments ago.
    async fn patch(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        body: serde_json::Value,
    ) -> Result<()> {
        let url = self.client.url(&format!("/users/{id}"), &[])?;
        self.write_user(tenant, id, Method::PATCH, url, Some(body))
            .await
    }

    /// Sends an idempotent write about user `id` (retried); a 404 is `NotFound`, or replication
    /// delay for a user created here moments ago.
    async fn write_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        method: Method,
        url: reqwest::Url,
        body: Option<serde_json::Value>,
    ) -> Result<()> {
        let recent = self.is_recent(id);
        let call = Call {
            method,
            url,
            body,
            idempotent: true,
            replication: if recent { &[ErrorClass::NotFound] } else { &[] },
        };
        let result = self
            .client
            .execute(&self.tokens, tenant, &call, self.deadline())
            .await;
        drop(call);
        match result {
            Ok(_) => Ok(()),
            Err(e) if recent && e.class() == Some(ErrorClass::NotFound) => Err(not_yet_visible(e)),
            Err(e) => Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
    }
}

/// A 404 on an object created here moments ago: replication delay (graph-spec §7.4), retryable.
pub(crate) fn not_yet_visible(e: GraphError) -> Error {
    Error::Unavailable {
        component: "graph",
        reason: UnavailableReason::NotYetVisible,
        retry_after: None,
        graph_request_id: e.request_id().map(str::to_owned),
        source: Some(Box::new(e)),
    }
}

impl From<GraphError> for Error {
    fn from(e: GraphError) -> Self {
        e.into_engine(Entity::M365User, "", None)
    }
}

impl<P: TokenProvider> Directory for GraphDirectory<P> {
    async fn find_user_by_upn(&self, tenant: &TenantId, upn: &Email) -> Result<Option<M365User>> {
        self.find(tenant, upn)
            .await
            .map_err(|e| e.into_engine(Entity::M365User, upn.as_str(), None))
    }

    async fn create_user(&self, tenant: &TenantId, user: &NewM365User) -> Result<M365User> {
        let upn = &user.user_principal_name;
        let call = Call {
            method: Method::POST,
            url: self.client.url("/users", &[])?,
            body: Some(create_user_body(user)),
            // Never repeated blindly (graph-spec §7.3): an unknown outcome is resolved below.
            idempotent: false,
            replication: &[],
        };
        let result = self
            .client
            .execute(&self.tokens, tenant, &call, self.deadline())
            .await;
        // The body holds the password: drop it now.
        drop(call);
        let error = match result {
            Ok(response) => {
                let created = created_user(response.json()?, user).ok_or(GraphError::InvalidId)?;
                self.remember(&created.id);
                tracing::info!(tenant.id = %tenant, user.id = %created.id, graph.request_id = response.request_id.as_deref(), "m365 user created");
                return Ok(created);
            }
            Err(error) => error,
        };
        if error.class() == Some(ErrorClass::UpnConflict) {
            // Either an active user holds the UPN (adopt it) or a deleted one still holds the
            // address (wait, R-BIND-6): the lookup tells them apart.
            return match self.find(tenant, upn).await {
                // The caller adopts the account found here; it need not look it up again.
                Ok(Some(found)) => Err(Error::Conflict(Conflict::UpnExists {
                    upn: upn.clone(),
                    existing: Some(ExistingUser(Box::new(found))),
                })),
                Ok(None) => Err(Error::Unavailable {
                    component: "graph",
                    reason: UnavailableReason::AddressHeld,
                    retry_after: None,
                    graph_request_id: error.request_id().map(str::to_owned),
                    source: Some(Box::new(error)),
                }),
                Err(lookup) => Err(lookup.into_engine(Entity::M365User, upn.as_str(), None)),
            };
        }
        if error.outcome_unknown() {
            tracing::warn!(
                tenant.id = %tenant,
                graph.request_id = error.request_id(),
                http.status = error.api().map(|a| a.status),
                "create outcome unknown; resolving it by looking the UPN up"
            );
            if let Ok(Some(found)) = self.find(tenant, upn).await {
                self.remember(&found.id);
                tracing::info!(tenant.id = %tenant, user.id = %found.id, "m365 user created (confirmed by lookup)");
                return Ok(found);
            }
            // Not visible (yet): retryable; the retry looks the UPN up again before any POST.
        }
        Err(error.into_engine(Entity::M365User, upn.as_str(), Some(upn)))
    }

    async fn update_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        patch: &M365UserPatch,
    ) -> Result<()> {
        if patch.is_empty() {
            // Graph refuses empty PATCH bodies (graph-spec §2.8).
            return Ok(());
        }
        self.patch(tenant, id, patch_user_body(patch)).await?;
        tracing::info!(tenant.id = %tenant, user.id = %id, "m365 user updated");
        Ok(())
    }

    async fn set_account_enabled(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        enabled: bool,
    ) -> Result<()> {
        self.patch(tenant, id, json!({"accountEnabled": enabled}))
            .await?;
        tracing::info!(tenant.id = %tenant, user.id = %id, enabled, "m365 sign-in set");
        Ok(())
    }

    /// `POST /users/{id}/revokeSignInSessions` (no body; `200 {"value": true}`): M365 moves
    /// `signInSessionsValidFromDateTime` and revokes the user's refresh tokens (graph-spec §1.4,
    /// §3.4). Repeating it only moves the instant again, so it is retried like an idempotent
    /// request (graph-spec has no statement on its retry semantics: an assumption).
    async fn revoke_sign_in_sessions(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<()> {
        let url = self
            .client
            .url(&format!("/users/{id}/revokeSignInSessions"), &[])?;
        self.write_user(tenant, id, Method::POST, url, None).await?;
        tracing::info!(tenant.id = %tenant, user.id = %id, "m365 sessions revoked");
        Ok(())
    }

    async fn set_password(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        password: &SecretString,
    ) -> Result<()> {
        let body = json!({"passwordProfile": {
            "forceChangePasswordNextSignIn": false,
            "password": password.expose_secret(),
        }});
        self.patch(tenant, id, body).await?;
        tracing::info!(tenant.id = %tenant, user.id = %id, "m365 password set");
        Ok(())
    }

    async fn list_users(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<M365User>> {
        self.users_page(tenant, None, page).await
    }

    async fn list_users_with_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        page: &PageRequest,
    ) -> Result<Page<M365User>> {
        self.users_page(tenant, Some(prefix), page).await
    }

    async fn get_user(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<Option<M365User>> {
        let url = self
            .client
            .url(&format!("/users/{id}"), &[("$select", USER_SELECT)])?;
        match self.get(tenant, url).await {
            Ok(response) => Ok(response.json::<GraphUser>()?.into_m365()),
            // Absent or soft-deleted (deleted users live under /directory/deletedItems).
            Err(e) if e.class() == Some(ErrorClass::NotFound) => Ok(None),
            Err(e) => Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
    }

    async fn organization_id(&self, tenant: &TenantId) -> Result<M365TenantId> {
        Ok(self.organization(tenant).await?.id)
    }

    /// `GET /users/{id}?$select=id,lastPasswordChangeDateTime` (graph-spec §3.3, §3.8): one read,
    /// no write budget. Whether a read right after our password PATCH already shows the new value
    /// is unconfirmed (graph-spec has no read-after-write statement for this property; §7.4); the
    /// caller trusts only a value later than the one it knew before.
    async fn last_password_change(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<DateTime<Utc>>> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Stamp {
            #[serde(default)]
            last_password_change_date_time: Option<DateTime<Utc>>,
        }
        let url = self.client.url(
            &format!("/users/{id}"),
            &[("$select", "id,lastPasswordChangeDateTime")],
        )?;
        match self.get(tenant, url).await {
            Ok(response) => Ok(response.json::<Stamp>()?.last_password_change_date_time),
            // Absent, soft-deleted or not yet replicated: unknown.
            Err(e) if e.class() == Some(ErrorClass::NotFound) => Ok(None),
            Err(e) => Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
    }

    // The group operations live in `groups.rs` as inherent methods (R-GRP-1); the port delegates.
    async fn find_group_by_mail_nickname(
        &self,
        tenant: &TenantId,
        nickname: &str,
    ) -> Result<Option<m365_engine::model::M365Group>> {
        GraphDirectory::find_group_by_mail_nickname(self, tenant, nickname).await
    }

    async fn create_security_group(
        &self,
        tenant: &TenantId,
        display_name: &str,
        nickname: &str,
    ) -> Result<m365_engine::model::M365Group> {
        GraphDirectory::create_security_group(self, tenant, display_name, nickname).await
    }

    async fn manager_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<M365ObjectId>> {
        self.manager(tenant, id).await
    }

    async fn set_manager(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        manager: &M365ObjectId,
    ) -> Result<()> {
        self.assign_manager(tenant, id, manager).await
    }

    async fn clear_manager(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<()> {
        self.remove_manager(tenant, id).await
    }

    async fn add_group_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> Result<()> {
        self.add_member(tenant, group, member).await
    }

    async fn remove_group_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> Result<()> {
        self.remove_member(tenant, group, member).await
    }

    async fn list_group_members(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        page: &PageRequest,
    ) -> Result<Page<M365ObjectId>> {
        let found = self.list_members(tenant, group, page).await?;
        Ok(Page {
            items: found
                .items
                .into_iter()
                .filter_map(|m| M365ObjectId::parse(m.id).ok())
                .collect(),
            next: found.next,
        })
    }

    // The privileged-account reads live in `roles.rs` (R-BIND-11); the port delegates.
    async fn directory_roles_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Vec<m365_engine::model::DirectoryRole>> {
        self.roles_of(tenant, id).await
    }

    async fn consenting_admin(&self, tenant: &TenantId) -> Result<Option<M365ObjectId>> {
        self.signed_in_admin(tenant).await
    }

    async fn directory_role_holders(
        &self,
        tenant: &TenantId,
    ) -> Result<std::collections::BTreeMap<M365ObjectId, Vec<m365_engine::model::DirectoryRole>>>
    {
        self.role_holders(tenant).await
    }

    // Deleted users and restore live in `deleted.rs` (R-BIND-10); the port delegates.
    async fn get_deleted_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<m365_engine::model::DeletedM365User>> {
        self.deleted_user(tenant, id).await
    }

    async fn find_deleted_user_by_upn(
        &self,
        tenant: &TenantId,
        upn: &Email,
    ) -> Result<Option<m365_engine::model::DeletedM365User>> {
        self.deleted_user_by_upn(tenant, upn).await
    }

    async fn restore_user(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<M365User> {
        self.restore(tenant, id).await
    }

    async fn verified_domains(&self, tenant: &TenantId) -> Result<Vec<VerifiedDomain>> {
        let url = self.client.url("/domains", &[("$select", DOMAIN_SELECT)])?;
        let domains: Vec<GraphDomain> = self.collect(tenant, url).await?;
        Ok(domains
            .into_iter()
            .filter_map(GraphDomain::into_verified)
            .collect())
    }
}

/// The connect callback's question (R-CONN-7): which Microsoft tenant does this just-issued access
/// token belong to, and which domains does that tenant have? Two Graph reads (`GET /organization`,
/// `GET /domains`, graph-spec §3.9, §8.1) with exactly that token ([`StaticToken`]: a 401 is
/// final, nothing is refreshed and nothing is read from or written to the vault), through this
/// directory's client (reads cost no write budget).
impl<P: TokenProvider> TenantProbe for GraphDirectory<P> {
    async fn probe(
        &self,
        tenant: &TenantId,
        access_token: &SecretString,
    ) -> Result<ConsentedTenant> {
        let probe = GraphDirectory::new(self.client.clone(), StaticToken(access_token.clone()))
            .with_deadline(self.deadline());
        let organization = probe.organization(tenant).await?;
        let domains = probe.verified_domains(tenant).await?;
        Ok(ConsentedTenant {
            m365_tenant_id: organization.id,
            domains,
        })
    }
}

impl<P: TokenProvider> GraphDirectory<P> {
    /// One page of `GET /users` (`$select`, `$top`), optionally `$filter`ed by a `startswith`
    /// on UPN, mail or display name; later pages follow Graph's whole nextLink, which keeps the
    /// filter (graph-spec §2.3). `startswith` on these three is default-supported, no
    /// `ConsistencyLevel` needed (graph-spec §3.x filter table); combining them with `or` is
    /// standard OData (unconfirmed for Entra in graph-spec, accepted by the emulator).
    async fn users_page(
        &self,
        tenant: &TenantId,
        prefix: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<M365User>> {
        let filter = prefix.map(|p| {
            let literal = odata_string(p);
            format!(
                "startswith(userPrincipalName,{literal}) or startswith(mail,{literal}) or startswith(displayName,{literal})"
            )
        });
        let mut query = vec![("$select", USER_SELECT)];
        if let Some(filter) = &filter {
            query.push(("$filter", filter.as_str()));
        }
        let url = self.page_url(page, "/users", &query)?;
        let response: Collection<GraphUser> = self.get(tenant, url).await?.json()?;
        Ok(Page {
            items: response
                .value
                .into_iter()
                .filter_map(GraphUser::into_m365)
                .collect(),
            next: response.next_link.map(PageToken::new),
        })
    }
}
