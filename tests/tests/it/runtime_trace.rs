//! Secrets at TRACE (R-SAFE-2), through the real Lambda runtime: the `connect` and
//! `password-push` handlers run in their own processes under `lambda_http::run`
//! (`src/bin/trace_fixture.rs`), polling devstack's local Lambda Runtime API, configured from the
//! environment as on AWS, with `RUST_LOG=trace`. They receive an OAuth callback (code and
//! `state` in the query string) and a password body, both with the local stack's bearer token in
//! `Authorization` — the events `lambda_runtime` logs raw at TRACE.
//!
//! The product's log layer (the `RUST_LOG` filter and the secret-safety cap) must hold none of
//! those values, nor the tokens the callback obtained or the app's client secret; the same events
//! through `RUST_LOG` alone must show them in `lambda_runtime`'s lines — so this test fails if
//! the runtime crates lose their cap.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Bytes;
use devstack::runtime::{FunctionHost, Outcome, ProcessSpec};
use m365_engine::model::{DirectoryUser, Email, TenantId, UserId};
use m365_engine::ports::{TokenVault, UserStore};
use m365_integration_tests::{APP_ID, APP_SECRET, CONTOSO_ADMIN, REDIRECT, World, api_event};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::watch;

/// The environment a function's process gets: Lambda's variables, the AWS SDK's (moto), the
/// product's configuration for `world`, the emulator's URLs, `RUST_LOG=trace` and the fixture's.
fn environment(
    world: &World,
    oauth_secret: &str,
    function: &str,
    capped: &Path,
    uncapped: &Path,
) -> BTreeMap<String, String> {
    let r = &world.app.config.resources;
    let mut env: BTreeMap<String, String> = [
        ("AWS_LAMBDA_FUNCTION_NAME", format!("trace-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/trace-{function}"),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "trace".to_owned()),
        ("M365_USERS_TABLE", r.users_table.clone()),
        ("M365_TENANTS_TABLE", r.tenants_table.clone()),
        ("M365_BINDINGS_TABLE", r.bindings_table.clone()),
        ("M365_EVENTS_TABLE", r.events_table.clone()),
        ("M365_FAILURES_TABLE", r.failures_table.clone()),
        ("M365_LEDGER_TABLE", r.ledger_table.clone()),
        ("M365_RETRY_QUEUE_URL", r.retry_queue_url.clone()),
        (
            "M365_NOTIFICATIONS_QUEUE_URL",
            r.notifications_queue_url.clone(),
        ),
        ("M365_TENANT_SECRET_PREFIX", r.tenant_secret_prefix.clone()),
        ("M365_SEAL_KEY_SECRET_ID", r.seal_key_secret_id.clone()),
        ("M365_CURSOR_KEY_SECRET_ID", r.cursor_key_secret_id.clone()),
        ("M365_OAUTH_CLIENT_SECRET_ID", oauth_secret.to_owned()),
        (
            "M365_GRAPH_BASE_URL",
            format!("{}/v1.0", world.emulator.base),
        ),
        ("M365_IDENTITY_BASE_URL", world.emulator.base.clone()),
        ("M365_OAUTH_REDIRECT_URI", REDIRECT.to_owned()),
        ("RUST_LOG", "trace".to_owned()),
        ("FIXTURE_FUNCTION", function.to_owned()),
        ("FIXTURE_CAPPED_LOG", capped.display().to_string()),
        ("FIXTURE_UNCAPPED_LOG", uncapped.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for inherited in [
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ] {
        if let Ok(v) = std::env::var(inherited) {
            env.insert(inherited.to_owned(), v);
        }
    }
    env.entry("AWS_REGION".to_owned())
        .or_insert_with(|| "us-east-1".to_owned());
    env
}

/// One function behind devstack's Runtime API, and the two logs it writes.
struct Function {
    host: std::sync::Arc<FunctionHost>,
    capped: PathBuf,
    uncapped: PathBuf,
}

async fn start(
    world: &World,
    oauth_secret: &str,
    name: &str,
    shutdown: watch::Receiver<bool>,
) -> Function {
    let dir = std::env::temp_dir();
    let id = uuid::Uuid::new_v4().simple();
    let capped = dir.join(format!("trace-{name}-{id}-capped.log"));
    let uncapped = dir.join(format!("trace-{name}-{id}-uncapped.log"));
    let spec = ProcessSpec {
        name: format!("trace-{name}"),
        executable: PathBuf::from(env!("CARGO_BIN_EXE_trace-fixture")),
        environment: environment(world, oauth_secret, name, &capped, &uncapped),
        timeout: Duration::from_secs(30),
        function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:trace-{name}"),
    };
    let host = FunctionHost::start(spec, shutdown)
        .await
        .expect("runtime API");
    assert!(
        host.wait_ready(Duration::from_secs(30)).await,
        "{name} asked for its first event"
    );
    Function {
        host,
        capped,
        uncapped,
    }
}

/// Invokes `function` with `event`; the API Gateway response's status and JSON body.
async fn invoke(function: &Function, event: &Value) -> (u16, Value) {
    let outcome = function
        .host
        .invoke(Bytes::from(event.to_string()))
        .await
        .expect("invoked");
    let Outcome::Response(bytes) = outcome else {
        panic!("the function failed: {outcome:?}");
    };
    let response: Value = serde_json::from_slice(&bytes).unwrap();
    let body = response["body"]
        .as_str()
        .filter(|b| !b.is_empty())
        .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
    (
        u16::try_from(response["statusCode"].as_u64().unwrap()).unwrap(),
        body,
    )
}

/// The log lines (JSON objects) of a file.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({ "unparsed": l })))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_rust_log_trace_the_runtime_logs_no_password_code_state_or_token() {
    // R-SAFE-2
    let Some(mut world) = World::start().await else {
        return;
    };
    world.add_provisioning_resources("trace").await;
    let secrets = aws_sdk_secretsmanager::Client::new(&world.sdk);
    let oauth_secret = format!("it-oauth-client-{}", uuid::Uuid::new_v4().simple());
    secrets
        .create_secret()
        .name(&oauth_secret)
        .secret_string(
            json!({"client_id": APP_ID, "client_secret": APP_SECRET, "redirect_uri": REDIRECT})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    world
        .app
        .users
        .create(&DirectoryUser::new(
            UserId::parse("trace-user").unwrap(),
            Email::parse("trace.user@contoso.com").unwrap(),
            "Trace User",
        ))
        .await
        .unwrap();
    // The admin starts a connection and consents; the callback goes to the function process.
    let (tenant, params) = world.start_and_sign_in("Contoso", CONTOSO_ADMIN).await;
    let code = params["code"].clone();
    let state = params["state"].clone();
    let bearer = format!("local-bearer-{}", uuid::Uuid::new_v4().simple());
    let authorization = format!("Bearer {bearer}");
    let password = format!(
        "Trace-Passw0rd-{}!",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );

    let (stop, shutdown) = watch::channel(false);
    let connect = start(&world, &oauth_secret, "connect", shutdown.clone()).await;
    let push = start(&world, &oauth_secret, "password-push", shutdown).await;

    let callback = api_event(
        "GET",
        "/oauth/callback",
        &[("code", &code), ("state", &state)],
        None,
        &[("authorization", &authorization)],
    );
    let (status, body) = invoke(&connect, &callback).await;
    assert_eq!(status, 200, "the callback connected Contoso: {body}");
    let set_password = api_event(
        "POST",
        "/users/trace-user/password",
        &[],
        Some(json!({ "password": password })),
        &[("authorization", &authorization)],
    );
    let (status, body) = invoke(&push, &set_password).await;
    assert_eq!(status, 204, "the password was set: {body}");
    let _ = stop.send(true);

    let tokens = world
        .app
        .token_vault
        .get(&TenantId::parse(&tenant).unwrap())
        .await
        .unwrap()
        .expect("the callback stored tokens");
    let secrets_in_events: [(&str, &str); 3] = [
        ("the OAuth code", &code),
        ("the password", &password),
        ("the bearer token", &bearer),
    ];

    let mut capped = lines(&connect.capped);
    capped.extend(lines(&push.capped));
    let mut uncapped = lines(&connect.uncapped);
    uncapped.extend(lines(&push.uncapped));
    let capped_text: String = capped.iter().map(|l| format!("{l}\n")).collect();

    // The capture is at TRACE and holds the functions' own lines.
    for (what, needle) in [
        ("a TRACE line", "trace level is on"),
        ("the connect outcome", "tenant connected"),
        ("the Lambda runtime's invoke span", "Lambda runtime invoke"),
    ] {
        assert!(
            capped_text.contains(needle),
            "{what} is in the product's log: {capped_text}"
        );
    }

    // Without the cap, lambda_runtime's own TRACE lines carry every secret of the events.
    for (what, secret) in secrets_in_events {
        let leaking: Vec<&Value> = uncapped
            .iter()
            .filter(|l| {
                l["target"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("lambda_runtime"))
                    && l.to_string().contains(secret)
            })
            .collect();
        assert!(
            !leaking.is_empty(),
            "without the cap, lambda_runtime logs {what} at TRACE (else this test proves nothing)"
        );
        assert!(
            leaking.iter().any(
                |l| l["fields"]["message"] == "raw JSON event received from Lambda"
                    || l["message"] == "raw JSON event received from Lambda"
            ),
            "{what}: in the raw event line"
        );
    }

    // With the product's layer: none of them, nor the tokens or the client secret.
    let all_secrets: Vec<(&str, &str)> = secrets_in_events
        .into_iter()
        .chain([
            ("the OAuth state", state.as_str()),
            ("the access token", tokens.access_token.expose_secret()),
            ("the refresh token", tokens.refresh_token.expose_secret()),
            ("the app's client secret", APP_SECRET),
        ])
        .collect();
    for (what, secret) in &all_secrets {
        assert!(secret.len() >= 8, "{what} is long enough to search for");
        if let Some(line) = capped.iter().find(|l| l.to_string().contains(secret)) {
            let shown = all_secrets
                .iter()
                .fold(line.to_string(), |text, (_, s)| text.replace(s, "<SECRET>"));
            panic!("{what} reached the product's log: {shown}");
        }
    }
    for path in [
        &connect.capped,
        &connect.uncapped,
        &push.capped,
        &push.uncapped,
    ] {
        let _ = std::fs::remove_file(path);
    }
}
