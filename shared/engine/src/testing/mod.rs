//! Test support (compiled for this crate's tests and, with feature `testing`, for other crates): a controllable clock, in-memory fakes of every port and the
//! contract suite that every adapter must pass.
//!
//! The fakes are faithful to the ports' conditional semantics (duplicate email, domain claimed by
//! another tenant, stale versions, ledger leases, queue visibility, vault versions, sealed-data
//! authentication), so use cases tested against them behave as they will on AWS and Graph.

mod clock;
// `#[macro_use]`: the fakes' own modules below run their contracts with `contract_tests!` (a
// macro-expanded `#[macro_export]` macro is not reachable by `crate::` path inside this crate).
#[macro_use]
pub mod contract;
mod alerts;
mod directory;
mod gate;
mod held;
mod hold;
mod identity;
mod leases;
mod licenses;
mod log_buffer;
mod mail;
mod notify;
mod paging;
mod queue;
mod rate_budget;
mod reconcile;
mod runs;
mod sealer;
mod stores;
mod vault;
mod world;

pub use alerts::{FakeAdminAlerts, FakeAlertIncidents};
pub use clock::ManualClock;
pub use directory::{FakeDirectory, FakeM365Tenant};
pub use gate::Gate;
pub use held::FakeHeldPlans;
pub use hold::{HeldCall, Stage};
pub use identity::{
    AADSTS_CODE_REDEEMED, AADSTS_INVALID_GRANT, AADSTS_PKCE_MISMATCH, FakeIdentityPlatform,
    FakePendingConsents,
};
pub use leases::FakeLeases;
pub use licenses::{FakeLicenseSettings, FakeLicensing};
pub use log_buffer::LogBuffer;
pub use mail::FakeMailer;
pub use notify::{FakeNotifier, SeededRandom};
pub use queue::{FakeRetryQueue, QueuedMessage};
pub use rate_budget::FakeRateBudget;
#[cfg(test)]
pub(crate) use reconcile::bare_change;
pub use reconcile::{FakeGroupDeltas, FakeReconcileCursors, FakeUserDeltas};
pub use runs::FakeReconcileRuns;
pub use sealer::FakeSealer;
pub use stores::{
    FakeBindings, FakeEvents, FakeFailures, FakeGroups, FakeLedger, FakeTenants, FakeUsers,
};
pub use vault::FakeTokenVault;
pub use world::{ADDRESS_RELEASE, World, email, uid};

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a fake's state; a panic in another test thread does not make the state unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
