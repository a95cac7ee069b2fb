//! Policies: pure decisions with exhaustive tests (passwords, tenant routing, rate budget).

pub mod password;
pub mod rate_budget;
pub mod routing;
