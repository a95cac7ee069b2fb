//! The `reconcile` function (DESIGN §4 "reconcile", R-REC-1..3, R-PWD-3, R-PWD-4): one *pass*
//! of a tenant's reconcile is `m365_engine::usecase::reconcile::Reconcile` (users drift over at
//! most `M365_RECONCILE_MAX_PAGES` delta pages; on a round's first pass also the password-expiry
//! sweep, which reads every bound user) followed, unless the
//! users' safeguard stopped it, by `m365_engine::usecase::reconcile_groups::ReconcileGroups`
//! (group membership drift). Passes run under the tenant's lease and are chained through the
//! reconcile queue (`m365_engine::usecase::reconcile_queue`), so no invocation runs long. Each
//! pass that writes also re-queues, on the retry queue, the binds and unbinds the users pass found
//! stuck (in flight for over an hour with no retry on its way, R-REC-5:
//! `m365_engine::usecase::stuck::RequeueStuck`).
//!
//! Three kinds of event reach it:
//! - the EventBridge schedule: queues one pass per `active` tenant and returns
//!   `{"tenants","queued"}` (seconds, whatever the tenants' sizes);
//! - the reconcile queue (SQS, `ReportBatchItemFailures`, through the one batch helper
//!   `m365_lambda::sqs`): runs each pass; a pass whose delta round is unfinished queues the next
//!   one; a failure is reported — a retryable one for redelivery, a permanent one (or a message
//!   that is not a pass) for the DLQ after `maxReceiveCount`, where its alarm tells an admin
//!   (R-OPS-1); a tenant held by another pass is left to it;
//! - `POST /tenants/{tenantId}/reconcile?dryRun=true|false` (API Gateway HTTP API, payload 2.0):
//!   `200` with the report (the users plan, what was applied, the safeguard trip if any, the
//!   `stuck` work found and, unless dry, what was `requeued`, and `groups`: the group plan and
//!   what was applied). `dryRun` defaults to `true` so a bare call
//!   never writes; any other value than `true`/`false` is `400 invalid_query`. An unknown tenant
//!   is `404`, a tenant that is not `active` is `409 tenant_not_active`, a tenant whose pass is
//!   running is `409 reconcile_in_progress`. A run (not a dry run) is one leased pass; when the
//!   round goes on, `continued: true` says the rest was queued. A dry run of a round longer than
//!   one pass plans the pass's pages only (`complete: false`): it saves no cursor to go on from.
//!
//! Configuration (read once per cold start, `m365_lambda::config`): the reconcile section —
//! `M365_RECONCILE_QUEUE_URL` (required: the queue of passes), `M365_RECONCILE_SAFEGUARD_RATIO`
//! (0–1, default 0.10), `M365_RECONCILE_MAX_PAGES` (delta pages per pass, default 50) — and the
//! directory password policy every function shares, whose maximum age
//! (`M365_PASSWORD_MAX_AGE_DAYS`, decimal days; unset or 0: passwords never expire) decides
//! expiry; retry and deadline policies as every function's.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::TimeDelta;
use lambda_runtime::LambdaEvent;
use m365_aws::sqs::decode_message;
use m365_aws::{DynamoLeases, DynamoReconcileCursors, SqsRetryQueue};
use m365_engine::model::{OperationSubject, RetryMessage, TenantId, TenantStatus};
use m365_engine::ports::{Clock, SystemClock, TenantStore, ThreadRandom};
use m365_engine::usecase::group_sync::SyncGroup;
use m365_engine::usecase::reconcile::{Reconcile, ReconcileReport, ReconcileSettings};
use m365_engine::usecase::reconcile_groups::{GroupReconcileReport, ReconcileGroups};
use m365_engine::usecase::reconcile_queue::{Leased, PassEnd, ReconcileQueue, Step};
use m365_engine::usecase::stuck::{RequeueStuck, Requeued};
use m365_engine::usecase::{Effects, RetryPolicy};
use m365_engine::{Error, error::Entity};
use m365_lambda::config::{Config, ConfigError, Section};
use m365_lambda::graph::VaultDirectory;
use m365_lambda::sqs::{self, Verdict};
use m365_lambda::{App, AppError, GraphApp, GraphSetupError};
use serde::Serialize;
use serde_json::{Value, json};

/// The variable naming the queue of reconcile passes.
pub const QUEUE_URL: &str = m365_lambda::config::RECONCILE_QUEUE_URL;

/// How long a pass holds its tenant's lease: the function's timeout (300 s in template.yaml) plus
/// a minute, and far below the queue's visibility timeout (1,800 s), so the redelivered message
/// of a crashed pass finds the lease free again.
pub const PASS_LEASE: TimeDelta = TimeDelta::minutes(6);

/// The function's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// The use case's settings.
    pub reconcile: ReconcileSettings,
}

impl Settings {
    /// The settings of a configuration: its reconcile section's knobs and the directory password
    /// policy (the one source of password expiry, R-PWD-4).
    ///
    /// # Errors
    /// [`ConfigError`] naming `M365_RECONCILE_QUEUE_URL` when the configuration was read without
    /// the reconcile section.
    pub fn of_config(config: &Config) -> Result<Self, ConfigError> {
        let section = config.reconcile()?;
        Ok(Self {
            reconcile: ReconcileSettings {
                safeguard_ratio: section.safeguard_ratio,
                max_pages: section.max_pages,
                password_policy: config.password_policy.clone(),
                ..ReconcileSettings::default()
            },
        })
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
    /// The queue of reconcile passes.
    pub passes: SqsRetryQueue,
    /// Per-tenant pass leases (ledger table).
    pub leases: DynamoLeases,
    /// Time.
    pub clock: C,
    /// Retry jitter of group mirroring deferred to the retry queue.
    pub random: ThreadRandom,
    /// How deferred group mirroring is retried.
    pub retry: RetryPolicy,
    /// Behaviour.
    pub settings: Settings,
}

/// One tenant's pass: users (with the password-expiry sweep) then group membership.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantReport {
    /// Users drift and expiry.
    #[serde(flatten)]
    pub users: ReconcileReport,
    /// Group membership drift; `None` when the users' safeguard stopped the run first.
    pub groups: Option<GroupReconcileReport>,
    /// What became of the users report's `stuck` work (R-REC-5); `None` on a dry run or when
    /// the safeguard stopped the run (nothing is written then).
    pub requeued: Option<Requeued>,
    /// The round goes on: its next pass was queued.
    pub continued: bool,
}

impl TenantReport {
    /// How the pass ended for the queue: stopped by the safeguard, or complete once both delta
    /// rounds (users and groups) are.
    #[must_use]
    pub fn end(&self) -> PassEnd {
        match &self.groups {
            None => PassEnd::Stopped,
            Some(groups) if self.users.complete && groups.complete => PassEnd::Complete,
            Some(_) => PassEnd::Incomplete,
        }
    }
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
    /// The reconcile section of the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Deployed {
    /// Reads the configuration and builds every client once (cold start).
    ///
    /// # Errors
    /// [`StartError`] for a missing or invalid variable or an unreadable OAuth client secret.
    pub async fn from_env() -> Result<Self, StartError> {
        let app = App::from_env_for(&[Section::Reconcile]).await?;
        let graph = GraphApp::load(&app).await?;
        let settings = Settings::of_config(&app.config)?;
        let queue_url = app.config.reconcile()?.queue_url.clone();
        Ok(Self::with_clock(
            &app,
            &graph,
            SystemClock,
            settings,
            &queue_url,
        ))
    }
}

impl<C: Clock> Reconciler<C> {
    /// The wiring of an already built [`App`] and [`GraphApp`] on `clock`, queueing passes on
    /// `queue_url`.
    #[must_use]
    pub fn with_clock(
        app: &App,
        graph: &GraphApp,
        clock: C,
        settings: Settings,
        queue_url: &str,
    ) -> Self {
        Self {
            cursors: app.reconcile_cursors(),
            passes: app.queue(queue_url),
            leases: app.leases.clone(),
            app: app.clone(),
            directory: graph.directory.clone(),
            clock,
            random: ThreadRandom,
            retry: app.config.retry_policy(),
            settings,
        }
    }

    /// This wiring with its Graph calls bounded by `deadline` (unchanged for `None`).
    #[must_use]
    pub fn until(&self, deadline: Option<tokio::time::Instant>) -> Self
    where
        C: Clone,
    {
        let mut bounded = self.clone();
        if let Some(deadline) = deadline {
            bounded.directory = self.directory.with_deadline(deadline);
        }
        bounded
    }

    /// The fan-out and leased passes, as `holder` (unique per invocation).
    #[must_use]
    pub fn queue<'a>(
        &'a self,
        holder: &'a str,
    ) -> ReconcileQueue<'a, m365_lambda::provision::Deployed<C>> {
        ReconcileQueue {
            tenants: &self.app.tenants,
            leases: &self.leases,
            queue: &self.passes,
            clock: &self.clock,
            holder,
            lease: PASS_LEASE,
        }
    }

    /// Pass number `number` of a round, writing, with how it ended (for [`ReconcileQueue`]).
    /// Only the first pass of a round sweeps expired passwords: the sweep reads every bound user
    /// (DynamoDB), once per scheduled tick is enough, and a long round's later passes only
    /// follow the delta.
    ///
    /// # Errors
    /// As [`Self::run`].
    pub async fn pass(
        &self,
        tenant: &TenantId,
        number: u32,
    ) -> Result<(TenantReport, PassEnd), Error> {
        let report = self.run_pass(tenant, false, number <= 1).await?;
        let end = report.end();
        Ok((report, end))
    }

    /// Reconciles one tenant once (one pass, not leased): users, then (unless the safeguard
    /// stopped the run) groups.
    ///
    /// # Errors
    /// As [`Reconcile::run`] and [`ReconcileGroups::run`].
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<TenantReport, Error> {
        self.run_pass(tenant, dry_run, true).await
    }

    async fn run_pass(
        &self,
        tenant: &TenantId,
        dry_run: bool,
        sweep_expiry: bool,
    ) -> Result<TenantReport, Error> {
        let without_sweep;
        let settings = if sweep_expiry {
            &self.settings.reconcile
        } else {
            without_sweep = ReconcileSettings {
                sweep_expiry: false,
                ..self.settings.reconcile.clone()
            };
            &without_sweep
        };
        // Boxed: the use cases' futures nest the Graph and DynamoDB futures deep enough to
        // exceed the compiler's layout depth when inlined into the runtime's.
        let users = Box::pin(
            Reconcile::<m365_lambda::provision::Deployed<C>> {
                bindings: &self.app.bindings,
                events: &self.app.events,
                failures: &self.app.failures,
                users: &self.app.users,
                directory: &self.directory,
                sealer: &self.app.sealer,
                deltas: &self.directory,
                cursors: &self.cursors,
                clock: &self.clock,
                settings,
            }
            .run(tenant, dry_run),
        )
        .await?;
        if users.safeguard.is_some() {
            return Ok(TenantReport {
                users,
                groups: None,
                requeued: None,
                continued: false,
            });
        }
        let requeued = if dry_run {
            None
        } else {
            Some(
                RequeueStuck::<m365_lambda::provision::Deployed<C>> {
                    bindings: &self.app.bindings,
                    queue: &self.app.retry_queue,
                    clock: &self.clock,
                    settings: &settings.stuck,
                }
                .requeue(&users.stuck)
                .await,
            )
        };
        let groups = Box::pin(
            ReconcileGroups::<m365_lambda::provision::Deployed<C>> {
                sync: SyncGroup::<m365_lambda::provision::Deployed<C>> {
                    fx: Effects::<m365_lambda::provision::Deployed<C>> {
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
            requeued,
            continued: false,
        })
    }
}

/// Handles one event: an API Gateway v2 request (`requestContext.http` present), an SQS batch of
/// reconcile passes (`Records` from `aws:sqs`; answers the failed message ids), or a schedule
/// event (fans out one pass per active tenant).
///
/// # Errors
/// Only when the schedule's fan-out fails (listing tenants or queueing): EventBridge retries the
/// invocation, and the passes it had queued already run twice at worst (cheap, see
/// [`m365_engine::usecase::reconcile_queue`]). API requests always get a response; SQS messages
/// fail one by one.
#[tracing::instrument(skip_all, fields(run.id = %event.context.request_id))]
pub async fn handle<C: Clock + Clone>(
    deps: &Reconciler<C>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let (payload, context) = event.into_parts();
    let holder = format!("reconcile/{}", context.request_id);
    // Graph calls stop before the invocation's deadline (R-OPS-2); behind the HTTP API, before
    // API Gateway's 30 s. A pass cut off there fails retryably and is redelivered.
    let api_call = payload.pointer("/requestContext/http").is_some();
    let deadlines = deps.app.config.deadlines;
    let deps = &deps.until(if api_call {
        deadlines.of_api_context(&context)
    } else {
        deadlines.of_context(&context)
    });
    if api_call {
        return Ok(api(deps, &holder, &payload).await);
    }
    if is_sqs(&payload) {
        let batch: SqsEvent = serde_json::from_value(payload)?;
        return Ok(serde_json::to_value(
            sqs_batch(deps, &holder, &batch).await,
        )?);
    }
    let out = deps.queue(&holder).fan_out().await?;
    Ok(json!({ "tenants": out.tenants, "queued": out.queued }))
}

fn is_sqs(payload: &Value) -> bool {
    payload
        .pointer("/Records/0/eventSource")
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// What became of one queued pass.
#[derive(Debug, Clone, PartialEq)]
pub enum PassResult {
    /// Acknowledged: the pass ran (`complete`, `continued`, `stopped`), another pass held the
    /// tenant (`busy`), it was not due (`requeued`) or there was nothing to do (the skip code).
    Acked(&'static str),
    /// Reported: left for redelivery (a retryable failure) or, when it can never succeed (a
    /// permanent failure, a message that is not a pass), for the DLQ after `maxReceiveCount`
    /// receives. Machine code.
    Failed(String),
}

/// Handles an SQS batch of reconcile passes with the one SQS batch helper
/// ([`m365_lambda::sqs`]); answers the ids of the messages to report.
pub async fn sqs_batch<C: Clock>(
    deps: &Reconciler<C>,
    holder: &str,
    event: &SqsEvent,
) -> SqsBatchResponse {
    sqs::handle_batch(event, decode_message, |_, message| async move {
        run_pass_message(deps, holder, &message).await
    })
    .await
    .response
}

/// Handles one queued pass.
pub async fn sqs_message<C: Clock>(
    deps: &Reconciler<C>,
    holder: &str,
    record: &SqsMessage,
) -> PassResult {
    let verdict = match sqs::decode(record, decode_message) {
        Ok(message) => run_pass_message(deps, holder, &message).await,
        Err(verdict) => verdict,
    };
    match verdict {
        Verdict::Ack(name) => PassResult::Acked(name),
        Verdict::Retry(code) | Verdict::DeadLetter(code) => PassResult::Failed(code),
    }
}

/// Runs one decoded pass. A permanent failure (e.g. the tenant's tokens are gone) is logged by
/// the use case and dead-lettered like every consumer's (see [`m365_lambda::sqs`]): the DLQ
/// alarm tells an admin, where an acknowledged message would leave a log line only.
async fn run_pass_message<C: Clock>(
    deps: &Reconciler<C>,
    holder: &str,
    message: &RetryMessage,
) -> Verdict {
    let tenant = match &message.subject {
        OperationSubject::Tenant(t) => t.clone(),
        _ => return Verdict::DeadLetter("unsupported_operation".to_owned()),
    };
    let result = deps
        .queue(holder)
        .step(message, || deps.pass(&tenant, message.attempt))
        .await;
    let verdict = match result {
        Ok(Step::Requeued) => Verdict::Ack("requeued"),
        Ok(Step::Skipped(code)) => Verdict::Ack(code),
        Ok(Step::Rejected(code)) => Verdict::DeadLetter(code.to_owned()),
        Ok(Step::Leased(Leased::Busy)) => Verdict::Ack("busy"),
        Ok(Step::Leased(Leased::Ran { end, .. })) => Verdict::Ack(match end {
            PassEnd::Stopped => "stopped",
            PassEnd::Incomplete => "continued",
            PassEnd::Complete => "complete",
        }),
        Err(e) => Verdict::of_error(&e),
    };
    if verdict.acknowledged() {
        tracing::info!(tenant.id = %tenant, pass = message.attempt, outcome = verdict.code(), "reconcile pass handled");
    } else {
        tracing::warn!(tenant.id = %tenant, pass = message.attempt, error.code = verdict.code(), "reconcile pass reported");
    }
    verdict
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

async fn api<C: Clock>(deps: &Reconciler<C>, holder: &str, request: &Value) -> Value {
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
        ("POST", ["tenants", id, "reconcile"]) => post(deps, holder, request, id).await,
        _ => error(404, "not_found", "no such route on the reconcile function"),
    };
    let status = response
        .get("statusCode")
        .and_then(serde_json::Value::as_u64);
    tracing::info!(http.status = status, "reconcile request handled");
    response
}

async fn post<C: Clock>(deps: &Reconciler<C>, holder: &str, request: &Value, raw: &str) -> Value {
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
    let report = if dry_run {
        // Reads only: no lease needed, and a running pass does not block a look at the plan.
        deps.run(&tenant_id, true).await
    } else {
        match deps
            .queue(holder)
            .leased(&tenant_id, 1, || deps.pass(&tenant_id, 1))
            .await
        {
            Ok(Leased::Ran {
                mut report,
                continued,
                ..
            }) => {
                report.continued = continued;
                Ok(report)
            }
            Ok(Leased::Busy) => {
                return error(
                    409,
                    "reconcile_in_progress",
                    "a reconcile pass of this tenant is running; try again when it is done",
                );
            }
            Err(e) => Err(e),
        }
    };
    match report {
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
    use m365_lambda::config::{
        PASSWORD_MAX_AGE_DAYS, RECONCILE_MAX_PAGES, RECONCILE_QUEUE_URL, RECONCILE_SAFEGUARD_RATIO,
        REQUIRED,
    };

    /// A complete environment of the reconcile function, plus `extra`.
    fn config(extra: &[(&str, &str)]) -> Config {
        let value = |name: &str| -> Option<String> {
            if let Some((_, v)) = extra.iter().find(|(n, _)| *n == name) {
                return Some((*v).to_owned());
            }
            REQUIRED.contains(&name).then(|| match name {
                n if n.ends_with("_TABLE") => "m365-sync-test".to_owned(),
                n if n.ends_with("_URL") => "https://sqs.eu-west-1.amazonaws.com/1/q".to_owned(),
                n if n.ends_with("_PREFIX") => "m365-sync/test/tenant/".to_owned(),
                _ => "m365-sync/test/secret".to_owned(),
            })
        };
        Config::read(value, &[Section::Reconcile]).unwrap()
    }

    #[test]
    fn settings_default_to_a_ten_percent_safeguard_and_no_password_expiry() {
        // R-REC-3, R-PWD-4
        let s = Settings::of_config(&config(&[(
            RECONCILE_QUEUE_URL,
            "https://sqs.eu-west-1.amazonaws.com/1/passes",
        )]))
        .unwrap();
        assert!((s.reconcile.safeguard_ratio - 0.10).abs() < f64::EPSILON);
        assert_eq!(s.reconcile.max_pages, 50);
        assert_eq!(s.reconcile.password_policy.max_age(), None);
        assert!(s.reconcile.sweep_expiry);
    }

    #[test]
    fn settings_take_the_reconcile_knobs_and_the_one_directory_password_policy() {
        // R-REC-3, R-PWD-4: reconcile expires passwords by the policy every function reads.
        let config = config(&[
            (
                RECONCILE_QUEUE_URL,
                "https://sqs.eu-west-1.amazonaws.com/1/passes",
            ),
            (PASSWORD_MAX_AGE_DAYS, "90"),
            (RECONCILE_SAFEGUARD_RATIO, "0.25"),
            (RECONCILE_MAX_PAGES, "7"),
        ]);
        let s = Settings::of_config(&config).unwrap();
        assert_eq!(s.reconcile.password_policy, config.password_policy);
        assert_eq!(
            s.reconcile.password_policy.max_age(),
            Some(TimeDelta::days(90))
        );
        assert!((s.reconcile.safeguard_ratio - 0.25).abs() < f64::EPSILON);
        assert_eq!(s.reconcile.max_pages, 7);
    }
}
