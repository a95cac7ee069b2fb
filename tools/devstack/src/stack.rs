//! Starting the whole local stack from a template: provisioning on moto, building and
//! running the functions, and serving the HTTP API, the SQS event sources and the schedules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use axum::Router;
use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value as Json, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::provision::{self, ACCOUNT_ID, ProvisionError, ProvisionInput, Provisioned};
use crate::routes::Route;
use crate::runtime::{FunctionHost, HostError, Outcome, ProcessSpec};
use crate::template::{EventSource, FunctionSpec, Template, TemplateError};

/// Written in `--env` and `--secret` values, replaced by the local API's URL.
pub const API_PLACEHOLDER: &str = "{api}";

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SAM template (its folder is the cargo workspace the functions are built in).
    pub template: PathBuf,
    /// moto's URL; becomes `AWS_ENDPOINT_URL` of devstack and of every function.
    pub moto: String,
    /// Port of the local API on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Extra environment variables for every function (they win over the template's);
    /// `{api}` in a value becomes the local API's URL.
    pub env: Vec<(String, String)>,
    /// Template parameter values (e.g. `Stage`), over the defaults.
    pub parameters: Vec<(String, String)>,
    /// Secret values, by logical id or secret name, instead of generated ones; `{api}` in
    /// a value becomes the local API's URL.
    pub secrets: Vec<(String, SecretString)>,
    /// Schedules fire this many times faster than declared.
    pub schedule_speedup: f64,
    /// Prebuilt executables by binary name; the others are built with `cargo build`.
    pub binaries: BTreeMap<String, PathBuf>,
    /// The API token; a random one when `None`.
    pub token: Option<SecretString>,
    /// Stack name: prefix of unnamed resources and functions.
    pub stack_name: String,
    /// AWS region of the local resources.
    pub region: String,
    /// How long to wait for every function to finish its init before reporting ready.
    pub ready_timeout: Duration,
}

impl Options {
    /// Options with the defaults for everything but the template and moto.
    #[must_use]
    pub fn new(template: impl Into<PathBuf>, moto: impl Into<String>) -> Self {
        Self {
            template: template.into(),
            moto: moto.into(),
            port: 0,
            env: Vec::new(),
            parameters: Vec::new(),
            secrets: Vec::new(),
            schedule_speedup: 1.0,
            binaries: BTreeMap::new(),
            token: None,
            stack_name: "devstack".to_owned(),
            region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned()),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The template could not be read or resolved.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A resource could not be created on moto.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// A template parameter has no value.
    #[error("parameter {0} has no default and no value was given")]
    MissingParameter(String),
    /// An SQS event source names a queue the template does not declare.
    #[error("{function}.{event}: queue {arn} is not declared in the template")]
    UnknownQueue {
        /// Function logical id.
        function: String,
        /// Event name.
        event: String,
        /// Queue ARN.
        arn: String,
    },
    /// `cargo build` could not run or failed.
    #[error("building the functions with cargo failed")]
    Build(#[source] std::io::Error),
    /// `cargo build` succeeded without producing a binary the template names.
    #[error("cargo built no binary named {0}")]
    MissingBinary(String),
    /// A function's Runtime API could not start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The local API could not bind its port.
    #[error("binding the local API on port {0}")]
    Bind(u16, #[source] std::io::Error),
}

pub(crate) struct SqsSource {
    pub function: usize,
    pub event: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: u32,
    pub report_failures: bool,
}

/// State shared by the API handler and the background tasks.
pub(crate) struct Shared {
    pub token: SecretString,
    pub routes: Vec<Route>,
    pub hosts: Vec<Arc<FunctionHost>>,
    pub functions: Vec<FunctionSpec>,
    pub api_host: String,
    pub wiring: Json,
    pub region: String,
    pub sqs: aws_sdk_sqs::Client,
}

/// A running local stack. Dropping it (or [`Devstack::shutdown`]) stops the functions.
#[derive(Debug)]
pub struct Devstack {
    api_url: String,
    token: SecretString,
    provisioned: Provisioned,
    environments: BTreeMap<String, BTreeMap<String, String>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Devstack {
    /// The local API's base URL, e.g. `http://127.0.0.1:8400`.
    #[must_use]
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The bearer token the local API requires.
    #[must_use]
    pub fn token(&self) -> &SecretString {
        &self.token
    }

    /// The tables, queues and secrets created on moto.
    #[must_use]
    pub fn provisioned(&self) -> &Provisioned {
        &self.provisioned
    }

    /// The environment a function (by logical id) runs with.
    #[must_use]
    pub fn environment(&self, logical_id: &str) -> Option<&BTreeMap<String, String>> {
        self.environments.get(logical_id)
    }

    /// The functions of the template, as resolved (name, binary, timeout, environment, events).
    #[must_use]
    pub fn functions(&self) -> &[FunctionSpec] {
        &self.shared.functions
    }

    /// The wiring read from the template (routes, queues, schedules, resources) as JSON.
    #[must_use]
    pub fn wiring(&self) -> &Json {
        &self.shared.wiring
    }

    /// Fires a schedule now; `function` is the function's logical id or name. Returns the
    /// outcome summary, or `None` when there is no such schedule.
    pub async fn fire_schedule(&self, function: &str, event: &str) -> Option<Json> {
        fire_schedule(&self.shared, function, event).await
    }

    /// Stops the functions, the pollers, the schedules and the API.
    pub async fn shutdown(self) {
        self.shutdown.send_replace(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        // Give the supervisors a moment to kill their processes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts the stack described by `options.template`.
///
/// # Errors
/// [`StartError`] when the template, moto, cargo or a port fails.
pub async fn start(mut options: Options) -> Result<Devstack, StartError> {
    let template = Template::read(&options.template)?;

    // The API's address is known first, so functions and secrets can be given URLs on it
    // (e.g. the OAuth redirect URI).
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
        .await
        .map_err(|e| StartError::Bind(options.port, e))?;
    let address = listener
        .local_addr()
        .map_err(|e| StartError::Bind(options.port, e))?;
    let api_url = format!("http://{address}");
    for (_, value) in &mut options.env {
        *value = value.replace(API_PLACEHOLDER, &api_url);
    }
    for (_, value) in &mut options.secrets {
        if value.expose_secret().contains(API_PLACEHOLDER) {
            *value = SecretString::from(value.expose_secret().replace(API_PLACEHOLDER, &api_url));
        }
    }

    let mut parameters = BTreeMap::new();
    for (name, default) in &template.parameters {
        let given = options
            .parameters
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone());
        let value = given
            .or_else(|| default.clone())
            .ok_or_else(|| StartError::MissingParameter(name.clone()))?;
        parameters.insert(name.clone(), value);
    }
    for (name, value) in [
        ("AWS::Region", options.region.clone()),
        ("AWS::AccountId", ACCOUNT_ID.to_owned()),
        ("AWS::Partition", "aws".to_owned()),
        ("AWS::StackName", options.stack_name.clone()),
        ("AWS::URLSuffix", "amazonaws.com".to_owned()),
        (
            "AWS::StackId",
            format!(
                "arn:aws:cloudformation:{}:{ACCOUNT_ID}:stack/{}/devstack",
                options.region, options.stack_name
            ),
        ),
        ("AWS::NoValue", String::new()),
    ] {
        parameters.insert(name.to_owned(), value);
    }

    let credentials = aws_sdk_sqs::config::Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".to_owned()),
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "testing".to_owned()),
        None,
        None,
        "devstack",
    );
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&options.moto)
        .region(aws_config::Region::new(options.region.clone()))
        .credentials_provider(credentials)
        .load()
        .await;

    let secret_values: BTreeMap<String, SecretString> = options.secrets.iter().cloned().collect();
    let (scope, provisioned) = provision::provision(
        &config,
        ProvisionInput {
            template: &template,
            parameters,
            stack: &options.stack_name,
            secret_values: &secret_values,
        },
    )
    .await?;
    tracing::info!(
        tables = provisioned.tables.len(),
        queues = provisioned.queues.len(),
        secrets = provisioned.secrets.len(),
        email_identities = provisioned.email_identities.len(),
        "resources created on moto"
    );

    let functions = template
        .functions()
        .map(|r| template.function_spec(r, &scope, &options.stack_name))
        .collect::<Result<Vec<_>, _>>()?;
    for f in &functions {
        for unsupported in &f.unsupported_events {
            tracing::warn!(function = %f.logical_id, event = %unsupported, "event type not run by devstack");
        }
    }

    let executables = executables(&options, &functions).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut hosts = Vec::with_capacity(functions.len());
    let mut environments = BTreeMap::new();
    for function in &functions {
        let environment = process_environment(&options, function);
        environments.insert(function.logical_id.clone(), environment.clone());
        let executable = executables
            .get(&function.binary)
            .cloned()
            .ok_or_else(|| StartError::MissingBinary(function.binary.clone()))?;
        let host = FunctionHost::start(
            ProcessSpec {
                name: function.name.clone(),
                executable,
                environment,
                timeout: function.timeout,
                function_arn: format!(
                    "arn:aws:lambda:{}:{ACCOUNT_ID}:function:{}",
                    options.region, function.name
                ),
            },
            shutdown_rx.clone(),
        )
        .await?;
        hosts.push(host);
    }

    let mut routes = Vec::new();
    let mut sqs_sources = Vec::new();
    let mut schedules = Vec::new();
    for (index, function) in functions.iter().enumerate() {
        for event in &function.events {
            match event {
                EventSource::Http {
                    method,
                    path,
                    public,
                    ..
                } => routes.push(Route {
                    method: method.clone(),
                    path: path.clone(),
                    function: index,
                    public: *public,
                }),
                EventSource::Sqs {
                    name,
                    queue_arn,
                    batch_size,
                    report_batch_item_failures,
                } => {
                    let queue_url = provisioned
                        .queue_urls_by_arn
                        .get(queue_arn)
                        .cloned()
                        .ok_or_else(|| StartError::UnknownQueue {
                            function: function.logical_id.clone(),
                            event: name.clone(),
                            arn: queue_arn.clone(),
                        })?;
                    sqs_sources.push(SqsSource {
                        function: index,
                        event: name.clone(),
                        queue_url,
                        queue_arn: queue_arn.clone(),
                        batch_size: *batch_size,
                        report_failures: *report_batch_item_failures,
                    });
                }
                EventSource::Schedule {
                    name, expression, ..
                } => schedules.push((index, name.clone(), expression.clone())),
            }
        }
    }

    let token = options.token.clone().unwrap_or_else(|| {
        SecretString::from(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    });

    let wiring = json!({
        "api": api_url,
        "routes": routes.iter().map(|r| json!({
            "route": r.key(), "function": functions[r.function].name
        })).collect::<Vec<_>>(),
        "sqs": sqs_sources.iter().map(|s| json!({
            "function": functions[s.function].name, "event": s.event, "queue": s.queue_url,
            "batchSize": s.batch_size, "reportBatchItemFailures": s.report_failures
        })).collect::<Vec<_>>(),
        "schedules": schedules.iter().map(|(f, e, x)| json!({
            "function": functions[*f].name, "event": e, "expression": format!("{x:?}")
        })).collect::<Vec<_>>(),
        "resources": provisioned,
    });

    let shared = Arc::new(Shared {
        token: token.clone(),
        routes,
        hosts,
        functions,
        api_host: address.to_string(),
        wiring,
        region: options.region.clone(),
        sqs: aws_sdk_sqs::Client::new(&config),
    });

    let mut tasks = Vec::new();
    let app = Router::new()
        .fallback(crate::gateway::handle)
        .with_state(shared.clone());
    let mut api_shutdown = shutdown_rx.clone();
    tasks.push(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = api_shutdown.wait_for(|stop| *stop).await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "local API failed");
        }
    }));
    for source in sqs_sources {
        tasks.push(tokio::spawn(poll_queue(
            shared.clone(),
            source,
            shutdown_rx.clone(),
        )));
    }
    let speedup = if options.schedule_speedup.is_finite() && options.schedule_speedup > 0.0 {
        options.schedule_speedup
    } else {
        1.0
    };
    for (function, event, expression) in schedules {
        let shared = shared.clone();
        let mut shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let wait = expression
                    .delay_from(chrono::Utc::now())
                    .div_f64(speedup)
                    .max(Duration::from_millis(10));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = crate::runtime::stopped(&mut shutdown) => return,
                }
                let name = shared.functions[function].logical_id.clone();
                fire_schedule(&shared, &name, &event).await;
            }
        }));
    }

    for host in &shared.hosts {
        if !host.wait_ready(options.ready_timeout).await {
            tracing::warn!(function = %host.name(), "function not ready (no Runtime API poll yet)");
        }
    }

    Ok(Devstack {
        api_url,
        token,
        provisioned,
        environments,
        shutdown: shutdown_tx,
        tasks,
        shared,
    })
}

/// The complete environment of a function's process: the Lambda runtime's variables, the
/// template's (Globals merged with the function's), then the command line's.
fn process_environment(options: &Options, function: &FunctionSpec) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("AWS_LAMBDA_FUNCTION_NAME", function.name.clone());
    set(
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        function.memory_mb.to_string(),
    );
    set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned());
    set(
        "AWS_LAMBDA_LOG_GROUP_NAME",
        format!("/aws/lambda/{}", function.name),
    );
    set(
        "AWS_LAMBDA_LOG_STREAM_NAME",
        format!("devstack/{}", uuid::Uuid::new_v4().simple()),
    );
    set("AWS_REGION", options.region.clone());
    set("AWS_DEFAULT_REGION", options.region.clone());
    set("AWS_ENDPOINT_URL", options.moto.clone());
    set(
        "AWS_ACCESS_KEY_ID",
        std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_else(|_| "testing".to_owned()),
    );
    set(
        "AWS_SECRET_ACCESS_KEY",
        std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|_| "testing".to_owned()),
    );
    set("_HANDLER", "bootstrap".to_owned());
    set("TZ", ":UTC".to_owned());
    set("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned());
    for (k, v) in &function.environment {
        env.insert(k.clone(), v.clone());
    }
    for (k, v) in &options.env {
        env.insert(k.clone(), v.clone());
    }
    env
}

/// The executable of every function's binary: the given ones, the rest built by cargo in
/// the template's folder.
async fn executables(
    options: &Options,
    functions: &[FunctionSpec],
) -> Result<BTreeMap<String, PathBuf>, StartError> {
    let mut found = options.binaries.clone();
    let mut missing: Vec<&str> = functions
        .iter()
        .map(|f| f.binary.as_str())
        .filter(|b| !found.contains_key(*b))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(found);
    }
    let folder = options
        .template
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut command =
        tokio::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(folder)
        .args(["build", "--message-format=json-render-diagnostics"])
        .stdout(std::process::Stdio::piped());
    for binary in &missing {
        command.args(["--bin", binary]);
    }
    tracing::info!(binaries = ?missing, "building the functions with cargo");
    let output = command.output().await.map_err(StartError::Build)?;
    if !output.status.success() {
        return Err(StartError::Build(std::io::Error::other(format!(
            "cargo build exited with {}",
            output.status
        ))));
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Json>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && let (Some(name), Some(executable)) = (
                message["target"]["name"].as_str(),
                message["executable"].as_str(),
            )
            && missing.contains(&name)
        {
            found.insert(name.to_owned(), PathBuf::from(executable));
        }
    }
    for binary in missing {
        if !found.contains_key(binary) {
            return Err(StartError::MissingBinary(binary.to_owned()));
        }
    }
    Ok(found)
}

fn find_function(shared: &Shared, function: &str) -> Option<usize> {
    shared
        .functions
        .iter()
        .position(|f| f.logical_id == function || f.name == function)
}

/// Fires the schedule `event` of `function` (logical id or name) now; returns a summary of
/// the outcome, or `None` when there is no such schedule.
pub(crate) async fn fire_schedule(shared: &Shared, function: &str, event: &str) -> Option<Json> {
    let index = find_function(shared, function)?;
    let spec = &shared.functions[index];
    let input = spec.events.iter().find_map(|e| match e {
        EventSource::Schedule { name, input, .. } if name == event => Some(input.clone()),
        _ => None,
    })?;
    let payload = match input {
        Some(text) => text,
        None => json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT_ID,
            "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": shared.region,
            "resources": [format!(
                "arn:aws:events:{}:{ACCOUNT_ID}:rule/{}-{event}",
                shared.region, spec.name
            )],
            "detail": {}
        })
        .to_string(),
    };
    let host = shared.hosts.get(index)?;
    let summary = match host.invoke(Bytes::from(payload)).await {
        Ok(Outcome::Response(_)) => json!({"function": spec.name, "event": event, "ok": true}),
        Ok(Outcome::Error {
            error_type,
            error_message,
        }) => json!({"function": spec.name, "event": event, "ok": false,
                     "errorType": error_type, "errorMessage": error_message}),
        Err(e) => json!({"function": spec.name, "event": event, "ok": false,
                         "errorType": "Invoke", "errorMessage": e.to_string()}),
    };
    tracing::info!(function = %spec.name, event, ok = summary["ok"].as_bool(), "schedule fired");
    Some(summary)
}

/// The Lambda SQS record of a received message.
fn record(message: &Message, source: &SqsSource, region: &str) -> Json {
    let attributes: serde_json::Map<String, Json> = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), Json::String(v.clone())))
                .collect()
        })
        .unwrap_or_default();
    let message_attributes: serde_json::Map<String, Json> = message
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v.string_value(),
                            "binaryValue": v.binary_value().map(|b| BASE64.encode(b.as_ref())),
                            "stringListValues": v.string_list_values(),
                            "binaryListValues": v.binary_list_values().iter()
                                .map(|b| BASE64.encode(b.as_ref())).collect::<Vec<_>>(),
                            "dataType": v.data_type(),
                        }),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "md5OfMessageAttributes": message.md5_of_message_attributes(),
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": region,
    })
}

/// Which message ids of a batch failed, from the function's answer, as Lambda reads it with
/// `ReportBatchItemFailures`: an empty or null answer or list is a full success; an answer
/// that is not JSON, or names an id not in the batch (or none), fails the whole batch.
fn failed_ids(answer: &Bytes, batch: &[String]) -> Vec<String> {
    if answer.is_empty() {
        return Vec::new();
    }
    let Ok(parsed) = serde_json::from_slice::<Json>(answer) else {
        return batch.to_vec();
    };
    let failures = match parsed.get("batchItemFailures") {
        None | Some(Json::Null) => return Vec::new(),
        Some(Json::Array(items)) => items,
        Some(_) => return batch.to_vec(),
    };
    let mut ids = Vec::with_capacity(failures.len());
    for item in failures {
        match item.get("itemIdentifier").and_then(Json::as_str) {
            Some(id) if batch.iter().any(|b| b == id) => ids.push(id.to_owned()),
            _ => return batch.to_vec(),
        }
    }
    ids
}

async fn poll_queue(shared: Arc<Shared>, source: SqsSource, mut shutdown: watch::Receiver<bool>) {
    let Some(host) = shared.hosts.get(source.function).cloned() else {
        return;
    };
    let batch = i32::try_from(source.batch_size.min(10)).unwrap_or(10);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let receive = shared
            .sqs
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(batch)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send();
        let received = tokio::select! {
            r = receive => r,
            () = crate::runtime::stopped(&mut shutdown) => return,
        };
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(queue = %source.queue_url, error = %aws_sdk_sqs::Error::from(e), "receiving from the queue failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = crate::runtime::stopped(&mut shutdown) => return,
                }
            }
        };
        if messages.is_empty() {
            continue;
        }
        let ids: Vec<String> = messages
            .iter()
            .map(|m| m.message_id().unwrap_or_default().to_owned())
            .collect();
        let event = json!({
            "Records": messages.iter().map(|m| record(m, &source, &shared.region)).collect::<Vec<_>>()
        });
        let failed = match host.invoke(Bytes::from(event.to_string())).await {
            Ok(Outcome::Response(answer)) if source.report_failures => failed_ids(&answer, &ids),
            Ok(Outcome::Response(_)) => Vec::new(),
            Ok(Outcome::Error { .. }) | Err(_) => ids.clone(),
        };
        tracing::info!(
            queue = %source.queue_url,
            function = %host.name(),
            records = messages.len(),
            failed = failed.len(),
            "SQS batch delivered"
        );
        // Failed messages stay in flight and come back after the queue's visibility timeout;
        // SQS moves them to the dead-letter queue after maxReceiveCount receives.
        let done: Vec<&Message> = messages
            .iter()
            .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .collect();
        for chunk in done.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            if let Err(e) = shared
                .sqs
                .delete_message_batch()
                .queue_url(&source.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(queue = %source.queue_url, error = %aws_sdk_sqs::Error::from(e), "deleting processed messages failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn batch_item_failures_are_read_as_lambda_reads_them() {
        let batch = vec!["a".to_owned(), "b".to_owned()];
        let failed = |text: &'static str| failed_ids(&Bytes::from_static(text.as_bytes()), &batch);
        assert!(failed("").is_empty());
        assert!(failed("null").is_empty());
        assert!(failed(r#"{"batchItemFailures":[]}"#).is_empty());
        assert_eq!(
            failed(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
            vec!["b"]
        );
        // Invalid answers fail the whole batch.
        assert_eq!(
            failed(r#"{"batchItemFailures":[{"itemIdentifier":"zz"}]}"#),
            batch
        );
        assert_eq!(
            failed(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
            batch
        );
        assert_eq!(failed("not json"), batch);
    }
}
