//! Behaviour of the fakes beyond the port contracts: tenant resolution over a store, M365's soft
//! delete and address hold, fault injection, and the retry queue's virtual time.

use std::time::Duration;

use chrono::TimeDelta;
use m365_engine::error::{Error, UnavailableReason};
use m365_engine::model::{
    DomainKind, DomainName, Email, M365ObjectId, M365User, NewM365User, OperationId, OperationKind,
    OperationSubject, RetryMessage, Tenant, TenantId, TenantStatus, UserId, VerifiedDomain,
};
use m365_engine::policy::routing::{RoutingError, domains_to_claim, resolve_tenant};
use m365_engine::ports::{Clock, Directory, RetryQueue, RetryQueueConsumer, TenantStore};
use m365_engine::testing::contract::new_m365_user;
use m365_engine::testing::{FakeDirectory, FakeRetryQueue, FakeTenants, ManualClock};
use secrecy::SecretString;

fn domain(name: &str) -> DomainName {
    DomainName::parse(name).expect("valid domain")
}

fn email(s: &str) -> Email {
    Email::parse(s).expect("valid email")
}

async fn connected(store: &FakeTenants, status: TenantStatus) -> Tenant {
    let mut t = Tenant::pending(TenantId::generate(), "Contoso");
    t.status = status;
    t.domains = vec![
        VerifiedDomain {
            name: domain("contoso.onmicrosoft.com"),
            kind: DomainKind::Managed,
        },
        VerifiedDomain {
            name: domain("contoso.com"),
            kind: DomainKind::Managed,
        },
        VerifiedDomain {
            name: domain("sso.contoso.com"),
            kind: DomainKind::Federated,
        },
    ];
    let claims = domains_to_claim(&t.domains).expect("a mixed tenant can connect");
    let t = store.create(&t).await.expect("create succeeds");
    store
        .claim_domains(&t.id, &claims)
        .await
        .expect("claim succeeds");
    t
}

#[tokio::test]
async fn an_email_resolves_to_the_active_tenant_claiming_its_domain() {
    // R-BIND-1, R-CONN-2
    let store = FakeTenants::new();
    let t = connected(&store, TenantStatus::Active).await;
    let resolved = resolve_tenant(&store, &email("Adele@CONTOSO.com"))
        .await
        .expect("routes");
    assert_eq!(resolved.id, t.id);
}

#[tokio::test]
async fn resolving_distinguishes_unclaimed_federated_and_inactive() {
    // R-BIND-1, R-CONN-2, R-CONN-3
    let store = FakeTenants::new();
    let unclaimed = resolve_tenant(&store, &email("a@fabrikam.com")).await;
    assert!(matches!(
        unclaimed,
        Err(Error::Routing(RoutingError::UnclaimedDomain { .. }))
    ));
    connected(&store, TenantStatus::ReauthorizationRequired).await;
    let federated = resolve_tenant(&store, &email("a@sso.contoso.com")).await;
    assert!(matches!(
        federated,
        Err(Error::Routing(RoutingError::FederatedDomain { .. }))
    ));
    let paused = resolve_tenant(&store, &email("a@contoso.com")).await;
    assert!(matches!(
        paused,
        Err(Error::Routing(RoutingError::TenantNotActive {
            status: TenantStatus::ReauthorizationRequired,
            ..
        }))
    ));
}

fn new_user(upn: &str) -> NewM365User {
    new_m365_user(email(upn), "adele", "Adele Vance")
}

fn m365(clock: &ManualClock) -> (FakeDirectory, TenantId) {
    let directory = FakeDirectory::new(clock.clone(), TimeDelta::hours(24));
    let tenant = TenantId::generate();
    directory.add_tenant(
        &tenant,
        vec![VerifiedDomain {
            name: domain("contoso.com"),
            kind: DomainKind::Managed,
        }],
    );
    (directory, tenant)
}

/// [`m365`] with the account `adele@contoso.com` created in it.
async fn m365_with_adele(clock: &ManualClock) -> (FakeDirectory, TenantId, M365User) {
    let (directory, tenant) = m365(clock);
    let created = directory
        .create_user(&tenant, &new_user("adele@contoso.com"))
        .await
        .expect("created");
    (directory, tenant, created)
}

#[tokio::test]
async fn a_soft_deleted_m365_user_is_no_longer_found_and_holds_its_address_until_released() {
    // R-BIND-6, R-BIND-8
    let clock = ManualClock::default();
    let (directory, tenant, created) = m365_with_adele(&clock).await;
    directory
        .soft_delete(&tenant, &created.id)
        .expect("deleted");
    assert_eq!(
        directory
            .find_user_by_upn(&tenant, &email("adele@contoso.com"))
            .await
            .expect("find"),
        None
    );
    assert!(directory.user(&tenant, &created.id).is_none());
    clock.advance(TimeDelta::hours(1));
    let held = directory
        .create_user(&tenant, &new_user("ADELE@contoso.com"))
        .await;
    assert!(
        matches!(&held, Err(Error::Unavailable { reason: UnavailableReason::AddressHeld, retry_after: Some(wait), .. })
            if *wait == Duration::from_secs(23 * 3600)),
        "got {held:?}"
    );
    assert!(held.is_err_and(|e| e.is_retryable()));
    clock.advance(TimeDelta::hours(23));
    let again = directory
        .create_user(&tenant, &new_user("adele@contoso.com"))
        .await
        .expect("re-created");
    assert_ne!(again.id, created.id);
    assert_eq!(directory.active_user_count(&tenant), 1);
}

#[tokio::test]
async fn a_set_password_is_kept_and_dates_the_change() {
    // R-PWD-2, R-PWD-3
    let clock = ManualClock::default();
    let (directory, tenant, created) = m365_with_adele(&clock).await;
    clock.advance(TimeDelta::minutes(5));
    let password = SecretString::from("Another-Pa55word".to_owned());
    directory
        .set_password(&tenant, &created.id, &password)
        .await
        .expect("set");
    let stored = directory
        .password(&tenant, &created.id)
        .map(|p| secrecy::ExposeSecret::expose_secret(&p).to_owned());
    assert_eq!(stored.as_deref(), Some("Another-Pa55word"));
    let user = directory.user(&tenant, &created.id).expect("exists");
    assert_eq!(user.last_password_change, Some(clock.now()));
}

#[tokio::test]
async fn injected_faults_fail_the_next_calls_in_order_then_stop() {
    // R-BIND-6 (faults for use-case tests)
    let clock = ManualClock::default();
    let (directory, tenant) = m365(&clock);
    directory.fail_next_call(Error::Throttled {
        retry_after: Some(Duration::from_secs(2)),
        graph_request_id: None,
    });
    directory.fail_next_call(Error::Forbidden {
        graph_request_id: None,
    });
    let first = directory.verified_domains(&tenant).await;
    assert!(first.is_err_and(|e| e.is_retryable()));
    let second = directory.verified_domains(&tenant).await;
    assert!(matches!(second, Err(Error::Forbidden { .. })));
    assert!(directory.verified_domains(&tenant).await.is_ok());
    assert_eq!(directory.calls(), 3);
    let missing = directory
        .set_account_enabled(&tenant, &M365ObjectId::generate(), false)
        .await;
    assert!(matches!(missing, Err(Error::NotFound { .. })));
}

fn retry(not_before_in: TimeDelta, clock: &ManualClock) -> RetryMessage {
    let subject = OperationSubject::User(UserId::parse("alice").expect("valid id"));
    RetryMessage {
        operation_id: OperationId::new(OperationKind::UserBind, &subject, 1),
        kind: OperationKind::UserBind,
        subject,
        attempt: 1,
        not_before: clock.now() + not_before_in,
        reason: "address_held".into(),
        actor: None,
    }
}

#[tokio::test]
async fn a_long_wait_is_honoured_by_requeueing_in_fifteen_minute_steps() {
    // R-BIND-6 (the address wait can last 24 h; SQS delays stop at 15 min)
    let clock = ManualClock::default();
    let queue = FakeRetryQueue::new(clock.clone());
    let message = retry(TimeDelta::hours(1), &clock);
    queue
        .send(&message, message.send_delay(clock.now()))
        .await
        .expect("sent");
    let mut hops = 0;
    loop {
        let got = queue
            .receive(1, Duration::from_secs(20), Duration::from_secs(30))
            .await
            .expect("receive");
        let Some(delivery) = got.into_iter().next() else {
            continue;
        };
        queue.ack(&delivery.receipt).await.expect("ack");
        match delivery.message.disposition(clock.now()) {
            m365_engine::model::Disposition::Process => break,
            m365_engine::model::Disposition::Requeue(delay) => {
                hops += 1;
                queue
                    .send(&delivery.message, delay)
                    .await
                    .expect("requeued");
            }
        }
        assert!(hops < 10, "the wait ends");
    }
    assert_eq!(
        hops, 3,
        "60 minutes = one initial 15-minute delay + 3 requeues"
    );
    assert!(clock.now() >= message.not_before);
    assert!(queue.snapshot().is_empty());
}
