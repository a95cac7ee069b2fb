//! devstack end to end against moto: the wiring of a template (routes, SQS event sources,
//! schedules, environment) runs locally, with the fixture Lambda binary as every function.
//!
//! Without `AWS_ENDPOINT_URL` these tests skip loudly on a developer machine and FAIL in CI
//! (`CI` set), as the contract tests of shared/aws do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use devstack::{Devstack, Options};
use secrecy::ExposeSecret;
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/template.yaml");

fn moto() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
            assert!(
                !ci,
                "AWS_ENDPOINT_URL is not set: devstack tests need moto (run them with `make test` \
                 or scripts/with-moto.sh); in CI this is a failure, not a skip"
            );
            eprintln!(
                "\n*** SKIPPED: AWS_ENDPOINT_URL is not set, so this devstack test did not run \
                 against moto. Run `make test` (or scripts/with-moto.sh cargo test) to run it. ***\n"
            );
            None
        }
    }
}

/// A private copy of `text` as a template file, and a stage no other test uses.
fn template_file(text: &str) -> (PathBuf, String) {
    let stage = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let dir = std::env::temp_dir().join(format!("devstack-test-{stage}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("template.yaml");
    std::fs::write(&path, text).unwrap();
    (path, stage)
}

async fn start(text: &str, speedup: f64) -> (Devstack, String) {
    let moto = moto().expect("checked by the caller");
    let (path, stage) = template_file(text);
    let mut options = Options::new(path, moto);
    options.parameters = vec![("Stage".to_owned(), stage.clone())];
    options.binaries = BTreeMap::from([(
        "devstack-fixture-lambda".to_owned(),
        PathBuf::from(env!("CARGO_BIN_EXE_devstack-fixture-lambda")),
    )]);
    options.schedule_speedup = speedup;
    options.env = vec![("CALLBACK_URL".to_owned(), "{api}/oauth/callback".to_owned())];
    options.ready_timeout = Duration::from_secs(30);
    (
        devstack::start(options).await.expect("devstack starts"),
        stage,
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await,
    )
}

/// Drains every message of a queue for `window` (deleting them) and returns their bodies.
async fn drain(client: &aws_sdk_sqs::Client, url: &str, window: Duration) -> Vec<String> {
    let end = tokio::time::Instant::now() + window;
    let mut bodies = Vec::new();
    while tokio::time::Instant::now() < end {
        let output = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in output.messages.unwrap_or_default() {
            bodies.push(m.body().unwrap_or_default().to_owned());
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    bodies
}

// Issue 7 "Done when": the wiring comes from template.yaml.
#[tokio::test(flavor = "multi_thread")]
async fn a_route_removed_from_a_copy_of_the_template_is_404_locally_while_the_others_still_run() {
    if moto().is_none() {
        return;
    }
    let (full, stage) = start(FIXTURE, 1.0).await;
    let http = client();
    let token = full.token().expose_secret().to_owned();

    let created = http
        .post(format!("{}/items", full.api_url()))
        .bearer_auth(&token)
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "POST /items is declared: it runs");
    assert_eq!(created.headers()["x-fixture"], "yes");
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["body"], r#"{"name":"x"}"#);
    assert_eq!(created["method"], "POST");

    let got = http
        .get(format!(
            "{}/items/item-7?color=red&color=blue",
            full.api_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["pathParameters"]["itemId"], "item-7");
    assert_eq!(got["colors"], serde_json::json!(["red", "blue"]));
    assert_eq!(got["function"], "devstack-ApiFunction");
    assert_eq!(
        got["principal"], "local",
        "R-AUD-1: the token's caller reaches the function as API Gateway's IAM principal"
    );
    // The environment is the template's, resolved to the local resources, and nothing else.
    assert_eq!(got["tableEnv"], format!("devstack-{stage}-items"));
    assert!(
        got["secretEnv"]
            .as_str()
            .unwrap()
            .contains(&format!("devstack/{stage}/api")),
        "SECRET_ID is the local secret's ARN: {got}"
    );
    assert_eq!(got["inheritedHome"], Value::Null);
    assert_eq!(
        got["callbackEnv"],
        format!("{}/oauth/callback", full.api_url()),
        "command-line variables reach the functions, with {{api}} replaced"
    );

    let unauthorized = http
        .get(format!("{}/items/item-7", full.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let open = http
        .get(format!("{}/public/ping", full.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200, "Authorizer: NONE routes need no token");
    let open: Value = open.json().await.unwrap();
    assert_eq!(
        open["principal"],
        Value::Null,
        "R-AUD-1: a public route's request carries no principal"
    );
    let undeclared = http
        .get(format!("{}/nowhere", full.api_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(undeclared.status(), 404);
    full.shutdown().await;

    // The same template with the POST /items route cut out.
    let begin = FIXTURE.find("# ROUTE-TO-REMOVE-BEGIN").unwrap();
    let end = FIXTURE.find("# ROUTE-TO-REMOVE-END").unwrap();
    let trimmed = format!("{}{}", &FIXTURE[..begin], &FIXTURE[end..]);
    assert!(!trimmed.contains("Path: /items\n"));
    let (cut, _) = start(&trimmed, 1.0).await;
    let token = cut.token().expose_secret().to_owned();
    let removed = http
        .post(format!("{}/items", cut.api_url()))
        .bearer_auth(&token)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        removed.status(),
        404,
        "a route missing from the template is missing locally"
    );
    let kept = http
        .get(format!("{}/items/item-8", cut.api_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 200);
    cut.shutdown().await;
}

// R-BIND-6 plumbing: only failed records return to the queue; the DLQ takes them after
// maxReceiveCount.
#[tokio::test(flavor = "multi_thread")]
async fn sqs_batches_return_only_failed_records_to_the_queue_and_then_to_the_dead_letter_queue() {
    if moto().is_none() {
        return;
    }
    let (stack, _) = start(FIXTURE, 1.0).await;
    let sqs = sqs().await;
    let queues = &stack.provisioned().queues;
    let work = queues["WorkQueue"].clone();
    let dlq = queues["WorkDeadLetterQueue"].clone();
    let probe = queues["ProbeQueue"].clone();
    for body in ["ok-1", "fail-1", "ok-2"] {
        sqs.send_message()
            .queue_url(&work)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    // Visibility timeout 1 s, maxReceiveCount 2: fail-1 is tried twice, then dead-lettered.
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while dead.is_empty() && tokio::time::Instant::now() < deadline {
        dead = drain(&sqs, &dlq, Duration::from_secs(1)).await;
    }
    assert_eq!(dead, vec!["fail-1".to_owned()]);

    let mut attempts = drain(&sqs, &probe, Duration::from_secs(3)).await;
    attempts.sort();
    assert_eq!(
        attempts,
        vec![
            "attempt fail-1 1",
            "attempt fail-1 2",
            "attempt ok-1 1",
            "attempt ok-2 1"
        ],
        "successful records are deleted after one delivery; the failed one comes back"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invocations_carry_the_template_timeout_as_deadline_and_are_cut_off_past_it() {
    if moto().is_none() {
        return;
    }
    let (stack, _) = start(FIXTURE, 1.0).await;
    let http = client();
    let get = |ms: u64| {
        http.get(format!("{}/slow/{ms}", stack.api_url()))
            .bearer_auth(stack.token().expose_secret())
            .send()
    };
    let quick = get(0).await.unwrap();
    assert_eq!(quick.status(), 200);
    let quick: Value = quick.json().await.unwrap();
    let left = quick["msToDeadline"].as_i64().unwrap();
    assert!(
        (500..=1000).contains(&left),
        "Timeout: 1 gives a 1 s deadline: {left} ms left"
    );

    let cut = get(3000).await.unwrap();
    assert_eq!(cut.status(), 503, "past its Timeout the invocation fails");
    // The timed-out process is replaced by a fresh one that serves the next request.
    let mut again = get(0).await.unwrap().status();
    for _ in 0..20 {
        if again == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        again = get(0).await.unwrap().status();
    }
    assert_eq!(again, 200);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schedules_fire_on_request_and_on_their_sped_up_rate() {
    if moto().is_none() {
        return;
    }
    // rate(1 hour) sped up 1800 times fires every 2 s.
    let (fast, _) = start(FIXTURE, 1800.0).await;
    let sqs = sqs().await;
    let probe = fast.provisioned().queues["ProbeQueue"].clone();
    let fired = drain(&sqs, &probe, Duration::from_secs(5)).await;
    assert!(
        !fired.is_empty() && fired.iter().all(|b| b == "scheduled Scheduled Event"),
        "the sped-up schedule fired: {fired:?}"
    );
    fast.shutdown().await;

    // At the declared rate nothing fires within seconds, but the admin endpoint fires it now.
    let (slow, _) = start(FIXTURE, 1.0).await;
    let probe = slow.provisioned().queues["ProbeQueue"].clone();
    let response = client()
        .post(format!(
            "{}/_devstack/schedules/TickFunction/Tick",
            slow.api_url()
        ))
        .bearer_auth(slow.token().expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let summary: Value = response.json().await.unwrap();
    assert_eq!(summary["ok"], true, "{summary}");
    let fired = drain(&sqs, &probe, Duration::from_secs(2)).await;
    assert_eq!(fired, vec!["scheduled Scheduled Event".to_owned()]);
    slow.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_project_template_provisions_on_moto_with_redrive_and_resolved_function_environment() {
    let Some(moto) = moto() else {
        return;
    };
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))
        .unwrap();
    let template = devstack::template::Template::parse(&text).unwrap();
    let stage = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&moto)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let mut parameters = BTreeMap::from([
        ("Stage".to_owned(), stage.clone()),
        ("AWS::Region".to_owned(), "us-east-1".to_owned()),
        ("AWS::AccountId".to_owned(), "123456789012".to_owned()),
        ("AWS::Partition".to_owned(), "aws".to_owned()),
    ]);
    parameters.insert("AWS::StackName".to_owned(), "devstack".to_owned());
    // The template's own defaults for the rest (the password and retry policy knobs).
    for (name, default) in &template.parameters {
        if let Some(default) = default {
            parameters
                .entry(name.clone())
                .or_insert_with(|| default.clone());
        }
    }
    let (scope, provisioned) = devstack::provision::provision(
        &config,
        devstack::provision::ProvisionInput {
            template: &template,
            parameters,
            stack: "devstack",
            secret_values: &BTreeMap::new(),
        },
    )
    .await
    .unwrap();
    // Every table and secret the template declares is created, whatever their number.
    let declared = |kind: &str| template.resources.iter().filter(|r| r.kind == kind).count();
    assert!(declared("AWS::DynamoDB::Table") >= 6);
    assert_eq!(provisioned.tables.len(), declared("AWS::DynamoDB::Table"));
    assert_eq!(
        provisioned.tables["UsersTable"],
        format!("m365-sync-{stage}-users")
    );
    assert!(declared("AWS::SecretsManager::Secret") >= 2);
    assert_eq!(
        provisioned.secrets.len(),
        declared("AWS::SecretsManager::Secret")
    );

    // R-NOT-1: the welcome sender is an SES identity, verified for sending on moto.
    assert_eq!(
        provisioned.email_identities.len(),
        declared("AWS::SES::EmailIdentity")
    );
    let sender = &provisioned.email_identities["WelcomeSenderIdentity"];
    assert_eq!(sender, "welcome@example.com");
    let identity = aws_sdk_sesv2::Client::new(&config)
        .get_email_identity()
        .email_identity(sender)
        .send()
        .await
        .unwrap();
    assert_eq!(
        identity.verification_status,
        Some(aws_sdk_sesv2::types::VerificationStatus::Success)
    );

    let sqs = aws_sdk_sqs::Client::new(&config);
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&provisioned.queues["RetryQueue"])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let redrive: Value =
        serde_json::from_str(&attributes[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy])
            .unwrap();
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("m365-sync-{stage}-retry-dlq"))
    );
    assert_eq!(redrive["maxReceiveCount"].as_u64(), Some(5));
    assert_eq!(
        attributes[&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout],
        "180"
    );

    // Every variable the Globals give the functions resolves to a local resource.
    let globals = template
        .function_globals
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .cloned()
        .unwrap();
    let env = scope.resolve(&globals).unwrap();
    assert_eq!(env["M365_USERS_TABLE"], format!("m365-sync-{stage}-users"));
    assert_eq!(
        env["M365_RETRY_QUEUE_URL"],
        provisioned.queues["RetryQueue"].as_str()
    );
    assert_eq!(
        env["M365_TENANT_SECRET_PREFIX"],
        format!("m365-sync/{stage}/tenant/")
    );
    assert_eq!(
        env["M365_SEAL_KEY_SECRET_ID"],
        provisioned.secrets["SealKeySecret"].as_str()
    );
    assert_eq!(
        env["M365_CURSOR_KEY_SECRET_ID"],
        provisioned.secrets["CursorKeySecret"].as_str()
    );
    // devstack creates no KMS key: the stack's key resolves to nothing (the variable is
    // optional; secrets use Secrets Manager's default key locally).
    assert_eq!(env["M365_SECRETS_KMS_KEY_ID"], "");
    // The admin alerts topic is created on moto and reaches the functions (R-OPS-1); the email
    // subscription, off by default (empty AlertEmail), is not created.
    let topic = provisioned.topics["AdminAlertsTopic"].clone();
    assert!(
        topic.ends_with(&format!(":m365-sync-{stage}-admin-alerts")),
        "{topic}"
    );
    assert_eq!(env["M365_ADMIN_ALERTS_TOPIC_ARN"], topic.as_str());
    let sns = aws_sdk_sns::Client::new(&config);
    let subscriptions = sns
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert!(subscriptions.subscriptions().is_empty());
    // And every function the template declares resolves (binary, timeout, events).
    for function in template.functions() {
        let spec = template
            .function_spec(function, &scope, "devstack")
            .unwrap();
        assert!(!spec.binary.is_empty());
        assert_eq!(
            spec.environment["M365_USERS_TABLE"],
            format!("m365-sync-{stage}-users")
        );
    }
}
