//! Contract of [`OperationLedger`]: claims with leases, completion, release, expiry (STYLE "Idempotency").

use chrono::TimeDelta;

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
    let (id, now) = (op(), now_ms());
    ledger
        .claim(&id, now, now + TimeDelta::minutes(5))
        .await
        .expect("claim succeeds");
    ledger
        .complete(&id, &created(), now + TimeDelta::days(7))
        .await
        .expect("complete succeeds");
    let later = now + TimeDelta::hours(1);
    assert_eq!(
        ledger
            .claim(&id, later, later + TimeDelta::minutes(5))
            .await
            .expect("claim succeeds"),
        Claim::AlreadyDone(created())
    );
    let failed = op();
    let outcome = OperationOutcome::Failed {
        code: "federated_domain".into(),
    };
    ledger
        .claim(&failed, now, now + TimeDelta::minutes(5))
        .await
        .expect("claim succeeds");
    ledger
        .complete(&failed, &outcome, now + TimeDelta::days(7))
        .await
        .expect("complete succeeds");
    assert_eq!(
        ledger
            .claim(&failed, later, later + TimeDelta::minutes(5))
            .await
            .expect("claim succeeds"),
        Claim::AlreadyDone(outcome)
    );
}

/// DESIGN §5 (a crash mid-operation converges): an expired lease is taken over.
pub async fn an_expired_lease_is_taken_over(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    ledger
        .claim(&id, now, now + TimeDelta::seconds(30))
        .await
        .expect("claim succeeds");
    let after = now + TimeDelta::seconds(31);
    assert_eq!(
        ledger
            .claim(&id, after, after + TimeDelta::seconds(30))
            .await
            .expect("claim succeeds"),
        Claim::Claimed
    );
    assert_eq!(
        ledger
            .claim(&id, after, after + TimeDelta::seconds(30))
            .await
            .expect("claim succeeds"),
        Claim::InProgress {
            lease_until: after + TimeDelta::seconds(30)
        }
    );
}

/// R-BIND-6: a released claim (retryable failure) can be claimed again at once; releasing twice is harmless.
pub async fn a_released_claim_can_be_claimed_again(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    ledger
        .claim(&id, now, now + TimeDelta::minutes(5))
        .await
        .expect("claim succeeds");
    ledger.release(&id).await.expect("release succeeds");
    ledger
        .release(&id)
        .await
        .expect("a second release succeeds");
    assert_eq!(
        ledger
            .claim(&id, now, now + TimeDelta::minutes(5))
            .await
            .expect("claim succeeds"),
        Claim::Claimed
    );
}

/// R-BIND-2: releasing a completed operation leaves it done.
pub async fn releasing_a_done_operation_keeps_it_done(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    ledger
        .claim(&id, now, now + TimeDelta::minutes(5))
        .await
        .expect("claim succeeds");
    ledger
        .complete(&id, &created(), now + TimeDelta::days(7))
        .await
        .expect("complete succeeds");
    ledger.release(&id).await.expect("release succeeds");
    assert_eq!(
        ledger
            .claim(&id, now, now + TimeDelta::minutes(5))
            .await
            .expect("claim succeeds"),
        Claim::AlreadyDone(created())
    );
}

/// STYLE "Idempotency" (ledger TTL): a done entry past its expiry no longer blocks a new claim.
pub async fn a_done_operation_past_its_expiry_can_be_claimed_again(ledger: &impl OperationLedger) {
    let (id, now) = (op(), now_ms());
    ledger
        .claim(&id, now, now + TimeDelta::minutes(5))
        .await
        .expect("claim succeeds");
    ledger
        .complete(&id, &created(), now + TimeDelta::hours(1))
        .await
        .expect("complete succeeds");
    let after = now + TimeDelta::hours(2);
    assert_eq!(
        ledger
            .claim(&id, after, after + TimeDelta::minutes(5))
            .await
            .expect("claim succeeds"),
        Claim::Claimed
    );
}
