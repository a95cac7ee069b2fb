//! Security groups and membership against the real m365-emulator (R-GRP-1, graph-spec §4, §12).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use m365_engine::Error;
use m365_engine::error::Entity;
use m365_engine::model::{M365ObjectId, PageRequest};
use m365_engine::ports::Directory;
use serde_json::json;
use support::{new_user, start, start_app_only};

#[tokio::test]
async fn membership_writes_are_idempotent_and_listed() {
    // R-GRP-1, graph-spec §12 rows 11–12
    let (_emu, dir, tenant) = start_app_only().await;
    let group = dir
        .create_security_group(&tenant, "Sales", "sales")
        .await
        .unwrap();
    assert!(group.is_security_group);
    assert_eq!(
        dir.find_group_by_mail_nickname(&tenant, "sales")
            .await
            .unwrap()
            .map(|g| g.id),
        Some(group.id.clone())
    );
    let user = dir
        .create_user(&tenant, &new_user("member.one"))
        .await
        .unwrap();
    dir.add_member(&tenant, &group.id, &user.id).await.unwrap();
    dir.add_member(&tenant, &group.id, &user.id)
        .await
        .expect("already a member is success");
    let members = dir
        .list_members(&tenant, &group.id, &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(members.items.len(), 1);
    assert_eq!(members.items[0].id, user.id.as_str());
    dir.remove_member(&tenant, &group.id, &user.id)
        .await
        .unwrap();
    dir.remove_member(&tenant, &group.id, &user.id)
        .await
        .expect("not a member is success");
    assert!(
        dir.list_members(&tenant, &group.id, &PageRequest::first(100))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn adding_a_member_that_does_not_exist_is_not_found_naming_the_member() {
    // R-GRP-1, graph-spec §4.2
    let (_emu, dir, tenant) = start_app_only().await;
    let group = dir
        .find_group_by_mail_nickname(&tenant, "operations")
        .await
        .unwrap()
        .expect("seeded group");
    let missing = M365ObjectId::generate();
    let error = dir
        .add_member(&tenant, &group.id, &missing)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotFound {
                entity: Entity::M365User,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_member_added_right_after_the_group_was_created_waits_for_replication() {
    // R-BIND-6, graph-spec §4.2 replication note, §7.4
    let (emu, dir, tenant) = start_app_only().await;
    let user = dir
        .create_user(&tenant, &new_user("early.member"))
        .await
        .unwrap();
    emu.realism(json!({"replicationLagMs": 700})).await;
    let group = dir
        .create_security_group(&tenant, "Fresh", "fresh")
        .await
        .unwrap();
    support::retried_past_lag(dir.add_member(&tenant, &group.id, &user.id)).await;
}

#[tokio::test]
async fn a_group_create_that_times_out_after_commit_is_found_by_mail_nickname() {
    // R-GRP-1, graph-spec §7.3 (no blind second POST)
    let emu = start().await;
    let dir =
        emu.directory_from(emu.client_with(Duration::from_millis(400), support::fast_retry()));
    let tenant = emu.tenant();
    emu.fault(json!({"method": "POST", "path": "/v1.0/groups", "kind": "timeout-after-commit", "count": 1, "delayMs": 2000})).await;
    let group = dir
        .create_security_group(&tenant, "Slow", "slow")
        .await
        .expect("resolved by lookup");
    assert_eq!(group.mail_nickname, "slow");
    let state = emu.state.lock();
    let count = state.tenants[support::CONTOSO]
        .groups
        .values()
        .filter(|g| g.properties.get("mailNickname") == Some(&json!("slow")))
        .count();
    assert_eq!(count, 1, "one group");
}
