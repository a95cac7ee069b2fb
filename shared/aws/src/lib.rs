//! m365-aws: the AWS adapters of the engine's ports — DynamoDB stores, the SQS retry queue,
//! the Secrets Manager token vault and the password sealer whose key lives in Secrets Manager.
//!
//! Every adapter takes an SDK client built once per cold start and resource names from
//! [`Resources`]; nothing here reads the environment. Endpoints (including a local moto via
//! `AWS_ENDPOINT_URL`) are the SDK configuration's business, so no code path is test-specific.
//!
//! # Table and key design
//!
//! Every key attribute is a string. Entities are stored in a `doc` string attribute (the
//! engine's model as JSON, exactly as it serializes) beside the key attributes and a numeric
//! `version` used by optimistic-concurrency conditions. The definitions live in [`schema`]; `template.yaml`
//! declares the same tables (a test compares them).
//!
//! | table | item | `pk` | `sk` | other key attributes |
//! |---|---|---|---|---|
//! | users | directory user | `USER#<user id>` | `USER` | `list_pk`=`USER`, `list_sk`=`<user id>` |
//! | users | email claim | `EMAIL#<lowercase email>` | `EMAIL` | — (holds `user_id`) |
//! | users | group | `GROUP#<group id>` | `GROUP` | `list_pk`=`GROUP`, `list_sk`=`<group id>` |
//! | users | group membership | `MEMBER#<user id>` | `GROUP#<group id>` | — (holds `group_id`, `group_version`) |
//! | tenants | tenant | `TENANT#<tenant id>` | `TENANT` | `list_pk`=`TENANT`, `list_sk`=`<tenant id>` |
//! | tenants | domain claim | `DOMAIN#<punycode domain>` | `DOMAIN` | — (holds `tenant_id`) |
//! | tenants | licence settings ([`DynamoLicenseSettings`], R-LIC-1) | `SETTINGS#<tenant id>` | `SETTINGS` | — |
//! | tenants | a group's licences (R-LIC-1) | `GROUP_LICENSES#<group id>` | `GROUP_LICENSES` | — |
//! | bindings | binding | `<user id>` | — | `tenant_id`, `user_id`, `tenant_state`=`<tenant id>#<state>` |
//! | events | event | `<event id>` | — | `user_id`, `tenant_id`, `kind`, `at_id`; `expires_at` |
//! | failures | failure | `<tenant id>` | `<at>#<failure id>` | `expires_at` |
//! | ledger | operation | `<operation id>` | — | `expires_at` |
//! | ledger | lease ([`DynamoLeases`]) | `LEASE#<name>` | — | `expires_at` |
//! | ledger | OAuth sign-in ([`DynamoPendingConsents`]) | `OAUTH_STATE#<sha-256 of state>` | — | `expires_at` |
//! | ledger | Graph rate budget ([`DynamoRateBudget`]) | `BUDGET#<tenant id>` | — | `expires_at` |
//! | ledger | reconcile cursor ([`DynamoReconcileCursors`]) | `CURSOR#<tenant id>[#groups]` | — | — |
//! | ledger | ids seen by a full listing (R-REC-4) | `SEEN#<tenant id>#<start ms>#<part>` | — | `expires_at` |
//! | ledger | reconcile run requested through the API ([`DynamoReconcileRuns`], R-OPS-2) | `RUN#<tenant id>#<run id>` | — | `expires_at` (7 days) |
//! | ledger | held reconcile plan ([`DynamoHeldPlans`], R-REC-3) | `HELD#<tenant id>`, parts `HELDPART#<tenant id>#<plan id>#<n>` | — | — |
//! | ledger | reconcile round tally (R-REC-3) | `TALLY#<tenant id>` | — | — |
//! | ledger | repairs of the last rejected plan (R-REC-3) | `REJECTED#<tenant id>` | — | — |
//!
//! Access patterns and how they are served:
//! - **user by id / by email**: `GetItem` on `USER#…`; `GetItem` on `EMAIL#…` then on `USER#…`.
//!   Email uniqueness: a user write is one `TransactWriteItems` that puts the user and
//!   puts its `EMAIL#` claim with `attribute_not_exists(pk)` (or with the claim already held by
//!   the same user), and deletes the previous claim when the email changed. A second user with
//!   the same (case-insensitive) email fails the claim's condition → `email_exists`.
//! - **all users / all groups / all tenants**: `Query` on the `list` index, partition `USER`,
//!   `GROUP` or `TENANT`, ordered by id. These partitions are per directory, small and read by
//!   admin pages only, so one partition per kind is acceptable.
//! - **groups of a member** (R-GRP-1's follow-up of every bind): `Query` on `MEMBER#<user id>`,
//!   then `GetItem` per group found, keeping those whose members list the user. A group write
//!   puts and deletes its members' membership items in its own transaction when the change fits
//!   one (≤ 99 membership changes), else in an order that keeps them a superset of the truth
//!   (details and pre-existing groups: `dynamo/groups.rs`).
//! - **tenant by verified domain**: `GetItem` on `DOMAIN#…`. Claiming a tenant's domains is a
//!   transaction of conditional updates (`attribute_not_exists(pk) OR tenant_id = :me`): all
//!   claimed or none; a domain of another tenant → `domain_claimed`; re-claiming one's own is a
//!   no-op. A transaction holds at most 100 items, so more domains are claimed 100 at a time; each
//!   new claim item is marked with the claim's random token (`claim`), and a refusal in a later
//!   transaction deletes exactly the items carrying that token (domains held before stay).
//! - **binding by user**: `GetItem`; create is `attribute_not_exists(pk)`, updates are
//!   conditional on `version = :expected` (a stale update is refused → `stale_version`).
//! - **bindings by tenant, optionally by state**: `Query` on `by_tenant` (`tenant_id`, sorted by
//!   `user_id`) or, for one state, on `by_tenant_state` (`tenant_state`, sorted by `user_id`);
//!   both are ordered by user id and need no filter, so pages are always full.
//! - **events newest first by user / tenant / kind**: `Query` on `by_user`, `by_tenant` or
//!   `by_kind` with `ScanIndexForward=false`. `at_id` = fixed-width RFC 3339 UTC time with
//!   nanoseconds + `#` + event id, so string order is time order and ids break ties; `since`
//!   is a key condition `at_id >= "<since>"`. Events without a user (or tenant) are simply absent
//!   from that sparse index. Items expire 90 days after `at` (`expires_at`, R-AUD-1).
//! - **failures newest first by tenant**: `Query` on `pk` with `ScanIndexForward=false`;
//!   expire after 90 days.
//! - **operation ledger**: a claim is a put conditional on `attribute_not_exists(pk)`, an
//!   entry past its `expires_at` (TTL deletes lazily) or an in-progress lease that ended
//!   (`lease_until_ms <= now`); completion stores the outcome with the caller's expiry.
//!
//! Error mapping: a failed condition becomes the port's conflict (`email_exists`,
//! `domain_claimed`, `already_exists`, `stale_version`) or `not_found`; throttling →
//! `Throttled`; timeouts, 5xx and transaction conflicts → `Unavailable` (both retryable);
//! anything else → `Infrastructure` (permanent), with the SDK error as its source.
//!
//! Paging: a page reads one item beyond its limit, so `next` is set exactly when more items
//! follow. Page tokens carry the start key and the listing they belong to (index and
//! partition), as base64url JSON; a token from another listing or a forged one is refused as
//! an invalid cursor. Index reads are eventually consistent (DynamoDB offers no consistent
//! reads on global secondary indexes): a listing right after a write may miss it; reads by key
//! are strongly consistent.
//!
//! # Other adapters
//!
//! - [`SqsRetryQueue`]: JSON `RetryMessage` bodies, `DelaySeconds` ≤ 900 (rounded up); a
//!   message received before its `not_before` is sent again by the engine's retry dispatcher
//!   with the delay left (see [`delay`]).
//! - [`SqsNotifier`]: welcome notifications (R-BIND-4) as JSON on the notifications queue.
//! - [`SesMailer`]: the welcome email (R-NOT-1), one plain-text SES v2 `SendEmail` per message.
//! - [`SnsAdminAlerts`]: admin alerts (R-OPS-1) on the `AdminAlerts` SNS topic (JSON for
//!   machines, text for email); [`DynamoAlertIncidents`]: the open alert incidents that keep them
//!   to one per incident, items `ALERT#<tenant id>#<kind>` / `ALERT` on the tenants table.
//! - [`SecretsManagerTokenVault`]: one secret per tenant, `<prefix><tenant id>`, holding the
//!   tokens and the Microsoft tenant that issued them, created with the stack's KMS key when one
//!   is configured (R-SAFE-4); the request token is the `ClientRequestToken` (= version id);
//!   `AWSCURRENT`/`AWSPREVIOUS` are the current and previous tokens; deletion is immediate (no
//!   recovery window). `create` (connect only) may create the secret, `update` (refresh) only puts
//!   a version into an existing one (R-CONN-8).
//! - [`load_oauth_client`]: the app registration's credentials (`client_id`, `client_secret`,
//!   optional `redirect_uri`) from the OAuth client secret, once per cold start.
//! - [`SecretsManagerCursorKey`]: the key signing the API's pagination cursors, read from its
//!   secret on first use and kept for the process's life.
//! - [`SecretsManagerSealer`]: AES-256-GCM, key = 64 hex characters in a secret, seal = key
//!   version id + random 96-bit nonce + ciphertext, associated data = the user id.

pub mod alerts;
pub mod cursor_key;
pub mod delay;
pub mod dynamo;
pub mod mailer;
pub mod notifier;
pub mod oauth_client;
pub mod resources;
pub mod schema;
pub mod sealer;
pub mod sqs;
pub mod vault;

pub use alerts::{DynamoAlertIncidents, SnsAdminAlerts};
pub use cursor_key::SecretsManagerCursorKey;
pub use dynamo::DynamoHeldPlans;
pub use dynamo::DynamoReconcileRuns;
pub use dynamo::{
    DynamoBindings, DynamoEvents, DynamoFailures, DynamoGroups, DynamoLeases, DynamoLedger,
    DynamoLicenseSettings, DynamoPendingConsents, DynamoRateBudget, DynamoReconcileCursors,
    DynamoTenants, DynamoUsers,
};
pub use mailer::SesMailer;
pub use notifier::SqsNotifier;
pub use oauth_client::{OAuthClientCredentials, load_oauth_client};
pub use resources::Resources;
pub use sealer::SecretsManagerSealer;
pub use sqs::SqsRetryQueue;
pub use vault::SecretsManagerTokenVault;

/// Moves a future to the heap before it is awaited. Every AWS SDK request future (`send()`) is
/// large (the SDK's orchestrator state, tens of kilobytes); awaited inline it would make each
/// adapter future that large, and the engine's use cases, which await many adapter calls, would
/// carry a slot of that size per call in every frame of their poll chain: enough to overflow a
/// 2 MiB thread stack in unoptimized builds. Boxed, an adapter future is a few hundred bytes.
pub(crate) trait OnHeap: std::future::Future + Sized {
    /// This future, boxed.
    fn on_heap(self) -> std::pin::Pin<Box<Self>> {
        Box::pin(self)
    }
}

impl<F: std::future::Future> OnHeap for F {}
