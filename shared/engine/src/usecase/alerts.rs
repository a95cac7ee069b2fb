//! Admin alerts, once per incident (R-OPS-1). [`Alerting`] publishes an alert through the
//! `AdminAlerts` port (the stack's SNS topic) only when it opens an incident in the
//! `AlertIncidents` store, keyed by (tenant, [`AlertKind`]); every later occurrence of the same
//! incident — the next scheduled run, a retried or redelivered invocation, a concurrent one —
//! finds it open and publishes nothing. [`Alerting::resolve`] closes an incident; the next
//! occurrence then alerts again.
//!
//! Who resolves what:
//! - `reauthorization_required`: the connect callback when the tenant is active again after a
//!   reconnect (`usecase::connect`), and any later successful token refresh of the tenant;
//! - `configuration_error`: the next successful token refresh of the tenant;
//! - `safeguard_tripped`: a later reconcile pass within the safeguard, and an approved or
//!   rejected held plan (whoever approves or rejects calls [`Alerting::resolve`]).
//!
//! Order: claim the incident, publish, then mark it published. A publish that fails leaves the
//! claim to run out ([`ALERT_CLAIM`]); the next occurrence after that publishes. A crash between
//! publish and mark publishes again after the claim ran out (at least once, never every run).

use chrono::TimeDelta;

use crate::error::Result;
use crate::model::{AdminAlert, AlertIncident, AlertKind, TenantId};
use crate::ports::Ports;
use crate::ports::{AdminAlerts, AlertIncidents, Clock};

/// How long one publisher holds an incident's claim before another may publish in its place.
pub const ALERT_CLAIM: TimeDelta = TimeDelta::minutes(2);

/// What [`Alerting::raise`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new incident (or one whose alert never went out): its alert was published now.
    Published(AlertIncident),
    /// The incident is open and alerted already (or being alerted by another invocation).
    AlreadyOpen,
}

use_case! {
    /// Admin alerts, deduplicated per incident.
    pub struct Alerting {
        ports: [alerts: Alerts, incidents: AlertIncidents = alert_incidents, clock: Clock],
    }
}

impl<P: Ports> Alerting<'_, P> {
    /// Alerts the admins about `kind` for `tenant` unless that incident is already open:
    /// [`Self::open`] then [`Self::publish`].
    ///
    /// # Errors
    /// Store and publish failures (the incident's claim then runs out and a later call retries).
    pub async fn raise(
        &self,
        tenant: &TenantId,
        kind: AlertKind,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Result<Raised> {
        // Read first: an alerted incident costs a read, not a (refused) conditional write.
        if self
            .incidents
            .get(tenant, kind)
            .await?
            .is_some_and(|open| open.published)
        {
            return Ok(Raised::AlreadyOpen);
        }
        let Some(incident) = self.open(tenant, kind).await? else {
            return Ok(Raised::AlreadyOpen);
        };
        self.publish(&incident, message, details).await?;
        Ok(Raised::Published(incident))
    }

    /// Opens (claims) the incident of `kind` for `tenant`: `Some` when the caller must publish
    /// its alert ([`Self::publish`]) — e.g. after recording an event derived from the incident's
    /// `opened_at`, which stays the same for a retry of the same incident.
    ///
    /// # Errors
    /// Store failures.
    pub async fn open(&self, tenant: &TenantId, kind: AlertKind) -> Result<Option<AlertIncident>> {
        let now = self.clock.now();
        self.incidents
            .claim(tenant, kind, now, now + ALERT_CLAIM)
            .await
    }

    /// Publishes the alert of a claimed `incident` and marks it published.
    ///
    /// # Errors
    /// Publish and store failures.
    pub async fn publish(
        &self,
        incident: &AlertIncident,
        message: impl Into<String>,
        details: serde_json::Value,
    ) -> Result<()> {
        let alert = AdminAlert {
            kind: incident.kind,
            tenant_id: incident.tenant_id.clone(),
            at: incident.opened_at,
            message: message.into(),
            details,
        };
        self.alerts.publish(&alert).await?;
        tracing::warn!(tenant.id = %alert.tenant_id, alert.kind = alert.kind.as_str(), "admin alert published");
        self.incidents
            .mark_published(&incident.tenant_id, incident.kind, incident.opened_at)
            .await
    }

    /// Closes the incident of `kind` for `tenant` (the condition is over); returns whether one
    /// was open. The next occurrence opens a new incident and alerts again.
    ///
    /// # Errors
    /// Store failures.
    pub async fn resolve(&self, kind: AlertKind, tenant: &TenantId) -> Result<bool> {
        let closed = self.incidents.resolve(tenant, kind).await?;
        if closed {
            tracing::info!(tenant.id = %tenant, alert.kind = kind.as_str(), "alert incident resolved");
        }
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::usecase::testkit::{World, throttled};

    #[tokio::test]
    async fn an_incident_is_alerted_once_however_often_it_is_raised() {
        // R-OPS-1 (once per incident, not every run; a redelivered invocation publishes nothing)
        let w = World::new().await;
        let alerting = Alerting::new(&w);
        let kind = AlertKind::ReauthorizationRequired;
        let first = alerting
            .raise(
                &w.tenant.id,
                kind,
                "reconnect",
                serde_json::json!({"aadsts": 700_082}),
            )
            .await
            .unwrap();
        assert!(matches!(first, Raised::Published(_)), "{first:?}");
        for _ in 0..3 {
            w.clock.advance(TimeDelta::hours(1));
            let again = alerting
                .raise(&w.tenant.id, kind, "reconnect", serde_json::json!({}))
                .await
                .unwrap();
            assert_eq!(again, Raised::AlreadyOpen);
        }
        let published = w.alerts.published();
        assert_eq!(published.len(), 1);
        assert_eq!(published[0].kind, kind);
        assert_eq!(published[0].tenant_id, w.tenant.id);
        assert_eq!(published[0].details["aadsts"], 700_082);
    }

    #[tokio::test]
    async fn a_resolved_incident_that_recurs_is_alerted_again() {
        // R-OPS-1
        let w = World::new().await;
        let alerting = Alerting::new(&w);
        let kind = AlertKind::SafeguardTripped;
        alerting
            .raise(&w.tenant.id, kind, "held", serde_json::json!({}))
            .await
            .unwrap();
        assert!(alerting.resolve(kind, &w.tenant.id).await.unwrap());
        assert!(!alerting.resolve(kind, &w.tenant.id).await.unwrap());
        w.clock.advance(TimeDelta::hours(1));
        alerting
            .raise(&w.tenant.id, kind, "held", serde_json::json!({}))
            .await
            .unwrap();
        let published = w.alerts.of(kind);
        assert_eq!(published.len(), 2);
        assert!(published[1].at > published[0].at, "a new incident");
    }

    #[tokio::test]
    async fn a_failed_publish_is_retried_once_the_claim_ran_out_and_then_only_once() {
        // R-OPS-1 (no alert is lost to a failed publish; the retry publishes exactly once)
        let w = World::new().await;
        let alerting = Alerting::new(&w);
        let kind = AlertKind::ConfigurationError;
        w.alerts.fail_next(throttled());
        let failed = alerting
            .raise(&w.tenant.id, kind, "secret", serde_json::json!({}))
            .await;
        assert!(matches!(failed, Err(Error::Throttled { .. })), "{failed:?}");
        // Redelivered at once: the claim is still held, nothing is published twice.
        assert_eq!(
            alerting
                .raise(&w.tenant.id, kind, "secret", serde_json::json!({}))
                .await
                .unwrap(),
            Raised::AlreadyOpen
        );
        w.clock.advance(ALERT_CLAIM);
        let retried = alerting
            .raise(&w.tenant.id, kind, "secret", serde_json::json!({}))
            .await
            .unwrap();
        let Raised::Published(incident) = retried else {
            panic!("published on retry")
        };
        assert_eq!(
            incident.opened_at,
            w.now() - ALERT_CLAIM,
            "the same incident"
        );
        w.clock.advance(ALERT_CLAIM);
        assert_eq!(
            alerting
                .raise(&w.tenant.id, kind, "secret", serde_json::json!({}))
                .await
                .unwrap(),
            Raised::AlreadyOpen
        );
        assert_eq!(w.alerts.of(kind).len(), 1);
    }

    #[tokio::test]
    async fn incidents_of_other_kinds_and_tenants_alert_on_their_own() {
        // R-OPS-1
        let w = World::new().await;
        let alerting = Alerting::new(&w);
        let other = TenantId::generate();
        for (tenant, kind) in [
            (&w.tenant.id, AlertKind::ReauthorizationRequired),
            (&w.tenant.id, AlertKind::ConfigurationError),
            (&other, AlertKind::ReauthorizationRequired),
        ] {
            let raised = alerting
                .raise(tenant, kind, "x", serde_json::json!({}))
                .await
                .unwrap();
            assert!(matches!(raised, Raised::Published(_)));
        }
        assert_eq!(w.alerts.published().len(), 3);
    }
}
