//! R-ATTR-1 across the use cases on the fake World: the attributes reach M365 on bind (create
//! payload; an adopted account gets the differing ones), on change (only what changed, a cleared
//! one cleared, `usageLocation` never cleared), and every bad one is refused at once by the
//! directory upsert with nothing written. Reconcile's drift repair is in `reconcile`'s tests.

use crate::error::{Error, InvalidInput};
use crate::model::{AttributesPatch, DirectoryUser, EventKind, M365User, UserAttributes};
use crate::ports::UserStore;
use crate::testing::contract::every_attribute;
use crate::usecase::Outcome;
use crate::usecase::directory::{UpsertUser, UserDraft};
use crate::usecase::testkit::{World, uid};

/// Stores `id` with `attributes` (the user must exist).
async fn set_attributes(w: &World, id: &str, attributes: UserAttributes) -> DirectoryUser {
    let mut user = w.users.get(&uid(id)).await.unwrap().unwrap();
    user.attributes = attributes;
    let version = user.version;
    w.users.replace(&user, version).await.unwrap()
}

async fn account(w: &World, id: &str) -> M365User {
    let binding = w.binding(id).await;
    w.directory
        .user(&w.tenant.id, &World::object_id(&binding))
        .unwrap()
}

#[tokio::test]
async fn binding_a_new_user_creates_the_account_with_every_attribute() {
    // R-ATTR-1
    let w = World::new().await;
    w.user("adele").await;
    set_attributes(&w, "adele", every_attribute()).await;
    assert!(matches!(w.bind("adele").await, Outcome::Done { .. }));
    assert_eq!(account(&w, "adele").await.attributes, every_attribute());
}

#[tokio::test]
async fn adopting_an_account_patches_only_the_attributes_that_differ() {
    // R-ATTR-1, R-BIND-2
    let (w, existing) = World::with_adeles_account("Existing-Pass-1").await;
    let mut theirs = every_attribute();
    theirs.city = Some("Seattle".into());
    theirs.usage_location = Some("GB".into());
    w.change_in_m365(&existing.id, AttributesPatch::full(&theirs))
        .await;
    let mut ours = every_attribute();
    ours.usage_location = None;
    ours.mobile_phone = None;
    set_attributes(&w, "adele", ours).await;
    assert!(matches!(w.bind("adele").await, Outcome::Done { .. }));
    let adopted = account(&w, "adele").await.attributes;
    assert_eq!(
        adopted.city.as_deref(),
        Some("Redmond"),
        "differing: patched"
    );
    assert_eq!(
        adopted.mobile_phone, None,
        "cleared in the directory: cleared"
    );
    assert_eq!(
        adopted.usage_location.as_deref(),
        Some("GB"),
        "unset in the directory: M365's usage location stays (not nullable)"
    );
}

#[tokio::test]
async fn a_change_pushes_only_the_changed_attributes_and_clears_the_cleared_ones() {
    // R-ATTR-1, R-BIND-7
    let w = World::new().await;
    w.user("adele").await;
    let before = set_attributes(&w, "adele", every_attribute()).await;
    w.bind("adele").await;
    // An M365 admin changed the office meanwhile: a change of other attributes leaves it.
    let id = World::object_id(&w.binding("adele").await);
    let drift = AttributesPatch {
        office_location: Some(Some("Drifted".into())),
        ..AttributesPatch::default()
    };
    w.change_in_m365(&id, drift).await;
    let mut changed = every_attribute();
    changed.employee_id = Some("E-2002".into());
    changed.city = None;
    changed.business_phones = Vec::new();
    changed.usage_location = None;
    set_attributes(&w, "adele", changed).await;
    let outcome = w
        .updater()
        .push_changed(&uid("adele"), Some(&before.attributes))
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Done { .. }), "{outcome:?}");
    let m365 = account(&w, "adele").await.attributes;
    assert_eq!(m365.employee_id.as_deref(), Some("E-2002"));
    assert_eq!(m365.city, None, "cleared");
    assert!(m365.business_phones.is_empty(), "cleared");
    assert_eq!(m365.usage_location.as_deref(), Some("US"), "never cleared");
    assert_eq!(
        m365.office_location.as_deref(),
        Some("Drifted"),
        "unchanged in the directory: not sent"
    );
    let event = w.event(EventKind::UserUpdateProvision);
    assert_eq!(
        event.details.unwrap()["attributes"],
        serde_json::json!(["employeeId", "city", "businessPhones"])
    );
}

#[tokio::test]
async fn a_directory_upsert_with_bad_attributes_lists_every_one_and_writes_nothing() {
    // R-ATTR-1, R-SAFE-1
    let w = World::new().await;
    let draft = UserDraft {
        email: "adele@contoso.com".into(),
        display_name: "Adele".into(),
        attributes: UserAttributes {
            employee_id: Some("E".repeat(17)),
            business_phones: vec!["1".into(), "2".into()],
            usage_location: Some("UK".into()),
            ..UserAttributes::default()
        },
        ..UserDraft::default()
    };
    let err = UpsertUser::new(&w)
        .upsert(&uid("adele"), draft)
        .await
        .unwrap_err();
    let Error::Invalid(InvalidInput::Several(problems)) = &err else {
        panic!("every problem listed: {err:?}")
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(err.code(), "invalid_field");
    assert_eq!(w.users.get(&uid("adele")).await.unwrap(), None);
}

#[tokio::test]
async fn a_directory_upsert_trims_attributes_and_a_change_of_one_is_pushed() {
    // R-ATTR-1, R-BIND-7
    let w = World::new().await;
    let upsert = UpsertUser::new(&w);
    let draft = |city: &str| UserDraft {
        email: "adele@contoso.com".into(),
        display_name: "Adele".into(),
        attributes: UserAttributes {
            city: Some(city.into()),
            usage_location: Some(" US ".into()),
            ..UserAttributes::default()
        },
        ..UserDraft::default()
    };
    let saved = upsert.upsert(&uid("adele"), draft("Oslo")).await.unwrap();
    assert_eq!(saved.user.attributes.usage_location.as_deref(), Some("US"));
    w.bind("adele").await;
    let saved = upsert.upsert(&uid("adele"), draft("Bergen")).await.unwrap();
    assert_eq!(saved.sync.as_str(), "done");
    assert_eq!(
        account(&w, "adele").await.attributes.city.as_deref(),
        Some("Bergen")
    );
}
