//! The engine's `RetryQueue` + `RetryQueueConsumer` contract against `SqsRetryQueue` on moto,
//! each test on its own fresh queue.

mod common;

use m365_aws::SqsRetryQueue;

mod retry_queue {
    use super::*;

    m365_engine::contract_tests!(retry_queue, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, url) = common::queue(&config).await;
        SqsRetryQueue::new(client, url)
    });
}

mod adapter {
    //! Behaviour of `SqsRetryQueue` beyond the port's contract.

    use chrono::Utc;
    use m365_aws::SqsRetryQueue;
    use m365_engine::model::{OperationId, OperationKind, OperationSubject, RetryMessage, UserId};
    use m365_engine::ports::{RetryQueue, RetryQueueConsumer};
    use std::time::Duration;

    use super::common;

    fn message(not_before: chrono::DateTime<Utc>) -> RetryMessage {
        let subject = OperationSubject::User(UserId::parse(common::unique("u")).expect("id"));
        RetryMessage {
            operation_id: OperationId::new(OperationKind::UserBind, &subject, 1),
            kind: OperationKind::UserBind,
            subject,
            attempt: 3,
            not_before,
            reason: "address_held".to_owned(),
            actor: None,
        }
    }

    #[tokio::test]
    async fn an_undecodable_message_is_skipped_without_blocking_the_others() {
        // R-BIND-6: a poison message ends in the DLQ; the others keep flowing.
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, url) = common::queue(&config).await;
        client
            .send_message()
            .queue_url(&url)
            .message_body("{not a retry message")
            .send()
            .await
            .expect("raw send");
        let queue = SqsRetryQueue::new(client, url);
        let good = message(Utc::now());
        queue.send(&good, Duration::ZERO).await.expect("send");
        let mut got = Vec::new();
        for _ in 0..5 {
            got.extend(
                queue
                    .receive(10, Duration::from_secs(1), Duration::from_secs(30))
                    .await
                    .expect("receive succeeds despite the poison message"),
            );
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(
            got.iter().map(|d| &d.message).collect::<Vec<_>>(),
            vec![&good]
        );
    }

    #[tokio::test]
    async fn a_welcome_notification_reaches_the_notifications_queue_without_a_password() {
        // R-BIND-4, R-SAFE-2
        use m365_aws::SqsNotifier;
        use m365_aws::notifier::decode_notification;
        use m365_engine::model::{Email, M365ObjectId, TenantId, WelcomeNotification};
        use m365_engine::ports::Notifier;

        let Some(config) = common::aws().await else {
            return;
        };
        let (client, url) = common::queue(&config).await;
        let user_id = UserId::parse(common::unique("u")).expect("id");
        let email = Email::parse("ada@contoso.example").expect("email");
        let subject = OperationSubject::User(user_id.clone());
        let sent = WelcomeNotification {
            user_id,
            email: email.clone(),
            display_name: "Ada".to_owned(),
            tenant_id: TenantId::generate(),
            user_principal_name: email,
            m365_object_id: M365ObjectId::generate(),
            operation_id: OperationId::new(OperationKind::UserBind, &subject, 1),
        };
        SqsNotifier::new(client.clone(), &url)
            .welcome(&sent)
            .await
            .expect("sent");
        let received = client
            .receive_message()
            .queue_url(&url)
            .wait_time_seconds(2)
            .send()
            .await
            .expect("received");
        let bodies: Vec<_> = received
            .messages()
            .iter()
            .filter_map(|m| m.body())
            .collect();
        assert_eq!(bodies.len(), 1);
        assert!(
            !bodies[0].to_ascii_lowercase().contains("password"),
            "{}",
            bodies[0]
        );
        assert_eq!(decode_notification(bodies[0]).expect("decodes"), sent);
    }
}
