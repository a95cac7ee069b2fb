//! Domains, organization, licences and directory audits over HTTP (graph-spec §8, §9, §10, §3.9).

mod graph_support;

use graph_support::*;
use serde_json::json;

// graph-spec §8.1, §8.2: domains list managed and federated domains with the documented shape.
#[tokio::test]
async fn domains_report_managed_and_federated_authentication() {
    let emu = Emu::start().await;
    let (status, _, body) = emu.get(&emu.contoso(), "/v1.0/domains").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#domains", emu.base)
    );
    let domains = body["value"].as_array().expect("value");
    let fed = domains
        .iter()
        .find(|d| d["id"] == "fabrikam-federated.com")
        .expect("federated");
    assert_eq!(fed["authenticationType"], "Federated");
    assert_eq!(fed["isVerified"], true);
    let initial = domains
        .iter()
        .find(|d| d["isInitial"] == true)
        .expect("initial");
    assert_eq!(initial["id"], "contoso.onmicrosoft.com");
    assert_eq!(initial["authenticationType"], "Managed");
    for key in [
        "availabilityStatus",
        "isAdminManaged",
        "isDefault",
        "isRoot",
        "passwordNotificationWindowInDays",
        "passwordValidityPeriodInDays",
        "state",
        "supportedServices",
    ] {
        assert!(fed.get(key).is_some(), "{key}");
    }
    let nw = emu.token(NORTHWIND, SYNC_APP, ALL_ROLES);
    let (_, _, body) = emu.get(&nw, "/v1.0/domains/northwind.com").await;
    assert_eq!(body["authenticationType"], "Federated");
    assert_eq!(body["isDefault"], true);
    assert_eq!(emu.get(&nw, "/v1.0/domains/contoso.com").await.0, 404);
}

// graph-spec §3.9: the organization carries verifiedDomains with their type.
#[tokio::test]
async fn organization_lists_verified_domains_with_type() {
    let emu = Emu::start().await;
    let (status, _, body) = emu.get(&emu.contoso(), "/v1.0/organization").await;
    assert_eq!(status, 200);
    let org = &body["value"][0];
    assert_eq!(org["id"], CONTOSO);
    assert_eq!(org["displayName"], "Contoso Ltd");
    let names: Vec<&str> = org["verifiedDomains"]
        .as_array()
        .expect("vd")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"pending.contoso.net"),
        "unverified domains are not listed"
    );
    let fed = org["verifiedDomains"]
        .as_array()
        .expect("vd")
        .iter()
        .find(|d| d["name"] == "fabrikam-federated.com")
        .expect("fed");
    assert_eq!(fed["type"], "Federated");
}

// graph-spec §9.1: subscribedSkus with consumed and prepaid units; $select only.
#[tokio::test]
async fn subscribed_skus_count_consumed_units() {
    let emu = Emu::start().await;
    let (_, _, body) = emu.get(&emu.contoso(), "/v1.0/subscribedSkus").await;
    let e3 = body["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|s| s["skuId"] == E3)
        .cloned()
        .expect("e3");
    assert_eq!(e3["consumedUnits"], 1);
    assert_eq!(
        e3["prepaidUnits"],
        json!({"enabled": 5, "suspended": 0, "warning": 0, "lockedOut": 0})
    );
    assert_eq!(e3["id"], format!("{CONTOSO}_{E3}"));
    assert_eq!(e3["skuPartNumber"], "ENTERPRISEPACK");
    assert_eq!(e3["capabilityStatus"], "Enabled");
    let (_, _, body) = emu
        .get(
            &emu.contoso(),
            "/v1.0/subscribedSkus?$select=skuId,consumedUnits",
        )
        .await;
    assert_eq!(body["value"][0].as_object().expect("o").len(), 2);
}

// graph-spec §9.2: assignLicense returns 200 with the user; no usageLocation → exact error; no
// free seat → "does not have any available licenses".
#[tokio::test]
async fn assigning_licences_checks_usage_location_and_seats() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let body = |sku: &str| json!({"addLicenses": [{"disabledPlans": [], "skuId": sku}], "removeLicenses": []});
    let (status, _, got) = emu
        .post(&t, &format!("/v1.0/users/{LEE}/assignLicense"), body(E3))
        .await;
    assert_eq!(status, 400);
    assert_error(
        &got,
        "Request_BadRequest",
        "License assignment cannot be done for user with invalid usage location.",
    );
    let (status, _, got) = emu
        .post(&t, &format!("/v1.0/users/{ALEX}/assignLicense"), body(E3))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        got["@odata.context"],
        format!("{}/v1.0/$metadata#users/$entity", emu.base)
    );
    assert_eq!(got["id"], ALEX);
    let (_, _, got) = emu
        .get(&t, &format!("/v1.0/users/{ALEX}?$select=assignedLicenses"))
        .await;
    assert_eq!(
        got["assignedLicenses"],
        json!([{"disabledPlans": [], "skuId": E3}])
    );
    let (status, _, got) = emu
        .post(&t, &format!("/v1.0/users/{ALEX}/assignLicense"), body(EMS))
        .await;
    assert_eq!(status, 400);
    assert!(
        got["error"]["message"]
            .as_str()
            .expect("m")
            .contains("does not have any available licenses")
    );
    // Removing frees the seat.
    let remove = json!({"addLicenses": [], "removeLicenses": [EMS]});
    assert_eq!(
        emu.post(&t, &format!("/v1.0/users/{ADELE}/assignLicense"), remove)
            .await
            .0,
        200
    );
    assert_eq!(
        emu.post(&t, &format!("/v1.0/users/{ALEX}/assignLicense"), body(EMS))
            .await
            .0,
        200
    );
    let (status, _, got) = emu
        .post(
            &t,
            &format!("/v1.0/users/{ALEX}/assignLicense"),
            body("00000000-0000-0000-0000-0000000000aa"),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(got["error"]["code"], "Request_BadRequest");
}

// graph-spec §10, §11.12: every write appends one directoryAudit initiated by the calling app;
// newest first; $filter on activityDisplayName.
#[tokio::test]
async fn writes_are_recorded_in_directory_audits() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (_, _, created) = emu
        .post(&t, "/v1.0/users", new_user("audited@contoso.com"))
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    emu.patch(
        &t,
        &format!("/v1.0/users/{id}"),
        json!({"accountEnabled": false}),
    )
    .await;
    emu.post(
        &t,
        &format!("/v1.0/groups/{ENGINEERING}/members/$ref"),
        json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")}),
    )
    .await;
    // A failed write is not audited.
    emu.post(&t, "/v1.0/users", new_user("audited@contoso.com"))
        .await;
    let (status, _, body) = emu.get(&t, "/v1.0/auditLogs/directoryAudits").await;
    assert_eq!(status, 200);
    let records = body["value"].as_array().expect("value");
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["activityDisplayName"], "Add member to group");
    // CSDL enum microsoft.graph.groupType: a security group is `azureAD`.
    assert_eq!(records[0]["targetResources"][1]["groupType"], "azureAD");
    assert_eq!(records[1]["activityDisplayName"], "Update user");
    assert_eq!(records[2]["activityDisplayName"], "Add user");
    let add = &records[2];
    assert_eq!(add["category"], "UserManagement");
    assert_eq!(add["operationType"], "Add");
    assert_eq!(add["result"], "success");
    assert_eq!(add["loggedByService"], "Core Directory");
    assert_eq!(add["initiatedBy"]["user"], json!(null));
    assert_eq!(add["initiatedBy"]["app"]["appId"], SYNC_APP);
    assert_eq!(add["initiatedBy"]["app"]["displayName"], "m365-sync");
    assert_eq!(add["targetResources"][0]["id"], id.as_str());
    assert_eq!(
        add["targetResources"][0]["userPrincipalName"],
        "audited@contoso.com"
    );
    assert_eq!(
        records[1]["targetResources"][0]["modifiedProperties"],
        json!([{"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"}])
    );
    let ts = add["activityDateTime"].as_str().expect("ts");
    assert_eq!(ts.len(), "2025-01-06T12:25:58.1234567Z".len(), "{ts}");
    let (_, _, body) = emu
        .get(
            &t,
            "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Add user'",
        )
        .await;
    assert_eq!(body["value"].as_array().expect("v").len(), 1);
}

// graph-spec §10: audits initiated with a delegated token name the user.
#[tokio::test]
async fn delegated_writes_are_audited_as_the_signed_in_user() {
    let emu = Emu::start().await;
    let token = {
        let mut state = emu.app.lock();
        let now = state.clock.now();
        m365_emulator::identity::mint_access_token(
            &mut state,
            m365_emulator::identity::AccessClaims {
                tenant_id: CONTOSO.into(),
                app_id: SYNC_APP.into(),
                roles: vec![],
                scopes: vec![
                    "https://graph.microsoft.com/User.ReadWrite.All".into(),
                    "AuditLog.Read.All".into(),
                ],
                user_upn: Some("admin@contoso.onmicrosoft.com".into()),
                expires_at: now + chrono::Duration::hours(1),
            },
        )
    };
    assert_eq!(
        emu.post(&token, "/v1.0/users", new_user("deleg@contoso.com"))
            .await
            .0,
        201
    );
    let (_, _, body) = emu.get(&token, "/v1.0/auditLogs/directoryAudits").await;
    let by = &body["value"][0]["initiatedBy"];
    assert_eq!(by["app"], json!(null));
    assert_eq!(
        by["user"]["userPrincipalName"],
        "admin@contoso.onmicrosoft.com"
    );
}

// graph-spec §8.2, §8.3: in a GoDaddy-style tenant every routable domain is federated; creating a
// user there needs onPremisesImmutableId, only the onmicrosoft.com domain is managed.
#[tokio::test]
async fn a_godaddy_style_tenant_is_federated_except_its_initial_domain() {
    let emu = Emu::start().await;
    let nw = emu.token(NORTHWIND, SYNC_APP, ALL_ROLES);
    let (_, _, body) = emu.get(&nw, "/v1.0/domains").await;
    let managed: Vec<&str> = body["value"]
        .as_array()
        .expect("v")
        .iter()
        .filter(|d| d["authenticationType"] == "Managed")
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(managed, ["northwind.onmicrosoft.com"]);
    let (status, _, body) = emu
        .post(&nw, "/v1.0/users", new_user("new@northwind.com"))
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "SourceAnchor is a required property for creation of a federated user.",
    );
    assert_eq!(
        emu.post(
            &nw,
            "/v1.0/users",
            new_user("new@northwind.onmicrosoft.com")
        )
        .await
        .0,
        201
    );
}
