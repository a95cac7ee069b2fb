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
