//! The local HTTP API: every `HttpApi` route of the template, invoked with an API Gateway
//! HTTP API payload format 2.0 event, with the function's answer mapped back to HTTP.
//!
//! A bearer token printed at start stands in for the IAM authorization of the deployed API: a
//! request it authorizes reaches the function with the request context API Gateway gives an
//! IAM-authorized call, naming the principal `local` (the events it causes name that actor,
//! R-AUD-1); a public route's request carries no authorizer, as on AWS.
//! Routes absent from the template answer 404 as API Gateway does. Besides the template's
//! routes, `/_devstack/...` holds the admin endpoints (same token).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::ExposeSecret;
use serde_json::{Value as Json, json};

use crate::routes::{self, Route};

/// The principal the local stack's bearer token authenticates (R-AUD-1).
pub const LOCAL_PRINCIPAL: &str = "local";
use crate::runtime::Outcome;
use crate::stack::Shared;

/// API Gateway's payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let expected = shared.token.expose_secret();
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| {
            // Length and bytes compared without an early exit.
            given.len() == expected.len()
                && given
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

/// The one handler of the local API.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let matched = routes::find(&shared.routes, parts.method.as_str(), &path);
    let public =
        !path.starts_with("/_devstack/") && matched.as_ref().is_some_and(|m| m.route.public);
    if !public && !authorized(&shared, &parts.headers) {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    if let Some(admin) = path.strip_prefix("/_devstack/") {
        return admin_endpoint(&shared, &parts.method, admin).await;
    }
    let Some(matched) = matched else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let route: &Route = matched.route;
    let Some(host) = shared.hosts.get(route.function) else {
        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    };
    let mut event = event(
        &shared,
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        &route.key(),
        &matched.parameters,
    );
    if !route.public {
        authorize(&mut event);
    }
    match host.invoke(Bytes::from(event.to_string())).await {
        Ok(Outcome::Response(answer)) => to_response(&answer),
        Ok(Outcome::Error { .. }) => {
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Err(e) => {
            tracing::warn!(route = %route.key(), error = %e, "integration failed");
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
    }
}

async fn admin_endpoint(shared: &Shared, method: &Method, path: &str) -> Response {
    let parts: Vec<&str> = path.split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["wiring"]) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            shared.wiring.to_string(),
        )
            .into_response(),
        ("POST", ["schedules", function, event]) => {
            match crate::stack::fire_schedule(shared, function, event).await {
                Some(outcome) => (
                    StatusCode::OK,
                    [("content-type", "application/json")],
                    outcome.to_string(),
                )
                    .into_response(),
                None => message(StatusCode::NOT_FOUND, "No such schedule"),
            }
        }
        _ => message(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// The payload format 2.0 event of one request.
fn event(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    route_key: &str,
    parameters: &BTreeMap<String, String>,
) -> Json {
    let mut header_map = serde_json::Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        if name == "cookie" {
            for value in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
                cookies.extend(value.split(';').map(|c| Json::String(c.trim().to_owned())));
            }
            continue;
        }
        header_map.insert(
            name.as_str().to_owned(),
            Json::String(joined(headers, name)),
        );
    }
    let raw_query = uri.query().unwrap_or_default();
    // Repeated query parameters are joined with commas, as API Gateway does.
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.entry(decode(k)).or_default().push(decode(v));
    }
    let now = chrono::Utc::now();
    let (body_value, is_base64) = if body.is_empty() {
        (Json::Null, false)
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => (Json::String(text.to_owned()), false),
            Err(_) => (Json::String(BASE64.encode(body)), true),
        }
    };
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": crate::provision::ACCOUNT_ID,
            "apiId": "devstack",
            "domainName": shared.api_host,
            "domainPrefix": "devstack",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": body_value,
        "isBase64Encoded": is_base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = Json::Array(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = query
            .into_iter()
            .map(|(k, v)| (k, Json::String(v.join(","))))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if !parameters.is_empty() {
        event["pathParameters"] = parameters
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    event
}

/// Adds API Gateway's IAM authorizer context to `event`: the bearer token's caller is `local`.
fn authorize(event: &mut Json) {
    event["requestContext"]["authorizer"] = json!({
        "iam": {
            "accessKey": null,
            "accountId": crate::provision::ACCOUNT_ID,
            "callerId": LOCAL_PRINCIPAL,
            "principalOrgId": null,
            "userArn": LOCAL_PRINCIPAL,
            "userId": LOCAL_PRINCIPAL,
        }
    });
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Maps a payload format 2.0 answer back to HTTP: a structured answer (with `statusCode`)
/// gives status, headers, cookies and body; any other JSON is a 200 with that JSON as body.
fn to_response(answer: &Bytes) -> Response {
    let parsed: Option<Json> = serde_json::from_slice(answer).ok();
    let Some(Json::Object(object)) = parsed.filter(|p| p.get("statusCode").is_some()) else {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            answer.clone(),
        )
            .into_response();
    };
    let status = object
        .get("statusCode")
        .and_then(Json::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match object.get("body") {
        Some(Json::String(text)) => {
            if object.get("isBase64Encoded") == Some(&Json::Bool(true)) {
                match BASE64.decode(text) {
                    Ok(bytes) => bytes,
                    Err(_) => {
                        return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
                    }
                }
            } else {
                text.clone().into_bytes()
            }
        }
        _ => Vec::new(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    };
    if let Some(Json::Object(map)) = object.get("headers") {
        for (name, value) in map {
            if let Some(text) = crate::intrinsic::scalar_text(value) {
                add(name, &text);
            }
        }
    }
    if let Some(Json::Object(map)) = object.get("multiValueHeaders") {
        for (name, values) in map {
            for value in values.as_array().into_iter().flatten() {
                if let Some(text) = crate::intrinsic::scalar_text(value) {
                    add(name, &text);
                }
            }
        }
    }
    for cookie in object
        .get("cookies")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
    {
        add("set-cookie", cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn query_values_are_percent_decoded() {
        assert_eq!(decode("a%20b+c%2Fd"), "a b c/d");
        assert_eq!(decode("100%"), "100%");
    }

    #[test]
    fn structured_answers_set_status_headers_cookies_and_body() {
        let answer = Bytes::from(
            json!({"statusCode": 201, "headers": {"content-type": "application/json", "x-n": "1"},
                   "cookies": ["a=b"], "body": "{\"ok\":true}", "isBase64Encoded": false})
            .to_string(),
        );
        let response = to_response(&answer);
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-n"], "1");
        assert_eq!(response.headers()["set-cookie"], "a=b");
        let plain = to_response(&Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(plain.headers()["content-type"], "application/json");
    }
}
