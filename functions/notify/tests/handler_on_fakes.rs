//! `notify::handle` driven with real SQS event JSON on the engine's in-memory `World`: a bind's
//! queued welcome delivered as one email without the password, a redelivery sending nothing
//! again, a welcome for a user unbound meanwhile acknowledged unsent, a failed send and an
//! undecodable body reported as batch-item failures (redelivered, then dead-lettered)
//! (R-NOT-1, R-BIND-4, R-SAFE-2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::Error;
use m365_engine::error::UnavailableReason;
use m365_engine::model::WelcomeTemplate;
use m365_engine::testing::{World, uid};
use m365_engine::usecase::password::SetPassword;
use m365_engine::usecase::unbind::Unbind;
use m365_lambda::testing::sqs_event;
use notify::handle;

const PASSWORD: &str = "Adele-S3cret-Passw0rd!";

fn template() -> WelcomeTemplate {
    WelcomeTemplate::new(
        "welcome@contoso.com",
        WelcomeTemplate::DEFAULT_SUBJECT,
        WelcomeTemplate::DEFAULT_BODY,
    )
    .unwrap()
}

/// Adele with a password, bound: the JSON body of the welcome her bind queued.
async fn welcome_queued(w: &World) -> String {
    w.user("adele").await;
    SetPassword::new(w)
        .set(&uid("adele"), &secrecy::SecretString::from(PASSWORD))
        .await
        .unwrap();
    w.bind("adele").await;
    let queued = w.notifier.sent();
    assert_eq!(queued.len(), 1, "one welcome queued");
    serde_json::to_string(&queued[0]).unwrap()
}

#[tokio::test]
async fn a_queued_welcome_is_delivered_once_without_the_password() {
    // R-NOT-1, R-BIND-4, R-SAFE-2
    let w = World::new().await;
    let body = welcome_queued(&w).await;
    assert!(
        !body.contains(PASSWORD),
        "the queued message holds no password"
    );
    let answer = handle(&w, &template(), &sqs_event(std::slice::from_ref(&body))).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let sent = w.mailer.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to.as_str(), "adele@contoso.com");
    assert_eq!(sent[0].from.as_str(), "welcome@contoso.com");
    assert!(
        sent[0].body.contains("adele@contoso.com"),
        "{}",
        sent[0].body
    );
    assert!(sent[0].body.contains("Contoso"), "{}", sent[0].body);
    let everything = format!("{} {} {}", sent[0].from, sent[0].subject, sent[0].body);
    assert!(!everything.contains(PASSWORD), "{everything}");

    // SQS delivers at least once: the same message again sends nothing.
    let again = handle(&w, &template(), &sqs_event(&[body])).await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(w.mailer.sent().len(), 1);
}

#[tokio::test]
async fn a_welcome_for_a_user_unbound_meanwhile_is_acknowledged_unsent() {
    // R-NOT-1, R-BIND-5
    let w = World::new().await;
    let body = welcome_queued(&w).await;
    Unbind::new(&w).unbind(&uid("adele")).await.unwrap();
    let answer = handle(&w, &template(), &sqs_event(&[body])).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert!(w.mailer.sent().is_empty());
}

#[tokio::test]
async fn a_failed_send_is_reported_and_the_redelivery_sends_it() {
    // R-NOT-1: retried, then dead-lettered by SQS after maxReceiveCount
    let w = World::new().await;
    let body = welcome_queued(&w).await;
    w.mailer.fail_next(Error::Unavailable {
        component: "ses",
        reason: UnavailableReason::Service,
        retry_after: None,
        graph_request_id: None,
        source: None,
    });
    w.mailer.fail_next(Error::Infrastructure {
        component: "ses",
        source: "MessageRejected".into(),
    });
    for _ in 0..2 {
        let answer = handle(&w, &template(), &sqs_event(std::slice::from_ref(&body))).await;
        assert_eq!(answer.batch_item_failures.len(), 1, "{answer:?}");
        assert_eq!(answer.batch_item_failures[0].item_identifier, "m-0");
    }
    assert!(w.mailer.sent().is_empty());
    let answer = handle(&w, &template(), &sqs_event(&[body])).await;
    assert!(answer.batch_item_failures.is_empty(), "{answer:?}");
    assert_eq!(w.mailer.sent().len(), 1);
}

#[tokio::test]
async fn an_undecodable_message_is_a_batch_item_failure_and_the_others_are_delivered() {
    // R-NOT-1 (never silently dropped: it reaches the DLQ)
    let w = World::new().await;
    let body = welcome_queued(&w).await;
    let answer = handle(
        &w,
        &template(),
        &sqs_event(&["{not a welcome".to_owned(), body]),
    )
    .await;
    let failed: Vec<_> = answer
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-0"]);
    assert_eq!(w.mailer.sent().len(), 1);
}
