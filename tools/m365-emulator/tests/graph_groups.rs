//! Groups and membership over HTTP (graph-spec §4, §7.4).

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::json;

fn ops_group() -> serde_json::Value {
    json!({
        "description": "Group with designated owner and members",
        "displayName": "Operations group",
        "groupTypes": [],
        "mailEnabled": false,
        "mailNickname": "operations2019",
        "securityEnabled": true,
        "owners@odata.bind": [format!("https://graph.microsoft.com/v1.0/users/{ADELE}")],
        "members@odata.bind": [
            format!("https://graph.microsoft.com/v1.0/users/{ALEX}"),
            format!("https://graph.microsoft.com/v1.0/users/{LEE}")
        ]
    })
}

fn member_ref(id: &str) -> serde_json::Value {
    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")})
}

// graph-spec §4.1: 201 with the full documented shape (incl. @odata.id) and bound members.
#[tokio::test]
async fn creating_a_security_group_returns_the_documented_shape() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, body) = emu.post(&t, "/v1.0/groups", ops_group()).await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().expect("id");
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#groups/$entity", emu.base)
    );
    assert_eq!(
        body["@odata.id"],
        format!(
            "{}/v2/{CONTOSO}/directoryObjects/{id}/Microsoft.DirectoryServices.Group",
            emu.base
        )
    );
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut expected = vec![
        "@odata.context",
        "@odata.id",
        "id",
        "deletedDateTime",
        "classification",
        "createdDateTime",
        "description",
        "displayName",
        "expirationDateTime",
        "groupTypes",
        "isAssignableToRole",
        "mail",
        "mailEnabled",
        "mailNickname",
        "membershipRule",
        "membershipRuleProcessingState",
        "onPremisesDomainName",
        "onPremisesLastSyncDateTime",
        "onPremisesNetBiosName",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "preferredDataLocation",
        "preferredLanguage",
        "proxyAddresses",
        "renewedDateTime",
        "resourceBehaviorOptions",
        "resourceProvisioningOptions",
        "securityEnabled",
        "securityIdentifier",
        "theme",
        "visibility",
        "onPremisesProvisioningErrors",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(body["securityEnabled"], true);
    assert!(
        body["securityIdentifier"]
            .as_str()
            .expect("sid")
            .starts_with("S-1-12-1-")
    );
    let (_, _, members) = emu.get(&t, &format!("/v1.0/groups/{id}/members")).await;
    let v = members["value"].as_array().expect("value");
    assert_eq!(v.len(), 2);
    assert!(
        v.iter()
            .all(|m| m["@odata.type"] == "#microsoft.graph.user")
    );
    assert_eq!(
        members["@odata.context"],
        format!("{}/v1.0/$metadata#directoryObjects", emu.base)
    );
}

// graph-spec §4.1: missing required properties get the exact message.
#[tokio::test]
async fn group_create_requires_the_documented_properties() {
    let emu = Emu::start().await;
    let mut body = ops_group();
    body.as_object_mut()
        .expect("object")
        .remove("securityEnabled");
    let (status, _, got) = emu.post(&emu.contoso(), "/v1.0/groups", body).await;
    assert_eq!(status, 400);
    assert_error(
        &got,
        "Request_BadRequest",
        "A value is required for property 'securityEnabled' of resource 'Group'.",
    );
}

// graph-spec §4.2, §4.3: add member 204; twice → exact 400; unknown member → 404 naming it;
// malformed id → 400; remove 204; remove non-member → 404; non-GUID member id → 400.
#[tokio::test]
async fn membership_refs_answer_with_the_exact_directory_messages() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let path = format!("/v1.0/groups/{ENGINEERING}/members/$ref");
    let (status, _, body) = emu.post(&t, &path, member_ref(LEE)).await;
    assert_eq!((status, body), (204, json!(null)));
    let (status, _, body) = emu.post(&t, &path, member_ref(LEE)).await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "One or more added object references already exist for the following modified properties: 'members'.",
    );
    let ghost = "11111111-2222-3333-4444-555555555555";
    let (status, _, body) = emu.post(&t, &path, member_ref(ghost)).await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{ghost}' does not exist or one of its queried reference-property objects are not present."
        ),
    );
    let (status, _, body) = emu
        .post(
            &t,
            &path,
            json!({"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/test"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "Invalid object identifier 'test'.",
    );
    let (status, _, body) = emu
        .post(
            &t,
            &format!("/v1.0/groups/{ghost}/members/$ref"),
            member_ref(LEE),
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("m")
            .contains(ghost)
    );

    assert_eq!(
        emu.delete(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members/{LEE}/$ref")
        )
        .await
        .0,
        204
    );
    let (status, _, body) = emu
        .delete(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members/{LEE}/$ref"),
        )
        .await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{LEE}' does not exist or one of its queried reference-property objects are not present."
        ),
    );
    let (status, _, body) = emu
        .delete(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members/not-a-guid/$ref"),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_UnsupportedQuery",
        "Unsupported referenced-object resource identifier for link property 'members'.",
    );
}

// graph-spec §4.4: members are paged with $top and nextLink.
#[tokio::test]
async fn members_are_listed_with_odata_type_and_paged() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (_, _, body) = emu
        .get(&t, &format!("/v1.0/groups/{ENGINEERING}/members?$top=1"))
        .await;
    assert_eq!(body["value"].as_array().expect("v").len(), 1);
    let next = body["@odata.nextLink"]
        .as_str()
        .expect("nextLink")
        .to_owned();
    let (_, _, page2) = parts(
        emu.http
            .get(&next)
            .bearer_auth(&t)
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(page2["value"].as_array().expect("v").len(), 1);
    assert!(page2.get("@odata.nextLink").is_none());
    assert_ne!(body["value"][0]["id"], page2["value"][0]["id"]);
}

// graph-spec §4.5, §3.6: security groups are deleted permanently (not in deletedItems).
#[tokio::test]
async fn deleting_a_security_group_is_permanent() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    assert_eq!(
        emu.delete(&t, &format!("/v1.0/groups/{ENGINEERING}"))
            .await
            .0,
        204
    );
    assert_eq!(
        emu.get(&t, &format!("/v1.0/groups/{ENGINEERING}")).await.0,
        404
    );
    assert_eq!(
        emu.get(&t, &format!("/v1.0/directory/deletedItems/{ENGINEERING}"))
            .await
            .0,
        404
    );
    let (_, _, body) = emu
        .get(&t, "/v1.0/directory/deletedItems/microsoft.graph.group")
        .await;
    assert_eq!(body["value"], json!([]));
}

// graph-spec §4.1: group list filters (default-supported operators).
#[tokio::test]
async fn groups_are_filtered_by_display_name_and_mail_nickname() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (_, _, body) = emu
        .get(
            &t,
            "/v1.0/groups?$filter=mailNickname eq 'engineering'&$select=id,displayName",
        )
        .await;
    assert_eq!(
        body["value"],
        json!([{"id": ENGINEERING, "displayName": "Engineering"}])
    );
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#groups(id,displayName)", emu.base)
    );
    let (_, _, body) = emu
        .get(&t, "/v1.0/groups?$filter=startswith(displayName,'Ops')")
        .await;
    assert_eq!(body["value"], json!([]));
}

// graph-spec §7.4: a group still replicating refuses member adds with the "source resource
// object" message and is 404 to reads; a member still replicating is 404.
#[tokio::test]
async fn replication_lag_affects_member_adds() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"replicationLagMs": 10_000})),
    )
    .await;
    let mut g = ops_group();
    g.as_object_mut().expect("o").remove("members@odata.bind");
    let (_, _, created) = emu.post(&t, "/v1.0/groups", g).await;
    let gid = created["id"].as_str().expect("id").to_owned();
    assert_eq!(emu.get(&t, &format!("/v1.0/groups/{gid}")).await.0, 404);
    let (status, _, body) = emu
        .post(
            &t,
            &format!("/v1.0/groups/{gid}/members/$ref"),
            member_ref(LEE),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "The source resource object or one of the objects being referenced do not exist.",
    );
    let (_, _, user) = emu
        .post(&t, "/v1.0/users", new_user("fresh@contoso.com"))
        .await;
    let uid = user["id"].as_str().expect("id").to_owned();
    let (status, _, _) = emu
        .post(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members/$ref"),
            member_ref(&uid),
        )
        .await;
    assert_eq!(status, 404);
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"seconds": 11})),
    )
    .await;
    assert_eq!(
        emu.post(
            &t,
            &format!("/v1.0/groups/{gid}/members/$ref"),
            member_ref(&uid)
        )
        .await
        .0,
        204
    );
}

// graph-spec §4.2 (bulk): PATCH members@odata.bind adds several members; a bad one adds none.
#[tokio::test]
async fn bulk_member_binds_are_all_or_nothing() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let bad = json!({"members@odata.bind": [
        format!("https://graph.microsoft.com/v1.0/directoryObjects/{LEE}"),
        "https://graph.microsoft.com/v1.0/directoryObjects/11111111-2222-3333-4444-555555555555"
    ]});
    assert_eq!(
        emu.patch(&t, &format!("/v1.0/groups/{ENGINEERING}"), bad)
            .await
            .0,
        404
    );
    let (_, _, members) = emu
        .get(&t, &format!("/v1.0/groups/{ENGINEERING}/members"))
        .await;
    assert_eq!(members["value"].as_array().expect("v").len(), 2);
    let good = json!({"members@odata.bind": [format!("https://graph.microsoft.com/v1.0/directoryObjects/{LEE}")]});
    assert_eq!(
        emu.patch(&t, &format!("/v1.0/groups/{ENGINEERING}"), good)
            .await
            .0,
        204
    );
    let (_, _, members) = emu
        .get(&t, &format!("/v1.0/groups/{ENGINEERING}/members"))
        .await;
    assert_eq!(members["value"].as_array().expect("v").len(), 3);
}

// graph-spec §3.6, §4.1: Microsoft 365 groups are soft-deleted and restorable; their
// mailNickname is unique (ObjectConflict).
#[tokio::test]
async fn microsoft_365_groups_are_soft_deleted_and_restorable() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let m365 = json!({"displayName": "Team", "mailEnabled": true, "mailNickname": "team", "securityEnabled": false, "groupTypes": ["Unified"]});
    let (status, _, created) = emu.post(&t, "/v1.0/groups", m365.clone()).await;
    assert_eq!(status, 201);
    let (status, _, body) = emu.post(&t, "/v1.0/groups", m365).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["details"][0],
        json!({"code": "ObjectConflict", "message": "Another object with the same value for property mailNickname already exists.", "target": "mailNickname"})
    );
    let id = created["id"].as_str().expect("id");
    assert_eq!(emu.delete(&t, &format!("/v1.0/groups/{id}")).await.0, 204);
    let (_, _, deleted) = emu
        .get(&t, "/v1.0/directory/deletedItems/microsoft.graph.group")
        .await;
    assert_eq!(deleted["value"][0]["id"], id);
    let (status, _, body) = emu
        .post(
            &t,
            &format!("/v1.0/directory/deletedItems/{id}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["@odata.type"], "#microsoft.graph.group");
    assert_eq!(emu.get(&t, &format!("/v1.0/groups/{id}")).await.0, 200);
}

// graph-spec §4.4, §3.6, §5 (SDK spellings): casts with the short namespace, `delta()` with
// parentheses, and member casts are routed like Graph does.
#[tokio::test]
async fn sdk_spellings_of_casts_and_functions_are_accepted() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.post(&t, &format!("/v1.0/groups/{ENGINEERING}/members/$ref"), json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{ENGINEERING}")})).await;
    let (status, _, users) = emu
        .get(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members/graph.user"),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(users["value"].as_array().expect("v").len(), 2);
    assert_eq!(
        users["@odata.context"],
        format!("{}/v1.0/$metadata#users", emu.base)
    );
    let (_, _, groups) = emu
        .get(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members/microsoft.graph.group"),
        )
        .await;
    assert_eq!(groups["value"].as_array().expect("v").len(), 1);
    assert_eq!(emu.get(&t, "/v1.0/users/delta()").await.0, 200);
    assert_eq!(emu.get(&t, "/v1.0/groups/delta()").await.0, 200);
    assert_eq!(
        emu.get(&t, "/v1.0/directory/deletedItems/graph.user")
            .await
            .0,
        200
    );
    assert_eq!(
        emu.get(&t, "/v1.0/directory/deletedItems/graph.group")
            .await
            .0,
        200
    );
}

// graph-spec §4.4 (reverse direction): memberOf lists the user's groups with @odata.type.
#[tokio::test]
async fn member_of_lists_a_users_groups() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, body) = emu
        .get(
            &t,
            "/v1.0/users/AdeleV@contoso.com/memberOf?$select=id,displayName",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["value"],
        json!([{"@odata.type": "#microsoft.graph.group", "id": ENGINEERING, "displayName": "Engineering"}])
    );
    let (_, _, body) = emu.get(&t, &format!("/v1.0/users/{LEE}/memberOf")).await;
    assert_eq!(body["value"], json!([]));
}
