//! Policies: pure decisions with exhaustive tests (passwords, tenant routing).

pub mod password;
pub mod routing;
