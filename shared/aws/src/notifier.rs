//! Welcome notifications (R-BIND-4) go to the notifications queue as JSON; the `notify` function
//! delivers them to the employee as an email (R-NOT-1, [`crate::SesMailer`]). The message holds ids, names and addresses only, never a password
//! (R-SAFE-2).

use aws_sdk_sqs::Client;
use m365_engine::error::Error;
use m365_engine::model::WelcomeNotification;
use m365_engine::ports::Notifier;

use crate::sqs::send_json;

/// [`Notifier`] on the SQS notifications queue.
#[derive(Debug, Clone)]
pub struct SqsNotifier {
    client: Client,
    queue_url: String,
}

impl SqsNotifier {
    /// The notifier sending to `queue_url`.
    #[must_use]
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// Decodes a notifications queue message body (for the consumer fed by Lambda's SQS trigger).
///
/// # Errors
/// The body is not a JSON `WelcomeNotification`.
pub fn decode_notification(body: &str) -> Result<WelcomeNotification, serde_json::Error> {
    serde_json::from_str(body)
}

impl Notifier for SqsNotifier {
    async fn welcome(&self, notification: &WelcomeNotification) -> Result<(), Error> {
        send_json(&self.client, &self.queue_url, notification, None).await
    }
}
