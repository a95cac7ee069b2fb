//! Welcome emails end to end (R-NOT-1, R-BIND-4): the `directory`, `password-push` and `bind`
//! functions on moto (DynamoDB, SQS, Secrets Manager, SES v2) and the m365-emulator queue the
//! welcome; the `notify` function, fed Lambda-style batches from the real notifications queue
//! (with its DLQ after 5 receives, as template.yaml declares it), sends it through the real SES
//! adapter. Delivery is observed on SES's side only, test-side: moto's record of the messages SES
//! accepted (`/moto-api/data.json`) — the product has no moto-specific path.
//!
//! moto's SES is shared by every test of the run: each test sends from its own sender identity
//! to recipients of its own, and reads only those.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use m365_engine::model::WelcomeTemplate;
use m365_integration_tests::started;
use m365_integration_tests::{OffsetClock, Routes, World, deliver_sqs_batch, queue, queue_depth};
use m365_lambda::App;
use m365_lambda::config::NotifyConfig;
use m365_lambda::provision::Deployed;
use serde_json::{Value, json};

const PASSWORD: &str = "Welc0me-Not-In-Mail!";

/// Contoso connected, a notifications queue with its DLQ, a sender identity on SES, the API
/// functions' wiring and the notify function's.
struct Stack {
    /// moto + the emulator (kept running for the functions).
    _world: World,
    api: Deployed<OffsetClock>,
    notify: notify::Deployed<OffsetClock>,
    sqs: aws_sdk_sqs::Client,
    ses: aws_sdk_sesv2::Client,
    notifications_url: String,
    dlq_url: String,
    tenant: String,
    sender: String,
    /// Makes this test's addresses its own.
    tag: String,
}

impl Stack {
    async fn start() -> Option<Self> {
        let mut world = World::start().await?;
        world.add_provisioning_resources("notify").await;
        let sqs = aws_sdk_sqs::Client::new(&world.sdk);
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        // The notifications queue as template.yaml declares it: a DLQ after 5 receives.
        let dlq_url = queue(&sqs, &format!("notify-dlq-{tag}"), None).await;
        let dlq_arn = sqs
            .get_queue_attributes()
            .queue_url(&dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        let notifications_url = queue(&sqs, &format!("notify-{tag}"), Some(&dlq_arn)).await;
        // The sender identity, as the stack (devstack: CreateEmailIdentity) declares it.
        let ses = aws_sdk_sesv2::Client::new(&world.sdk);
        let sender = format!("welcome-{tag}@example.com");
        ses.create_email_identity()
            .email_identity(&sender)
            .send()
            .await
            .unwrap();
        let mut config = world.app.config.clone();
        config
            .resources
            .notifications_queue_url
            .clone_from(&notifications_url);
        config.notify = Some(NotifyConfig {
            template: WelcomeTemplate::new(
                &sender,
                "Welcome, {displayName}",
                "Hello {displayName},\\nsign in to {tenantName} as {signInAddress}.",
            )
            .unwrap(),
        });
        world.app = App::with_sdk_config(config, world.sdk.clone());
        world.graph = world.graph_app();
        let tenant = world.connect_contoso("Contoso").await;
        let clock = OffsetClock::default();
        let api = Deployed::with_clock(&world.app, &world.graph, clock.clone());
        let base = notify::Deployed::from_app(&world.app).unwrap();
        let notify = notify::Deployed {
            ports: Deployed::with_clock(&world.app, &world.graph_app(), clock),
            template: base.template,
        };
        Some(Self {
            _world: world,
            api,
            notify,
            sqs,
            ses,
            notifications_url,
            dlq_url,
            tenant,
            sender,
            tag,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        Routes::all(&self.api).call(method, path, &[], body).await
    }

    /// A Contoso address of this test.
    fn address(&self, name: &str) -> String {
        format!("{name}-{}@contoso.com", self.tag)
    }

    /// Directory user `id` (email [`Self::address`]) with `extra` fields and a password.
    async fn user_with_password(&self, id: &str, extra: Value) -> String {
        let email = self.address(id);
        let mut body = json!({"email": email, "displayName": format!("{id} Vance")});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert_eq!(status, 201, "{answer}");
        let (status, answer) = self
            .call(
                "POST",
                &format!("/users/{id}/password"),
                Some(json!({"password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 204, "{answer}");
        email
    }

    async fn bind(&self, id: &str, welcome: bool) {
        let (status, body) = self
            .call(
                "PUT",
                &format!("/users/{id}/binding"),
                Some(json!({"welcome": welcome})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["binding"]["state"], "provisioned", "{body}");
    }

    /// The body of the one message on the notifications queue, left there.
    async fn peek(&self) -> String {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.notifications_url)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        assert_eq!(received.len(), 1, "{received:?}");
        received[0].body.clone().unwrap()
    }

    /// One Lambda-style delivery of the notifications queue to the notify function.
    async fn deliver(&self) -> Option<m365_integration_tests::BatchDelivery> {
        deliver_sqs_batch(
            &self.sqs,
            &self.notifications_url,
            10,
            Duration::from_secs(30),
            |event| async move {
                notify::handle_invocation(&self.notify, event)
                    .await
                    .expect("a batch answer")
            },
        )
        .await
    }

    /// The emails SES accepted from this test's sender (moto's record, read test-side). moto
    /// builds `data.json` from every model of every test running at once, and answers a 500 when
    /// another request changes one meanwhile: read again then.
    async fn sent(&self) -> Vec<Value> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("moto");
        let mut last = String::new();
        let mut data = None;
        for _ in 0..10 {
            let response = reqwest::get(format!("{endpoint}/moto-api/data.json"))
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            match serde_json::from_str::<Value>(&text) {
                Ok(value) if status.is_success() => {
                    data = Some(value);
                    break;
                }
                _ => last = format!("{status}: {}", &text[..text.len().min(300)]),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let data = data.unwrap_or_else(|| panic!("moto's data.json: {last}"));
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["source"] == self.sender.as_str())
            .collect()
    }

    async fn sent_to(&self, address: &str) -> Vec<Value> {
        self.sent()
            .await
            .into_iter()
            .filter(|m| {
                m["destinations"]["ToAddresses"]
                    .as_array()
                    .is_some_and(|to| to.iter().any(|a| a == address))
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bind_with_welcome_delivers_exactly_one_email_without_the_password() {
    // R-NOT-1, R-BIND-4, R-SAFE-2
    let s = started!(Stack::start());
    let email = s.user_with_password("adele", json!({})).await;
    s.bind("adele", true).await;
    let queued_body = s.peek().await;
    assert!(
        !queued_body.contains(PASSWORD),
        "the queued message holds no password"
    );
    let queued = s.deliver().await.expect("the welcome was queued");
    assert_eq!((queued.received, queued.acked, queued.failed), (1, 1, 0));
    assert_eq!(queue_depth(&s.sqs, &s.notifications_url).await, 0);

    let sent = s.sent().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let mail = &sent[0];
    assert_eq!(mail["destinations"]["ToAddresses"], json!([email]));
    assert_eq!(mail["subject"], "Welcome, adele Vance");
    let body = mail["body"].as_str().unwrap();
    assert_eq!(
        body,
        format!("Hello adele Vance,\nsign in to Contoso as {email}.")
    );
    assert!(!mail.to_string().contains(PASSWORD), "{mail}");

    // SQS may deliver the same message again: nothing more is sent (the ledger remembers it).
    s.sqs
        .send_message()
        .queue_url(&s.notifications_url)
        .message_body(&queued_body)
        .send()
        .await
        .unwrap();
    let again = s.deliver().await.expect("the copy");
    assert_eq!((again.acked, again.failed), (1, 0));
    assert_eq!(s.sent().await.len(), 1, "still one email");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bind_with_welcome_false_sends_no_email() {
    // R-BIND-4, R-NOT-1
    let s = started!(Stack::start());
    let email = s.user_with_password("bob", json!({})).await;
    s.bind("bob", false).await;
    assert!(s.deliver().await.is_none(), "nothing queued");
    assert!(s.sent_to(&email).await.is_empty());
    assert!(s.sent().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notification_email_receives_the_welcome_instead_of_the_m365_address() {
    // R-NOT-1
    let s = started!(Stack::start());
    let home = format!("carol-home-{}@example.org", s.tag);
    let email = s
        .user_with_password("carol", json!({"notificationEmail": home}))
        .await;
    let (_, shown) = s.call("GET", "/users/carol", None).await;
    assert_eq!(shown["notificationEmail"], home.as_str());
    s.bind("carol", true).await;
    s.deliver().await.expect("queued");
    let to_home = s.sent_to(&home).await;
    assert_eq!(to_home.len(), 1, "{to_home:?}");
    assert!(
        to_home[0]["body"].as_str().unwrap().contains(&email),
        "the sign-in address stays the M365 one"
    );
    assert!(s.sent_to(&email).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_ses_refuses_is_retried_then_dead_lettered_and_listed_as_a_failure() {
    // R-NOT-1, R-AUD-1: the sender identity is gone from SES; each receive is a batch-item
    // failure; after maxReceiveCount (5) SQS moves the message to the DLQ.
    let s = started!(Stack::start());
    s.ses
        .delete_email_identity()
        .email_identity(&s.sender)
        .send()
        .await
        .unwrap();
    let email = s.user_with_password("dave", json!({})).await;
    s.bind("dave", true).await;
    let mut receive_counts = Vec::new();
    for _ in 0..8 {
        let Some(delivery) = s.deliver().await else {
            break;
        };
        assert_eq!((delivery.acked, delivery.failed), (0, 1), "{delivery:?}");
        receive_counts.extend(delivery.receive_counts);
    }
    assert_eq!(receive_counts, vec![1, 2, 3, 4, 5]);
    assert_eq!(queue_depth(&s.sqs, &s.notifications_url).await, 0);
    assert_eq!(queue_depth(&s.sqs, &s.dlq_url).await, 1, "dead-lettered");
    assert!(s.sent_to(&email).await.is_empty());
    let (status, failures) = s
        .call("GET", &format!("/tenants/{}/failures", s.tenant), None)
        .await;
    assert_eq!(status, 200, "{failures}");
    let codes: Vec<&str> = failures["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(codes, vec!["welcome_not_delivered"; 5], "{failures}");
}
