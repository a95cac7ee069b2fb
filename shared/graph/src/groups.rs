//! Security groups and their membership over Graph (graph-spec §4; R-GRP-1), as inherent
//! methods of [`GraphDirectory`] until the engine's `Directory` port grows group operations
//! (requested in notes/engine-requests.md).
//!
//! Membership writes are idempotent in effect: "already a member" on add and "not a member"
//! (404 or 400) on remove are success (graph-spec §12). A member add right after a create may
//! meet replication delay ("The source resource object … do not exist"), which is retried.

use m365_engine::error::Entity;
use m365_engine::model::{M365ObjectId, Page, PageRequest, PageToken, TenantId};
use m365_engine::{Error, Result};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Call, TokenProvider};
use crate::directory::{GraphDirectory, not_yet_visible};
use crate::error::{ErrorClass, GraphError};
use crate::model::{Collection, odata_string};

/// The `$select` of group reads.
pub const GROUP_SELECT: &str = "id,displayName,mailNickname,securityEnabled,mailEnabled";

/// A group as M365 holds it (the engine's model type; mail nickname is our stable key for
/// lookups: display names are not unique, and that security groups may share a nickname is
/// unconfirmed, graph-spec §4.1 (INF), so we choose unique ones).
pub use m365_engine::model::M365Group;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphGroup {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    mail_nickname: Option<String>,
    #[serde(default)]
    security_enabled: Option<bool>,
    #[serde(default)]
    mail_enabled: Option<bool>,
}

impl GraphGroup {
    fn into_m365(self) -> Option<M365Group> {
        Some(M365Group {
            id: M365ObjectId::parse(self.id).ok()?,
            display_name: self.display_name.unwrap_or_default(),
            mail_nickname: self.mail_nickname.unwrap_or_default(),
            is_security_group: self.security_enabled == Some(true)
                && self.mail_enabled != Some(true),
        })
    }
}

/// A member as `GET /groups/{id}/members` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// Object id.
    pub id: String,
    /// `#microsoft.graph.user`, `#microsoft.graph.group`, …
    pub odata_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawMember {
    id: String,
    #[serde(default, rename = "@odata.type")]
    odata_type: Option<String>,
}

impl<P: TokenProvider> GraphDirectory<P> {
    /// The group with this mail nickname, if any.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    pub async fn find_group_by_mail_nickname(
        &self,
        tenant: &TenantId,
        nickname: &str,
    ) -> Result<Option<M365Group>> {
        let filter = format!("mailNickname eq {}", odata_string(nickname));
        let url = self.client().url(
            "/groups",
            &[("$filter", &filter), ("$select", GROUP_SELECT)],
        )?;
        let page: Collection<GraphGroup> = self.get(tenant, url).await?.json()?;
        Ok(page.value.into_iter().find_map(GraphGroup::into_m365))
    }

    /// Creates a security group (`securityEnabled`, not mail-enabled, no group types). A create
    /// whose outcome is unknown is resolved by looking the mail nickname up, never re-POSTed.
    ///
    /// # Errors
    /// Retryable errors when the outcome stays unknown; `Rejected` for invalid names.
    pub async fn create_security_group(
        &self,
        tenant: &TenantId,
        display_name: &str,
        mail_nickname: &str,
    ) -> Result<M365Group> {
        let body = json!({
            "displayName": display_name,
            "mailNickname": mail_nickname,
            "mailEnabled": false,
            "securityEnabled": true,
            "groupTypes": [],
        });
        let url = self.client().url("/groups", &[])?;
        match self
            .send(tenant, Method::POST, url, Some(body), false, &[])
            .await
        {
            Ok(response) => {
                let group = response
                    .json::<GraphGroup>()?
                    .into_m365()
                    .ok_or(GraphError::InvalidId)?;
                self.remember(&group.id);
                tracing::info!(tenant.id = %tenant, group.id = %group.id, "m365 security group created");
                Ok(group)
            }
            Err(e) if e.outcome_unknown() => match self
                .find_group_by_mail_nickname(tenant, mail_nickname)
                .await
            {
                Ok(Some(group)) => {
                    self.remember(&group.id);
                    Ok(group)
                }
                _ => Err(e.into_engine(Entity::Group, mail_nickname, None)),
            },
            Err(e) => Err(e.into_engine(Entity::Group, mail_nickname, None)),
        }
    }

    /// Adds `member` (a user or group) to `group`; "already a member" is success.
    ///
    /// # Errors
    /// `NotFound` when the group or member does not exist (entity `Group` or `M365User`, by the id
    /// Graph names); `Unavailable(NotYetVisible)` while a new object replicates.
    pub async fn add_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> Result<()> {
        let url = self
            .client()
            .url(&format!("/groups/{group}/members/$ref"), &[])?;
        let body = json!({"@odata.id": format!("{}/directoryObjects/{member}", self.client().graph_base())});
        let fresh = self.is_recent(group) || self.is_recent(member);
        let replication: &'static [ErrorClass] = if fresh {
            &[ErrorClass::ReferenceNotYetVisible, ErrorClass::NotFound]
        } else {
            &[ErrorClass::ReferenceNotYetVisible]
        };
        // Adding twice is harmless ("already a member" is success), so transient failures are retried.
        match self
            .send(tenant, Method::POST, url, Some(body), true, replication)
            .await
        {
            Ok(_) => {}
            Err(e) if e.class() == Some(ErrorClass::AlreadyMember) => {}
            Err(e) if e.class() == Some(ErrorClass::ReferenceNotYetVisible) => {
                return Err(not_yet_visible(e));
            }
            Err(e) if fresh && e.class() == Some(ErrorClass::NotFound) => {
                return Err(not_yet_visible(e));
            }
            Err(e) if e.class() == Some(ErrorClass::NotFound) => {
                // The message names the missing resource (graph-spec §4.2).
                let member_missing = e
                    .api()
                    .and_then(|a| a.message.as_deref())
                    .is_some_and(|m| m.contains(member.as_str()));
                return Err(if member_missing {
                    Error::not_found(Entity::M365User, member)
                } else {
                    Error::not_found(Entity::Group, group)
                });
            }
            Err(e) => return Err(e.into_engine(Entity::Group, group.as_str(), None)),
        }
        tracing::info!(tenant.id = %tenant, group.id = %group, member.id = %member, "m365 group member added");
        Ok(())
    }

    /// Removes `member` from `group`; "not a member" (404 or 400) is success.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    pub async fn remove_member(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        member: &M365ObjectId,
    ) -> Result<()> {
        let url = self
            .client()
            .url(&format!("/groups/{group}/members/{member}/$ref"), &[])?;
        match self
            .send(tenant, Method::DELETE, url, None, true, &[])
            .await
        {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.class(),
                    Some(ErrorClass::NotFound | ErrorClass::AlreadyAbsent)
                ) => {}
            Err(e) => return Err(e.into_engine(Entity::Group, group.as_str(), None)),
        }
        tracing::info!(tenant.id = %tenant, group.id = %group, member.id = %member, "m365 group member removed");
        Ok(())
    }

    /// One page of a group's direct members.
    ///
    /// # Errors
    /// `NotFound` (entity `Group`); `Invalid(Cursor)` for a foreign cursor; Graph errors.
    pub async fn list_members(
        &self,
        tenant: &TenantId,
        group: &M365ObjectId,
        page: &PageRequest,
    ) -> Result<Page<GroupMember>> {
        let url = self.page_url(
            page,
            &format!("/groups/{group}/members"),
            &[("$select", "id")],
        )?;
        let response = self
            .get(tenant, url)
            .await
            .map_err(|e| e.into_engine(Entity::Group, group.as_str(), None))?;
        let raw: Collection<RawMember> = response.json()?;
        Ok(Page {
            items: raw
                .value
                .into_iter()
                .map(|m| GroupMember {
                    id: m.id,
                    odata_type: m.odata_type,
                })
                .collect(),
            next: raw.next_link.map(PageToken::new),
        })
    }

    async fn send(
        &self,
        tenant: &TenantId,
        method: Method,
        url: reqwest::Url,
        body: Option<serde_json::Value>,
        idempotent: bool,
        replication: &'static [ErrorClass],
    ) -> Result<crate::client::Response, GraphError> {
        let call = Call {
            method,
            url,
            body,
            idempotent,
            replication,
        };
        self.client()
            .execute(self.tokens(), tenant, &call, self.deadline())
            .await
    }
}
