//! Contract of [`OperationLedger`]: claims with leases, completion, release, expiry (STYLE "Idempotency").

use chrono::{DateTime, TimeDelta, Utc};

use super::{fresh_user_id, now_ms};
use crate::model::{OperationId, OperationKind, OperationOutcome, OperationSubject};
use crate::ports::{Claim, OperationLedger};

fn op() -> OperationId {
    OperationId::new(
        OperationKind::UserBind,
        &OperationSubject::User(fresh_user_id()),
        1,
    )
}

fn created() -> OperationOutcome {
    OperationOutcome::Succeeded {
        detail: Some("created".into()),
    }
}

/// Claims `id` at `at` with a lease of `lease` from then; the claim call must succeed.
async fn claim(
    ledger: &impl OperationLedger,
    id: &OperationId,
    at: DateTime<Utc>,
    lease: TimeDelta,
) -> Claim {
    ledger
        .claim(id, at, at + lease)
        .await
        .expect("claim succeeds")
}

/// Claims `id` at `at` (a five-minute lease) and completes it with `outcome`, kept until `expires_at`.
async fn claim_and_complete(
    ledger: &impl OperationLedger,
    id: &OperationId,
    at: DateTime<Utc>,
    outcome: &OperationOutcome,
    expires_at: DateTime<Utc>,
) {
    claim(ledger, id, at, TimeDelta::minutes(5)).await;
    ledger
        .complete(id, outcome, expires_at)
        .await
        .expect("complete succeeds");
}

/// R-BIND-2 (duplicate delivery is harmless): the first claim wins, a second one sees it in progress.
pub async fn a_second_claim_of_an_operation_is_in_progress(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    let lease = now + TimeDelta::minutes(5);
    assert_eq!(
        ledger.claim(&id, now, lease).await.expect("claim succeeds"),
        Claim::Claimed
    );
    assert_eq!(
        ledger
            .claim(
                &id,
                now + TimeDelta::seconds(1),
                now + TimeDelta::minutes(6)
            )
            .await
            .expect("claim succeeds"),
        Claim::InProgress { lease_until: lease }
    );
}

/// R-BIND-2: a completed operation is reported done with its outcome, so Graph is not called again.
pub async fn a_completed_operation_is_already_done_with_its_outcome(ledger: &impl OperationLedger) {
    let now = now_ms();
    let later = now + TimeDelta::hours(1);
    let failed = OperationOutcome::Failed {
        code: "federated_domain".into(),
    };
    for outcome in [created(), failed] {
        let id = op();
        claim_and_complete(ledger, &id, now, &outcome, now + TimeDelta::days(7)).await;
        assert_eq!(
            claim(ledger, &id, later, TimeDelta::minutes(5)).await,
            Claim::AlreadyDone(outcome)
        );
    }
}

/// DESIGN §5 (a crash mid-operation converges): an expired lease is taken over.
pub async fn an_expired_lease_is_taken_over(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    claim(ledger, &id, now, TimeDelta::seconds(30)).await;
    let after = now + TimeDelta::seconds(31);
    assert_eq!(
        claim(ledger, &id, after, TimeDelta::seconds(30)).await,
        Claim::Claimed
    );
    assert_eq!(
        claim(ledger, &id, after, TimeDelta::seconds(30)).await,
        Claim::InProgress {
            lease_until: after + TimeDelta::seconds(30)
        }
    );
}

/// R-BIND-6: a released claim (retryable failure) can be claimed again at once; releasing twice is harmless.
pub async fn a_released_claim_can_be_claimed_again(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    claim(ledger, &id, now, TimeDelta::minutes(5)).await;
    ledger.release(&id).await.expect("release succeeds");
    ledger
        .release(&id)
        .await
        .expect("a second release succeeds");
    assert_eq!(
        claim(ledger, &id, now, TimeDelta::minutes(5)).await,
        Claim::Claimed
    );
}

/// R-BIND-2: releasing a completed operation leaves it done.
pub async fn releasing_a_done_operation_keeps_it_done(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    claim_and_complete(ledger, &id, now, &created(), now + TimeDelta::days(7)).await;
    ledger.release(&id).await.expect("release succeeds");
    assert_eq!(
        claim(ledger, &id, now, TimeDelta::minutes(5)).await,
        Claim::AlreadyDone(created())
    );
}

/// STYLE "Idempotency" (ledger TTL): a done entry past its expiry no longer blocks a new claim.
pub async fn a_done_operation_past_its_expiry_can_be_claimed_again(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    claim_and_complete(ledger, &id, now, &created(), now + TimeDelta::hours(1)).await;
    let after = now + TimeDelta::hours(2);
    assert_eq!(
        claim(ledger, &id, after, TimeDelta::minutes(5)).await,
        Claim::Claimed
    );
}
