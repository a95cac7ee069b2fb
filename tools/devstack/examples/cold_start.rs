//! Cold-start benchmark (DESIGN §5: process start → first event handled < 50 ms; peak
//! memory ≤ 128 MB), for every function of `template.yaml`, on the RELEASE binaries.
//!
//! devstack provisions the template on moto (`AWS_ENDPOINT_URL`) and resolves each
//! function's environment; an in-process m365-emulator (seeded with
//! `tools/m365-emulator/seeds/example.json`) serves Graph and the identity platform. Then,
//! for each function, `RUNS` times: a fresh process is started behind devstack's Runtime API,
//! given one cheap event (an HTTP API v2 request that fails fast with a 4xx, an empty SQS
//! batch, or a schedule event with no tenants), and timed from just before spawn to the
//! moment its response reaches the Runtime API; its peak RSS (`VmHWM`) is read from
//! `/proc/<pid>/status` right after, before it is stopped.
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/m365-sync/target
//! cargo build --release -p connect -p token-refresh -p directory -p bind -p unbind \
//!   -p password-push -p retry-worker -p import-page -p reconcile
//! scripts/with-moto.sh cargo run -p devstack --example cold_start -- [RUNS]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use devstack::runtime::{FunctionHost, Outcome, ProcessSpec};
use devstack::template::{EventSource, FunctionSpec};
use serde_json::{Value as Json, json};
use tokio::sync::watch;

const COLD_START_BAR_MS: f64 = 50.0;
const MEMORY_BAR_MB: f64 = 128.0;
const OAUTH_CLIENT: &str = r#"{"client_id":"5f0c3e1a-9b7d-4c2e-8a61-0d4b2f7e9c11","client_secret":"emulator-secret-m365-sync-1","redirect_uri":"http://localhost:8400/oauth/callback"}"#;

/// One measured cold start.
struct Run {
    millis: f64,
    rss_mb: Option<f64>,
    outcome: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DEVSTACK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("RUNS must be a positive number")?,
        None => 5,
    };
    if runs == 0 {
        bail!("RUNS must be at least 1");
    }
    let moto = std::env::var("AWS_ENDPOINT_URL")
        .context("AWS_ENDPOINT_URL is not set: run under scripts/with-moto.sh")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map_or_else(|_| root.join("target"), PathBuf::from)
        .join("release");

    // The m365-emulator, in-process.
    let seed = std::fs::read_to_string(root.join("tools/m365-emulator/seeds/example.json"))
        .context("reading the emulator seed")?;
    let state = m365_emulator::State::from_seed(m365_emulator::Seed::from_json(&seed)?)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emulator = format!("http://{}", listener.local_addr()?);
    tokio::spawn(m365_emulator::serve(
        listener,
        m365_emulator::AppState::new(state),
    ));

    let template_path = root.join("template.yaml");
    let template = devstack::template::Template::read(&template_path)?;
    let mut options = devstack::Options::new(&template_path, &moto);
    for resource in template.functions() {
        let name = resource
            .metadata
            .get("BuildProperties")
            .and_then(|b| b.get("Binary"))
            .and_then(|b| b.as_str())
            .map_or_else(|| resource.logical_id.clone(), str::to_owned);
        let path = target.join(&name);
        if !path.is_file() {
            bail!(
                "{} is missing: build the release binaries first (see this file's docs)",
                path.display()
            );
        }
        options.binaries.insert(name, path);
    }
    options.env = vec![
        ("M365_GRAPH_BASE_URL".into(), format!("{emulator}/v1.0")),
        ("M365_IDENTITY_BASE_URL".into(), emulator.clone()),
        (
            "M365_OAUTH_REDIRECT_URI".into(),
            "{api}/oauth/callback".into(),
        ),
    ];
    options.secrets = vec![(
        "OAuthClientSecret".into(),
        secrecy::SecretString::from(OAUTH_CLIENT.replace("http://localhost:8400", "{api}")),
    )];
    options.stack_name = format!("coldstart{}", std::process::id());
    options.ready_timeout = Duration::from_secs(10);
    let stack = devstack::start(options)
        .await
        .context("starting devstack")?;

    let mut rows = Vec::new();
    for function in stack.functions() {
        let environment = stack
            .environment(&function.logical_id)
            .cloned()
            .unwrap_or_default();
        let executable = target.join(&function.binary);
        let (event, kind) = cheap_event(function);
        let mut measured = Vec::with_capacity(runs);
        for _ in 0..runs {
            measured.push(
                cold_start(function, &executable, &environment, event.clone())
                    .await
                    .with_context(|| format!("measuring {}", function.logical_id))?,
            );
        }
        rows.push((function.binary.clone(), kind, measured));
    }
    stack.shutdown().await;

    println!(
        "cold start (spawn -> first response at the Runtime API), {runs} runs each, release binaries"
    );
    println!(
        "{:<14} {:<31} {:>9} {:>9} {:>9} {:>8} {:>8}  outcome",
        "function", "event", "median ms", "max ms", "peak MB", "<50 ms", "<=128 MB"
    );
    let mut all_pass = true;
    for (name, kind, measured) in &rows {
        let mut times: Vec<f64> = measured.iter().map(|r| r.millis).collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let max = times.last().copied().unwrap_or(f64::NAN);
        let rss = measured
            .iter()
            .filter_map(|r| r.rss_mb)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let time_ok = max < COLD_START_BAR_MS;
        let memory_ok = rss.is_some_and(|r| r <= MEMORY_BAR_MB);
        all_pass &= time_ok && memory_ok;
        let outcome = measured
            .first()
            .map(|r| r.outcome.as_str())
            .unwrap_or_default();
        println!(
            "{name:<14} {kind:<31} {median:>9.1} {max:>9.1} {:>9} {:>8} {:>8}  {outcome}",
            rss.map_or_else(|| "?".to_owned(), |r| format!("{r:.1}")),
            if time_ok { "yes" } else { "NO" },
            if memory_ok { "yes" } else { "NO" },
        );
    }
    println!(
        "{}",
        if all_pass {
            "every function meets the bar"
        } else {
            "some functions miss the bar"
        }
    );
    Ok(())
}

/// The cheapest event the function is wired for, and a label.
fn cheap_event(function: &FunctionSpec) -> (Json, String) {
    let now = chrono::Utc::now();
    // An HTTP route first: a GET when there is one, else the first route (no body, no auth
    // context, unknown ids: a fast 4xx).
    let mut routes: Vec<(&str, &str)> = function
        .events
        .iter()
        .filter_map(|e| match e {
            EventSource::Http {
                method,
                path: Some(path),
                ..
            } => Some((method.as_str(), path.as_str())),
            _ => None,
        })
        .collect();
    routes.sort_by_key(|(method, _)| *method != "GET");
    let has_sqs = function
        .events
        .iter()
        .any(|e| matches!(e, EventSource::Sqs { .. }));
    let has_schedule = function
        .events
        .iter()
        .any(|e| matches!(e, EventSource::Schedule { .. }));
    if has_sqs {
        return (json!({"Records": []}), "SQS empty batch".to_owned());
    }
    if has_schedule {
        return (
            json!({
                "version": "0",
                "id": uuid::Uuid::new_v4().to_string(),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": devstack::provision::ACCOUNT_ID,
                "time": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "region": "us-east-1",
                "resources": [],
                "detail": {}
            }),
            "schedule".to_owned(),
        );
    }
    let (method, template_path) = routes.first().copied().unwrap_or(("GET", "/"));
    let mut parameters = serde_json::Map::new();
    let path = template_path
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    let value = "00000000-0000-4000-8000-000000000000".to_owned();
                    parameters.insert(name.to_owned(), Json::String(value.clone()));
                    value
                }
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/");
    let route_key = format!("{method} {template_path}");
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "127.0.0.1", "user-agent": "cold-start-bench"},
        "requestContext": {
            "accountId": devstack::provision::ACCOUNT_ID,
            "apiId": "devstack",
            "domainName": "127.0.0.1",
            "domainPrefix": "devstack",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "cold-start-bench",
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if !parameters.is_empty() {
        event["pathParameters"] = Json::Object(parameters);
    }
    (event, route_key)
}

/// Starts one fresh process of `function`, serves it `event`, and measures it.
async fn cold_start(
    function: &FunctionSpec,
    executable: &Path,
    environment: &BTreeMap<String, String>,
    event: Json,
) -> anyhow::Result<Run> {
    let (stop, shutdown) = watch::channel(false);
    let host = FunctionHost::start(
        ProcessSpec {
            name: function.name.clone(),
            executable: executable.to_owned(),
            environment: environment.clone(),
            timeout: function.timeout,
            function_arn: format!(
                "arn:aws:lambda:us-east-1:{}:function:{}",
                devstack::provision::ACCOUNT_ID,
                function.name
            ),
        },
        shutdown,
    )
    .await?;
    let outcome = host.invoke(Bytes::from(event.to_string())).await;
    let answered = Instant::now();
    let process = host.process();
    let rss_mb = process.and_then(|(pid, _)| peak_rss_mb(pid));
    stop.send_replace(true);
    // Let the supervisor kill the process before the next run starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let Some((_, spawned_at)) = process else {
        bail!("the process never started");
    };
    let outcome = match outcome {
        Ok(Outcome::Response(body)) => serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|v| v.get("statusCode").and_then(Json::as_u64))
            .map_or_else(|| "response".to_owned(), |s| format!("HTTP {s}")),
        Ok(Outcome::Error { error_type, .. }) => format!("error {error_type}"),
        Err(e) => bail!("no outcome: {e}"),
    };
    Ok(Run {
        millis: answered.duration_since(spawned_at).as_secs_f64() * 1000.0,
        rss_mb,
        outcome,
    })
}

/// `VmHWM` (peak resident set) of a live process, in MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
