//! Real Lambda event JSON for the functions' handler tests on the engine's fake `World` (feature
//! `testing`): an API Gateway HTTP API (v2) request and an SQS batch, decoded by the same
//! `lambda_http` / `aws_lambda_events` code as in Lambda.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

/// An API Gateway v2 request event for `method path?query` with an optional JSON body, decoded
/// as `lambda_http` decodes the Runtime's payload.
///
/// # Panics
/// Never for the events built here (the JSON is a valid v2 payload).
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "test helper: a bad event is a broken test"
)]
pub fn api_event(method: &str, path: &str, query: &[(&str, &str)], body: Option<&str>) -> Request {
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": raw.join("&"),
        "headers": {"content-type": "application/json"},
        "queryStringParameters": if params.is_empty() { Value::Null } else { Value::Object(params) },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.test",
            "domainPrefix": "api", "requestId": "r-1", "routeKey": format!("{method} {path}"),
            "stage": "$default", "time": "27/Nov/2026:15:00:00 +0000", "timeEpoch": 0,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"}
        },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// An SQS event of the retry queue carrying `bodies` as messages `m-0`, `m-1`, … (received once).
///
/// # Panics
/// Never for the events built here.
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "test helper: a bad event is a broken test"
)]
pub fn sqs_event(bodies: &[String]) -> SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("m-{i}"),
                "receiptHandle": format!("rh-{i}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764255600000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764255600000"
                },
                "messageAttributes": {},
                "md5OfBody": "0",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:m365-sync-retry",
                "awsRegion": "eu-west-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

/// A response's status and JSON body (`null` when empty).
#[must_use]
pub fn status_and_json(response: &Response<Body>) -> (u16, Value) {
    let body = match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (response.status().as_u16(), body)
}
