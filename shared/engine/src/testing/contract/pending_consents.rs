//! Contract of [`PendingConsents`]: a sign-in's `state` is redeemable once, only before it expires
//! (R-SAFE-3, R-CONN-1).

use chrono::{DateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::{fresh_suffix, fresh_tenant_id, now_ms};
use crate::ports::{PendingConsent, PendingConsents};

fn pending(lifetime: TimeDelta) -> PendingConsent {
    PendingConsent {
        state: format!("state-{}{}", fresh_suffix(), fresh_suffix()),
        tenant_id: fresh_tenant_id(),
        pkce_verifier: SecretString::from(format!("verifier-{}", fresh_suffix())),
        expires_at: now_ms() + lifetime,
        consent_epoch: 3,
        authority: Some(
            crate::model::M365TenantId::parse("0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f")
                .expect("a GUID"),
        ),
        requested_by: crate::model::Actor::principal("arn:aws:iam::123456789012:user/admin"),
    }
}

/// A new sign-in living `lifetime`, stored in `store`.
async fn stored(store: &impl PendingConsents, lifetime: TimeDelta) -> PendingConsent {
    let p = pending(lifetime);
    store.put(&p).await.expect("put");
    p
}

/// Takes the sign-in of `state` at `now`; the call must succeed.
async fn take(
    store: &impl PendingConsents,
    state: &str,
    now: DateTime<Utc>,
) -> Option<PendingConsent> {
    store.take(state, now).await.expect("take")
}

/// R-SAFE-3: a stored sign-in comes back whole, once.
pub async fn a_sign_in_is_taken_once_with_every_field(store: &impl PendingConsents) {
    let p = stored(store, TimeDelta::minutes(30)).await;
    let got = take(store, &p.state, now_ms()).await.expect("stored");
    assert_eq!(got.state, p.state);
    assert_eq!(got.tenant_id, p.tenant_id);
    assert_eq!(
        got.pkce_verifier.expose_secret(),
        p.pkce_verifier.expose_secret()
    );
    assert_eq!(got.expires_at, p.expires_at);
    assert_eq!(got.consent_epoch, p.consent_epoch, "R-CONN-8");
    assert_eq!(got.authority, p.authority, "R-CONN-7");
    assert_eq!(got.requested_by, p.requested_by, "R-AUD-1");
    assert!(
        take(store, &p.state, now_ms()).await.is_none(),
        "a state is redeemable once"
    );
}

/// R-SAFE-3: an expired sign-in (expiry ≤ now) is not returned.
pub async fn an_expired_sign_in_is_not_returned(store: &impl PendingConsents) {
    let p = stored(store, TimeDelta::seconds(10)).await;
    assert!(take(store, &p.state, p.expires_at).await.is_none());
}

/// R-SAFE-3: an unknown (e.g. tampered) state is not found.
pub async fn an_unknown_state_is_not_found(store: &impl PendingConsents) {
    let p = stored(store, TimeDelta::minutes(30)).await;
    assert!(
        take(store, &format!("{}x", p.state), now_ms())
            .await
            .is_none()
    );
    assert!(
        take(store, &p.state, now_ms()).await.is_some(),
        "a wrong guess does not consume the real state"
    );
}

/// R-SAFE-3: a state is never overwritten.
pub async fn storing_a_state_twice_is_refused(store: &impl PendingConsents) {
    let p = stored(store, TimeDelta::minutes(30)).await;
    let mut other = pending(TimeDelta::minutes(30));
    other.state.clone_from(&p.state);
    let again = store.put(&other).await;
    super::assert_conflict(&again, "already_exists");
    let got = take(store, &p.state, now_ms()).await.expect("stored");
    assert_eq!(got.tenant_id, p.tenant_id, "the first one is kept");
}
