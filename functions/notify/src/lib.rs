//! The `notify` function (R-NOT-1, R-BIND-4): consumes the notifications queue through Lambda's
//! SQS event source with `ReportBatchItemFailures` and delivers each welcome notification the
//! bind use case queued as one email through Amazon SES v2. The rule — who gets the mail (the
//! user's `notificationEmail`, else the M365 sign-in address), what it says (the deployment's
//! template: display name, sign-in address, tenant; never a password), when it is skipped (the
//! user gone or no longer bound to that account), and sending it once — is the engine's
//! [`DeliverWelcome`]; this crate decodes, runs it and answers Lambda.
//!
//! Each record of a batch, by the one SQS batch policy ([`m365_lambda::sqs`]):
//! - sent, already sent (a redelivered message: the ledger remembers it), or skipped:
//!   acknowledged;
//! - another receive of the same message still sending (its ledger lease): reported, so it comes
//!   back after the visibility timeout;
//! - a failed send — throttled or SES unavailable (retryable), or refused by SES (an unverified
//!   sender, a sandbox recipient: permanent, also listed in the tenant's failures as
//!   `welcome_not_delivered`) — and an undecodable body: reported, so SQS redelivers it and
//!   after `maxReceiveCount` (5) moves it to the notifications DLQ.
//!
//! Configuration ([`m365_lambda::config`], checked at cold start with every other variable):
//! `M365_WELCOME_SENDER` (required: the sender, an SES identity), `M365_WELCOME_SUBJECT` and
//! `M365_WELCOME_BODY` (optional; placeholders `{displayName}`, `{signInAddress}`,
//! `{tenantName}`; `\n` in the body is a line break). The function never calls Graph: its wiring
//! reads no OAuth client secret ([`GraphApp::without_credentials`]).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::LambdaEvent;
use m365_aws::notifier::decode_notification;
use m365_engine::model::WelcomeTemplate;
use m365_engine::ports::{Ports, SystemClock};
use m365_engine::usecase::notify::{DeliverWelcome, Delivered};
use m365_lambda::config::{ConfigError, Section};
use m365_lambda::provision;
use m365_lambda::sqs::{self, Verdict};
use m365_lambda::{App, AppError, GraphApp, GraphSetupError};

/// The code of a message another receive is still delivering.
pub const IN_PROGRESS: &str = "in_progress";

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration (every problem listed, the notify section's included) or the AWS side.
    #[error(transparent)]
    App(#[from] AppError),
    /// The Graph side (built without credentials; only a bad base URL fails).
    #[error(transparent)]
    Graph(#[from] GraphSetupError),
    /// The notify section.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The function's wiring, built once per cold start: the deployed ports and the checked welcome
/// template.
#[derive(Debug, Clone)]
pub struct Deployed<C = SystemClock> {
    /// The deployed ports (SES mailer, stores, ledger).
    pub ports: provision::Deployed<C>,
    /// The sender, subject and body.
    pub template: WelcomeTemplate,
}

impl Deployed<SystemClock> {
    /// Reads the configuration with the notify section and builds every client once.
    ///
    /// # Errors
    /// [`StartError`] listing every missing or invalid variable.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env_for(&[Section::Notify]).await?;
        Self::from_app(&app)
    }

    /// The wiring of an already built [`App`] (read with [`Section::Notify`]).
    ///
    /// # Errors
    /// [`StartError::Config`] when the app's configuration has no notify section.
    pub fn from_app(app: &App) -> Result<Self, StartError> {
        let template = app.config.notify()?.template.clone();
        let graph = GraphApp::without_credentials(app)?;
        Ok(Self {
            ports: provision::Deployed::from_app(app, &graph),
            template,
        })
    }
}

/// The Lambda entry.
///
/// # Errors
/// Never: every per-message problem is a batch-item failure.
pub async fn handle_invocation<C: m365_engine::ports::Clock>(
    deployed: &Deployed<C>,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, lambda_runtime::Error> {
    Ok(handle(&deployed.ports, &deployed.template, &event.payload).await)
}

/// Delivers the welcome notifications of one SQS batch on `ports` with `template`; answers the
/// ids of the messages to redeliver (see the crate docs).
pub async fn handle<P: Ports>(
    ports: &P,
    template: &WelcomeTemplate,
    event: &SqsEvent,
) -> SqsBatchResponse {
    sqs::handle_batch(event, decode_notification, |_, notification| async move {
        match DeliverWelcome::new(ports, template)
            .deliver(&notification)
            .await
        {
            Ok(Delivered::InProgress { .. }) => Verdict::Retry(IN_PROGRESS.to_owned()),
            Ok(done) => Verdict::Ack(done.as_str()),
            Err(e) => Verdict::of_error(&e),
        }
    })
    .await
    .response
}
