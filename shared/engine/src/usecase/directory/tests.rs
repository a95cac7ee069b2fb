//! [`UpsertUser`], [`UpsertGroup`] and [`AuditTrail`] on the in-memory [`World`].

use chrono::TimeDelta;

use super::*;
use crate::error::Error;
use crate::model::{EventKind, GroupBindingState, SuspendedReason, mail_nickname_for};
use crate::usecase::testkit::{World, gid, throttled, uid};

fn draft(id: &str, display_name: &str) -> UserDraft {
    UserDraft {
        email: format!("{id}@contoso.com"),
        display_name: display_name.to_owned(),
        ..UserDraft::default()
    }
}

/// [`draft`] with another `email`.
fn draft_with_email(id: &str, display_name: &str, email: &str) -> UserDraft {
    UserDraft {
        email: email.to_owned(),
        ..draft(id, display_name)
    }
}

async fn upsert(w: &World, id: &str, draft: UserDraft) -> Result<UserUpserted> {
    UpsertUser::new(w).upsert(&uid(id), draft).await
}

/// A user saved through the use case and bound.
async fn bound(w: &World, id: &str) -> UserUpserted {
    let saved = upsert(w, id, draft(id, id)).await.unwrap();
    w.bind(id).await;
    saved
}

fn group(name: &str, members: &[&str]) -> GroupDraft {
    GroupDraft {
        name: name.to_owned(),
        members: members.iter().map(|m| (*m).to_owned()).collect(),
    }
}

async fn upsert_group(w: &World, id: &str, draft: GroupDraft) -> Result<GroupUpserted> {
    UpsertGroup::new(w).upsert(&gid(id), draft).await
}

fn code(result: Result<impl std::fmt::Debug>) -> &'static str {
    result.expect_err("refused").code()
}

#[tokio::test]
async fn a_new_user_is_created_trimmed_and_not_bound() {
    // R-SAFE-1 (input checked and normalized before anything is written)
    let w = World::new().await;
    let saved = upsert(
        &w,
        "adele",
        UserDraft {
            email: "  adele@contoso.com ".to_owned(),
            display_name: " Adele Vance ".to_owned(),
            given_name: Some("   ".to_owned()),
            job_title: Some(" Engineer ".to_owned()),
            ..UserDraft::default()
        },
    )
    .await
    .unwrap();
    assert!(saved.created);
    assert_eq!(saved.sync, UserSynced::NotBound);
    assert_eq!(saved.sync.as_str(), "not_bound");
    assert_eq!(saved.user.email.as_str(), "adele@contoso.com");
    assert_eq!(saved.user.display_name, "Adele Vance");
    assert_eq!(saved.user.given_name, None, "a blank attribute is absent");
    assert_eq!(saved.user.job_title.as_deref(), Some("Engineer"));
    assert_eq!(saved.user.state, UserState::Active);
    assert_eq!(w.users.get(&uid("adele")).await.unwrap(), Some(saved.user));
}

#[tokio::test]
async fn invalid_users_are_refused_with_a_code_and_nothing_is_written() {
    // R-SAFE-1
    let w = World::new().await;
    for (bad, expected) in [
        (draft_with_email("x", "X", "not an email"), "invalid_email"),
        (draft("x", "   "), "invalid_field"),
        (draft("x", "Evil\u{202e}Name"), "invalid_name"),
        (
            UserDraft {
                surname: Some("a\u{0007}b".to_owned()),
                ..draft("x", "X")
            },
            "invalid_name",
        ),
    ] {
        assert_eq!(code(upsert(&w, "x", bad).await), expected);
    }
    assert_eq!(w.users.get(&uid("x")).await.unwrap(), None);
}

#[tokio::test]
async fn saving_the_same_user_again_writes_nothing_and_is_unchanged() {
    // R-BIND-7 (an unchanged PUT records no event)
    let w = World::new().await;
    let first = bound(&w, "adele").await;
    let events = w.events.all().len();
    let again = upsert(&w, "adele", draft("adele", "adele")).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.sync, UserSynced::Unchanged);
    assert_eq!(again.user.version, first.user.version, "not written");
    assert_eq!(w.events.all().len(), events);
}

#[tokio::test]
async fn a_changed_attribute_of_a_bound_user_is_pushed_to_m365() {
    // R-BIND-7
    let w = World::new().await;
    bound(&w, "adele").await;
    let account = World::object_id(&w.binding("adele").await);
    let saved = upsert(&w, "adele", draft("adele", "Adele V."))
        .await
        .unwrap();
    let UserSynced::Attributes(Outcome::Done { .. }) = &saved.sync else {
        panic!("pushed: {:?}", saved.sync)
    };
    assert_eq!(saved.sync.as_str(), "done");
    assert_eq!(saved.sync.binding(), None, "only a state change shows it");
    let m365 = w.directory.user(&w.tenant.id, &account).unwrap();
    assert_eq!(m365.display_name, "Adele V.");
    assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
}

#[tokio::test]
async fn a_throttled_attribute_push_waits_on_the_retry_queue_and_the_user_is_stored() {
    // R-BIND-7, R-BIND-6, R-AUD-1 (the failure is listed with Graph's request id)
    let w = World::new().await;
    bound(&w, "adele").await;
    w.directory.fail_next_call(throttled());
    let saved = upsert(&w, "adele", draft("adele", "Adele V."))
        .await
        .unwrap();
    assert_eq!(saved.sync.as_str(), "deferred");
    assert_eq!(saved.user.display_name, "Adele V.");
    assert_eq!(w.queue.snapshot().len(), 1, "the push is queued");
    let listed = AuditTrail::new(&w)
        .failures(&w.tenant.id, PageAsk::default())
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].graph_request_id.as_deref(), Some("req-429"));
}

#[tokio::test]
async fn the_email_of_a_bound_user_cannot_change_and_nothing_is_written() {
    // R-BIND-1 (the email is the UPN the tenant was routed by), R-SAFE-1
    let w = World::new().await;
    let first = bound(&w, "adele").await;
    let moved = draft_with_email("adele", "Adele V.", "adele.vance@contoso.com");
    let refused = upsert(&w, "adele", moved).await;
    assert!(
        matches!(
            &refused,
            Err(Error::Conflict(Conflict::EmailChangeWhileBound))
        ),
        "{refused:?}"
    );
    assert_eq!(code(refused), "email_change_while_bound");
    let stored = w.users.get(&uid("adele")).await.unwrap().unwrap();
    assert_eq!(stored, first.user, "nothing written");
}

#[tokio::test]
async fn the_email_can_change_once_the_binding_is_unselected_or_the_user_never_bound() {
    // R-BIND-1
    let w = World::new().await;
    upsert(&w, "bob", draft("bob", "Bob")).await.unwrap();
    let moved = upsert(
        &w,
        "bob",
        draft_with_email("bob", "Bob", "robert@contoso.com"),
    )
    .await
    .unwrap();
    assert_eq!(moved.user.email.as_str(), "robert@contoso.com");
    assert_eq!(moved.sync, UserSynced::NotBound);

    bound(&w, "adele").await;
    let mut binding = w.binding("adele").await;
    let version = binding.version;
    binding.state = BindingState::Unselected;
    w.bindings
        .put(&binding, crate::ports::Expect::Version(version))
        .await
        .unwrap();
    let moved = upsert(
        &w,
        "adele",
        draft_with_email("adele", "adele", "adele.vance@contoso.com"),
    )
    .await
    .unwrap();
    assert_eq!(moved.user.email.as_str(), "adele.vance@contoso.com");
}

#[tokio::test]
async fn an_update_keeps_the_sealed_password_and_when_it_was_set() {
    // R-PWD-1 (the password is set elsewhere; a PUT of the user never drops it), R-BIND-12
    let w = World::new().await;
    upsert(&w, "adele", draft("adele", "Adele")).await.unwrap();
    w.set_password("adele", "Correct-Horse-42").await;
    let with_password = w.users.get(&uid("adele")).await.unwrap().unwrap();
    assert!(with_password.password.is_some());
    w.clock.advance(TimeDelta::minutes(5));
    let saved = upsert(&w, "adele", draft("adele", "Adele V."))
        .await
        .unwrap();
    assert!(saved.user.version > with_password.version, "written");
    assert_eq!(saved.user.password, with_password.password);
    assert_eq!(
        saved.user.password_changed_at,
        with_password.password_changed_at
    );
}

#[tokio::test]
async fn disabling_a_bound_user_suspends_its_account_and_enabling_it_reactivates_it() {
    // R-BIND-9
    let w = World::new().await;
    bound(&w, "adele").await;
    let account = World::object_id(&w.binding("adele").await);
    let disabled = UserDraft {
        state: Some(UserState::Disabled),
        ..draft("adele", "adele")
    };
    let saved = upsert(&w, "adele", disabled.clone()).await.unwrap();
    assert_eq!(saved.sync.as_str(), "done");
    let shown = saved.sync.binding().expect("the binding is shown");
    assert_eq!(shown.state, BindingState::Suspended);
    assert_eq!(
        shown.suspended_reason,
        Some(SuspendedReason::DirectoryDisabled)
    );
    assert!(
        !w.directory
            .user(&w.tenant.id, &account)
            .unwrap()
            .account_enabled
    );
    assert_eq!(w.count_events(EventKind::UserDeprovision), 1);

    let again = upsert(&w, "adele", disabled).await.unwrap();
    assert_eq!(again.sync, UserSynced::Unchanged, "already suspended");

    let saved = upsert(&w, "adele", draft("adele", "adele")).await.unwrap();
    assert_eq!(
        saved.sync.binding().map(|b| b.state),
        Some(BindingState::Provisioned)
    );
    assert!(
        w.directory
            .user(&w.tenant.id, &account)
            .unwrap()
            .account_enabled
    );
}

#[tokio::test]
async fn a_state_change_not_yet_followed_is_caught_up_by_saving_the_same_user_again() {
    // R-BIND-9 (the state is compared with the binding, not with the stored user)
    let w = World::new().await;
    bound(&w, "adele").await;
    // Stored disabled without the follow-up (a run cut short).
    let mut user = w.users.get(&uid("adele")).await.unwrap().unwrap();
    user.state = UserState::Disabled;
    let version = user.version;
    w.users.replace(&user, version).await.unwrap();
    let disabled = UserDraft {
        state: Some(UserState::Disabled),
        ..draft("adele", "adele")
    };
    let saved = upsert(&w, "adele", disabled).await.unwrap();
    assert_eq!(saved.user.version, version + 1, "the user is not written");
    assert_eq!(
        saved.sync.binding().map(|b| b.state),
        Some(BindingState::Suspended)
    );
}

#[tokio::test]
async fn an_unbound_disabled_user_is_only_stored() {
    // R-BIND-9 (nothing to suspend without a binding)
    let w = World::new().await;
    upsert(&w, "adele", draft("adele", "adele")).await.unwrap();
    let saved = upsert(
        &w,
        "adele",
        UserDraft {
            state: Some(UserState::Disabled),
            ..draft("adele", "adele")
        },
    )
    .await
    .unwrap();
    assert_eq!(saved.user.state, UserState::Disabled);
    assert_eq!(saved.sync, UserSynced::NotBound);
    assert_eq!(w.directory.calls(), 0);
}

#[tokio::test]
async fn a_new_group_is_created_and_saving_it_again_writes_nothing() {
    // R-GRP-1
    let w = World::new().await;
    let saved = upsert_group(&w, "sales", group(" Sales ", &["adele", "bob"]))
        .await
        .unwrap();
    assert!(saved.created);
    assert_eq!(saved.sync, GroupSynced::NotBound);
    assert_eq!(saved.group.name, "Sales");
    assert_eq!(saved.group.members.len(), 2);
    let again = upsert_group(&w, "sales", group("Sales", &["bob", "adele"]))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.group.version, saved.group.version, "not written");
    assert_eq!(again.sync.as_str(), "not_bound");
    let renamed = upsert_group(&w, "sales", group("Sales EU", &["adele", "bob"]))
        .await
        .unwrap();
    assert_eq!(renamed.group.version, saved.group.version + 1);
}

#[tokio::test]
async fn invalid_groups_are_refused_with_a_code_and_nothing_is_written() {
    // R-SAFE-1
    let w = World::new().await;
    let too_many: Vec<String> = (0..=MAX_GROUP_MEMBERS).map(|n| format!("u{n}")).collect();
    for (bad, expected) in [
        (
            GroupDraft {
                name: "Sales".to_owned(),
                members: too_many,
            },
            "invalid_field",
        ),
        (group("Sales", &["not a user id"]), "invalid_id"),
        (group("  ", &[]), "invalid_field"),
        (group("Sa\u{202e}les", &[]), "invalid_name"),
    ] {
        assert_eq!(code(upsert_group(&w, "sales", bad).await), expected);
    }
    assert_eq!(w.groups.get(&gid("sales")).await.unwrap(), None);
}

#[tokio::test]
async fn a_bound_group_whose_members_changed_is_mirrored_and_keeps_its_binding() {
    // R-GRP-1
    let w = World::new().await;
    bound(&w, "adele").await;
    bound(&w, "bob").await;
    let bob = World::object_id(&w.binding("bob").await);
    upsert_group(&w, "sales", group("Sales", &["adele"]))
        .await
        .unwrap();
    SyncGroup::new(&w)
        .bind(&gid("sales"), &w.tenant.id)
        .await
        .unwrap();

    let renamed = upsert_group(&w, "sales", group("Sales EU", &["adele"]))
        .await
        .unwrap();
    assert_eq!(renamed.sync, GroupSynced::Unchanged, "members unchanged");
    assert!(renamed.group.binding.is_some(), "the binding survives");

    let saved = upsert_group(&w, "sales", group("Sales EU", &["adele", "bob"]))
        .await
        .unwrap();
    let GroupSynced::Pushed(outcome) = &saved.sync else {
        panic!("mirrored: {:?}", saved.sync)
    };
    let GroupOutcome::Synced { added, removed, .. } = outcome.as_ref() else {
        panic!("mirrored: {:?}", saved.sync)
    };
    assert_eq!((*added, *removed), (1, 0));
    assert_eq!(saved.sync.as_str(), "done");
    let binding = saved.group.binding.as_ref().expect("bound");
    assert_eq!(binding.state, GroupBindingState::Provisioned);
    let found = w
        .directory
        .groups_named(&w.tenant.id, &mail_nickname_for(&gid("sales")));
    assert_eq!(found.len(), 1);
    assert!(found[0].1.contains(&bob), "Bob joined the M365 group");
}

#[tokio::test]
async fn events_are_listed_by_filter_and_paged_with_cursors_bound_to_their_listing() {
    // R-AUD-1, R-SAFE-1 (a cursor of another listing is invalid_cursor; limit is bounded)
    let w = World::new().await;
    bound(&w, "adele").await;
    w.clock.advance(TimeDelta::minutes(1));
    upsert(&w, "adele", draft("adele", "Adele V."))
        .await
        .unwrap();
    bound(&w, "bob").await;
    let trail = AuditTrail::new(&w);
    let first = trail
        .events(
            EventFilter::User(uid("adele")),
            None,
            PageAsk {
                cursor: None,
                limit: Some("1"),
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.items[0].kind, EventKind::UserUpdateProvision);
    let cursor = first.next_cursor.expect("a second page");
    let second = trail
        .events(
            EventFilter::User(uid("adele")),
            None,
            PageAsk {
                cursor: Some(&cursor),
                limit: Some("1"),
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items[0].kind, EventKind::UserCreateProvision);
    assert!(
        second
            .items
            .iter()
            .all(|e| e.user_id.as_ref() == Some(&uid("adele")))
    );
    let foreign = trail
        .events(
            EventFilter::User(uid("bob")),
            None,
            PageAsk {
                cursor: Some(&cursor),
                limit: None,
            },
        )
        .await;
    assert_eq!(code(foreign), "invalid_cursor");
    let later = trail
        .events(
            EventFilter::User(uid("adele")),
            Some(w.clock.now() - TimeDelta::hours(1)),
            PageAsk {
                cursor: Some(&cursor),
                limit: None,
            },
        )
        .await;
    assert_eq!(
        code(later),
        "invalid_cursor",
        "since is part of the listing"
    );
    for limit in ["0", "101", "ten", "-1"] {
        let ask = PageAsk {
            cursor: None,
            limit: Some(limit),
        };
        let refused = trail.failures(&w.tenant.id, ask).await;
        assert_eq!(code(refused), "invalid_field", "{limit}");
    }
}

#[tokio::test]
async fn a_notification_email_is_stored_checked_like_email_and_cleared_when_absent() {
    // R-NOT-1
    let w = World::new().await;
    let with = |e: &str| UserDraft {
        notification_email: Some(e.to_owned()),
        ..draft("adele", "Adele")
    };
    let saved = upsert(&w, "adele", with(" Adele.Home@Example.org "))
        .await
        .unwrap();
    assert_eq!(
        saved.user.notification_email.as_ref().map(Email::as_str),
        Some("adele.home@example.org")
    );
    let err = upsert(&w, "adele", with("not-an-address"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_email");
    assert!(err.to_string().starts_with("notificationEmail: "), "{err}");
    let stored = w.users.get(&uid("adele")).await.unwrap().unwrap();
    assert_eq!(stored.version, saved.user.version, "nothing written");
    // PUT replaces: absent (or blank) clears it, as every optional attribute.
    let cleared = upsert(&w, "adele", with("  ")).await.unwrap();
    assert_eq!(cleared.user.notification_email, None);
    assert!(cleared.user.version > saved.user.version);
}

#[tokio::test]
async fn changing_the_notification_email_of_a_bound_user_is_stored_without_an_m365_push() {
    // R-NOT-1: it is ours, not an M365 attribute
    let w = World::new().await;
    let first = bound(&w, "adele").await;
    let events = w.events.all().len();
    let saved = upsert(
        &w,
        "adele",
        UserDraft {
            notification_email: Some("adele@example.org".to_owned()),
            ..draft("adele", "adele")
        },
    )
    .await
    .unwrap();
    assert_eq!(saved.sync, UserSynced::Unchanged);
    assert!(saved.user.version > first.user.version, "stored");
    assert_eq!(w.events.all().len(), events, "no provisioning event");
}
