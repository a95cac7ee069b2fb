//! Operations (R-OPS-1), read from `template.yaml` itself: every function writes to a log group
//! the stack declares with a retention (its `LoggingConfig.LogGroup`), every function has an
//! `Errors` and a `Throttles` alarm, every dead-letter queue (every queue some queue's
//! `RedrivePolicy` targets) has an alarm on its visible messages, all alarming to the
//! `AdminAlertsTopic`; the HTTP API writes access logs to a log group with a retention; the email
//! subscription is optional. A function or DLQ added without them fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_norway::{Mapping, Value};

const TOPIC: &str = "AdminAlertsTopic";

fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(path).expect("template.yaml is readable");
    serde_norway::from_str(&text).expect("template is YAML")
}

fn resources(template: &Value) -> &Mapping {
    template["Resources"].as_mapping().expect("Resources")
}

/// The logical ids of the resources of `kind`.
fn of_type(template: &Value, kind: &str) -> BTreeSet<String> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(id, _)| id.as_str().unwrap().to_owned())
        .collect()
}

/// The target of `!Ref X` (`X`), `!GetAtt X.Attr` (`X.Attr`) or their long forms.
fn reference(value: &Value, tag: &str) -> Option<String> {
    let inner = match value {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == tag => &t.value,
        Value::Mapping(m) if m.len() == 1 => {
            let long = if tag == "Ref" { "Ref" } else { "Fn::GetAtt" };
            m.get(long)?
        }
        _ => return None,
    };
    match inner {
        Value::String(s) => Some(s.clone()),
        Value::Sequence(parts) => Some(
            parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("."),
        ),
        _ => None,
    }
}

/// The log group `id` exists with a retention from the `LogRetentionDays` parameter.
fn assert_log_group_with_retention(template: &Value, id: &str, whose: &str) {
    let group = &template["Resources"][id];
    assert_eq!(
        group["Type"].as_str(),
        Some("AWS::Logs::LogGroup"),
        "{whose}: {id} is a log group the stack declares"
    );
    assert_eq!(
        reference(&group["Properties"]["RetentionInDays"], "Ref").as_deref(),
        Some("LogRetentionDays"),
        "{whose}: {id} keeps its logs LogRetentionDays"
    );
}

/// The alarms (properties) whose actions include the topic.
fn alarms_to_topic(template: &Value) -> Vec<&Value> {
    resources(template)
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|r| &r["Properties"])
        .filter(|p| {
            p["AlarmActions"].as_sequence().is_some_and(|a| {
                a.iter()
                    .any(|v| reference(v, "Ref").as_deref() == Some(TOPIC))
            })
        })
        .collect()
}

/// Whether an alarm fires on any datum above zero of `metric` in `namespace` for the dimension
/// `dimension` = `value` (a `Ref`/`GetAtt` target).
fn alarms_on(alarm: &Value, namespace: &str, metric: &str, dimension: &str, value: &str) -> bool {
    let dimensions = alarm["Dimensions"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    alarm["Namespace"].as_str() == Some(namespace)
        && alarm["MetricName"].as_str() == Some(metric)
        && alarm["ComparisonOperator"].as_str() == Some("GreaterThanThreshold")
        && alarm["Threshold"].as_i64() == Some(0)
        && dimensions.iter().any(|d| {
            d["Name"].as_str() == Some(dimension)
                && (reference(&d["Value"], "Ref").as_deref() == Some(value)
                    || reference(&d["Value"], "GetAtt").as_deref() == Some(value))
        })
}

#[test]
fn every_function_logs_to_a_declared_log_group_with_a_retention() {
    // R-OPS-1 (no log kept forever)
    let template = template();
    let functions = of_type(&template, "AWS::Serverless::Function");
    assert!(functions.len() >= 9, "{functions:?}");
    let mut groups = BTreeSet::new();
    for function in &functions {
        let logging = &template["Resources"][function.as_str()]["Properties"]["LoggingConfig"];
        let group = reference(&logging["LogGroup"], "Ref").unwrap_or_else(|| {
            panic!("{function} has no LoggingConfig.LogGroup: !Ref <its log group>")
        });
        assert_log_group_with_retention(&template, &group, function);
        assert!(groups.insert(group.clone()), "{function} shares {group}");
    }
    let retention = &template["Parameters"]["LogRetentionDays"];
    assert_eq!(retention["Default"].as_i64(), Some(30), "default 30 days");
}

#[test]
fn every_function_has_an_errors_and_a_throttles_alarm_to_the_admins() {
    // R-OPS-1
    let template = template();
    let alarms = alarms_to_topic(&template);
    for function in of_type(&template, "AWS::Serverless::Function") {
        for metric in ["Errors", "Throttles"] {
            assert!(
                alarms.iter().any(|a| alarms_on(
                    a,
                    "AWS/Lambda",
                    metric,
                    "FunctionName",
                    &function
                )),
                "{function} has no {metric} alarm to {TOPIC}"
            );
        }
    }
}

#[test]
fn every_dead_letter_queue_has_a_messages_alarm_to_the_admins() {
    // R-OPS-1 (messages in any DLQ)
    let template = template();
    let dlqs: BTreeSet<String> = resources(&template)
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::SQS::Queue"))
        .filter_map(|r| {
            reference(
                &r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"],
                "GetAtt",
            )
        })
        .map(|target| target.trim_end_matches(".Arn").to_owned())
        .collect();
    assert!(dlqs.len() >= 3, "{dlqs:?}");
    let alarms = alarms_to_topic(&template);
    for dlq in &dlqs {
        assert!(
            alarms.iter().any(|a| alarms_on(
                a,
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                &format!("{dlq}.QueueName")
            )),
            "{dlq} has no ApproximateNumberOfMessagesVisible > 0 alarm to {TOPIC}"
        );
    }
}

#[test]
fn the_http_api_writes_access_logs_to_a_log_group_with_a_retention() {
    // R-OPS-1 (API access logs are on)
    let template = template();
    for api in of_type(&template, "AWS::Serverless::HttpApi") {
        let settings = &template["Resources"][api.as_str()]["Properties"]["AccessLogSettings"];
        let target = reference(&settings["DestinationArn"], "GetAtt")
            .unwrap_or_else(|| panic!("{api} has no AccessLogSettings.DestinationArn"));
        let group = target.trim_end_matches(".Arn");
        assert_log_group_with_retention(&template, group, &api);
        let format = settings["Format"].as_str().expect("a format");
        assert!(format.contains("$context.requestId") && format.contains("$context.status"));
        assert!(
            !format.contains("$context.requestBody"),
            "no bodies in the access log"
        );
    }
}

#[test]
fn the_alert_topic_takes_an_optional_email_subscription_and_is_published_to_least_privilege() {
    // R-OPS-1 (email subscription as a stack parameter)
    let template = template();
    assert_eq!(
        template["Resources"][TOPIC]["Type"].as_str(),
        Some("AWS::SNS::Topic")
    );
    let parameter = &template["Parameters"]["AlertEmail"];
    assert_eq!(
        parameter["Default"].as_str(),
        Some(""),
        "no email by default"
    );
    let subscriptions: Vec<&Value> = resources(&template)
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::SNS::Subscription"))
        .collect();
    assert_eq!(subscriptions.len(), 1);
    let email = subscriptions[0];
    assert_eq!(email["Condition"].as_str(), Some("HasAlertEmail"));
    assert_eq!(email["Properties"]["Protocol"].as_str(), Some("email"));
    assert_eq!(
        reference(&email["Properties"]["Endpoint"], "Ref").as_deref(),
        Some("AlertEmail")
    );
    let publish = &template["Resources"]["AdminAlertsPublishPolicy"]["Properties"]["PolicyDocument"]
        ["Statement"][0];
    assert_eq!(publish["Action"][0].as_str(), Some("sns:Publish"));
    assert_eq!(publish["Action"].as_sequence().unwrap().len(), 1);
    assert_eq!(
        reference(&publish["Resource"][0], "Ref").as_deref(),
        Some(TOPIC)
    );
}
