//! [`World`]: the in-memory implementation of [`Ports`] — every fake wired together on one
//! [`ManualClock`], with one active tenant (`contoso.com` managed, `sso.contoso.com` federated),
//! M365 holding a deleted account's address for 24 h and a seeded random source. Use cases and
//! function handlers are tested on it exactly as they run on the deployed ports.

use std::time::Duration;

use chrono::TimeDelta;
use secrecy::SecretString;

use super::{
    FakeBindings, FakeDirectory, FakeEvents, FakeFailures, FakeGroupDeltas, FakeGroups,
    FakeIdentityPlatform, FakeLeases, FakeLedger, FakeNotifier, FakePendingConsents,
    FakeReconcileCursors, FakeRetryQueue, FakeSealer, FakeTenants, FakeTokenVault, FakeUserDeltas,
    FakeUsers, ManualClock, SeededRandom,
};
use crate::model::{
    Binding, DirectoryUser, DomainKind, DomainName, Email, Event, EventKind, M365ObjectId,
    RetryMessage, Tenant, TenantId, TenantStatus, UserId, VerifiedDomain,
};
use crate::policy::cursor::CursorKey;
use crate::policy::password::DirectoryPasswordPolicy;
use crate::ports::{BindingStore, Clock, Ports, RetryQueueConsumer, TenantStore, UserStore};
use crate::usecase::bind::{Bind, BindRequest};
use crate::usecase::retry::{RetryDispatcher, RetryOutcome};
use crate::usecase::{Outcome, RetryPolicy};

/// How long the fake M365 holds a deleted account's address.
pub const ADDRESS_RELEASE: TimeDelta = TimeDelta::hours(24);

/// Every fake, wired as one [`Ports`] bundle. Fields are public so a test can arm faults, replace
/// a fake (e.g. paged deltas) or inspect what was written.
#[derive(Debug)]
pub struct World {
    /// Who asks (R-AUD-1): `local` unless a test names another caller.
    pub actor: crate::model::Actor,
    /// Time.
    pub clock: ManualClock,
    /// Directory users.
    pub users: FakeUsers,
    /// Tenants and domain claims.
    pub tenants: FakeTenants,
    /// Directory groups.
    pub groups: FakeGroups,
    /// Bindings.
    pub bindings: FakeBindings,
    /// Audit events.
    pub events: FakeEvents,
    /// Failure diagnostics.
    pub failures: FakeFailures,
    /// The idempotency ledger.
    pub ledger: FakeLedger,
    /// The retry queue.
    pub queue: FakeRetryQueue,
    /// M365 (also the tenant probe).
    pub directory: FakeDirectory,
    /// Password sealing.
    pub sealer: FakeSealer,
    /// Welcome notifications.
    pub notifier: FakeNotifier,
    /// Seeded randomness.
    pub random: SeededRandom,
    /// Per-tenant OAuth tokens.
    pub vault: FakeTokenVault,
    /// The identity platform.
    pub identity: FakeIdentityPlatform,
    /// OAuth sign-ins under way.
    pub consents: FakePendingConsents,
    /// Single-flight leases.
    pub leases: FakeLeases,
    /// M365 user deltas over [`Self::directory`].
    pub user_deltas: FakeUserDeltas,
    /// Scripted group deltas.
    pub group_deltas: FakeGroupDeltas,
    /// Reconcile's delta cursors.
    pub cursors: FakeReconcileCursors,
    /// The key signing pagination cursors.
    pub cursor_key: CursorKey,
    /// How failed operations are retried.
    pub policy: RetryPolicy,
    /// The directory password policy.
    pub password_policy: DirectoryPasswordPolicy,
    /// The tenant [`World::new`] connected (in a [`World::bare`] world: one never stored).
    pub tenant: Tenant,
    /// Messages that would have reached the DLQ (see [`World::drain`]).
    pub dead_letters: Vec<RetryMessage>,
    /// Licence settings (R-LIC-1).
    pub license_settings: super::FakeLicenseSettings,
    /// M365's licences, with seats (R-LIC-1).
    pub licensing: super::FakeLicensing,
    /// Sent emails (R-NOT-1).
    pub mailer: super::FakeMailer,
    /// Reconcile runs requested through the API (R-OPS-2).
    pub runs: super::FakeReconcileRuns,
    /// Admin alerts published (R-OPS-1).
    pub alerts: super::FakeAdminAlerts,
    /// Open alert incidents (R-OPS-1).
    pub alert_incidents: super::FakeAlertIncidents,
    /// Held reconcile plans (R-REC-3).
    pub held_plans: super::FakeHeldPlans,
}

/// A parsed email (test input is valid).
///
/// # Panics
/// On an invalid address.
#[must_use]
pub fn email(s: &str) -> Email {
    Email::parse(s).expect("a valid test email")
}

/// A parsed user id (test input is valid).
///
/// # Panics
/// On an invalid id.
#[must_use]
pub fn uid(s: &str) -> UserId {
    UserId::parse(s).expect("a valid test user id")
}

impl World {
    /// The world with its active Contoso tenant and the default policies.
    pub async fn new() -> Self {
        Self::with_policy(RetryPolicy::default(), ADDRESS_RELEASE).await
    }

    /// Every fake empty: no tenant stored (connect tests start here).
    #[must_use]
    pub fn bare(policy: RetryPolicy, address_release: TimeDelta) -> Self {
        let clock = ManualClock::fixed();
        let directory = FakeDirectory::new(clock.clone(), address_release);
        Self {
            queue: FakeRetryQueue::new(clock.clone()),
            identity: FakeIdentityPlatform::new(clock.clone()),
            users: FakeUsers::new(),
            groups: FakeGroups::new(),
            tenants: FakeTenants::new(),
            bindings: FakeBindings::new(),
            events: FakeEvents::new(),
            failures: FakeFailures::new(),
            ledger: FakeLedger::new(),
            user_deltas: FakeUserDeltas::new(&directory),
            directory,
            sealer: FakeSealer::new(),
            notifier: FakeNotifier::new(),
            random: SeededRandom::new(7),
            vault: FakeTokenVault::new(),
            consents: FakePendingConsents::new(),
            leases: FakeLeases::new(),
            group_deltas: FakeGroupDeltas::new(),
            cursors: FakeReconcileCursors::new(),
            cursor_key: CursorKey::new(SecretString::from("world-cursor-key-0123456789abcdef"))
                .expect("a valid key"),
            policy,
            password_policy: DirectoryPasswordPolicy::default(),
            tenant: Tenant::pending(TenantId::generate(), "Contoso"),
            dead_letters: Vec::new(),
            clock,
            license_settings: super::FakeLicenseSettings::new(),
            licensing: super::FakeLicensing::new(),
            actor: crate::model::Actor::local(),
            mailer: super::FakeMailer::new(),
            runs: super::FakeReconcileRuns::new(),
            alerts: super::FakeAdminAlerts::new(),
            alert_incidents: super::FakeAlertIncidents::new(),
            held_plans: super::FakeHeldPlans::new(),
        }
    }

    /// [`World::new`] with a retry budget of `max_attempts` attempts (the rest of the policy the
    /// default).
    ///
    /// # Panics
    /// If the fakes refuse the seed (they do not).
    pub async fn with_max_attempts(max_attempts: u32) -> Self {
        let policy = RetryPolicy {
            max_attempts,
            ..RetryPolicy::default()
        };
        Self::with_policy(policy, ADDRESS_RELEASE).await
    }

    /// The world with its active Contoso tenant, on `policy` and an M365 holding deleted
    /// addresses for `address_release`.
    ///
    /// # Panics
    /// If the fakes refuse the seed (they do not).
    pub async fn with_policy(policy: RetryPolicy, address_release: TimeDelta) -> Self {
        let mut world = Self::bare(policy, address_release);
        let mut tenant = world.tenant.clone();
        tenant.status = TenantStatus::Active;
        tenant.domains = vec![
            VerifiedDomain {
                name: DomainName::parse("contoso.com").expect("valid"),
                kind: DomainKind::Managed,
            },
            VerifiedDomain {
                name: DomainName::parse("sso.contoso.com").expect("valid"),
                kind: DomainKind::Federated,
            },
        ];
        let tenant = world.tenants.create(&tenant).await.expect("seed tenant");
        let names: Vec<DomainName> = tenant.domains.iter().map(|d| d.name.clone()).collect();
        world
            .tenants
            .claim_domains(&tenant.id, &names)
            .await
            .expect("seed domains");
        world
            .directory
            .add_tenant(&tenant.id, tenant.domains.clone());
        world.tenant = tenant;
        world
    }

    /// The bind use case.
    #[must_use]
    pub fn binder(&self) -> Bind<'_, Self> {
        Bind::new(self)
    }

    /// The retry worker's dispatcher.
    #[must_use]
    pub fn dispatcher(&self) -> RetryDispatcher<'_, Self> {
        RetryDispatcher::new(self)
    }

    /// Stores a directory user `id` with email `<id>@<domain>` and a few attributes.
    ///
    /// # Panics
    /// If the store refuses it (a duplicate).
    pub async fn user_at(&self, id: &str, domain: &str) -> DirectoryUser {
        let mut user = DirectoryUser::new(uid(id), email(&format!("{id}@{domain}")), id.to_owned());
        user.given_name = Some(format!("{id}-given"));
        user.surname = Some("Vance".to_owned());
        user.job_title = Some("Engineer".to_owned());
        user.department = Some("R&D".to_owned());
        self.users.create(&user).await.expect("new test user")
    }

    /// [`World::new`] with the users `ids` created ([`Self::user`]) and then bound
    /// ([`Self::bind`]), in that order.
    ///
    /// # Panics
    /// If a user cannot be created or a bind fails.
    pub async fn with_bound(ids: &[&str]) -> Self {
        let w = Self::new().await;
        for id in ids {
            w.user(id).await;
        }
        for id in ids {
            w.bind(id).await;
        }
        w
    }

    /// [`Self::user_at`] on `contoso.com`.
    pub async fn user(&self, id: &str) -> DirectoryUser {
        self.user_at(id, "contoso.com").await
    }

    /// Binds `id` with the default request.
    ///
    /// # Panics
    /// If the bind fails.
    pub async fn bind(&self, id: &str) -> Outcome {
        self.binder()
            .bind(&uid(id), BindRequest::default())
            .await
            .expect("bind")
    }

    /// The binding of `id`.
    ///
    /// # Panics
    /// If there is none.
    pub async fn binding(&self, id: &str) -> Binding {
        self.bindings
            .get(&uid(id))
            .await
            .expect("store")
            .expect("a binding")
    }

    /// The M365 account of `binding`.
    ///
    /// # Panics
    /// If it has none.
    #[must_use]
    pub fn object_id(binding: &Binding) -> M365ObjectId {
        binding.m365_object_id.clone().expect("an M365 account")
    }

    /// How many events of `kind` were recorded.
    #[must_use]
    pub fn count_events(&self, kind: EventKind) -> usize {
        self.events.all().iter().filter(|e| e.kind == kind).count()
    }

    /// The recorded events of `kind`, oldest first.
    #[must_use]
    pub fn events_of(&self, kind: EventKind) -> Vec<Event> {
        self.events
            .all()
            .into_iter()
            .filter(|e| e.kind == kind)
            .collect()
    }

    /// The recorded events whose reason is `reason`, oldest first.
    #[must_use]
    pub fn events_with_reason(&self, reason: &str) -> Vec<Event> {
        self.events
            .all()
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .collect()
    }

    /// The first recorded event of `kind`.
    ///
    /// # Panics
    /// If there is none.
    #[must_use]
    pub fn event(&self, kind: EventKind) -> Event {
        self.events
            .all()
            .into_iter()
            .find(|e| e.kind == kind)
            .expect("an event of that kind")
    }

    /// Makes `member` privileged through a group (R-BIND-11): seeds the role-assignable security
    /// group "Helpdesk" in the seeded tenant with `member` in it and grants the group the
    /// "Helpdesk Administrator" role. Returns the group's object id.
    ///
    /// # Panics
    /// If the group cannot be seeded.
    pub fn helpdesk_group_with(&self, member: &M365ObjectId) -> M365ObjectId {
        let group = self
            .directory
            .seed_group(
                &self.tenant.id,
                "Helpdesk",
                "helpdesk",
                true,
                std::slice::from_ref(member),
            )
            .expect("seeded group");
        self.directory
            .grant_role(&self.tenant.id, &group, "Helpdesk Administrator");
        group
    }

    /// Sets the seeded tenant's status.
    ///
    /// # Panics
    /// If the tenant is not stored.
    pub async fn set_tenant_status(&self, status: TenantStatus) {
        let mut t = self
            .tenants
            .get(&self.tenant.id)
            .await
            .expect("store")
            .expect("the seeded tenant");
        t.status = status;
        let v = t.version;
        self.tenants.update(&t, v).await.expect("tenant update");
    }

    /// Runs the retry worker until the queue is empty (long polls advance the virtual clock):
    /// acknowledged outcomes are deleted, the others come back after the visibility timeout and
    /// move to `dead_letters` after 5 receives (the DLQ's `maxReceiveCount`). Returns every outcome.
    pub async fn drain(&mut self) -> Vec<RetryOutcome> {
        self.drain_with(|_, _| false).await
    }

    /// [`World::drain`], calling `before` ahead of each delivery (to inject faults); when it
    /// returns true the delivery is dispatched twice (SQS standard queues may deliver twice).
    ///
    /// # Panics
    /// If a dispatch fails on the fakes or the queue never drains.
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
                .expect("receive");
            for d in deliveries {
                if before(self, &d.message) {
                    let first = self
                        .dispatcher()
                        .dispatch(&d.message)
                        .await
                        .expect("dispatch");
                    outcomes.push(first);
                }
                let outcome = self
                    .dispatcher()
                    .dispatch(&d.message)
                    .await
                    .expect("dispatch");
                if outcome.ack() {
                    self.queue.ack(&d.receipt).await.expect("ack");
                } else if d.receive_count >= 5 {
                    self.queue.ack(&d.receipt).await.expect("ack");
                    self.dead_letters.push(d.message.clone());
                }
                outcomes.push(outcome);
            }
        }
        panic!("the retry queue did not drain");
    }

    /// Now, on the world's clock.
    #[must_use]
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

impl Ports for World {
    type Users = FakeUsers;
    type Groups = FakeGroups;
    type Tenants = FakeTenants;
    type Bindings = FakeBindings;
    type Events = FakeEvents;
    type Failures = FakeFailures;
    type Ledger = FakeLedger;
    type Queue = FakeRetryQueue;
    type Vault = FakeTokenVault;
    type Sealer = FakeSealer;
    type Directory = FakeDirectory;
    type Probe = FakeDirectory;
    type Notifier = FakeNotifier;
    type Identity = FakeIdentityPlatform;
    type Consents = FakePendingConsents;
    type Leases = FakeLeases;
    type UserDeltas = FakeUserDeltas;
    type GroupDeltas = FakeGroupDeltas;
    type Cursors = FakeReconcileCursors;
    type CursorKeys = CursorKey;
    type Clock = ManualClock;
    type Random = SeededRandom;
    type LicenseSettings = super::FakeLicenseSettings;
    type Licensing = super::FakeLicensing;
    type Mailer = super::FakeMailer;
    type Runs = super::FakeReconcileRuns;
    type Alerts = super::FakeAdminAlerts;
    type AlertIncidents = super::FakeAlertIncidents;
    type HeldPlans = super::FakeHeldPlans;

    fn users(&self) -> &FakeUsers {
        &self.users
    }
    fn groups(&self) -> &FakeGroups {
        &self.groups
    }
    fn tenants(&self) -> &FakeTenants {
        &self.tenants
    }
    fn bindings(&self) -> &FakeBindings {
        &self.bindings
    }
    fn events(&self) -> &FakeEvents {
        &self.events
    }
    fn failures(&self) -> &FakeFailures {
        &self.failures
    }
    fn ledger(&self) -> &FakeLedger {
        &self.ledger
    }
    fn queue(&self) -> &FakeRetryQueue {
        &self.queue
    }
    fn vault(&self) -> &FakeTokenVault {
        &self.vault
    }
    fn sealer(&self) -> &FakeSealer {
        &self.sealer
    }
    fn directory(&self) -> &FakeDirectory {
        &self.directory
    }
    fn probe(&self) -> &FakeDirectory {
        &self.directory
    }
    fn notifier(&self) -> &FakeNotifier {
        &self.notifier
    }
    fn identity(&self) -> &FakeIdentityPlatform {
        &self.identity
    }
    fn consents(&self) -> &FakePendingConsents {
        &self.consents
    }
    fn leases(&self) -> &FakeLeases {
        &self.leases
    }
    fn user_deltas(&self) -> &FakeUserDeltas {
        &self.user_deltas
    }
    fn group_deltas(&self) -> &FakeGroupDeltas {
        &self.group_deltas
    }
    fn cursors(&self) -> &FakeReconcileCursors {
        &self.cursors
    }
    fn cursor_keys(&self) -> &CursorKey {
        &self.cursor_key
    }
    fn clock(&self) -> &ManualClock {
        &self.clock
    }
    fn random(&self) -> &SeededRandom {
        &self.random
    }
    fn retry_policy(&self) -> &RetryPolicy {
        &self.policy
    }
    fn password_policy(&self) -> &DirectoryPasswordPolicy {
        &self.password_policy
    }
    fn license_settings(&self) -> &super::FakeLicenseSettings {
        &self.license_settings
    }
    fn licensing(&self) -> &super::FakeLicensing {
        &self.licensing
    }
    fn actor(&self) -> &crate::model::Actor {
        &self.actor
    }
    fn mailer(&self) -> &super::FakeMailer {
        &self.mailer
    }
    fn runs(&self) -> &super::FakeReconcileRuns {
        &self.runs
    }
    fn alerts(&self) -> &super::FakeAdminAlerts {
        &self.alerts
    }
    fn alert_incidents(&self) -> &super::FakeAlertIncidents {
        &self.alert_incidents
    }
    fn held_plans(&self) -> &super::FakeHeldPlans {
        &self.held_plans
    }
}
