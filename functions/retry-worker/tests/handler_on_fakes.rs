//! `retry_worker::handle` driven with real SQS event JSON on the engine's in-memory `World`: a
//! throttled bind's queued retry drained to done — and the user joins its bound group on the
//! way (R-BIND-6, R-GRP-1) — an undecodable body reported as a batch-item failure (never
//! dropped), a redelivered message changing nothing, and a deadline already past putting the
//! batch back untouched (R-OPS-2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use m365_engine::Error;
use m365_engine::model::{BindingState, Group, GroupId, mail_nickname_for};
use m365_engine::ports::GroupStore;
use m365_engine::testing::{World, uid};
use m365_engine::usecase::Outcome;
use m365_engine::usecase::group_sync::SyncGroup;
use m365_lambda::testing::sqs_event;
use retry_worker::{Budget, handle, handle_batch, handle_batch_until};

/// Adele's bind, throttled: its retry message's JSON body, taken off the fake queue, due now.
async fn throttled_bind(w: &World) -> String {
    w.user("adele").await;
    w.directory.fail_next_call(Error::Throttled {
        retry_after: Some(Duration::from_secs(3)),
        graph_request_id: None,
    });
    let Outcome::Deferred { retry, .. } = w.bind("adele").await else {
        panic!("deferred")
    };
    let queued = w.queue.drain();
    assert_eq!(queued, vec![retry.clone()]);
    w.clock.set(retry.not_before);
    serde_json::to_string(&retry).unwrap()
}

#[tokio::test]
async fn a_throttled_bind_is_drained_to_done_and_the_user_joins_its_bound_group() {
    // R-BIND-6, R-GRP-1
    let w = World::new().await;
    let sales = GroupId::parse("sales").unwrap();
    w.groups
        .create(&Group::new(
            sales.clone(),
            "Sales".to_owned(),
            [uid("adele")],
        ))
        .await
        .unwrap();
    SyncGroup::new(&w).bind(&sales, &w.tenant.id).await.unwrap();
    let body = throttled_bind(&w).await;

    let answer = handle(
        &w,
        &sqs_event(std::slice::from_ref(&body)),
        Budget::default(),
    )
    .await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let binding = w.binding("adele").await;
    assert_eq!(binding.state, BindingState::Provisioned);
    let members = &w
        .directory
        .groups_named(&w.tenant.id, &mail_nickname_for(&sales))[0]
        .1;
    assert_eq!(members, &vec![World::object_id(&binding)]);
    assert!(w.queue.snapshot().is_empty());

    // SQS may deliver it again: nothing changes, nothing is created twice.
    let creates = w.directory.create_calls();
    let again = handle_batch(&w, &sqs_event(&[body])).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(w.directory.create_calls(), creates);
}

#[tokio::test]
async fn an_undecodable_message_is_a_batch_item_failure_and_the_others_run() {
    // R-BIND-6 (never silently dropped: it reaches the DLQ)
    let w = World::new().await;
    let body = throttled_bind(&w).await;
    let answer = handle_batch(&w, &sqs_event(&["{not a retry".to_owned(), body])).await;
    let failed: Vec<&str> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["m-0"]);
    assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
}

#[tokio::test]
async fn a_batch_past_its_deadline_floor_is_put_back_untouched() {
    // R-OPS-2: no message is started without the floor left; its attempt is not spent
    let w = World::new().await;
    let body = throttled_bind(&w).await;
    let budget = Budget {
        deadline: Some(tokio::time::Instant::now()),
        floor: Duration::from_secs(5),
    };
    let report = handle_batch_until(&w, &sqs_event(&[body]), budget).await;
    assert_eq!((report.handled, report.untouched), (0, 1));
    assert_eq!(report.response.batch_item_failures.len(), 1);
    assert_eq!(w.binding("adele").await.state, BindingState::Pending);
}
