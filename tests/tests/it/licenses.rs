//! Licences end to end (R-LIC-1) on moto + the m365-emulator: tenant settings through the
//! `directory` function (validated against Contoso's `subscribedSkus`), a bind that sets the
//! usage location and assigns the default licence with its disabled plans, a bound group's
//! licence added and removed with membership while the tenant default stays, and seat
//! exhaustion recorded and retried by the `reconcile` function once an admin frees a seat in
//! M365 (Graph `assignLicense` with an admin's app token). Every test names the requirement it
//! proves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use m365_integration_tests::{
    OffsetClock, PLAN_SWAY, ReconcileScene, Routes, SKU_E3, SKU_POWER_BI, SKU_VISIO,
};
use reconcile::{Reconciler, Settings};
use serde_json::{Value, json};

const PASSWORD: &str = "Correct-Horse-7";

struct Stack(ReconcileScene);

impl std::ops::Deref for Stack {
    type Target = ReconcileScene;
    fn deref(&self) -> &ReconcileScene {
        &self.0
    }
}

impl Stack {
    async fn start() -> Option<Self> {
        Some(Self(ReconcileScene::start("lic").await?))
    }

    fn reconciler(&self) -> Reconciler<OffsetClock> {
        self.0.reconciler(Settings::default())
    }

    async fn settings(&self, body: Value) -> (u16, Value) {
        self.call(
            "PUT",
            &format!("/tenants/{}/settings", self.tenant),
            Some(body),
        )
        .await
    }

    /// A directory user `id` at contoso.com with a password, bound.
    async fn bound_user(&self, id: &str) -> Value {
        let body =
            json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
        let (status, answer) = self
            .call(
                "POST",
                &format!("/users/{id}/password"),
                Some(json!({ "password": PASSWORD })),
            )
            .await;
        assert_eq!(status, 204, "{answer}");
        let (status, answer) = self
            .call(
                "PUT",
                &format!("/users/{id}/binding"),
                Some(json!({ "welcome": false })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        self.binding(id).await
    }

    async fn binding(&self, id: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/users/{id}/binding"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The M365 account's `usageLocation` and `assignedLicenses` as Graph shows them.
    async fn account(&self, binding: &Value) -> Value {
        let id = binding["m365ObjectId"].as_str().unwrap();
        let (status, body) = self
            .graph(
                reqwest::Method::GET,
                &format!("/users/{id}?$select=id,usageLocation,assignedLicenses"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn skus_of(&self, binding: &Value) -> Vec<String> {
        let mut skus: Vec<String> = self.account(binding).await["assignedLicenses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["skuId"].as_str().unwrap().to_owned())
            .collect();
        skus.sort();
        skus
    }

    async fn group(&self, members: &[&str]) {
        let (status, body) = self
            .call(
                "PUT",
                "/groups/sales",
                Some(json!({"name": "Sales", "members": members})),
            )
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
    }
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn binding_assigns_the_tenant_default_licence_with_its_disabled_plans() {
    // R-LIC-1
    let Some(s) = Stack::start().await else {
        return;
    };
    let (status, body) = s
        .settings(json!({
            "usageLocation": "US",
            "licenses": [{"sku": "ENTERPRISEPACK", "disabledPlans": ["SWAY"]}],
            "removeLicensesOnUnbind": false
        }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["licenses"],
        json!([{"sku": "ENTERPRISEPACK", "disabledPlans": ["SWAY"]}])
    );
    let (status, shown) = s
        .call("GET", &format!("/tenants/{}/settings", s.tenant), None)
        .await;
    assert_eq!((status, &shown), (200, &body));

    let binding = s.bound_user("lic1").await;
    assert_eq!(binding["state"], "provisioned", "{binding}");
    assert_eq!(binding["licenseState"], "assigned", "{binding}");
    let account = s.account(&binding).await;
    assert_eq!(account["usageLocation"], "US", "{account}");
    assert_eq!(
        account["assignedLicenses"],
        json!([{"skuId": SKU_E3, "disabledPlans": [PLAN_SWAY]}]),
        "{account}"
    );
    let (status, events) = Routes::all(&s.provisioning)
        .call("GET", "/events", &[("userId", "lic1")], None)
        .await;
    assert_eq!(status, 200, "{events}");
    let licence_event = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "user_update_provision" && e["reason"] == "licenses")
        .unwrap_or_else(|| panic!("no licence event: {events}"));
    assert_eq!(
        licence_event["details"]["licensesAdded"],
        json!(["ENTERPRISEPACK"])
    );
}

#[tokio::test]
async fn bad_settings_are_refused_with_a_400_naming_the_known_skus_and_nothing_is_written() {
    // R-LIC-1, R-SAFE-1
    let Some(s) = Stack::start().await else {
        return;
    };
    let (status, body) = s.settings(json!({"licenses": [{"sku": "E5"}]})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_sku");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ENTERPRISEPACK") && message.contains("VISIOCLIENT"),
        "{message}"
    );
    let (status, body) = s
        .settings(json!({"licenses": [{"sku": "ENTERPRISEPACK", "disabledPlans": ["YAMMER"]}]}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_service_plan");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("SWAY"),
        "{body}"
    );
    let (status, body) = s.settings(json!({"usageLocation": "USA"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_usage_location");
    let (status, body) = s.settings(json!({"licences": []})).await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let (status, body) = s
        .call(
            "PUT",
            "/tenants/6e1f0c1a-0000-4000-8000-00000000dead/settings",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 404, "{body}");

    let (status, shown) = s
        .call("GET", &format!("/tenants/{}/settings", s.tenant), None)
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown,
        json!({"tenantId": s.tenant, "usageLocation": null, "licenses": [], "removeLicensesOnUnbind": false}),
        "nothing was written: the defaults"
    );
    // Same check for a group binding's licences: refused before the group is bound.
    s.group(&[]).await;
    let (status, body) = s
        .call(
            "PUT",
            "/groups/sales/binding",
            Some(json!({"tenantId": s.tenant, "licenses": [{"sku": "NOPE"}]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_sku");
    let (status, _) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(status, 404, "the group was not bound");
}

#[tokio::test]
async fn a_group_licence_is_added_and_removed_with_membership_while_the_tenant_default_stays() {
    // R-LIC-1
    let Some(s) = Stack::start().await else {
        return;
    };
    let (status, body) = s
        .settings(json!({"usageLocation": "GB", "licenses": [{"sku": "ENTERPRISEPACK"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let a = s.bound_user("g1").await;
    let b = s.bound_user("g2").await;
    s.group(&["g1"]).await;
    let (status, body) = s
        .call(
            "PUT",
            "/groups/sales/binding",
            Some(json!({"tenantId": s.tenant, "licenses": [{"sku": "POWER_BI_PRO"}, {"sku": "ENTERPRISEPACK"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.skus_of(&a).await, sorted(&[SKU_E3, SKU_POWER_BI]));
    assert_eq!(s.skus_of(&b).await, sorted(&[SKU_E3]));

    // g2 joins, g1 leaves: Power BI follows; E3 (the tenant's default too) stays on g1.
    s.group(&["g2"]).await;
    assert_eq!(s.skus_of(&a).await, sorted(&[SKU_E3]));
    assert_eq!(s.skus_of(&b).await, sorted(&[SKU_E3, SKU_POWER_BI]));
    assert_eq!(s.binding("g1").await["licenseState"], "assigned");

    // Reconcile finds nothing to change.
    let deps = s.reconciler();
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["licenses"]["changed"], 0, "{report}");
    assert_eq!(report["licenses"]["failed"], 0, "{report}");
    assert_eq!(s.skus_of(&a).await, sorted(&[SKU_E3]));
}

#[tokio::test]
async fn seat_exhaustion_is_recorded_and_reconcile_assigns_the_licence_once_a_seat_frees() {
    // R-LIC-1
    let Some(s) = Stack::start().await else {
        return;
    };
    let (status, body) = s
        .settings(json!({"usageLocation": "US", "licenses": [{"sku": "VISIOCLIENT"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let first = s.bound_user("v1").await;
    assert_eq!(first["licenseState"], "assigned", "{first}");
    let second = s.bound_user("v2").await;
    assert_eq!(
        second["state"], "provisioned",
        "the account stays provisioned: {second}"
    );
    assert_eq!(second["licenseState"], "failed", "{second}");
    assert_eq!(
        second["lastError"]["code"], "license_unavailable",
        "{second}"
    );
    assert!(
        second["lastError"]["graphRequestId"].is_string(),
        "{second}"
    );
    assert!(s.skus_of(&second).await.is_empty());
    let (status, failures) = s
        .call("GET", &format!("/tenants/{}/failures", s.tenant), None)
        .await;
    assert_eq!(status, 200, "{failures}");
    let failure = failures["failures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "license_unavailable")
        .unwrap_or_else(|| panic!("no failure recorded: {failures}"));
    assert_eq!(failure["userId"], "v2");
    assert!(failure["graphRequestId"].is_string(), "{failure}");

    // Still no seat: reconcile tries again and fails again.
    let deps = s.reconciler();
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["licenses"]["failed"], 1, "{report}");

    // An admin takes Visio from v1 in M365: a seat is free.
    let v1 = first["m365ObjectId"].as_str().unwrap();
    let (status, body) = s
        .graph(
            reqwest::Method::POST,
            &format!("/users/{v1}/assignLicense"),
            Some(json!({"addLicenses": [], "removeLicenses": [SKU_VISIO]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["licenses"]["failed"], 0, "{report}");
    assert_eq!(report["licenses"]["changed"], 1, "{report}");
    let second = s.binding("v2").await;
    assert_eq!(second["licenseState"], "assigned", "{second}");
    assert!(second["lastError"].is_null(), "{second}");
    assert_eq!(s.skus_of(&second).await, sorted(&[SKU_VISIO]));
}

#[tokio::test]
async fn unbind_removes_licences_only_when_the_tenant_says_so() {
    // R-LIC-1
    let Some(s) = Stack::start().await else {
        return;
    };
    let (status, body) = s
        .settings(json!({"usageLocation": "US", "licenses": [{"sku": "ENTERPRISEPACK"}]}))
        .await;
    assert_eq!(status, 200, "{body}");
    let kept = s.bound_user("u1").await;
    let (status, body) = s.call("DELETE", "/users/u1/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.skus_of(&kept).await, sorted(&[SKU_E3]), "kept by default");

    let (status, body) = s
        .settings(json!({"usageLocation": "US", "licenses": [{"sku": "ENTERPRISEPACK"}], "removeLicensesOnUnbind": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    let removed = s.bound_user("u2").await;
    let (status, body) = s.call("DELETE", "/users/u2/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(s.skus_of(&removed).await.is_empty(), "removed on unbind");
    assert_eq!(s.binding("u2").await["licenseState"], "none");
}
