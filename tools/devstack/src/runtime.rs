//! One function = one real process speaking the AWS Lambda Runtime API that devstack serves
//! to it, so the exact `lambda_runtime` / `lambda_http` code of the function runs locally.
//!
//! Each function gets its own Runtime API listener on 127.0.0.1 (the runtime addresses it
//! through `AWS_LAMBDA_RUNTIME_API=host:port`, which has no room for a path prefix).
//! Invocations are serialized per process, as one Lambda execution environment handles one
//! event at a time. An invocation that outlives the function's `Timeout` is failed and the
//! process is killed and started again (a cold start), as Lambda does with a timed-out
//! environment. A process that exits is started again after a short pause.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{Mutex, Notify, mpsc, oneshot, watch};

/// The result of one invocation that reached the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `/response`: the function's return value (JSON text).
    Response(Bytes),
    /// `/error`: the function failed (a handler error or panic).
    Error {
        /// `errorType`.
        error_type: String,
        /// `errorMessage`.
        error_message: String,
    },
}

/// Why an invocation produced no outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The function did not answer within its `Timeout`; its process is restarted.
    #[error("the function timed out after {0:?}")]
    Timeout(Duration),
    /// The function's process exited (or was restarted) during the invocation.
    #[error("the function's process exited during the invocation")]
    ProcessExited,
    /// devstack is shutting down.
    #[error("devstack is shutting down")]
    ShuttingDown,
}

/// Why a function host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The Runtime API listener could not bind.
    #[error("binding the Runtime API listener")]
    Bind(#[source] std::io::Error),
}

struct Invocation {
    id: String,
    taken: Arc<AtomicBool>,
    body: Bytes,
    timeout: Duration,
    reply: oneshot::Sender<Outcome>,
}

struct RuntimeState {
    function_arn: String,
    // One channel per process generation: a `/next` left over from a killed process waits
    // on the old channel, which closes, so it can never swallow a new invocation.
    sender: StdMutex<mpsc::Sender<Invocation>>,
    next: StdMutex<Arc<Mutex<mpsc::Receiver<Invocation>>>>,
    inflight: StdMutex<HashMap<String, oneshot::Sender<Outcome>>>,
    polled: watch::Sender<bool>,
    name: String,
    // The current process: its pid and when it was spawned (for cold-start measurements).
    process: StdMutex<Option<(u32, std::time::Instant)>>,
}

/// What a function's process needs to start.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Function name (log prefix, `AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// The executable.
    pub executable: PathBuf,
    /// Its complete environment (the process inherits nothing else).
    pub environment: BTreeMap<String, String>,
    /// The function's timeout.
    pub timeout: Duration,
    /// The function's ARN (`lambda-runtime-invoked-function-arn`).
    pub function_arn: String,
}

/// A running function: its Runtime API and its supervised process.
#[derive(Debug)]
pub struct FunctionHost {
    name: String,
    timeout: Duration,
    state: Arc<RuntimeState>,
    serial: Mutex<()>,
    restart: Arc<Notify>,
    polled: watch::Receiver<bool>,
}

impl std::fmt::Debug for RuntimeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeState")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Invocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invocation")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl FunctionHost {
    /// Starts the Runtime API and the process; the process is stopped when `shutdown`
    /// changes to `true`.
    ///
    /// # Errors
    /// [`HostError`] when the listener cannot bind.
    pub async fn start(
        spec: ProcessSpec,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, HostError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HostError::Bind)?;
        let address = listener.local_addr().map_err(HostError::Bind)?;
        let (sender, receiver) = mpsc::channel(1);
        let (polled_tx, polled_rx) = watch::channel(false);
        let state = Arc::new(RuntimeState {
            function_arn: spec.function_arn.clone(),
            sender: StdMutex::new(sender),
            next: StdMutex::new(Arc::new(Mutex::new(receiver))),
            inflight: StdMutex::new(HashMap::new()),
            polled: polled_tx,
            name: spec.name.clone(),
            process: StdMutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let mut server_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = server_shutdown.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "runtime API server failed");
            }
        });

        let restart = Arc::new(Notify::new());
        tokio::spawn(supervise(
            spec.clone(),
            address.to_string(),
            state.clone(),
            restart.clone(),
            shutdown,
        ));
        Ok(Arc::new(Self {
            name: spec.name,
            timeout: spec.timeout,
            state,
            serial: Mutex::new(()),
            restart,
            polled: polled_rx,
        }))
    }

    /// The function's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current process's pid and the instant just before it was spawned, once it has
    /// been started.
    #[must_use]
    pub fn process(&self) -> Option<(u32, std::time::Instant)> {
        self.state.process.lock().ok().and_then(|p| *p)
    }

    /// Waits until the process has finished its init and asked for its first event, or until
    /// `limit` passes; returns whether it is ready.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let mut polled = self.polled.clone();
        let ready = async move { polled.wait_for(|p| *p).await.is_ok() };
        tokio::time::timeout(limit, ready).await.unwrap_or(false)
    }

    /// Invokes the function with `event` (JSON text) and waits for its outcome. Invocations
    /// of one function run one at a time.
    ///
    /// # Errors
    /// [`InvokeError`] when the function times out or its process exits.
    pub async fn invoke(&self, event: Bytes) -> Result<Outcome, InvokeError> {
        let _turn = self.serial.lock().await;
        let (reply, outcome) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let invocation = Invocation {
            id: uuid::Uuid::new_v4().to_string(),
            taken: taken.clone(),
            body: event,
            timeout: self.timeout,
            reply,
        };
        // Waiting for the process to ask for the event counts against the timeout too: a
        // process that never comes up cannot hold callers forever.
        let limit = self.timeout + Duration::from_secs(1);
        let sender = self.state.sender.lock().ok().map(|s| s.clone());
        let run = async {
            sender
                .ok_or(InvokeError::ShuttingDown)?
                .send(invocation)
                .await
                .map_err(|_| InvokeError::ShuttingDown)?;
            outcome.await.map_err(|_| InvokeError::ProcessExited)
        };
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result,
            Err(_) => {
                // Only a process that took the event and overran is killed; one still
                // starting keeps starting (the abandoned event is skipped by `/next`).
                if taken.load(Ordering::SeqCst) {
                    tracing::warn!(function = %self.name, timeout = ?self.timeout, "invocation timed out; restarting the function");
                    self.restart.notify_one();
                } else {
                    tracing::warn!(function = %self.name, "the function did not ask for the event in time");
                }
                Err(InvokeError::Timeout(self.timeout))
            }
        }
    }
}

async fn supervise(
    spec: ProcessSpec,
    runtime_api: String,
    state: Arc<RuntimeState>,
    restart: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pause = Duration::from_millis(500);
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if !first {
            let (sender, receiver) = mpsc::channel(1);
            if let (Ok(mut s), Ok(mut r)) = (state.sender.lock(), state.next.lock()) {
                *s = sender;
                *r = Arc::new(Mutex::new(receiver));
            }
        }
        first = false;
        let mut command = tokio::process::Command::new(&spec.executable);
        command
            .env_clear()
            .envs(&spec.environment)
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned_at = std::time::Instant::now();
        let mut child = match command.spawn() {
            Ok(child) => {
                if let (Some(pid), Ok(mut process)) = (child.id(), state.process.lock()) {
                    *process = Some((pid, spawned_at));
                }
                child
            }
            Err(e) => {
                tracing::error!(function = %spec.name, executable = %spec.executable.display(), error = %e, "cannot start the function");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    () = crate::runtime::stopped(&mut shutdown) => return,
                }
            }
        };
        tracing::info!(function = %spec.name, pid = ?child.id(), "function process started");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward(out, spec.name.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward(err, spec.name.clone()));
        }
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(function = %spec.name, status = ?status.ok(), "function process exited");
            }
            () = restart.notified() => {
                let _ = child.kill().await;
            }
            () = crate::runtime::stopped(&mut shutdown) => {
                let _ = child.kill().await;
                fail_inflight(&state);
                return;
            }
        }
        state.polled.send_replace(false);
        fail_inflight(&state);
        // A process that dies right away is restarted with growing pauses, up to 10 s.
        if started.elapsed() > Duration::from_secs(10) {
            pause = Duration::from_millis(500);
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = crate::runtime::stopped(&mut shutdown) => return,
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Resolves once `shutdown` turns `true` or its sender is gone.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn fail_inflight(state: &RuntimeState) {
    // Dropping the reply senders tells the waiting callers the process is gone.
    if let Ok(mut inflight) = state.inflight.lock() {
        inflight.clear();
    }
}

/// Copies a child's output to devstack's stderr, one line at a time, prefixed with the
/// function name.
async fn forward(stream: impl AsyncRead + Unpin, name: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{name}] {line}");
    }
}

async fn next(State(state): State<Arc<RuntimeState>>) -> Response {
    state.polled.send_replace(true);
    let Some(current) = state.next.lock().ok().map(|r| r.clone()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let invocation = {
        let mut receiver = current.lock().await;
        loop {
            match receiver.recv().await {
                // The caller gave up waiting: the event is not handed out late.
                Some(invocation) if invocation.reply.is_closed() => {}
                other => break other,
            }
        }
    };
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    invocation.taken.store(true, Ordering::SeqCst);
    let deadline = chrono::Utc::now()
        + chrono::Duration::from_std(invocation.timeout).unwrap_or(chrono::Duration::seconds(3));
    if let Ok(mut inflight) = state.inflight.lock() {
        inflight.insert(invocation.id.clone(), invocation.reply);
    }
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", invocation.id.clone());
    set(
        "lambda-runtime-deadline-ms",
        deadline.timestamp_millis().to_string(),
    );
    set(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        format!(
            "Root=1-{:08x}-{};Parent={};Sampled=0",
            chrono::Utc::now().timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..24],
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        ),
    );
    set("content-type", "application/json".to_owned());
    tracing::debug!(function = %state.name, request_id = %invocation.id, "event handed to the function");
    (StatusCode::OK, headers, invocation.body).into_response()
}

fn take_reply(state: &RuntimeState, id: &str) -> Option<oneshot::Sender<Outcome>> {
    state.inflight.lock().ok().and_then(|mut m| m.remove(id))
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn unknown_request() -> Response {
    (
        StatusCode::BAD_REQUEST,
        r#"{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}"#,
    )
        .into_response()
}

async fn response(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    match take_reply(&state, &id) {
        Some(reply) => {
            let _ = reply.send(Outcome::Response(body));
            accepted()
        }
        None => unknown_request(),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    error_message: String,
}

async fn error(
    State(state): State<Arc<RuntimeState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    if parsed.error_type.is_empty()
        && let Some(kind) = headers
            .get("lambda-runtime-function-error-type")
            .and_then(|v| v.to_str().ok())
    {
        parsed.error_type = kind.to_owned();
    }
    match take_reply(&state, &id) {
        Some(reply) => {
            tracing::info!(function = %state.name, request_id = %id, error_type = %parsed.error_type, "function returned an error");
            let _ = reply.send(Outcome::Error {
                error_type: parsed.error_type,
                error_message: parsed.error_message,
            });
            accepted()
        }
        None => unknown_request(),
    }
}

async fn init_error(State(state): State<Arc<RuntimeState>>, body: Bytes) -> Response {
    let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
    tracing::error!(function = %state.name, error_type = %parsed.error_type, error_message = %parsed.error_message, "function init failed");
    accepted()
}
