//! `$batch` (chunks of 20, per-item results incl. per-item 429) and delta queries (paging,
//! changes since a saved link, 410 restart) against the real m365-emulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use m365_engine::Error;
use m365_engine::ports::Directory;
use m365_graph::{BatchRequest, DeltaNext, DeltaUser, ErrorClass, GraphDirectory, TokenProvider};
use reqwest::Method;
use serde_json::json;
use support::{CONTOSO, new_user, start, start_app_only};

/// Whether the delta's `users` hold the emulator's admin.
fn holds_admin(users: &[DeltaUser]) -> bool {
    users
        .iter()
        .any(|u| u.user_principal_name.as_deref() == Some(support::ADMIN))
}

#[tokio::test]
async fn a_batch_of_25_is_sent_in_chunks_of_20_with_a_result_per_item_including_partial_failures() {
    // R-BIND-6, R-REC-1, graph-spec §6
    let (emu, dir, tenant) = start_app_only().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            dir.create_user(&tenant, &new_user(&format!("batch.{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    // The second PATCH of user 0 inside a batch is throttled on its own.
    emu.fault(json!({"method": "PATCH", "path": format!("/v1.0/users/{}", ids[1]), "kind": "429", "count": 1, "retryAfter": "0.75"})).await;
    let mut requests = Vec::new();
    for n in 0..22 {
        let id = &ids[n % 3];
        requests.push(
            BatchRequest::new(format!("r{n}"), Method::PATCH, format!("/users/{id}"))
                .with_body(json!({"jobTitle": format!("Title {n}")})),
        );
    }
    requests.push(
        BatchRequest::new(
            "missing",
            Method::PATCH,
            "/users/00000000-0000-4000-8000-000000000099",
        )
        .with_body(json!({"jobTitle": "x"})),
    );
    requests.push(
        BatchRequest::new("invalid", Method::PATCH, format!("/users/{}", ids[0]))
            .with_body(json!({"notAProperty": 1})),
    );
    requests.push(BatchRequest::new(
        "read",
        Method::GET,
        format!("/users/{}?$select=id,jobTitle", ids[2]),
    ));
    let results = dir.batch(&tenant, &requests).await;
    assert_eq!(results.len(), 25, "one result per request");
    let throttled: Vec<_> = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(e) if e.class() == Some(ErrorClass::Throttled)))
        .collect();
    assert_eq!(throttled.len(), 1, "exactly the faulted item is throttled");
    let (_, Err(e)) = throttled[0] else {
        unreachable!()
    };
    assert_eq!(
        e.api().unwrap().retry_after,
        Some(Duration::from_millis(750)),
        "per-item Retry-After"
    );
    assert!(e.is_transient());
    assert_eq!(
        results["missing"].as_ref().unwrap_err().class(),
        Some(ErrorClass::NotFound)
    );
    assert_eq!(
        results["invalid"].as_ref().unwrap_err().class(),
        Some(ErrorClass::Rejected)
    );
    let read = results["read"].as_ref().unwrap();
    assert_eq!(read.status, 200);
    assert_eq!(read.body["id"], json!(ids[2].as_str()));
    let ok = results
        .values()
        .filter(|r| matches!(r, Ok(item) if item.status == 204))
        .count();
    assert_eq!(ok, 21, "the other PATCHes succeeded");
}

async fn full_round(
    dir: &GraphDirectory<impl TokenProvider>,
    link: Option<String>,
) -> (Vec<DeltaUser>, String, bool) {
    let tenant = support::Emu::tenant_id();
    let mut items = Vec::new();
    let mut link = link;
    let mut restarted = false;
    loop {
        let page = dir.users_delta(&tenant, link.as_deref()).await.unwrap();
        restarted |= page.restarted;
        items.extend(page.items);
        match page.next {
            DeltaNext::Page(next) => link = Some(next),
            DeltaNext::Done(done) => return (items, done, restarted),
        }
    }
}

#[tokio::test]
async fn users_delta_pages_to_a_delta_link_then_reports_only_changes() {
    // R-REC-1, graph-spec §5
    let emu = start().await;
    emu.realism(json!({"deltaPageSize": 2})).await;
    let dir = emu.directory();
    let (initial, link, restarted) = full_round(&dir, None).await;
    assert!(!restarted);
    assert!(holds_admin(&initial));
    let created = dir
        .create_user(&emu.tenant(), &new_user("delta.new"))
        .await
        .unwrap();
    let (changes, _, _) = full_round(&dir, Some(link)).await;
    assert!(
        changes
            .iter()
            .any(|u| u.id == created.id.as_str() && u.removed().is_none()),
        "{changes:?}"
    );
    assert!(!holds_admin(&changes), "unchanged users are not repeated");
}

#[tokio::test]
async fn users_delta_reports_manager_changes_to_reconcile() {
    // R-ATTR-1, R-REC-1, graph-spec §5 (`$select=…,manager` tracks the relation)
    use m365_engine::ports::UserDeltas;
    let emu = start().await;
    let dir = emu.directory();
    let tenant = emu.tenant();
    let user = dir
        .create_user(&tenant, &new_user("mgr.user"))
        .await
        .unwrap()
        .id;
    let boss = dir
        .create_user(&tenant, &new_user("mgr.boss"))
        .await
        .unwrap()
        .id;
    dir.set_manager(&tenant, &user, &boss).await.unwrap();
    let round = |link: Option<String>| {
        let dir = &dir;
        let tenant = &tenant;
        async move {
            let mut changes = Vec::new();
            let mut link = link;
            loop {
                let page = UserDeltas::users_delta(dir, tenant, link.as_deref())
                    .await
                    .unwrap();
                changes.extend(page.changes);
                match page.next {
                    m365_engine::ports::DeltaLink::More(next) => link = Some(next),
                    m365_engine::ports::DeltaLink::Done(done) => return (changes, done),
                }
            }
        }
    };
    let (initial, link) = round(None).await;
    let of = |changes: &[m365_engine::ports::UserChange], id: &m365_engine::model::M365ObjectId| {
        changes
            .iter()
            .find(|c| &c.id == id)
            .map(|c| c.manager.clone())
    };
    assert_eq!(of(&initial, &user), Some(Some(Some(boss.clone()))));
    assert_eq!(of(&initial, &boss), Some(None), "no manager: not reported");
    dir.clear_manager(&tenant, &user).await.unwrap();
    let (cleared, _) = round(Some(link)).await;
    assert_eq!(of(&cleared, &user), Some(Some(None)), "{cleared:?}");
}

#[tokio::test]
async fn a_lost_delta_state_restarts_with_a_full_listing_and_says_so() {
    // R-REC-1, graph-spec §5 (410 + Location), §12 last row
    let emu = start().await;
    let dir = emu.directory();
    let (_, link, _) = full_round(&dir, None).await;
    emu.admin_post(
        &format!("/_emulator/tenants/{CONTOSO}/delta/reset"),
        json!({}),
    )
    .await;
    let (items, _, restarted) = full_round(&dir, Some(link)).await;
    assert!(restarted, "the caller learns it must resync");
    assert!(holds_admin(&items), "a full listing");
}

#[tokio::test]
async fn a_delta_link_outside_our_graph_base_is_refused() {
    // R-SAFE-2 (the bearer token never leaves for another host)
    let emu = start().await;
    let result = emu
        .directory()
        .users_delta(
            &emu.tenant(),
            Some("https://evil.example/v1.0/users/delta?$deltatoken=x"),
        )
        .await;
    assert!(
        matches!(result, Err(Error::Infrastructure { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn groups_delta_reports_members_as_members_delta() {
    // R-GRP-1, R-REC-1, graph-spec §5
    let emu = start().await;
    let dir = emu.directory();
    let page = dir.groups_delta(&emu.tenant(), None).await.unwrap();
    let group = page
        .items
        .iter()
        .find(|g| g.mail_nickname.as_deref() == Some("operations"))
        .expect("seeded group");
    assert_eq!(group.security_enabled, Some(true));
    assert_eq!(group.members_delta.len(), 1);
    assert!(group.members_delta[0].is_user() && !group.members_delta[0].is_removed());
}
