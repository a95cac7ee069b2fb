//! Welcome emails (R-NOT-1) through Amazon SES v2 `SendEmail`: one plain-text message (UTF-8
//! subject and body) to one recipient, from the deployment's sender identity. SES's answers map
//! onto the engine's errors like every adapter's ([`crate::dynamo`]'s mapping): throttling
//! (`TooManyRequestsException`) and outages are retryable; a refused message or sender
//! (`MessageRejected`, an unverified identity, a sandbox recipient, `SendingPausedException`,
//! `AccountSuspendedException`, …) is permanent. The text is never logged.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use m365_engine::error::Error;
use m365_engine::model::OutgoingEmail;
use m365_engine::ports::Mailer;

use crate::OnHeap;
use crate::dynamo::sdk_error;

const COMPONENT: &str = "ses";

/// [`Mailer`] on SES v2.
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    /// The mailer on `client`.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn text(data: &str) -> Result<Content, Error> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| Error::Infrastructure {
            component: COMPONENT,
            source: Box::new(e),
        })
}

impl Mailer for SesMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<String, Error> {
        let message = Message::builder()
            .subject(text(&email.subject)?)
            .body(Body::builder().text(text(&email.body)?).build())
            .build();
        let output = self
            .client
            .send_email()
            .from_email_address(email.from.as_str())
            .destination(
                Destination::builder()
                    .to_addresses(email.to.as_str())
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .on_heap()
            .await
            .map_err(|e| sdk_error(COMPONENT, e))?;
        Ok(output.message_id.unwrap_or_default())
    }
}
