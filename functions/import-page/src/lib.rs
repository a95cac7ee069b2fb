//! The `import-page` function (DESIGN §3, R-IMP-1, R-IMP-2):
//! - `GET /tenants/{tenantId}/import?cursor=&status=&prefix=&limit=`: one page of the tenant's
//!   M365 users (one Graph page underneath, `$top` = `limit` ≤ 999, `$select`), each with its
//!   status `new` / `imported` / `conflict`, and an opaque, tamper-evident `nextCursor`.
//! - `POST /tenants/{tenantId}/import` `{"m365Ids": [...], "adoptPrivileged": false}`: imports the
//!   selected accounts as directory users bound to them, without writing to M365; `200` with one
//!   result per account (`imported`, or `failed` with a code such as `email_exists` or
//!   `privileged_account` — an account holding a directory role, or the connection's consenting
//!   admin, imports only with `"adoptPrivileged": true`, R-BIND-11).
//!
//! The cursor key is the deployment's cursor key secret (`M365_CURSOR_KEY_SECRET_ID`, template
//! `CursorKeySecret`), shared with every other listing's cursors and read once per cold start. A
//! secret of its own rather than one derived from the password seal key: this function then never
//! holds key material that could open sealed passwords (least privilege, R-SAFE-2), and rotating
//! either key leaves the other alone (a rotation of the cursor key only voids cursors under way).

use aws_sdk_secretsmanager::Client as SecretsClient;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::model::TenantId;
use m365_engine::ports::{Clock, SystemClock};
use m365_engine::usecase::import::{
    CursorKey, Import, ImportOptions, ImportOutcome, ImportQuery, ImportStatus, MAX_IMPORT_PAGE,
};
use m365_lambda::graph::VaultDirectory;
use m365_lambda::provision::{self, StartError};
use m365_lambda::{App, GraphApp, api};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `M365_CURSOR_KEY_SECRET_ID`: name or ARN of the secret whose value signs import cursors (and
/// every other listing's; at least 32 characters).
pub const CURSOR_KEY_SECRET_ID: &str = m365_lambda::config::CURSOR_KEY_SECRET_ID;

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum ImportStartError {
    /// The shared wiring (AWS, Graph).
    #[error(transparent)]
    Start(#[from] StartError),
    /// The cursor key secret could not be read.
    #[error("the import cursor key secret could not be read")]
    KeyUnreadable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The cursor key secret holds no usable key (absent or shorter than 32 characters).
    #[error("the import cursor key secret holds no usable key")]
    KeyInvalid,
}

/// Everything the function needs, built once per cold start.
#[derive(Debug, Clone)]
pub struct Deployed<C = SystemClock> {
    /// The AWS adapters.
    pub app: App,
    /// M365 through Graph (only read here).
    pub directory: VaultDirectory,
    /// Time (cursor expiry).
    pub clock: C,
    /// The cursor signing key.
    pub cursor_key: CursorKey,
}

impl Deployed<SystemClock> {
    /// Reads the configuration, builds every client and reads the cursor key (cold start).
    ///
    /// # Errors
    /// [`ImportStartError`] for a missing variable or an unreadable secret.
    pub async fn from_env() -> Result<Self, ImportStartError> {
        let app = App::from_env().await.map_err(StartError::from)?;
        let graph = GraphApp::load(&app).await.map_err(StartError::from)?;
        let key = app
            .cursor_key
            .key()
            .await
            .map_err(|e| ImportStartError::KeyUnreadable(Box::new(e)))?;
        Ok(Self::new(&app, &graph, SystemClock, key))
    }
}

impl<C: Clock> Deployed<C> {
    /// The wiring of already built parts.
    #[must_use]
    pub fn new(app: &App, graph: &GraphApp, clock: C, cursor_key: CursorKey) -> Self {
        Self {
            app: app.clone(),
            directory: graph.directory.clone(),
            clock,
            cursor_key,
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
}

/// Reads the cursor key from Secrets Manager.
///
/// # Errors
/// [`ImportStartError::KeyUnreadable`] or [`ImportStartError::KeyInvalid`].
pub async fn load_cursor_key(
    client: &SecretsClient,
    secret_id: &str,
) -> Result<CursorKey, ImportStartError> {
    let output = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| ImportStartError::KeyUnreadable(Box::new(e)))?;
    let value = output.secret_string().ok_or(ImportStartError::KeyInvalid)?;
    CursorKey::new(SecretString::from(value.to_owned())).map_err(|_| ImportStartError::KeyInvalid)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportBody {
    m365_ids: Vec<String>,
    /// Import privileged accounts too (R-BIND-11).
    #[serde(default)]
    adopt_privileged: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportAnswer {
    imported: usize,
    failed: usize,
    results: Vec<ImportOutcome>,
}

/// Handles one API Gateway request; every outcome is a response.
///
/// # Errors
/// Never: the `Result` is what `lambda_http::service_fn` expects.
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<C: Clock + Clone>(
    deps: &Deployed<C>,
    request: Request,
) -> Result<Response<Body>, lambda_http::Error> {
    // Graph calls stop before the invocation's deadline (R-OPS-2): a page that cannot be read in
    // time answers 503 `deadline` (try again), never a gateway timeout.
    let deps = &deps.until(deps.app.config.deadlines.of_request(&request));
    let segments = provision::segments(&request);
    let path: Vec<&str> = segments.iter().map(String::as_str).collect();
    let response = match (request.method(), path.as_slice()) {
        (&Method::GET, ["tenants", id, "import"]) => page(deps, &request, id).await,
        (&Method::POST, ["tenants", id, "import"]) => import(deps, &request, id).await,
        _ => provision::no_route("import-page"),
    };
    tracing::info!(
        http.status = response.status().as_u16(),
        "import request handled"
    );
    Ok(response)
}

fn use_case<C: Clock>(deps: &Deployed<C>) -> Import<'_, m365_lambda::provision::Deployed<C>> {
    Import {
        users: &deps.app.users,
        bindings: &deps.app.bindings,
        tenants: &deps.app.tenants,
        directory: &deps.directory,
        clock: &deps.clock,
        cursor_key: &deps.cursor_key,
    }
}

#[allow(
    clippy::result_large_err,
    reason = "the error is the finished 4xx response, built at most once per request"
)]
fn tenant_id(raw: &str) -> Result<TenantId, Response<Body>> {
    TenantId::parse(raw).map_err(|e| api::error(StatusCode::BAD_REQUEST, e.code(), &e.to_string()))
}

async fn page<C: Clock>(deps: &Deployed<C>, request: &Request, raw: &str) -> Response<Body> {
    let tenant = match tenant_id(raw) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let params = request.query_string_parameters();
    let status = match params.first("status").map(ImportStatus::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return api::error(
                StatusCode::BAD_REQUEST,
                "invalid_status",
                "status must be new, imported or conflict",
            );
        }
    };
    let limit = match params.first("limit").map(str::parse::<u32>) {
        None => None,
        Some(Ok(l)) if (1..=MAX_IMPORT_PAGE).contains(&l) => Some(l),
        Some(_) => {
            return api::error(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                &format!("limit must be a whole number from 1 to {MAX_IMPORT_PAGE}"),
            );
        }
    };
    let query = ImportQuery {
        cursor: params.first("cursor").map(str::to_owned),
        status,
        prefix: params.first("prefix").map(str::to_owned),
        limit,
    };
    match use_case(deps).page(&tenant, &query).await {
        Ok(page) => api::json(StatusCode::OK, &page),
        Err(e) => api::engine_error(&e),
    }
}

async fn import<C: Clock>(deps: &Deployed<C>, request: &Request, raw: &str) -> Response<Body> {
    let tenant = match tenant_id(raw) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let body: ImportBody = match provision::json_body(request) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let options = ImportOptions {
        adopt_privileged: body.adopt_privileged,
    };
    match use_case(deps)
        .import_with(&tenant, &body.m365_ids, options)
        .await
    {
        Ok(results) => {
            let imported = results
                .iter()
                .filter(|r| matches!(r, ImportOutcome::Imported { .. }))
                .count();
            api::json(
                StatusCode::OK,
                &ImportAnswer {
                    imported,
                    failed: results.len() - imported,
                    results,
                },
            )
        }
        Err(e) => api::engine_error(&e),
    }
}
