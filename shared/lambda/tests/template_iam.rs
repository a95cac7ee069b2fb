//! Least privilege (R-SAFE-4), read from `template.yaml` itself: every function's permissions —
//! its `Policies` (the template's managed policies, inline statements, SAM policy templates,
//! AWS managed policies) plus what SAM attaches on its own (basic execution, X-Ray with
//! `Tracing: Active`, the SQS poller role with an `SQS` event) — resolved to a set of
//! `action on resource` grants and compared with the table below, exactly: an extra action,
//! an extra resource or a missing one fails. Changing a function's permissions means changing
//! this table, on purpose.
//!
//! Besides the table: only `connect` may create or delete tenant token secrets; every use of
//! the stack's KMS key is conditioned on Secrets Manager (`kms:ViaService`); and the key's own
//! policy gives the account administration only, and key use only to the functions' role path.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_norway::Value;

/// One permission: (action, resource). Resources are simplified: `!Ref X`, `!GetAtt X.Arn` and
/// `${X.Arn}` inside `!Sub` become `X`; other `!Sub` text stays as written.
type Grant = (String, String);

const TENANT_SECRETS: &str = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:m365-sync/${Stage}/tenant/*";

fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    serde_norway::from_str(&text).expect("template is YAML")
}

fn untagged(value: &Value) -> Option<(&'static str, &Value)> {
    let known = |tag: &str| match tag.trim_start_matches('!') {
        "Ref" => "Ref",
        "GetAtt" | "Fn::GetAtt" => "GetAtt",
        "Sub" | "Fn::Sub" => "Sub",
        _ => "other",
    };
    match value {
        Value::Tagged(t) => Some((known(&t.tag.to_string()), &t.value)),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = known(k.as_str()?);
            (k != "other").then_some((k, v))
        }
        _ => None,
    }
}

/// The simplified name of a resource reference.
fn resource(value: &Value) -> String {
    // Tags first: `as_str` sees through them.
    match untagged(value) {
        None => value.as_str().expect("a resource").to_owned(),
        Some(("Ref", v)) => v.as_str().unwrap().to_owned(),
        Some(("GetAtt", v)) => {
            let text = match v {
                Value::Sequence(parts) => parts[0].as_str().unwrap().to_owned(),
                other => other.as_str().unwrap().to_owned(),
            };
            text.trim_end_matches(".Arn").to_owned()
        }
        Some(("Sub", v)) => {
            let text = v.as_str().expect("a plain !Sub string").to_owned();
            // ${X.Arn} → X
            let mut out = String::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let end = rest[start..].find('}').unwrap() + start;
                let inner = &rest[start + 2..end];
                out.push_str(&rest[..start]);
                match inner.strip_suffix(".Arn") {
                    Some(logical) => out.push_str(logical),
                    None => out.push_str(&rest[start..=end]),
                }
                rest = &rest[end + 1..];
            }
            out.push_str(rest);
            out
        }
        other => panic!("unexpected resource reference {other:?}"),
    }
}

fn list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The Allow grants of a policy document's statements.
fn grants_of(statements: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for statement in list(statements) {
        assert_eq!(
            statement["Effect"].as_str(),
            Some("Allow"),
            "only Allow statements are expected: {statement:?}"
        );
        for action in list(&statement["Action"]) {
            for res in list(&statement["Resource"]) {
                out.insert((action.as_str().unwrap().to_owned(), resource(res)));
            }
        }
    }
    out
}

/// AWS managed policies SAM attaches or a template may name (their documented actions).
fn aws_managed(arn: &str) -> BTreeSet<Grant> {
    let name = arn.rsplit('/').next().unwrap();
    let actions: &[&str] = match name {
        "AWSLambdaBasicExecutionRole" => &[
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ],
        "AWSXrayWriteOnlyAccess" => &[
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:GetSamplingStatisticSummaries",
        ],
        "AWSLambdaSQSQueueExecutionRole" => &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        ],
        other => panic!("unknown AWS managed policy {other}: add its actions here"),
    };
    actions
        .iter()
        .map(|a| ((*a).to_owned(), "*".to_owned()))
        .collect()
}

/// SAM policy templates (actions as in samtranslator's policy_templates.json); the resource is
/// the template's parameter.
fn sam_policy_template(name: &str, parameters: &Value) -> BTreeSet<Grant> {
    let actions: &[&str] = match name {
        "SQSPollerPolicy" => &[
            "sqs:ChangeMessageVisibility",
            "sqs:ChangeMessageVisibilityBatch",
            "sqs:DeleteMessage",
            "sqs:DeleteMessageBatch",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
        ],
        "SQSSendMessagePolicy" => &["sqs:SendMessage*"],
        "DynamoDBReadPolicy" => &[
            "dynamodb:GetItem",
            "dynamodb:Scan",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:DescribeTable",
        ],
        "AWSSecretsManagerGetSecretValuePolicy" => &["secretsmanager:GetSecretValue"],
        "KMSDecryptPolicy" => &["kms:Decrypt"],
        other => panic!("unknown SAM policy template {other}: add its actions here"),
    };
    let target = parameters
        .as_mapping()
        .and_then(|m| m.values().next())
        .map_or_else(|| "*".to_owned(), resource);
    actions
        .iter()
        .map(|a| ((*a).to_owned(), target.clone()))
        .collect()
}

/// Every function's grants, resolved from the template.
fn resolved() -> BTreeMap<String, BTreeSet<Grant>> {
    let t = template();
    let resources = t["Resources"].as_mapping().unwrap();
    let globals = &t["Globals"]["Function"];
    let mut out = BTreeMap::new();
    for (id, r) in resources {
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap().to_owned();
        let props = &r["Properties"];
        assert!(
            props.get("Role").is_none(),
            "{id}: a given Role is not resolved"
        );
        let mut grants =
            aws_managed("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole");
        let tracing = props
            .get("Tracing")
            .or_else(|| globals.get("Tracing"))
            .and_then(Value::as_str);
        if tracing == Some("Active") {
            grants.extend(aws_managed(
                "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
            ));
        }
        if let Some(events) = props.get("Events").and_then(Value::as_mapping) {
            for event in events.values() {
                match event["Type"].as_str().unwrap() {
                    "SQS" => grants.extend(aws_managed(
                        "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
                    )),
                    "HttpApi" | "Schedule" => {}
                    other => panic!("{id}: event type {other} may add permissions: model it"),
                }
            }
        }
        for policy in props.get("Policies").map(list).unwrap_or_default() {
            // Tags first: `as_str` sees through them.
            if let Some(("Ref", name)) = untagged(policy) {
                let name = name.as_str().unwrap();
                let managed = &resources[name];
                assert_eq!(
                    managed["Type"].as_str(),
                    Some("AWS::IAM::ManagedPolicy"),
                    "{id}: {name}"
                );
                grants.extend(grants_of(
                    &managed["Properties"]["PolicyDocument"]["Statement"],
                ));
            } else if let Some(arn) = policy.as_str() {
                grants.extend(aws_managed(arn));
            } else if let Some(statement) = policy.get("Statement") {
                grants.extend(grants_of(statement));
            } else if let Some(m) = policy.as_mapping().filter(|m| m.len() == 1) {
                let (name, parameters) = m.iter().next().unwrap();
                grants.extend(sam_policy_template(name.as_str().unwrap(), parameters));
            } else {
                panic!("{id}: policy {policy:?} is not understood");
            }
        }
        out.insert(id, grants);
    }
    out
}

// ---- the table ------------------------------------------------------------------------------

fn grants(resources: &[&str], actions: &[&str]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for r in resources {
        for a in actions {
            out.insert(((*a).to_owned(), (*r).to_owned()));
        }
    }
    out
}

/// Logs and X-Ray: every function.
fn basics() -> BTreeSet<Grant> {
    grants(
        &["*"],
        &[
            "logs:CreateLogGroup",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "xray:PutTraceSegments",
            "xray:PutTelemetryRecords",
            "xray:GetSamplingRules",
            "xray:GetSamplingTargets",
            "xray:GetSamplingStatisticSummaries",
        ],
    )
}

/// The SQS poller role SAM attaches to a queue consumer (on every queue: SAM's choice).
fn sqs_consumer_role() -> BTreeSet<Grant> {
    grants(
        &["*"],
        &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
        ],
    )
}

const TABLE_READ: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
];

fn table_read(table: &str) -> BTreeSet<Grant> {
    grants(&[table, &format!("{table}/index/*")], TABLE_READ)
}

fn table_write(table: &str) -> BTreeSet<Grant> {
    let mut out = table_read(table);
    out.extend(grants(
        &[table, &format!("{table}/index/*")],
        &[
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ],
    ));
    out
}

fn events_append() -> BTreeSet<Grant> {
    grants(
        &["EventsTable", "EventsTable/index/*"],
        &[
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:DescribeTable",
            "dynamodb:PutItem",
        ],
    )
}

fn failures_append() -> BTreeSet<Grant> {
    grants(
        &["FailuresTable"],
        &[
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:DescribeTable",
            "dynamodb:PutItem",
        ],
    )
}

fn ledger() -> BTreeSet<Grant> {
    grants(
        &["LedgerTable"],
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:DescribeTable",
        ],
    )
}

fn queue_send(queue: &str) -> BTreeSet<Grant> {
    grants(
        &[queue],
        &[
            "sqs:SendMessage",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
        ],
    )
}

fn queue_consume(queue: &str) -> BTreeSet<Grant> {
    grants(
        &[queue],
        &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:GetQueueUrl",
        ],
    )
}

/// Existing tenant token secrets: read and save rotated tokens; never create or delete.
fn tenant_tokens_update() -> BTreeSet<Grant> {
    grants(
        &[TENANT_SECRETS],
        &[
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
        ],
    )
}

/// Creating and deleting tenant token secrets: `connect` only.
fn tenant_tokens_lifecycle() -> BTreeSet<Grant> {
    grants(
        &[TENANT_SECRETS],
        &["secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"],
    )
}

/// The stack's KMS key, through Secrets Manager.
fn secrets_key() -> BTreeSet<Grant> {
    grants(&["SecretsKey"], &["kms:Decrypt", "kms:GenerateDataKey"])
}

fn secret_read(secret: &str) -> BTreeSet<Grant> {
    grants(&[secret], &["secretsmanager:GetSecretValue"])
}

/// Publishing admin alerts (R-OPS-1).
fn alerts_publish() -> BTreeSet<Grant> {
    grants(&["AdminAlertsTopic"], &["sns:Publish"])
}

/// Alert incidents on the tenants table (`ALERT#` items only, by a `LeadingKeys` condition).
fn alert_incidents() -> BTreeSet<Grant> {
    grants(
        &["TenantsTable"],
        &[
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:DeleteItem",
        ],
    )
}

fn all(parts: Vec<BTreeSet<Grant>>) -> BTreeSet<Grant> {
    parts.into_iter().flatten().collect()
}

/// What each function needs, and nothing else.
fn expected() -> BTreeMap<String, BTreeSet<Grant>> {
    let graph = || {
        all(vec![
            tenant_tokens_update(),
            secrets_key(),
            secret_read("OAuthClientSecret"),
        ])
    };
    // What every use case that writes bindings on Graph's word holds: the bindings table, the
    // audit trail (events, failures), the idempotency ledger and the retry queue.
    let binding_writer = || {
        all(vec![
            table_write("BindingsTable"),
            events_append(),
            failures_append(),
            ledger(),
            queue_send("RetryQueue"),
        ])
    };
    BTreeMap::from([
        (
            "ConnectFunction".to_owned(),
            all(vec![
                basics(),
                table_write("TenantsTable"),
                table_write("BindingsTable"),
                events_append(),
                ledger(),
                graph(),
                tenant_tokens_lifecycle(),
                secret_read("CursorKeySecret"),
            ]),
        ),
        (
            "TokenRefreshFunction".to_owned(),
            all(vec![
                basics(),
                table_write("TenantsTable"),
                events_append(),
                ledger(),
                graph(),
                alerts_publish(),
            ]),
        ),
        (
            "DirectoryFunction".to_owned(),
            all(vec![
                basics(),
                table_write("UsersTable"),
                // Licence settings live in the tenants table (R-LIC-1).
                table_write("TenantsTable"),
                binding_writer(),
                graph(),
                secret_read("CursorKeySecret"),
            ]),
        ),
        (
            "BindFunction".to_owned(),
            all(vec![
                basics(),
                table_read("UsersTable"),
                table_read("TenantsTable"),
                binding_writer(),
                queue_send("NotificationsQueue"),
                secret_read("SealKeySecret"),
                graph(),
            ]),
        ),
        (
            "UnbindFunction".to_owned(),
            all(vec![
                basics(),
                table_read("UsersTable"),
                binding_writer(),
                graph(),
            ]),
        ),
        (
            "PasswordPushFunction".to_owned(),
            all(vec![
                basics(),
                table_write("UsersTable"),
                binding_writer(),
                secret_read("SealKeySecret"),
                graph(),
            ]),
        ),
        (
            "RetryWorkerFunction".to_owned(),
            all(vec![
                basics(),
                sqs_consumer_role(),
                table_write("UsersTable"),
                table_read("TenantsTable"),
                table_write("BindingsTable"),
                events_append(),
                failures_append(),
                ledger(),
                queue_consume("RetryQueue"),
                queue_send("RetryQueue"),
                queue_send("NotificationsQueue"),
                secret_read("SealKeySecret"),
                graph(),
            ]),
        ),
        (
            "ImportPageFunction".to_owned(),
            all(vec![
                basics(),
                table_write("UsersTable"),
                table_read("TenantsTable"),
                table_write("BindingsTable"),
                graph(),
                secret_read("CursorKeySecret"),
            ]),
        ),
        (
            // R-NOT-1: reads the user, its binding and tenant; de-duplicates in the ledger; lists
            // a refused send; consumes the notifications queue; sends from the sender identity
            // only. No Graph: no OAuth client secret, no tenant token, no KMS key.
            "NotifyFunction".to_owned(),
            all(vec![
                basics(),
                sqs_consumer_role(),
                table_read("UsersTable"),
                table_read("BindingsTable"),
                table_read("TenantsTable"),
                ledger(),
                failures_append(),
                queue_consume("NotificationsQueue"),
                grants(
                    &[
                        "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${WelcomeSenderAddress}",
                    ],
                    &["ses:SendEmail"],
                ),
            ]),
        ),
        (
            "ReconcileFunction".to_owned(),
            all(vec![
                basics(),
                sqs_consumer_role(),
                table_write("UsersTable"),
                table_read("TenantsTable"),
                binding_writer(),
                queue_send("ReconcileQueue"),
                queue_consume("ReconcileQueue"),
                secret_read("SealKeySecret"),
                graph(),
                alerts_publish(),
                alert_incidents(),
            ]),
        ),
    ])
}

#[test]
fn every_function_holds_exactly_the_permissions_of_the_table() {
    // R-SAFE-4
    let resolved = resolved();
    let expected = expected();
    assert_eq!(
        resolved.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the table lists every function of the template"
    );
    let mut problems = Vec::new();
    for (function, want) in &expected {
        let got = &resolved[function];
        for extra in got.difference(want) {
            problems.push(format!("{function} holds {} on {}", extra.0, extra.1));
        }
        for missing in want.difference(got) {
            problems.push(format!("{function} lacks {} on {}", missing.0, missing.1));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn only_connect_can_create_or_delete_tenant_token_secrets() {
    // R-SAFE-4
    for (function, grants) in resolved() {
        for (action, resource) in &grants {
            if matches!(
                action.as_str(),
                "secretsmanager:CreateSecret" | "secretsmanager:DeleteSecret"
            ) {
                assert_eq!(function, "ConnectFunction", "{function} holds {action}");
                assert_eq!(resource, TENANT_SECRETS, "{action} only on tenant secrets");
            }
            assert!(
                !action.contains('*') || action == "sqs:SendMessage*",
                "{function}: wildcard action {action}"
            );
        }
    }
}

/// Every statement of the template's managed policies that allows a `kms:` action.
fn kms_statements(t: &Value) -> Vec<&Value> {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::IAM::ManagedPolicy"))
        .flat_map(|r| list(&r["Properties"]["PolicyDocument"]["Statement"]))
        .filter(|s| {
            list(&s["Action"])
                .iter()
                .any(|a| a.as_str().unwrap().starts_with("kms:"))
        })
        .collect()
}

#[test]
fn the_functions_use_the_secrets_key_only_through_secrets_manager() {
    // R-SAFE-4
    let t = template();
    let statements = kms_statements(&t);
    assert!(!statements.is_empty());
    for statement in statements {
        let condition = &statement["Condition"]["StringEquals"]["kms:ViaService"];
        let via = untagged(condition).map_or_else(
            || condition.as_str().unwrap_or_default().to_owned(),
            |(_, v)| v.as_str().unwrap().to_owned(),
        );
        assert_eq!(via, "secretsmanager.${AWS::Region}.amazonaws.com");
        for r in list(&statement["Resource"]) {
            assert_eq!(resource(r), "SecretsKey");
        }
    }
}

#[test]
fn the_secrets_key_is_rotated_and_its_policy_admits_the_account_for_administration_only() {
    // R-SAFE-4
    let t = template();
    let key = &t["Resources"]["SecretsKey"];
    assert_eq!(key["Type"].as_str(), Some("AWS::KMS::Key"));
    assert_eq!(key["Properties"]["EnableKeyRotation"].as_bool(), Some(true));
    let role_path = match untagged(&t["Globals"]["Function"]["RolePath"]) {
        Some(("Sub", v)) => v.as_str().unwrap().to_owned(),
        other => panic!("Globals.Function.RolePath is a !Sub: {other:?}"),
    };
    let crypto = |a: &str| {
        a == "kms:*"
            || a.starts_with("kms:Encrypt")
            || a.starts_with("kms:Decrypt")
            || a.starts_with("kms:ReEncrypt")
            || a.starts_with("kms:GenerateDataKey")
            || a == "kms:CreateGrant"
            || a.ends_with('*')
    };
    let mut function_use = 0;
    for statement in list(&key["Properties"]["KeyPolicy"]["Statement"]) {
        let sid = statement["Sid"].as_str().unwrap();
        let actions: Vec<&str> = list(&statement["Action"])
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        if !actions.iter().any(|a| crypto(a)) {
            continue;
        }
        // Any statement allowing cryptographic use holds it to Secrets Manager and this
        // stage's secrets, and never grants kms:* or grants.
        assert!(
            actions
                .iter()
                .all(|a| matches!(*a, "kms:Decrypt" | "kms:GenerateDataKey")),
            "{sid}: {actions:?}"
        );
        let condition = &statement["Condition"];
        assert!(
            condition["StringEquals"].get("kms:ViaService").is_some(),
            "{sid}: through Secrets Manager only"
        );
        let context = resource(&condition["StringLike"]["kms:EncryptionContext:SecretARN"]);
        assert!(
            context.ends_with(":secret:m365-sync/${Stage}/*"),
            "{sid}: {context}"
        );
        if let Some(principal) = condition.get("ArnLike").map(|a| &a["aws:PrincipalArn"]) {
            let principal = resource(principal);
            assert_eq!(
                principal,
                format!("arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role{role_path}*"),
                "{sid}: the functions' role path"
            );
            function_use += 1;
        } else {
            let called_via = &condition["ForAnyValue:StringEquals"]["aws:CalledVia"];
            assert_eq!(
                called_via.as_str(),
                Some("cloudformation.amazonaws.com"),
                "{sid}: a use not limited to the functions' roles is limited to stack deployments"
            );
        }
    }
    assert_eq!(function_use, 1, "one statement admits the functions' roles");
}
