//! Names of the AWS resources the adapters work on. Built by the caller (`m365-lambda` reads
//! them from the environment; tests make unique ones); this crate never reads the environment.

/// The tables, queue and secrets of one deployment (see `template.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// Users table name.
    pub users_table: String,
    /// Tenants table name.
    pub tenants_table: String,
    /// Bindings table name.
    pub bindings_table: String,
    /// Events table name.
    pub events_table: String,
    /// Failures table name.
    pub failures_table: String,
    /// Ledger table name.
    pub ledger_table: String,
    /// URL of the retry queue.
    pub retry_queue_url: String,
    /// URL of the notifications queue.
    pub notifications_queue_url: String,
    /// Name prefix of the per-tenant token secrets (`m365-sync/<stage>/tenant/`).
    pub tenant_secret_prefix: String,
    /// Name or ARN of the seal key secret.
    pub seal_key_secret_id: String,
    /// Name or ARN of the secret whose value signs pagination cursors (R-SAFE-1).
    pub cursor_key_secret_id: String,
    /// The KMS key (id, ARN or alias) tenant token secrets are created with (R-SAFE-4); `None`:
    /// Secrets Manager's default key (`aws/secretsmanager`), as on the local stack, which
    /// cannot create KMS keys.
    pub secrets_kms_key_id: Option<String>,
}
