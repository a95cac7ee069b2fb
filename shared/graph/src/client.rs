//! The HTTP core: [`GraphClient`] (built once per cold start from configuration) and the one
//! request loop every Graph call goes through — bearer token, `client-request-id`, error
//! parsing, one token refresh on 401, and bounded retries (count AND deadline) for idempotent
//! requests only (STYLE "Errors"; graph-spec §7, §12).
//!
//! The deadline bounds everything a call does, not only its retries (R-OPS-2): getting the token,
//! the rate budget's wait, and each attempt, whose timeout is the time left before the deadline
//! when that is shorter than the client's request timeout. A call with less than
//! [`MIN_ATTEMPT`] left is not sent; one cut off by the deadline fails with the retryable
//! [`GraphError::Deadline`], so the function can still record the state and queue the retry
//! before Lambda stops it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use m365_engine::model::TenantId;
use m365_engine::policy::retry;
use m365_engine::ports::ThreadRandom;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::budget::{WriteBudget, pace, writes_of};
use crate::error::{ApiError, ErrorClass, GraphError};
use crate::identity::IdentityClient;

/// Real Graph v1.0 base URL (graph-spec §0).
pub const GRAPH_BASE: &str = "https://graph.microsoft.com/v1.0";
/// Real identity platform base URL (graph-spec §0).
pub const IDENTITY_BASE: &str = "https://login.microsoftonline.com";

/// The least time left before the deadline for a request to be sent: Graph rarely answers
/// faster, and a write cut off in flight leaves its outcome unknown (graph-spec §7.3), so a
/// request that cannot finish is better not sent.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(200);

/// Supplies access tokens per tenant (our [`TenantId`]). Implementations: [`crate::VaultTokens`]
/// (delegated tokens kept in the engine's `TokenVault`) and [`crate::StaticToken`].
pub trait TokenProvider: Send + Sync {
    /// A current access token for `tenant`.
    ///
    /// # Errors
    /// Engine errors (e.g. `ReauthorizationRequired`, `NotFound` for a tenant without tokens).
    fn access_token(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = m365_engine::Result<SecretString>> + Send;

    /// Graph refused `rejected` (401): obtain a new token. Called at most once per request.
    ///
    /// # Errors
    /// Engine errors (`ReauthorizationRequired` when the refresh token is refused).
    fn refresh_access_token(
        &self,
        tenant: &TenantId,
        rejected: &SecretString,
    ) -> impl Future<Output = m365_engine::Result<SecretString>> + Send;
}

/// In-process retry bounds of one Graph call: at most `max_attempts` tries AND never past the
/// deadline (now + `budget` unless a caller gives an earlier one, e.g. the Lambda deadline). Not
/// the engine's `RetryPolicy`, which schedules the queued retries of whole operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpRetry {
    /// Tries in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff step (doubled each retry, equal jitter: [`HttpRetry::backoff`]).
    pub base_backoff: Duration,
    /// Largest backoff step.
    pub max_backoff: Duration,
    /// Longest time one operation may spend, retries included.
    pub budget: Duration,
    /// How long a 404 on an object we just created is treated as replication delay
    /// (graph-spec §12 "up to ~60 s").
    pub not_yet_visible_window: Duration,
    /// Tries in all for such a 404 (replication takes longer than a throttling blip).
    pub max_not_yet_visible_attempts: u32,
}

impl Default for HttpRetry {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            budget: Duration::from_secs(30),
            not_yet_visible_window: Duration::from_secs(60),
            max_not_yet_visible_attempts: 8,
        }
    }
}

impl HttpRetry {
    /// The wait before retry number `retry` (1-based) when Graph gives no `Retry-After`: the
    /// engine's one backoff formula ([`m365_engine::policy::retry::backoff`]: exponential from
    /// `base_backoff`, capped at `max_backoff`, uniformly in the step's upper half).
    #[must_use]
    pub fn backoff(&self, retry: u32) -> Duration {
        retry::backoff(self.base_backoff, self.max_backoff, retry, &ThreadRandom)
    }

    /// The wait before retry number `retry` (1-based) given Graph's `Retry-After`, if any: the
    /// longer of the two, as everywhere else ([`m365_engine::policy::retry::transient_wait`];
    /// graph-spec §7.1: never sooner than `Retry-After`).
    #[must_use]
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        retry::transient_wait(
            self.base_backoff,
            self.max_backoff,
            retry,
            retry_after,
            &ThreadRandom,
        )
    }
}

/// Why a [`GraphClient`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A base URL is not an absolute http(s) URL.
    #[error("invalid base URL for {which}")]
    BaseUrl {
        /// `graph` or `identity`.
        which: &'static str,
    },
    /// The HTTP client could not be built (TLS backend).
    #[error("the HTTP client could not be built")]
    Http(#[source] reqwest::Error),
}

/// Builder of [`GraphClient`]; defaults are the real Microsoft hosts.
#[derive(Debug, Clone)]
pub struct GraphClientBuilder {
    graph_base: String,
    identity_base: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    retry: HttpRetry,
}

impl Default for GraphClientBuilder {
    fn default() -> Self {
        Self {
            graph_base: GRAPH_BASE.to_owned(),
            identity_base: IDENTITY_BASE.to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            retry: HttpRetry::default(),
        }
    }
}

impl GraphClientBuilder {
    /// Graph base URL including the version segment (e.g. `http://127.0.0.1:8080/v1.0`).
    #[must_use]
    pub fn graph_base(mut self, url: impl Into<String>) -> Self {
        self.graph_base = url.into();
        self
    }

    /// Identity platform base URL (e.g. `http://127.0.0.1:8080`).
    #[must_use]
    pub fn identity_base(mut self, url: impl Into<String>) -> Self {
        self.identity_base = url.into();
        self
    }

    /// TCP connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whole-request timeout (one attempt).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Retry bounds.
    #[must_use]
    pub fn retry(mut self, retry: HttpRetry) -> Self {
        self.retry = retry;
        self
    }

    /// Builds the client (rustls; redirects are not followed: neither Graph nor the token
    /// endpoint redirects, and following one would leak the bearer token or the client secret).
    ///
    /// # Errors
    /// [`BuildError`] for a bad base URL or TLS setup.
    pub fn build(self) -> Result<GraphClient, BuildError> {
        let graph_base =
            normalize(&self.graph_base).ok_or(BuildError::BaseUrl { which: "graph" })?;
        let identity_base =
            normalize(&self.identity_base).ok_or(BuildError::BaseUrl { which: "identity" })?;
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("m365-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(BuildError::Http)?;
        Ok(GraphClient {
            http,
            graph_base,
            identity_base,
            retry: self.retry,
            request_timeout: self.request_timeout,
            budget: None,
        })
    }
}

/// The time left before `deadline` (zero once it passed).
fn time_left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn normalize(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| url.trim_end_matches('/').to_owned())
}

/// The Graph HTTP client: cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    graph_base: String,
    identity_base: String,
    retry: HttpRetry,
    /// Whole-request timeout of one attempt (shortened to the time left before the deadline).
    request_timeout: Duration,
    /// Paces writes per tenant (DESIGN §2 "Graph usage"); `None`: writes go out unpaced.
    budget: Option<Arc<dyn WriteBudget>>,
}

/// A successful Graph response.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `request-id`.
    pub request_id: Option<String>,
    body: Vec<u8>,
}

impl Response {
    /// Decodes the JSON body.
    ///
    /// # Errors
    /// [`GraphError::Decode`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, GraphError> {
        serde_json::from_slice(&self.body).map_err(|source| GraphError::Decode {
            status: self.status,
            request_id: self.request_id.clone(),
            source,
        })
    }
}

/// One Graph request to make. Not `Debug`: the body may hold a password.
pub(crate) struct Call {
    pub method: Method,
    /// Absolute URL.
    pub url: reqwest::Url,
    pub body: Option<serde_json::Value>,
    /// GET, PATCH, DELETE: safe to repeat. POST /users is not (graph-spec §7.3).
    pub idempotent: bool,
    /// Error classes that mean replication delay here (e.g. a 404 on an object created moments
    /// ago) and are retried like transient errors, with their own attempt limit.
    pub replication: &'static [ErrorClass],
}

impl Call {
    /// A GET: no body, safe to repeat.
    pub(crate) fn get(url: reqwest::Url) -> Self {
        Self {
            method: Method::GET,
            url,
            body: None,
            idempotent: true,
            replication: &[],
        }
    }
}

impl GraphClient {
    /// A builder with the real Microsoft hosts as defaults.
    #[must_use]
    pub fn builder() -> GraphClientBuilder {
        GraphClientBuilder::default()
    }

    /// The Graph base URL (with `/v1.0`).
    #[must_use]
    pub fn graph_base(&self) -> &str {
        &self.graph_base
    }

    /// The retry bounds.
    #[must_use]
    pub fn http_retry(&self) -> &HttpRetry {
        &self.retry
    }

    /// This client with every write (each attempt, retries included) paced by `budget`, the
    /// per-tenant rate budget shared by concurrent functions (see [`crate::budget`]).
    #[must_use]
    pub fn with_budget(&self, budget: Arc<dyn WriteBudget>) -> Self {
        Self {
            budget: Some(budget),
            ..self.clone()
        }
    }

    /// Whether writes are paced by a rate budget.
    #[must_use]
    pub fn has_budget(&self) -> bool {
        self.budget.is_some()
    }

    /// An identity-platform client sharing this client's connection pool and base URL.
    #[must_use]
    pub fn identity(
        &self,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> IdentityClient {
        IdentityClient::new(
            self.http.clone(),
            self.identity_base.clone(),
            client_id,
            client_secret,
        )
    }

    /// `{graph_base}{path}` with `query` pairs appended (properly encoded).
    ///
    /// # Errors
    /// [`GraphError::Url`] when the result is not a URL.
    pub(crate) fn url(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Url, GraphError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.graph_base))
            .map_err(|_| GraphError::Url)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Whether `url` points into our Graph base (a paging token must never send our bearer token
    /// elsewhere).
    pub(crate) fn owns(&self, url: &str) -> bool {
        url.strip_prefix(&self.graph_base)
            .is_some_and(|rest| rest.starts_with(['/', '?']))
    }

    /// Sends `call` for `tenant` until it succeeds, fails permanently, or the retry bounds
    /// (attempts, `deadline`) are spent. A 401 refreshes the token once. Nothing runs past
    /// `deadline`: the token, the budget's wait and each attempt are bounded by it, and a call cut
    /// off by it fails with [`GraphError::Deadline`].
    ///
    /// Boxed: the future of a whole call (token, budget, attempts, reqwest and hyper underneath) is
    /// large, and every `Directory` method awaits one; inline, each of them and each use case
    /// awaiting them would carry its full size (see `m365_aws`'s `OnHeap` for the same reason).
    pub(crate) fn execute<'s, P: TokenProvider>(
        &'s self,
        tokens: &'s P,
        tenant: &'s TenantId,
        call: &'s Call,
        deadline: Instant,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Response, GraphError>> + Send + 's>> {
        Box::pin(self.execute_inline(tokens, tenant, call, deadline))
    }

    async fn execute_inline<P: TokenProvider>(
        &self,
        tokens: &P,
        tenant: &TenantId,
        call: &Call,
        deadline: Instant,
    ) -> Result<Response, GraphError> {
        if time_left(deadline) < MIN_ATTEMPT {
            return Err(GraphError::Deadline { sent: false });
        }
        // Cancelling a token refresh midway is safe: Microsoft keeps the old refresh token valid
        // after a rotation (graph-spec §1.4).
        let mut token = tokio::time::timeout_at(deadline, tokens.access_token(tenant))
            .await
            .map_err(|_| GraphError::Deadline { sent: false })?
            .map_err(|e| GraphError::Token(Box::new(e)))?;
        let mut refreshed = false;
        let mut attempt = 0u32;
        let mut last: Option<GraphError> = None;
        let writes = writes_of(&call.method, call.url.path(), call.body.as_ref());
        loop {
            attempt += 1;
            if let Some(budget) = self.budget.as_deref()
                && writes > 0
            {
                pace(budget, tenant, writes, deadline).await?;
            }
            let left = time_left(deadline);
            if left < MIN_ATTEMPT {
                // What stopped the previous attempt says more (e.g. its `Retry-After`).
                return Err(last.unwrap_or(GraphError::Deadline { sent: false }));
            }
            let error = match self.send_once(&token, call, left).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            if let GraphError::Deadline { .. } = error {
                tracing::warn!(
                    http.method = %call.method,
                    "graph request cut off by the deadline; the work goes back to the queue"
                );
                return Err(error);
            }
            let class = error.class();
            if class == Some(ErrorClass::Unauthorized) && !refreshed {
                refreshed = true;
                tracing::info!(
                    graph.request_id = error.request_id(),
                    http.status = 401,
                    "graph refused the access token; refreshing it once"
                );
                token =
                    tokio::time::timeout_at(deadline, tokens.refresh_access_token(tenant, &token))
                        .await
                        .map_err(|_| GraphError::Deadline { sent: false })?
                        .map_err(|e| GraphError::Token(Box::new(e)))?;
                continue;
            }
            let (transient, max_attempts) = if class.is_some_and(|c| call.replication.contains(&c))
            {
                (true, self.retry.max_not_yet_visible_attempts)
            } else {
                (
                    call.idempotent && error.is_transient(),
                    self.retry.max_attempts,
                )
            };
            if !transient || attempt >= max_attempts {
                return Err(error);
            }
            let wait = self
                .retry
                .wait(attempt, error.api().and_then(|a| a.retry_after));
            if Instant::now() + wait > deadline {
                return Err(error);
            }
            tracing::warn!(
                graph.request_id = error.request_id(),
                http.status = error.api().map(|a| a.status),
                retry.after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                retry.attempt = attempt,
                "graph request failed transiently; retrying"
            );
            tokio::time::sleep(wait).await;
            last = Some(error);
        }
    }

    /// One attempt, given at most `left` (the time before the deadline): when that is shorter
    /// than the request timeout and runs out, the attempt fails with [`GraphError::Deadline`].
    async fn send_once(
        &self,
        token: &SecretString,
        call: &Call,
        left: Duration,
    ) -> Result<Response, GraphError> {
        let client_request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let cut_by_deadline = left < self.request_timeout;
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(left.min(self.request_timeout))
            .bearer_auth(token.expose_secret())
            .header("client-request-id", &client_request_id);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let transport = |source: reqwest::Error| {
            if cut_by_deadline && source.is_timeout() {
                return GraphError::Deadline {
                    sent: !source.is_connect(),
                };
            }
            GraphError::Transport {
                timeout: source.is_timeout(),
                connect: source.is_connect(),
                // The URL may hold a UPN (personal data): keep it out of errors.
                source: source.without_url(),
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?.to_vec();
        if (200..300).contains(&status) {
            let request_id = headers
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            tracing::debug!(
                graph.request_id = request_id.as_deref(),
                http.status = status,
                "graph request done"
            );
            return Ok(Response {
                status,
                request_id,
                body,
            });
        }
        let mut api = ApiError::from_parts(status, &headers, &body);
        if api.client_request_id.is_none() {
            api.client_request_id = Some(client_request_id);
        }
        Err(GraphError::from(api))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_process_retries_wait_by_the_engines_one_formula() {
        // R-BIND-6, issue 13 (one backoff formula): step = base · 2^(retry−1) capped, wait in
        // [step/2, step]; a longer Retry-After wins (graph-spec §7.1).
        let policy = HttpRetry::default();
        for (retry, step) in [(1, 200), (2, 400), (3, 800), (7, 10_000), (40, 10_000)] {
            let step = Duration::from_millis(step);
            for _ in 0..50 {
                let wait = policy.backoff(retry);
                assert!(wait >= step / 2 && wait <= step, "{retry}: {wait:?}");
            }
        }
        let hint = Duration::from_secs(3);
        for _ in 0..50 {
            let wait = policy.wait(1, Some(hint));
            assert!(wait >= hint && wait <= hint + hint / 10, "{wait:?}");
            let tiny = policy.wait(3, Some(Duration::from_millis(1)));
            assert!(tiny >= Duration::from_millis(400), "{tiny:?}");
        }
    }
}
