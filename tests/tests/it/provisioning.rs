//! The provisioning functions end to end (issue 5): `directory`, `bind`, `unbind`,
//! `password-push` and `retry-worker` on moto (DynamoDB, SQS with a DLQ, Secrets Manager) and the
//! m365-emulator, each handler called with real API Gateway v2 events and the retry worker driven
//! in-process from the real retry queue. Every test names the requirement it proves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::HashMap;

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use chrono::TimeDelta;

use m365_engine::ports::TokenVault;
use m365_integration_tests::started;
use m365_integration_tests::{
    APP_SECRET, CONTOSO, Functions, OffsetClock, ProvisioningResources, SEAL_KEY, World,
    api_request, capture_logs, queue_depth,
};
use m365_lambda::provision::Deployed;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// A connected Contoso, the retry and notifications queues, the seal key, and the functions'
/// wiring on them.
struct Stack {
    world: World,
    /// Each function's wiring (as separate Lambdas).
    fns: Functions,
    clock: OffsetClock,
    sqs: aws_sdk_sqs::Client,
    retry_url: String,
    dlq_url: String,
    notifications_url: String,
    tenant: String,
}

impl Stack {
    async fn start() -> Option<Self> {
        Self::start_with_users(Vec::new()).await
    }

    /// [`Self::start`] with `extra` Contoso users seeded in the emulator (Graph user JSON).
    async fn start_with_users(extra: Vec<Value>) -> Option<Self> {
        let mut world = World::start_with_users(extra).await?;
        let sqs = aws_sdk_sqs::Client::new(&world.sdk);
        let ProvisioningResources {
            retry_url,
            dlq_url,
            notifications_url,
        } = world.add_provisioning_resources("prov").await;
        let tenant = world.connect_contoso("Contoso").await;
        let clock = OffsetClock::default();
        let fns = Functions::new(|| {
            let graph = world.graph_app();
            let mut deps = Deployed::with_clock(&world.app, &graph, clock.clone());
            Functions::short_retry_waits(&mut deps);
            deps.retry.address_interval = Duration::from_secs(1);
            deps.retry.max_attempts = 12;
            deps
        });
        Some(Self {
            world,
            fns,
            clock,
            sqs,
            retry_url,
            dlq_url,
            notifications_url,
            tenant,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_query(method, path, &[], body).await
    }

    async fn call_query(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        self.fns.call(method, path, query, body).await
    }

    /// Binds `user` and runs the worker until the binding settles; the binding.
    async fn bind_settled(&self, user: &str) -> Value {
        let (status, body) = self
            .call("PUT", &format!("/users/{user}/binding"), None)
            .await;
        assert!(status == 200 || status == 202, "{status} {body}");
        if status == 202 {
            self.clock.advance(TimeDelta::seconds(5));
            self.drain(Duration::from_secs(20)).await;
        }
        let (_, shown) = self
            .call("GET", &format!("/users/{user}/binding"), None)
            .await;
        assert_eq!(shown["state"], "provisioned", "{shown}");
        shown
    }

    async fn put_user(&self, id: &str, email: &str, extra: Value) -> Value {
        let mut body = json!({"email": email, "displayName": format!("User {id}")});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
        answer
    }

    /// The emulator's users of Contoso by lower-case UPN (active and soft-deleted).
    async fn m365_users(&self) -> Vec<Value> {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        t["users"].as_array().unwrap().clone()
    }

    async fn m365_active(&self, upn: &str) -> Vec<Value> {
        self.m365_users()
            .await
            .into_iter()
            .filter(|u| {
                u["deletedAt"].is_null()
                    && u["properties"]["userPrincipalName"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case(upn))
            })
            .map(|u| u["properties"].clone())
            .collect()
    }

    async fn events(&self, query: &[(&str, &str)]) -> Vec<Value> {
        let (status, body) = self.call_query("GET", "/events", query, None).await;
        assert_eq!(status, 200, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    async fn receive(&self, url: &str, max: i32) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(0)
            .visibility_timeout(1)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    async fn queue_depth(&self, url: &str) -> usize {
        queue_depth(&self.sqs, url).await
    }

    /// Runs the worker until the retry queue is empty (or `deadline` passes).
    async fn drain(&self, deadline: Duration) -> Vec<String> {
        self.fns.drain(&self.sqs, &self.retry_url, deadline).await
    }

    /// Deletes a user in M365 (as an admin would in the portal): a soft delete whose address stays
    /// held for the emulator's address release delay.
    async fn delete_in_m365(&self, upn: &str) {
        let (status, body) = self
            .world
            .emulator
            .graph_as_app(
                CONTOSO,
                reqwest::Method::DELETE,
                &format!("/users/{upn}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }
}

/// Whether `text` holds something shaped like a JWT (`eyJ…` base64url, dot, base64url, dot).
fn contains_jwt(text: &str) -> bool {
    let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.match_indices("eyJ").any(|(at, _)| {
        let mut parts = text[at..].splitn(3, '.');
        let (Some(header), Some(payload)) = (parts.next(), parts.next()) else {
            return false;
        };
        header.len() > 10
            && header.chars().all(url_safe)
            && payload.len() > 10
            && payload.chars().all(url_safe)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_creates_the_account_with_the_directory_attributes_and_sends_the_welcome() {
    // R-BIND-1, R-BIND-3, R-BIND-4
    let s = started!(Stack::start());
    s.put_user(
        "alice",
        "alice@contoso.com",
        json!({"givenName": "Alice", "surname": "Smith", "jobTitle": "Engineer", "department": "R&D"}),
    )
    .await;
    let (status, body) = s.call("PUT", "/users/alice/binding", Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned", "{body}");
    assert_eq!(body["binding"]["tenantId"], s.tenant.as_str());
    let accounts = s.m365_active("alice@contoso.com").await;
    assert_eq!(accounts.len(), 1);
    let account = &accounts[0];
    assert_eq!(account["jobTitle"], "Engineer");
    assert_eq!(account["department"], "R&D");
    assert_eq!(account["givenName"], "Alice");
    assert_eq!(account["accountEnabled"], true);
    assert_eq!(body["binding"]["m365ObjectId"], account["id"]);
    let events = s.events(&[("userId", "alice")]).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(kinds, ["user_create_provision"]);
    let (status, shown) = s.call("GET", "/users/alice/binding", None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["state"], "provisioned");
    let welcome = s.receive(&s.notifications_url, 10).await;
    assert_eq!(welcome.len(), 1, "one welcome notification");
    let text = welcome[0].body.clone().unwrap_or_default();
    assert!(text.contains("alice@contoso.com"), "{text}");
    assert!(!text.to_lowercase().contains("password"), "{text}");
    // Binding again changes nothing (R-BIND-2: never a duplicate).
    let (status, again) = s.call("PUT", "/users/alice/binding", None).await;
    assert_eq!(status, 200);
    assert_eq!(again["outcome"], "unchanged");
    assert_eq!(s.m365_active("alice@contoso.com").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_of_an_existing_m365_user_adopts_it_without_a_second_account() {
    // R-BIND-2, R-BIND-3
    let s = started!(Stack::start());
    let before = s.m365_active("adele@contoso.com").await;
    assert_eq!(before.len(), 1, "seeded");
    s.put_user("adele", "adele@contoso.com", json!({"jobTitle": "Buyer"}))
        .await;
    let (status, body) = s
        .call(
            "PUT",
            "/users/adele/binding",
            Some(json!({"welcome": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["m365ObjectId"], before[0]["id"]);
    let after = s.m365_active("adele@contoso.com").await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0]["jobTitle"], "Buyer",
        "attributes synced on adoption"
    );
    let kinds: Vec<String> = s
        .events(&[("userId", "adele")])
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["user_update_provision"]);
    assert!(
        s.receive(&s.notifications_url, 10).await.is_empty(),
        "welcome: false sends nothing (R-BIND-4)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbind_blocks_and_never_deletes_and_rebind_unblocks_the_same_object() {
    // R-BIND-5
    let s = started!(Stack::start());
    s.put_user("bob", "bob@contoso.com", json!({})).await;
    let (_, bound) = s.call("PUT", "/users/bob/binding", None).await;
    let object = bound["binding"]["m365ObjectId"].clone();
    let (status, body) = s.call("DELETE", "/users/bob/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "blocked");
    let accounts = s.m365_active("bob@contoso.com").await;
    assert_eq!(accounts.len(), 1, "never deleted");
    assert_eq!(accounts[0]["accountEnabled"], false);
    let (status, body) = s.call("PUT", "/users/bob/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned");
    assert_eq!(body["binding"]["m365ObjectId"], object, "the same object");
    let accounts = s.m365_active("bob@contoso.com").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["accountEnabled"], true);
    let mut kinds: Vec<String> = s
        .events(&[("userId", "bob")])
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.reverse();
    assert_eq!(
        kinds,
        [
            "user_create_provision",
            "user_deprovision",
            "user_update_provision"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_whose_domain_routes_nowhere_or_to_a_federated_domain_get_a_clear_4xx() {
    // R-BIND-1, R-SAFE-1
    let s = started!(Stack::start());
    s.put_user("nora", "nora@fabrikam.example", json!({})).await;
    s.put_user("fred", "fred@sso.contoso.com", json!({})).await;
    for user in ["nora", "fred"] {
        let (status, body) = s.call("PUT", &format!("/users/{user}/binding"), None).await;
        assert!((400..500).contains(&status), "{user}: {status} {body}");
        assert!(body["error"]["code"].is_string(), "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
        let (status, _) = s.call("GET", &format!("/users/{user}/binding"), None).await;
        assert_eq!(status, 404, "nothing written for {user}");
    }
    assert!(s.m365_active("fred@sso.contoso.com").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_with_a_code_and_nothing_is_written() {
    // R-SAFE-1
    let s = started!(Stack::start());
    let long = "u".repeat(65);
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("PUT", "/users/carol".into(), Some(json!("{garbage"))),
        (
            "PUT",
            "/users/carol".into(),
            Some(json!({"email": "carol@contoso.com", "displayName": "C", "tenantId": s.tenant})),
        ),
        (
            "PUT",
            "/users/carol".into(),
            Some(json!({"email": "not-an-email", "displayName": "C"})),
        ),
        (
            "PUT",
            "/users/carol".into(),
            Some(json!({"email": "carol@contoso.com", "displayName": "   "})),
        ),
        (
            "PUT",
            format!("/users/{long}"),
            Some(json!({"email": "carol@contoso.com", "displayName": "C"})),
        ),
        (
            "PUT",
            "/users/carol/binding".into(),
            Some(json!({"tenantId": s.tenant})),
        ),
        (
            "POST",
            "/users/carol/password".into(),
            Some(json!({"pwd": "x"})),
        ),
        (
            "PUT",
            "/groups/g1".into(),
            Some(json!({"name": "G", "members": [long]})),
        ),
        ("PUT", "/groups/g1".into(), Some(json!({"name": ""}))),
    ];
    for (method, path, body) in cases {
        let request_body = match body {
            Some(Value::String(raw)) => {
                // A raw, non-JSON body.
                let request = api_request(method, &path, &[], None);
                let (parts, _) = request.into_parts();
                let request = lambda_http::Request::from_parts(parts, lambda_http::Body::Text(raw));
                let response = directory::handle(&s.fns.directory, request).await.unwrap();
                let status = response.status().as_u16();
                assert_eq!(status, 400, "{method} {path}");
                continue;
            }
            other => other,
        };
        let (status, answer) = s.call(method, &path, request_body).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    for (method, path, query) in [
        ("GET", "/events", vec![]),
        (
            "GET",
            "/events",
            vec![("userId", "a"), ("type", "user_deprovision")],
        ),
        ("GET", "/events", vec![("type", "nope")]),
        (
            "GET",
            "/events",
            vec![("userId", "a"), ("since", "yesterday")],
        ),
        (
            "GET",
            "/events",
            vec![("userId", "a"), ("cursor", "forged")],
        ),
        ("GET", "/tenants/not-a-guid/failures", vec![]),
    ] {
        let (status, answer) = s.call_query(method, path, &query, None).await;
        assert!(
            (400..500).contains(&status),
            "{path} {query:?}: {status} {answer}"
        );
    }
    let (status, _) = s.call("GET", "/users/carol", None).await;
    assert_eq!(status, 404, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_changes_of_a_bound_user_reach_m365_with_user_update_provision() {
    // R-BIND-7
    let s = started!(Stack::start());
    s.put_user("dan", "dan@contoso.com", json!({"jobTitle": "Clerk"}))
        .await;
    let (status, _) = s.call("PUT", "/users/dan/binding", None).await;
    assert_eq!(status, 200);
    let answer = s
        .put_user(
            "dan",
            "dan@contoso.com",
            json!({"jobTitle": "Manager", "department": "Sales"}),
        )
        .await;
    assert_eq!(answer["sync"], "done", "{answer}");
    let account = &s.m365_active("dan@contoso.com").await[0];
    assert_eq!(account["jobTitle"], "Manager");
    assert_eq!(account["department"], "Sales");
    let kinds: Vec<String> = s
        .events(&[("userId", "dan")])
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["user_update_provision", "user_create_provision"]);
    // The same attributes again: nothing pushed, no event.
    let answer = s
        .put_user(
            "dan",
            "dan@contoso.com",
            json!({"jobTitle": "Manager", "department": "Sales"}),
        )
        .await;
    assert_eq!(answer["sync"], "unchanged");
    assert_eq!(s.events(&[("userId", "dan")]).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_push_reaches_m365_and_a_policy_violating_password_is_refused_unstored() {
    // R-PWD-1, R-PWD-2, R-SAFE-2
    let logs = capture_logs();
    let s = started!(Stack::start());
    s.put_user("erin", "erin@contoso.com", json!({})).await;
    let (status, _) = s.call("PUT", "/users/erin/binding", None).await;
    assert_eq!(status, 200);
    let before = s.m365_active("erin@contoso.com").await[0]["lastPasswordChangeDateTime"].clone();
    s.world.emulator.advance_clock(5).await;
    let weak = "weakling7";
    let (status, body) = s
        .call(
            "POST",
            "/users/erin/password",
            Some(json!({"password": weak})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "password_policy");
    assert!(
        !body.to_string().contains(weak),
        "the password is not echoed"
    );
    let (_, user) = s.call("GET", "/users/erin", None).await;
    assert_eq!(user["passwordSet"], false, "nothing stored");

    let strong = "Str0ng-Pushed-Secret!";
    let (status, body) = s
        .call(
            "POST",
            "/users/erin/password",
            Some(json!({"password": strong})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let after = s.m365_active("erin@contoso.com").await[0]["lastPasswordChangeDateTime"].clone();
    assert_ne!(before, after, "lastPasswordChangeDateTime moved");
    let (_, user) = s.call("GET", "/users/erin", None).await;
    assert_eq!(user["passwordSet"], true);
    let events = s.events(&[("userId", "erin")]).await;
    assert_eq!(events[0]["type"], "user_password_update_provision");
    for text in [
        logs.text(),
        serde_json::to_string(&events).unwrap(),
        user.to_string(),
    ] {
        assert!(!text.contains(strong), "the password leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_in_m365_shows_deleted_in_m365_and_rebind_waits_out_the_address_hold() {
    // R-BIND-8, R-BIND-6, R-BIND-10 (`"restore": false` keeps the address wait)
    let s = started!(Stack::start());
    s.world
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/realism",
            json!({"addressReleaseDelayMs": 24 * 3600 * 1000}),
        )
        .await;
    let user = s
        .put_user("gus", "gus@contoso.com", json!({"jobTitle": "Driver"}))
        .await;
    s.bind_settled("gus").await;
    s.delete_in_m365("gus@contoso.com").await;
    let (status, body) = s.call("DELETE", "/users/gus/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "deleted_in_m365", "{body}");
    let (_, unchanged) = s.call("GET", "/users/gus", None).await;
    assert_eq!(unchanged, user["user"], "the directory user is unchanged");

    let (status, body) = s
        .call("PUT", "/users/gus/binding", Some(json!({"restore": false})))
        .await;
    assert_eq!(status, 202, "the address is still held: {body}");
    assert_eq!(body["binding"]["state"], "pending");
    assert!(body["binding"]["pendingReason"].is_string(), "{body}");
    // While M365 holds the address the worker keeps waiting.
    s.drain(Duration::from_secs(3)).await;
    let (_, shown) = s.call("GET", "/users/gus/binding", None).await;
    assert_eq!(shown["state"], "pending", "{shown}");
    // 25 hours later M365 has released the address.
    s.world
        .emulator
        .send(
            reqwest::Method::POST,
            "/_emulator/clock/advance",
            json!({"days": 1, "seconds": 3600}),
        )
        .await;
    s.clock.advance(TimeDelta::hours(25));
    s.drain(Duration::from_secs(20)).await;
    let (_, shown) = s.call("GET", "/users/gus/binding", None).await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_eq!(shown["restored"], false, "a new account: {shown}");
    let accounts = s.m365_active("gus@contoso.com").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(shown["m365ObjectId"], accounts[0]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebind_right_after_m365_releases_the_address_creates_the_account_at_once() {
    // R-BIND-6, R-BIND-8 (M365 refused the create: no lookup grace to wait out), R-BIND-10
    // (`"restore": false`)
    let s = started!(Stack::start());
    s.world
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/realism",
            json!({"addressReleaseDelayMs": 3_600_000}),
        )
        .await;
    s.put_user("hank", "hank@contoso.com", json!({})).await;
    let old = s.bind_settled("hank").await["m365ObjectId"].clone();
    s.delete_in_m365("hank@contoso.com").await;
    let (status, body) = s.call("DELETE", "/users/hank/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "deleted_in_m365", "{body}");
    let (status, body) = s
        .call(
            "PUT",
            "/users/hank/binding",
            Some(json!({"restore": false})),
        )
        .await;
    assert_eq!(status, 202, "the address is still held: {body}");
    assert_eq!(body["binding"]["pendingReason"], "address_held", "{body}");
    // M365 releases the address an hour later (its clock); the admin binds again at once, well
    // within the minute a lost create's answer would be waited for.
    s.world.emulator.advance_clock(3_700).await;
    let (status, body) = s
        .call(
            "PUT",
            "/users/hank/binding",
            Some(json!({"restore": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned", "{body}");
    assert_ne!(body["binding"]["m365ObjectId"], old, "a new account");
    let accounts = s.m365_active("hank@contoso.com").await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(body["binding"]["m365ObjectId"], accounts[0]["id"]);
    let created: Vec<Value> = s
        .events(&[("userId", "hank")])
        .await
        .into_iter()
        .filter(|e| e["type"] == "user_create_provision")
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_binds_converge_through_throttling_5xx_lag_and_lost_answers() {
    // R-BIND-2, R-BIND-6, R-BIND-3, R-SAFE-2
    let logs = capture_logs();
    let s = started!(Stack::start());
    const N: usize = 200;
    let mut upns = Vec::new();
    for i in 0..N {
        let upn = format!("emp{i:03}@contoso.com");
        s.put_user(&format!("emp{i:03}"), &upn, json!({"department": "Ops"}))
            .await;
        upns.push(upn);
    }
    s.world
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/realism",
            json!({"replicationLagMs": 1500}),
        )
        .await;
    for (kind, count, extra) in [
        ("429", 25, json!({"retryAfter": "0.2"})),
        ("503", 15, json!({})),
        ("timeout-after-commit", 5, json!({"delayMs": 15000})),
        ("drop-after-commit", 5, json!({})),
    ] {
        let mut fault =
            json!({"method": "POST", "path": "/v1.0/users", "kind": kind, "count": count});
        fault
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let status = s
            .world
            .emulator
            .send(reqwest::Method::POST, "/_emulator/faults", fault)
            .await;
        assert!(status.is_success(), "{kind}");
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for i in 0..N {
        let (status, _) = s
            .call(
                "PUT",
                &format!("/users/emp{i:03}/binding"),
                Some(json!({"welcome": false})),
            )
            .await;
        *statuses.entry(status).or_default() += 1;
    }
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 202),
        "{statuses:?}"
    );
    assert!(
        statuses.get(&202).copied().unwrap_or(0) > 0,
        "the faults deferred some binds: {statuses:?}"
    );
    let bodies = s.drain(Duration::from_secs(240)).await;
    assert!(!bodies.is_empty(), "the worker re-drove the deferred binds");
    let left = s.world.emulator.get("/_emulator/faults").await;
    let pending: u64 = left["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["remaining"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(pending, 0, "every injected fault was hit: {left}");
    // Everything converged: every binding provisioned, once.
    let users = s.m365_users().await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for u in &users {
        if u["deletedAt"].is_null()
            && let Some(upn) = u["properties"]["userPrincipalName"].as_str()
        {
            *seen.entry(upn.to_lowercase()).or_default() += 1;
        }
    }
    for upn in &upns {
        assert_eq!(seen.get(upn), Some(&1), "{upn}: exactly one account");
    }
    for i in 0..N {
        let (_, b) = s
            .call("GET", &format!("/users/emp{i:03}/binding"), None)
            .await;
        assert_eq!(b["state"], "provisioned", "emp{i:03}: {b}");
    }
    let mut created = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("type", "user_create_provision"), ("limit", "100")];
        if let Some(c) = &cursor {
            query.push(("cursor", c.as_str()));
        }
        let (status, page) = s.call_query("GET", "/events", &query, None).await;
        assert_eq!(status, 200, "{page}");
        created += page["events"].as_array().unwrap().len();
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(created, N, "200 user_create_provision events");
    assert_eq!(
        s.queue_depth(&s.retry_url).await,
        0,
        "nothing left outside the DLQ"
    );
    assert_eq!(s.queue_depth(&s.dlq_url).await, 0, "nothing given up");
    // No secret anywhere: no queue message carries a password field, no log a token.
    for body in &bodies {
        let lower = body.to_lowercase();
        assert!(!lower.contains("password\""), "{body}");
        assert!(!lower.contains("bearer"), "{body}");
    }
    let text = logs.text();
    let tenant = m365_engine::model::TenantId::parse(s.tenant.as_str()).unwrap();
    let tokens = s.world.app.token_vault.get(&tenant).await.unwrap().unwrap();
    for secret in [
        tokens.access_token.expose_secret(),
        tokens.refresh_token.expose_secret(),
        APP_SECRET,
    ] {
        assert!(
            !text.contains(secret),
            "a token or the client secret reached the logs"
        );
        assert!(
            bodies.iter().all(|b| !b.contains(secret)),
            "…or a queue message"
        );
    }
    assert!(!contains_jwt(&text), "a JWT reached the logs");
    assert!(!text.contains(SEAL_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sqs_message_delivered_twice_changes_nothing_the_second_time() {
    // R-BIND-6 (duplicate delivery is harmless)
    let s = started!(Stack::start());
    s.put_user("hal", "hal@contoso.com", json!({})).await;
    s.world
        .emulator
        .send(
            reqwest::Method::POST,
            "/_emulator/faults",
            json!({"method": "POST", "path": "/v1.0/users", "kind": "503", "count": 1}),
        )
        .await;
    let (status, body) = s.call("PUT", "/users/hal/binding", None).await;
    assert_eq!(status, 202, "{body}");
    // Wait for the delayed message and take it off the queue ourselves.
    let mut message = None;
    for _ in 0..40 {
        if let Some(m) = s.receive(&s.retry_url, 1).await.into_iter().next() {
            message = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let message = message.expect("the bind was queued");
    // Past the message's not_before and the engine's lookup grace after a create that failed.
    s.clock.advance(TimeDelta::seconds(90));
    let mut record = SqsMessage::default();
    record.message_id.clone_from(&message.message_id);
    record.body.clone_from(&message.body);
    let mut event = SqsEvent::default();
    event.records = vec![record.clone()];
    let first = retry_worker::handle_message(&s.fns.worker, &record).await;
    assert_eq!(
        first,
        retry_worker::MessageResult::Acked("done"),
        "{:?}",
        message.body
    );
    let accounts = s.m365_active("hal@contoso.com").await;
    assert_eq!(accounts.len(), 1);
    let events = s.events(&[("userId", "hal")]).await;
    let writes = s.world.emulator.requests(CONTOSO).await;
    let second = retry_worker::handle_batch(&s.fns.worker, &event).await;
    assert!(second.batch_item_failures.is_empty());
    assert_eq!(s.m365_active("hal@contoso.com").await, accounts);
    assert_eq!(s.events(&[("userId", "hal")]).await, events);
    let after = s.world.emulator.requests(CONTOSO).await;
    assert_eq!(
        after["graph POST /v1.0/users"], writes["graph POST /v1.0/users"],
        "no second create"
    );
    let (_, b) = s.call("GET", "/users/hal/binding", None).await;
    assert_eq!(b["state"], "provisioned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_retry_message_is_reported_so_it_reaches_the_dlq() {
    // R-BIND-6
    let s = started!(Stack::start());
    let mut record = SqsMessage::default();
    record.message_id = Some("m-1".to_owned());
    record.body = Some("{not a retry message".to_owned());
    let mut event = SqsEvent::default();
    event.records = vec![record];
    let response = retry_worker::handle_batch(&s.fns.worker, &event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "m-1");
}

/// A licence SKU id seeded on Kim (restore tests): the harness's Contoso sells no SKU, so the
/// licence is assigned directly in the emulator's seed, as an admin would have assigned it.
const KIM_LICENCE: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";

impl Stack {
    /// A Contoso stack with Kim's M365 account seeded (licensed, usage location set), the address
    /// of a deleted account held for `hold_hours` (the emulator's realism switch).
    async fn start_with_kim(hold_hours: u64) -> Option<Self> {
        let kim = json!({"userPrincipalName": "kim@contoso.com", "accountEnabled": true,
            "usageLocation": "US", "licenses": [KIM_LICENCE]});
        let s = Self::start_with_users(vec![kim]).await?;
        s.hold_addresses(hold_hours).await;
        Some(s)
    }

    /// 25 hours pass (M365's clock and ours): a 24 h address hold ends; the worker drains.
    async fn release_addresses_after_25_hours(&self) {
        self.world.emulator.advance_clock(25 * 3600).await;
        self.clock.advance(TimeDelta::hours(25));
        self.drain(Duration::from_secs(20)).await;
    }

    /// M365 holds a deleted account's addresses for `hours` from now on (the emulator's
    /// realism switch; holds are taken when an account is deleted).
    async fn hold_addresses(&self, hours: u64) {
        self.world
            .emulator
            .send(
                reqwest::Method::PUT,
                "/_emulator/realism",
                json!({"addressReleaseDelayMs": hours * 3600 * 1000}),
            )
            .await;
    }

    /// A security group with `member` in it, made through Graph by an admin; its id.
    async fn m365_group_with(&self, member: &str) -> String {
        let (status, group) = self
            .world
            .emulator
            .graph_as_app(
                CONTOSO,
                reqwest::Method::POST,
                "/groups",
                Some(
                    json!({"displayName": "Kim's team", "mailNickname": "kimsteam",
                    "securityEnabled": true, "mailEnabled": false, "groupTypes": []}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{group}");
        let id = group["id"].as_str().unwrap().to_owned();
        let (status, body) = self
            .world
            .emulator
            .graph_as_app(
                CONTOSO,
                reqwest::Method::POST,
                &format!("/groups/{id}/members/$ref"),
                Some(json!({"@odata.id":
                    format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")})),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        id
    }

    /// Kim bound (her seeded account adopted), then deleted in M365 by an admin and unbound:
    /// the binding says `deleted_in_m365`. Returns her account's id.
    async fn kim_deleted_in_m365(&self) -> String {
        self.put_user("kim", "kim@contoso.com", json!({"jobTitle": "Buyer"}))
            .await;
        let id = self.bind_settled("kim").await["m365ObjectId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.delete_in_m365("kim@contoso.com").await;
        let (status, body) = self.call("DELETE", "/users/kim/binding", None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["binding"]["state"], "deleted_in_m365", "{body}");
        id
    }

    /// The emulator's record of the account `id` (active or deleted).
    async fn m365_account(&self, id: &str) -> Value {
        self.m365_users()
            .await
            .into_iter()
            .find(|u| u["properties"]["id"] == id)
            .unwrap_or_else(|| panic!("no account {id}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_restores_the_deleted_account_with_its_id_licences_and_groups_without_the_address_wait()
 {
    // R-BIND-10 (restore within 30 days, even with a 24 h address hold), R-BIND-3
    let s = started!(Stack::start_with_kim(24));
    let put = s.put_user("kim", "kim@contoso.com", json!({"jobTitle": "Buyer"}));
    put.await;
    let id = s.bind_settled("kim").await["m365ObjectId"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = s.m365_group_with(&id).await;
    s.delete_in_m365("kim@contoso.com").await;
    let (_, unbound) = s.call("DELETE", "/users/kim/binding", None).await;
    assert_eq!(unbound["binding"]["state"], "deleted_in_m365", "{unbound}");
    // Changed in the directory while deleted: the restore pushes it as an adoption does.
    s.put_user("kim", "kim@contoso.com", json!({"jobTitle": "Head Buyer"}))
        .await;

    let (status, body) = s.call("PUT", "/users/kim/binding", None).await;
    assert_eq!(status, 200, "restored at once, no address wait: {body}");
    assert_eq!(body["binding"]["state"], "provisioned", "{body}");
    assert_eq!(body["binding"]["restored"], true, "{body}");
    assert_eq!(
        body["binding"]["m365ObjectId"],
        id.as_str(),
        "same object id"
    );
    assert_eq!(s.queue_depth(&s.retry_url).await, 0, "nothing waits");
    let account = s.m365_account(&id).await;
    assert!(account["deletedAt"].is_null(), "{account}");
    let properties = &account["properties"];
    assert_eq!(properties["accountEnabled"], true, "{account}");
    assert_eq!(properties["jobTitle"], "Head Buyer", "{account}");
    assert_eq!(
        properties["assignedLicenses"],
        json!([{"disabledPlans": [], "skuId": KIM_LICENCE}]),
        "the licence came back"
    );
    assert_eq!(
        s.world.emulator.group_member_ids(CONTOSO, &group).await,
        vec![id.clone()],
        "the group membership came back"
    );
    assert_eq!(s.m365_active("kim@contoso.com").await.len(), 1);
    let restored: Vec<Value> = s
        .events(&[("userId", "kim")])
        .await
        .into_iter()
        .filter(|e| e["type"] == "user_update_provision" && e["details"]["restored"] == true)
        .collect();
    assert_eq!(restored.len(), 1, "{restored:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_with_restore_false_waits_for_the_address_and_creates_a_new_account() {
    // R-BIND-10 (`"restore": false`), R-BIND-8, R-BIND-6
    let s = started!(Stack::start_with_kim(24));
    let old = s.kim_deleted_in_m365().await;
    let (status, body) = s
        .call("PUT", "/users/kim/binding", Some(json!({"restore": false})))
        .await;
    assert_eq!(status, 202, "the address is held: {body}");
    assert_eq!(body["binding"]["pendingReason"], "address_held", "{body}");
    s.release_addresses_after_25_hours().await;
    let (_, shown) = s.call("GET", "/users/kim/binding", None).await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_eq!(shown["restored"], false, "{shown}");
    assert_ne!(shown["m365ObjectId"], old.as_str(), "a new account");
    let account = s.m365_account(&old).await;
    assert!(
        account["deletedAt"].is_string(),
        "the old one stays deleted"
    );
    let new = s.m365_active("kim@contoso.com").await;
    assert_eq!(new.len(), 1);
    assert_eq!(
        new[0]["assignedLicenses"],
        json!([]),
        "an empty new account"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_conflict_falls_back_to_the_address_wait_with_the_reason_on_the_binding() {
    // R-BIND-10 (restore conflict), R-BIND-8, R-BIND-6
    let s = started!(Stack::start_with_kim(0));
    // Kim's account has a mail address; it is deleted without an address hold, and another
    // account takes that address meanwhile (so M365 refuses the restore)...
    s.put_user("kim", "kim@contoso.com", json!({})).await;
    let old = s.bind_settled("kim").await["m365ObjectId"]
        .as_str()
        .unwrap()
        .to_owned();
    let graph = |method, path: String, body| {
        let emulator = &s.world.emulator;
        async move { emulator.graph_as_app(CONTOSO, method, &path, body).await }
    };
    let (status, body) = graph(
        reqwest::Method::PATCH,
        format!("/users/{old}"),
        Some(json!({"mail": "kim.buyer@contoso.com"})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    s.delete_in_m365("kim@contoso.com").await;
    let (_, unbound) = s.call("DELETE", "/users/kim/binding", None).await;
    assert_eq!(unbound["binding"]["state"], "deleted_in_m365", "{unbound}");
    let other = json!({"accountEnabled": true, "displayName": "Other", "mailNickname": "other",
        "userPrincipalName": "other@contoso.com", "mail": "kim.buyer@contoso.com",
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}});
    let (status, body) = graph(reqwest::Method::POST, "/users".to_owned(), Some(other)).await;
    assert_eq!(status, 201, "{body}");
    // ... and Kim's UPN is held for 24 h by a short-lived account deleted under that hold.
    let temp = json!({"accountEnabled": true, "displayName": "Temp", "mailNickname": "kimtemp",
        "userPrincipalName": "kim@contoso.com",
        "passwordProfile": {"forceChangePasswordNextSignIn": true, "password": "xWwvJ]6NMw+bWH-d"}});
    let (status, body) = graph(reqwest::Method::POST, "/users".to_owned(), Some(temp)).await;
    assert_eq!(status, 201, "{body}");
    s.hold_addresses(24).await;
    s.delete_in_m365("kim@contoso.com").await;

    let (status, body) = s.call("PUT", "/users/kim/binding", None).await;
    assert_eq!(status, 202, "falls back to the address wait: {body}");
    assert_eq!(body["binding"]["pendingReason"], "address_held", "{body}");
    assert_eq!(body["binding"]["restored"], false, "{body}");
    let reason = body["binding"]["restoreConflict"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains(&old) && reason.contains("proxyAddresses"),
        "a clear reason: {body}"
    );
    assert!(s.m365_account(&old).await["deletedAt"].is_string());
    // M365 releases the address: a new account.
    s.release_addresses_after_25_hours().await;
    let (_, shown) = s.call("GET", "/users/kim/binding", None).await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_ne!(shown["m365ObjectId"], old.as_str());
    assert_eq!(shown["restoreConflict"], reason, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_iam_principal_that_asked_even_when_the_retry_worker_finishes_the_work() {
    // R-AUD-1: the caller's IAM principal (from API Gateway's request context), kept by the
    // retry queue; the connection's event names the admin who started it, not the callback.
    let s = started!(Stack::start());
    s.put_user("ida", "ida@contoso.com", json!({})).await;
    s.world
        .emulator
        .send(
            reqwest::Method::POST,
            "/_emulator/faults",
            json!({"method": "POST", "path": "/v1.0/users", "kind": "429", "count": 1}),
        )
        .await;
    let (status, body) = s.call("PUT", "/users/ida/binding", None).await;
    assert_eq!(status, 202, "deferred by the 429: {body}");
    s.clock.advance(TimeDelta::seconds(90));
    s.drain(Duration::from_secs(20)).await;
    let events = s.events(&[("userId", "ida")]).await;
    let created: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "user_create_provision")
        .collect();
    assert_eq!(created.len(), 1, "{events:?}");
    assert_eq!(
        created[0]["actor"],
        m365_integration_tests::ADMIN_ARN,
        "the retry worker records the admin's bind in the admin's name"
    );
    let connected = s.events(&[("tenantId", s.tenant.as_str())]).await;
    let connected: Vec<&Value> = connected
        .iter()
        .filter(|e| e["type"] == "tenant_connected")
        .collect();
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0]["actor"], m365_integration_tests::ADMIN_ARN);
}
