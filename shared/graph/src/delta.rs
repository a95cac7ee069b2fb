//! Delta queries for users and groups (graph-spec §5), the basis of reconcile (R-REC-1): pages
//! are followed by their whole `nextLink` until a `deltaLink` arrives; the caller saves that link
//! and starts from it next time. A lost delta state (410 `Gone`, `syncStateNotFound`,
//! `resyncRequired`, or a token past 7 days) restarts from the initial query — from the `Location`
//! Graph gives when it points into our Graph base — and the page says so (`restarted`), so the
//! caller treats that round as a full listing.

use m365_engine::model::TenantId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use tokio::time::Instant;

use crate::client::{Call, GraphClient, TokenProvider};
use crate::error::{ErrorClass, GraphError};
use crate::model::USER_SELECT;

/// The `$select` of group delta (`members` tracks membership as `members@delta`).
pub const GROUP_DELTA_SELECT: &str =
    "id,displayName,mailNickname,securityEnabled,mailEnabled,members";

/// Why an object left the listing (`@removed.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedReason {
    /// Soft-deleted (restorable for 30 days).
    Changed,
    /// Permanently deleted (or, for a member, removed from the group).
    Deleted,
}

#[derive(Debug, Clone, Deserialize)]
struct Removed {
    reason: String,
}

impl Removed {
    fn reason(&self) -> RemovedReason {
        if self.reason.eq_ignore_ascii_case("changed") {
            RemovedReason::Changed
        } else {
            RemovedReason::Deleted
        }
    }
}

/// A present property, `null` included: `Some(None)` for `null`. With `#[serde(default)]` an
/// absent property stays `None`, so "not reported" and "reported cleared" stay apart.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A user as delta reports it: the changed properties of [`USER_SELECT`] ("at least" the changed
/// ones, graph-spec §5), or a removal. A property cleared in M365 is reported as `null`; the
/// clearable attributes keep that apart from an absent property.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaUser {
    /// Object id.
    pub id: String,
    /// UPN, when present.
    #[serde(default)]
    pub user_principal_name: Option<String>,
    /// Display name, when present.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Given name, when present (`Some(None)`: present as `null`, i.e. cleared).
    #[serde(default, deserialize_with = "present")]
    pub given_name: Option<Option<String>>,
    /// Surname, when present (`Some(None)`: present as `null`, i.e. cleared).
    #[serde(default, deserialize_with = "present")]
    pub surname: Option<Option<String>>,
    /// Job title, when present (`Some(None)`: present as `null`, i.e. cleared).
    #[serde(default, deserialize_with = "present")]
    pub job_title: Option<Option<String>>,
    /// Department, when present (`Some(None)`: present as `null`, i.e. cleared).
    #[serde(default, deserialize_with = "present")]
    pub department: Option<Option<String>>,
    /// Sign-in allowed, when present.
    #[serde(default)]
    pub account_enabled: Option<bool>,
    /// Last password change, when present (R-PWD-3).
    #[serde(default)]
    pub last_password_change_date_time: Option<chrono::DateTime<chrono::Utc>>,
    /// The R-ATTR-1 attributes present (`Some(None)`: present as `null`, i.e. cleared).
    #[serde(flatten)]
    pub attributes: m365_engine::model::AttributesPatch,
    /// `manager@delta`, when present (the round selects `manager`, R-ATTR-1): the manager
    /// assigned, or the one removed (`@removed`). Its shape is modelled on `members@delta`
    /// (Microsoft documents an array of references; the removal's shape is unconfirmed).
    #[serde(default, rename = "manager@delta")]
    pub manager_delta: Option<Vec<MemberDelta>>,
    #[serde(default, rename = "@removed")]
    removed: Option<Removed>,
}

impl DeltaUser {
    /// `Some` when the user left the listing.
    #[must_use]
    pub fn removed(&self) -> Option<RemovedReason> {
        self.removed.as_ref().map(Removed::reason)
    }
}

/// One `members@delta` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct MemberDelta {
    /// Member object id.
    pub id: String,
    /// `#microsoft.graph.user`, `#microsoft.graph.group`, …
    #[serde(default, rename = "@odata.type")]
    pub odata_type: Option<String>,
    #[serde(default, rename = "@removed")]
    removed: Option<Removed>,
}

impl MemberDelta {
    /// Whether the membership was removed.
    #[must_use]
    pub fn is_removed(&self) -> bool {
        self.removed.is_some()
    }

    /// Whether the member is a user.
    #[must_use]
    pub fn is_user(&self) -> bool {
        self.odata_type.as_deref() == Some("#microsoft.graph.user")
    }
}

/// A group as delta reports it; a large group may come on several pages, each with a slice of
/// `members@delta` (merge them, graph-spec §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeltaGroup {
    /// Object id.
    pub id: String,
    /// Display name, when present.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Mail nickname, when present.
    #[serde(default)]
    pub mail_nickname: Option<String>,
    /// Security-enabled, when present.
    #[serde(default)]
    pub security_enabled: Option<bool>,
    /// Mail-enabled, when present.
    #[serde(default)]
    pub mail_enabled: Option<bool>,
    /// Membership changes of this page.
    #[serde(default, rename = "members@delta")]
    pub members_delta: Vec<MemberDelta>,
    #[serde(default, rename = "@removed")]
    removed: Option<Removed>,
}

impl DeltaGroup {
    /// `Some` when the group left the listing.
    #[must_use]
    pub fn removed(&self) -> Option<RemovedReason> {
        self.removed.as_ref().map(Removed::reason)
    }
}

/// Where a delta page leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaNext {
    /// More pages in this round: pass this link to the next call.
    Page(String),
    /// The round is complete: save this link and start from it next time.
    Done(String),
}

/// One page of a delta round.
#[derive(Debug, Clone)]
pub struct DeltaPage<T> {
    /// Changed or removed objects (the same object may appear more than once).
    pub items: Vec<T>,
    /// Next page or final delta link.
    pub next: DeltaNext,
    /// The saved state was lost and this page starts a full listing (resync everything).
    pub restarted: bool,
}

#[derive(Debug, Deserialize)]
struct RawPage<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

impl GraphClient {
    /// One page of the users delta: the initial query when `link` is `None`, else the page at
    /// `link` (a nextLink or a saved deltaLink).
    ///
    /// # Errors
    /// [`GraphError`]; a link outside our Graph base is [`GraphError::Url`].
    pub async fn users_delta<P: TokenProvider>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        link: Option<&str>,
        deadline: Instant,
    ) -> Result<DeltaPage<DeltaUser>, GraphError> {
        // `manager` tracks the manager relation as `manager@delta` (graph-spec §5, R-ATTR-1).
        let select = format!("{USER_SELECT},manager");
        self.delta_page(tokens, tenant, "/users/delta", &select, link, deadline)
            .await
    }

    /// One page of the groups delta (with `members@delta`); see [`Self::users_delta`].
    ///
    /// # Errors
    /// [`GraphError`]; a link outside our Graph base is [`GraphError::Url`].
    pub async fn groups_delta<P: TokenProvider>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        link: Option<&str>,
        deadline: Instant,
    ) -> Result<DeltaPage<DeltaGroup>, GraphError> {
        self.delta_page(
            tokens,
            tenant,
            "/groups/delta",
            GROUP_DELTA_SELECT,
            link,
            deadline,
        )
        .await
    }

    async fn delta_page<P: TokenProvider, T: DeserializeOwned>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        path: &str,
        select: &str,
        link: Option<&str>,
        deadline: Instant,
    ) -> Result<DeltaPage<T>, GraphError> {
        let initial = self.url(path, &[("$select", select)])?;
        let url = match link {
            Some(link) if self.owns(link) => {
                reqwest::Url::parse(link).map_err(|_| GraphError::Url)?
            }
            Some(_) => return Err(GraphError::Url),
            None => initial.clone(),
        };
        match self.get_page(tokens, tenant, url, deadline).await {
            Ok(page) => Ok(page),
            Err(e) if link.is_some() && e.class() == Some(ErrorClass::DeltaReset) => {
                // Restart from Graph's Location when it is ours, else from the initial query.
                let restart = e
                    .api()
                    .and_then(|a| a.location.as_deref())
                    .filter(|l| self.owns(l))
                    .and_then(|l| reqwest::Url::parse(l).ok())
                    .unwrap_or(initial);
                tracing::warn!(
                    tenant.id = %tenant,
                    graph.request_id = e.request_id(),
                    http.status = e.api().map(|a| a.status),
                    "delta state lost; restarting with a full listing"
                );
                let mut page = self.get_page(tokens, tenant, restart, deadline).await?;
                page.restarted = true;
                Ok(page)
            }
            Err(e) => Err(e),
        }
    }

    async fn get_page<P: TokenProvider, T: DeserializeOwned>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        url: reqwest::Url,
        deadline: Instant,
    ) -> Result<DeltaPage<T>, GraphError> {
        let response = self
            .execute(tokens, tenant, &Call::get(url), deadline)
            .await?;
        let raw: RawPage<Value> = response.json()?;
        let next = match (raw.next_link, raw.delta_link) {
            (Some(next), _) => DeltaNext::Page(next),
            (None, Some(done)) => DeltaNext::Done(done),
            (None, None) => {
                return Err(GraphError::Decode {
                    status: response.status,
                    request_id: response.request_id.clone(),
                    source: serde::de::Error::missing_field("@odata.deltaLink"),
                });
            }
        };
        let items = raw
            .value
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<T>, _>>()
            .map_err(|source| GraphError::Decode {
                status: response.status,
                request_id: response.request_id.clone(),
                source,
            })?;
        Ok(DeltaPage {
            items,
            next,
            restarted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_delta_user_tells_a_property_reported_null_from_one_not_reported() {
        // R-REC-1, graph-spec §5 (updated objects carry "at least" the changed properties; a
        // cleared one is present as null)
        let user: DeltaUser = serde_json::from_value(json!({
            "id": "25dcffff-959e-4ece-9973-e5d9b800e8cc",
            "jobTitle": null,
            "surname": "Doe",
            "displayName": "Testuser7"
        }))
        .unwrap();
        assert_eq!(user.job_title, Some(None), "reported cleared");
        assert_eq!(user.surname, Some(Some("Doe".to_owned())));
        assert_eq!(user.given_name, None, "not reported");
        assert_eq!(user.department, None, "not reported");
        assert_eq!(user.display_name.as_deref(), Some("Testuser7"));
        assert!(user.removed().is_none());
    }

    #[test]
    fn a_delta_user_reports_the_r_attr_1_attributes_cleared_set_or_absent() {
        // R-ATTR-1, R-REC-1, graph-spec §5
        let user: DeltaUser = serde_json::from_value(json!({
            "id": "25dcffff-959e-4ece-9973-e5d9b800e8cc",
            "employeeId": null,
            "city": "Paris",
            "businessPhones": [],
            "@removed": null
        }))
        .unwrap();
        assert_eq!(user.attributes.employee_id, Some(None), "reported cleared");
        assert_eq!(user.attributes.city, Some(Some("Paris".to_owned())));
        assert_eq!(user.attributes.business_phones, Some(Vec::new()));
        assert_eq!(user.attributes.country, None, "not reported");
    }

    #[test]
    fn a_removed_delta_user_reports_no_attributes() {
        // R-REC-1, graph-spec §5 (@removed)
        let user: DeltaUser = serde_json::from_value(json!({
            "id": "8ffff70c-1c63-4860-b963-e34ec660931d",
            "@removed": {"reason": "changed"}
        }))
        .unwrap();
        assert_eq!(user.removed(), Some(RemovedReason::Changed));
        assert_eq!(
            (
                user.given_name,
                user.surname,
                user.job_title,
                user.department
            ),
            (None, None, None, None)
        );
    }
}
