//! Policies: pure decisions with exhaustive tests (passwords, tenant routing, rate budget,
//! signed cursors, names).

pub mod cursor;
pub mod name;
pub mod password;
pub mod rate_budget;
pub mod routing;
