//! Contract of [`GroupStore`].

use super::{
    assert_conflict, assert_not_found, collect_pages, fresh_group_id, fresh_suffix, fresh_user_id,
};
use crate::model::{Group, GroupId};
use crate::ports::GroupStore;

fn group() -> Group {
    Group::new(
        fresh_group_id(),
        "Sales",
        [fresh_user_id(), fresh_user_id()],
    )
}

/// R-GRP-1: a created group is read back with its members.
pub async fn a_created_group_round_trips_with_its_members(store: &impl GroupStore) {
    let g = group();
    let created = store.create(&g).await.expect("create succeeds");
    assert_eq!(
        created,
        Group {
            version: 1,
            ..g.clone()
        }
    );
    assert_eq!(store.get(&g.id).await.expect("get succeeds"), Some(created));
    let empty = Group::new(fresh_group_id(), "Empty", []);
    let created = store
        .create(&empty)
        .await
        .expect("create of an empty group succeeds");
    assert_eq!(
        store.get(&empty.id).await.expect("get succeeds"),
        Some(created)
    );
}

/// R-SAFE-1: creating a group whose id exists is refused.
pub async fn creating_a_group_twice_is_refused(store: &impl GroupStore) {
    let g = group();
    store.create(&g).await.expect("create succeeds");
    assert_conflict(&store.create(&g).await, "already_exists");
}

/// R-GRP-1: membership changes are versioned; a stale replace is refused; a missing group is not found.
pub async fn a_stale_group_replace_is_refused(store: &impl GroupStore) {
    let created = store.create(&group()).await.expect("create succeeds");
    let mut changed = created.clone();
    changed.members.insert(fresh_user_id());
    let replaced = store.replace(&changed, 1).await.expect("replace succeeds");
    assert_eq!(replaced.version, 2);
    assert_eq!(replaced.members.len(), 3);
    assert_conflict(&store.replace(&created, 1).await, "stale_version");
    assert_eq!(
        store.get(&created.id).await.expect("get succeeds"),
        Some(replaced)
    );
    assert_not_found(&store.replace(&group(), 1).await);
}

/// R-GRP-1: groups are listed across pages, each once.
pub async fn groups_are_listed_across_pages(store: &impl GroupStore) {
    let prefix = format!("l-{}", fresh_suffix());
    let mut ids = Vec::new();
    for n in [2, 0, 1] {
        let id = GroupId::parse(format!("{prefix}-{n}")).expect("valid group id");
        store
            .create(&Group::new(id.clone(), "G", []))
            .await
            .expect("create succeeds");
        ids.push(id);
    }
    ids.sort();
    let mut listed: Vec<_> = collect_pages(2, |page| async move { store.list(&page).await })
        .await
        .into_iter()
        .map(|g| g.id)
        .filter(|id| id.as_str().starts_with(&prefix))
        .collect();
    listed.sort();
    assert_eq!(listed, ids, "every group once");
}

/// R-GRP-1: a deleted group is gone; deleting again is harmless.
pub async fn a_deleted_group_is_gone_and_deleting_again_is_harmless(store: &impl GroupStore) {
    let g = store.create(&group()).await.expect("create succeeds");
    store.delete(&g.id).await.expect("delete succeeds");
    assert_eq!(store.get(&g.id).await.expect("get succeeds"), None);
    store.delete(&g.id).await.expect("a second delete succeeds");
}

/// The ids of `groups`, in order.
fn ids(groups: &[Group]) -> Vec<GroupId> {
    groups.iter().map(|g| g.id.clone()).collect()
}

/// Fresh group ids sharing a prefix, so their order is known.
fn ordered_group_ids(n: usize) -> Vec<GroupId> {
    let prefix = format!("m-{}", fresh_suffix());
    (0..n)
        .map(|i| GroupId::parse(format!("{prefix}-{i:04}")).expect("valid group id"))
        .collect()
}

/// R-GRP-1: a member's groups are found by member, ordered by id, as stored; a user in no group
/// has none.
pub async fn a_member_is_found_in_each_of_its_groups_and_only_those(store: &impl GroupStore) {
    let (alice, bob) = (fresh_user_id(), fresh_user_id());
    let group_ids = ordered_group_ids(4);
    let mut alices = Vec::new();
    for (n, id) in group_ids.iter().enumerate() {
        let members = if n == 2 {
            vec![bob.clone()]
        } else {
            vec![alice.clone(), bob.clone()]
        };
        let created = store
            .create(&Group::new(id.clone(), "G", members))
            .await
            .expect("create succeeds");
        if n != 2 {
            alices.push(created);
        }
    }
    assert_eq!(
        store
            .groups_of_member(&alice)
            .await
            .expect("query succeeds"),
        alices,
        "Alice's three groups, in id order, as stored"
    );
    assert_eq!(
        ids(&store.groups_of_member(&bob).await.expect("query succeeds")),
        group_ids,
        "Bob is in all four"
    );
    assert!(
        store
            .groups_of_member(&fresh_user_id())
            .await
            .expect("query succeeds")
            .is_empty(),
        "a user in no group has none"
    );
}

/// R-GRP-1: adding a member makes the group found by it, removing it makes it not found, and a
/// replace that keeps it (a rename) keeps it found with the new version.
pub async fn groups_of_member_follow_membership_changes(store: &impl GroupStore) {
    let (alice, bob) = (fresh_user_id(), fresh_user_id());
    let created = store
        .create(&Group::new(fresh_group_id(), "G", [bob.clone()]))
        .await
        .expect("create succeeds");
    assert!(
        store
            .groups_of_member(&alice)
            .await
            .expect("query")
            .is_empty()
    );

    let mut added = created.clone();
    added.members.insert(alice.clone());
    let added = store.replace(&added, 1).await.expect("replace succeeds");
    assert_eq!(
        store.groups_of_member(&alice).await.expect("query"),
        vec![added.clone()],
        "membership added"
    );

    let mut renamed = added.clone();
    renamed.name = "Renamed".to_owned();
    let renamed = store.replace(&renamed, 2).await.expect("replace succeeds");
    assert_eq!(
        store.groups_of_member(&alice).await.expect("query"),
        vec![renamed.clone()],
        "a replace keeping the member keeps it found, with the new version"
    );

    let mut removed = renamed.clone();
    removed.members.remove(&alice);
    let removed = store.replace(&removed, 3).await.expect("replace succeeds");
    assert!(
        store
            .groups_of_member(&alice)
            .await
            .expect("query")
            .is_empty(),
        "membership removed"
    );
    assert_eq!(
        store.groups_of_member(&bob).await.expect("query"),
        vec![removed]
    );

    // A refused (stale) replace changes nothing.
    let mut stale = created;
    stale.members.insert(alice.clone());
    assert_conflict(&store.replace(&stale, 1).await, "stale_version");
    assert!(
        store
            .groups_of_member(&alice)
            .await
            .expect("query")
            .is_empty(),
        "a refused replace adds no membership"
    );
}

/// R-GRP-1: a deleted group is no longer found by its members.
pub async fn a_deleted_group_no_longer_lists_its_members(store: &impl GroupStore) {
    let alice = fresh_user_id();
    let kept = store
        .create(&Group::new(fresh_group_id(), "Kept", [alice.clone()]))
        .await
        .expect("create succeeds");
    let gone = store
        .create(&Group::new(fresh_group_id(), "Gone", [alice.clone()]))
        .await
        .expect("create succeeds");
    store.delete(&gone.id).await.expect("delete succeeds");
    assert_eq!(
        store.groups_of_member(&alice).await.expect("query"),
        vec![kept]
    );
}

/// R-GRP-1: a member of many groups (more than one page of any store's query) finds them all.
pub async fn a_member_of_many_groups_finds_them_all(store: &impl GroupStore) {
    let alice = fresh_user_id();
    let group_ids = ordered_group_ids(120);
    for id in &group_ids {
        store
            .create(&Group::new(
                id.clone(),
                "G",
                [alice.clone(), fresh_user_id()],
            ))
            .await
            .expect("create succeeds");
    }
    assert_eq!(
        ids(&store.groups_of_member(&alice).await.expect("query")),
        group_ids
    );
}

/// R-GRP-1: membership changes larger than one store transaction (hundreds of members at once)
/// are found by every member added and by none removed.
pub async fn a_large_membership_change_is_found_by_every_member(store: &impl GroupStore) {
    let first: Vec<_> = (0..250).map(|_| fresh_user_id()).collect();
    let created = store
        .create(&Group::new(fresh_group_id(), "Big", first.iter().cloned()))
        .await
        .expect("create succeeds");
    for member in &first {
        assert_eq!(
            ids(&store.groups_of_member(member).await.expect("query")),
            vec![created.id.clone()],
            "every created member finds the group"
        );
    }
    let joined: Vec<_> = (0..120).map(|_| fresh_user_id()).collect();
    let mut changed = created.clone();
    for left in &first[..150] {
        changed.members.remove(left);
    }
    changed.members.extend(joined.iter().cloned());
    let changed = store.replace(&changed, 1).await.expect("replace succeeds");
    for member in &first[..150] {
        assert!(
            store
                .groups_of_member(member)
                .await
                .expect("query")
                .is_empty(),
            "a removed member no longer finds the group"
        );
    }
    for member in first[150..].iter().chain(&joined) {
        assert_eq!(
            store.groups_of_member(member).await.expect("query"),
            vec![changed.clone()],
            "a kept or added member finds the group as stored"
        );
    }
}
