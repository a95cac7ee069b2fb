//! Test fixture: a tiny Lambda function the devstack tests wire through a template.
//!
//! `FIXTURE_KIND` picks the handler, as a template's per-function `Environment` sets it:
//! - `http`: `lambda_http`; answers JSON describing the request and the function's env.
//! - `sqs`: `lambda_runtime` with `ReportBatchItemFailures`; records whose body starts with
//!   `fail` fail; every attempt is reported to `PROBE_QUEUE_URL`.
//! - `schedule`: `lambda_runtime`; reports each event's `detail-type` to `PROBE_QUEUE_URL`.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_http::{Body, IntoResponse, Request, RequestExt, Response};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn probe(client: &aws_sdk_sqs::Client, text: String) -> Result<(), Error> {
    let url = std::env::var("PROBE_QUEUE_URL")?;
    client
        .send_message()
        .queue_url(url)
        .message_body(text)
        .send()
        .await?;
    Ok(())
}

async fn http(request: Request) -> Result<impl IntoResponse, Error> {
    // `/slow/{ms}` sleeps that long first (to run past the function's Timeout).
    if let Some(ms) = request.uri().path().strip_prefix("/slow/") {
        let ms: u64 = ms.parse()?;
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let deadline = request.lambda_context_ref().map(|c| c.deadline);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let body = match request.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    // The IAM principal API Gateway's authorizer context names (R-AUD-1), if any.
    let principal = match request.request_context_ref() {
        Some(lambda_http::request::RequestContext::ApiGatewayV2(context)) => context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|iam| iam.user_arn.clone()),
        _ => None,
    };
    let answer = json!({
        "principal": principal,
        "function": std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
        "method": request.method().as_str(),
        "path": request.uri().path(),
        "pathParameters": request.path_parameters().iter().collect::<std::collections::BTreeMap<_, _>>(),
        "colors": request.query_string_parameters().all("color"),
        "body": body,
        "tableEnv": std::env::var("TABLE_NAME").ok(),
        "secretEnv": std::env::var("SECRET_ID").ok(),
        "inheritedHome": std::env::var("HOME").ok(),
        "callbackEnv": std::env::var("CALLBACK_URL").ok(),
        "msToDeadline": deadline.map(|d| i128::from(d) - i128::try_from(now_ms).unwrap_or_default()),
    });
    Ok(Response::builder()
        .status(if request.method() == "POST" { 201 } else { 200 })
        .header("content-type", "application/json")
        .header("x-fixture", "yes")
        .body(answer.to_string())?)
}

async fn sqs(
    client: &aws_sdk_sqs::Client,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut response = SqsBatchResponse::default();
    for record in event.payload.records {
        let body = record.body.unwrap_or_default();
        let count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        probe(client, format!("attempt {body} {count}")).await?;
        if body.starts_with("fail") {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = record.message_id.unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

async fn schedule(client: &aws_sdk_sqs::Client, event: LambdaEvent<Value>) -> Result<(), Error> {
    let kind = event.payload["detail-type"]
        .as_str()
        .unwrap_or("?")
        .to_owned();
    probe(client, format!("scheduled {kind}")).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_sqs::Client::new(&config);
    match std::env::var("FIXTURE_KIND").as_deref() {
        Ok("sqs") => lambda_runtime::run(service_fn(|e| sqs(&client, e))).await,
        Ok("schedule") => lambda_runtime::run(service_fn(|e| schedule(&client, e))).await,
        _ => lambda_http::run(lambda_http::service_fn(http)).await,
    }
}
