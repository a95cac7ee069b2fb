//! m365-engine: the pure core of m365-sync — model, policies, ports (traits) and use cases.
//!
//! No AWS, HTTP or Lambda dependency: adapters (`m365-aws`, `m365-graph`) implement [`ports`],
//! and the `testing` feature provides in-memory fakes of every port plus the contract suite that
//! every adapter must pass.

// Unit tests may unwrap: a panic there is a failed test (STYLE: no `unwrap` outside tests).
#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

/// Implements a method naming each variant of an enum with a static string (a machine-readable
/// code, a snake_case name): `variant_names!(Type::method, "doc" { Variant => "name", .. });`.
/// Every variant is matched as `Self::Variant { .. }`, so unit, tuple and struct variants alike.
macro_rules! variant_names {
    ($ty:ident :: $method:ident, $doc:literal { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            #[doc = $doc]
            #[must_use]
            pub fn $method(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $name,)+
                }
            }
        }
    };
}

pub mod error;
pub mod model;
pub mod policy;
pub mod ports;
pub mod usecase;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Error, Result};
