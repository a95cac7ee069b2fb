//! R-ATTR-1 end to end on moto + the m365-emulator: the eight organisation and contact
//! attributes a directory user carries (`employeeId`, `officeLocation`, `mobilePhone`,
//! `businessPhones`, `companyName`, `usageLocation`, `city`, `country`) go through the real
//! `directory` and `bind` handlers into DynamoDB and M365 — on create and on adopting an existing
//! account, on change, cleared when cleared — and reconcile repairs their drift.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_integration_tests::ReconcileScene;
use reconcile::Settings;
use serde_json::{Value, json};

/// Every attribute set, as the API and Graph spell it.
fn attributes() -> Value {
    serde_json::to_value(m365_engine::testing::contract::every_attribute()).unwrap()
}

/// `$select` of the eight attributes.
fn select() -> String {
    let names: Vec<String> = attributes().as_object().unwrap().keys().cloned().collect();
    names.join(",")
}

/// `{"email", "displayName"}` of `id` on contoso.com with `extra` added.
fn user(id: &str, extra: &Value) -> Value {
    let mut body =
        json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn put_user(s: &ReconcileScene, id: &str, extra: &Value) -> Value {
    let (status, answer) = s
        .call("PUT", &format!("/users/{id}"), Some(user(id, extra)))
        .await;
    assert!(status == 200 || status == 201, "{status} {answer}");
    answer
}

async fn bind(s: &ReconcileScene, id: &str) {
    let (status, body) = s.call("PUT", &format!("/users/{id}/binding"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned", "{body}");
}

/// The eight attributes of `id`'s M365 account, as Graph returns them.
async fn in_m365(s: &ReconcileScene, id: &str) -> Value {
    let (status, body) = s
        .graph(
            reqwest::Method::GET,
            &format!("/users/{id}@contoso.com?$select={}", select()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut body = body;
    body.as_object_mut().unwrap().remove("@odata.context");
    body
}

#[tokio::test]
async fn each_attribute_reaches_m365_on_bind_and_on_change_and_is_cleared_when_cleared() {
    // R-ATTR-1, R-BIND-7
    let Some(s) = ReconcileScene::start("attr").await else {
        return;
    };
    let created = put_user(&s, "adele", &attributes()).await;
    let (_, stored) = s.call("GET", "/users/adele", None).await;
    assert_eq!(stored, created["user"], "read back from DynamoDB");
    bind(&s, "adele").await;
    assert_eq!(in_m365(&s, "adele").await, attributes(), "on bind (create)");

    let changed = json!({
        "employeeId": "E-2002", "officeLocation": "19/3000", "mobilePhone": "+1 425 555 0199",
        "businessPhones": ["+1 425 555 0200"], "companyName": "Fabrikam", "usageLocation": "GB",
        "city": "London", "country": "United Kingdom"
    });
    let answer = put_user(&s, "adele", &changed).await;
    assert_eq!(answer["sync"], "done", "{answer}");
    assert_eq!(in_m365(&s, "adele").await, changed, "on change");

    let answer = put_user(&s, "adele", &json!({})).await;
    assert_eq!(answer["sync"], "done", "{answer}");
    assert_eq!(
        in_m365(&s, "adele").await,
        json!({
            "employeeId": null, "officeLocation": null, "mobilePhone": null, "businessPhones": [],
            "companyName": null, "usageLocation": "GB", "city": null, "country": null
        }),
        "cleared in M365; the usage location is not nullable in Graph and stays"
    );
}

#[tokio::test]
async fn adopting_an_existing_account_patches_the_attributes_that_differ() {
    // R-ATTR-1, R-BIND-2
    let Some(s) = ReconcileScene::start("attradopt").await else {
        return;
    };
    let (status, body) = s
        .graph(
            reqwest::Method::POST,
            "/users",
            Some(json!({
                "accountEnabled": true, "displayName": "Ben", "mailNickname": "ben",
                "userPrincipalName": "ben@contoso.com", "city": "Seattle", "mobilePhone": "+1 1",
                "usageLocation": "CA",
                "passwordProfile": {"forceChangePasswordNextSignIn": false, "password": "xWwvJ]6NMw+bWH-d"}
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    put_user(
        &s,
        "ben",
        &json!({"city": "Redmond", "companyName": "Contoso"}),
    )
    .await;
    bind(&s, "ben").await;
    let m365 = in_m365(&s, "ben").await;
    assert_eq!(m365["city"], "Redmond");
    assert_eq!(m365["companyName"], "Contoso");
    assert_eq!(
        m365["mobilePhone"],
        Value::Null,
        "unset in the directory: cleared"
    );
    assert_eq!(
        m365["usageLocation"], "CA",
        "unset in the directory: M365's stays"
    );
}

#[tokio::test]
async fn bad_attributes_get_a_400_listing_each_and_nothing_is_written() {
    // R-ATTR-1, R-SAFE-1
    let Some(s) = ReconcileScene::start("attrbad").await else {
        return;
    };
    let bad = json!({"employeeId": "E".repeat(17), "usageLocation": "UK", "city": "c".repeat(129)});
    let (status, body) = s.call("PUT", "/users/cat", Some(user("cat", &bad))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["employeeId", "usageLocation", "city"]);
    let (status, _) = s.call("GET", "/users/cat", None).await;
    assert_eq!(status, 404, "nothing written");
}

#[tokio::test]
async fn reconcile_repairs_drift_of_an_attribute_changed_in_m365() {
    // R-ATTR-1, R-REC-1
    let Some(s) = ReconcileScene::start("attrrec").await else {
        return;
    };
    put_user(&s, "dee", &attributes()).await;
    bind(&s, "dee").await;
    let deps = s.reconciler(Settings::default());
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["plan"], json!([]), "{first}");
    let (status, body) = s
        .graph(
            reqwest::Method::PATCH,
            "/users/dee@contoso.com",
            Some(json!({"officeLocation": "Basement", "companyName": null})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let run = s.reconcile(&deps, false).await;
    assert_eq!(
        run["plan"][0]["attributes"],
        json!(["officeLocation", "companyName"]),
        "{run}"
    );
    assert_eq!(in_m365(&s, "dee").await, attributes(), "repaired");
    assert_eq!(s.reconcile(&deps, false).await["plan"], json!([]));
}
