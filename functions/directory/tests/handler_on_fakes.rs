//! `directory::handle` driven with real API Gateway v2 event JSON on the engine's in-memory fakes
//! (`World`): every route, bad input answered with a 4xx and a machine-readable code with nothing
//! written (R-SAFE-1), and the rules behind the routes — a bound user's email is locked (R-BIND-1),
//! attribute pushes (R-BIND-7), suspension (R-BIND-9), group binding and mirroring (R-GRP-1), the
//! audit listings (R-AUD-1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use directory::handle;
use m365_engine::model::{EventKind, GroupId, TenantId, UserState};
use m365_engine::ports::{GroupStore, UserStore};
use m365_engine::testing::{World, uid};
use m365_lambda::testing::{api_event as event, status_and_json};
use serde_json::{Value, json};

async fn call(w: &World, request: lambda_http::Request) -> (u16, Value) {
    status_and_json(&handle(w, request).await.unwrap())
}

async fn put(w: &World, path: &str, body: &Value) -> (u16, Value) {
    call(w, event("PUT", path, &[], Some(&body.to_string()))).await
}

async fn get(w: &World, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
    call(w, event("GET", path, query, None)).await
}

fn user(id: &str, display_name: &str) -> Value {
    json!({"email": format!("{id}@contoso.com"), "displayName": display_name})
}

/// A user put through the API, then bound (the bind is the `bind` function's; here the engine's).
async fn bound(w: &World, id: &str) {
    let (status, body) = put(w, &format!("/users/{id}"), &user(id, id)).await;
    assert_eq!(status, 201, "{body}");
    w.bind(id).await;
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_a_code_and_nothing_is_written() {
    // R-SAFE-1
    let w = World::new().await;
    let members: Vec<String> = (0..=directory::MAX_GROUP_MEMBERS)
        .map(|n| format!("u{n}"))
        .collect();
    let too_many = json!({"name": "Sales", "members": members}).to_string();
    let huge = json!({"email": "a@contoso.com", "displayName": "x".repeat(20_000)}).to_string();
    let long_id = "a".repeat(65);
    let tenant = w.tenant.id.to_string();
    let cases: Vec<(lambda_http::Request, u16, &str)> = vec![
        (
            event("PUT", "/users/adele", &[], Some("{not json")),
            400,
            "invalid_json",
        ),
        (event("PUT", "/users/adele", &[], None), 400, "invalid_json"),
        (
            event(
                "PUT",
                "/users/adele",
                &[],
                Some(r#"{"email":"adele@contoso.com","displayName":"A","extra":1}"#),
            ),
            400,
            "invalid_json",
        ),
        (
            event(
                "PUT",
                "/users/adele",
                &[],
                Some(r#"{"email":"adele@contoso.com","displayName":"A","state":"gone"}"#),
            ),
            400,
            "invalid_json",
        ),
        (
            event(
                "PUT",
                "/users/adele",
                &[],
                Some(r#"{"email":"not an email","displayName":"A"}"#),
            ),
            400,
            "invalid_email",
        ),
        (
            event(
                "PUT",
                "/users/adele",
                &[],
                Some(r#"{"email":"adele@contoso.com","displayName":"  "}"#),
            ),
            400,
            "invalid_field",
        ),
        (
            event(
                "PUT",
                "/users/adele",
                &[],
                Some(&user("adele", "Evil\u{202e}Name").to_string()),
            ),
            400,
            "invalid_name",
        ),
        (
            event("PUT", "/users/adele", &[], Some(&huge)),
            413,
            "body_too_large",
        ),
        (
            event(
                "PUT",
                &format!("/users/{long_id}"),
                &[],
                Some(&user("a", "A").to_string()),
            ),
            400,
            "invalid_id",
        ),
        (event("GET", "/users/nobody", &[], None), 404, "not_found"),
        (
            event("PUT", "/groups/sales", &[], Some(&too_many)),
            400,
            "invalid_field",
        ),
        (
            event(
                "PUT",
                "/groups/sales",
                &[],
                Some(r#"{"name":"Sales","members":["not a user"]}"#),
            ),
            400,
            "invalid_id",
        ),
        (
            event("PUT", "/groups/sales", &[], Some(r#"{"name":" "}"#)),
            400,
            "invalid_field",
        ),
        (
            event("PUT", "/groups/-sales", &[], Some(r#"{"name":"Sales"}"#)),
            400,
            "invalid_id",
        ),
        (event("GET", "/groups/nothing", &[], None), 404, "not_found"),
        (
            event("GET", "/groups/nothing/binding", &[], None),
            404,
            "not_found",
        ),
        (
            event(
                "PUT",
                "/groups/sales/binding",
                &[],
                Some(r#"{"tenantId":"not-a-guid"}"#),
            ),
            400,
            "invalid_id",
        ),
        (
            event(
                "PUT",
                "/groups/sales/binding",
                &[],
                Some(&json!({"tenantId": tenant}).to_string()),
            ),
            404,
            "not_found",
        ),
        (event("GET", "/events", &[], None), 400, "invalid_filter"),
        (
            event(
                "GET",
                "/events",
                &[("userId", "adele"), ("type", "user_deprovision")],
                None,
            ),
            400,
            "invalid_filter",
        ),
        (
            event("GET", "/events", &[("type", "user_vanished")], None),
            400,
            "invalid_event_type",
        ),
        (
            event(
                "GET",
                "/events",
                &[("userId", "adele"), ("since", "yesterday")],
                None,
            ),
            400,
            "invalid_since",
        ),
        (
            event(
                "GET",
                "/events",
                &[("userId", "adele"), ("limit", "0")],
                None,
            ),
            400,
            "invalid_field",
        ),
        (
            event(
                "GET",
                "/events",
                &[("userId", "adele"), ("limit", "101")],
                None,
            ),
            400,
            "invalid_field",
        ),
        (
            event(
                "GET",
                "/events",
                &[("userId", "adele"), ("cursor", "forged.cursor")],
                None,
            ),
            400,
            "invalid_cursor",
        ),
        (
            event("GET", "/tenants/not-a-guid/failures", &[], None),
            400,
            "invalid_id",
        ),
        (
            event("DELETE", "/users/adele", &[], None),
            404,
            "route_not_found",
        ),
    ];
    for (request, status, expected) in cases {
        let (got, body) = call(&w, request).await;
        assert_eq!((got, code(&body)), (status, Some(expected)), "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(w.users.get(&uid("adele")).await.unwrap(), None);
    let sales = GroupId::parse("sales").unwrap();
    assert_eq!(w.groups.get(&sales).await.unwrap(), None);
    assert!(w.events.all().is_empty());
    assert_eq!(w.directory.calls(), 0, "nothing reached M365");
}

#[tokio::test]
async fn a_user_is_created_shown_and_saved_again_without_a_write() {
    // R-SAFE-1 (never the sealed password: only whether one is set)
    let w = World::new().await;
    let (status, created) = put(&w, "/users/adele", &user("adele", " Adele Vance ")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["sync"], "not_bound");
    assert_eq!(created["user"]["displayName"], "Adele Vance");
    assert_eq!(created["user"]["passwordSet"], false);
    assert!(created.get("binding").is_none());
    let (status, shown) = get(&w, "/users/adele", &[]).await;
    assert_eq!((status, &shown), (200, &created["user"]));
    let (status, again) = put(&w, "/users/adele", &user("adele", "Adele Vance")).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["sync"], "unchanged");
    assert_eq!(again["user"]["version"], created["user"]["version"]);
}

#[tokio::test]
async fn the_email_of_a_bound_user_cannot_change_409_and_nothing_is_written() {
    // R-BIND-1 (the email is the UPN the tenant was routed by), R-SAFE-1
    let w = World::new().await;
    bound(&w, "adele").await;
    let (_, before) = get(&w, "/users/adele", &[]).await;
    let moved = json!({"email": "adele.vance@contoso.com", "displayName": "Adele"});
    let (status, body) = put(&w, "/users/adele", &moved).await;
    assert_eq!(
        (status, code(&body)),
        (409, Some("email_change_while_bound")),
        "{body}"
    );
    let (_, after) = get(&w, "/users/adele", &[]).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_changed_attribute_of_a_bound_user_is_pushed_and_listed_as_an_event() {
    // R-BIND-7, R-AUD-1
    let w = World::new().await;
    bound(&w, "adele").await;
    w.clock.advance(chrono::TimeDelta::minutes(1));
    let (status, body) = put(&w, "/users/adele", &user("adele", "Adele V.")).await;
    assert_eq!(
        (status, body["sync"].as_str()),
        (200, Some("done")),
        "{body}"
    );
    assert!(body.get("binding").is_none());
    let account = World::object_id(&w.binding("adele").await);
    let m365 = w.directory.user(&w.tenant.id, &account).unwrap();
    assert_eq!(m365.display_name, "Adele V.");
    let (status, first) = get(&w, "/events", &[("userId", "adele"), ("limit", "1")]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["events"][0]["type"], "user_update_provision");
    let cursor = first["nextCursor"].as_str().expect("a second page");
    let (_, second) = get(&w, "/events", &[("userId", "adele"), ("cursor", cursor)]).await;
    assert_eq!(second["events"][0]["type"], "user_create_provision");
    assert_eq!(second["nextCursor"], Value::Null);
    let (status, foreign) = get(
        &w,
        "/events",
        &[("type", "user_update_provision"), ("cursor", cursor)],
    )
    .await;
    assert_eq!(
        (status, code(&foreign)),
        (400, Some("invalid_cursor")),
        "another listing's cursor"
    );
}

#[tokio::test]
async fn a_throttled_push_is_deferred_and_its_failure_is_listed_for_the_tenant() {
    // R-BIND-6, R-BIND-7, R-AUD-1 (failures with Graph's request id)
    let w = World::new().await;
    bound(&w, "adele").await;
    w.directory.fail_next_call(m365_engine::Error::Throttled {
        retry_after: Some(std::time::Duration::from_secs(3)),
        graph_request_id: Some("req-429".to_owned()),
    });
    let (status, body) = put(&w, "/users/adele", &user("adele", "Adele V.")).await;
    assert_eq!(
        (status, body["sync"].as_str()),
        (200, Some("deferred")),
        "{body}"
    );
    assert_eq!(body["user"]["displayName"], "Adele V.", "stored either way");
    let path = format!("/tenants/{}/failures", w.tenant.id);
    let (status, listed) = get(&w, &path, &[]).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["failures"][0]["graphRequestId"], "req-429");
    let other = format!("/tenants/{}/failures", TenantId::generate());
    let (_, none) = get(&w, &other, &[]).await;
    assert_eq!(none["failures"], json!([]));
}

#[tokio::test]
async fn disabling_a_bound_user_suspends_it_and_enabling_it_reactivates_it() {
    // R-BIND-9
    let w = World::new().await;
    bound(&w, "adele").await;
    let account = World::object_id(&w.binding("adele").await);
    let mut disabled = user("adele", "adele");
    disabled["state"] = json!("disabled");
    let (status, body) = put(&w, "/users/adele", &disabled).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"], "done");
    assert_eq!(body["user"]["state"], "disabled");
    assert_eq!(body["binding"]["state"], "suspended");
    assert_eq!(body["binding"]["suspendedReason"], "directory_disabled");
    assert!(
        !w.directory
            .user(&w.tenant.id, &account)
            .unwrap()
            .account_enabled
    );
    assert_eq!(w.count_events(EventKind::UserDeprovision), 1);

    let (_, again) = put(&w, "/users/adele", &disabled).await;
    assert_eq!(again["sync"], "unchanged");
    assert!(again.get("binding").is_none());

    let (status, body) = put(&w, "/users/adele", &user("adele", "adele")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned");
    assert!(
        w.directory
            .user(&w.tenant.id, &account)
            .unwrap()
            .account_enabled
    );
    let stored = w.users.get(&uid("adele")).await.unwrap().unwrap();
    assert_eq!(stored.state, UserState::Active);
}

#[tokio::test]
async fn a_group_is_bound_to_a_tenant_and_its_changed_members_are_mirrored() {
    // R-GRP-1
    let w = World::new().await;
    bound(&w, "adele").await;
    bound(&w, "bob").await;
    put(&w, "/users/carol", &user("carol", "Carol")).await;
    let (status, body) = put(
        &w,
        "/groups/sales",
        &json!({"name": "Sales", "members": ["adele", "carol"]}),
    )
    .await;
    assert_eq!(
        (status, body["sync"].as_str()),
        (201, Some("not_bound")),
        "{body}"
    );
    assert_eq!(body["group"]["binding"], Value::Null);

    let tenant = json!({"tenantId": w.tenant.id.to_string()});
    let (status, bound_group) = put(&w, "/groups/sales/binding", &tenant).await;
    assert_eq!(status, 200, "{bound_group}");
    assert_eq!(bound_group["outcome"], "done");
    assert_eq!(bound_group["change"], "created");
    assert_eq!(bound_group["added"], 1, "only the bound member");
    assert_eq!(bound_group["binding"]["groupId"], "sales");
    let (status, shown) = get(&w, "/groups/sales/binding", &[]).await;
    assert_eq!(
        (status, shown["state"].as_str()),
        (200, Some("provisioned")),
        "{shown}"
    );

    let (status, body) = put(
        &w,
        "/groups/sales",
        &json!({"name": "Sales", "members": ["adele", "bob", "carol"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"], "done");
    assert_eq!(body["group"]["binding"]["state"], "provisioned");
    let (_, renamed) = put(
        &w,
        "/groups/sales",
        &json!({"name": "Sales EU", "members": ["adele", "bob", "carol"]}),
    )
    .await;
    assert_eq!(
        renamed["sync"], "unchanged",
        "members unchanged: nothing pushed"
    );
    let (status, group) = get(&w, "/groups/sales", &[]).await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["name"], "Sales EU");
    assert_eq!(group["members"], json!(["adele", "bob", "carol"]));
    assert_eq!(
        group["binding"]["tenantId"],
        w.tenant.id.to_string(),
        "the binding survives the upsert"
    );
}

#[tokio::test]
async fn a_group_bind_meeting_replication_lag_is_accepted_and_waits_on_the_retry_queue() {
    // R-GRP-1, R-BIND-6 (a new group's member adds are refused for a while)
    let w = World::new().await;
    bound(&w, "adele").await;
    w.directory
        .set_replication_lag(chrono::TimeDelta::minutes(5));
    put(
        &w,
        "/groups/sales",
        &json!({"name": "Sales", "members": ["adele"]}),
    )
    .await;
    let tenant = json!({"tenantId": w.tenant.id.to_string()});
    let (status, body) = put(&w, "/groups/sales/binding", &tenant).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["outcome"], "deferred");
    assert_eq!(body["binding"]["state"], "pending");
    assert_eq!(w.queue.snapshot().len(), 1);
}

#[tokio::test]
async fn the_r_attr_1_attributes_are_saved_shown_and_every_bad_one_is_listed() {
    // R-ATTR-1, R-SAFE-1
    let w = World::new().await;
    let mut body = user("adele", "Adele");
    let attributes = json!({
        "employeeId": "E-1001", "officeLocation": "18/2111", "mobilePhone": "+1 425 555 0109",
        "businessPhones": ["+1 425 555 0100"], "companyName": "Contoso", "usageLocation": "US",
        "city": "Redmond", "country": "United States"
    });
    body.as_object_mut()
        .unwrap()
        .extend(attributes.as_object().unwrap().clone());
    let (status, created) = put(&w, "/users/adele", &body).await;
    assert_eq!(status, 201, "{created}");
    for (name, value) in attributes.as_object().unwrap() {
        assert_eq!(&created["user"][name], value, "{name}");
    }
    let (_, shown) = get(&w, "/users/adele", &[]).await;
    assert_eq!(shown, created["user"]);

    let bad = json!({"email": "adele@contoso.com", "displayName": "Adele",
        "employeeId": "E".repeat(17), "businessPhones": ["1", "2"], "usageLocation": "UK"});
    let (status, refused) = put(&w, "/users/adele", &bad).await;
    assert_eq!(
        (status, code(&refused)),
        (400, Some("invalid_field")),
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    for field in ["employeeId", "businessPhones", "usageLocation"] {
        assert!(message.contains(field), "{field} listed: {message}");
    }
    let fields: Vec<&str> = refused["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        vec!["employeeId", "usageLocation", "businessPhones"]
    );
    let (_, after) = get(&w, "/users/adele", &[]).await;
    assert_eq!(after, created["user"], "nothing written");
}

#[tokio::test]
async fn tenant_settings_are_shown_saved_and_refused_with_the_known_names() {
    // R-LIC-1, R-SAFE-1
    let w = World::new().await;
    w.licensing.subscribe(
        &w.tenant.id,
        "e3-id",
        "ENTERPRISEPACK",
        5,
        &[("sway-id", "SWAY")],
    );
    let path = format!("/tenants/{}/settings", w.tenant.id);
    let (status, body) = get(&w, &path, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["licenses"], json!([]));
    assert_eq!(body["removeLicensesOnUnbind"], false);
    let (status, body) = put(&w, &path, &json!({"licenses": [{"sku": "E5"}]})).await;
    assert_eq!((status, code(&body)), (400, Some("unknown_sku")), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ENTERPRISEPACK")
    );
    let (status, body) = put(
        &w,
        &path,
        &json!({"usageLocation": "us", "licenses": [{"sku": "ENTERPRISEPACK", "disabledPlans": ["SWAY"]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usageLocation"], "US");
    let (_, shown) = get(&w, &path, &[]).await;
    assert_eq!(shown, body);
    let (status, body) = get(
        &w,
        &format!("/tenants/{}/settings", TenantId::generate()),
        &[],
    )
    .await;
    assert_eq!((status, code(&body)), (404, Some("not_found")), "{body}");
}

#[tokio::test]
async fn a_notification_email_is_saved_shown_refused_when_invalid_and_cleared_when_absent() {
    // R-NOT-1, R-SAFE-1
    let w = World::new().await;
    let mut body = user("adele", "Adele");
    body["notificationEmail"] = json!("Adele.Home@Example.org");
    let (status, created) = put(&w, "/users/adele", &body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["user"]["notificationEmail"],
        "adele.home@example.org"
    );
    let (_, shown) = get(&w, "/users/adele", &[]).await;
    assert_eq!(shown["notificationEmail"], "adele.home@example.org");

    body["notificationEmail"] = json!("adele at home");
    let (status, refused) = put(&w, "/users/adele", &body).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(code(&refused), Some("invalid_email"));
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("notificationEmail"), "{message}");
    let stored = w.users.get(&uid("adele")).await.unwrap().unwrap();
    assert_eq!(
        stored.notification_email.map(|e| e.to_string()).as_deref(),
        Some("adele.home@example.org"),
        "nothing written"
    );

    // PUT replaces the user: without the field, it is cleared (as every optional attribute).
    let (status, cleared) = put(&w, "/users/adele", &user("adele", "Adele")).await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(cleared["user"]["notificationEmail"], Value::Null);
}
