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

async fn start() -> Option<ReconcileScene> {
    ReconcileScene::start("lic").await
}

fn reconciler(s: &ReconcileScene) -> Reconciler<OffsetClock> {
    s.reconciler(Settings::default())
}

/// `PUT /tenants/{Contoso}/settings`.
async fn settings(s: &ReconcileScene, body: Value) -> (u16, Value) {
    s.call(
        "PUT",
        &format!("/tenants/{}/settings", s.tenant),
        Some(body),
    )
    .await
}

/// A directory user `id` at contoso.com with a password, bound; its binding.
async fn bound_user(s: &ReconcileScene, id: &str) -> Value {
    s.directory_user(id, PASSWORD).await;
    s.bind_user(id).await
}

/// The M365 account's `usageLocation` and `assignedLicenses` as Graph shows them.
async fn account(s: &ReconcileScene, binding: &Value) -> Value {
    let id = binding["m365ObjectId"].as_str().unwrap();
    let path = format!("/users/{id}?$select=id,usageLocation,assignedLicenses");
    let (status, body) = s.graph(reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The SKU ids the account holds in M365, sorted.
async fn skus_of(s: &ReconcileScene, binding: &Value) -> Vec<String> {
    let mut skus: Vec<String> = account(s, binding).await["assignedLicenses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["skuId"].as_str().unwrap().to_owned())
        .collect();
    skus.sort();
    skus
}

/// Directory group `sales` of `members`.
async fn group(s: &ReconcileScene, members: &[&str]) {
    let body = json!({"name": "Sales", "members": members});
    let (status, body) = s.call("PUT", "/groups/sales", Some(body)).await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn binding_assigns_the_tenant_default_licence_with_its_disabled_plans() {
    // R-LIC-1
    let Some(s) = start().await else {
        return;
    };
    let (status, body) = settings(
        &s,
        json!({
            "usageLocation": "US",
            "licenses": [{"sku": "ENTERPRISEPACK", "disabledPlans": ["SWAY"]}],
            "removeLicensesOnUnbind": false
        }),
    )
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

    let binding = bound_user(&s, "lic1").await;
    assert_eq!(binding["state"], "provisioned", "{binding}");
    assert_eq!(binding["licenseState"], "assigned", "{binding}");
    let account = account(&s, &binding).await;
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
    let Some(s) = start().await else {
        return;
    };
    let (status, body) = settings(&s, json!({"licenses": [{"sku": "E5"}]})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_sku");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("ENTERPRISEPACK") && message.contains("VISIOCLIENT"),
        "{message}"
    );
    let (status, body) = settings(
        &s,
        json!({"licenses": [{"sku": "ENTERPRISEPACK", "disabledPlans": ["YAMMER"]}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_service_plan");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("SWAY"),
        "{body}"
    );
    let (status, body) = settings(&s, json!({"usageLocation": "USA"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_usage_location");
    let (status, body) = settings(&s, json!({"licences": []})).await;
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
    group(&s, &[]).await;
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
    let Some(s) = start().await else {
        return;
    };
    let (status, body) = settings(
        &s,
        json!({"usageLocation": "GB", "licenses": [{"sku": "ENTERPRISEPACK"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let a = bound_user(&s, "g1").await;
    let b = bound_user(&s, "g2").await;
    group(&s, &["g1"]).await;
    let (status, body) = s
        .call(
            "PUT",
            "/groups/sales/binding",
            Some(json!({"tenantId": s.tenant, "licenses": [{"sku": "POWER_BI_PRO"}, {"sku": "ENTERPRISEPACK"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(skus_of(&s, &a).await, sorted(&[SKU_E3, SKU_POWER_BI]));
    assert_eq!(skus_of(&s, &b).await, sorted(&[SKU_E3]));

    // g2 joins, g1 leaves: Power BI follows; E3 (the tenant's default too) stays on g1.
    group(&s, &["g2"]).await;
    assert_eq!(skus_of(&s, &a).await, sorted(&[SKU_E3]));
    assert_eq!(skus_of(&s, &b).await, sorted(&[SKU_E3, SKU_POWER_BI]));
    assert_eq!(s.binding("g1").await["licenseState"], "assigned");

    // Reconcile finds nothing to change.
    let deps = reconciler(&s);
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["licenses"]["changed"], 0, "{report}");
    assert_eq!(report["licenses"]["failed"], 0, "{report}");
    assert_eq!(skus_of(&s, &a).await, sorted(&[SKU_E3]));
}

#[tokio::test]
async fn seat_exhaustion_is_recorded_and_reconcile_assigns_the_licence_once_a_seat_frees() {
    // R-LIC-1
    let Some(s) = start().await else {
        return;
    };
    let (status, body) = settings(
        &s,
        json!({"usageLocation": "US", "licenses": [{"sku": "VISIOCLIENT"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let first = bound_user(&s, "v1").await;
    assert_eq!(first["licenseState"], "assigned", "{first}");
    s.directory_user("v2", PASSWORD).await;
    let (status, answer) = s
        .call("PUT", "/users/v2/binding", Some(json!({"welcome": false})))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["binding"]["licenseState"], "failed",
        "the bind's answer shows it: {answer}"
    );
    let second = s.binding("v2").await;
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
    assert!(skus_of(&s, &second).await.is_empty());
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
    let deps = reconciler(&s);
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
    assert_eq!(skus_of(&s, &second).await, sorted(&[SKU_VISIO]));
}

#[tokio::test]
async fn unbind_removes_licences_only_when_the_tenant_says_so() {
    // R-LIC-1
    let Some(s) = start().await else {
        return;
    };
    let (status, body) = settings(
        &s,
        json!({"usageLocation": "US", "licenses": [{"sku": "ENTERPRISEPACK"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let kept = bound_user(&s, "u1").await;
    let (status, body) = s.call("DELETE", "/users/u1/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        skus_of(&s, &kept).await,
        sorted(&[SKU_E3]),
        "kept by default"
    );

    let (status, body) = settings(&s, json!({"usageLocation": "US", "licenses": [{"sku": "ENTERPRISEPACK"}], "removeLicensesOnUnbind": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    let removed = bound_user(&s, "u2").await;
    let (status, body) = s.call("DELETE", "/users/u2/binding", None).await;
    assert_eq!(status, 200, "{body}");
    assert!(skus_of(&s, &removed).await.is_empty(), "removed on unbind");
    assert_eq!(s.binding("u2").await["licenseState"], "none");
}
