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
//! `CursorKeySecret`) through the `CursorKeys` port, shared with every other listing's cursors
//! and read once per cold start (the adapter keeps it). Graph calls stop before the invocation's
//! deadline (R-OPS-2; `main.rs` bounds the ports by it): a page that cannot be read in time
//! answers 503 `deadline` (try again), never a gateway timeout. A
//! secret of its own rather than one derived from the password seal key: this function then never
//! holds key material that could open sealed passwords (least privilege, R-SAFE-2), and rotating
//! either key leaves the other alone (a rotation of the cursor key only voids cursors under way).

#![allow(
    clippy::result_large_err,
    reason = "a request step short-circuits with the finished 4xx response (`provision::Answer`), built at most once per request"
)]

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use m365_engine::model::TenantId;
use m365_engine::ports::{CursorKeys, Ports};
use m365_engine::usecase::import::{
    Import, ImportOptions, ImportOutcome, ImportQuery, ImportStatus, MAX_IMPORT_PAGE,
};
use m365_lambda::{api, provision};
use serde::{Deserialize, Serialize};

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

/// Serves `GET` and `POST /tenants/{tenantId}/import` on `ports` (bounded by the invocation's
/// deadline, R-OPS-2); any other route is a `404 route_not_found`.
///
/// # Errors
/// Never (see [`provision::Handled`]).
#[tracing::instrument(skip_all, fields(http.method = %request.method()))]
pub async fn handle<P: Ports>(ports: &P, request: Request) -> provision::Handled {
    let answer = match (request.method(), provision::path(&request).as_slice()) {
        (&Method::GET, ["tenants", id, "import"]) => page(ports, &request, id).await,
        (&Method::POST, ["tenants", id, "import"]) => import(ports, &request, id).await,
        _ => Ok(api::no_route("import-page")),
    };
    provision::handled("import", answer)
}

/// A query parameter's 400 (R-SAFE-1).
fn bad_query(code: &str, message: &str) -> Response<Body> {
    api::error(StatusCode::BAD_REQUEST, code, message)
}

async fn page<P: Ports>(ports: &P, request: &Request, raw: &str) -> provision::Answer {
    let tenant: TenantId = provision::tenant_id(raw)?;
    let params = request.query_string_parameters();
    let status = match params.first("status").map(ImportStatus::parse) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => {
            return Err(bad_query(
                "invalid_status",
                "status must be new, imported or conflict",
            ));
        }
    };
    let limit = match params.first("limit").map(str::parse::<u32>) {
        None => None,
        Some(Ok(l)) if (1..=MAX_IMPORT_PAGE).contains(&l) => Some(l),
        Some(_) => {
            let message = format!("limit must be a whole number from 1 to {MAX_IMPORT_PAGE}");
            return Err(bad_query("invalid_limit", &message));
        }
    };
    let query = ImportQuery {
        cursor: params.first("cursor").map(str::to_owned),
        status,
        prefix: params.first("prefix").map(str::to_owned),
        limit,
    };
    let key = ports
        .cursor_keys()
        .key()
        .await
        .map_err(|e| api::engine_error(&e))?;
    Ok(match Import::new(ports, &key).page(&tenant, &query).await {
        Ok(page) => api::json(StatusCode::OK, &page),
        Err(e) => api::engine_error(&e),
    })
}

async fn import<P: Ports>(ports: &P, request: &Request, raw: &str) -> provision::Answer {
    let tenant = provision::tenant_id(raw)?;
    let body: ImportBody = provision::json_body(request)?;
    let options = ImportOptions {
        adopt_privileged: body.adopt_privileged,
    };
    let key = ports
        .cursor_keys()
        .key()
        .await
        .map_err(|e| api::engine_error(&e))?;
    let import = Import::new(ports, &key);
    Ok(
        match import.import_with(&tenant, &body.m365_ids, options).await {
            Ok(results) => {
                let imported = results
                    .iter()
                    .filter(|r| matches!(r, ImportOutcome::Imported { .. }))
                    .count();
                let failed = results.len() - imported;
                let answer = ImportAnswer {
                    imported,
                    failed,
                    results,
                };
                api::json(StatusCode::OK, &answer)
            }
            Err(e) => api::engine_error(&e),
        },
    )
}
