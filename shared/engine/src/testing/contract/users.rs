//! Contract of [`UserStore`]: identity by id, email uniqueness (case-insensitive), versions, paging.

use chrono::TimeDelta;

use super::{
    assert_conflict, assert_invalid_cursor, assert_not_found, collect_pages, fresh_email,
    fresh_suffix, fresh_user_id, listed_ids, now_ms, user_id_with,
};
use crate::model::{DirectoryUser, Email, PageRequest, PageToken, SealedPassword, UserState};
use crate::ports::UserStore;

/// The user `store` finds by `email`; the read must succeed.
async fn by_email(store: &impl UserStore, email: &Email) -> Option<DirectoryUser> {
    store
        .get_by_email(email)
        .await
        .expect("get_by_email succeeds")
}

fn user(email: Email) -> DirectoryUser {
    DirectoryUser::new(fresh_user_id(), email, "Adele Vance")
}

/// R-BIND-1: a created user is stored with version 1 and read back by id and by email.
pub async fn a_created_user_can_be_read_by_id_and_by_email(store: &impl UserStore) {
    let u = user(fresh_email());
    let created = store.create(&u).await.expect("create succeeds");
    assert_eq!(created.version, 1);
    assert_eq!(
        created,
        DirectoryUser {
            version: 1,
            ..u.clone()
        }
    );
    assert_eq!(
        store.get(&u.id).await.expect("get succeeds"),
        Some(created.clone())
    );
    let upper = Email::parse(&u.email.as_str().to_uppercase()).expect("valid email");
    assert_eq!(by_email(store, &upper).await, Some(created));
}

/// R-BIND-1, R-ATTR-1: every optional field, the sealed password and its date survive the store.
pub async fn every_field_of_a_user_round_trips(store: &impl UserStore) {
    let mut u = user(fresh_email());
    u.given_name = Some("Adele".into());
    u.surname = Some("Vance".into());
    u.job_title = Some("Retail Manager".into());
    u.department = Some("Retail".into());
    // R-ATTR-1
    u.attributes = super::every_attribute();
    u.state = UserState::Disabled;
    u.password = Some(SealedPassword {
        key_version: "v7".into(),
        nonce: vec![1; 12],
        ciphertext: vec![0, 255, 7, 42, 9],
    });
    u.password_changed_at = Some(now_ms() - TimeDelta::days(3));
    let created = store.create(&u).await.expect("create succeeds");
    assert_eq!(store.get(&u.id).await.expect("get succeeds"), Some(created));
}

/// R-SAFE-1: an unknown id or email reads as none.
pub async fn a_missing_user_reads_as_none(store: &impl UserStore) {
    assert_eq!(
        store.get(&fresh_user_id()).await.expect("get succeeds"),
        None
    );
    assert_eq!(
        store
            .get_by_email(&fresh_email())
            .await
            .expect("get_by_email succeeds"),
        None
    );
}

/// R-BIND-1 / R-SAFE-1 / R-IMP-2: a second user with the same email, in any case, is refused and not stored.
pub async fn a_second_user_with_the_same_email_is_refused(store: &impl UserStore) {
    let first = user(fresh_email());
    store.create(&first).await.expect("first create succeeds");
    let shouted = Email::parse(&first.email.as_str().to_uppercase()).expect("valid email");
    let second = user(shouted);
    let result = store.create(&second).await;
    assert_conflict(&result, "email_exists");
    assert_eq!(store.get(&second.id).await.expect("get succeeds"), None);
}

/// R-SAFE-1: creating a user whose id exists is refused and leaves the stored user unchanged.
pub async fn creating_a_user_twice_is_refused(store: &impl UserStore) {
    let u = user(fresh_email());
    let created = store.create(&u).await.expect("create succeeds");
    let again = DirectoryUser {
        email: fresh_email(),
        ..u.clone()
    };
    assert_conflict(&store.create(&again).await, "already_exists");
    assert_eq!(store.get(&u.id).await.expect("get succeeds"), Some(created));
    assert_eq!(by_email(store, &again.email).await, None);
}

/// R-BIND-7: a replace with the current version stores it with the next version; a stale one is refused.
pub async fn a_replace_bumps_the_version_and_a_stale_replace_is_refused(store: &impl UserStore) {
    let created = store
        .create(&user(fresh_email()))
        .await
        .expect("create succeeds");
    let changed = DirectoryUser {
        job_title: Some("Director".into()),
        ..created.clone()
    };
    let replaced = store.replace(&changed, 1).await.expect("replace succeeds");
    assert_eq!(replaced.version, 2);
    assert_eq!(replaced.job_title.as_deref(), Some("Director"));
    let stale = DirectoryUser {
        job_title: Some("Intern".into()),
        ..created
    };
    assert_conflict(&store.replace(&stale, 1).await, "stale_version");
    assert_eq!(
        store.get(&replaced.id).await.expect("get succeeds"),
        Some(replaced)
    );
}

/// R-SAFE-1: replacing a user that does not exist is not found.
pub async fn replacing_a_missing_user_is_not_found(store: &impl UserStore) {
    assert_not_found(&store.replace(&user(fresh_email()), 1).await);
}

/// R-BIND-1: changing a user's email frees the old one for another user.
pub async fn changing_a_users_email_frees_the_old_one(store: &impl UserStore) {
    let created = store
        .create(&user(fresh_email()))
        .await
        .expect("create succeeds");
    let old = created.email.clone();
    let new = fresh_email();
    let moved = store
        .replace(
            &DirectoryUser {
                email: new.clone(),
                ..created
            },
            1,
        )
        .await
        .expect("replace succeeds");
    assert_eq!(by_email(store, &new).await, Some(moved));
    assert_eq!(by_email(store, &old).await, None);
    store
        .create(&user(old))
        .await
        .expect("the freed email can be used again");
}

/// R-BIND-1: changing a user's email to another user's is refused and changes nothing.
pub async fn changing_a_users_email_to_a_taken_one_is_refused(store: &impl UserStore) {
    let a = store
        .create(&user(fresh_email()))
        .await
        .expect("create a succeeds");
    let b = store
        .create(&user(fresh_email()))
        .await
        .expect("create b succeeds");
    let result = store
        .replace(
            &DirectoryUser {
                email: a.email.clone(),
                ..b.clone()
            },
            1,
        )
        .await;
    assert_conflict(&result, "email_exists");
    assert_eq!(
        store.get(&b.id).await.expect("get succeeds"),
        Some(b.clone())
    );
    assert_eq!(by_email(store, &b.email).await, Some(b));
    assert_eq!(by_email(store, &a.email).await, Some(a));
}

/// R-IMP-1: users are listed across pages, each once.
pub async fn users_are_listed_across_pages(store: &impl UserStore) {
    let prefix = format!("l-{}", fresh_suffix());
    let mut ids = Vec::new();
    for n in [3, 0, 4, 1, 2] {
        let u = DirectoryUser::new(user_id_with(&prefix, n), fresh_email(), "Listed");
        store.create(&u).await.expect("create succeeds");
        ids.push(u.id);
    }
    ids.sort();
    let listed = listed_ids(
        collect_pages(2, |page| async move { store.list(&page).await }).await,
        |u| u.id,
        |id| id.as_str().starts_with(&prefix),
    );
    assert_eq!(listed, ids, "every user once");
}

/// R-SAFE-1: a cursor no store produced is refused as invalid.
pub async fn a_garbage_cursor_is_refused(store: &impl UserStore) {
    let page = PageRequest::after(PageToken::new("not a cursor"), 10);
    assert_invalid_cursor(&store.list(&page).await);
}

/// R-ATTR-1: a manager's direct reports are found by its id (ordered by id), a changed or cleared
/// `managerId` moves the report, and `managerId` round-trips.
pub async fn reports_are_found_by_their_manager_and_follow_changes(store: &impl UserStore) {
    let boss = fresh_user_id();
    let other = fresh_user_id();
    let mut a = user(fresh_email());
    a.manager_id = Some(boss.clone());
    let mut b = user(fresh_email());
    b.manager_id = Some(boss.clone());
    let a = store.create(&a).await.expect("create succeeds");
    let b = store.create(&b).await.expect("create succeeds");
    store
        .create(&user(fresh_email()))
        .await
        .expect("create succeeds");
    assert_eq!(store.get(&a.id).await.expect("get"), Some(a.clone()));
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(store.reports_of(&boss).await.expect("reports"), expected);

    let mut moved = a.clone();
    moved.manager_id = Some(other.clone());
    let moved = store.replace(&moved, a.version).await.expect("replace");
    let mut cleared = b.clone();
    cleared.manager_id = None;
    store.replace(&cleared, b.version).await.expect("replace");
    assert_eq!(store.reports_of(&boss).await.expect("reports"), Vec::new());
    assert_eq!(
        store.reports_of(&other).await.expect("reports"),
        vec![moved]
    );
    assert_eq!(
        store.reports_of(&fresh_user_id()).await.expect("reports"),
        Vec::new()
    );
}
