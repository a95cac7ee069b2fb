//! JSON batching (graph-spec §6): up to 20 requests with relative URLs, executed through the
//! same Graph router (so each item is authenticated, throttled and fault-injected on its own,
//! e.g. a per-item 429 with its own `Retry-After`), `dependsOn` ordering with 424 for the
//! dependents of a failed item, and a 200 envelope of per-item responses.

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::{BatchItem, Caller, odata as odata_response};
use crate::AppState;
use crate::error::{GraphError, PendingErrorBody};
use crate::request::RequestIds;

/// The most requests one batch may hold.
pub const MAX_REQUESTS: usize = 20;

#[derive(Debug, Deserialize)]
struct BatchBody {
    requests: Vec<BatchRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    id: String,
    method: String,
    url: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    depends_on: Vec<String>,
}

fn bad_batch(message: &str) -> GraphError {
    // Messages for malformed batches are unconfirmed (§13.8).
    GraphError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// `POST /$batch`.
///
/// # Errors
/// 400 when the envelope is malformed, holds more than 20 requests, repeats an id or depends
/// on an unknown id.
pub async fn batch(
    State(app): State<AppState>,
    Extension(_caller): Extension<Caller>,
    Extension(ids): Extension<RequestIds>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GraphError> {
    let parsed: BatchBody =
        serde_json::from_slice(&body).map_err(|_| bad_batch("Invalid batch payload format."))?;
    if parsed.requests.len() > MAX_REQUESTS {
        return Err(bad_batch(
            "The number of requests in a batch cannot exceed 20.",
        ));
    }
    let mut seen = BTreeSet::new();
    for r in &parsed.requests {
        if !seen.insert(r.id.clone()) {
            return Err(bad_batch(&format!(
                "Batch request ids must be unique; id '{}' is repeated.",
                r.id
            )));
        }
    }
    for r in &parsed.requests {
        if let Some(d) = r.depends_on.iter().find(|d| !seen.contains(*d)) {
            return Err(bad_batch(&format!(
                "Request '{}' depends on unknown request '{d}'.",
                r.id
            )));
        }
    }

    let router = super::routes(&app).with_state(app.clone());
    let mut statuses: BTreeMap<String, u16> = BTreeMap::new();
    let mut responses = Vec::new();
    let mut pending: Vec<&BatchRequest> = parsed.requests.iter().collect();
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|r| r.depends_on.iter().all(|d| statuses.contains_key(d)));
        let Some(index) = ready else {
            // A dependency cycle: the rest cannot run.
            for r in pending.drain(..) {
                responses.push(failed_dependency(&r.id));
            }
            break;
        };
        let item = pending.remove(index);
        let dependency_failed = item
            .depends_on
            .iter()
            .any(|d| statuses.get(d).is_some_and(|s| *s >= 400));
        let response = if dependency_failed {
            failed_dependency(&item.id)
        } else {
            run_item(&router, item, &headers, &ids, &app).await
        };
        let status = response
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(500);
        statuses.insert(item.id.clone(), status);
        responses.push(response);
    }
    Ok(odata_response(
        StatusCode::OK,
        &json!({ "responses": responses }),
    ))
}

fn failed_dependency(id: &str) -> Value {
    // Item body for 424 assumed (§6, §13.8).
    json!({
        "id": id,
        "status": 424,
        "headers": {"Content-Type": "application/json"},
        "body": {"error": {"code": "FailedDependency", "message": "The request failed because it depends on a request that failed."}}
    })
}

async fn run_item(
    router: &axum::Router,
    item: &BatchRequest,
    outer: &HeaderMap,
    ids: &RequestIds,
    app: &AppState,
) -> Value {
    let item_error = |e: GraphError| -> Value {
        let now = app.lock().clock.now();
        json!({"id": item.id, "status": e.status.as_u16(), "headers": {"Content-Type": "application/json"}, "body": e.body(ids, now)})
    };
    if !item.url.starts_with('/')
        || item.url.starts_with("/$batch")
        || item.url.starts_with("/v1.0/")
    {
        // Absolute URLs and nested batches are refused per item (message assumed, §13.8).
        return item_error(bad_batch(
            "Invalid request URL: batch request URLs must be relative, e.g. '/users'.",
        ));
    }
    let Ok(method) = Method::from_bytes(item.method.to_ascii_uppercase().as_bytes()) else {
        return item_error(bad_batch("Invalid HTTP method."));
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("/v1.0{}", item.url));
    for name in [header::AUTHORIZATION, header::HOST] {
        if let Some(v) = outer.get(&name) {
            builder = builder.header(name, v.clone());
        }
    }
    for (k, v) in &item.headers {
        if let (Some(v), Ok(name)) = (v.as_str(), header::HeaderName::from_bytes(k.as_bytes()))
            && let Ok(value) = HeaderValue::from_str(v)
        {
            builder = builder.header(name, value);
        }
    }
    let body = match &item.body {
        None | Some(Value::Null) => Body::empty(),
        Some(v) => Body::from(v.to_string()),
    };
    let Ok(mut request) = builder.body(body) else {
        return item_error(bad_batch("Invalid request URL."));
    };
    request.extensions_mut().insert(BatchItem);
    request.extensions_mut().insert(ids.clone());
    let Ok(response) = router.clone().oneshot(request).await;
    let (parts, body) = response.into_parts();
    let mut headers = Map::new();
    for name in [header::RETRY_AFTER, header::LOCATION, header::CONTENT_TYPE] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
            let display = match name.as_str() {
                "retry-after" => "Retry-After",
                "location" => "Location",
                _ => "Content-Type",
            };
            headers.insert(display.into(), json!(v));
        }
    }
    let body_value =
        if let Some(PendingErrorBody(error)) = parts.extensions.get::<PendingErrorBody>() {
            headers.insert("Content-Type".into(), json!("application/json"));
            let now = app.lock().clock.now();
            error.body(ids, now)
        } else {
            let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
                .await
                .unwrap_or_default();
            if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
            }
        };
    let mut out = json!({"id": item.id, "status": parts.status.as_u16(), "body": body_value});
    if !headers.is_empty() {
        out["headers"] = Value::Object(headers);
    }
    out
}
