//! JSON batching (graph-spec §6): requests sent in chunks of at most 20 with relative URLs, and
//! one result per item (by id), classified like any other Graph error — including a per-item 429
//! with its own `Retry-After`. Items are not retried here (graph-spec §6: "SDK retry handlers do
//! not retry items inside batches"): the caller re-submits what failed transiently.
//!
//! The envelope itself is retried in-process only when every item is idempotent; a batch holding
//! a POST is never repeated blindly.

use std::collections::HashMap;

use m365_engine::model::TenantId;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::client::{Call, GraphClient, TokenProvider};
use crate::error::{ApiError, GraphError};

/// Most requests one `$batch` may hold (graph-spec §6).
pub const MAX_BATCH: usize = 20;

/// One request of a batch. Not `Debug`: the body may hold a password.
pub struct BatchRequest {
    /// Unique id within the whole submission (results are matched by it).
    pub id: String,
    /// HTTP method.
    pub method: Method,
    /// URL relative to the version root, e.g. `/users/{id}` (graph-spec §6: never absolute).
    pub url: String,
    /// JSON body (sent with `Content-Type: application/json`).
    pub body: Option<Value>,
}

impl std::fmt::Debug for BatchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchRequest")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("has_body", &self.body.is_some())
            .finish_non_exhaustive()
    }
}

impl BatchRequest {
    /// A request without body.
    #[must_use]
    pub fn new(id: impl Into<String>, method: Method, url: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            method,
            url: url.into(),
            body: None,
        }
    }

    /// Adds a JSON body.
    #[must_use]
    pub fn with_body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn idempotent(&self) -> bool {
        self.method != Method::POST
    }

    fn to_json(&self) -> Value {
        let mut item = Map::new();
        item.insert("id".into(), json!(self.id));
        item.insert("method".into(), json!(self.method.as_str()));
        item.insert("url".into(), json!(self.url));
        if let Some(body) = &self.body {
            item.insert(
                "headers".into(),
                json!({"Content-Type": "application/json"}),
            );
            item.insert("body".into(), body.clone());
        }
        Value::Object(item)
    }
}

/// The successful result of one item.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchItem {
    /// HTTP status (2xx).
    pub status: u16,
    /// JSON body (`Null` for 204).
    pub body: Value,
}

/// Per-item outcomes, by request id. An item missing from Graph's answer is reported as a 5xx
/// with no body (outcome unknown).
pub type BatchResults = HashMap<String, Result<BatchItem, GraphError>>;

#[derive(Debug, Deserialize)]
struct Envelope {
    responses: Vec<ItemResponse>,
}

#[derive(Debug, Deserialize)]
struct ItemResponse {
    id: String,
    status: u16,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    body: Value,
}

fn item_result(item: ItemResponse) -> Result<BatchItem, GraphError> {
    if (200..300).contains(&item.status) {
        return Ok(BatchItem {
            status: item.status,
            body: item.body,
        });
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &item.headers {
        if let (Ok(name), Some(Ok(value))) = (
            HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.insert(name, value);
        }
    }
    let body = if item.body.is_null() {
        Vec::new()
    } else {
        item.body.to_string().into_bytes()
    };
    Err(GraphError::from(ApiError::from_parts(
        item.status,
        &headers,
        &body,
    )))
}

fn missing() -> GraphError {
    GraphError::from(ApiError::from_parts(502, &HeaderMap::new(), &[]))
}

impl GraphClient {
    /// Sends `requests` as `$batch` envelopes of at most 20 and returns one result per request
    /// id. A failed envelope fails all of its items with that error.
    ///
    /// # Errors
    /// None at the top level: every failure is reported per item.
    pub async fn batch<P: TokenProvider>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        requests: &[BatchRequest],
        deadline: Instant,
    ) -> BatchResults {
        let mut results = BatchResults::new();
        for chunk in requests.chunks(MAX_BATCH) {
            let outcome = self.batch_chunk(tokens, tenant, chunk, deadline).await;
            match outcome {
                Ok(mut answered) => {
                    for request in chunk {
                        let result = answered
                            .remove(&request.id)
                            .unwrap_or_else(|| Err(missing()));
                        results.insert(request.id.clone(), result);
                    }
                }
                Err(error) => {
                    let error = std::sync::Arc::new(error);
                    for request in chunk {
                        results.insert(request.id.clone(), Err(GraphError::Batch(error.clone())));
                    }
                }
            }
        }
        results
    }

    async fn batch_chunk<P: TokenProvider>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        chunk: &[BatchRequest],
        deadline: Instant,
    ) -> Result<BatchResults, GraphError> {
        let body = json!({"requests": chunk.iter().map(BatchRequest::to_json).collect::<Vec<_>>()});
        let call = Call {
            method: Method::POST,
            url: self.url("/$batch", &[])?,
            body: Some(body),
            idempotent: chunk.iter().all(BatchRequest::idempotent),
            replication: &[],
        };
        // A parseable batch answers 200 with per-item statuses (graph-spec §6). throttling.md also
        // speaks of a top-level 424; that pairing is unconfirmed (§13.8): any top-level error fails
        // every item of the chunk with it (`GraphError::Batch`).
        let response = self.execute(tokens, tenant, &call, deadline).await;
        drop(call);
        let envelope: Envelope = response?.json()?;
        Ok(envelope
            .responses
            .into_iter()
            .map(|item| (item.id.clone(), item_result(item)))
            .collect())
    }
}
