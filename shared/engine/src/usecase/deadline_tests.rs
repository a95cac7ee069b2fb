//! Work cut off by the function's deadline is re-queued with its state intact (R-BIND-12,
//! R-OPS-2): the directory port answers the retryable `deadline` error (what the Graph adapter
//! does once the Lambda deadline minus its margin has come), and every use case then records it
//! like any retryable failure — the binding keeps its state with the reason, a retry message is
//! queued, the ledger claim is released so that retry can claim it — and the retry converges.

use crate::error::Error;
use crate::model::{BindingState, EventKind};
use crate::ports::{Claim, OperationLedger};
use crate::usecase::Outcome;
use crate::usecase::retry::RetryOutcome;
use crate::usecase::testkit::{World, bind_deferred_by, bound_user_failing_next, secret, uid};

fn deadline() -> Error {
    Error::deadline("graph")
}

#[tokio::test]
async fn a_bind_cut_off_by_the_deadline_waits_pending_with_a_queued_retry_and_its_claim_released() {
    // R-BIND-12, R-OPS-2
    let w = World::new().await;
    let (binding, retry) = bind_deferred_by(&w, "adele", deadline()).await;
    assert_eq!(binding.state, BindingState::Pending);
    assert_eq!(binding.pending_reason.as_deref(), Some("deadline"));
    assert_eq!(
        binding.last_error.as_ref().map(|e| e.code.as_str()),
        Some("deadline")
    );
    assert_eq!(retry.reason, "deadline");
    assert_eq!(retry.attempt, 1);
    let queued = w.queue.snapshot();
    assert_eq!(queued.len(), 1, "exactly one retry queued");
    assert_eq!(queued[0].message, retry);
    assert_eq!(w.failures.all()[0].code, "deadline");
    // The claim was released: the retry claims the operation at once, not after the lease.
    let now = w.now();
    assert_eq!(
        w.ledger
            .claim(
                &retry.operation_id,
                now,
                now + chrono::TimeDelta::seconds(1)
            )
            .await
            .unwrap(),
        Claim::Claimed
    );
    w.ledger.release(&retry.operation_id).await.unwrap();
    w.clock.set(retry.not_before);
    let outcome = w.dispatcher().dispatch(&retry).await.unwrap();
    let RetryOutcome::Ran(ran) = outcome else {
        panic!("ran")
    };
    assert!(
        matches!(*ran, Outcome::Done { .. }),
        "the retry bound the user: {ran:?}"
    );
    let binding = w.binding("adele").await;
    assert_eq!(binding.state, BindingState::Provisioned);
    assert_eq!(binding.pending_reason, None);
    assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
}

#[tokio::test]
async fn a_create_cut_off_in_flight_by_the_deadline_is_found_by_the_retry_never_posted_twice() {
    // R-BIND-12, R-BIND-2 (graph-spec §7.3: the POST committed, its answer came too late)
    let mut w = World::new().await;
    w.user("adele").await;
    w.directory.pass_next_call(); // the lookup
    w.directory.fail_next_call_after_commit(deadline());
    let Outcome::Deferred { binding, retry } = w.bind("adele").await else {
        panic!("deferred")
    };
    assert_eq!(binding.pending_reason.as_deref(), Some("deadline"));
    assert!(
        binding
            .in_flight
            .as_ref()
            .is_some_and(|f| f.create_sent_at.is_some()),
        "the create-sent mark survives, so the retry looks up before any POST"
    );
    assert_eq!(retry.reason, "deadline");
    assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
    w.drain().await;
    assert!(w.dead_letters.is_empty());
    assert_eq!(w.directory.create_calls(), 1, "no second POST");
    assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
    assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
    assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
    assert_eq!(w.count_events(EventKind::UserUpdateProvision), 0);
}

#[tokio::test]
async fn a_bind_cut_off_at_every_attempt_stays_pending_and_queued_until_the_budget_runs_out() {
    // R-BIND-12 (never `pending` without a queued retry), STYLE "no unbounded retry loops"
    let mut w = World::new().await;
    w.user("adele").await;
    for _ in 0..=w.policy.max_attempts {
        w.directory.fail_next_call(deadline());
    }
    assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
    let mut attempts = Vec::new();
    while let Some(next) = w.queue.snapshot().first().map(|q| q.message.clone()) {
        assert_eq!(
            w.binding("adele").await.state,
            BindingState::Pending,
            "pending only while a retry is queued"
        );
        attempts.push(next.attempt);
        w.clock.set(next.not_before);
        let _ = w.queue.drain();
        let outcome = w.dispatcher().dispatch(&next).await.unwrap();
        if !outcome.ack() {
            break;
        }
    }
    let expected: Vec<u32> = (1..=w.policy.max_attempts).collect();
    assert_eq!(attempts, expected, "each cut-off attempt counted once");
    let binding = w.binding("adele").await;
    assert_eq!(binding.state, BindingState::Error, "bounded: gave up");
    assert_eq!(
        binding.last_error.as_ref().map(|e| e.code.as_str()),
        Some("deadline")
    );
    w.drain().await;
    assert!(w.queue.snapshot().is_empty());
}

#[tokio::test]
async fn an_unbind_cut_off_by_the_deadline_is_requeued_and_blocks_the_account_on_retry() {
    // R-BIND-12: no interleaving leaves the account enabled while the binding says unbound
    let mut w = World::new().await;
    let id = bound_user_failing_next(&w, "adele", deadline()).await;
    let Outcome::Deferred { retry, .. } = w.unbinder().unbind(&uid("adele")).await.unwrap() else {
        panic!("deferred")
    };
    assert_eq!(retry.reason, "deadline");
    assert_eq!(w.queue.snapshot().len(), 1);
    assert_eq!(
        w.directory
            .user(&w.tenant.id, &id)
            .map(|u| u.account_enabled),
        Some(true),
        "nothing happened in M365 yet"
    );
    w.drain().await;
    assert!(w.dead_letters.is_empty());
    assert_eq!(
        w.directory
            .user(&w.tenant.id, &id)
            .map(|u| u.account_enabled),
        Some(false)
    );
    assert_eq!(w.binding("adele").await.state, BindingState::Blocked);
}

#[tokio::test]
async fn a_password_push_cut_off_by_the_deadline_is_requeued_and_applied_by_the_retry() {
    // R-BIND-12, R-PWD-2 (the queued message names the operation; the password stays sealed on
    // the user, never in the queue, R-PWD-1)
    let mut w = World::new().await;
    let id = bound_user_failing_next(&w, "adele", deadline()).await;
    let password = secret("Correct-Horse-9-Battery");
    let set = w.passwords().set(&uid("adele"), &password).await.unwrap();
    let Outcome::Deferred { retry, .. } = set.push else {
        panic!("deferred: {:?}", set.push)
    };
    assert_eq!(retry.reason, "deadline");
    let queued = serde_json::to_string(&w.queue.snapshot()[0].message).unwrap();
    assert!(!queued.contains("Correct-Horse"), "{queued}");
    w.drain().await;
    assert!(w.dead_letters.is_empty());
    use secrecy::ExposeSecret;
    assert_eq!(
        w.directory
            .password(&w.tenant.id, &id)
            .map(|p| p.expose_secret().to_owned()),
        Some("Correct-Horse-9-Battery".to_owned())
    );
    assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
}
