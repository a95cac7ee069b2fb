//! Policies: pure decisions with exhaustive tests (passwords, tenant routing, rate budget,
//! signed cursors, names, retries and backoff).

pub mod cursor;
pub mod name;
pub mod password;
pub mod rate_budget;
pub mod retry;
pub mod routing;
pub mod safeguard;
