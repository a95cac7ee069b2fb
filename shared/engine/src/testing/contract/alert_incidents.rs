//! Contract of [`AlertIncidents`]: one open incident per (tenant, kind), claimed by one publisher
//! at a time, published once, re-opened only after it was resolved (R-OPS-1).

use chrono::TimeDelta;

use super::{fresh_tenant_id, now_ms};
use crate::model::AlertKind;
use crate::ports::AlertIncidents;

const CLAIM: TimeDelta = TimeDelta::minutes(2);

/// R-OPS-1: the first claim opens the incident; while it is claimed or once it is published,
/// nobody else is told to publish.
pub async fn a_new_incident_is_claimed_once_and_its_alert_published_once(
    incidents: &impl AlertIncidents,
) {
    let tenant = fresh_tenant_id();
    let kind = AlertKind::ReauthorizationRequired;
    let now = now_ms();
    assert_eq!(incidents.get(&tenant, kind).await.expect("get"), None);
    let opened = incidents
        .claim(&tenant, kind, now, now + CLAIM)
        .await
        .expect("claim")
        .expect("a new incident is the caller's to publish");
    assert_eq!(opened.tenant_id, tenant);
    assert_eq!(opened.kind, kind);
    assert_eq!(opened.opened_at, now);
    assert!(!opened.published);
    let later = now + TimeDelta::seconds(1);
    assert_eq!(
        incidents
            .claim(&tenant, kind, later, later + CLAIM)
            .await
            .expect("claim"),
        None,
        "a live claim is not taken"
    );
    incidents
        .mark_published(&tenant, kind, opened.opened_at)
        .await
        .expect("mark");
    let much_later = now + CLAIM + TimeDelta::hours(1);
    assert_eq!(
        incidents
            .claim(&tenant, kind, much_later, much_later + CLAIM)
            .await
            .expect("claim"),
        None,
        "a published incident is not published again"
    );
    let stored = incidents
        .get(&tenant, kind)
        .await
        .expect("get")
        .expect("the incident is open");
    assert!(stored.published);
    assert_eq!(stored.opened_at, now);
}

/// R-OPS-1: a publisher that died between its claim and its confirmation is replaced once its
/// claim ran out; the incident keeps its opening instant (the same incident, not a new one).
pub async fn an_unconfirmed_claim_is_taken_over_after_it_ran_out_with_the_same_incident(
    incidents: &impl AlertIncidents,
) {
    let tenant = fresh_tenant_id();
    let kind = AlertKind::ConfigurationError;
    let now = now_ms();
    incidents
        .claim(&tenant, kind, now, now + CLAIM)
        .await
        .expect("claim")
        .expect("opened");
    let after = now + CLAIM;
    let again = incidents
        .claim(&tenant, kind, after, after + CLAIM)
        .await
        .expect("claim")
        .expect("an expired, unconfirmed claim is taken over");
    assert_eq!(again.opened_at, now);
    assert!(!again.published);
}

/// R-OPS-1: resolving closes the incident (once); the next occurrence is a new incident.
pub async fn a_resolved_incident_opens_anew_and_resolving_twice_finds_none(
    incidents: &impl AlertIncidents,
) {
    let tenant = fresh_tenant_id();
    let kind = AlertKind::SafeguardTripped;
    let now = now_ms();
    incidents
        .claim(&tenant, kind, now, now + CLAIM)
        .await
        .expect("claim")
        .expect("opened");
    incidents
        .mark_published(&tenant, kind, now)
        .await
        .expect("mark");
    assert!(incidents.resolve(&tenant, kind).await.expect("resolve"));
    assert!(!incidents.resolve(&tenant, kind).await.expect("resolve"));
    assert_eq!(incidents.get(&tenant, kind).await.expect("get"), None);
    let later = now + TimeDelta::seconds(5);
    let reopened = incidents
        .claim(&tenant, kind, later, later + CLAIM)
        .await
        .expect("claim")
        .expect("a new incident");
    assert_eq!(reopened.opened_at, later);
    // A late confirmation of the resolved incident does not mark the new one.
    incidents
        .mark_published(&tenant, kind, now)
        .await
        .expect("mark");
    assert!(
        !incidents
            .get(&tenant, kind)
            .await
            .expect("get")
            .expect("the new incident is open")
            .published
    );
}

/// R-OPS-1: an incident of one tenant and kind is not another's.
pub async fn incidents_of_other_tenants_and_kinds_are_apart(incidents: &impl AlertIncidents) {
    let (a, b) = (fresh_tenant_id(), fresh_tenant_id());
    let now = now_ms();
    incidents
        .claim(&a, AlertKind::ReauthorizationRequired, now, now + CLAIM)
        .await
        .expect("claim")
        .expect("opened");
    for (tenant, kind) in [
        (&a, AlertKind::ConfigurationError),
        (&a, AlertKind::SafeguardTripped),
        (&b, AlertKind::ReauthorizationRequired),
    ] {
        assert!(
            incidents
                .claim(tenant, kind, now, now + CLAIM)
                .await
                .expect("claim")
                .is_some(),
            "{tenant} {kind}"
        );
    }
    assert!(
        incidents
            .resolve(&b, AlertKind::ReauthorizationRequired)
            .await
            .expect("resolve")
    );
    assert!(
        incidents
            .get(&a, AlertKind::ReauthorizationRequired)
            .await
            .expect("get")
            .is_some()
    );
}
