//! The organisation and contact properties of users over HTTP (R-ATTR-1; property notes, User;
//! graph-spec §3.1, §3.3, §3.4, §5): `employeeId`, `officeLocation`, `mobilePhone`,
//! `businessPhones`, `companyName`, `usageLocation`, `city`, `country` are stored on create and
//! update, returned by `$select` (three by default), cleared with `null` (`[]` for the phones),
//! reported by users delta, and validated (lengths, one business phone, a real ISO country code).

mod graph_support;

use graph_support::*;
use serde_json::{Value, json};

const SELECT: &str =
    "employeeId,officeLocation,mobilePhone,businessPhones,companyName,usageLocation,city,country";

fn attributes() -> Value {
    json!({
        "employeeId": "E-1001", "officeLocation": "18/2111", "mobilePhone": "+1 425 555 0109",
        "businessPhones": ["+1 425 555 0100"], "companyName": "Contoso", "usageLocation": "US",
        "city": "Redmond", "country": "United States"
    })
}

fn with(mut body: Value, extra: &Value) -> Value {
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn selected(emu: &Emu, token: &str, id: &str) -> Value {
    let (status, _, got) = emu
        .get(token, &format!("/v1.0/users/{id}?$select={SELECT}"))
        .await;
    assert_eq!(status, 200, "{got}");
    got
}

#[tokio::test]
async fn the_properties_are_stored_selected_cleared_and_reported_by_delta() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (status, _, created) = emu
        .post(
            &t,
            "/v1.0/users",
            with(new_user("attrs@contoso.com"), &attributes()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    // Default projection (graph-spec §3.3): only the phones and the office.
    assert_eq!(created["businessPhones"], json!(["+1 425 555 0100"]));
    assert_eq!(created["mobilePhone"], "+1 425 555 0109");
    assert_eq!(created["officeLocation"], "18/2111");
    assert!(created.get("employeeId").is_none(), "only on $select");
    let id = created["id"].as_str().expect("id").to_owned();
    let got = selected(&emu, &t, &id).await;
    for (name, value) in attributes().as_object().expect("object") {
        assert_eq!(&got[name], value, "{name}");
    }

    let (_, _, latest) = emu
        .get(
            &t,
            &format!("/v1.0/users/delta?$select={SELECT}&$deltaToken=latest"),
        )
        .await;
    let link = latest["@odata.deltaLink"]
        .as_str()
        .expect("deltaLink")
        .to_owned();
    let clear = json!({"city": null, "businessPhones": [], "companyName": "Fabrikam"});
    let (status, _, body) = emu.patch(&t, &format!("/v1.0/users/{id}"), clear).await;
    assert_eq!(status, 204, "{body}");
    let got = selected(&emu, &t, &id).await;
    assert_eq!(got["city"], json!(null));
    assert_eq!(got["businessPhones"], json!([]));
    assert_eq!(got["companyName"], "Fabrikam");
    assert_eq!(got["employeeId"], "E-1001", "not in the PATCH: kept");

    let r = emu
        .http
        .get(&link)
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    let (status, _, page) = parts(r).await;
    assert_eq!(status, 200, "{page}");
    let item = page["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|u| u["id"] == id.as_str())
        .expect("the changed user is reported")
        .clone();
    assert_eq!(item["city"], json!(null), "reported cleared");
    assert_eq!(item["businessPhones"], json!([]));
    assert_eq!(item["companyName"], "Fabrikam");
}

#[tokio::test]
async fn bad_values_are_refused_on_create_and_update_and_nothing_is_written() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let cases: [(&str, Value); 11] = [
        ("employeeId", json!("E".repeat(17))),
        ("officeLocation", json!("o".repeat(129))),
        ("mobilePhone", json!("m".repeat(65))),
        ("companyName", json!("c".repeat(65))),
        ("city", json!("c".repeat(129))),
        ("country", json!("k".repeat(129))),
        ("businessPhones", json!(["+1 1", "+1 2"])),
        ("businessPhones", json!(["b".repeat(65)])),
        ("businessPhones", json!(null)),
        ("usageLocation", json!("UK")),
        ("employeeId", json!(42)),
    ];
    let (_, _, seeded) = emu
        .post(&t, "/v1.0/users", new_user("target@contoso.com"))
        .await;
    let id = seeded["id"].as_str().expect("id").to_owned();
    let before = selected(&emu, &t, &id).await;
    for (n, (prop, value)) in cases.into_iter().enumerate() {
        let message = format!("Invalid value specified for property '{prop}' of resource 'User'.");
        let bad = json!({ prop: value });
        let upn = format!("bad{n}@contoso.com");
        let (status, _, body) = emu
            .post(&t, "/v1.0/users", with(new_user(&upn), &bad))
            .await;
        assert_eq!(status, 400, "create {prop}: {body}");
        assert_error(&body, "Request_BadRequest", &message);
        let (status, _, body) = emu.patch(&t, &format!("/v1.0/users/{id}"), bad).await;
        assert_eq!(status, 400, "update {prop}: {body}");
        assert_error(&body, "Request_BadRequest", &message);
        let (status, _, _) = emu.get(&t, &format!("/v1.0/users/{upn}")).await;
        assert_eq!(status, 404, "{upn} not created");
    }
    assert_eq!(selected(&emu, &t, &id).await, before, "nothing written");
}
