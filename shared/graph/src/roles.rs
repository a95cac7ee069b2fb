//! Privileged accounts over Graph (R-BIND-11): the directory roles a user holds, every holder of
//! a directory role in a tenant, and the admin whose consent the connection's tokens carry.
//!
//! Endpoints (graph-spec is silent on directory roles; Microsoft Graph docs v1.0,
//! `user-list-transitivememberof`, `directoryrole-list`, `directoryrole-list-members`,
//! `user-get` for `/me`):
//! - `GET /users/{id}/transitiveMemberOf/microsoft.graph.directoryRole?$select=…` — the roles
//!   held directly or through a role-assignable group, sent without `ConsistencyLevel` so the
//!   answer is not read from the eventually consistent index (whether Graph insists on the header
//!   for a bare cast is unconfirmed: the docs list casts among advanced queries but show a cast
//!   request without it). Without a role-reading permission Graph returns the roles with "limited
//!   information" (type and id): they still count, nameless;
//! - `GET /directoryRoles` then `GET /directoryRoles/{id}/members?$select=id` per activated role
//!   (needs `RoleManagement.Read.Directory`); a member that is a group stands for its members
//!   (`GET /groups/{id}/members`; role-assignable groups cannot hold groups); service principals
//!   are no accounts and are left out. Members come in one page of up to 1,000 per the docs; a
//!   nextLink, should Graph send one, is followed anyway;
//! - `GET /me?$select=id` with the connection's delegated tokens names the consenting admin;
//!   app-only tokens get Graph's 400 "/me request is only valid with delegated authentication
//!   flow." and have none. The answer is cached per tenant for [`CONSENTING_ADMIN_TTL`]: it only
//!   changes with a reconnect, and a bind or push then costs no extra request.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use m365_engine::Result;
use m365_engine::error::Entity;
use m365_engine::model::{DirectoryRole, M365ObjectId, PageRequest, TenantId};
use serde::Deserialize;
use tokio::time::Instant;

use crate::client::TokenProvider;
use crate::directory::GraphDirectory;
use crate::error::GraphError;
use crate::model::MAX_TOP;

/// How long a tenant's consenting admin is remembered (per process).
pub const CONSENTING_ADMIN_TTL: Duration = Duration::from_secs(600);

/// The `$select` of role reads.
const ROLE_SELECT: &str = "id,displayName,roleTemplateId";

/// Graph's 400 for `/me` with app-only tokens (the emulator's text; Graph's per its SDK issues).
const ME_APP_ONLY: &str = "/me request is only valid with delegated authentication flow.";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRole {
    id: String,
    #[serde(default, rename = "@odata.type")]
    odata_type: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role_template_id: Option<String>,
}

impl RawRole {
    fn is_role(&self) -> bool {
        self.odata_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.directoryRole"))
    }

    fn role(&self) -> DirectoryRole {
        DirectoryRole {
            display_name: self.display_name.clone(),
            role_template_id: self.role_template_id.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawObject {
    id: String,
    #[serde(default, rename = "@odata.type")]
    odata_type: Option<String>,
}

impl RawObject {
    fn is(&self, kind: &str) -> bool {
        self.odata_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(kind))
    }
}

/// The per-process memory of each tenant's consenting admin.
pub(crate) type AdminCache = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<TenantId, (Option<M365ObjectId>, Instant)>>,
>;

impl<P: TokenProvider> GraphDirectory<P> {
    /// The roles `id` holds (see the module docs), sorted and without duplicates.
    pub(crate) async fn roles_of(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Vec<DirectoryRole>> {
        let url = self.client().url(
            &format!("/users/{id}/transitiveMemberOf/microsoft.graph.directoryRole"),
            &[("$select", ROLE_SELECT)],
        )?;
        let raw: Vec<RawRole> = self
            .collect(tenant, url)
            .await
            .map_err(|e| e.into_engine(Entity::M365User, id.as_str(), None))?;
        let roles: BTreeSet<DirectoryRole> = raw
            .iter()
            .filter(|r| r.is_role())
            .map(RawRole::role)
            .collect();
        Ok(roles.into_iter().collect())
    }

    /// Every user holding an activated role, with its roles (see the module docs).
    pub(crate) async fn role_holders(
        &self,
        tenant: &TenantId,
    ) -> Result<BTreeMap<M365ObjectId, Vec<DirectoryRole>>> {
        let url = self
            .client()
            .url("/directoryRoles", &[("$select", ROLE_SELECT)])?;
        let roles: Vec<RawRole> = self.collect(tenant, url).await?;
        let mut holders: BTreeMap<M365ObjectId, BTreeSet<DirectoryRole>> = BTreeMap::new();
        for role in &roles {
            let url = self.client().url(
                &format!("/directoryRoles/{}/members", role.id),
                &[("$select", "id")],
            )?;
            let members: Vec<RawObject> = self.collect(tenant, url).await?;
            let mut users: Vec<String> = Vec::new();
            for member in members {
                if member.is("#microsoft.graph.user") {
                    users.push(member.id);
                } else if member.is("#microsoft.graph.group") {
                    users.extend(self.group_users(tenant, &member.id).await?);
                }
            }
            for user in users {
                if let Ok(id) = M365ObjectId::parse(user) {
                    holders.entry(id).or_default().insert(role.role());
                }
            }
        }
        Ok(holders
            .into_iter()
            .map(|(id, roles)| (id, roles.into_iter().collect()))
            .collect())
    }

    /// The user members of the role-holding group `group` (every page).
    async fn group_users(&self, tenant: &TenantId, group: &str) -> Result<Vec<String>> {
        let Ok(group) = M365ObjectId::parse(group) else {
            return Ok(Vec::new());
        };
        let mut users = Vec::new();
        let mut page = PageRequest::first(MAX_TOP);
        loop {
            let found = self.list_members(tenant, &group, &page).await?;
            users.extend(
                found
                    .items
                    .into_iter()
                    .filter(|m| {
                        m.odata_type
                            .as_deref()
                            .is_none_or(|t| t.eq_ignore_ascii_case("#microsoft.graph.user"))
                    })
                    .map(|m| m.id),
            );
            match found.next {
                Some(next) => page = PageRequest::after(next, MAX_TOP),
                None => return Ok(users),
            }
        }
    }

    /// The consenting admin of `tenant`'s connection, from the cache or `GET /me`.
    pub(crate) async fn signed_in_admin(&self, tenant: &TenantId) -> Result<Option<M365ObjectId>> {
        if let Some(known) = self.cached_admin(tenant) {
            return Ok(known);
        }
        #[derive(Deserialize)]
        struct Me {
            id: String,
        }
        let url = self.client().url("/me", &[("$select", "id")])?;
        let admin = match self.get(tenant, url).await {
            Ok(response) => {
                let me: Me = response.json()?;
                Some(M365ObjectId::parse(me.id).map_err(|_| GraphError::InvalidId)?)
            }
            Err(e) if is_app_only(&e) => None,
            Err(e) => return Err(e.into_engine(Entity::M365User, "me", None)),
        };
        let mut cache = self
            .admin_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(tenant.clone(), (admin.clone(), Instant::now()));
        Ok(admin)
    }

    fn cached_admin(&self, tenant: &TenantId) -> Option<Option<M365ObjectId>> {
        let cache = self
            .admin_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(tenant)
            .filter(|(_, at)| at.elapsed() < CONSENTING_ADMIN_TTL)
            .map(|(admin, _)| admin.clone())
    }
}

/// Graph's answer to `/me` with an app-only token (no signed-in user).
fn is_app_only(e: &GraphError) -> bool {
    e.api().is_some_and(|a| {
        a.status == 400
            && a.message
                .as_deref()
                .is_some_and(|m| m.trim() == ME_APP_ONLY)
    })
}
