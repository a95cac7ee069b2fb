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
    let event = api_event_json(method, path, query, body);
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// The raw JSON payload behind [`api_event`], for a function whose handler takes the Runtime's
/// JSON as is (`reconcile` tells its kinds of event apart itself).
#[must_use]
pub fn api_event_json(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let params: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
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
    })
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
    let records: Vec<(String, Option<&str>)> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| (format!("m-{i}"), Some(body.as_str())))
        .collect();
    serde_json::from_value(sqs_event_json(&records)).expect("an SQS event")
}

/// The raw JSON payload of an SQS batch of `(messageId, body)` records (received once; a `None`
/// body is a record without one), for a handler that takes the Runtime's JSON as is.
#[must_use]
pub fn sqs_event_json(records: &[(String, Option<&str>)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
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
    json!({ "Records": records })
}

/// A response's status and JSON body (`null` when empty).
///
/// # Panics
/// When the body is text that is not JSON: every answer of the API is JSON.
#[must_use]
#[allow(
    clippy::expect_used,
    reason = "test helper: an answer that is not JSON is a failed test"
)]
pub fn status_and_json(response: &Response<Body>) -> (u16, Value) {
    let body = match response.body() {
        Body::Text(t) if !t.is_empty() => serde_json::from_str(t).expect("a JSON answer"),
        _ => Value::Null,
    };
    (response.status().as_u16(), body)
}
