//! Benchmark of reconcile's Graph cost (DESIGN §5: "Reconcile's Graph requests grow with changes:
//! 1% drift on 50,000 bound users costs ≤ 2× the requests of the delta pages plus the fixes, never
//! a full listing per page"; R-REC-1).
//!
//! `N` Contoso users are seeded in the m365-emulator and bound in the directory; then the users
//! reconcile (`m365_engine::usecase::reconcile::Reconcile`, the use case of every reconcile pass)
//! runs four rounds against the emulator through the production Graph wiring (`GraphApp`: tokens
//! from the vault on moto, `GraphDirectory`), each round as many bounded passes as it takes:
//! 1. the first, full round (a full delta listing, every page once);
//! 2. an unchanged tenant;
//! 3. after `DRIFT`% of the users had their job title changed in M365 behind our back;
//! 4. unchanged again (our repairs of round 3 come back in the delta and need nothing).
//!
//! The directory side (users, bindings, cursors, events) is the engine's in-memory fakes: what is
//! measured is Graph, and binding 50,000 users on moto would take most of an hour of setup (the
//! DynamoDB adapters are proven by the contract suite and the function by the integration tests).
//! The groups delta (one more page per round on an unchanged tenant) is not part of this run.
//!
//! The emulator counts every Graph request by route; the table shows, per round, all Graph
//! requests, the delta pages, the other requests (the fixes), the repairs applied, passes and time,
//! and for round 3 the ratio requests / (delta pages + fixes) against the bar of 2, next to the
//! size of a full listing.
//!
//! Run: `scripts/with-moto.sh cargo run -p m365-integration-tests --example reconcile_bench`
//! (request counts do not depend on the build profile; `--release` only shortens the times).
//! Knobs (environment): `BENCH_USERS` (50000), `BENCH_DRIFT_PERCENT` (1), `BENCH_MAX_PAGES` (50,
//! delta pages per pass).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
// The use case's future nests the Graph and store futures deeply.
#![recursion_limit = "256"]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use m365_engine::model::{
    Binding, BindingState, DirectoryUser, Email, M365ObjectId, TenantId, UserId,
};
use m365_engine::ports::{BindingStore, Expect, SystemClock, UserStore};
use m365_engine::testing::{
    FakeBindings, FakeEvents, FakeFailures, FakeReconcileCursors, FakeSealer, FakeUsers,
};
use m365_engine::usecase::reconcile::{Reconcile, ReconcileSettings};
use m365_integration_tests::{CONTOSO, World};
use serde_json::{Value, json};

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one reconcile round cost.
#[derive(Debug, Default)]
struct Round {
    graph: u64,
    delta_pages: u64,
    planned: u64,
    applied: u64,
    passes: u64,
    took: Duration,
}

impl Round {
    fn other(&self) -> u64 {
        self.graph - self.delta_pages
    }
}

/// The directory side, in memory.
/// The directory side in memory (the engine's fakes), M365 through Graph on the emulator.
type Directory = m365_engine::testing::World;

/// The bench's ports: the fakes' stores with the real Graph `Directory` and delta reader.
#[derive(Debug)]
struct Bench<'a> {
    fakes: &'a Directory,
    graph: &'a m365_lambda::graph::VaultDirectory,
}

impl m365_engine::ports::Ports for Bench<'_> {
    type Users = FakeUsers;
    type Groups = m365_engine::testing::FakeGroups;
    type Tenants = m365_engine::testing::FakeTenants;
    type Bindings = FakeBindings;
    type Events = FakeEvents;
    type Failures = FakeFailures;
    type Ledger = m365_engine::testing::FakeLedger;
    type Queue = m365_engine::testing::FakeRetryQueue;
    type Vault = m365_engine::testing::FakeTokenVault;
    type Sealer = FakeSealer;
    type Directory = m365_lambda::graph::VaultDirectory;
    type Probe = m365_lambda::graph::VaultDirectory;
    type Notifier = m365_engine::testing::FakeNotifier;
    type Identity = m365_engine::testing::FakeIdentityPlatform;
    type Consents = m365_engine::testing::FakePendingConsents;
    type Leases = m365_engine::testing::FakeLeases;
    type UserDeltas = m365_lambda::graph::VaultDirectory;
    type GroupDeltas = m365_lambda::graph::VaultDirectory;
    type Cursors = FakeReconcileCursors;
    type CursorKeys = m365_engine::policy::cursor::CursorKey;
    type Clock = SystemClock;
    type Random = m365_engine::testing::SeededRandom;
    type LicenseSettings = m365_engine::testing::FakeLicenseSettings;
    type Licensing = m365_lambda::graph::VaultDirectory;
    type Mailer = m365_engine::testing::FakeMailer;
    type Runs = m365_engine::testing::FakeReconcileRuns;
    type Alerts = m365_engine::testing::FakeAdminAlerts;
    type AlertIncidents = m365_engine::testing::FakeAlertIncidents;
    type HeldPlans = m365_engine::testing::FakeHeldPlans;
    fn users(&self) -> &Self::Users {
        &self.fakes.users
    }
    fn groups(&self) -> &Self::Groups {
        &self.fakes.groups
    }
    fn tenants(&self) -> &Self::Tenants {
        &self.fakes.tenants
    }
    fn bindings(&self) -> &Self::Bindings {
        &self.fakes.bindings
    }
    fn events(&self) -> &Self::Events {
        &self.fakes.events
    }
    fn failures(&self) -> &Self::Failures {
        &self.fakes.failures
    }
    fn ledger(&self) -> &Self::Ledger {
        &self.fakes.ledger
    }
    fn queue(&self) -> &Self::Queue {
        &self.fakes.queue
    }
    fn vault(&self) -> &Self::Vault {
        &self.fakes.vault
    }
    fn sealer(&self) -> &Self::Sealer {
        &self.fakes.sealer
    }
    fn directory(&self) -> &Self::Directory {
        self.graph
    }
    fn probe(&self) -> &Self::Probe {
        self.graph
    }
    fn notifier(&self) -> &Self::Notifier {
        &self.fakes.notifier
    }
    fn identity(&self) -> &Self::Identity {
        &self.fakes.identity
    }
    fn consents(&self) -> &Self::Consents {
        &self.fakes.consents
    }
    fn leases(&self) -> &Self::Leases {
        &self.fakes.leases
    }
    fn user_deltas(&self) -> &Self::UserDeltas {
        self.graph
    }
    fn group_deltas(&self) -> &Self::GroupDeltas {
        self.graph
    }
    fn cursors(&self) -> &Self::Cursors {
        &self.fakes.cursors
    }
    fn cursor_keys(&self) -> &Self::CursorKeys {
        &self.fakes.cursor_key
    }
    fn clock(&self) -> &SystemClock {
        &SystemClock
    }
    fn random(&self) -> &Self::Random {
        &self.fakes.random
    }
    fn retry_policy(&self) -> &m365_engine::usecase::RetryPolicy {
        &self.fakes.policy
    }
    fn password_policy(&self) -> &m365_engine::policy::password::DirectoryPasswordPolicy {
        &self.fakes.password_policy
    }
    fn license_settings(&self) -> &Self::LicenseSettings {
        &self.fakes.license_settings
    }
    fn licensing(&self) -> &Self::Licensing {
        self.graph
    }
    fn actor(&self) -> &m365_engine::model::Actor {
        &self.fakes.actor
    }
    fn mailer(&self) -> &Self::Mailer {
        &self.fakes.mailer
    }
    fn runs(&self) -> &Self::Runs {
        &self.fakes.runs
    }
    fn alerts(&self) -> &Self::Alerts {
        &self.fakes.alerts
    }
    fn alert_incidents(&self) -> &Self::AlertIncidents {
        &self.fakes.alert_incidents
    }
    fn held_plans(&self) -> &Self::HeldPlans {
        &self.fakes.held_plans
    }
}

async fn counts(world: &World) -> BTreeMap<String, u64> {
    world
        .emulator
        .requests(CONTOSO)
        .await
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
        .collect()
}

/// One round: passes of at most `settings.max_pages` delta pages until the round completes.
async fn round(
    world: &World,
    dir: &Directory,
    tenant: &TenantId,
    settings: &ReconcileSettings,
) -> Round {
    let status = world
        .emulator
        .send(
            reqwest::Method::DELETE,
            &format!("/_emulator/tenants/{CONTOSO}/requests"),
            Value::Null,
        )
        .await;
    assert!(status.is_success());
    let ports = Bench {
        fakes: dir,
        graph: &world.graph.directory,
    };
    let reconcile = Reconcile::new(&ports, settings);
    let started = Instant::now();
    let mut r = Round::default();
    loop {
        let report = reconcile.run(tenant, false).await.unwrap();
        r.passes += 1;
        r.planned += report.plan.len() as u64;
        r.applied += report.applied as u64;
        assert_eq!(report.failed, 0, "{report:?}");
        if report.complete {
            break;
        }
    }
    r.took = started.elapsed();
    let c = counts(world).await;
    r.graph = c.get("graph").copied().unwrap_or(0);
    r.delta_pages = c.get("graph GET /v1.0/users/delta").copied().unwrap_or(0);
    r
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users: usize = knob("BENCH_USERS", 50_000);
    let drift_percent: f64 = knob("BENCH_DRIFT_PERCENT", 1.0);
    let max_pages: u32 = knob("BENCH_MAX_PAGES", 50);
    let started = Instant::now();
    let extra: Vec<Value> = (0..users)
        .map(|i| {
            json!({
                "userPrincipalName": format!("bench{i:06}@contoso.com"),
                "displayName": format!("Bench {i:06}"),
                "givenName": "Bench",
                "surname": format!("{i:06}"),
                "jobTitle": "Engineer",
                "accountEnabled": true
            })
        })
        .collect();
    let world = World::start_with_users(extra)
        .await
        .expect("moto is running (use scripts/with-moto.sh)");
    let tenant = TenantId::parse(&world.connect_contoso("Contoso").await).unwrap();
    println!(
        "seeded {users} M365 users and connected Contoso in {:.1?}",
        started.elapsed()
    );

    // Every bench user is a directory user bound to its account, as an import leaves them.
    let started = Instant::now();
    let dir = Directory::bare(
        m365_engine::usecase::RetryPolicy::default(),
        chrono::TimeDelta::zero(),
    );
    let m365 = world
        .emulator
        .get(&format!("/_emulator/tenants/{CONTOSO}"))
        .await;
    let mut bound = 0;
    for account in m365["users"].as_array().unwrap() {
        let p = &account["properties"];
        let upn = p["userPrincipalName"].as_str().unwrap();
        if !upn.starts_with("bench") {
            continue;
        }
        let id = UserId::parse(upn.split('@').next().unwrap()).unwrap();
        let mut user = DirectoryUser::new(
            id.clone(),
            Email::parse(upn).unwrap(),
            p["displayName"].as_str().unwrap(),
        );
        user.given_name = p["givenName"].as_str().map(str::to_owned);
        user.surname = p["surname"].as_str().map(str::to_owned);
        user.job_title = p["jobTitle"].as_str().map(str::to_owned);
        dir.users.create(&user).await.unwrap();
        let binding = Binding {
            user_id: id,
            tenant_id: tenant.clone(),
            m365_object_id: Some(M365ObjectId::parse(account["id"].as_str().unwrap()).unwrap()),
            state: BindingState::Provisioned,
            pending_reason: None,
            last_error: None,
            in_flight: None,
            m365_password_changed_at: None,
            version: 0,
            suspended_reason: None,
            pushed_password_set_at: None,
            adopted_privileged: false,
            account_lookup_version: None,
            restored: false,
            restore_conflict: None,
            licensing: None,
        };
        dir.bindings.put(&binding, Expect::Absent).await.unwrap();
        bound += 1;
    }
    assert_eq!(bound, users);
    println!("bound {users} users in {:.1?}", started.elapsed());

    let settings = ReconcileSettings {
        max_pages,
        ..ReconcileSettings::default()
    };
    let full = round(&world, &dir, &tenant, &settings).await;
    let unchanged = round(&world, &dir, &tenant, &settings).await;
    // Integer share of the users, at least one.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let drifted = ((users as f64 * drift_percent / 100.0).round() as usize).max(1);
    let step = (users / drifted).max(1);
    for i in (0..users).step_by(step).take(drifted) {
        let status = world
            .emulator
            .send(
                reqwest::Method::PATCH,
                &format!("/_emulator/tenants/{CONTOSO}/users/bench{i:06}@contoso.com"),
                json!({"jobTitle": "Pirate"}),
            )
            .await;
        assert!(status.is_success());
    }
    let drift = round(&world, &dir, &tenant, &settings).await;
    let after = round(&world, &dir, &tenant, &settings).await;

    println!();
    println!(
        "{users} bound users, {drifted} drifted ({drift_percent}%), at most {max_pages} delta pages per pass"
    );
    println!(
        "{:<22} {:>8} {:>12} {:>8} {:>8} {:>8} {:>7} {:>9}",
        "round", "graph", "delta pages", "other", "planned", "applied", "passes", "time"
    );
    for (name, r) in [
        ("1 full (first) round", &full),
        ("2 unchanged", &unchanged),
        ("3 after the drift", &drift),
        ("4 unchanged again", &after),
    ] {
        println!(
            "{:<22} {:>8} {:>12} {:>8} {:>8} {:>8} {:>7} {:>8.1?}",
            name,
            r.graph,
            r.delta_pages,
            r.other(),
            r.planned,
            r.applied,
            r.passes,
            r.took
        );
    }
    #[allow(clippy::cast_precision_loss)]
    let ratio = drift.graph as f64 / (drift.delta_pages + drifted as u64) as f64;
    println!();
    println!(
        "drift round: {} Graph requests for {} delta pages + {drifted} fixes: ratio {ratio:.2} (bar: <= 2.00, {})",
        drift.graph,
        drift.delta_pages,
        if ratio <= 2.0 { "met" } else { "NOT met" }
    );
    println!(
        "delta pages read: {} in the drift round, {} in a full listing; unchanged tenant: {} Graph request(s)",
        drift.delta_pages, full.delta_pages, unchanged.graph
    );
    assert_eq!(
        drift.applied, drifted as u64,
        "every drifted user repaired once"
    );
    assert_eq!(
        after.other(),
        0,
        "the round after the repairs needs nothing"
    );
}
