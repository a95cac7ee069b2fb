//! Privileged accounts end to end (issue 11, R-BIND-11) on moto and the m365-emulator: the `bind`,
//! `password-push`, `directory` and `import-page` handlers with real API Gateway v2 events, a
//! Contoso connected by its admin (a Global Administrator, whose delegated tokens the connection
//! holds), directory roles seeded and granted through the emulator's control API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use m365_integration_tests::{CONTOSO, CONTOSO_ADMIN, Routes, World, api_request, json_response};
use m365_lambda::provision::Deployed;
use serde_json::{Value, json};

/// Contoso connected, with a Global Administrator (`boss@`) and a User Administrator (`it@`)
/// besides the consenting admin, and the functions' wiring.
struct Stack {
    world: World,
    deps: Deployed,
    import: Deployed,
    tenant: String,
}

impl Stack {
    async fn start() -> Option<Self> {
        let mut world = World::start_with_users(vec![
            json!({"userPrincipalName": "boss@contoso.com", "displayName": "The Boss",
                   "roles": ["Global Administrator"]}),
            json!({"userPrincipalName": "it@contoso.com", "displayName": "IT",
                   "roles": ["User Administrator"]}),
            json!({"userPrincipalName": "dan@contoso.com", "displayName": "Dan"}),
        ])
        .await?;
        world.add_provisioning_resources("priv").await;
        let tenant = world.connect_contoso("Contoso").await;
        let import = Deployed::from_app(&world.app, &world.graph);
        let deps = Deployed::from_app(&world.app, &world.graph);
        Some(Self {
            world,
            deps,
            import,
            tenant,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_query(method, path, &[], body).await
    }

    async fn call_query(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let ["tenants", _, "import"] = segments.as_slice() {
            let request = api_request(method, path, query, body);
            return json_response(&import_page::handle(&self.import, request).await.unwrap());
        }
        Routes::all(&self.deps)
            .call(method, path, query, body)
            .await
    }

    async fn put_user(&self, id: &str, email: &str) {
        let body = json!({"email": email, "displayName": format!("User {id}")});
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
    }

    /// The emulator's account with this UPN: (object id, Graph properties).
    async fn account(&self, upn: &str) -> (String, Value) {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        let user = t["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| {
                u["deletedAt"].is_null()
                    && u["properties"]["userPrincipalName"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case(upn))
            })
            .unwrap_or_else(|| panic!("{upn} in the emulator"))
            .clone();
        (
            user["id"].as_str().unwrap().to_owned(),
            user["properties"].clone(),
        )
    }

    async fn grant_role(&self, role: &str, member: &str) {
        let status = self
            .world
            .emulator
            .send(
                reqwest::Method::POST,
                &format!(
                    "/_emulator/tenants/{CONTOSO}/roles/{}/members",
                    role.replace(' ', "%20")
                ),
                json!({ "member": member }),
            )
            .await;
        assert!(status.is_success(), "{status}");
    }
}

#[tokio::test]
async fn binding_refuses_a_role_holder_and_the_consenting_admin_with_409_and_adopts_on_opt_in() {
    // R-BIND-11, R-BIND-3 ("kept in the event"), R-SAFE-1 (nothing written on refusal)
    let Some(s) = Stack::start().await else {
        return;
    };
    let (boss_id, boss_before) = s.account("boss@contoso.com").await;
    s.put_user("boss", "boss@contoso.com").await;
    let (status, body) = s.call("PUT", "/users/boss/binding", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "privileged_account");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Global Administrator"), "{message}");
    assert!(message.contains("adoptPrivileged"), "{message}");
    let (status, _) = s.call("GET", "/users/boss/binding", None).await;
    assert_eq!(status, 404, "no binding was written");
    assert_eq!(
        s.account("boss@contoso.com").await.1,
        boss_before,
        "M365 untouched"
    );

    // The admin whose consent the connection carries.
    s.put_user("root", CONTOSO_ADMIN.0).await;
    let (status, body) = s.call("PUT", "/users/root/binding", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "privileged_account");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("consented"),
        "{body}"
    );

    // With the opt-in the boss's account is adopted, and the event says so.
    let (status, body) = s
        .call(
            "PUT",
            "/users/boss/binding",
            Some(json!({"adoptPrivileged": true, "welcome": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned");
    assert_eq!(body["binding"]["m365ObjectId"], boss_id.as_str());
    assert_eq!(body["binding"]["adoptedPrivileged"], true);
    let (status, events) = s
        .call_query("GET", "/events", &[("userId", "boss")], None)
        .await;
    assert_eq!(status, 200, "{events}");
    let adopted = &events["events"][0];
    assert_eq!(adopted["type"], "user_update_provision", "{events}");
    assert_eq!(adopted["reason"], "adopted");
    assert_eq!(adopted["details"]["adoptPrivileged"], true, "{adopted}");
    assert_eq!(
        adopted["details"]["privilege"]["directoryRoles"][0]["displayName"],
        "Global Administrator"
    );
    // An unknown field next to it is still refused (R-SAFE-1).
    let (status, _) = s
        .call(
            "PUT",
            "/users/boss/binding",
            Some(json!({"adoptPrivileged": true, "tenantId": s.tenant})),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn import_refuses_privileged_accounts_one_by_one_and_imports_them_on_opt_in() {
    // R-BIND-11 (import), R-IMP-2 (the others still import)
    let Some(s) = Stack::start().await else {
        return;
    };
    let (it, _) = s.account("it@contoso.com").await;
    let (dan, _) = s.account("dan@contoso.com").await;
    let (admin, _) = s.account(CONTOSO_ADMIN.0).await;
    let path = format!("/tenants/{}/import", s.tenant);
    let (status, body) = s
        .call("POST", &path, Some(json!({"m365Ids": [it, dan, admin]})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["imported"].as_u64(), body["failed"].as_u64()),
        (Some(1), Some(2)),
        "{body}"
    );
    let result = |id: &str| {
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["m365Id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(result(&it)["code"], "privileged_account");
    assert_eq!(result(&admin)["code"], "privileged_account");
    assert_eq!(result(&dan)["result"], "imported");
    let (status, _) = s.call("GET", &format!("/users/m365-{it}"), None).await;
    assert_eq!(status, 404, "nothing written for a refused account");

    let (status, body) = s
        .call(
            "POST",
            &path,
            Some(json!({"m365Ids": [it], "adoptPrivileged": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported"], 1, "{body}");
    let (status, binding) = s
        .call("GET", &format!("/users/m365-{it}/binding"), None)
        .await;
    assert_eq!(status, 200, "{binding}");
    assert_eq!(binding["adoptedPrivileged"], true);
}

#[tokio::test]
async fn a_password_is_not_pushed_to_an_account_made_privileged_after_binding() {
    // R-BIND-11 (password push), R-PWD-1 (still stored), R-PWD-2 (pushed when adopted that way)
    let Some(s) = Stack::start().await else {
        return;
    };
    // Dan is an ordinary account: adopted without any opt-in.
    s.put_user("dan", "dan@contoso.com").await;
    let (status, body) = s
        .call("PUT", "/users/dan/binding", Some(json!({"welcome": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["binding"].get("adoptedPrivileged").is_none(), "{body}");
    // An M365 admin makes him a Helpdesk Administrator afterwards.
    let (dan, before) = s.account("dan@contoso.com").await;
    s.grant_role("Helpdesk Administrator", &dan).await;
    let (status, body) = s
        .call(
            "POST",
            "/users/dan/password",
            Some(json!({"password": "Correct-Horse-7"})),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "privileged_account");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Helpdesk Administrator"),
        "{body}"
    );
    assert_eq!(
        s.account("dan@contoso.com").await.1,
        before,
        "no password write reached M365"
    );
    let (_, binding) = s.call("GET", "/users/dan/binding", None).await;
    assert_eq!(
        binding["lastError"]["code"], "privileged_account",
        "{binding}"
    );
    assert_eq!(binding["state"], "provisioned");
    let (_, failures) = s
        .call("GET", &format!("/tenants/{}/failures", s.tenant), None)
        .await;
    assert!(
        failures["failures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "privileged_account" && f["userId"] == "dan"),
        "{failures}"
    );

    // The boss, adopted with the opt-in, gets his password pushed.
    s.put_user("boss", "boss@contoso.com").await;
    let (status, body) = s
        .call(
            "PUT",
            "/users/boss/binding",
            Some(json!({"adoptPrivileged": true, "welcome": false})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, boss_before) = s.account("boss@contoso.com").await;
    // Graph's timestamps have whole seconds: a push in the same second as the seeding would look
    // like no push at all.
    s.world.emulator.advance_clock(5).await;
    let (status, body) = s
        .call(
            "POST",
            "/users/boss/password",
            Some(json!({"password": "Correct-Horse-7"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, boss_after) = s.account("boss@contoso.com").await;
    assert_ne!(
        boss_after["lastPasswordChangeDateTime"], boss_before["lastPasswordChangeDateTime"],
        "pushed"
    );
}
