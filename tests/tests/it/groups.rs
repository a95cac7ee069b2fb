//! Security groups end to end (issue 6 part B, R-GRP-1): the `directory` function's
//! `PUT /groups/{groupId}/binding`, `GET /groups/{groupId}[/binding]` and membership pushes on
//! `PUT /groups/{groupId}`, with users bound by the `bind` function and retries driven through the
//! real retry queue by the `retry-worker` function, on moto (DynamoDB, SQS, Secrets Manager) and
//! the m365-emulator. Every test names the requirement it proves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::collections::BTreeSet;

use std::time::Duration;

use chrono::TimeDelta;

use m365_graph::{GraphClient, GraphDirectory, HttpRetry};
use m365_integration_tests::started;
use m365_integration_tests::{CONTOSO, Functions, OffsetClock, World, queue_depth};
use m365_lambda::provision::Deployed;
use serde_json::{Value, json};

/// A connected Contoso with a retry queue (and DLQ), and the functions' wiring on them.
struct Stack {
    world: World,
    fns: Functions,
    clock: OffsetClock,
    sqs: aws_sdk_sqs::Client,
    retry_url: String,
    tenant: String,
}

impl Stack {
    async fn start() -> Option<Self> {
        let mut world = World::start().await?;
        let sqs = aws_sdk_sqs::Client::new(&world.sdk);
        let retry_url = world.add_provisioning_resources("groups").await.retry_url;
        let tenant = world.connect_contoso("Contoso").await;
        let clock = OffsetClock::default();
        let fns = Functions::new(|| {
            let graph = world.graph_app();
            let mut deps = Deployed::with_clock(&world.app, &graph, clock.clone());
            // Few, short in-process retries so replication lag reaches the retry queue quickly
            // (the product's defaults retry longer in-process; the logic is the same).
            let client = GraphClient::builder()
                .graph_base(format!("{}/v1.0", world.emulator.base))
                .identity_base(world.emulator.base.clone())
                .retry(HttpRetry {
                    max_attempts: 3,
                    base_backoff: Duration::from_millis(20),
                    max_backoff: Duration::from_millis(100),
                    budget: Duration::from_secs(5),
                    max_not_yet_visible_attempts: 2,
                    ..HttpRetry::default()
                })
                .build()
                .unwrap();
            deps.directory = GraphDirectory::new(client, deps.directory.tokens().clone());
            Functions::short_retry_waits(&mut deps);
            deps
        });
        Some(Self {
            world,
            fns,
            clock,
            sqs,
            retry_url,
            tenant,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.fns.call(method, path, &[], body).await
    }

    /// A directory user bound to Contoso; its M365 object id.
    async fn bound_user(&self, id: &str) -> String {
        let body =
            json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
        let (status, bound) = self
            .call(
                "PUT",
                &format!("/users/{id}/binding"),
                Some(json!({"welcome": false})),
            )
            .await;
        assert_eq!(status, 200, "{bound}");
        bound["binding"]["m365ObjectId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn unbound_user(&self, id: &str) {
        let body =
            json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
    }

    async fn put_group(&self, id: &str, members: &[&str]) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/groups/{id}"),
            Some(json!({"name": format!("Group {id}"), "members": members})),
        )
        .await
    }

    async fn bind_group(&self, id: &str) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/groups/{id}/binding"),
            Some(json!({"tenantId": self.tenant})),
        )
        .await
    }

    /// Contoso's groups in the emulator with this mail nickname: (properties, member ids).
    async fn m365_groups(&self, nickname: &str) -> Vec<(Value, BTreeSet<String>)> {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        t["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| {
                g["properties"]["mailNickname"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(nickname))
            })
            .map(|g| {
                let mut props = g["properties"].clone();
                props["id"] = g["id"].clone();
                let members = g["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|m| m.as_str().map(str::to_owned))
                    .collect();
                (props, members)
            })
            .collect()
    }

    async fn graph_token(&self) -> String {
        self.world.emulator.app_token(CONTOSO).await
    }

    async fn queue_depth(&self) -> usize {
        queue_depth(&self.sqs, &self.retry_url).await
    }

    /// Runs the retry worker on the real retry queue until it is empty (or `deadline` passes);
    /// the bodies handled.
    async fn drain(&self, deadline: Duration) -> Vec<String> {
        self.fns.drain(&self.sqs, &self.retry_url, deadline).await
    }
}

fn ids(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_a_group_creates_one_security_group_mirroring_only_the_bound_members() {
    // R-GRP-1 (create; securityEnabled, not mail-enabled; bound members only, others reported)
    let s = started!(Stack::start());
    let alice = s.bound_user("alice").await;
    let bob = s.bound_user("bob").await;
    s.unbound_user("carol").await;
    let (status, put) = s.put_group("sales", &["alice", "bob", "carol"]).await;
    assert_eq!(status, 201, "{put}");
    assert_eq!(put["sync"], "not_bound");

    let (status, bound) = s.bind_group("sales").await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(bound["outcome"], "done");
    assert_eq!(bound["change"], "created");
    assert_eq!(bound["added"], 2);
    let binding = &bound["binding"];
    assert_eq!(binding["state"], "provisioned", "{bound}");
    assert_eq!(binding["tenantId"], s.tenant.as_str());
    assert_eq!(binding["mailNickname"], "m365sync-sales");
    assert_eq!(binding["mirrored"], json!(["alice", "bob"]));
    assert_eq!(
        binding["skipped"],
        json!([{"userId": "carol", "reason": "not_bound"}])
    );

    let groups = s.m365_groups("m365sync-sales").await;
    assert_eq!(groups.len(), 1, "one security group");
    let (props, members) = &groups[0];
    assert_eq!(props["securityEnabled"], true);
    assert_eq!(props["mailEnabled"], false);
    assert_eq!(props["displayName"], "Group sales");
    assert_eq!(props["id"], binding["m365GroupId"]);
    assert_eq!(members, &ids(&[&alice, &bob]));

    // GET shows the group with its binding; binding again changes nothing and adds no group.
    let (status, shown) = s.call("GET", "/groups/sales", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["binding"]["state"], "provisioned");
    assert_eq!(shown["members"], json!(["alice", "bob", "carol"]));
    let (status, state) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(state["groupId"], "sales");
    assert_eq!(state["m365GroupId"], binding["m365GroupId"]);
    let (status, again) = s.bind_group("sales").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["change"], "mirrored");
    assert_eq!(
        (again["added"].clone(), again["removed"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(s.m365_groups("m365sync-sales").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_group_changes_add_and_remove_members_of_the_bound_security_group() {
    // R-GRP-1 (membership changes follow directory group changes; a group deleted in M365 comes back)
    let s = started!(Stack::start());
    let alice = s.bound_user("alice").await;
    let bob = s.bound_user("bob").await;
    let carol = s.bound_user("carol").await;
    s.put_group("sales", &["alice", "bob"]).await;
    let (status, bound) = s.bind_group("sales").await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(
        s.m365_groups("m365sync-sales").await[0].1,
        ids(&[&alice, &bob])
    );

    let (status, put) = s.put_group("sales", &["bob", "carol"]).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["sync"], "done", "{put}");
    assert_eq!(put["group"]["binding"]["mirrored"], json!(["bob", "carol"]));
    assert_eq!(
        s.m365_groups("m365sync-sales").await[0].1,
        ids(&[&bob, &carol])
    );

    // The same members again: nothing is pushed.
    let (status, same) = s.put_group("sales", &["bob", "carol"]).await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["sync"], "unchanged");

    // An admin deletes the group in M365: the next change recreates it with the members.
    let gone = put["group"]["binding"]["m365GroupId"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = s
        .world
        .emulator
        .http
        .delete(format!("{}/v1.0/groups/{gone}", s.world.emulator.base))
        .bearer_auth(s.graph_token().await)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 204);
    let (_, back) = s.put_group("sales", &["alice", "bob", "carol"]).await;
    assert_eq!(back["sync"], "done", "{back}");
    let groups = s.m365_groups("m365sync-sales").await;
    assert_eq!(groups.len(), 1);
    assert_ne!(groups[0].0["id"], gone.as_str());
    assert_eq!(groups[0].1, ids(&[&alice, &bob, &carol]));

    // Emptied: every member is removed, the group stays.
    let (_, emptied) = s.put_group("sales", &[]).await;
    assert_eq!(emptied["sync"], "done", "{emptied}");
    let groups = s.m365_groups("m365sync-sales").await;
    assert_eq!(groups.len(), 1);
    assert!(groups[0].1.is_empty(), "{:?}", groups[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binding_adopts_the_existing_security_group_with_the_derived_nickname() {
    // R-GRP-1 (adopt by mail nickname; its membership is mirrored, strangers removed)
    let s = started!(Stack::start());
    let alice = s.bound_user("alice").await;
    let stranger = s.bound_user("stranger").await;
    let token = s.graph_token().await;
    let base = &s.world.emulator.base;
    let created: Value = s
        .world
        .emulator
        .http
        .post(format!("{base}/v1.0/groups"))
        .bearer_auth(&token)
        .json(&json!({
            "displayName": "Sales (made in the portal)",
            "mailNickname": "m365sync-sales",
            "mailEnabled": false,
            "securityEnabled": true,
            "groupTypes": [],
            "members@odata.bind": [format!("{base}/v1.0/directoryObjects/{stranger}")],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let existing = created["id"].as_str().unwrap().to_owned();

    s.put_group("sales", &["alice"]).await;
    let (status, bound) = s.bind_group("sales").await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(bound["change"], "adopted");
    assert_eq!(bound["added"], 1);
    assert_eq!(bound["removed"], 1);
    assert_eq!(bound["binding"]["m365GroupId"], existing.as_str());
    let groups = s.m365_groups("m365sync-sales").await;
    assert_eq!(groups.len(), 1, "adopted, not created");
    assert_eq!(groups[0].1, ids(&[&alice]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_lag_on_a_new_group_is_retried_through_the_retry_queue() {
    // R-GRP-1, R-BIND-6 (replication-lag errors on a new group are retried)
    let s = started!(Stack::start());
    let alice = s.bound_user("alice").await;
    let status = s
        .world
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/realism",
            json!({"replicationLagMs": 120_000}),
        )
        .await;
    assert!(status.is_success());
    s.put_group("sales", &["alice"]).await;
    let (status, bound) = s.bind_group("sales").await;
    assert_eq!(status, 202, "{bound}");
    assert_eq!(bound["outcome"], "deferred");
    assert_eq!(bound["binding"]["state"], "pending");
    assert_eq!(bound["binding"]["pendingReason"], "not_yet_visible");
    assert!(bound["binding"]["m365GroupId"].is_string(), "{bound}");
    let (_, shown) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(shown["state"], "pending");

    // The group replicates; the worker finishes the membership from the queue.
    s.world.emulator.advance_clock(130).await;
    s.clock.advance(TimeDelta::seconds(10));
    let bodies = s.drain(Duration::from_secs(30)).await;
    assert!(
        bodies.iter().any(|b| b.contains("group_members")),
        "{bodies:?}"
    );
    let (_, shown) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_eq!(shown["mirrored"], json!(["alice"]));
    let groups = s.m365_groups("m365sync-sales").await;
    assert_eq!(groups.len(), 1, "the retry created no second group");
    assert_eq!(groups[0].1, ids(&[&alice]));
    assert_eq!(s.queue_depth().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_impossible_group_bindings_get_a_4xx_and_write_nothing() {
    // R-GRP-1, R-SAFE-1
    let s = started!(Stack::start());
    s.put_group("sales", &[]).await;
    let cases = [
        (
            "/groups/sales/binding",
            json!({"tenantId": "not a tenant"}),
            400,
        ),
        ("/groups/sales/binding", json!({"tenant": s.tenant}), 400),
        (
            "/groups/sales/binding",
            json!({"tenantId": "6e1f0c1a-0000-4000-8000-000000000009"}),
            404,
        ),
        ("/groups/nope/binding", json!({"tenantId": s.tenant}), 404),
        (
            "/groups/bad%20id/binding",
            json!({"tenantId": s.tenant}),
            400,
        ),
    ];
    for (path, body, expected) in cases {
        let (status, answer) = s.call("PUT", path, Some(body.clone())).await;
        assert_eq!(status, expected, "{path} {body} → {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, _) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(status, 404, "nothing was bound");
    assert!(s.m365_groups("m365sync-sales").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_while_a_new_group_still_lags_waits_and_never_creates_a_second_group() {
    // R-GRP-1, R-BIND-6 (a 404 on reading a new group is replication lag, not a deletion)
    let s = started!(Stack::start());
    let alice = s.bound_user("alice").await;
    let status = s
        .world
        .emulator
        .send(
            reqwest::Method::PUT,
            "/_emulator/realism",
            json!({"replicationLagMs": 120_000}),
        )
        .await;
    assert!(status.is_success());
    s.put_group("sales", &["alice"]).await;
    let (status, bound) = s.bind_group("sales").await;
    assert_eq!(status, 202, "{bound}");
    let group = bound["binding"]["m365GroupId"].clone();

    // Retries come while the group still answers 404 to reads: each waits again.
    s.clock.advance(TimeDelta::seconds(10));
    let bodies = s.drain(Duration::from_secs(5)).await;
    assert!(!bodies.is_empty(), "a retry ran within the lag");
    let (_, shown) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(shown["state"], "pending", "{shown}");
    assert_eq!(shown["pendingReason"], "not_yet_visible");
    assert_eq!(shown["m365GroupId"], group);
    assert_eq!(s.m365_groups("m365sync-sales").await.len(), 1);

    // The group replicates: the next retry finishes the membership.
    s.world.emulator.advance_clock(130).await;
    s.clock.advance(TimeDelta::seconds(60));
    s.drain(Duration::from_secs(30)).await;
    let (_, shown) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_eq!(shown["m365GroupId"], group);
    let groups = s.m365_groups("m365sync-sales").await;
    assert_eq!(groups.len(), 1, "no retry created a second group");
    assert_eq!(groups[0].1, ids(&[&alice]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_bound_after_its_group_was_bound_joins_the_security_group_with_the_bind() {
    // R-GRP-1 (membership follows binds, not only directory group changes or reconcile)
    let s = started!(Stack::start());
    let alice = s.bound_user("alice").await;
    s.unbound_user("bob").await;
    s.put_group("sales", &["alice", "bob"]).await;
    let (status, bound) = s.bind_group("sales").await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(s.m365_groups("m365sync-sales").await[0].1, ids(&[&alice]));
    // Bob's bind alone puts him in the group: no group change, no reconcile.
    let (status, answer) = s
        .call("PUT", "/users/bob/binding", Some(json!({"welcome": false})))
        .await;
    assert_eq!(status, 200, "{answer}");
    let bob = answer["binding"]["m365ObjectId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.m365_groups("m365sync-sales").await[0].1,
        ids(&[&alice, &bob])
    );
    let (_, group) = s.call("GET", "/groups/sales", None).await;
    assert_eq!(
        group["binding"]["mirrored"],
        json!(["alice", "bob"]),
        "{group}"
    );
}
