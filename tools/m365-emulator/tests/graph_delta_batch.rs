//! Delta queries (graph-spec §5) and JSON batching (§6) over HTTP.

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::{Value, json};

// graph-spec §5: initial round pages with nextLink to a deltaLink; the next round returns new
// and updated users and @removed "changed" (soft delete) / "deleted" (permanent).
#[tokio::test]
async fn user_delta_reports_changes_and_removals() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"deltaPageSize": 2})),
    )
    .await;
    let (initial, delta_link) = follow(
        &emu,
        &t,
        &emu.url("/v1.0/users/delta?$select=displayName,userPrincipalName"),
    )
    .await;
    assert_eq!(initial.len(), 4);
    assert!(delta_link.contains("$deltatoken="));

    let (_, _, created) = emu
        .post(&t, "/v1.0/users", new_user("delta@contoso.com"))
        .await;
    let new_id = created["id"].as_str().expect("id").to_owned();
    emu.patch(
        &t,
        &format!("/v1.0/users/{ADELE}"),
        json!({"displayName": "Adele V."}),
    )
    .await;
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    emu.delete(&t, &format!("/v1.0/users/{LEE}")).await;
    emu.delete(&t, &format!("/v1.0/directory/deletedItems/{LEE}"))
        .await;

    let (changes, next_delta) = follow(&emu, &t, &delta_link).await;
    let find = |id: &str| {
        changes
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .expect("present")
    };
    assert_eq!(find(&new_id)["userPrincipalName"], "delta@contoso.com");
    assert_eq!(find(ADELE)["displayName"], "Adele V.");
    assert_eq!(find(ALEX)["@removed"], json!({"reason": "changed"}));
    assert_eq!(find(LEE)["@removed"], json!({"reason": "deleted"}));
    assert_eq!(changes.len(), 4);
    let (again, _) = follow(&emu, &t, &next_delta).await;
    assert_eq!(again, Vec::<Value>::new());
}

// graph-spec §5 (unconfirmed: paging stability is not documented): an initial round's pages
// follow one another by id, so deleting an object already returned does not make the round skip
// one that exists throughout it (a full listing must list every live object, R-REC-4).
#[tokio::test]
async fn an_initial_round_lists_every_object_alive_throughout_it_despite_deletions() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"deltaPageSize": 2})),
    )
    .await;
    let (_, _, first) = emu.get(&t, "/v1.0/users/delta?$select=id").await;
    let page: Vec<String> = first["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|u| u["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(page.len(), 2);
    emu.delete(&t, &format!("/v1.0/users/{}", page[0])).await;
    let next = first["@odata.nextLink"].as_str().expect("nextLink");
    let (rest, _) = follow(&emu, &t, next).await;
    let rest: Vec<&str> = rest.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert!(rest.iter().all(|id| !page.iter().any(|p| p == id)));
}

// graph-spec §5: $deltaToken=latest returns only a deltaLink; later changes appear after it.
#[tokio::test]
async fn delta_token_latest_starts_from_now() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, body) = emu.get(&t, "/v1.0/users/delta?$deltaToken=latest").await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], json!([]));
    let link = body["@odata.deltaLink"]
        .as_str()
        .expect("deltaLink")
        .to_owned();
    emu.patch(&t, &format!("/v1.0/users/{ALEX}"), json!({"jobTitle": "x"}))
        .await;
    let (changes, _) = follow(&emu, &t, &link).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["id"], ALEX);
}

// graph-spec §5: groups delta with members carries members@delta (added and removed).
#[tokio::test]
async fn group_delta_tracks_membership() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (initial, link) = follow(
        &emu,
        &t,
        &emu.url("/v1.0/groups/delta?$select=displayName,members"),
    )
    .await;
    assert_eq!(initial.len(), 1);
    assert_eq!(
        initial[0]["members@delta"]
            .as_array()
            .expect("members")
            .len(),
        2
    );
    emu.post(
        &t,
        &format!("/v1.0/groups/{ENGINEERING}/members/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{LEE}")}),
    )
    .await;
    emu.delete(
        &t,
        &format!("/v1.0/groups/{ENGINEERING}/members/{ALEX}/$ref"),
    )
    .await;
    let (changes, _) = follow(&emu, &t, &link).await;
    assert_eq!(changes.len(), 1);
    let members = changes[0]["members@delta"]
        .as_array()
        .expect("members@delta");
    assert!(members.contains(&json!({"@odata.type": "#microsoft.graph.user", "id": LEE})));
    assert!(members.contains(&json!({"@odata.type": "#microsoft.graph.user", "id": ALEX, "@removed": {"reason": "deleted"}})));
}

// graph-spec §5: a reset (test hook) and a token older than 7 days give 410 Gone with Location.
#[tokio::test]
async fn reset_and_expired_delta_tokens_get_410_with_location() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (_, link) = follow(&emu, &t, &emu.url("/v1.0/users/delta")).await;
    emu.admin(
        Method::POST,
        &format!("/_emulator/tenants/{CONTOSO}/delta/reset"),
        None,
    )
    .await;
    let (status, headers, body) = parts(
        emu.http
            .get(&link)
            .bearer_auth(&t)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 410);
    assert_eq!(body["error"]["code"], "resyncRequired");
    assert_eq!(
        headers["location"],
        format!("{}/v1.0/users/delta", emu.base)
    );

    let (_, link) = follow(&emu, &t, &emu.url("/v1.0/users/delta")).await;
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"days": 8})),
    )
    .await;
    let t = emu.contoso();
    let (status, headers, body) = parts(
        emu.http
            .get(&link)
            .bearer_auth(&t)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, 410);
    assert_eq!(body["error"]["code"], "syncStateNotFound");
    assert!(headers.contains_key("location"));
    let (status, _, _) = emu.get(&t, "/v1.0/users/delta?$top=5").await;
    assert_eq!(status, 400, "$top is not supported on delta");
}

// graph-spec §6: items run with dependsOn; per-item statuses; a failed dependency gives 424;
// the batch itself is 200.
#[tokio::test]
async fn batches_run_items_in_dependency_order_with_per_item_statuses() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let batch = json!({"requests": [
        {"id": "1", "method": "POST", "url": "/users", "headers": {"Content-Type": "application/json"}, "body": new_user("batch1@contoso.com")},
        {"id": "2", "dependsOn": ["1"], "method": "GET", "url": "/users/batch1@contoso.com?$select=id,userPrincipalName"},
        {"id": "3", "dependsOn": ["2"], "method": "PATCH", "url": "/users/batch1@contoso.com", "headers": {"Content-Type": "application/json"}, "body": {"usageLocation": "GB"}},
        {"id": "4", "method": "POST", "url": "/users", "headers": {"Content-Type": "application/json"}, "body": new_user("AdeleV@contoso.com")},
        {"id": "5", "dependsOn": ["4"], "method": "GET", "url": "/users/AdeleV@contoso.com"}
    ]});
    let (status, _, body) = emu.post(&t, "/v1.0/$batch", batch).await;
    assert_eq!(status, 200);
    let responses = body["responses"].as_array().expect("responses");
    let item = |id: &str| {
        responses
            .iter()
            .find(|r| r["id"] == id)
            .cloned()
            .expect("item")
    };
    assert_eq!(item("1")["status"], 201);
    assert_eq!(item("1")["body"]["userPrincipalName"], "batch1@contoso.com");
    assert_eq!(item("2")["status"], 200);
    assert_eq!(item("3")["status"], 204);
    assert_eq!(item("3")["body"], json!(null));
    assert_eq!(item("4")["status"], 400);
    assert_eq!(
        item("4")["body"]["error"]["details"][0]["code"],
        "ObjectConflict"
    );
    assert!(item("4")["body"]["error"]["innerError"]["request-id"].is_string());
    assert_eq!(item("5")["status"], 424);
    let (_, counts) = emu
        .admin(
            Method::GET,
            &format!("/_emulator/tenants/{CONTOSO}/requests"),
            None,
        )
        .await;
    // Items that ran (4; the 424 item never executed) are counted besides the batch request.
    assert_eq!(counts["graph.batch_item"], 4);
    assert_eq!(counts["graph"], 1);
}

// graph-spec §6 (assumption §13.8): more than 20 requests or duplicate ids → 400.
#[tokio::test]
async fn oversized_or_duplicate_batches_are_refused() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let (status, _, body) = emu
        .post(&t, "/v1.0/$batch", json!({"requests": many}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadRequest");
    let dup = json!({"requests": [{"id": "1", "method": "GET", "url": "/users"}, {"id": "1", "method": "GET", "url": "/groups"}]});
    assert_eq!(emu.post(&t, "/v1.0/$batch", dup).await.0, 400);
}

// graph-spec §6, §7.1: a throttled item is a per-item 429 with its own Retry-After header.
#[tokio::test]
async fn throttled_batch_items_carry_their_own_retry_after() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/quotas",
        Some(json!({"resourceUnits": 100, "writes": 1, "writeWindowMs": 60_000})),
    )
    .await;
    let batch = json!({"requests": [
        {"id": "a", "method": "PATCH", "url": format!("/users/{ALEX}"), "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "one"}},
        {"id": "b", "method": "PATCH", "url": format!("/users/{LEE}"), "headers": {"Content-Type": "application/json"}, "body": {"jobTitle": "two"}}
    ]});
    let (status, _, body) = emu.post(&t, "/v1.0/$batch", batch).await;
    assert_eq!(status, 200);
    let responses = body["responses"].as_array().expect("responses");
    let b = responses.iter().find(|r| r["id"] == "b").expect("b");
    assert_eq!(b["status"], 429);
    assert_eq!(b["headers"]["Retry-After"], "60");
    assert_eq!(b["body"]["error"]["code"], "TooManyRequests");
}

// graph-spec §5, §7.4: an object still replicating is not lost by delta — it shows up in a
// later round once visible.
#[tokio::test]
async fn delta_reports_replicating_objects_in_a_later_round() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (_, link) = follow(&emu, &t, &emu.url("/v1.0/users/delta")).await;
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"replicationLagMs": 5_000})),
    )
    .await;
    let (_, _, created) = emu
        .post(&t, "/v1.0/users", new_user("slowrep@contoso.com"))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let (first, link) = follow(&emu, &t, &link).await;
    assert!(!first.iter().any(|u| u["id"] == id.as_str()));
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"seconds": 6})),
    )
    .await;
    let t = emu.contoso();
    let (second, _) = follow(&emu, &t, &link).await;
    assert!(second.iter().any(|u| u["id"] == id.as_str()));
}
