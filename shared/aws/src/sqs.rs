//! The retry queue on SQS (R-BIND-6): operations that met throttling or propagation delays are
//! sent back with a delay; SQS redrives a message to the DLQ after `maxReceiveCount` (5)
//! receives. Messages carry only ids and reasons, never a password (R-SAFE-2).

use crate::OnHeap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use m365_engine::error::{Error, FieldProblem, InvalidInput};
use m365_engine::model::RetryMessage;
use m365_engine::ports::{Delivery, RetryQueue, RetryQueueConsumer};

use crate::delay::{self, MAX_DELAY_SECONDS};
use crate::dynamo::{sdk_error, send_unless};

const COMPONENT: &str = "sqs";
/// SQS returns at most 10 messages per receive.
const MAX_BATCH: u32 = 10;
/// SQS long polling waits at most 20 s.
const MAX_WAIT_SECONDS: u64 = 20;
/// SQS hides a received message for at most 12 hours.
const MAX_VISIBILITY_SECONDS: u64 = 43_200;

/// Why a received message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum UndecodableMessage {
    /// The body is not a retry message.
    #[error("the message body is not a retry message")]
    Body(#[source] serde_json::Error),
}

/// Decodes a retry queue message body (for consumers fed by Lambda's SQS trigger).
///
/// # Errors
/// [`UndecodableMessage::Body`] when the body is not a JSON `RetryMessage`.
pub fn decode_message(body: &str) -> Result<RetryMessage, UndecodableMessage> {
    serde_json::from_str(body).map_err(UndecodableMessage::Body)
}

/// [`RetryQueue`] and [`RetryQueueConsumer`] on one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsRetryQueue {
    client: Client,
    queue_url: String,
}

impl SqsRetryQueue {
    /// The queue at `queue_url`.
    #[must_use]
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    async fn send_with_seconds(&self, message: &RetryMessage, seconds: i32) -> Result<(), Error> {
        send_json(&self.client, &self.queue_url, message, Some(seconds)).await
    }
}

impl RetryQueue for SqsRetryQueue {
    async fn send(&self, message: &RetryMessage, delay: Duration) -> Result<(), Error> {
        let Some(seconds) = delay::delay_seconds(delay) else {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "delay",
                problem: FieldProblem::TooLong {
                    max: MAX_DELAY_SECONDS.unsigned_abs() as usize,
                },
            }));
        };
        self.send_with_seconds(message, seconds).await
    }
}

/// Sends `value` as a JSON message body to `queue_url`, invisible for `delay_seconds` if given.
///
/// # Errors
/// SQS failures, mapped like every adapter's.
pub(crate) async fn send_json<T: serde::Serialize>(
    client: &Client,
    queue_url: &str,
    value: &T,
    delay_seconds: Option<i32>,
) -> Result<(), Error> {
    let body = serde_json::to_string(value).map_err(|e| Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(e),
    })?;
    client
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .set_delay_seconds(delay_seconds)
        .send()
        .on_heap()
        .await
        .map_err(|e| sdk_error(COMPONENT, e))?;
    Ok(())
}

fn seconds(duration: Duration, max: u64) -> i32 {
    i32::try_from(duration.as_secs().min(max)).unwrap_or(i32::MAX)
}

impl RetryQueueConsumer for SqsRetryQueue {
    async fn receive(
        &self,
        max: u32,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, MAX_BATCH)).unwrap_or(1))
            .wait_time_seconds(seconds(wait, MAX_WAIT_SECONDS))
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECONDS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .on_heap()
            .await
            .map_err(|e| sdk_error(COMPONENT, e))?;
        let mut deliveries = Vec::new();
        for received in output.messages.unwrap_or_default() {
            let (Some(body), Some(receipt)) = (received.body.as_deref(), received.receipt_handle)
            else {
                tracing::warn!(sqs.message_id = ?received.message_id, "message without body or receipt skipped");
                continue;
            };
            let message = match decode_message(body) {
                Ok(message) => message,
                Err(error) => {
                    // Left unacknowledged: it comes back and SQS moves it to the DLQ after
                    // maxReceiveCount receives, without blocking the messages behind it.
                    tracing::warn!(
                        sqs.message_id = ?received.message_id,
                        error = &error as &dyn std::error::Error,
                        "undecodable retry message skipped"
                    );
                    continue;
                }
            };
            let receive_count = received
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            deliveries.push(Delivery {
                message,
                receipt,
                receive_count,
            });
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &str) -> Result<(), Error> {
        let request = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .send();
        // A spent or unknown receipt: the message is gone or will come back; not an error.
        let spent = [
            "ReceiptHandleIsInvalid",
            "InvalidParameterValue",
            "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
        ];
        send_unless(COMPONENT, request, &spent).await.map(drop)
    }
}
