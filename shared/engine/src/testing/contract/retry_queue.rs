//! Contract of [`RetryQueue`] + [`RetryQueueConsumer`] (R-BIND-6). Each function needs an EMPTY queue.
//! Waits are real on SQS (a few seconds) and virtual on the fake.

use std::time::Duration;

use chrono::TimeDelta;

use super::{fresh_user_id, now_ms};
use crate::error::{Error, InvalidInput};
use crate::model::{MAX_QUEUE_DELAY, OperationId, OperationKind, OperationSubject, RetryMessage};
use crate::ports::{Delivery, RetryQueue, RetryQueueConsumer};

/// Long-poll wait used by the contracts (SQS allows up to 20 s).
const WAIT: Duration = Duration::from_secs(10);
/// Visibility used when a contract does not care.
const HIDE: Duration = Duration::from_secs(30);

fn message(attempt: u32) -> RetryMessage {
    let subject = OperationSubject::User(fresh_user_id());
    RetryMessage {
        operation_id: OperationId::new(OperationKind::UserBind, &subject, 1),
        kind: OperationKind::UserBind,
        subject,
        attempt,
        not_before: now_ms() + TimeDelta::hours(24),
        reason: "address_held".into(),
        actor: Some(
            crate::model::Actor::principal("arn:aws:iam::123456789012:user/admin").expect("an ARN"),
        ),
    }
}

/// A new message of `attempt`, sent with `delay`; the send must succeed.
async fn send_new<Q: RetryQueue>(queue: &Q, attempt: u32, delay: Duration) -> RetryMessage {
    let sent = message(attempt);
    queue.send(&sent, delay).await.expect("send succeeds");
    sent
}

/// One receive (long-polling up to `wait`, hiding what it gets for [`HIDE`]); it must succeed.
async fn receive_once<Q: RetryQueueConsumer>(queue: &Q, wait: Duration) -> Vec<Delivery> {
    queue
        .receive(10, wait, HIDE)
        .await
        .expect("receive succeeds")
}

/// Receives until `want` deliveries arrived or a long poll comes back empty.
async fn receive_some<Q: RetryQueueConsumer>(
    queue: &Q,
    want: usize,
    visibility: Duration,
) -> Vec<Delivery> {
    let mut got = Vec::new();
    while got.len() < want {
        let batch = queue
            .receive(10, WAIT, visibility)
            .await
            .expect("receive succeeds");
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    got
}

/// R-BIND-6: a sent message is received intact (not_before and all) and is gone once acknowledged.
pub async fn a_sent_message_is_received_intact_and_gone_after_ack<
    Q: RetryQueue + RetryQueueConsumer,
>(
    queue: &Q,
) {
    let sent = send_new(queue, 2, Duration::ZERO).await;
    let got = receive_some(queue, 1, HIDE).await;
    assert_eq!(got.len(), 1, "one delivery");
    assert_eq!(got[0].message, sent);
    assert_eq!(got[0].receive_count, 1);
    queue.ack(&got[0].receipt).await.expect("ack succeeds");
    let after = receive_once(queue, Duration::from_secs(2)).await;
    assert!(after.is_empty(), "acknowledged message is gone: {after:?}");
}

/// R-BIND-6: a delayed message is not delivered before its delay, and is delivered after it.
pub async fn a_delayed_message_is_not_received_before_its_delay<
    Q: RetryQueue + RetryQueueConsumer,
>(
    queue: &Q,
) {
    let sent = send_new(queue, 1, Duration::from_secs(3)).await;
    let early = receive_once(queue, Duration::ZERO).await;
    assert!(early.is_empty(), "not visible during its delay: {early:?}");
    let got = receive_some(queue, 1, HIDE).await;
    assert_eq!(
        got.iter().map(|d| &d.message).collect::<Vec<_>>(),
        vec![&sent]
    );
    queue.ack(&got[0].receipt).await.expect("ack succeeds");
}

/// R-BIND-6 / DESIGN "Queues": an unacknowledged message comes back after its visibility timeout, counted.
pub async fn an_unacknowledged_message_comes_back_after_its_visibility_timeout<
    Q: RetryQueue + RetryQueueConsumer,
>(
    queue: &Q,
) {
    let sent = send_new(queue, 1, Duration::ZERO).await;
    let first = receive_some(queue, 1, Duration::from_secs(1)).await;
    assert_eq!(first.len(), 1);
    let second = receive_some(queue, 1, HIDE).await;
    assert_eq!(second.len(), 1, "delivered again");
    assert_eq!(second[0].message, sent);
    assert_eq!(second[0].receive_count, 2);
    queue
        .ack(&first[0].receipt)
        .await
        .expect("acking a spent receipt is not an error");
    queue.ack(&second[0].receipt).await.expect("ack succeeds");
}

/// R-BIND-6: several messages are all delivered, each once.
pub async fn several_messages_are_each_delivered_once<Q: RetryQueue + RetryQueueConsumer>(
    queue: &Q,
) {
    let sent: Vec<_> = (1..=3).map(message).collect();
    for m in &sent {
        queue.send(m, Duration::ZERO).await.expect("send succeeds");
    }
    let got = receive_some(queue, 3, HIDE).await;
    let mut ids: Vec<_> = got.iter().map(|d| d.message.operation_id.clone()).collect();
    ids.sort();
    let mut expected: Vec<_> = sent.iter().map(|m| m.operation_id.clone()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for d in &got {
        queue.ack(&d.receipt).await.expect("ack succeeds");
    }
}

/// DESIGN "Queues": a delay beyond SQS's 15 minutes is refused (longer waits go through `not_before`).
pub async fn a_delay_beyond_fifteen_minutes_is_refused<Q: RetryQueue + RetryQueueConsumer>(
    queue: &Q,
) {
    let result = queue
        .send(&message(1), MAX_QUEUE_DELAY + Duration::from_secs(1))
        .await;
    assert!(
        matches!(result, Err(Error::Invalid(InvalidInput::Field { .. }))),
        "got {result:?}"
    );
    let nothing = receive_once(queue, Duration::ZERO).await;
    assert!(nothing.is_empty());
}
