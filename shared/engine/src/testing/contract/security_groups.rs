//! Contract of the security-group operations of [`Directory`] (R-GRP-1; graph-spec §4): what the
//! group-binding use case relies on, run against the fake and against `GraphDirectory` on the
//! m365-emulator. Each function takes a tenant as the directory contract does.

use std::collections::BTreeSet;

use super::directory::DirectoryTenant;
use super::{fresh_suffix, new_m365_user};
use crate::model::{Email, M365ObjectId, PageRequest};
use crate::ports::Directory;

async fn user(dir: &impl Directory, t: &DirectoryTenant) -> M365ObjectId {
    let nickname = format!("member.{}", fresh_suffix());
    let upn = Email::parse(&format!("{nickname}@{}", t.managed)).expect("valid email");
    let new = new_m365_user(upn, &nickname.replace('.', ""), "Group Member");
    dir.create_user(&t.tenant, &new)
        .await
        .expect("user created")
        .id
}

async fn members(
    dir: &impl Directory,
    t: &DirectoryTenant,
    group: &M365ObjectId,
) -> BTreeSet<M365ObjectId> {
    let mut out = BTreeSet::new();
    let mut request = PageRequest::first(2);
    loop {
        let page = dir
            .list_group_members(&t.tenant, group, &request)
            .await
            .expect("members listed");
        out.extend(page.items);
        match page.next {
            Some(next) => request = PageRequest::after(next, 2),
            None => return out,
        }
    }
}

/// R-GRP-1: a created group is a security group found by its mail nickname (case-insensitive);
/// an unknown nickname finds nothing.
pub async fn a_security_group_is_created_and_found_by_its_nickname(
    dir: &impl Directory,
    t: &DirectoryTenant,
) {
    let nickname = format!("m365sync-contract-{}", fresh_suffix());
    let created = dir
        .create_security_group(&t.tenant, "Contract group", &nickname)
        .await
        .expect("group created");
    assert!(created.is_security_group);
    assert_eq!(created.mail_nickname, nickname);
    let found = dir
        .find_group_by_mail_nickname(&t.tenant, &nickname.to_ascii_uppercase())
        .await
        .expect("lookup succeeds")
        .expect("the group is found");
    assert_eq!(found.id, created.id);
    assert!(found.is_security_group);
    let none = dir
        .find_group_by_mail_nickname(&t.tenant, &format!("absent-{}", fresh_suffix()))
        .await
        .expect("lookup succeeds");
    assert_eq!(none, None);
}

/// R-GRP-1: members are added, listed across pages and removed; adding a member twice and
/// removing a non-member are success (graph-spec §4.2–4.4).
pub async fn members_are_added_listed_and_removed_idempotently(
    dir: &impl Directory,
    t: &DirectoryTenant,
) {
    let group = dir
        .create_security_group(
            &t.tenant,
            "Contract members",
            &format!("m365sync-members-{}", fresh_suffix()),
        )
        .await
        .expect("group created")
        .id;
    let (a, b, c) = (user(dir, t).await, user(dir, t).await, user(dir, t).await);
    for m in [&a, &b, &c, &a] {
        dir.add_group_member(&t.tenant, &group, m)
            .await
            .expect("member added (twice is fine)");
    }
    assert_eq!(
        members(dir, t, &group).await,
        [a.clone(), b.clone(), c.clone()].into_iter().collect()
    );
    for m in [&a, &a] {
        dir.remove_group_member(&t.tenant, &group, m)
            .await
            .expect("member removed (a non-member too)");
    }
    assert_eq!(members(dir, t, &group).await, [b, c].into_iter().collect());
}
