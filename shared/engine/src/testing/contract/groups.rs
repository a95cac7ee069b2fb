//! Contract of [`GroupStore`].

use super::{
    assert_conflict, assert_not_found, collect_pages, fresh_group_id, fresh_suffix, fresh_user_id,
    listed_ids,
};
use crate::model::{Group, GroupId, UserId};
use crate::ports::GroupStore;

/// The groups `member` is found in; the query must succeed.
async fn groups_of(store: &impl GroupStore, member: &UserId) -> Vec<Group> {
    store.groups_of_member(member).await.expect("query")
}

/// `group` changed by `change`, replaced in `store` at version `expected`; the replace must succeed.
async fn replace_changed(
    store: &impl GroupStore,
    group: &Group,
    expected: u64,
    change: impl FnOnce(&mut Group),
) -> Group {
    let mut changed = group.clone();
    change(&mut changed);
    store
        .replace(&changed, expected)
        .await
        .expect("replace succeeds")
}

/// The group `id` as `store` holds it; the read must succeed.
async fn stored(store: &impl GroupStore, id: &GroupId) -> Option<Group> {
    store.get(id).await.expect("get succeeds")
}

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
    assert_eq!(stored(store, &g.id).await, Some(created));
    let empty = Group::new(fresh_group_id(), "Empty", []);
    let created = store
        .create(&empty)
        .await
        .expect("create of an empty group succeeds");
    assert_eq!(stored(store, &empty.id).await, Some(created));
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
    let replaced = replace_changed(store, &created, 1, |g| {
        g.members.insert(fresh_user_id());
    })
    .await;
    assert_eq!(replaced.version, 2);
    assert_eq!(replaced.members.len(), 3);
    assert_conflict(&store.replace(&created, 1).await, "stale_version");
    assert_eq!(stored(store, &created.id).await, Some(replaced));
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
    let listed = listed_ids(
        collect_pages(2, |page| async move { store.list(&page).await }).await,
        |g| g.id,
        |id| id.as_str().starts_with(&prefix),
    );
    assert_eq!(listed, ids, "every group once");
}

/// R-GRP-1: a deleted group is gone; deleting again is harmless.
pub async fn a_deleted_group_is_gone_and_deleting_again_is_harmless(store: &impl GroupStore) {
    let g = store.create(&group()).await.expect("create succeeds");
    store.delete(&g.id).await.expect("delete succeeds");
    assert_eq!(stored(store, &g.id).await, None);
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
    assert!(groups_of(store, &alice).await.is_empty());

    let added = replace_changed(store, &created, 1, |g| {
        g.members.insert(alice.clone());
    })
    .await;
    assert_eq!(
        groups_of(store, &alice).await,
        vec![added.clone()],
        "membership added"
    );

    let renamed = replace_changed(store, &added, 2, |g| "Renamed".clone_into(&mut g.name)).await;
    assert_eq!(
        groups_of(store, &alice).await,
        vec![renamed.clone()],
        "a replace keeping the member keeps it found, with the new version"
    );

    let removed = replace_changed(store, &renamed, 3, |g| {
        g.members.remove(&alice);
    })
    .await;
    assert!(
        groups_of(store, &alice).await.is_empty(),
        "membership removed"
    );
    assert_eq!(groups_of(store, &bob).await, vec![removed]);

    // A refused (stale) replace changes nothing.
    let mut stale = created;
    stale.members.insert(alice.clone());
    assert_conflict(&store.replace(&stale, 1).await, "stale_version");
    assert!(
        groups_of(store, &alice).await.is_empty(),
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
    assert_eq!(groups_of(store, &alice).await, vec![kept]);
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
    assert_eq!(ids(&groups_of(store, &alice).await), group_ids);
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
            ids(&groups_of(store, member).await),
            vec![created.id.clone()],
            "every created member finds the group"
        );
    }
    let joined: Vec<_> = (0..120).map(|_| fresh_user_id()).collect();
    let changed = replace_changed(store, &created, 1, |g| {
        for left in &first[..150] {
            g.members.remove(left);
        }
        g.members.extend(joined.iter().cloned());
    })
    .await;
    for member in &first[..150] {
        assert!(
            groups_of(store, member).await.is_empty(),
            "a removed member no longer finds the group"
        );
    }
    for member in first[150..].iter().chain(&joined) {
        assert_eq!(
            groups_of(store, member).await,
            vec![changed.clone()],
            "a kept or added member finds the group as stored"
        );
    }
}
