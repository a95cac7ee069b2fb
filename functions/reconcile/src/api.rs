//! The reconcile routes, through `lambda_http` and the shared response and error mapping
//! (`m365_lambda::api`):
//! - `POST /tenants/{tenantId}/reconcile?dryRun=true|false` (R-OPS-2): a pass may outlive API
//!   Gateway's 30 s, so the request only records a run and queues its first pass on the queue of
//!   passes; the answer is `202 {"runId","tenantId","status":"queued","dryRun","requestedAt"}`
//!   with a `Location` header naming the run. `dryRun` defaults to `true` so a bare call never
//!   writes; any other value than `true`/`false` is `400 invalid_query`. An unknown tenant is
//!   `404`, a tenant that is not `active` is `409 tenant_not_active`; nothing is recorded then.
//!   A run requested while another pass holds the tenant waits in the queue and runs after it
//!   (`m365_engine::usecase::reconcile_runs`).
//! - `GET /tenants/{tenantId}/reconcile/runs/{runId}`: the run — `status` (`queued`, `running`,
//!   `done`, `failed` with `error: {code, message}`, `held` when the safeguard stopped it),
//!   `dryRun`, `requestedAt` / `startedAt` / `finishedAt`, `requestedBy` (the caller's actor,
//!   R-AUD-1), `passes`, and `report`: the passes'
//!   reports merged (on a dry run the plan, otherwise what was done: the users plan, what was
//!   applied, the safeguard trip if any, the `stuck` work and what was `requeued`, and `groups`),
//!   lists capped with `truncated: true`. A run unknown, expired or of another tenant is
//!   `404 run_not_found`; a run id that is not a UUID is `400 invalid_run_id`.
//!
//! Held plans (R-REC-3, `m365_engine::usecase::held`): a round the safeguard stopped is held
//! until an admin decides.
//! - `GET /tenants/{tenantId}/reconcile/held`: `200` with the held plan — `id`, `heldAt`,
//!   `threshold` (`10%` or `500`), `counts` (`destructive`, `groupRemovals`, `earlier`,
//!   `roundTotal`, `allowed`, `bound`, `userRepairs`, `groupRepairs`), `round` (`pass`,
//!   `fullSync`, `complete`, `pages`), `users` (each repair: `kind`, `userId`, `m365ObjectId`,
//!   the versions it was planned against, …) and `groups` (each group repair) — or
//!   `404 no_held_plan`.
//! - `POST /tenants/{tenantId}/reconcile/held/approve`: applies that plan once, each repair
//!   re-checked (a binding or user changed since is skipped with its reason), moves the cursor
//!   past the held round, deletes the plan and records `reconcile_plan_approved`; `200` with the
//!   decision (`planId`, `decision`, `applied`, `groupsApplied`, `skipped`, `failed`,
//!   `complete`). `complete: false`: a retryable failure (throttling, an outage, the deadline)
//!   stopped it, the plan is still held and approving again finishes it. The tenant must be
//!   `active` (`409 tenant_not_active`).
//! - `POST /tenants/{tenantId}/reconcile/held/reject`: discards the plan, moves the cursor past
//!   it (its changes are not proposed again until they change again), records
//!   `reconcile_plan_rejected`; `200` with the decision.
//!
//! A decision with no plan held (never, or decided already: a second approve) is
//! `404 no_held_plan`; one while a reconcile pass or another decision holds the tenant is
//! `409 reconcile_in_progress` (the tenant's reconcile lease: two approves at once apply once).
//!
//! An unknown route is `404 route_not_found`.

use chrono::{DateTime, Utc};
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::model::{ReconcileRun, RunError, RunId, RunStatus, TenantId, TenantStatus};
use m365_engine::ports::{Ports, ReconcileRuns, TenantStore};
use m365_engine::usecase::held::Decided;
use m365_engine::usecase::reconcile_runs::RunPasses;
use m365_engine::{Error, error::Entity};
use m365_lambda::api;
use m365_lambda::api::no_route;
use m365_lambda::provision::segments;
use serde::Serialize;

use crate::Wiring;

/// Handles one API Gateway request; every outcome is a response (errors included).
pub async fn handle<P: Ports>(
    deps: &Wiring<P>,
    holder: &str,
    request: ApiGatewayV2httpRequest,
) -> ApiGatewayV2httpResponse {
    let request = Request::from(LambdaRequest::ApiGatewayV2(request));
    let segments = segments(&request);
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (request.method(), segments.as_slice()) {
        (&Method::POST, ["tenants", id, "reconcile"]) => post(deps, holder, &request, id).await,
        (&Method::GET, ["tenants", id, "reconcile", "runs", run]) => get_run(deps, id, run).await,
        (&Method::GET, ["tenants", id, "reconcile", "held"]) => get_held(deps, id).await,
        (
            &Method::POST,
            [
                "tenants",
                id,
                "reconcile",
                "held",
                verb @ ("approve" | "reject"),
            ],
        ) => decide_held(deps, holder, id, verb == &"approve").await,
        _ => no_route("reconcile"),
    };
    tracing::info!(
        http.status = response.status().as_u16(),
        "reconcile request handled"
    );
    payload_v2(response)
}

/// The HTTP API payload 2.0 of `response`.
fn payload_v2(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    out.is_base64_encoded = matches!(body, Body::Binary(_));
    out.body = match body {
        Body::Empty => None,
        body => Some(body),
    };
    out
}

async fn post<P: Ports>(
    deps: &Wiring<P>,
    holder: &str,
    request: &Request,
    raw: &str,
) -> Response<Body> {
    let Ok(tenant_id) = TenantId::parse(raw) else {
        let message = "the tenant id is not valid";
        return api::error(StatusCode::BAD_REQUEST, "invalid_tenant_id", message);
    };
    let dry_run = match request
        .query_string_parameters_ref()
        .and_then(|q| q.first("dryRun"))
    {
        None | Some("true") => true,
        Some("false") => false,
        Some(_) => {
            let message = "dryRun must be true or false";
            return api::error(StatusCode::BAD_REQUEST, "invalid_query", message);
        }
    };
    match deps.ports.tenants().get(&tenant_id).await {
        Ok(Some(t)) if t.status == TenantStatus::Active => {}
        Ok(Some(t)) => {
            let message = format!("the tenant is {}", t.status.as_str());
            return api::error(StatusCode::CONFLICT, "tenant_not_active", &message);
        }
        Ok(None) => return api::engine_error(&Error::not_found(Entity::Tenant, &tenant_id)),
        Err(e) => return api::engine_error(&e),
    }
    let runs = RunPasses::new(
        &deps.ports,
        &deps.passes,
        holder,
        crate::PASS_LEASE,
        &deps.settings.reconcile,
    );
    match runs.request(&tenant_id, dry_run).await {
        Ok(run) => {
            let mut response = api::json(StatusCode::ACCEPTED, &RunView::of(&run));
            let location = format!("/tenants/{}/reconcile/runs/{}", run.tenant_id, run.run_id);
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => api::engine_error(&e),
    }
}

/// `GET /tenants/{tenantId}/reconcile/runs/{runId}`.
async fn get_run<P: Ports>(deps: &Wiring<P>, raw_tenant: &str, raw_run: &str) -> Response<Body> {
    let Ok(tenant_id) = TenantId::parse(raw_tenant) else {
        let message = "the tenant id is not valid";
        return api::error(StatusCode::BAD_REQUEST, "invalid_tenant_id", message);
    };
    let Ok(run_id) = RunId::parse(raw_run) else {
        let message = "the run id is not valid: runs are named by the UUID the request answered";
        return api::error(StatusCode::BAD_REQUEST, "invalid_run_id", message);
    };
    match deps.ports.runs().get(&tenant_id, &run_id).await {
        Ok(Some(run)) => api::json(StatusCode::OK, &RunView::of(&run)),
        Ok(None) => {
            let message = "no reconcile run with this id for this tenant (runs are kept 7 days)";
            api::error(StatusCode::NOT_FOUND, "run_not_found", message)
        }
        Err(e) => api::engine_error(&e),
    }
}

/// The tenant of a held-plan route: `Ok` when it exists (and, when `active` is asked, is
/// `active`), else the error response.
async fn held_tenant<P: Ports>(
    deps: &Wiring<P>,
    raw: &str,
    active: bool,
) -> Result<TenantId, Response<Body>> {
    let Ok(tenant_id) = TenantId::parse(raw) else {
        let message = "the tenant id is not valid";
        return Err(api::error(
            StatusCode::BAD_REQUEST,
            "invalid_tenant_id",
            message,
        ));
    };
    match deps.ports.tenants().get(&tenant_id).await {
        Ok(Some(t)) if !active || t.status == TenantStatus::Active => Ok(tenant_id),
        Ok(Some(t)) => {
            let message = format!("the tenant is {}", t.status.as_str());
            Err(api::error(
                StatusCode::CONFLICT,
                "tenant_not_active",
                &message,
            ))
        }
        Ok(None) => Err(api::engine_error(&Error::not_found(
            Entity::Tenant,
            &tenant_id,
        ))),
        Err(e) => Err(api::engine_error(&e)),
    }
}

fn no_held_plan() -> Response<Body> {
    let message = "no reconcile plan is held for this tenant";
    api::error(StatusCode::NOT_FOUND, "no_held_plan", message)
}

/// `GET /tenants/{tenantId}/reconcile/held`.
async fn get_held<P: Ports>(deps: &Wiring<P>, raw: &str) -> Response<Body> {
    let tenant_id = match held_tenant(deps, raw, false).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    match deps.held().get(&tenant_id).await {
        Ok(Some(plan)) => api::json(StatusCode::OK, &plan.view()),
        Ok(None) => no_held_plan(),
        Err(e) => api::engine_error(&e),
    }
}

/// A run as the API shows it (its store version and internal state left out).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RunView<'a> {
    run_id: &'a RunId,
    tenant_id: &'a TenantId,
    status: RunStatus,
    dry_run: bool,
    requested_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    passes: u32,
    error: Option<&'a RunError>,
    report: Option<&'a serde_json::Value>,
    /// Who asked for it (R-AUD-1).
    requested_by: Option<&'a m365_engine::model::Actor>,
}

impl<'a> RunView<'a> {
    fn of(run: &'a ReconcileRun) -> Self {
        Self {
            run_id: &run.run_id,
            tenant_id: &run.tenant_id,
            status: run.status,
            dry_run: run.dry_run,
            requested_at: run.requested_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            passes: run.passes,
            error: run.error.as_ref(),
            report: run.report.as_ref(),
            requested_by: run.requested_by.as_ref(),
        }
    }
}

/// `POST /tenants/{tenantId}/reconcile/held/approve` and `…/reject`.
async fn decide_held<P: Ports>(
    deps: &Wiring<P>,
    holder: &str,
    raw: &str,
    approve: bool,
) -> Response<Body> {
    // Approving writes to M365: the tenant must be connected. Rejecting writes nothing there.
    let tenant_id = match held_tenant(deps, raw, approve).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let held = deps.held();
    let decided = if approve {
        held.approve(&tenant_id, holder, crate::PASS_LEASE).await
    } else {
        held.reject(&tenant_id, holder, crate::PASS_LEASE).await
    };
    match decided {
        Ok(Decided::Done(decision)) => api::json(StatusCode::OK, &decision),
        Ok(Decided::NoPlan) => no_held_plan(),
        Ok(Decided::Busy) => {
            let message =
                "a reconcile pass or decision of this tenant is running; try again when it is done";
            api::error(StatusCode::CONFLICT, "reconcile_in_progress", message)
        }
        Err(e) => api::engine_error(&e),
    }
}
