//! `bind::handle` driven with real API Gateway v2 event JSON on the engine's in-memory `World`:
//! routing, bad input answered with a 4xx and a machine-readable code (R-SAFE-1), a bind that
//! creates the account and joins the user's bound groups (R-BIND-2, R-GRP-1), a throttled bind
//! deferred to the retry queue (R-BIND-6), and the binding shown by `GET`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bind::handle;
use m365_engine::Error;
use m365_engine::model::{BindingState, Group, GroupId, OperationKind, mail_nickname_for};
use m365_engine::ports::{BindingStore, GroupStore};
use m365_engine::testing::{World, uid};
use m365_engine::usecase::group_sync::SyncGroup;
use m365_lambda::testing::{api_event, status_and_json};
use serde_json::Value;

async fn call(w: &World, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let response = handle(w, api_event(method, path, &[], body)).await.unwrap();
    status_and_json(&response)
}

#[tokio::test]
async fn unknown_routes_and_bad_input_get_a_4xx_with_a_code_and_nothing_is_written() {
    // R-SAFE-1, R-BIND-1 (the tenant is never taken from the caller)
    let w = World::new().await;
    w.user("adele").await;
    for (method, path, body, status, code) in [
        ("POST", "/users/adele/binding", None, 404, "route_not_found"),
        ("PUT", "/users/adele/other", None, 404, "route_not_found"),
        (
            "PUT",
            "/users/adele/binding",
            Some("{not json"),
            400,
            "invalid_json",
        ),
        (
            "PUT",
            "/users/adele/binding",
            Some(r#"{"tenantId":"t"}"#),
            400,
            "invalid_json",
        ),
        (
            "PUT",
            "/users/adele/binding",
            Some(r#"{"welcome":"yes"}"#),
            400,
            "invalid_json",
        ),
        (
            "PUT",
            &format!("/users/{}/binding", "a".repeat(65)),
            None,
            400,
            "invalid_id",
        ),
        ("PUT", "/users/nobody/binding", None, 404, "not_found"),
        ("GET", "/users/adele/binding", None, 404, "not_found"),
    ] {
        let (got, answer) = call(&w, method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
    }
    let stored = BindingStore::get(&w.bindings, &uid("adele")).await.unwrap();
    assert!(stored.is_none(), "nothing written");
    assert_eq!(w.directory.calls(), 0);
    assert!(w.events.all().is_empty());
}

#[tokio::test]
async fn a_bind_creates_the_account_joins_the_bound_groups_and_get_shows_it() {
    // R-BIND-1, R-BIND-2, R-GRP-1 (the bind use case's group follow-up)
    let w = World::new().await;
    w.user("adele").await;
    let sales = GroupId::parse("sales").unwrap();
    w.groups
        .create(&Group::new(
            sales.clone(),
            "Sales".to_owned(),
            [uid("adele")],
        ))
        .await
        .unwrap();
    SyncGroup::new(&w).bind(&sales, &w.tenant.id).await.unwrap();

    let (status, answer) = call(
        &w,
        "PUT",
        "/users/adele/binding",
        Some(r#"{"welcome": false}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["outcome"], "done");
    assert_eq!(answer["binding"]["state"], "provisioned");
    assert_eq!(answer["binding"]["tenantId"], w.tenant.id.to_string());
    let account = answer["binding"]["m365ObjectId"]
        .as_str()
        .unwrap()
        .to_owned();
    let members = &w
        .directory
        .groups_named(&w.tenant.id, &mail_nickname_for(&sales))[0]
        .1;
    assert_eq!(
        members.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec![account.clone()]
    );

    let (status, shown) = call(&w, "GET", "/users/adele/binding", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["state"], "provisioned");
    assert_eq!(shown["m365ObjectId"], account);

    // Bound already: an empty body binds again and changes nothing.
    let (status, again) = call(&w, "PUT", "/users/adele/binding", None).await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (200, Some("unchanged"))
    );
}

#[tokio::test]
async fn a_throttled_bind_answers_202_pending_with_its_retry_on_the_queue() {
    // R-BIND-6
    let w = World::new().await;
    w.user("adele").await;
    w.directory.fail_next_call(Error::Throttled {
        retry_after: Some(std::time::Duration::from_secs(3)),
        graph_request_id: Some("req-429".to_owned()),
    });
    let (status, answer) = call(&w, "PUT", "/users/adele/binding", None).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["outcome"], "deferred");
    assert_eq!(answer["binding"]["state"], "pending");
    assert_eq!(answer["binding"]["pendingReason"], "throttled");
    let queued = w.queue.snapshot();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].message.kind, OperationKind::UserBind);
    assert_eq!(w.binding("adele").await.state, BindingState::Pending);
}

#[tokio::test]
async fn a_rebind_restores_the_deleted_account_unless_the_request_says_restore_false() {
    // R-BIND-10 (`PUT /users/{userId}/binding` takes `restore`, default true; the binding shows
    // `restored`)
    let w = World::new().await;
    for id in ["adele", "bob"] {
        w.user(id).await;
        assert_eq!(
            call(&w, "PUT", &format!("/users/{id}/binding"), None)
                .await
                .0,
            200
        );
        let account = World::object_id(&w.binding(id).await);
        w.directory.soft_delete(&w.tenant.id, &account).unwrap();
        m365_engine::usecase::unbind::Unbind::new(&w)
            .unbind(&uid(id))
            .await
            .unwrap();
        assert_eq!(w.binding(id).await.state, BindingState::DeletedInM365);
    }
    let (status, body) = call(&w, "PUT", "/users/adele/binding", Some("{}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["restored"], true, "{body}");
    let (status, body) = call(
        &w,
        "PUT",
        "/users/bob/binding",
        Some(r#"{"restore":false}"#),
    )
    .await;
    assert_eq!(status, 202, "the address wait: {body}");
    assert_eq!(body["binding"]["restored"], false, "{body}");
    assert_eq!(body["binding"]["pendingReason"], "address_held", "{body}");
    let (status, body) = call(&w, "PUT", "/users/bob/binding", Some(r#"{"restore":"no"}"#)).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (400, "invalid_json".into())
    );
}
