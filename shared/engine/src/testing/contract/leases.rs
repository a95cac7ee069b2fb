//! Contract of [`Leases`]: one live holder per name, expiry, release by the holder only
//! (R-CONN-4: single-flight token refresh).

use chrono::TimeDelta;

use super::{fresh_suffix, now_ms};
use crate::ports::Leases;

fn name() -> String {
    format!("contract-{}", fresh_suffix())
}

/// R-CONN-4: the first holder gets the lease, another holder is refused while it lives, the holder
/// itself may extend it.
pub async fn a_free_lease_is_taken_and_a_live_one_is_refused(leases: &impl Leases) {
    let (n, now) = (name(), now_ms());
    let until = now + TimeDelta::minutes(2);
    assert!(leases.acquire(&n, "a", now, until).await.expect("acquire"));
    assert!(
        !leases
            .acquire(&n, "b", now + TimeDelta::seconds(1), until)
            .await
            .expect("acquire"),
        "another holder is refused"
    );
    assert!(
        leases
            .acquire(
                &n,
                "a",
                now + TimeDelta::seconds(1),
                until + TimeDelta::minutes(1)
            )
            .await
            .expect("acquire"),
        "the holder extends its lease"
    );
    assert!(
        !leases
            .acquire(&n, "b", until + TimeDelta::seconds(1), until)
            .await
            .expect("acquire"),
        "the extension counts"
    );
}

/// R-CONN-4: a lease whose end has come (≤ now) is taken over; the old holder then lost it.
pub async fn an_expired_lease_is_taken_over(leases: &impl Leases) {
    let (n, now) = (name(), now_ms());
    let end = now + TimeDelta::seconds(30);
    assert!(leases.acquire(&n, "a", now, end).await.expect("acquire"));
    assert!(
        leases
            .acquire(&n, "b", end, end + TimeDelta::minutes(2))
            .await
            .expect("acquire"),
        "taken over at its end"
    );
    assert!(
        !leases
            .acquire(
                &n,
                "a",
                end + TimeDelta::seconds(1),
                end + TimeDelta::minutes(3)
            )
            .await
            .expect("acquire"),
        "the old holder lost it"
    );
}

/// R-CONN-4: only the holder releases a lease; a released lease is free at once.
pub async fn only_the_holder_releases_a_lease(leases: &impl Leases) {
    let (n, now) = (name(), now_ms());
    let until = now + TimeDelta::minutes(2);
    assert!(leases.acquire(&n, "a", now, until).await.expect("acquire"));
    leases
        .release(&n, "b")
        .await
        .expect("release by another is a no-op");
    assert!(!leases.acquire(&n, "b", now, until).await.expect("acquire"));
    leases.release(&n, "a").await.expect("release");
    assert!(leases.acquire(&n, "b", now, until).await.expect("acquire"));
    leases
        .release(&name(), "nobody")
        .await
        .expect("releasing an unknown lease is a no-op");
}
