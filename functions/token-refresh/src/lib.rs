//! The `token-refresh` function (DESIGN §4, R-CONN-4): on each EventBridge schedule event it
//! refreshes every active tenant whose access token expires within 15 minutes, single-flight per
//! tenant (a lease in DynamoDB, so overlapping runs make one token call), saving the rotated tokens
//! in Secrets Manager before anything uses them — at the tenant's own authority once its Microsoft
//! tenant id is known (R-CONN-7), and only into an existing secret: a tenant deauthorized meanwhile
//! stays without tokens (R-CONN-8, counted as `superseded`). `invalid_grant` marks the tenant
//! `reauthorization_required` with an event; its queued work is parked by the retry worker.
//!
//! [`handle`] ignores the event's content (the schedule is the trigger), runs
//! `m365_engine::usecase::token_refresh::RefreshTokens` and answers a [`Summary`].

use lambda_runtime::LambdaEvent;
use m365_aws::{DynamoEvents, DynamoLeases, DynamoTenants, SecretsManagerTokenVault};
use m365_engine::ports::{
    Clock, EventStore, IdentityPlatform, Leases, SystemClock, TenantStore, TokenVault,
};
use m365_engine::usecase::token_refresh::{
    DEFAULT_LEASE, DEFAULT_REFRESH_WINDOW, RefreshReport, RefreshTokens, TenantRefresh,
};
use m365_graph::GraphIdentity;
use m365_lambda::deadline::DeadlinePolicy;
use m365_lambda::{App, AppError, GraphApp, GraphSetupError};
use serde::Serialize;

/// The ports the refresh needs.
#[derive(Debug, Clone)]
pub struct Refresh<T, V, I, L, E, C> {
    /// Tenants.
    pub tenants: T,
    /// Tenant tokens.
    pub vault: V,
    /// The identity platform.
    pub identity: I,
    /// Single-flight leases.
    pub leases: L,
    /// Audit events.
    pub events: E,
    /// Time.
    pub clock: C,
    /// How the time before the Lambda deadline is spent (the configuration's, R-OPS-2).
    pub deadlines: DeadlinePolicy,
}

/// The deployed wiring.
pub type Deployed = Refresh<
    DynamoTenants,
    SecretsManagerTokenVault,
    GraphIdentity,
    DynamoLeases,
    DynamoEvents,
    SystemClock,
>;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The AWS side.
    #[error(transparent)]
    App(#[from] AppError),
    /// The Graph side.
    #[error(transparent)]
    Graph(#[from] GraphSetupError),
}

impl Deployed {
    /// Reads the configuration and builds every client once (cold start).
    ///
    /// # Errors
    /// [`StartError`] for a missing variable or an unreadable OAuth client secret.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env().await?;
        let graph = GraphApp::load(&app).await?;
        Ok(Self::from_app(&app, &graph))
    }

    /// The wiring of an already built [`App`] and [`GraphApp`].
    #[must_use]
    pub fn from_app(app: &App, graph: &GraphApp) -> Self {
        Self {
            tenants: app.tenants.clone(),
            vault: app.token_vault.clone(),
            identity: graph.identity.clone(),
            leases: app.leases.clone(),
            events: app.events.clone(),
            clock: SystemClock,
            deadlines: app.config.deadlines,
        }
    }

    /// This wiring with its token calls bounded by the deadline of the invocation `context`
    /// (minus the margin; R-OPS-2): a refresh cut off there fails with `deadline` and the next
    /// scheduled run tries that tenant again. `main` calls it per invocation: [`handle`] is
    /// generic over the ports and does not know the deployed ones.
    #[must_use]
    pub fn for_context(&self, context: &lambda_runtime::Context) -> Self {
        let Some(deadline) = self.deadlines.of_context(context) else {
            return self.clone();
        };
        Self {
            identity: self.identity.with_deadline(deadline),
            ..self.clone()
        }
    }
}

/// What one run did, in counts (the per-tenant lines are in the logs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Tenants refreshed.
    pub refreshed: usize,
    /// Tenants found fresh after taking the lease.
    pub not_due: usize,
    /// Tenants another run was refreshing.
    pub busy: usize,
    /// Tenants now in `reauthorization_required`.
    pub reauthorization_required: usize,
    /// Tenants that failed for a retryable reason (the next run tries again).
    pub failed: usize,
    /// Tenants deauthorized or reconnected while their refresh ran: nothing saved (R-CONN-8).
    pub superseded: usize,
}

impl From<&RefreshReport> for Summary {
    fn from(report: &RefreshReport) -> Self {
        let mut s = Self::default();
        for (_, r) in &report.tenants {
            match r {
                TenantRefresh::Refreshed { .. } => s.refreshed += 1,
                TenantRefresh::NotDue => s.not_due += 1,
                TenantRefresh::Busy => s.busy += 1,
                TenantRefresh::ReauthorizationRequired { .. } | TenantRefresh::NoTokens => {
                    s.reauthorization_required += 1;
                }
                TenantRefresh::Failed { .. } => s.failed += 1,
                TenantRefresh::Superseded => s.superseded += 1,
            }
        }
        s
    }
}

/// Runs one refresh pass; the invocation's request id names this run in the leases.
///
/// # Errors
/// Store failures while listing tenants (the next scheduled run tries again).
#[tracing::instrument(skip_all, fields(run.id = %event.context.request_id))]
pub async fn handle<T, V, I, L, E, C>(
    deps: &Refresh<T, V, I, L, E, C>,
    event: LambdaEvent<serde_json::Value>,
) -> Result<Summary, lambda_runtime::Error>
where
    T: TenantStore,
    V: TokenVault,
    I: IdentityPlatform,
    L: Leases,
    E: EventStore,
    C: Clock,
{
    let job = RefreshTokens {
        tenants: &deps.tenants,
        vault: &deps.vault,
        identity: &deps.identity,
        leases: &deps.leases,
        events: &deps.events,
        clock: &deps.clock,
        holder: format!("token-refresh/{}", event.context.request_id),
        window: DEFAULT_REFRESH_WINDOW,
        lease: DEFAULT_LEASE,
    };
    let report = job.run().await?;
    for (tenant, result) in &report.tenants {
        match result {
            TenantRefresh::Refreshed { expires_at } => {
                tracing::info!(tenant.id = %tenant, token.expires_at = %expires_at, outcome = "refreshed", "tenant tokens refreshed");
            }
            TenantRefresh::ReauthorizationRequired { aadsts } => {
                tracing::warn!(tenant.id = %tenant, aadsts = aadsts, outcome = "reauthorization_required", "tenant needs reauthorization");
            }
            TenantRefresh::NoTokens => {
                tracing::warn!(tenant.id = %tenant, outcome = "no_tokens", "active tenant without tokens needs reauthorization");
            }
            TenantRefresh::Failed { code } => {
                tracing::warn!(tenant.id = %tenant, error.code = code, error.retryable = true, outcome = "failed", "token refresh failed; the next run retries");
            }
            TenantRefresh::Superseded => {
                tracing::info!(tenant.id = %tenant, outcome = "superseded", "tenant deauthorized or reconnected during its refresh; nothing saved");
            }
            TenantRefresh::NotDue | TenantRefresh::Busy => {
                tracing::debug!(tenant.id = %tenant, outcome = ?result, "token refresh skipped");
            }
        }
    }
    let summary = Summary::from(&report);
    tracing::info!(
        refreshed = summary.refreshed,
        busy = summary.busy,
        reauthorization_required = summary.reauthorization_required,
        failed = summary.failed,
        "token refresh run finished"
    );
    Ok(summary)
}
