//! A user's manager over Graph (R-ATTR-1): `GET /users/{id}/manager`,
//! `PUT /users/{id}/manager/$ref`, `DELETE /users/{id}/manager/$ref` (Microsoft's "List manager",
//! "Assign manager", "Remove manager"; graph-spec has no section on them).
//!
//! Errors are classified like the rest (graph-spec §12): 429/5xx retryable, 403 forbidden, 404
//! not found. A 404 `Resource 'manager' does not exist …` on the GET or DELETE means "no manager"
//! (GET → `None`, DELETE → done: removing what is not there is success). On the PUT a 404 names
//! the missing object (the user or the manager, as `members/$ref` does — unconfirmed for the
//! manager reference); on objects this instance created moments ago it is replication delay
//! (graph-spec §7.4), retryable. Both writes are idempotent (assigning the same manager twice,
//! removing twice), so they are retried in-process and paced by the rate budget like every write.

use m365_engine::error::Entity;
use m365_engine::model::{M365ObjectId, TenantId};
use m365_engine::{Error, Result};
use reqwest::Method;
use serde_json::json;

use crate::client::{Call, TokenProvider};
use crate::directory::{GraphDirectory, not_yet_visible};
use crate::error::{ErrorClass, GraphError};

/// Graph's message when a user has no manager.
const NO_MANAGER: &str = "Resource 'manager' does not exist";

/// Whether `e` is Graph's "this user has no manager" 404.
fn is_no_manager(e: &GraphError) -> bool {
    e.class() == Some(ErrorClass::NotFound)
        && e.api()
            .and_then(|a| a.message.as_deref())
            .is_some_and(|m| m.starts_with(NO_MANAGER))
}

#[derive(serde::Deserialize)]
struct RawManager {
    id: String,
}

impl<P: TokenProvider> GraphDirectory<P> {
    async fn manager_call(
        &self,
        tenant: &TenantId,
        call: &Call,
    ) -> Result<crate::client::Response, GraphError> {
        self.client()
            .execute(self.tokens(), tenant, call, self.deadline())
            .await
    }

    /// The object id of `id`'s manager (`GET /users/{id}/manager?$select=id`), `None` when it
    /// has none. A read: no write budget.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`) for an unknown user; Graph errors per graph-spec §12.
    pub async fn manager(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
    ) -> Result<Option<M365ObjectId>> {
        let url = self
            .client()
            .url(&format!("/users/{id}/manager"), &[("$select", "id")])?;
        match self.manager_call(tenant, &Call::get(url)).await {
            Ok(response) => {
                let raw: RawManager = response.json()?;
                Ok(M365ObjectId::parse(raw.id).ok())
            }
            Err(e) if is_no_manager(&e) => Ok(None),
            Err(e) => Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
    }

    /// Makes `manager` the manager of `id` (`PUT /users/{id}/manager/$ref`, 204).
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`, the user or the manager that is missing);
    /// `Unavailable(NotYetVisible)` for a 404 on a user created here moments ago; Graph errors.
    pub async fn assign_manager(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        manager: &M365ObjectId,
    ) -> Result<()> {
        let url = self
            .client()
            .url(&format!("/users/{id}/manager/$ref"), &[])?;
        let body = json!({"@odata.id": format!("{}/users/{manager}", self.client().graph_base())});
        let fresh = self.is_recent(id) || self.is_recent(manager);
        let call = Call {
            method: Method::PUT,
            url,
            body: Some(body),
            idempotent: true,
            replication: if fresh { &[ErrorClass::NotFound] } else { &[] },
        };
        match self.manager_call(tenant, &call).await {
            Ok(_) => {}
            Err(e) if fresh && e.class() == Some(ErrorClass::NotFound) => {
                return Err(not_yet_visible(e));
            }
            Err(e) if e.class() == Some(ErrorClass::NotFound) => {
                let manager_missing = e
                    .api()
                    .and_then(|a| a.message.as_deref())
                    .is_some_and(|m| m.contains(manager.as_str()));
                let missing = if manager_missing { manager } else { id };
                return Err(Error::not_found(Entity::M365User, missing));
            }
            Err(e) => return Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
        tracing::info!(tenant.id = %tenant, user.id = %id, manager.id = %manager, "m365 manager set");
        Ok(())
    }

    /// Removes `id`'s manager (`DELETE /users/{id}/manager/$ref`, 204); no manager is success.
    ///
    /// # Errors
    /// `NotFound` (entity `M365User`) for an unknown user; Graph errors.
    pub async fn remove_manager(&self, tenant: &TenantId, id: &M365ObjectId) -> Result<()> {
        let url = self
            .client()
            .url(&format!("/users/{id}/manager/$ref"), &[])?;
        let call = Call {
            method: Method::DELETE,
            url,
            body: None,
            idempotent: true,
            replication: &[],
        };
        match self.manager_call(tenant, &call).await {
            Ok(_) => {}
            Err(e) if is_no_manager(&e) => {}
            Err(e) => return Err(e.into_engine(Entity::M365User, id.as_str(), None)),
        }
        tracing::info!(tenant.id = %tenant, user.id = %id, "m365 manager removed");
        Ok(())
    }
}
