//! `password_push::handle` driven with real API Gateway v2 event JSON on the engine's in-memory
//! `World`: routing, bad input and policy refusals answered with a 4xx and a machine-readable code
//! with nothing stored (R-SAFE-1, R-PWD-1), and a password stored and pushed to the bound account
//! (R-PWD-2) — never echoed (R-SAFE-2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::model::EventKind;
use m365_engine::ports::UserStore;
use m365_engine::testing::{World, uid};
use m365_lambda::testing::{api_event, status_and_json};
use password_push::handle;
use secrecy::ExposeSecret;
use serde_json::Value;

const PASSWORD: &str = "Directory-Pass-42!";

async fn call(w: &World, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let response = handle(w, api_event(method, path, &[], body)).await.unwrap();
    status_and_json(&response)
}

#[tokio::test]
async fn unknown_routes_bad_input_and_weak_passwords_get_a_4xx_and_nothing_is_stored() {
    // R-SAFE-1, R-PWD-1
    let w = World::new().await;
    w.user("adele").await;
    for (method, path, body, status, code) in [
        ("PUT", "/users/adele/password", None, 404, "route_not_found"),
        ("POST", "/users/adele/password", None, 400, "invalid_json"),
        (
            "POST",
            "/users/adele/password",
            Some("{not json"),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/users/adele/password",
            Some(r#"{"password":"Abc-123-xyz!","extra":1}"#),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/users/adele/password",
            Some(r#"{"password":"short"}"#),
            400,
            "password_policy",
        ),
        (
            "POST",
            "/users/nobody/password",
            Some(r#"{"password":"Directory-Pass-42!"}"#),
            404,
            "not_found",
        ),
    ] {
        let (got, answer) = call(&w, method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
        assert!(
            !answer.to_string().contains("short"),
            "never echoed: {answer}"
        );
    }
    let user = UserStore::get(&w.users, &uid("adele"))
        .await
        .unwrap()
        .unwrap();
    assert!(user.password.is_none(), "nothing stored");
}

#[tokio::test]
async fn a_password_of_a_bound_user_is_stored_and_pushed_with_204() {
    // R-PWD-2
    let w = World::new().await;
    w.user("adele").await;
    w.bind("adele").await;
    let account = World::object_id(&w.binding("adele").await);
    let body = format!(r#"{{"password":"{PASSWORD}"}}"#);
    let response = handle(
        &w,
        api_event("POST", "/users/adele/password", &[], Some(&body)),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let pushed = w.directory.password(&w.tenant.id, &account).unwrap();
    assert_eq!(pushed.expose_secret(), PASSWORD);
    assert_eq!(w.count_events(EventKind::UserPasswordUpdateProvision), 1);
    let user = UserStore::get(&w.users, &uid("adele"))
        .await
        .unwrap()
        .unwrap();
    assert!(user.password.is_some(), "stored sealed");
}

#[tokio::test]
async fn a_password_of_an_unbound_user_is_stored_only() {
    // R-PWD-2 (pushed when the user is bound)
    let w = World::new().await;
    w.user("adele").await;
    let body = format!(r#"{{"password":"{PASSWORD}"}}"#);
    let response = handle(
        &w,
        api_event("POST", "/users/adele/password", &[], Some(&body)),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(w.directory.calls(), 0);
    let user = UserStore::get(&w.users, &uid("adele"))
        .await
        .unwrap()
        .unwrap();
    assert!(user.password.is_some());
}
