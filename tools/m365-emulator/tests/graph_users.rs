//! Users over HTTP (graph-spec §3): create validation order and exact messages, reads with the
//! OData subset, patch, password reset, soft delete, deleted items, restore, permanent delete.

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::json;

// graph-spec §3.1: 201 with the default projection, @odata.context and a Location header.
#[tokio::test]
async fn creating_a_user_returns_201_with_the_default_projection() {
    let emu = Emu::start().await;
    let (status, headers, body) = emu
        .post(&emu.contoso(), "/v1.0/users", new_user("Nina@contoso.com"))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#users/$entity", emu.base)
    );
    let id = body["id"].as_str().expect("id");
    assert_eq!(id.len(), 36);
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "@odata.context",
            "businessPhones",
            "displayName",
            "givenName",
            "id",
            "jobTitle",
            "mail",
            "mobilePhone",
            "officeLocation",
            "preferredLanguage",
            "surname",
            "userPrincipalName"
        ]
    );
    assert_eq!(body["businessPhones"], json!([]));
    assert_eq!(body["mail"], json!(null));
    assert!(
        headers["location"]
            .to_str()
            .expect("ascii")
            .ends_with(&format!(
                "/directoryObjects/{id}/Microsoft.DirectoryServices.User"
            ))
    );
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json;odata.metadata=minimal")
    );
    let (_, _, got) = emu.get(&emu.contoso(), &format!("/v1.0/users/{id}?$select=accountEnabled,userType,lastPasswordChangeDateTime,passwordProfile")).await;
    assert_eq!(got["accountEnabled"], true);
    assert_eq!(got["userType"], "Member");
    assert!(
        got["lastPasswordChangeDateTime"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z'))
    );
    assert_eq!(
        got["passwordProfile"],
        json!(null),
        "passwords are never returned (§3.1, INF)"
    );
}

// graph-spec §3.2, §11.4: the validation order — each body breaks exactly one rule after the
// earlier ones pass, and gets that rule's exact message.
#[tokio::test]
async fn create_validation_follows_the_documented_order_and_messages() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let cases = [
        (
            {
                let mut b = new_user("a@contoso.com");
                b.as_object_mut().expect("o").remove("displayName");
                b
            },
            "A value is required for property 'displayName' of resource 'User'.",
        ),
        (
            {
                let mut b = new_user("a@contoso.com");
                b["mailNickname"] = json!("has space");
                b
            },
            "Invalid value specified for property 'mailNickname' of resource 'User'.",
        ),
        (
            new_user("bad..@contoso.com"),
            "Property userPrincipalName is invalid.",
        ),
        (
            new_user("a@unknown-domain.com"),
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ),
        (
            new_user("a@pending.contoso.net"),
            "The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ),
        (
            new_user("a@fabrikam-federated.com"),
            "SourceAnchor is a required property for creation of a federated user.",
        ),
        (
            new_user("adelev@CONTOSO.com"),
            "Another object with the same value for property userPrincipalName already exists.",
        ),
        (
            {
                let mut b = new_user("a@contoso.com");
                b["passwordProfile"]["password"] = json!("alllowercase");
                b
            },
            "The specified password does not comply with password complexity requirements. Please provide a different password.",
        ),
        (
            {
                let mut b = new_user("a@contoso.com");
                b["passwordProfile"]["password"] = json!("Sh0rt!");
                b
            },
            "The specified password does not comply with password complexity requirements. Please provide a different password.",
        ),
    ];
    for (body, message) in cases {
        let (status, _, got) = emu.post(&t, "/v1.0/users", body.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert_error(&got, "Request_BadRequest", message);
    }
    // Domain error carries details InvalidValue/userPrincipalName; duplicate carries ObjectConflict.
    let (_, _, got) = emu
        .post(&t, "/v1.0/users", new_user("a@unknown-domain.com"))
        .await;
    assert_eq!(got["error"]["details"][0]["code"], "InvalidValue");
    assert_eq!(got["error"]["details"][0]["target"], "userPrincipalName");
    let (_, _, got) = emu
        .post(&t, "/v1.0/users", new_user("AdeleV@contoso.com"))
        .await;
    assert_eq!(
        got["error"]["details"],
        json!([{"code": "ObjectConflict", "message": "Another object with the same value for property userPrincipalName already exists.", "target": "userPrincipalName"}])
    );
    // Password complexity: no details (assumption §13.1).
    let mut weak = new_user("a@contoso.com");
    weak["passwordProfile"]["password"] = json!("password");
    let (_, _, got) = emu.post(&t, "/v1.0/users", weak).await;
    assert!(got["error"].get("details").is_none());
    // Federated domain with onPremisesImmutableId succeeds (§8.3).
    let mut fed = new_user("fed.user@fabrikam-federated.com");
    fed["onPremisesImmutableId"] = json!("ZmVkLnVzZXI=");
    assert_eq!(emu.post(&t, "/v1.0/users", fed).await.0, 201);
    // Proxy address clash (§3.2).
    let mut clash = new_user("other@contoso.com");
    clash["mail"] = json!("adelev@contoso.com");
    let (status, _, got) = emu.post(&t, "/v1.0/users", clash).await;
    assert_eq!(status, 400);
    assert_eq!(
        got["error"]["message"],
        "Another object with the same value for property proxyAddresses already exists."
    );
}

// graph-spec §3.3, §2.5, §2.7: get by id or UPN (case-insensitive), $select, 404 with the key as addressed.
#[tokio::test]
async fn users_are_read_by_id_or_upn_with_select() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, body) = emu
        .get(
            &t,
            "/v1.0/users/adelev@contoso.com?$select=id,displayName,accountEnabled",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({
            "@odata.context": format!("{}/v1.0/$metadata#users(id,displayName,accountEnabled)/$entity", emu.base),
            "id": ADELE, "displayName": "Adele Vance", "accountEnabled": true
        })
    );
    let (status, _, body) = emu
        .get(&t, &format!("/v1.0/users/{}", ADELE.to_uppercase()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["userPrincipalName"], "AdeleV@contoso.com");
    let (status, _, body) = emu
        .get(&t, "/v1.0/users/00000000-0000-0000-0000-000000000001")
        .await;
    assert_eq!(status, 404);
    assert_error(
        &body,
        "Request_ResourceNotFound",
        "Resource '00000000-0000-0000-0000-000000000001' does not exist or one of its queried reference-property objects are not present.",
    );
    let (status, _, body) = emu.get(&t, "/v1.0/users?$select=nonsense").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Could not find a property named 'nonsense' on type 'microsoft.graph.user'."
    );
}

// graph-spec §2.3: $top 1..999 with the exact error, default 100, opaque $skiptoken nextLinks
// that walk every user exactly once.
#[tokio::test]
async fn paging_walks_all_users_through_next_links() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    for i in 0..7 {
        assert_eq!(
            emu.post(
                &t,
                "/v1.0/users",
                new_user(&format!("pager{i}@contoso.com"))
            )
            .await
            .0,
            201
        );
    }
    let (_, _, all) = emu.get(&t, "/v1.0/users").await;
    let total = all["value"].as_array().expect("value").len();
    assert_eq!(total, 11, "3 seeded + admin + 7 created");
    assert!(all.get("@odata.nextLink").is_none());
    let mut seen = Vec::new();
    let mut url = emu.url("/v1.0/users?$top=3&$select=id");
    let mut pages = 0;
    loop {
        let r = emu
            .http
            .get(&url)
            .bearer_auth(&t)
            .send()
            .await
            .expect("send");
        let (status, _, body) = parts(r).await;
        assert_eq!(status, 200);
        pages += 1;
        for u in body["value"].as_array().expect("value") {
            seen.push(u["id"].as_str().expect("id").to_owned());
        }
        match body["@odata.nextLink"].as_str() {
            Some(next) => {
                assert!(next.contains("$skiptoken="), "{next}");
                url = next.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 4);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), total);
    for bad in ["0", "1000", "abc"] {
        let (status, _, body) = emu.get(&t, &format!("/v1.0/users?$top={bad}")).await;
        assert_eq!(status, 400);
        assert_error(
            &body,
            "Request_UnsupportedQuery",
            &format!("Invalid page size specified: '{bad}'. Must be between 1 and 999 inclusive."),
        );
    }
}

// graph-spec §3.3, §2.4: the $filter subset and the ConsistencyLevel gate, $count and $search.
#[tokio::test]
async fn filters_select_the_documented_subset() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|u| u["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let (_, _, body) = emu
        .get(
            &t,
            "/v1.0/users?$filter=userPrincipalName eq 'ADELEV@contoso.com'",
        )
        .await;
    assert_eq!(ids(&body), [ADELE]);
    let (_, _, body) = emu
        .get(&t, "/v1.0/users?$filter=accountEnabled eq false")
        .await;
    assert_eq!(ids(&body), [LEE]);
    let (_, _, body) = emu
        .get(
            &t,
            "/v1.0/users?$filter=startswith(displayName,'A') and usageLocation eq 'GB'",
        )
        .await;
    assert_eq!(ids(&body), [ALEX]);
    let (_, _, body) = emu
        .get(
            &t,
            &format!("/v1.0/users?$filter=assignedLicenses/any(x:x/skuId eq {EMS})"),
        )
        .await;
    assert_eq!(ids(&body), [ADELE]);
    let (status, _, body) = emu
        .get(
            &t,
            "/v1.0/users?$filter=endswith(userPrincipalName,'@contoso.com')",
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_UnsupportedQuery",
        "Operator 'endsWith' is not supported because the 'ConsistencyLevel:eventual' header is missing. Refer to https://aka.ms/graph-docs/advanced-queries for more information",
    );
    let r = emu
        .http
        .get(emu.url("/v1.0/users?$filter=endswith(userPrincipalName,'@contoso.com')&$count=true"))
        .bearer_auth(&t)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .expect("send");
    let (status, _, body) = parts(r).await;
    assert_eq!(status, 200);
    assert_eq!(body["@odata.count"], 3);
    let (status, _, body) = emu
        .get(&t, "/v1.0/users?$filter=userPrincipalName eq ''")
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_UnsupportedQuery",
        "Unsupported or invalid query filter clause specified for property 'userPrincipalName' of resource 'User'.",
    );
    // /users/$count needs the header (§2.4).
    let (status, _, body) = emu.get(&t, "/v1.0/users/$count").await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "$count is not currently supported.",
    );
    let r = emu
        .http
        .get(emu.url("/v1.0/users/$count"))
        .bearer_auth(&t)
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.expect("text"), "4");
    let (status, _, body) = emu
        .get(&t, "/v1.0/users?$search=\"displayName:adele\"")
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'"
    );
}

// graph-spec §3.4, §2.8, §3.8: PATCH is 204, empty bodies are refused, accountEnabled blocks
// sign-in, password resets need an admin role and set lastPasswordChangeDateTime.
#[tokio::test]
async fn patching_users_updates_attributes_and_passwords() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, body) = emu
        .patch(
            &t,
            &format!("/v1.0/users/{ALEX}"),
            json!({"accountEnabled": false, "jobTitle": "Lead"}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(body, json!(null));
    let (_, _, got) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ALEX}?$select=accountEnabled,jobTitle"),
        )
        .await;
    assert_eq!(
        (got["accountEnabled"].clone(), got["jobTitle"].clone()),
        (json!(false), json!("Lead"))
    );

    let r = emu
        .http
        .patch(emu.url(&format!("/v1.0/users/{ALEX}")))
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    let (status, _, body) = parts(r).await;
    assert_eq!(status, 400);
    assert_error(&body, "BadRequest", "Empty Payload. JSON content expected.");

    let (status, _, body) = emu
        .patch(
            &t,
            &format!("/v1.0/users/{ALEX}"),
            json!({"usageLocation": null}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Invalid value specified for property 'usageLocation' of resource 'User'."
    );

    let (_, _, before) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ALEX}?$select=lastPasswordChangeDateTime"),
        )
        .await;
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"seconds": 5})),
    )
    .await;
    let reset = json!({"passwordProfile": {"forceChangePasswordNextSignIn": false, "password": "xWwvJ]6NMw+bWH-d"}});
    assert_eq!(
        emu.patch(&t, &format!("/v1.0/users/{ALEX}"), reset.clone())
            .await
            .0,
        204
    );
    let (_, _, after) = emu
        .get(
            &t,
            &format!("/v1.0/users/{ALEX}?$select=lastPasswordChangeDateTime"),
        )
        .await;
    assert_ne!(
        before["lastPasswordChangeDateTime"],
        after["lastPasswordChangeDateTime"]
    );
    assert!(
        emu.app.lock().tenants[CONTOSO].users[ALEX]
            .tokens_valid_from
            .is_some()
    );

    let (status, _, body) = emu
        .patch(
            &t,
            &format!("/v1.0/users/{ALEX}"),
            json!({"passwordProfile": {"password": "weak"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "The specified password does not comply with password complexity requirements. Please provide a different password."
    );

    // An app without a directory role gets 403 on password resets (§3.4).
    emu.admin(
        Method::PUT,
        &format!("/_emulator/tenants/{CONTOSO}/grants/{SYNC_APP}"),
        Some(json!({"roles": ALL_ROLES})),
    )
    .await;
    let (status, _, body) = emu.patch(&t, &format!("/v1.0/users/{ALEX}"), reset).await;
    assert_eq!(status, 403);
    assert_error(
        &body,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    );
}

// graph-spec §3.4, §8.3: passwords of federated users cannot be set (synthetic message, §13.3).
#[tokio::test]
async fn federated_users_refuse_password_writes() {
    let emu = Emu::start().await;
    let mut state_token = emu.token(NORTHWIND, SYNC_APP, ALL_ROLES);
    emu.admin(
        Method::PUT,
        &format!("/_emulator/tenants/{NORTHWIND}/grants/{SYNC_APP}"),
        Some(json!({"roles": ALL_ROLES, "directoryRoles": ["User Administrator"]})),
    )
    .await;
    let (status, _, body) = emu
        .patch(
            &state_token,
            "/v1.0/users/megan@northwind.com",
            json!({"passwordProfile": {"password": "xWwvJ]6NMw+bWH-d"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "You cannot reset a password for a federated user.",
    );
    state_token.clear();
}

// graph-spec §3.5, §3.6: soft delete → 404 on /users, visible in deletedItems (cast required),
// restore 200 with the object, POST /users/{id}/restore → 404, permanent delete.
#[tokio::test]
async fn deleted_users_go_to_deleted_items_and_can_be_restored_or_purged() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, _) = emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    assert_eq!(status, 204);
    assert_eq!(emu.get(&t, &format!("/v1.0/users/{ALEX}")).await.0, 404);
    let (status, _, body) = emu.get(&t, "/v1.0/directory/deletedItems").await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "Calling GET /directory/deletedItems without a type is not supported."
    );
    let (_, _, body) = emu
        .get(&t, "/v1.0/directory/deletedItems/microsoft.graph.user")
        .await;
    assert_eq!(body["value"][0]["id"], ALEX);
    assert!(body["value"][0]["deletedDateTime"].as_str().is_some());
    let (status, _, body) = emu
        .get(&t, &format!("/v1.0/directory/deletedItems/{ALEX}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["@odata.type"], "#microsoft.graph.user");
    let (status, _, _) = emu
        .post(&t, &format!("/v1.0/users/{ALEX}/restore"), json!({}))
        .await;
    assert_eq!(status, 404);
    // Soft-deleted users keep their group memberships (§3.5) — restore brings them back.
    let (status, _, body) = emu
        .post(
            &t,
            &format!("/v1.0/directory/deletedItems/{ALEX}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["@odata.context"],
        format!("{}/v1.0/$metadata#directoryObjects/$entity", emu.base)
    );
    assert_eq!(body["userPrincipalName"], "AlexW@contoso.com");
    let (_, _, members) = emu
        .get(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members?$select=id"),
        )
        .await;
    assert!(
        members["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|m| m["id"] == ALEX)
    );
    // Permanent delete.
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    assert_eq!(
        emu.delete(&t, &format!("/v1.0/directory/deletedItems/{ALEX}"))
            .await
            .0,
        204
    );
    assert_eq!(
        emu.get(&t, &format!("/v1.0/directory/deletedItems/{ALEX}"))
            .await
            .0,
        404
    );
    let (_, _, members) = emu
        .get(
            &t,
            &format!("/v1.0/groups/{ENGINEERING}/members?$select=id"),
        )
        .await;
    assert!(
        !members["value"]
            .as_array()
            .expect("value")
            .iter()
            .any(|m| m["id"] == ALEX)
    );
}

// graph-spec §3.5 (assumption §13.4): a new user may take a soft-deleted user's UPN; restore then
// conflicts unless newUserPrincipalName is given.
#[tokio::test]
async fn restore_conflicts_when_the_upn_was_reused() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    assert_eq!(
        emu.post(&t, "/v1.0/users", new_user("AlexW@contoso.com"))
            .await
            .0,
        201
    );
    let (status, _, body) = emu
        .post(
            &t,
            &format!("/v1.0/directory/deletedItems/{ALEX}/restore"),
            json!({}),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "Request_BadRequest",
        "Another object with the same value for property userPrincipalName already exists.",
    );
    let (status, _, body) = emu
        .post(&t, &format!("/v1.0/directory/deletedItems/{ALEX}/restore"), json!({"newUserPrincipalName": "AlexW2@contoso.com", "autoReconcileProxyConflict": true}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["userPrincipalName"], "AlexW2@contoso.com");
}

// Realism switch (issue 3): a soft-deleted user's address stays taken for the release delay.
#[tokio::test]
async fn a_deleted_users_address_is_held_for_the_release_delay() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"addressReleaseDelayMs": 60_000})),
    )
    .await;
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    let (status, _, body) = emu
        .post(&t, "/v1.0/users", new_user("alexw@contoso.com"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["code"], "ObjectConflict");
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"seconds": 61})),
    )
    .await;
    assert_eq!(
        emu.post(&t, "/v1.0/users", new_user("alexw@contoso.com"))
            .await
            .0,
        201
    );
}

// graph-spec §3.5: deleted users are purged after 30 days of (emulator) time.
#[tokio::test]
async fn deleted_users_are_purged_after_30_days() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.delete(&t, &format!("/v1.0/users/{ALEX}")).await;
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"days": 31})),
    )
    .await;
    let t = emu.contoso();
    assert_eq!(
        emu.get(&t, &format!("/v1.0/directory/deletedItems/{ALEX}"))
            .await
            .0,
        404
    );
}

// graph-spec §7.4: with replication lag a new user is invisible to reads for the lag, but the
// POST response has the object.
#[tokio::test]
async fn replication_lag_hides_new_users_from_reads() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"replicationLagMs": 5_000})),
    )
    .await;
    let (status, _, body) = emu
        .post(&t, "/v1.0/users", new_user("lagged@contoso.com"))
        .await;
    assert_eq!(status, 201);
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(emu.get(&t, &format!("/v1.0/users/{id}")).await.0, 404);
    let (_, _, list) = emu
        .get(
            &t,
            "/v1.0/users?$filter=userPrincipalName eq 'lagged@contoso.com'",
        )
        .await;
    assert_eq!(list["value"], json!([]));
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"ms": 5_001})),
    )
    .await;
    assert_eq!(emu.get(&t, &format!("/v1.0/users/{id}")).await.0, 200);
}

// graph-spec §2.3, §3.3: $orderby on displayName (default-supported), descending.
#[tokio::test]
async fn users_are_ordered_by_display_name() {
    let emu = Emu::start().await;
    let (_, _, body) = emu
        .get(
            &emu.contoso(),
            "/v1.0/users?$orderby=displayName desc&$select=displayName",
        )
        .await;
    let names: Vec<&str> = body["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|u| u["displayName"].as_str())
        .collect();
    assert_eq!(
        names,
        ["Lee Gu", "Contoso Admin", "Alex Wilber", "Adele Vance"]
    );
    let (status, _, _) = emu
        .get(&emu.contoso(), "/v1.0/users?$orderby=jobTitle")
        .await;
    assert_eq!(
        status, 400,
        "non-default $orderby needs advanced query parameters"
    );
}

// graph-spec §1.4 revocation matrix: revokeSignInSessions answers true and moves TokensValidFrom.
#[tokio::test]
async fn revoking_sign_in_sessions_moves_tokens_valid_from() {
    let emu = Emu::start().await;
    let (status, _, body) = emu
        .post(
            &emu.contoso(),
            &format!("/v1.0/users/{ADELE}/revokeSignInSessions"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["value"], true);
    assert!(
        emu.app.lock().tenants[CONTOSO].users[ADELE]
            .tokens_valid_from
            .is_some()
    );
}

// graph-spec §1.4, §3.4: a revocation without a body (as Microsoft documents the call) moves the
// user's `signInSessionsValidFromDateTime` (set at creation, `$select`-able), is audited, and
// answers 404 for an unknown user.
#[tokio::test]
async fn revoking_sign_in_sessions_moves_sign_in_sessions_valid_from_and_is_audited() {
    let emu = Emu::start().await;
    let token = emu.contoso();
    let (status, _, created) = emu
        .post(&token, "/v1.0/users", new_user("Leaver@contoso.com"))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let select =
        format!("/v1.0/users/{id}?$select=id,signInSessionsValidFromDateTime,createdDateTime");
    let (_, _, before) = emu.get(&token, &select).await;
    assert_eq!(
        before["signInSessionsValidFromDateTime"], before["createdDateTime"],
        "{before}"
    );
    emu.app.lock().clock.advance(chrono::Duration::seconds(90));
    let (status, _, body) = emu
        .send(
            Method::POST,
            &token,
            &format!("/v1.0/users/{id}/revokeSignInSessions"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], true);
    let (_, _, after) = emu.get(&token, &select).await;
    assert_ne!(
        after["signInSessionsValidFromDateTime"], before["signInSessionsValidFromDateTime"],
        "{after}"
    );
    let (_, _, audits) = emu
        .get(
            &token,
            "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Invalidate all refresh tokens for user'",
        )
        .await;
    let records = audits["value"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{audits}");
    assert_eq!(records[0]["targetResources"][0]["id"], id.as_str());
    let (status, _, _) = emu
        .send(
            Method::POST,
            &token,
            "/v1.0/users/00000000-0000-4000-8000-000000000000/revokeSignInSessions",
            None,
        )
        .await;
    assert_eq!(status, 404);
}

// graph-spec §3.5: app-only User.ReadWrite.All cannot delete a user holding an admin role.
#[tokio::test]
async fn app_only_tokens_cannot_delete_administrators() {
    let emu = Emu::start().await;
    let (status, _, body) = emu
        .delete(&emu.contoso(), "/v1.0/users/admin@contoso.onmicrosoft.com")
        .await;
    assert_eq!(status, 403);
    assert_error(
        &body,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    );
}

// graph-spec §3.4: a delegated admin (User Administrator role or above) may reset passwords.
#[tokio::test]
async fn a_delegated_admin_may_reset_passwords() {
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
                scopes: vec!["User.ReadWrite.All".into()],
                user_upn: Some("admin@contoso.onmicrosoft.com".into()),
                expires_at: now + chrono::Duration::hours(1),
            },
        )
    };
    let reset = json!({"passwordProfile": {"password": "xWwvJ]6NMw+bWH-d", "forceChangePasswordNextSignIn": false}});
    assert_eq!(
        emu.patch(&token, &format!("/v1.0/users/{ALEX}"), reset)
            .await
            .0,
        204
    );
}

// graph-spec §2.5 (delegated): /me is the signed-in user; app-only tokens are refused.
#[tokio::test]
async fn me_is_the_signed_in_user_for_delegated_tokens_only() {
    let emu = Emu::start().await;
    let (status, _, body) = emu.get(&emu.contoso(), "/v1.0/me").await;
    assert_eq!(status, 400);
    assert_error(
        &body,
        "BadRequest",
        "/me request is only valid with delegated authentication flow.",
    );
    let token = {
        let mut state = emu.app.lock();
        let now = state.clock.now();
        m365_emulator::identity::mint_access_token(
            &mut state,
            m365_emulator::identity::AccessClaims {
                tenant_id: CONTOSO.into(),
                app_id: SYNC_APP.into(),
                roles: vec![],
                scopes: vec!["User.Read".into()],
                user_upn: Some("admin@contoso.onmicrosoft.com".into()),
                expires_at: now + chrono::Duration::hours(1),
            },
        )
    };
    let (status, _, body) = emu.get(&token, "/v1.0/me?$select=userPrincipalName").await;
    assert_eq!(status, 200);
    assert_eq!(body["userPrincipalName"], "admin@contoso.onmicrosoft.com");
}

// graph-spec §2.4: `$count=true` without `ConsistencyLevel: eventual` is silently ignored.
#[tokio::test]
async fn count_without_consistency_level_is_ignored() {
    let emu = Emu::start().await;
    let (status, _, body) = emu.get(&emu.contoso(), "/v1.0/users?$count=true").await;
    assert_eq!(status, 200);
    assert!(body.get("@odata.count").is_none());
    let r = emu
        .http
        .get(emu.url("/v1.0/users?$count=true"))
        .bearer_auth(emu.contoso())
        .header("ConsistencyLevel", "eventual")
        .send()
        .await
        .expect("send");
    let (_, _, body) = parts(r).await;
    assert_eq!(body["@odata.count"], 4);
}

// graph-spec §2.8: a PATCH with `{}` is an empty payload too.
#[tokio::test]
async fn an_empty_json_object_patch_is_an_empty_payload() {
    let emu = Emu::start().await;
    for path in [
        format!("/v1.0/users/{ALEX}"),
        format!("/v1.0/groups/{ENGINEERING}"),
    ] {
        let (status, _, body) = emu.patch(&emu.contoso(), &path, json!({})).await;
        assert_eq!(status, 400, "{path}");
        assert_error(&body, "BadRequest", "Empty Payload. JSON content expected.");
    }
}
