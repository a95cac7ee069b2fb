//! Licences through Graph (R-LIC-1, graph-spec §9): `GET /subscribedSkus` (only `$select`, not
//! paged in practice — a `nextLink` is followed anyway), the `usageLocation` PATCH that must come
//! before a licence (graph-spec §9.2: `assignLicense` does not set it), and
//! `POST /users/{id}/assignLicense` with both collections always sent (non-nullable in the CSDL).
//!
//! Both writes are paced by the client's rate budget like every write. `assignLicense` sets the
//! account's licences to a state, so repeating it is harmless and it is retried like an
//! idempotent request (graph-spec has no statement on its retry semantics: unconfirmed). No seat
//! left (400 "… does not have any available licenses", [`ErrorClass::NoAvailableLicenses`]) is
//! [`LicenseWrite::NoSeats`] with Graph's request id, not an error.

use m365_engine::Result;
use m365_engine::error::Entity;
use m365_engine::model::{M365ObjectId, ServicePlan, SubscribedSku, TenantId, UsageLocation};
use m365_engine::ports::{LicenseDirectory, LicenseWrite};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Call, TokenProvider};
use crate::directory::{GraphDirectory, not_yet_visible};
use crate::error::{ErrorClass, GraphError};

const SKU_SELECT: &str = "skuId,skuPartNumber,servicePlans,prepaidUnits,consumedUnits";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphPlan {
    service_plan_id: String,
    service_plan_name: String,
}

#[derive(Deserialize, Default)]
struct Prepaid {
    #[serde(default)]
    enabled: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphSku {
    sku_id: String,
    sku_part_number: String,
    #[serde(default)]
    service_plans: Vec<GraphPlan>,
    #[serde(default)]
    prepaid_units: Prepaid,
    #[serde(default)]
    consumed_units: u32,
}

impl GraphSku {
    fn into_model(self) -> SubscribedSku {
        SubscribedSku {
            sku_id: self.sku_id.to_ascii_lowercase(),
            sku_part_number: self.sku_part_number,
            service_plans: self
                .service_plans
                .into_iter()
                .map(|p| ServicePlan {
                    id: p.service_plan_id.to_ascii_lowercase(),
                    name: p.service_plan_name,
                })
                .collect(),
            enabled_units: self.prepaid_units.enabled,
            consumed_units: self.consumed_units,
        }
    }
}

impl<P: TokenProvider> GraphDirectory<P> {
    async fn user_write(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        url: reqwest::Url,
        method: Method,
        body: serde_json::Value,
    ) -> std::result::Result<(), GraphError> {
        let recent = self.is_recent(id);
        let call = Call {
            method,
            url,
            body: Some(body),
            idempotent: true,
            replication: if recent { &[ErrorClass::NotFound] } else { &[] },
        };
        self.client()
            .execute(self.tokens(), tenant, &call, self.deadline())
            .await
            .map(drop)
    }

    fn engine_error(&self, id: &M365ObjectId, e: GraphError) -> m365_engine::Error {
        if self.is_recent(id) && e.class() == Some(ErrorClass::NotFound) {
            return not_yet_visible(e);
        }
        e.into_engine(Entity::M365User, id.as_str(), None)
    }
}

impl<P: TokenProvider> LicenseDirectory for GraphDirectory<P> {
    async fn subscribed_skus(&self, tenant: &TenantId) -> Result<Vec<SubscribedSku>> {
        let url = self
            .client()
            .url("/subscribedSkus", &[("$select", SKU_SELECT)])?;
        let skus: Vec<GraphSku> = self
            .collect(tenant, url)
            .await
            .map_err(|e| e.into_engine(Entity::Tenant, tenant.as_str(), None))?;
        Ok(skus.into_iter().map(GraphSku::into_model).collect())
    }

    async fn set_usage_location(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        location: &UsageLocation,
    ) -> Result<()> {
        let url = self.client().url(&format!("/users/{id}"), &[])?;
        self.user_write(
            tenant,
            id,
            url,
            Method::PATCH,
            json!({"usageLocation": location.as_str()}),
        )
        .await
        .map_err(|e| self.engine_error(id, e))?;
        tracing::info!(tenant.id = %tenant, user.id = %id, "m365 usage location set");
        Ok(())
    }

    async fn assign_licenses(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        add: &[(String, Vec<String>)],
        remove: &[String],
    ) -> Result<LicenseWrite> {
        let url = self
            .client()
            .url(&format!("/users/{id}/assignLicense"), &[])?;
        let body = json!({
            "addLicenses": add
                .iter()
                .map(|(sku, disabled)| json!({"skuId": sku, "disabledPlans": disabled}))
                .collect::<Vec<_>>(),
            "removeLicenses": remove,
        });
        match self.user_write(tenant, id, url, Method::POST, body).await {
            Ok(()) => {
                tracing::info!(tenant.id = %tenant, user.id = %id, added = add.len(), removed = remove.len(), "m365 licences assigned");
                Ok(LicenseWrite::Done)
            }
            Err(e) if e.class() == Some(ErrorClass::NoAvailableLicenses) => {
                let graph_request_id = e.request_id().map(str::to_owned);
                let message = e.api().and_then(|a| a.message.clone()).unwrap_or_default();
                tracing::warn!(tenant.id = %tenant, user.id = %id, graph.request_id = graph_request_id.as_deref(), "no licence seat left");
                Ok(LicenseWrite::NoSeats {
                    graph_request_id,
                    message,
                })
            }
            Err(e) => Err(self.engine_error(id, e)),
        }
    }
}
