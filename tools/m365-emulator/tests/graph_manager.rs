//! A user's manager over HTTP (R-ATTR-1): `GET /users/{id}/manager`, `PUT`/`DELETE
//! /users/{id}/manager/$ref`, `manager@delta` in users delta, and a deleted manager.

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::{Value, json};

const NO_MANAGER: &str = "Resource 'manager' does not exist or one of its queried reference-property objects are not present.";

async fn assign(emu: &Emu, user: &str, manager: &str) -> (u16, Value) {
    let (status, _, body) = emu
        .send(
            Method::PUT,
            &emu.contoso(),
            &format!("/v1.0/users/{user}/manager/$ref"),
            Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{manager}")})),
        )
        .await;
    (status, body)
}

async fn delta_items(emu: &Emu, url: &str) -> (Vec<Value>, String) {
    follow(emu, &emu.contoso(), url).await
}

// R-ATTR-1: a user without a manager answers Graph's exact 404.
#[tokio::test]
async fn a_user_without_a_manager_answers_404_resource_not_found() {
    let emu = Emu::start().await;
    let (status, _, body) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager"))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "Request_ResourceNotFound", NO_MANAGER);
}

// R-ATTR-1: PUT $ref assigns (204); GET returns the manager as a directoryObject, by id or UPN.
#[tokio::test]
async fn assigning_a_manager_answers_204_and_get_returns_the_manager() {
    let emu = Emu::start().await;
    let (status, body) = assign(&emu, ADELE, ALEX).await;
    assert_eq!(status, 204, "{body}");
    let (status, _, got) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager"))
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], ALEX);
    assert_eq!(got["@odata.type"], "#microsoft.graph.user");
    assert_eq!(
        got["@odata.context"],
        format!("{}/v1.0/$metadata#directoryObjects/$entity", emu.base)
    );
    let (_, _, adele) = emu
        .get(
            &emu.contoso(),
            &format!("/v1.0/users/{ADELE}?$select=userPrincipalName"),
        )
        .await;
    let upn = adele["userPrincipalName"].as_str().expect("upn");
    let (status, _, by_upn) = emu
        .get(
            &emu.contoso(),
            &format!("/v1.0/users/{upn}/manager?$select=id,displayName"),
        )
        .await;
    assert_eq!(status, 200, "{by_upn}");
    assert_eq!(by_upn["id"], ALEX);
    assert!(by_upn.get("userPrincipalName").is_none(), "{by_upn}");
}

// R-ATTR-1: a second PUT replaces the manager; DELETE removes it (204), then 404 again.
#[tokio::test]
async fn a_manager_is_replaced_by_put_and_removed_by_delete() {
    let emu = Emu::start().await;
    assert_eq!(assign(&emu, ADELE, ALEX).await.0, 204);
    assert_eq!(assign(&emu, ADELE, LEE).await.0, 204);
    let (_, _, got) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager"))
        .await;
    assert_eq!(got["id"], LEE);
    let (status, _, body) = emu
        .delete(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager/$ref"))
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, _, body) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager"))
        .await;
    assert_eq!(status, 404);
    assert_error(&body, "Request_ResourceNotFound", NO_MANAGER);
    let (status, _, body) = emu
        .delete(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager/$ref"))
        .await;
    assert_eq!(status, 404, "removing a manager that is not there is 404");
    assert_error(&body, "Request_ResourceNotFound", NO_MANAGER);
}

// R-ATTR-1: the errors of PUT $ref: unknown user, unknown manager, bad body, self.
#[tokio::test]
async fn assigning_a_manager_refuses_unknown_users_bad_references_and_oneself() {
    let emu = Emu::start().await;
    let ghost = "00000000-0000-4000-8000-000000000001";
    let (status, body) = assign(&emu, ghost, ALEX).await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{ghost}' does not exist or one of its queried reference-property objects are not present."
        ),
    );
    let (status, body) = assign(&emu, ADELE, ghost).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
    let (status, body) = assign(&emu, ADELE, "not-a-guid").await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "Invalid object identifier 'not-a-guid'.",
    );
    let (status, _, body) = emu
        .send(
            Method::PUT,
            &emu.contoso(),
            &format!("/v1.0/users/{ADELE}/manager/$ref"),
            Some(json!({"id": ALEX})),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "A value is required for property '@odata.id'.",
    );
    let (status, body) = assign(&emu, ADELE, ADELE).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "Request_BadRequest");
    let (status, _, _) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager"))
        .await;
    assert_eq!(status, 404, "nothing was assigned");
}

// R-ATTR-1: a soft-deleted manager is no manager for reads (unconfirmed: the link comes back
// with a restore).
#[tokio::test]
async fn a_deleted_manager_is_no_manager() {
    let emu = Emu::start().await;
    assert_eq!(assign(&emu, ADELE, LEE).await.0, 204);
    let (status, _, _) = emu
        .delete(&emu.contoso(), &format!("/v1.0/users/{LEE}"))
        .await;
    assert_eq!(status, 204);
    let (status, _, body) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager"))
        .await;
    assert_eq!(status, 404);
    assert_error(&body, "Request_ResourceNotFound", NO_MANAGER);
}

// graph-spec §5, R-ATTR-1: users delta selecting `manager` reports manager@delta: the current
// manager in the initial round, then each assignment and removal (a manager change alone makes
// the user appear); without `manager` selected, a manager change is not a change.
#[tokio::test]
async fn users_delta_selecting_manager_reports_manager_changes() {
    let emu = Emu::start().await;
    assert_eq!(assign(&emu, ADELE, ALEX).await.0, 204);
    let (initial, link) = delta_items(
        &emu,
        &emu.url("/v1.0/users/delta?$select=displayName,manager"),
    )
    .await;
    let adele = initial
        .iter()
        .find(|u| u["id"] == ADELE)
        .expect("adele listed");
    assert_eq!(
        adele["manager@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": ALEX}])
    );
    let alex = initial.iter().find(|u| u["id"] == ALEX).expect("alex");
    assert!(alex.get("manager@delta").is_none(), "{alex}");
    let (_, plain_link) =
        delta_items(&emu, &emu.url("/v1.0/users/delta?$select=displayName")).await;

    assert_eq!(assign(&emu, ADELE, LEE).await.0, 204);
    let (changes, link) = delta_items(&emu, &link).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["id"], ADELE);
    assert_eq!(
        changes[0]["manager@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": LEE}])
    );
    let (plain, _) = delta_items(&emu, &plain_link).await;
    assert!(plain.is_empty(), "manager not selected: {plain:?}");

    let (status, _, _) = emu
        .delete(&emu.contoso(), &format!("/v1.0/users/{ADELE}/manager/$ref"))
        .await;
    assert_eq!(status, 204);
    let (changes, _) = delta_items(&emu, &link).await;
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0]["manager@delta"],
        json!([{"@odata.type": "#microsoft.graph.user", "id": LEE, "@removed": {"reason": "deleted"}}])
    );
}

// R-ATTR-1: GET /users/{id}?$expand=manager embeds the manager; absent without one.
#[tokio::test]
async fn expanding_manager_embeds_the_manager_object() {
    let emu = Emu::start().await;
    let (status, _, plain) = emu
        .get(
            &emu.contoso(),
            &format!("/v1.0/users/{ADELE}?$expand=manager"),
        )
        .await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain.get("manager").is_none(), "{plain}");
    assert_eq!(assign(&emu, ADELE, ALEX).await.0, 204);
    let (status, _, got) = emu
        .get(
            &emu.contoso(),
            &format!("/v1.0/users/{ADELE}?$expand=manager"),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["id"], ADELE);
    assert_eq!(got["manager"]["id"], ALEX);
    assert_eq!(got["manager"]["@odata.type"], "#microsoft.graph.user");
}
