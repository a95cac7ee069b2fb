//! Delivering a welcome notification as an email (R-NOT-1, R-BIND-4): who gets the mail and what
//! it says. The `notify` function runs [`DeliverWelcome`] on each message of the notifications
//! queue.
//!
//! - **Who**: the user's `notificationEmail` when set, else the M365 sign-in address (the
//!   directory email, which is the UPN, R-BIND-2) — [`DirectoryUser::welcome_recipient`], read
//!   from the user as it is now, not as it was when the bind queued the message.
//! - **What**: the deployment's [`WelcomeTemplate`] filled with the display name, the sign-in
//!   address and the tenant's name. Nothing else of the user reaches the text, and the message
//!   never carries a password (R-SAFE-2).
//! - **When not**: a user gone from the directory, a binding gone or no longer `provisioned`
//!   (unbound, suspended, deleted in M365, deauthorized, in error or with a newer bind under way)
//!   or now on another account or tenant: the welcome is skipped and the message acknowledged —
//!   it would announce an account the user cannot use (a newer bind sends its own welcome).
//! - **Once**: the welcome is claimed in the ledger under the bind's operation id
//!   ([`OperationId::follow_up`] `#welcome`) before it is sent and recorded as done after, so a
//!   redelivered message (SQS delivers at least once) sends nothing again. What remains: when SES
//!   accepted the email but its answer was lost (a timeout), or the function died between SES's
//!   answer and the ledger write, the redelivery sends a second copy — at least once, never lost
//!   silently.
//! - **Failures**: a send that failed releases the claim and is the caller's error: retryable
//!   (throttling, an outage) or permanent (SES refused the sender or the message; recorded in the
//!   tenant's failures list as `welcome_not_delivered`). The `notify` function reports both as
//!   batch-item failures, so SQS redelivers the message and finally moves it to the DLQ.

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::Result;
use crate::model::{
    BindingState, DirectoryUser, EventId, Failure, OperationOutcome, WelcomeNotification,
    WelcomeTemplate, WelcomeValues,
};
use crate::ports::{
    BindingStore, Claim, Clock, FailureStore, Mailer, OperationLedger, Ports, TenantStore,
    UserStore,
};

/// How long one delivery holds its ledger claim: longer than the `notify` function's timeout
/// (30 s, template.yaml), shorter than the notifications queue's visibility timeout (180 s), so a
/// delivery that died is taken over at the message's next receive.
pub const WELCOME_LEASE: TimeDelta = TimeDelta::seconds(60);

/// The failure code of a welcome SES refused for good.
pub const NOT_DELIVERED: &str = "welcome_not_delivered";

/// Why a welcome was not sent (the message is acknowledged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WelcomeSkip {
    /// The directory user no longer exists.
    UserGone,
    /// The user has no binding, or it is no longer `provisioned`.
    NotBound,
    /// The binding is now on another account or tenant than the welcome announces.
    OtherAccount,
}

impl WelcomeSkip {
    /// snake_case name (logs, the ledger's detail).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserGone => "skipped_user_gone",
            Self::NotBound => "skipped_not_bound",
            Self::OtherAccount => "skipped_other_account",
        }
    }
}

/// What delivering one welcome did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// The email was handed to the mailer.
    Sent {
        /// The mailer's message id.
        message_id: String,
    },
    /// A delivery of this welcome finished before (a redelivered message).
    AlreadyDone,
    /// Not sent, on purpose.
    Skipped(WelcomeSkip),
    /// Another delivery holds the claim until then: look again later.
    InProgress {
        /// When its lease ends.
        lease_until: DateTime<Utc>,
    },
}

impl Delivered {
    /// snake_case name (logs, SQS verdicts).
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent { .. } => "sent",
            Self::AlreadyDone => "already_done",
            Self::Skipped(skip) => skip.as_str(),
            Self::InProgress { .. } => "in_progress",
        }
    }
}

use_case! {
    /// The welcome delivery use case (see the module docs).
    pub struct DeliverWelcome {
        ports: [
            users: Users, bindings: Bindings, tenants: Tenants, ledger: Ledger,
            failures: Failures, mailer: Mailer, clock: Clock
        ],
        built: [
            /// The ledger's memory of a finished delivery (the retry policy's).
            ledger_ttl: std::time::Duration = ledger_ttl,
        ],
        extra: [
            /// The deployment's sender, subject and body.
            template: &'a WelcomeTemplate,
        ],
    }
}

fn ledger_ttl<P: Ports>(ports: &P) -> std::time::Duration {
    ports.retry_policy().ledger_ttl
}

impl<P: Ports> DeliverWelcome<'_, P> {
    /// Delivers `notification` (see the module docs).
    ///
    /// # Errors
    /// Store failures; the mailer's error (retryable or permanent; a permanent one is recorded in
    /// the failures list). The claim is released on every error.
    #[tracing::instrument(skip_all, fields(user.id = %notification.user_id, op.id = %notification.operation_id))]
    pub async fn deliver(&self, notification: &WelcomeNotification) -> Result<Delivered> {
        let op = notification.operation_id.follow_up("welcome");
        let now = self.clock.now();
        match self.ledger.claim(&op, now, now + WELCOME_LEASE).await? {
            Claim::Claimed => {}
            Claim::InProgress { lease_until } => return Ok(Delivered::InProgress { lease_until }),
            Claim::AlreadyDone(_) => return Ok(Delivered::AlreadyDone),
        }
        let result = self.claimed(notification, now).await;
        let detail = match &result {
            Ok(Delivered::Sent { .. }) => "sent",
            Ok(Delivered::Skipped(skip)) => skip.as_str(),
            _ => {
                if let Err(e) = self.ledger.release(&op).await {
                    tracing::warn!(error.code = e.code(), "welcome claim not released");
                }
                return result;
            }
        };
        let done = OperationOutcome::Succeeded {
            detail: Some(detail.to_owned()),
        };
        let expires = now + TimeDelta::from_std(self.ledger_ttl).unwrap_or(TimeDelta::days(7));
        // The email is out: a lost ledger write must not make the message come back (that would
        // send it twice once the lease ends); the lease still covers a redelivery meanwhile.
        if let Err(e) = self.ledger.complete(&op, &done, expires).await {
            tracing::warn!(error.code = e.code(), "welcome not recorded as done");
        }
        tracing::info!(outcome = detail, "welcome handled");
        result
    }

    async fn claimed(
        &self,
        notification: &WelcomeNotification,
        now: DateTime<Utc>,
    ) -> Result<Delivered> {
        let Some(user) = self.users.get(&notification.user_id).await? else {
            return Ok(Delivered::Skipped(WelcomeSkip::UserGone));
        };
        let Some(binding) = self.bindings.get(&notification.user_id).await? else {
            return Ok(Delivered::Skipped(WelcomeSkip::NotBound));
        };
        if binding.state != BindingState::Provisioned {
            return Ok(Delivered::Skipped(WelcomeSkip::NotBound));
        }
        if binding.tenant_id != notification.tenant_id
            || binding.m365_object_id.as_ref() != Some(&notification.m365_object_id)
        {
            return Ok(Delivered::Skipped(WelcomeSkip::OtherAccount));
        }
        let tenant_name = match self.tenants.get(&notification.tenant_id).await? {
            Some(tenant) => tenant.name,
            None => notification.tenant_id.to_string(),
        };
        let email = self.template.render(
            user.welcome_recipient(),
            &WelcomeValues {
                display_name: &user.display_name,
                sign_in_address: &notification.user_principal_name,
                tenant_name: &tenant_name,
            },
        );
        match self.mailer.send(&email).await {
            Ok(message_id) => Ok(Delivered::Sent { message_id }),
            Err(e) => {
                if !e.is_retryable() {
                    self.record_failure(notification, &user, &e, now).await?;
                }
                Err(e)
            }
        }
    }

    async fn record_failure(
        &self,
        notification: &WelcomeNotification,
        user: &DirectoryUser,
        error: &crate::Error,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let id = EventId::derive(&[
            notification.operation_id.as_str(),
            "failure",
            user.id.as_str(),
            NOT_DELIVERED,
            &now.timestamp_micros().to_string(),
        ]);
        self.failures
            .record(&Failure {
                id,
                tenant_id: notification.tenant_id.clone(),
                user_id: Some(user.id.clone()),
                operation_id: notification.operation_id.clone(),
                code: NOT_DELIVERED.to_owned(),
                message: error.to_string(),
                graph_request_id: None,
                at: now,
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, UnavailableReason};
    use crate::model::M365ObjectId;
    use crate::ports::Expect;
    use crate::usecase::bind::BindRequest;
    use crate::usecase::testkit::{World, email, uid};

    fn template() -> WelcomeTemplate {
        WelcomeTemplate::new(
            "welcome@contoso.com",
            "Welcome, {displayName}",
            "Sign in as {signInAddress} in {tenantName}.",
        )
        .unwrap()
    }

    /// A bound `id` with a password set, and the welcome its bind queued.
    async fn bound_with_password(w: &World, id: &str) -> WelcomeNotification {
        w.user(id).await;
        w.set_password(id, "Sup3r-Secret-Pa55!").await;
        w.bind(id).await;
        w.notifier.sent().pop().expect("a welcome queued")
    }

    async fn deliver(w: &World, n: &WelcomeNotification) -> Result<Delivered> {
        let template = template();
        DeliverWelcome::new(w, &template).deliver(n).await
    }

    #[tokio::test]
    async fn a_welcome_is_sent_once_to_the_m365_address_without_a_password() {
        // R-NOT-1, R-BIND-4, R-SAFE-2
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        let delivered = deliver(&w, &n).await.unwrap();
        assert_eq!(delivered.as_str(), "sent");
        let sent = w.mailer.sent();
        assert_eq!(sent.len(), 1);
        let mail = &sent[0];
        assert_eq!(mail.to.as_str(), "adele@contoso.com");
        assert_eq!(mail.from.as_str(), "welcome@contoso.com");
        assert_eq!(mail.subject, "Welcome, adele");
        assert_eq!(mail.body, "Sign in as adele@contoso.com in Contoso.");
        for text in [&mail.subject, &mail.body] {
            assert!(!text.contains("Sup3r-Secret-Pa55!"), "{text}");
        }
        // A redelivered message sends nothing again.
        assert_eq!(deliver(&w, &n).await.unwrap(), Delivered::AlreadyDone);
        assert_eq!(w.mailer.sent().len(), 1);
    }

    #[tokio::test]
    async fn the_notification_email_overrides_the_recipient() {
        // R-NOT-1
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        let mut user = w.users.get(&uid("adele")).await.unwrap().unwrap();
        user.notification_email = Some(email("adele.home@example.org"));
        w.users.replace(&user, user.version).await.unwrap();
        deliver(&w, &n).await.unwrap();
        let sent = w.mailer.sent();
        assert_eq!(sent[0].to.as_str(), "adele.home@example.org");
        assert!(
            sent[0].body.contains("adele@contoso.com"),
            "the sign-in address stays the M365 one"
        );
    }

    #[tokio::test]
    async fn a_user_unbound_before_delivery_gets_no_welcome_and_the_message_is_done() {
        // R-NOT-1, R-BIND-5
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        let delivered = deliver(&w, &n).await.unwrap();
        assert_eq!(delivered, Delivered::Skipped(WelcomeSkip::NotBound));
        assert!(w.mailer.sent().is_empty());
        assert_eq!(deliver(&w, &n).await.unwrap(), Delivered::AlreadyDone);
    }

    #[tokio::test]
    async fn a_welcome_for_a_user_gone_or_now_on_another_account_is_skipped() {
        // R-NOT-1
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        let mut other = n.clone();
        other.operation_id = other.operation_id.follow_up("older");
        other.m365_object_id = M365ObjectId::generate();
        assert_eq!(
            deliver(&w, &other).await.unwrap(),
            Delivered::Skipped(WelcomeSkip::OtherAccount)
        );
        let mut gone = n.clone();
        gone.user_id = uid("nobody");
        assert_eq!(
            deliver(&w, &gone).await.unwrap(),
            Delivered::Skipped(WelcomeSkip::UserGone)
        );
        assert!(w.mailer.sent().is_empty());
    }

    #[tokio::test]
    async fn a_bind_with_welcome_false_queues_nothing_to_deliver() {
        // R-BIND-4
        let w = World::new().await;
        w.user("adele").await;
        w.binder()
            .bind(
                &uid("adele"),
                BindRequest {
                    welcome: false,
                    ..BindRequest::default()
                },
            )
            .await
            .unwrap();
        assert!(w.notifier.sent().is_empty());
    }

    #[tokio::test]
    async fn a_failed_send_releases_the_claim_so_the_redelivery_sends_it() {
        // R-NOT-1: retried, never lost
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        w.mailer.fail_next(Error::Unavailable {
            component: "ses",
            reason: UnavailableReason::Service,
            retry_after: None,
            graph_request_id: None,
            source: None,
        });
        let e = deliver(&w, &n).await.unwrap_err();
        assert!(e.is_retryable());
        assert!(
            w.failures.all().is_empty(),
            "a transient failure is not listed"
        );
        assert_eq!(deliver(&w, &n).await.unwrap().as_str(), "sent");
        assert_eq!(w.mailer.sent().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_send_is_a_permanent_error_listed_as_a_failure() {
        // R-NOT-1, R-AUD-1
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        w.mailer.fail_next(Error::Infrastructure {
            component: "ses",
            source: "MessageRejected: Email address not verified".into(),
        });
        let e = deliver(&w, &n).await.unwrap_err();
        assert!(!e.is_retryable());
        let failures = w.failures.all();
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].code, NOT_DELIVERED);
        assert_eq!(failures[0].user_id, Some(uid("adele")));
        assert!(w.mailer.sent().is_empty());
    }

    #[tokio::test]
    async fn a_delivery_under_way_elsewhere_is_left_to_it() {
        // R-NOT-1: two receives of one message never send two emails
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        let op = n.operation_id.follow_up("welcome");
        let now = w.now();
        w.ledger.claim(&op, now, now + WELCOME_LEASE).await.unwrap();
        let delivered = deliver(&w, &n).await.unwrap();
        assert!(
            matches!(delivered, Delivered::InProgress { .. }),
            "{delivered:?}"
        );
        assert!(w.mailer.sent().is_empty());
    }

    #[tokio::test]
    async fn a_binding_suspended_before_delivery_gets_no_welcome() {
        // R-NOT-1: only a provisioned account is announced
        let w = World::new().await;
        let n = bound_with_password(&w, "adele").await;
        let mut binding = w.binding("adele").await;
        binding.state = BindingState::Suspended;
        w.bindings
            .put(&binding, Expect::Version(binding.version))
            .await
            .unwrap();
        assert_eq!(
            deliver(&w, &n).await.unwrap(),
            Delivered::Skipped(WelcomeSkip::NotBound)
        );
        assert!(w.mailer.sent().is_empty());
    }
}
