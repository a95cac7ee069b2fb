//! Directory roles over HTTP (R-BIND-11 needs them; graph-spec is silent, so the shapes follow
//! Microsoft's Graph docs — see `src/graph/roles.rs`): activated roles, their members, a user's
//! memberships with the `microsoft.graph.directoryRole` cast and `transitiveMemberOf`, the
//! permission they need, and the control API that grants and revokes roles at runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::{Value, json};

const GLOBAL_ADMIN_TEMPLATE: &str = "62e90394-69f5-4237-9190-012177145e10";
const USER_ADMIN_TEMPLATE: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";
const HELPDESK_TEMPLATE: &str = "729827e3-9c14-49f7-bb1b-9608f156bbb8";

/// The m365-sync app's token in Contoso plus the least-privileged role-reading permission.
fn role_reader(emu: &Emu) -> String {
    let mut roles = ALL_ROLES.to_vec();
    roles.push("RoleManagement.Read.Directory");
    emu.token(CONTOSO, SYNC_APP, &roles)
}

fn role<'v>(list: &'v Value, template: &str) -> Option<&'v Value> {
    list["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|r| r["roleTemplateId"] == template)
}

async fn admin_id(emu: &Emu) -> String {
    let (_, _, body) = emu
        .get(&emu.contoso(), "/v1.0/users/admin@contoso.onmicrosoft.com")
        .await;
    body["id"].as_str().expect("admin id").to_owned()
}

async fn grant(emu: &Emu, role: &str, member: &str) -> (u16, Value) {
    emu.admin(
        Method::POST,
        &format!("/_emulator/tenants/{CONTOSO}/roles/{role}/members"),
        Some(json!({ "member": member })),
    )
    .await
}

// Graph docs (List directoryRoles, directoryRole resource): the activated roles, each with its
// own object id and the built-in template id; Global Administrator is activated in every tenant,
// User Administrator here because the app's service principal holds it.
#[tokio::test]
async fn directory_roles_lists_the_activated_roles_with_their_template_ids() {
    let emu = Emu::start().await;
    let (status, headers, body) = emu.get(&role_reader(&emu), "/v1.0/directoryRoles").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#directoryRoles", emu.base)
    );
    let global = role(&body, GLOBAL_ADMIN_TEMPLATE).expect("Global Administrator");
    assert_eq!(global["displayName"], "Global Administrator");
    assert!(
        global["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(global["deletedDateTime"], Value::Null);
    let id = global["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    assert_ne!(
        id, GLOBAL_ADMIN_TEMPLATE,
        "a role's object id is not its template id"
    );
    assert!(role(&body, USER_ADMIN_TEMPLATE).is_some());
    assert!(role(&body, HELPDESK_TEMPLATE).is_none(), "not activated");
    // $select projects; an unknown property is refused like elsewhere.
    let (_, _, body) = emu
        .get(
            &role_reader(&emu),
            "/v1.0/directoryRoles?$select=displayName",
        )
        .await;
    let first = &body["value"][0];
    assert!(first.get("displayName").is_some() && first.get("roleTemplateId").is_none());
    let (status, _, _) = emu
        .get(&role_reader(&emu), "/v1.0/directoryRoles?$select=nonsense")
        .await;
    assert_eq!(status, 400);
}

// graph-spec §2.6: without a role-reading permission, Graph answers 403 Authorization_RequestDenied.
#[tokio::test]
async fn reading_directory_roles_without_a_role_permission_is_forbidden() {
    let emu = Emu::start().await;
    for path in [
        "/v1.0/directoryRoles".to_owned(),
        format!("/v1.0/directoryRoles/roleTemplateId={GLOBAL_ADMIN_TEMPLATE}/members"),
    ] {
        let (status, _, body) = emu.get(&emu.contoso(), &path).await;
        assert_eq!(status, 403, "{path}");
        assert_error(
            &body,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        );
    }
}

// Graph docs (List members of a directory role): addressed by object id or roleTemplateId; users
// with the default projection, and the service principals of apps holding the role.
#[tokio::test]
async fn role_members_are_the_seeded_admin_and_the_apps_service_principal() {
    let emu = Emu::start().await;
    let t = role_reader(&emu);
    let admin = admin_id(&emu).await;
    let (_, _, roles) = emu.get(&t, "/v1.0/directoryRoles").await;
    let global_id = role(&roles, GLOBAL_ADMIN_TEMPLATE).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, by_id) = emu
        .get(&t, &format!("/v1.0/directoryRoles/{global_id}/members"))
        .await;
    assert_eq!(status, 200, "{by_id}");
    assert_eq!(
        by_id["@odata.context"],
        format!("{}/v1.0/$metadata#directoryObjects", emu.base)
    );
    let members = by_id["value"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{by_id}");
    assert_eq!(members[0]["@odata.type"], "#microsoft.graph.user");
    assert_eq!(members[0]["id"], admin.as_str());
    assert_eq!(
        members[0]["userPrincipalName"],
        "admin@contoso.onmicrosoft.com"
    );
    assert!(
        members[0].get("businessPhones").is_some(),
        "default user projection"
    );
    let (_, _, by_template) = emu
        .get(
            &t,
            &format!("/v1.0/directoryRoles/roleTemplateId={GLOBAL_ADMIN_TEMPLATE}/members"),
        )
        .await;
    assert_eq!(by_template["value"], by_id["value"]);
    let (_, _, one) = emu
        .get(&t, &format!("/v1.0/directoryRoles/{global_id}"))
        .await;
    assert_eq!(one["roleTemplateId"], GLOBAL_ADMIN_TEMPLATE);
    assert_eq!(
        one["@odata.context"],
        format!("{}/v1.0/$metadata#directoryRoles/$entity", emu.base)
    );
    let (_, _, user_admins) = emu
        .get(
            &t,
            &format!("/v1.0/directoryRoles/roleTemplateId={USER_ADMIN_TEMPLATE}/members"),
        )
        .await;
    let sp = &user_admins["value"][0];
    assert_eq!(sp["@odata.type"], "#microsoft.graph.servicePrincipal");
    assert_eq!(sp["appId"], SYNC_APP);
}

// graph-spec §2.7: an unknown (or not activated) role is 404 Request_ResourceNotFound naming the
// key as addressed.
#[tokio::test]
async fn a_role_that_is_not_activated_is_not_found() {
    let emu = Emu::start().await;
    let t = role_reader(&emu);
    let missing = "0b5c4a2e-1d3f-4e6a-8b7c-9d0e1f2a3b4c";
    for path in [
        format!("/v1.0/directoryRoles/{missing}"),
        format!("/v1.0/directoryRoles/{missing}/members"),
    ] {
        let (status, _, body) = emu.get(&t, &path).await;
        assert_eq!(status, 404, "{path}");
        assert_error(
            &body,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{missing}' does not exist or one of its queried reference-property objects are not present."
            ),
        );
    }
    let helpdesk = format!("roleTemplateId={HELPDESK_TEMPLATE}");
    let (status, _, _) = emu
        .get(&t, &format!("/v1.0/directoryRoles/{helpdesk}/members"))
        .await;
    assert_eq!(status, 404, "Helpdesk Administrator is not activated");
}

// Graph docs (List a user's direct memberships): groups and directory roles with @odata.type;
// the directoryRole cast keeps only the roles. Without a role-reading permission the roles come
// with limited information (type and id; other properties null).
#[tokio::test]
async fn member_of_lists_directory_roles_with_their_type_and_the_cast_keeps_only_them() {
    let emu = Emu::start().await;
    let admin = admin_id(&emu).await;
    let (status, _, full) = emu
        .get(&role_reader(&emu), &format!("/v1.0/users/{admin}/memberOf"))
        .await;
    assert_eq!(status, 200, "{full}");
    assert_eq!(
        full["@odata.context"],
        format!("{}/v1.0/$metadata#directoryObjects", emu.base)
    );
    let global = full["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["@odata.type"] == "#microsoft.graph.directoryRole")
        .expect("the admin's role");
    assert_eq!(global["displayName"], "Global Administrator");
    assert_eq!(global["roleTemplateId"], GLOBAL_ADMIN_TEMPLATE);

    let (_, _, limited) = emu
        .get(&emu.contoso(), &format!("/v1.0/users/{admin}/memberOf"))
        .await;
    let shown = &limited["value"][0];
    assert_eq!(shown["@odata.type"], "#microsoft.graph.directoryRole");
    assert_eq!(shown["id"], global["id"]);
    assert_eq!(shown["displayName"], Value::Null);
    assert_eq!(shown["roleTemplateId"], Value::Null);

    // Adele: one group, no role. Casts split them.
    let t = role_reader(&emu);
    let (_, _, roles) = emu
        .get(
            &t,
            "/v1.0/users/AdeleV@contoso.com/memberOf/microsoft.graph.directoryRole",
        )
        .await;
    assert_eq!(roles["value"], json!([]));
    assert_eq!(
        roles["@odata.context"],
        format!("{}/v1.0/$metadata#directoryRoles", emu.base)
    );
    let (_, _, groups) = emu
        .get(
            &t,
            "/v1.0/users/AdeleV@contoso.com/memberOf/microsoft.graph.group?$select=id,displayName",
        )
        .await;
    assert_eq!(
        groups["value"],
        json!([{"@odata.type": "#microsoft.graph.group", "id": ENGINEERING, "displayName": "Engineering"}])
    );
    let (_, _, admin_roles) = emu
        .get(
            &t,
            &format!("/v1.0/users/{admin}/memberOf/graph.directoryRole?$select=displayName,roleTemplateId"),
        )
        .await;
    assert_eq!(
        admin_roles["value"],
        json!([{"@odata.type": "#microsoft.graph.directoryRole", "id": global["id"],
                "displayName": "Global Administrator", "roleTemplateId": GLOBAL_ADMIN_TEMPLATE}])
    );
    // An unknown user is graph-spec §2.7's 404; an unknown $select property a 400.
    let (status, _, body) = emu
        .get(
            &t,
            "/v1.0/users/nobody@contoso.com/memberOf/microsoft.graph.directoryRole",
        )
        .await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        "Resource 'nobody@contoso.com' does not exist or one of its queried reference-property objects are not present.",
    );
    let (status, _, _) = emu
        .get(
            &t,
            &format!("/v1.0/users/{admin}/memberOf?$select=nonsense"),
        )
        .await;
    assert_eq!(status, 400);
}

// Graph docs (List user transitive memberOf): a role held by a group the user belongs to is
// listed by transitiveMemberOf, not by memberOf.
#[tokio::test]
async fn a_role_held_through_a_group_shows_in_transitive_member_of_only() {
    let emu = Emu::start().await;
    let (status, body) = grant(&emu, "Helpdesk%20Administrator", ENGINEERING).await;
    assert_eq!(status, 200, "{body}");
    let t = role_reader(&emu);
    let direct = emu
        .get(
            &t,
            &format!("/v1.0/users/{ADELE}/memberOf/microsoft.graph.directoryRole"),
        )
        .await
        .2;
    assert_eq!(direct["value"], json!([]));
    let (status, _, transitive) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ADELE}/transitiveMemberOf/microsoft.graph.directoryRole"),
        )
        .await;
    assert_eq!(status, 200, "{transitive}");
    assert_eq!(transitive["value"][0]["roleTemplateId"], HELPDESK_TEMPLATE);
    assert_eq!(transitive["value"].as_array().unwrap().len(), 1);
    let everything = emu
        .get(&t, &format!("/v1.0/users/{ADELE}/transitiveMemberOf"))
        .await
        .2;
    let types: Vec<&str> = everything["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["@odata.type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["#microsoft.graph.group", "#microsoft.graph.directoryRole"]
    );
    // Lee is in no group: nothing either way.
    let lee = emu
        .get(
            &t,
            &format!("/v1.0/users/{LEE}/transitiveMemberOf/graph.directoryRole"),
        )
        .await
        .2;
    assert_eq!(lee["value"], json!([]));
}

// Control API: roles are granted to (and revoked from) ordinary users at runtime, activating the
// role on first assignment, as in the Entra portal.
#[tokio::test]
async fn the_control_api_grants_and_revokes_roles_at_runtime() {
    let emu = Emu::start().await;
    let t = role_reader(&emu);
    let (status, body) = grant(&emu, "User%20Administrator", "AlexW@contoso.com").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["added"], true);
    assert_eq!(body["role"]["roleTemplateId"], USER_ADMIN_TEMPLATE);
    assert_eq!(
        grant(&emu, USER_ADMIN_TEMPLATE, ALEX).await.1["added"],
        false
    );
    let roles_of = |user: &'static str| {
        let emu = &emu;
        let t = t.clone();
        async move {
            emu.get(
                &t,
                &format!("/v1.0/users/{user}/memberOf/microsoft.graph.directoryRole"),
            )
            .await
            .2["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["displayName"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(roles_of(ALEX).await, ["User Administrator"]);
    // A role activated on first assignment is listed from then on.
    grant(&emu, "Privileged%20Role%20Administrator", ALEX).await;
    let (_, _, listed) = emu.get(&t, "/v1.0/directoryRoles").await;
    assert!(role(&listed, "e8611ab8-c189-46e8-94e1-60213ab1f814").is_some());

    let (status, body) = emu
        .admin(
            Method::DELETE,
            &format!("/_emulator/tenants/{CONTOSO}/roles/User%20Administrator/members/{ALEX}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"], true);
    assert_eq!(roles_of(ALEX).await, ["Privileged Role Administrator"]);

    assert_eq!(
        grant(&emu, "Chief%20Wizard", ALEX).await.0,
        400,
        "unknown role"
    );
    assert_eq!(
        grant(&emu, "User%20Administrator", "ghost@contoso.com")
            .await
            .0,
        400,
        "unknown member"
    );
    // The tenant view shows role membership.
    let (_, state) = emu
        .admin(Method::GET, &format!("/_emulator/tenants/{CONTOSO}"), None)
        .await;
    assert!(
        state["directoryRoles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["displayName"] == "Privileged Role Administrator"
                && r["members"] == json!([ALEX]))
    );
}

// Seed format: ordinary users may hold roles too; an unknown role name is refused.
#[tokio::test]
async fn seeded_users_may_hold_roles_and_unknown_roles_are_refused() {
    let seed = |role: &str| {
        json!({"tenants": [{
            "id": CONTOSO, "displayName": "Contoso",
            "domains": [{"name": "contoso.onmicrosoft.com", "authenticationType": "Managed",
                         "isInitial": true, "isDefault": true}],
            "users": [{"id": ADELE, "userPrincipalName": "adele@contoso.onmicrosoft.com",
                       "roles": [role], "jobTitle": "Helpdesk"}]
        }]})
        .to_string()
    };
    let state = m365_emulator::State::from_seed(
        m365_emulator::Seed::from_json(&seed("Helpdesk Administrator")).unwrap(),
    )
    .unwrap();
    let tenant = &state.tenants[CONTOSO];
    let now = state.clock.now();
    let held: Vec<&str> = tenant
        .roles_of(ADELE, false, now)
        .iter()
        .map(|r| r.display_name.as_str())
        .collect();
    assert_eq!(held, ["Helpdesk Administrator"]);
    assert_eq!(
        tenant.users[ADELE].properties["jobTitle"], "Helpdesk",
        "`roles` is no Graph property; the others still are"
    );
    assert!(!tenant.users[ADELE].properties.contains_key("roles"));
    let refused = m365_emulator::State::from_seed(
        m365_emulator::Seed::from_json(&seed("Chief Wizard")).unwrap(),
    );
    assert!(matches!(
        refused,
        Err(m365_emulator::SeedError::UnknownRole(name)) if name == "Chief Wizard"
    ));
}
