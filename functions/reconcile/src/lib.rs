//! The `reconcile` function (DESIGN §4 "reconcile", R-REC-1..3, R-PWD-3, R-PWD-4): runs
//! `m365_engine::usecase::reconcile::Reconcile` for one tenant on demand, or for every active
//! tenant on the EventBridge schedule, then (unless the users' safeguard stopped the run)
//! `m365_engine::usecase::reconcile_groups::ReconcileGroups` for group membership drift.
//!
//! - `POST /tenants/{tenantId}/reconcile?dryRun=true|false` (API Gateway HTTP API, payload 2.0):
//!   `200` with the report (the users plan, what was applied, the safeguard trip if any, and
//!   `groups`: the group plan and what was applied). `dryRun`
//!   defaults to `true` so a bare call never writes; any other value than `true`/`false` is
//!   `400 invalid_query`. An unknown tenant is `404`, a tenant that is not `active` is `409`.
//! - Any other event (the schedule's): every `active` tenant in turn, each run resumed while its
//!   delta round is incomplete, starting no new run when less than [`Settings::reserve`] of the
//!   invocation is left. A tenant not reached is reconciled on the next tick (the cursor keeps its
//!   place), so no invocation runs long whatever the tenant count or size.
//!
//! Configuration (read once per cold start): `M365_RECONCILE_SAFEGUARD_RATIO` (0–1, default 0.10),
//! `M365_RECONCILE_MAX_PAGES` (delta pages per run, default 50), `M365_PASSWORD_MAX_AGE_DAYS`
//! (the directory password policy's maximum age in days, decimals allowed; unset or 0: passwords
//! never expire).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::TimeDelta;
use lambda_runtime::LambdaEvent;
use m365_aws::DynamoReconcileCursors;
use m365_engine::model::{PageRequest, TenantId, TenantStatus};
use m365_engine::ports::{Clock, SystemClock, TenantStore, ThreadRandom};
use m365_engine::usecase::group_sync::SyncGroup;
use m365_engine::usecase::reconcile::{Reconcile, ReconcileReport, ReconcileSettings};
use m365_engine::usecase::reconcile_groups::{GroupReconcileReport, ReconcileGroups};
use m365_engine::usecase::{Effects, RetryPolicy};
use m365_engine::{Error, error::Entity};
use m365_lambda::graph::VaultDirectory;
use m365_lambda::{App, AppError, GraphApp, GraphConfig, GraphSetupError};
use serde::Serialize;
use serde_json::{Value, json};

/// Runs resumed for one tenant within one invocation at most (a bound on top of the deadline).
const MAX_RUNS_PER_TENANT: u32 = 20;

/// The time budget of an invocation whose context carries no deadline.
const UNKNOWN_DEADLINE_BUDGET: Duration = Duration::from_secs(300);

/// The function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The use case's settings.
    pub reconcile: ReconcileSettings,
    /// Time left in the invocation below which no new run starts.
    pub reserve: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reconcile: ReconcileSettings::default(),
            reserve: Duration::from_secs(60),
        }
    }
}

/// A configuration variable with an invalid value.
#[derive(Debug, thiserror::Error)]
#[error("{name} has an invalid value")]
pub struct SettingsError {
    /// The variable.
    pub name: &'static str,
}

impl Settings {
    /// The settings from `lookup` (the environment in production).
    ///
    /// # Errors
    /// [`SettingsError`] naming a variable that is set but invalid.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut settings = Self::default();
        if let Some(raw) = lookup("M365_RECONCILE_SAFEGUARD_RATIO") {
            let name = "M365_RECONCILE_SAFEGUARD_RATIO";
            let ratio: f64 = raw.trim().parse().map_err(|_| SettingsError { name })?;
            if !(0.0..=1.0).contains(&ratio) {
                return Err(SettingsError { name });
            }
            settings.reconcile.safeguard_ratio = ratio;
        }
        if let Some(raw) = lookup("M365_RECONCILE_MAX_PAGES") {
            let name = "M365_RECONCILE_MAX_PAGES";
            let pages: u32 = raw.trim().parse().map_err(|_| SettingsError { name })?;
            settings.reconcile.max_pages = pages.max(1);
        }
        if let Some(raw) = lookup("M365_PASSWORD_MAX_AGE_DAYS") {
            let name = "M365_PASSWORD_MAX_AGE_DAYS";
            // Decimal days are accepted (e.g. `0.5` = 12 hours), so a rehearsal can expire a
            // password within seconds; a century is the upper bound.
            let days: f64 = raw.trim().parse().map_err(|_| SettingsError { name })?;
            if !days.is_finite() || !(0.0..=36_500.0).contains(&days) {
                return Err(SettingsError { name });
            }
            let millis = (days * 86_400_000.0).round() as i64;
            settings.reconcile.password_max_age =
                (millis > 0).then(|| TimeDelta::milliseconds(millis));
        }
        Ok(settings)
    }
}

/// The wiring, built once per cold start.
#[derive(Debug, Clone)]
pub struct Reconciler<C = SystemClock> {
    /// The AWS adapters.
    pub app: App,
    /// M365 through Graph (writes and the users delta).
    pub directory: VaultDirectory,
    /// Per-tenant delta links (ledger table).
    pub cursors: DynamoReconcileCursors,
    /// Time.
    pub clock: C,
    /// Retry jitter of group mirroring deferred to the retry queue.
    pub random: ThreadRandom,
    /// How deferred group mirroring is retried.
    pub retry: RetryPolicy,
    /// Behaviour.
    pub settings: Settings,
}

/// One tenant's run: users (with the password-expiry sweep) then group membership.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantReport {
    /// Users drift and expiry.
    #[serde(flatten)]
    pub users: ReconcileReport,
    /// Group membership drift; `None` when the users' safeguard stopped the run first.
    pub groups: Option<GroupReconcileReport>,
}

/// The deployed wiring.
pub type Deployed = Reconciler<SystemClock>;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The AWS side.
    #[error(transparent)]
    App(#[from] AppError),
    /// The Graph side.
    #[error(transparent)]
    Graph(#[from] GraphSetupError),
    /// The reconcile settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl Deployed {
    /// Reads the configuration and builds every client once (cold start).
    ///
    /// # Errors
    /// [`StartError`] for a missing or invalid variable or an unreadable OAuth client secret.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env().await?;
        let graph = GraphApp::load(&app, &GraphConfig::from_env()).await?;
        let settings = Settings::from_lookup(|name| std::env::var(name).ok())?;
        Ok(Self::with_clock(&app, &graph, SystemClock, settings))
    }
}

impl<C: Clock> Reconciler<C> {
    /// The wiring of an already built [`App`] and [`GraphApp`] on `clock`.
    #[must_use]
    pub fn with_clock(app: &App, graph: &GraphApp, clock: C, settings: Settings) -> Self {
        Self {
            cursors: DynamoReconcileCursors::new(
                aws_sdk_dynamodb::Client::new(&app.sdk),
                app.config.resources.ledger_table.clone(),
            ),
            app: app.clone(),
            directory: graph.directory.clone(),
            clock,
            random: ThreadRandom,
            retry: RetryPolicy::default(),
            settings,
        }
    }

    /// Reconciles one tenant once: users, then (unless the safeguard stopped the run) groups.
    ///
    /// # Errors
    /// As [`Reconcile::run`] and [`ReconcileGroups::run`].
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<TenantReport, Error> {
        // Boxed: the use cases' futures nest the Graph and DynamoDB futures deep enough to
        // exceed the compiler's layout depth when inlined into the runtime's.
        let users = Box::pin(
            Reconcile {
                bindings: &self.app.bindings,
                events: &self.app.events,
                failures: &self.app.failures,
                users: &self.app.users,
                directory: &self.directory,
                sealer: &self.app.sealer,
                deltas: &self.directory,
                cursors: &self.cursors,
                clock: &self.clock,
                settings: &self.settings.reconcile,
            }
            .run(tenant, dry_run),
        )
        .await?;
        if users.safeguard.is_some() {
            return Ok(TenantReport {
                users,
                groups: None,
            });
        }
        let groups = Box::pin(
            ReconcileGroups {
                sync: SyncGroup {
                    fx: Effects {
                        bindings: &self.app.bindings,
                        events: &self.app.events,
                        failures: &self.app.failures,
                        ledger: &self.app.ledger,
                        queue: &self.app.retry_queue,
                        clock: &self.clock,
                        random: &self.random,
                        policy: &self.retry,
                    },
                    groups: &self.app.groups,
                    tenants: &self.app.tenants,
                    directory: &self.directory,
                },
                deltas: &self.directory,
                cursors: &self.cursors,
                max_pages: self.settings.reconcile.max_pages,
            }
            .run(tenant, dry_run),
        )
        .await?;
        Ok(TenantReport {
            users,
            groups: Some(groups),
        })
    }
}

/// What a scheduled invocation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Active tenants seen.
    pub tenants: usize,
    /// Runs done (a long round takes several).
    pub runs: usize,
    /// Repairs applied.
    pub applied: usize,
    /// Repairs failed.
    pub failed: usize,
    /// Tenants whose run the safeguard stopped.
    pub safeguard_tripped: usize,
    /// Tenants whose run failed (reconciled again next time).
    pub errors: usize,
    /// Tenants left for the next tick (the invocation's time ran short).
    pub deferred: usize,
}

/// Handles one event: an API Gateway v2 request (`requestContext.http` present) or a schedule event.
///
/// # Errors
/// Only when listing tenants fails on a scheduled run (the schedule retries); API requests always
/// get a response.
#[tracing::instrument(skip_all)]
pub async fn handle<C: Clock>(
    deps: &Reconciler<C>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let (payload, context) = event.into_parts();
    if payload.pointer("/requestContext/http").is_some() {
        return Ok(api(deps, &payload).await);
    }
    // A context without a deadline (a local invocation) gets the default Lambda budget.
    let deadline = if context.deadline == 0 {
        SystemTime::now() + UNKNOWN_DEADLINE_BUDGET
    } else {
        UNIX_EPOCH + Duration::from_millis(context.deadline)
    };
    let summary = scheduled(deps, deadline).await?;
    tracing::info!(
        tenants = summary.tenants,
        runs = summary.runs,
        applied = summary.applied,
        deferred = summary.deferred,
        "scheduled reconcile finished"
    );
    Ok(serde_json::to_value(summary)?)
}

async fn scheduled<C: Clock>(deps: &Reconciler<C>, deadline: SystemTime) -> Result<Summary, Error> {
    let time_left = || {
        deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    let mut summary = Summary::default();
    let mut request = PageRequest::first(100);
    loop {
        let page = deps.app.tenants.list(&request).await?;
        for tenant in page
            .items
            .iter()
            .filter(|t| t.status == TenantStatus::Active)
        {
            summary.tenants += 1;
            if time_left() < deps.settings.reserve {
                summary.deferred += 1;
                continue;
            }
            for _ in 0..MAX_RUNS_PER_TENANT {
                match deps.run(&tenant.id, false).await {
                    Ok(TenantReport {
                        users: report,
                        groups,
                    }) => {
                        summary.runs += 1;
                        summary.applied += report.applied;
                        summary.failed += report.failed;
                        if let Some(groups) = groups {
                            summary.applied += groups.applied;
                            summary.failed += groups.failed;
                        }
                        if report.safeguard.is_some() {
                            summary.safeguard_tripped += 1;
                        }
                        if report.complete || report.safeguard.is_some() {
                            break;
                        }
                        if time_left() < deps.settings.reserve {
                            summary.deferred += 1;
                            break;
                        }
                    }
                    Err(_) => {
                        // Logged by the use case; the cursor did not move.
                        summary.errors += 1;
                        break;
                    }
                }
            }
        }
        match page.next {
            Some(next) => request = PageRequest::after(next, 100),
            None => return Ok(summary),
        }
    }
}

fn response(status: u16, body: &Value) -> Value {
    json!({
        "statusCode": status,
        "headers": { "content-type": "application/json" },
        "body": body.to_string(),
        "isBase64Encoded": false,
    })
}

fn error(status: u16, code: &str, message: &str) -> Value {
    response(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

async fn api<C: Clock>(deps: &Reconciler<C>, request: &Value) -> Value {
    let method = request
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = request
        .get("rawPath")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let response = match (method, segments.as_slice()) {
        ("POST", ["tenants", id, "reconcile"]) => post(deps, request, id).await,
        _ => error(404, "not_found", "no such route on the reconcile function"),
    };
    let status = response
        .get("statusCode")
        .and_then(serde_json::Value::as_u64);
    tracing::info!(http.status = status, "reconcile request handled");
    response
}

async fn post<C: Clock>(deps: &Reconciler<C>, request: &Value, raw: &str) -> Value {
    let Ok(tenant_id) = TenantId::parse(raw) else {
        return error(400, "invalid_tenant_id", "the tenant id is not valid");
    };
    let dry_run = match request
        .pointer("/queryStringParameters/dryRun")
        .and_then(Value::as_str)
    {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            return error(400, "invalid_query", "dryRun must be true or false");
        }
    };
    let tenant = match deps.app.tenants.get(&tenant_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return engine_error(&Error::not_found(Entity::Tenant, &tenant_id)),
        Err(e) => return engine_error(&e),
    };
    if tenant.status != TenantStatus::Active {
        return error(
            409,
            "tenant_not_active",
            &format!("the tenant is {}", tenant.status.as_str()),
        );
    }
    match deps.run(&tenant_id, dry_run).await {
        Ok(report) => match serde_json::to_value(&report) {
            Ok(body) => response(200, &body),
            Err(_) => error(500, "internal", "the report could not be encoded"),
        },
        Err(e) => engine_error(&e),
    }
}

fn engine_error(e: &Error) -> Value {
    let status = m365_lambda::api::status_of(e).as_u16();
    error(status, e.code(), &e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_a_ten_percent_safeguard_and_no_password_expiry() {
        // R-REC-3, R-PWD-4
        let s = Settings::from_lookup(|_| None).unwrap();
        assert!((s.reconcile.safeguard_ratio - 0.10).abs() < f64::EPSILON);
        assert_eq!(s.reconcile.password_max_age, None);
    }

    #[test]
    fn settings_are_read_and_invalid_values_are_named() {
        // R-PWD-4
        let s = Settings::from_lookup(|name| match name {
            "M365_PASSWORD_MAX_AGE_DAYS" => Some("90".to_owned()),
            "M365_RECONCILE_SAFEGUARD_RATIO" => Some("0.25".to_owned()),
            "M365_RECONCILE_MAX_PAGES" => Some("7".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(s.reconcile.password_max_age, Some(TimeDelta::days(90)));
        assert_eq!(s.reconcile.max_pages, 7);
        let bad = Settings::from_lookup(|name| {
            (name == "M365_RECONCILE_SAFEGUARD_RATIO").then(|| "1.5".to_owned())
        });
        assert_eq!(
            bad.map(|_| ()).map_err(|e| e.name),
            Err("M365_RECONCILE_SAFEGUARD_RATIO")
        );
    }

    #[test]
    fn the_password_maximum_age_takes_decimal_days_and_refuses_the_unreasonable() {
        // R-PWD-4
        let age = |raw: &str| {
            let raw = raw.to_owned();
            Settings::from_lookup(move |name| {
                (name == "M365_PASSWORD_MAX_AGE_DAYS").then(|| raw.clone())
            })
            .map(|s| s.reconcile.password_max_age)
            .map_err(|e| e.name)
        };
        assert_eq!(age("0.5"), Ok(Some(TimeDelta::hours(12))));
        assert_eq!(age("0.0004"), Ok(Some(TimeDelta::milliseconds(34_560))));
        assert_eq!(age("0"), Ok(None));
        for bad in ["-1", "abc", "inf", "NaN", "36501"] {
            assert_eq!(age(bad), Err("M365_PASSWORD_MAX_AGE_DAYS"), "{bad}");
        }
    }
}
