//! The `token-refresh` function (DESIGN §4, R-CONN-4): on each EventBridge schedule event it
//! refreshes every active tenant whose access token expires within 15 minutes, single-flight per
//! tenant (a lease in DynamoDB, so overlapping runs make one token call), saving the rotated tokens
//! in Secrets Manager before anything uses them — at the tenant's own authority once its Microsoft
//! tenant id is known (R-CONN-7), and only into an existing secret: a tenant deauthorized meanwhile
//! stays without tokens (R-CONN-8, counted as `superseded`). `invalid_grant` marks the tenant
//! `reauthorization_required` with an event; its queued work is parked by the retry worker.
//!
//! Admin alerts (R-OPS-1, once per incident): `reauthorization_required`, and a configuration
//! error when the identity platform refuses our OAuth client (`invalid_client`: wrong or expired
//! client secret; `unauthorized_client`). A configuration error is recorded once per incident
//! (`tenant_configuration_error` event) and makes the invocation FAIL ([`handle`] returns an
//! error after logging the run), so Lambda's `Errors` metric and its CloudWatch alarm see it on
//! every run until it is fixed; throttling and outages stay retryable (the run succeeds and the
//! next one tries again).
//!
//! [`handle`] ignores the event's content (the schedule is the trigger), runs
//! `m365_engine::usecase::token_refresh::RefreshTokens` and answers a [`Summary`].

use lambda_runtime::LambdaEvent;
use m365_engine::ports::Ports;
use m365_engine::usecase::token_refresh::{
    DEFAULT_LEASE, DEFAULT_REFRESH_WINDOW, RefreshReport, RefreshTokens, TenantRefresh,
};
use serde::Serialize;

/// The deployed ports (the shared wiring of every function).
pub type Deployed = m365_lambda::provision::Deployed;

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
    /// Tenants whose refresh met a configuration error (our OAuth client refused, R-OPS-1).
    pub configuration_errors: usize,
}

/// The run met configuration errors: the invocation fails so the `Errors` alarm sees it
/// (R-OPS-1). Names counts and codes only, never a secret.
#[derive(Debug, thiserror::Error)]
#[error(
    "{tenants} tenant(s) could not be refreshed: the identity platform refused the OAuth client ({codes}); fix the client secret (see the configuration_error alert)"
)]
pub struct ConfigurationErrors {
    /// How many tenants.
    pub tenants: usize,
    /// The OAuth errors and AADSTS codes met, e.g. `invalid_client AADSTS7000215`.
    pub codes: String,
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
                TenantRefresh::ConfigurationError { .. } => s.configuration_errors += 1,
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
pub async fn handle<P: Ports>(
    ports: &P,
    event: LambdaEvent<serde_json::Value>,
) -> Result<Summary, lambda_runtime::Error> {
    let job = RefreshTokens::new(
        ports,
        format!("token-refresh/{}", event.context.request_id),
        DEFAULT_REFRESH_WINDOW,
        DEFAULT_LEASE,
    );
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
            TenantRefresh::ConfigurationError { error, aadsts } => {
                tracing::error!(tenant.id = %tenant, oauth.error = %error, aadsts = ?aadsts, error.retryable = false, outcome = "configuration_error", "the identity platform refused the OAuth client");
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
        configuration_errors = summary.configuration_errors,
        "token refresh run finished"
    );
    if summary.configuration_errors > 0 {
        let mut codes: Vec<String> = report
            .tenants
            .iter()
            .filter_map(|(_, r)| match r {
                TenantRefresh::ConfigurationError { error, aadsts } => Some(match aadsts {
                    Some(code) => format!("{error} AADSTS{code}"),
                    None => error.clone(),
                }),
                _ => None,
            })
            .collect();
        codes.sort();
        codes.dedup();
        return Err(ConfigurationErrors {
            tenants: summary.configuration_errors,
            codes: codes.join(", "),
        }
        .into());
    }
    Ok(summary)
}
