//! Admin alerts (R-OPS-1): [`SnsAdminAlerts`] publishes each alert to the stack's `AdminAlerts`
//! SNS topic, and [`DynamoAlertIncidents`] keeps the open incidents that hold alerts to one per
//! incident, on the tenants table.
//!
//! An alert is one SNS message with `MessageStructure: json`: the `default` body (what SQS, Lambda
//! and HTTP subscribers receive) is the alert as JSON (`{"kind", "tenantId", "at", "message",
//! "details"}`), the `email` body a short text for people; the subject names the kind and the
//! tenant id (ASCII, under SNS's 100 characters); message attributes `kind` and `tenantId` let a
//! subscription filter. Nothing secret is ever in an alert (the engine builds it from ids, codes
//! and counts).
//!
//! Incidents: item `ALERT#<tenant id>#<kind>` / `ALERT` with `opened_at` and `claimed_until`
//! (epoch milliseconds) and `published` (bool); every write is conditional (see the
//! `AlertIncidents` port).

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sns::Client;
use aws_sdk_sns::types::MessageAttributeValue;
use chrono::{DateTime, Utc};
use m365_engine::error::Error;
use m365_engine::model::{AdminAlert, AlertIncident, AlertKind, TenantId};
use m365_engine::ports::{AdminAlerts, AlertIncidents};

use crate::OnHeap;
use crate::dynamo::{Condition, Item, Table, n, pk_sk_key, s};
use crate::schema::{PK, SK};

const COMPONENT: &str = "sns";
const SORT: &str = "ALERT";
const OPENED_AT: &str = "opened_at";
const CLAIMED_UNTIL: &str = "claimed_until";
const PUBLISHED: &str = "published";

/// [`AdminAlerts`] on an SNS topic. Without a topic (a deployment that declares none) an alert is
/// only logged, at `error`.
#[derive(Debug, Clone)]
pub struct SnsAdminAlerts {
    client: Client,
    topic_arn: Option<String>,
}

impl SnsAdminAlerts {
    /// Publishes to `topic_arn` (`None`: log only).
    #[must_use]
    pub fn new(client: Client, topic_arn: Option<String>) -> Self {
        Self { client, topic_arn }
    }
}

/// The email body: the message, then the details and where to look.
fn email_text(alert: &AdminAlert) -> String {
    format!(
        "{}\n\nKind: {}\nTenant: {}\nSince: {}\nDetails: {}\n\nThis alert is sent once per incident; it is not repeated until the incident is resolved and occurs again. See GET /events?tenantId={} for the history.",
        alert.message,
        alert.kind,
        alert.tenant_id,
        alert.at.to_rfc3339(),
        alert.details,
        alert.tenant_id
    )
}

/// The subject: printable ASCII, at most 100 characters (SNS's limits).
fn subject(alert: &AdminAlert) -> String {
    let mut text: String = format!("m365-sync alert: {} ({})", alert.kind, alert.tenant_id)
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    text.truncate(100);
    text
}

fn attribute(value: &str) -> Result<MessageAttributeValue, Error> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| Error::Infrastructure {
            component: COMPONENT,
            source: Box::new(e),
        })
}

impl AdminAlerts for SnsAdminAlerts {
    async fn publish(&self, alert: &AdminAlert) -> Result<(), Error> {
        let Some(topic) = &self.topic_arn else {
            tracing::error!(alert.kind = alert.kind.as_str(), tenant.id = %alert.tenant_id, message = %alert.message, "admin alert not published: no topic configured");
            return Ok(());
        };
        let default = serde_json::to_string(alert).map_err(|e| Error::Infrastructure {
            component: COMPONENT,
            source: Box::new(e),
        })?;
        let body = serde_json::json!({ "default": default, "email": email_text(alert) });
        self.client
            .publish()
            .topic_arn(topic)
            .subject(subject(alert))
            .message_structure("json")
            .message(body.to_string())
            .message_attributes("kind", attribute(alert.kind.as_str())?)
            .message_attributes("tenantId", attribute(alert.tenant_id.as_str())?)
            .send()
            .on_heap()
            .await
            .map_err(|e| crate::dynamo::sdk_error(COMPONENT, e))?;
        Ok(())
    }
}

/// [`AlertIncidents`] on the tenants table.
#[derive(Debug, Clone)]
pub struct DynamoAlertIncidents {
    table: Table,
}

impl DynamoAlertIncidents {
    /// Incidents on `table` (a table created from [`crate::schema::TENANTS`]).
    #[must_use]
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }
}

fn key_pk(tenant: &TenantId, kind: AlertKind) -> String {
    format!("ALERT#{tenant}#{kind}")
}

fn millis(item: &Item, name: &'static str) -> Result<DateTime<Utc>, Error> {
    let ms = crate::dynamo::number(item, name).map_err(|e| Error::Infrastructure {
        component: "dynamodb",
        source: Box::new(e),
    })?;
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::Infrastructure {
        component: "dynamodb",
        source: format!("{name} out of range").into(),
    })
}

fn item(
    tenant: &TenantId,
    kind: AlertKind,
    opened_at: DateTime<Utc>,
    claimed_until: DateTime<Utc>,
    published: bool,
) -> Item {
    Item::from([
        (PK.to_owned(), s(key_pk(tenant, kind))),
        (SK.to_owned(), s(SORT)),
        (OPENED_AT.to_owned(), n(opened_at.timestamp_millis())),
        (
            CLAIMED_UNTIL.to_owned(),
            n(claimed_until.timestamp_millis()),
        ),
        (PUBLISHED.to_owned(), AttributeValue::Bool(published)),
    ])
}

/// A stored incident: (`opened_at`, `claimed_until`, `published`).
type Stored = (DateTime<Utc>, DateTime<Utc>, bool);

impl DynamoAlertIncidents {
    async fn read(&self, tenant: &TenantId, kind: AlertKind) -> Result<Option<Stored>, Error> {
        let Some(item) = self.table.get_item(key_pk(tenant, kind), SORT).await? else {
            return Ok(None);
        };
        let published = matches!(item.get(PUBLISHED), Some(AttributeValue::Bool(true)));
        Ok(Some((
            millis(&item, OPENED_AT)?,
            millis(&item, CLAIMED_UNTIL)?,
            published,
        )))
    }
}

impl AlertIncidents for DynamoAlertIncidents {
    async fn claim(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<AlertIncident>, Error> {
        let incident = |opened_at| AlertIncident {
            tenant_id: tenant.clone(),
            kind,
            opened_at,
            published: false,
        };
        match self.read(tenant, kind).await? {
            None => {
                let fresh = item(tenant, kind, now, until, false);
                let opened = self.table.put_if(fresh, &Condition::absent()).await?;
                Ok(opened.then(|| incident(now)))
            }
            Some((opened_at, claimed_until, false)) if claimed_until <= now => {
                // Take over a claim that ran out, unless someone else did first.
                let condition =
                    Condition::new("#opened = :opened AND #published = :false AND #until <= :now")
                        .name("#opened", OPENED_AT)
                        .name("#published", PUBLISHED)
                        .name("#until", CLAIMED_UNTIL)
                        .value(":opened", n(opened_at.timestamp_millis()))
                        .value(":false", AttributeValue::Bool(false))
                        .value(":now", n(now.timestamp_millis()));
                let taken = self
                    .table
                    .put_if(item(tenant, kind, opened_at, until, false), &condition)
                    .await?;
                Ok(taken.then(|| incident(opened_at)))
            }
            Some(_) => Ok(None),
        }
    }

    async fn mark_published(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        opened_at: DateTime<Utc>,
    ) -> Result<(), Error> {
        let condition = Condition::new("#opened = :opened")
            .name("#opened", OPENED_AT)
            .value(":opened", n(opened_at.timestamp_millis()));
        // Refused: resolved (or re-opened) meanwhile; nothing to mark.
        self.table
            .put_if(item(tenant, kind, opened_at, opened_at, true), &condition)
            .await?;
        Ok(())
    }

    async fn resolve(&self, tenant: &TenantId, kind: AlertKind) -> Result<bool, Error> {
        self.table
            .delete_if(
                pk_sk_key(key_pk(tenant, kind), SORT),
                &Condition::new("attribute_exists(#pk)").name("#pk", PK),
            )
            .await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
    ) -> Result<Option<AlertIncident>, Error> {
        Ok(self
            .read(tenant, kind)
            .await?
            .map(|(opened_at, _, published)| AlertIncident {
                tenant_id: tenant.clone(),
                kind,
                opened_at,
                published,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_ascii_and_within_snss_limit_and_the_email_holds_the_message() {
        // R-OPS-1
        let alert = AdminAlert {
            kind: AlertKind::ConfigurationError,
            tenant_id: TenantId::generate(),
            at: Utc::now(),
            message: "Microsoft refused the OAuth client: invalid_client (AADSTS7000215).".into(),
            details: serde_json::json!({"aadsts": 7_000_215}),
        };
        let subject = subject(&alert);
        assert!(subject.len() <= 100 && subject.is_ascii(), "{subject}");
        assert!(subject.contains("configuration_error"));
        let text = email_text(&alert);
        assert!(text.starts_with(&alert.message));
        assert!(text.contains("7000215"));
    }
}
