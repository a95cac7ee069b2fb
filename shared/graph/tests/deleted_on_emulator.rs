//! `GraphDirectory`'s deleted users against the real m365-emulator (R-BIND-10, graph-spec
//! §3.5–3.6): read by id and by UPN, restore (same id back), and a restore refused because the
//! UPN was taken meanwhile, classified apart from other refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_engine::Error;
use m365_engine::error::{Conflict, Entity};
use m365_engine::model::{Email, M365ObjectId};
use m365_engine::ports::Directory;
use m365_graph::TokenProvider;
use support::{Emu, adele as new_user, start};

/// Deletes `id` in M365 as an admin would (`DELETE /users/{id}`, soft delete).
async fn delete(emu: &Emu, id: &M365ObjectId) {
    let token = emu
        .directory()
        .tokens()
        .access_token(&emu.tenant())
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .delete(format!("{}/v1.0/users/{id}", emu.base))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn a_deleted_user_is_found_by_id_and_by_upn_and_restored_with_its_id() {
    // R-BIND-10 (graph-spec §3.6)
    let emu = start().await;
    let dir = emu.directory();
    let tenant = emu.tenant();
    let created = dir
        .create_user(&tenant, &new_user("adele.v"))
        .await
        .unwrap();
    let upn = Email::parse(&created.user_principal_name).unwrap();
    assert_eq!(
        dir.get_deleted_user(&tenant, &created.id).await.unwrap(),
        None
    );
    delete(&emu, &created.id).await;
    let by_id = dir
        .get_deleted_user(&tenant, &created.id)
        .await
        .unwrap()
        .expect("in deletedItems");
    assert_eq!(by_id.id, created.id);
    assert!(by_id.user_principal_name.eq_ignore_ascii_case(upn.as_str()));
    assert!(by_id.deleted_at.is_some());
    let by_upn = dir
        .find_deleted_user_by_upn(&tenant, &upn)
        .await
        .unwrap()
        .expect("found by UPN");
    assert_eq!(by_upn.id, created.id);
    let restored = dir.restore_user(&tenant, &created.id).await.unwrap();
    assert_eq!(restored.id, created.id);
    assert!(dir.get_user(&tenant, &created.id).await.unwrap().is_some());
    assert_eq!(
        dir.get_deleted_user(&tenant, &created.id).await.unwrap(),
        None
    );
    // Restored already: nothing deleted has the id any more.
    let again = dir.restore_user(&tenant, &created.id).await.unwrap_err();
    assert!(
        matches!(
            &again,
            Error::NotFound {
                entity: Entity::M365User,
                ..
            }
        ),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_restore_refused_because_the_upn_was_taken_is_a_restore_conflict() {
    // R-BIND-10 (graph-spec §3.5 "UPN reservation", §13.4)
    let emu = start().await;
    let dir = emu.directory();
    let tenant = emu.tenant();
    let first = dir
        .create_user(&tenant, &new_user("adele.v"))
        .await
        .unwrap();
    delete(&emu, &first.id).await;
    let second = dir
        .create_user(&tenant, &new_user("adele.v"))
        .await
        .unwrap();
    assert_ne!(second.id, first.id);
    let refused = dir.restore_user(&tenant, &first.id).await.unwrap_err();
    match refused {
        Error::Conflict(Conflict::RestoreConflict { account, property }) => {
            assert_eq!(account, first.id.to_string());
            assert_eq!(property, "userPrincipalName");
        }
        other => panic!("expected a restore conflict, got {other:?}"),
    }
    assert!(
        dir.get_deleted_user(&tenant, &first.id)
            .await
            .unwrap()
            .is_some(),
        "still deleted"
    );
}
