//! A world of in-memory fakes for the use-case tests: one active tenant (`contoso.com` managed,
//! `sso.contoso.com` federated), M365 holding deleted addresses for 24 h, a seeded random source.

use std::time::Duration;

use chrono::TimeDelta;
use secrecy::SecretString;

use super::bind::{Bind, BindRequest};
use super::password::SetPassword;
use super::retry::{RetryDispatcher, RetryOutcome};
use super::suspend::Suspension;
use super::unbind::Unbind;
use super::update::UpdateAttributes;
use super::{Effects, Outcome, RetryPolicy};
use crate::error::{Error, UnavailableReason};
use crate::model::{
    Binding, DirectoryUser, DomainKind, DomainName, Email, EventKind, M365ObjectId, RetryMessage,
    Tenant, TenantId, TenantStatus, UserId, VerifiedDomain,
};
use crate::policy::password::DirectoryPasswordPolicy;
use crate::ports::{BindingStore, Clock, RetryQueueConsumer, TenantStore, UserStore};
use crate::testing::{
    FakeBindings, FakeDirectory, FakeEvents, FakeFailures, FakeLedger, FakeNotifier,
    FakeRetryQueue, FakeSealer, FakeTenants, FakeUsers, ManualClock, SeededRandom,
};

pub(crate) type Fx<'a> = Effects<
    'a,
    FakeBindings,
    FakeEvents,
    FakeFailures,
    FakeLedger,
    FakeRetryQueue,
    ManualClock,
    SeededRandom,
>;
pub(crate) type TestBind<'a> = Bind<
    'a,
    FakeBindings,
    FakeEvents,
    FakeFailures,
    FakeLedger,
    FakeRetryQueue,
    ManualClock,
    SeededRandom,
    FakeUsers,
    FakeTenants,
    FakeDirectory,
    FakeSealer,
    FakeNotifier,
>;
pub(crate) type TestDispatcher<'a> = RetryDispatcher<
    'a,
    FakeBindings,
    FakeEvents,
    FakeFailures,
    FakeLedger,
    FakeRetryQueue,
    ManualClock,
    SeededRandom,
    FakeUsers,
    FakeTenants,
    FakeDirectory,
    FakeSealer,
    FakeNotifier,
    crate::testing::FakeGroups,
>;

/// How long the fake M365 holds a deleted account's address.
pub(crate) const ADDRESS_RELEASE: TimeDelta = TimeDelta::hours(24);

pub(crate) struct World {
    pub clock: ManualClock,
    pub users: FakeUsers,
    pub tenants: FakeTenants,
    pub groups: crate::testing::FakeGroups,
    pub bindings: FakeBindings,
    pub events: FakeEvents,
    pub failures: FakeFailures,
    pub ledger: FakeLedger,
    pub queue: FakeRetryQueue,
    pub directory: FakeDirectory,
    pub sealer: FakeSealer,
    pub notifier: FakeNotifier,
    pub random: SeededRandom,
    pub policy: RetryPolicy,
    pub password_policy: DirectoryPasswordPolicy,
    pub tenant: Tenant,
    /// Messages that would have reached the DLQ (see [`World::drain`]).
    pub dead_letters: Vec<RetryMessage>,
}

pub(crate) fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

pub(crate) fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub(crate) fn throttled() -> Error {
    Error::Throttled {
        retry_after: Some(Duration::from_secs(3)),
        graph_request_id: Some("req-429".to_owned()),
    }
}

pub(crate) fn unavailable(reason: UnavailableReason) -> Error {
    Error::Unavailable {
        component: "graph",
        reason,
        retry_after: None,
        graph_request_id: Some(format!("req-{}", reason.as_str())),
        source: None,
    }
}

impl World {
    pub async fn new() -> Self {
        Self::with_policy(RetryPolicy::default(), ADDRESS_RELEASE).await
    }

    pub async fn with_policy(policy: RetryPolicy, address_release: TimeDelta) -> Self {
        let clock = ManualClock::fixed();
        let tenants = FakeTenants::new();
        let mut tenant = Tenant::pending(TenantId::generate(), "Contoso");
        tenant.status = TenantStatus::Active;
        tenant.domains = vec![
            VerifiedDomain {
                name: DomainName::parse("contoso.com").unwrap(),
                kind: DomainKind::Managed,
            },
            VerifiedDomain {
                name: DomainName::parse("sso.contoso.com").unwrap(),
                kind: DomainKind::Federated,
            },
        ];
        let tenant = tenants.create(&tenant).await.unwrap();
        let names: Vec<DomainName> = tenant.domains.iter().map(|d| d.name.clone()).collect();
        tenants.claim_domains(&tenant.id, &names).await.unwrap();
        let directory = FakeDirectory::new(clock.clone(), address_release);
        directory.add_tenant(&tenant.id, tenant.domains.clone());
        Self {
            queue: FakeRetryQueue::new(clock.clone()),
            clock,
            users: FakeUsers::new(),
            groups: crate::testing::FakeGroups::new(),
            tenants,
            bindings: FakeBindings::new(),
            events: FakeEvents::new(),
            failures: FakeFailures::new(),
            ledger: FakeLedger::new(),
            directory,
            sealer: FakeSealer::new(),
            notifier: FakeNotifier::new(),
            random: SeededRandom::new(7),
            policy,
            password_policy: DirectoryPasswordPolicy::default(),
            tenant,
            dead_letters: Vec::new(),
        }
    }

    pub fn fx(&self) -> Fx<'_> {
        Effects {
            bindings: &self.bindings,
            events: &self.events,
            failures: &self.failures,
            ledger: &self.ledger,
            queue: &self.queue,
            clock: &self.clock,
            random: &self.random,
            policy: &self.policy,
        }
    }

    pub fn binder(&self) -> TestBind<'_> {
        Bind {
            fx: self.fx(),
            users: &self.users,
            tenants: &self.tenants,
            directory: &self.directory,
            sealer: &self.sealer,
            notifier: &self.notifier,
        }
    }

    pub fn unbinder(
        &self,
    ) -> Unbind<
        '_,
        FakeBindings,
        FakeEvents,
        FakeFailures,
        FakeLedger,
        FakeRetryQueue,
        ManualClock,
        SeededRandom,
        FakeUsers,
        FakeDirectory,
    > {
        Unbind {
            fx: self.fx(),
            users: &self.users,
            directory: &self.directory,
        }
    }

    pub fn updater(
        &self,
    ) -> UpdateAttributes<
        '_,
        FakeBindings,
        FakeEvents,
        FakeFailures,
        FakeLedger,
        FakeRetryQueue,
        ManualClock,
        SeededRandom,
        FakeUsers,
        FakeDirectory,
    > {
        UpdateAttributes {
            fx: self.fx(),
            users: &self.users,
            directory: &self.directory,
        }
    }

    pub fn passwords(
        &self,
    ) -> SetPassword<
        '_,
        FakeBindings,
        FakeEvents,
        FakeFailures,
        FakeLedger,
        FakeRetryQueue,
        ManualClock,
        SeededRandom,
        FakeUsers,
        FakeDirectory,
        FakeSealer,
    > {
        SetPassword {
            fx: self.fx(),
            users: &self.users,
            directory: &self.directory,
            sealer: &self.sealer,
            policy: &self.password_policy,
        }
    }

    pub fn suspension(
        &self,
    ) -> Suspension<
        '_,
        FakeBindings,
        FakeEvents,
        FakeFailures,
        FakeLedger,
        FakeRetryQueue,
        ManualClock,
        SeededRandom,
        FakeUsers,
        FakeDirectory,
    > {
        Suspension {
            fx: self.fx(),
            users: &self.users,
            directory: &self.directory,
            password_policy: &self.password_policy,
        }
    }

    pub fn dispatcher(&self) -> TestDispatcher<'_> {
        RetryDispatcher {
            fx: self.fx(),
            users: &self.users,
            tenants: &self.tenants,
            directory: &self.directory,
            sealer: &self.sealer,
            notifier: &self.notifier,
            password_policy: &self.password_policy,
            groups: &self.groups,
        }
    }

    /// Stores a directory user `id` with email `<id>@<domain>` and a few attributes.
    pub async fn user_at(&self, id: &str, domain: &str) -> DirectoryUser {
        let mut user = DirectoryUser::new(uid(id), email(&format!("{id}@{domain}")), id.to_owned());
        user.given_name = Some(format!("{id}-given"));
        user.surname = Some("Vance".to_owned());
        user.job_title = Some("Engineer".to_owned());
        user.department = Some("R&D".to_owned());
        self.users.create(&user).await.unwrap()
    }

    pub async fn user(&self, id: &str) -> DirectoryUser {
        self.user_at(id, "contoso.com").await
    }

    pub async fn bind(&self, id: &str) -> Outcome {
        self.binder()
            .bind(&uid(id), BindRequest::default())
            .await
            .unwrap()
    }

    pub async fn binding(&self, id: &str) -> Binding {
        self.bindings.get(&uid(id)).await.unwrap().unwrap()
    }

    pub fn object_id(binding: &Binding) -> M365ObjectId {
        binding.m365_object_id.clone().unwrap()
    }

    pub fn count_events(&self, kind: EventKind) -> usize {
        self.events.all().iter().filter(|e| e.kind == kind).count()
    }

    pub async fn set_tenant_status(&self, status: TenantStatus) {
        let mut t = self.tenants.get(&self.tenant.id).await.unwrap().unwrap();
        t.status = status;
        let v = t.version;
        self.tenants.update(&t, v).await.unwrap();
    }

    /// Runs the retry worker until the queue is empty (long polls advance the virtual clock):
    /// acknowledged outcomes are deleted, the others come back after the visibility timeout and
    /// move to `dead_letters` after 5 receives (the DLQ's `maxReceiveCount`). Returns every outcome.
    pub async fn drain(&mut self) -> Vec<RetryOutcome> {
        self.drain_with(|_, _| false).await
    }

    /// [`World::drain`], calling `before` ahead of each delivery (to inject faults); when it
    /// returns true the delivery is dispatched twice (SQS standard queues may deliver twice).
    pub async fn drain_with(
        &mut self,
        mut before: impl FnMut(&World, &RetryMessage) -> bool,
    ) -> Vec<RetryOutcome> {
        let mut outcomes = Vec::new();
        for _ in 0..100_000 {
            if self.queue.snapshot().is_empty() {
                return outcomes;
            }
            // Jump to the next message's visibility (a worker would sit through the delay).
            if let Some(next) = self.queue.snapshot().iter().map(|q| q.visible_at).min()
                && next > self.clock.now()
            {
                self.clock.set(next);
            }
            let deliveries = self
                .queue
                .receive(10, Duration::ZERO, Duration::from_secs(60))
                .await
                .unwrap();
            for d in deliveries {
                if before(self, &d.message) {
                    let first = self.dispatcher().dispatch(&d.message).await.unwrap();
                    outcomes.push(first);
                }
                let outcome = self.dispatcher().dispatch(&d.message).await.unwrap();
                if outcome.ack() {
                    self.queue.ack(&d.receipt).await.unwrap();
                } else if d.receive_count >= 5 {
                    self.queue.ack(&d.receipt).await.unwrap();
                    self.dead_letters.push(d.message.clone());
                }
                outcomes.push(outcome);
            }
        }
        panic!("the retry queue did not drain");
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

/// Awaits a scripted interleaving (R-BIND-12 race tests), failing instead of hanging when a held
/// call never arrives (the race did not happen as scripted).
pub(crate) async fn interleaved<F: std::future::Future>(race: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), race)
        .await
        .expect("the scripted interleaving did not complete: a held call never arrived")
}

pub(crate) fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}
