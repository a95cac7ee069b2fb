//! The [`App`]: everything a function needs, built once per cold start — the [`Config`] tree,
//! the AWS SDK configuration (credentials, region and endpoint resolved the SDK's standard way, so
//! `AWS_ENDPOINT_URL` points every client at a local moto with no special code path), one client
//! per service, and the adapters of the engine's ports wired to the configured resources. The SDK
//! configuration stays inside: a function that needs another adapter asks the `App` for it
//! ([`App::cursors`], [`App::queue`]) rather than building clients of its own.

use aws_config::{BehaviorVersion, SdkConfig};
use m365_aws::{
    DynamoBindings, DynamoEvents, DynamoFailures, DynamoGroups, DynamoLeases, DynamoLedger,
    DynamoPendingConsents, DynamoReconcileCursors, DynamoTenants, DynamoUsers,
    SecretsManagerCursorKey, SecretsManagerSealer, SecretsManagerTokenVault, SesMailer,
    SqsNotifier, SqsRetryQueue,
};

use crate::config::{Config, ConfigError, Section};

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The environment is incomplete or invalid (every problem is listed).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The adapters of every port, sharing one SDK configuration. Cheap to share by reference
/// across invocations; each adapter holds its client (internally reference-counted).
#[derive(Debug, Clone)]
pub struct App {
    /// The configuration the app was built from.
    pub config: Config,
    /// The resolved AWS SDK configuration (the Graph side's rate budget and the extra adapters
    /// are built on it; not public: no function builds clients of its own).
    pub(crate) sdk: SdkConfig,
    /// Directory users.
    pub users: DynamoUsers,
    /// Directory groups.
    pub groups: DynamoGroups,
    /// Tenants and domain claims.
    pub tenants: DynamoTenants,
    /// Bindings.
    pub bindings: DynamoBindings,
    /// Audit events.
    pub events: DynamoEvents,
    /// Failure diagnostics.
    pub failures: DynamoFailures,
    /// The idempotency ledger.
    pub ledger: DynamoLedger,
    /// Single-flight leases (on the ledger table).
    pub leases: DynamoLeases,
    /// OAuth sign-ins under way (on the ledger table).
    pub pending_consents: DynamoPendingConsents,
    /// The retry queue (producer and consumer side).
    pub retry_queue: SqsRetryQueue,
    /// Welcome notifications.
    pub notifier: SqsNotifier,
    /// Per-tenant OAuth tokens.
    pub token_vault: SecretsManagerTokenVault,
    /// Password sealing.
    pub sealer: SecretsManagerSealer,
    /// The key signing pagination cursors (read on first use: functions that list nothing
    /// never read it).
    pub cursor_key: SecretsManagerCursorKey,
    /// Reconcile's delta links (ledger table).
    pub cursors: DynamoReconcileCursors,
    /// Licence settings (tenants table, R-LIC-1).
    pub license_settings: m365_aws::DynamoLicenseSettings,
    /// Welcome emails through SES v2 (R-NOT-1; only the `notify` function sends: building the
    /// client calls nothing).
    pub mailer: SesMailer,
    /// Reconcile runs requested through the API (ledger table, R-OPS-2).
    pub runs: m365_aws::DynamoReconcileRuns,
    /// Admin alerts (R-OPS-1): the `AdminAlerts` SNS topic.
    pub alerts: m365_aws::SnsAdminAlerts,
    /// Open alert incidents (tenants table, R-OPS-1).
    pub alert_incidents: m365_aws::DynamoAlertIncidents,
    /// Held reconcile plans and round tallies (ledger table, R-REC-3).
    pub held_plans: m365_aws::DynamoHeldPlans,
}

impl App {
    /// Reads [`Config::from_env`], loads the SDK configuration and wires every adapter.
    ///
    /// # Errors
    /// [`AppError::Config`] listing every missing or invalid variable.
    pub async fn from_env() -> Result<Self, AppError> {
        Self::from_env_for(&[]).await
    }

    /// Reads [`Config::from_env_for`] with the function-specific `sections` a function needs,
    /// loads the SDK configuration and wires every adapter.
    ///
    /// # Errors
    /// [`AppError::Config`] listing every missing or invalid variable, the sections' included.
    pub async fn from_env_for(sections: &[Section]) -> Result<Self, AppError> {
        let config = Config::from_env_for(sections)?;
        Ok(Self::new(config).await)
    }

    /// Loads the SDK configuration the standard way (environment, profile, container or
    /// instance credentials; `AWS_ENDPOINT_URL`) and wires every adapter.
    pub async fn new(config: Config) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        Self::with_sdk_config(config, sdk)
    }

    /// Wires every adapter on an already loaded SDK configuration.
    #[must_use]
    pub fn with_sdk_config(config: Config, sdk: SdkConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
        let r = &config.resources;
        Self {
            users: DynamoUsers::new(dynamodb.clone(), &r.users_table),
            groups: DynamoGroups::new(dynamodb.clone(), &r.users_table),
            tenants: DynamoTenants::new(dynamodb.clone(), &r.tenants_table),
            license_settings: m365_aws::DynamoLicenseSettings::new(
                dynamodb.clone(),
                &r.tenants_table,
            ),
            alert_incidents: m365_aws::DynamoAlertIncidents::new(
                dynamodb.clone(),
                &r.tenants_table,
            ),
            alerts: m365_aws::SnsAdminAlerts::new(
                aws_sdk_sns::Client::new(&sdk),
                config.admin_alerts_topic_arn.clone(),
            ),
            bindings: DynamoBindings::new(dynamodb.clone(), &r.bindings_table),
            events: DynamoEvents::new(dynamodb.clone(), &r.events_table),
            failures: DynamoFailures::new(dynamodb.clone(), &r.failures_table),
            ledger: DynamoLedger::new(dynamodb.clone(), &r.ledger_table),
            leases: DynamoLeases::new(dynamodb.clone(), &r.ledger_table),
            cursors: DynamoReconcileCursors::new(dynamodb.clone(), r.ledger_table.clone()),
            runs: m365_aws::DynamoReconcileRuns::new(dynamodb.clone(), &r.ledger_table),
            held_plans: m365_aws::DynamoHeldPlans::new(dynamodb.clone(), &r.ledger_table),
            pending_consents: DynamoPendingConsents::new(dynamodb, &r.ledger_table),
            retry_queue: SqsRetryQueue::new(sqs.clone(), &r.retry_queue_url),
            notifier: SqsNotifier::new(sqs, &r.notifications_queue_url),
            token_vault: SecretsManagerTokenVault::new(
                secrets.clone(),
                &r.tenant_secret_prefix,
                r.secrets_kms_key_id.clone(),
            ),
            sealer: SecretsManagerSealer::new(secrets.clone(), &r.seal_key_secret_id),
            cursor_key: SecretsManagerCursorKey::new(secrets, &r.cursor_key_secret_id),
            mailer: SesMailer::new(aws_sdk_sesv2::Client::new(&sdk)),
            config,
            sdk,
        }
    }

    /// A queue of operation messages at `queue_url` other than the retry queue (reconcile's
    /// queue of passes).
    #[must_use]
    pub fn queue(&self, queue_url: &str) -> SqsRetryQueue {
        SqsRetryQueue::new(aws_sdk_sqs::Client::new(&self.sdk), queue_url)
    }
}
