//! Deleted users over Graph (R-BIND-10, graph-spec §3.5–3.6): read one deleted item by id, find
//! a deleted user by UPN, restore one.
//!
//! - `GET /directory/deletedItems/{id}` — 200 with `@odata.type` (a deleted group is not a
//!   user: `None`); 404 when nothing deleted has the id (never deleted, active again, purged
//!   30 days after the deletion).
//! - `GET /directory/deletedItems/microsoft.graph.user?$filter=userPrincipalName eq '…'` — the
//!   cast is required (graph-spec §3.6); the most recently deleted of the matches wins. Whether
//!   real Entra shows a deleted user's UPN unchanged is not in graph-spec (unconfirmed): a UPN
//!   changed on deletion is not found by this filter, and the bind then waits for the address as
//!   before; the binding's own account is found by id whatever its UPN.
//! - `POST /directory/deletedItems/{id}/restore` — 200 with the restored object (graph-spec
//!   §3.6). A write: paced by the rate budget like every write, and never repeated blindly (a
//!   POST, graph-spec §7.3): the engine recognizes a restore whose answer was lost by finding
//!   the account active. A 400 naming another object with the same value of
//!   `userPrincipalName`, `mail` or `proxyAddresses` (`ObjectConflict`; the exact text is
//!   unconfirmed, §13.4) is `Conflict::RestoreConflict`, told apart from every other refusal.
//!   App-only restore of users is assumed allowed with `User.ReadWrite.All` (unconfirmed, §13.5).

use chrono::{DateTime, Utc};
use m365_engine::error::{Conflict, Entity};
use m365_engine::model::{DeletedM365User, Email, M365ObjectId, M365User, TenantId};
use m365_engine::{Error, Result};
use reqwest::Method;
use serde::Deserialize;

use crate::client::{Call, TokenProvider};
use crate::directory::GraphDirectory;
use crate::error::{ApiError, ErrorClass, GraphError};
use crate::model::{GraphUser, odata_string};

/// The `$select` of deleted-user reads.
const DELETED_SELECT: &str = "id,userPrincipalName,deletedDateTime";

/// Graph's duplicate-value message (graph-spec §3.2), without the property.
const MSG_SAME_VALUE: &str = "Another object with the same value for property ";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDeleted {
    id: String,
    #[serde(default, rename = "@odata.type")]
    odata_type: Option<String>,
    #[serde(default)]
    user_principal_name: Option<String>,
    #[serde(default)]
    deleted_date_time: Option<DateTime<Utc>>,
}

impl RawDeleted {
    /// The deleted user; `None` for another kind of object or an id that is not a GUID.
    fn into_user(self) -> Option<DeletedM365User> {
        if self
            .odata_type
            .as_deref()
            .is_some_and(|t| t != "#microsoft.graph.user")
        {
            return None;
        }
        Some(DeletedM365User {
            id: M365ObjectId::parse(self.id).ok()?,
            user_principal_name: self.user_principal_name?,
            deleted_at: self.deleted_date_time,
        })
    }
}

/// The contested property of a restore Graph refused for a duplicate value, if it was that.
fn restore_conflict(api: &ApiError) -> Option<String> {
    if api.status != 400 {
        return None;
    }
    let detail = api
        .details
        .iter()
        .find(|d| d.code.as_deref() == Some("ObjectConflict"))
        .map(|d| d.target.clone().unwrap_or_else(|| "address".to_owned()));
    detail.or_else(|| {
        let message = api.message.as_deref()?;
        let rest = &message[message.find(MSG_SAME_VALUE)? + MSG_SAME_VALUE.len()..];
        Some(
            rest.split_whitespace()
                .next()
                .unwrap_or("address")
                .to_owned(),
        )
    })
}

impl<P: TokenProvider> GraphDirectory<P> {
    /// `GET /directory/deletedItems/{id}` (see the module docs).
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12 (a 404 is `Ok(None)`).
    pub(crate) async fn deleted_user(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<DeletedM365User>> {
        let url = self
            .client()
            .url(&format!("/directory/deletedItems/{id}"), &[])?;
        match self.get(tenant, url).await {
            Ok(response) => Ok(response.json::<RawDeleted>()?.into_user()),
            Err(e) if e.class() == Some(ErrorClass::NotFound) => Ok(None),
            Err(e) => Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
    }

    /// `GET /directory/deletedItems/microsoft.graph.user?$filter=userPrincipalName eq '…'`.
    ///
    /// # Errors
    /// Graph errors mapped per graph-spec §12.
    pub(crate) async fn deleted_user_by_upn(
        &self,
        tenant: &TenantId,
        upn: &Email,
    ) -> Result<Option<DeletedM365User>> {
        let filter = format!("userPrincipalName eq {}", odata_string(upn.as_str()));
        let url = self.client().url(
            "/directory/deletedItems/microsoft.graph.user",
            &[("$filter", &filter), ("$select", DELETED_SELECT)],
        )?;
        let found: Vec<RawDeleted> = self
            .collect(tenant, url)
            .await
            .map_err(|e| e.into_engine(Entity::M365User, upn.as_str(), None))?;
        Ok(found
            .into_iter()
            .filter_map(RawDeleted::into_user)
            .filter(|d| d.user_principal_name.eq_ignore_ascii_case(upn.as_str()))
            .max_by_key(|d| d.deleted_at))
    }

    /// `POST /directory/deletedItems/{id}/restore` (see the module docs).
    ///
    /// # Errors
    /// `Conflict::RestoreConflict`; `NotFound` (entity `M365User`); Graph errors mapped per
    /// graph-spec §12.
    pub(crate) async fn restore(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<M365User> {
        let call = Call {
            method: Method::POST,
            url: self
                .client()
                .url(&format!("/directory/deletedItems/{id}/restore"), &[])?,
            body: None,
            idempotent: false,
            replication: &[],
        };
        let result = self
            .client()
            .execute(self.tokens(), tenant, &call, self.deadline())
            .await;
        match result {
            Ok(response) => {
                let restored = response
                    .json::<GraphUser>()?
                    .into_m365()
                    .ok_or(GraphError::InvalidId)?;
                tracing::info!(tenant.id = %tenant, user.id = %restored.id, graph.request_id = response.request_id.as_deref(), "m365 user restored");
                Ok(restored)
            }
            Err(GraphError::Api(api)) if restore_conflict(&api).is_some() => {
                let property = restore_conflict(&api).unwrap_or_default();
                tracing::info!(tenant.id = %tenant, user.id = %id, graph.request_id = api.request_id.as_deref(), property, "m365 refused the restore: an address is taken");
                Err(Error::Conflict(Conflict::RestoreConflict {
                    account: id.to_string(),
                    property,
                }))
            }
            Err(e) => Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(body: serde_json::Value) -> ApiError {
        ApiError::from_parts(
            400,
            &reqwest::header::HeaderMap::new(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn a_restore_refused_for_a_taken_address_is_a_restore_conflict_naming_the_property() {
        // R-BIND-10 (graph-spec §3.6, §13.4)
        let message =
            "Another object with the same value for property proxyAddresses already exists.";
        let with_detail = api(serde_json::json!({"error": {"code": "Request_BadRequest",
            "message": message,
            "details": [{"code": "ObjectConflict", "message": message, "target": "proxyAddresses"}]}}));
        assert_eq!(
            restore_conflict(&with_detail).as_deref(),
            Some("proxyAddresses")
        );
        let message_only = api(serde_json::json!({"error": {"code": "Request_BadRequest",
            "message": "Another object with the same value for property userPrincipalName already exists."}}));
        assert_eq!(
            restore_conflict(&message_only).as_deref(),
            Some("userPrincipalName")
        );
        let other = api(serde_json::json!({"error": {"code": "Request_BadRequest",
            "message": "Property userPrincipalName is invalid."}}));
        assert_eq!(restore_conflict(&other), None);
    }

    #[test]
    fn a_deleted_group_is_not_a_deleted_user() {
        // R-BIND-10
        let raw: RawDeleted = serde_json::from_value(serde_json::json!({
            "@odata.type": "#microsoft.graph.group",
            "id": "46cc6179-19d0-473e-97ad-6ff84347bbbb",
        }))
        .unwrap();
        assert!(raw.into_user().is_none());
        let raw: RawDeleted = serde_json::from_value(serde_json::json!({
            "@odata.type": "#microsoft.graph.user",
            "id": "46cc6179-19d0-473e-97ad-6ff84347bbbb",
            "userPrincipalName": "AdeleV@contoso.com",
            "deletedDateTime": "2026-01-02T03:04:05Z",
        }))
        .unwrap();
        let user = raw.into_user().unwrap();
        assert_eq!(user.user_principal_name, "AdeleV@contoso.com");
        assert!(user.deleted_at.is_some());
    }
}
