//! Contract of [`Leases`]: one live holder per name, expiry, release by the holder only
//! (R-CONN-4: single-flight token refresh).

use chrono::{DateTime, TimeDelta, Utc};

use super::{fresh_suffix, now_ms};
use crate::ports::Leases;

fn name() -> String {
    format!("contract-{}", fresh_suffix())
}

/// One acquisition: `holder` asks at `now` for the lease until `until`, and `gets` it or not
/// (`why` names the step on failure).
struct Step<'a> {
    holder: &'a str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    gets: bool,
    why: &'a str,
}

/// Runs the acquisitions `steps` on lease `name` in order, asserting each answer.
async fn assert_acquisitions(leases: &impl Leases, name: &str, steps: &[Step<'_>]) {
    for step in steps {
        let got = leases
            .acquire(name, step.holder, step.now, step.until)
            .await
            .expect("acquire");
        assert_eq!(got, step.gets, "{}", step.why);
    }
}

/// R-CONN-4: the first holder gets the lease, another holder is refused while it lives, the holder
/// itself may extend it.
pub async fn a_free_lease_is_taken_and_a_live_one_is_refused(leases: &impl Leases) {
    let now = now_ms();
    let until = now + TimeDelta::minutes(2);
    let second = now + TimeDelta::seconds(1);
    #[rustfmt::skip]
    let steps = [
        Step { holder: "a", now, until, gets: true, why: "a free lease is taken" },
        Step { holder: "b", now: second, until, gets: false, why: "another holder is refused" },
        Step { holder: "a", now: second, until: until + TimeDelta::minutes(1), gets: true, why: "the holder extends its lease" },
        Step { holder: "b", now: until + TimeDelta::seconds(1), until, gets: false, why: "the extension counts" },
    ];
    assert_acquisitions(leases, &name(), &steps).await;
}

/// R-CONN-4: a lease whose end has come (≤ now) is taken over; the old holder then lost it.
pub async fn an_expired_lease_is_taken_over(leases: &impl Leases) {
    let now = now_ms();
    let end = now + TimeDelta::seconds(30);
    #[rustfmt::skip]
    let steps = [
        Step { holder: "a", now, until: end, gets: true, why: "a free lease is taken" },
        Step { holder: "b", now: end, until: end + TimeDelta::minutes(2), gets: true, why: "taken over at its end" },
        Step { holder: "a", now: end + TimeDelta::seconds(1), until: end + TimeDelta::minutes(3), gets: false, why: "the old holder lost it" },
    ];
    assert_acquisitions(leases, &name(), &steps).await;
}

/// R-CONN-4: only the holder releases a lease; a released lease is free at once.
pub async fn only_the_holder_releases_a_lease(leases: &impl Leases) {
    let (n, now) = (name(), now_ms());
    let until = now + TimeDelta::minutes(2);
    let acquisition = |holder, gets, why| Step {
        holder,
        now,
        until,
        gets,
        why,
    };
    assert_acquisitions(
        leases,
        &n,
        &[acquisition("a", true, "a free lease is taken")],
    )
    .await;
    leases
        .release(&n, "b")
        .await
        .expect("release by another is a no-op");
    assert_acquisitions(
        leases,
        &n,
        &[acquisition("b", false, "a is still the holder")],
    )
    .await;
    leases.release(&n, "a").await.expect("release");
    assert_acquisitions(
        leases,
        &n,
        &[acquisition("b", true, "a released lease is free")],
    )
    .await;
    leases
        .release(&name(), "nobody")
        .await
        .expect("releasing an unknown lease is a no-op");
}
