//! Restore of deleted users (graph-spec §3.5, §3.6; R-BIND-10 relies on it): the same object id
//! comes back with its licences and group memberships, at once even while its address is held
//! for new accounts; a restore fails with Graph's duplicate-value error when an active user
//! took the UPN, mail or a proxy address meanwhile; after 30 days the user is gone.

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::{Value, json};

/// `POST /directory/deletedItems/{id}/restore` with an empty body.
async fn restore(emu: &Emu, token: &str, id: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    emu.post(
        token,
        &format!("/v1.0/directory/deletedItems/{id}/restore"),
        json!({}),
    )
    .await
}

fn ids(body: &Value) -> Vec<String> {
    body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|o| o["id"].as_str().map(str::to_owned))
        .collect()
}

// graph-spec §3.5 ("if the user is restored within 30 days, these objects are restored to them.
// The user is also restored to any groups they were a member of"), §9: licences kept.
#[tokio::test]
async fn a_restored_user_keeps_its_id_licences_and_group_memberships() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, _) = emu
        .post(
            &t,
            &format!("/v1.0/users/{ALEX}/assignLicense"),
            json!({"addLicenses": [{"disabledPlans": [], "skuId": E3}], "removeLicenses": []}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await.0, 204);
    assert_eq!(
        emu.get(&t, &format!("/v1.0/users/{ALEX}/licenseDetails"))
            .await
            .0,
        404
    );
    let (status, _, body) = restore(&emu, &t, ALEX).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], ALEX);
    assert_eq!(body["@odata.type"], "#microsoft.graph.user");
    let (_, _, user) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ALEX}?$select=id,assignedLicenses"),
        )
        .await;
    assert_eq!(
        user["assignedLicenses"],
        json!([{"disabledPlans": [], "skuId": E3}])
    );
    let (status, _, details) = emu
        .get(&t, &format!("/v1.0/users/{ALEX}/licenseDetails"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(details["value"][0]["skuId"], E3);
    let (_, _, groups) = emu
        .get(&t, &format!("/v1.0/users/{ALEX}/memberOf?$select=id"))
        .await;
    assert_eq!(ids(&groups), vec![ENGINEERING.to_owned()]);
    let (_, _, deleted) = emu
        .get(&t, "/v1.0/directory/deletedItems/microsoft.graph.user")
        .await;
    assert!(ids(&deleted).is_empty());
}

// Realism switch (issue 3) + graph-spec §3.6: the address hold applies to new accounts only;
// restoring the deleted owner is not held up by it, and the hold ends with the restore.
#[tokio::test]
async fn a_deleted_user_is_restored_at_once_while_its_address_is_held_for_new_accounts() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"addressReleaseDelayMs": 86_400_000})),
    )
    .await;
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    let (status, _, body) = emu
        .post(&t, "/v1.0/users", new_user("AlexW@contoso.com"))
        .await;
    assert_eq!(status, 400, "held for a new account");
    assert_eq!(body["error"]["details"][0]["code"], "ObjectConflict");
    let (status, _, _) = restore(&emu, &t, ALEX).await;
    assert_eq!(status, 200);
    let (_, state) = emu.admin(Method::GET, "/_emulator/state", None).await;
    let held = state["tenants"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == CONTOSO))
        .map(|t| t["heldAddresses"].clone())
        .unwrap_or(Value::Null);
    assert!(
        !held
            .to_string()
            .to_lowercase()
            .contains("alexw@contoso.com"),
        "the restore ends the hold: {held}"
    );
}

// graph-spec §3.5 (UPN reservation: uniqueness among active objects; the conflict surfaces on
// restore), §3.2 duplicate-value error (exact text unconfirmed for restore, §13.4).
#[tokio::test]
async fn restoring_a_user_whose_address_another_user_took_as_mail_fails_with_graphs_conflict_error()
{
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.delete(&t, &format!("/v1.0/users/{ADELE}")).await;
    let mut other = new_user("Adele.Other@contoso.com");
    other["mail"] = json!("AdeleV@contoso.com");
    let (status, _, body) = emu.post(&t, "/v1.0/users", other).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = restore(&emu, &t, ADELE).await;
    assert_eq!(status, 400);
    // Adele's UPN is the other user's mail now: the UPN is what clashes (which property Graph
    // names when a UPN meets another object's mail is unconfirmed).
    assert_error(
        &body,
        "Request_BadRequest",
        "Another object with the same value for property userPrincipalName already exists.",
    );
    assert_eq!(body["error"]["details"][0]["code"], "ObjectConflict");
    assert_eq!(body["error"]["details"][0]["target"], "userPrincipalName");
    // Still in deleted items: nothing changed.
    assert_eq!(
        emu.get(&t, &format!("/v1.0/directory/deletedItems/{ADELE}"))
            .await
            .0,
        200
    );
}

// graph-spec §3.6: "Up to 30 days, then purged" — restorable on day 29, gone after 30 days.
#[tokio::test]
async fn a_user_deleted_more_than_30_days_ago_cannot_be_restored() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    emu.delete(&t, &format!("/v1.0/users/{LEE}")).await;
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"days": 29})),
    )
    .await;
    let t = emu.contoso();
    assert_eq!(restore(&emu, &t, ALEX).await.0, 200);
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"days": 1})),
    )
    .await;
    let t = emu.contoso();
    let (status, _, body) = restore(&emu, &t, LEE).await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{LEE}' does not exist or one of its queried reference-property objects are not present."
        ),
    );
    assert_eq!(emu.get(&t, &format!("/v1.0/users/{ALEX}")).await.0, 200);
}
