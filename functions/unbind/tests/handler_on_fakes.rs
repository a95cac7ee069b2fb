//! `unbind::handle` driven with real API Gateway v2 event JSON on the engine's in-memory `World`:
//! routing, bad input answered with a 4xx and a machine-readable code (R-SAFE-1), and an unbind
//! that blocks sign-in without deleting the account (R-BIND-5), deferred when throttled
//! (R-BIND-6).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::Error;
use m365_engine::model::{BindingState, EventKind, OperationKind};
use m365_engine::testing::World;
use m365_lambda::testing::{api_event, status_and_json};
use serde_json::Value;
use unbind::handle;

async fn call(w: &World, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let response = handle(w, api_event(method, path, &[], body)).await.unwrap();
    status_and_json(&response)
}

#[tokio::test]
async fn unknown_routes_and_bad_input_get_a_4xx_with_a_code_and_nothing_is_written() {
    // R-SAFE-1
    let w = World::new().await;
    w.user("adele").await;
    w.bind("adele").await;
    let calls = w.directory.calls();
    let events = w.events.all().len();
    for (method, path, body, status, code) in [
        ("PUT", "/users/adele/binding", None, 404, "route_not_found"),
        ("DELETE", "/users/adele", None, 404, "route_not_found"),
        (
            "DELETE",
            "/users/adele/binding",
            Some(r#"{"x":1}"#),
            400,
            "unexpected_body",
        ),
        (
            "DELETE",
            &format!("/users/{}/binding", "a".repeat(65)),
            None,
            400,
            "invalid_id",
        ),
    ] {
        let (got, answer) = call(&w, method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
    }
    assert_eq!(w.binding("adele").await.state, BindingState::Provisioned);
    assert_eq!(w.directory.calls(), calls);
    assert_eq!(w.events.all().len(), events);
}

#[tokio::test]
async fn an_unbind_blocks_sign_in_keeps_the_account_and_records_user_deprovision() {
    // R-BIND-5
    let w = World::new().await;
    w.user("adele").await;
    w.bind("adele").await;
    let account = World::object_id(&w.binding("adele").await);
    let (status, answer) = call(&w, "DELETE", "/users/adele/binding", None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "done");
    assert_eq!(answer["binding"]["state"], "blocked");
    let m365 = w
        .directory
        .user(&w.tenant.id, &account)
        .expect("not deleted");
    assert!(!m365.account_enabled);
    assert_eq!(w.count_events(EventKind::UserDeprovision), 1);
}

#[tokio::test]
async fn a_throttled_unbind_answers_202_with_its_retry_on_the_queue() {
    // R-BIND-6
    let w = World::new().await;
    w.user("adele").await;
    w.bind("adele").await;
    w.directory.fail_next_call(Error::Throttled {
        retry_after: None,
        graph_request_id: None,
    });
    let (status, answer) = call(&w, "DELETE", "/users/adele/binding", None).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["outcome"], "deferred");
    let queued = w.queue.snapshot();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].message.kind, OperationKind::UserUnbind);
}
