//! m365-graph: the Microsoft Graph and Microsoft identity-platform client of m365-sync.
//!
//! - [`GraphClient`] (built once per cold start with [`GraphClientBuilder`]: base URLs from
//!   configuration, real Microsoft hosts by default, rustls, timeouts, retry bounds), whose
//!   writes are paced by the per-tenant rate budget when one is attached ([`budget`]), and whose
//!   every call stops at the caller's deadline with the retryable [`GraphError::Deadline`]
//!   (`GraphDirectory::with_deadline`, `GraphIdentity::with_deadline`; R-OPS-2);
//! - [`GraphDirectory`], the engine's `Directory` port over Graph, plus security groups and
//!   membership ([`groups`]), a user's manager ([`manager`], R-ATTR-1), `$batch` in chunks of 20 with per-item results ([`batch`]), users and
//!   groups delta with 410 restart ([`delta`]), the tenant's organization id, and the privileged
//!   accounts of R-BIND-11 — directory roles and the consenting admin ([`roles`]); it is also the
//!   engine's `TenantProbe`: `/organization` and `/domains` read with a just-issued access token
//!   alone, before the connect callback stores anything (R-CONN-7);
//! - [`IdentityClient`]: authorization URL (PKCE S256 + state), code exchange, refresh with
//!   rotation persisted before use, client credentials; [`GraphIdentity`], the engine's
//!   `IdentityPlatform` port over it (connect and token refresh use cases), at `organizations` or,
//!   once known, the tenant's own authority (R-CONN-7);
//! - [`TokenProvider`] and its implementations [`VaultTokens`] (vault-backed, the access token
//!   kept in memory until shortly before it expires, single-flight refresh per process) and
//!   [`StaticToken`];
//! - [`GraphError`] / [`TokenError`], classified per graph-spec §12 onto the engine's error so
//!   that `is_retryable()` alone decides retries.
//!
//! No token or password ever reaches a log, an error or `Debug` output (R-SAFE-2).

// Unit tests may unwrap: a panic there is a failed test (STYLE: no `unwrap` outside tests).
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod batch;
pub mod budget;
pub mod client;
mod deleted;
pub mod delta;
pub mod directory;
pub mod error;
pub mod groups;
pub mod identity;
pub mod licenses;
pub mod manager;
pub mod model;
pub mod platform;
pub mod reconcile;
pub mod roles;
pub mod tokens;

pub use batch::{BatchItem, BatchRequest, BatchResults, MAX_BATCH};
pub use budget::WriteBudget;
pub use client::{
    BuildError, GRAPH_BASE, GraphClient, GraphClientBuilder, HttpRetry, IDENTITY_BASE, MIN_ATTEMPT,
    TokenProvider,
};
pub use delta::{DeltaGroup, DeltaNext, DeltaPage, DeltaUser, MemberDelta, RemovedReason};
pub use directory::{GraphDirectory, Organization};
pub use error::{ApiError, ErrorClass, GraphError};
pub use groups::{GroupMember, M365Group};
pub use identity::{AuthorizationStart, IdentityClient, TokenError, TokenSet};
pub use platform::GraphIdentity;
pub use tokens::{EXPIRY_MARGIN, StaticToken, VaultTokens};
