//! `import_page::handle` driven with real API Gateway v2 event JSON on the engine's in-memory
//! `World`: routing, bad input answered with a 4xx and a machine-readable code (R-SAFE-1), a page
//! of the tenant's M365 users with their status and a tamper-evident cursor (R-IMP-1), and an
//! import of selected accounts without writing to M365 (R-IMP-2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use import_page::handle;
use m365_engine::model::{BindingState, NewM365User};
use m365_engine::ports::Directory;
use m365_engine::testing::{World, email};
use m365_lambda::testing::{api_event, status_and_json};
use secrecy::SecretString;
use serde_json::Value;

async fn call(
    w: &World,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let response = handle(w, api_event(method, path, query, body))
        .await
        .unwrap();
    status_and_json(&response)
}

/// An M365 account `local@contoso.com` in the world's tenant; its object id.
async fn m365(w: &World, local: &str) -> String {
    let user = w
        .directory
        .create_user(
            &w.tenant.id,
            &NewM365User {
                user_principal_name: email(&format!("{local}@contoso.com")),
                mail_nickname: local.to_owned(),
                display_name: local.to_owned(),
                given_name: None,
                surname: None,
                job_title: None,
                department: None,
                attributes: Default::default(),
                account_enabled: true,
                password: SecretString::from("Str0ng!Passw0rd"),
            },
        )
        .await
        .unwrap();
    user.id.to_string()
}

#[tokio::test]
async fn unknown_routes_and_bad_input_get_a_4xx_with_a_code() {
    // R-SAFE-1
    let w = World::new().await;
    let path = format!("/tenants/{}/import", w.tenant.id);
    for (method, path, query, body, status, code) in [
        ("PUT", path.as_str(), &[][..], None, 404, "route_not_found"),
        (
            "GET",
            "/tenants/not-a-uuid/import",
            &[][..],
            None,
            400,
            "invalid_id",
        ),
        (
            "GET",
            path.as_str(),
            &[("status", "odd")][..],
            None,
            400,
            "invalid_status",
        ),
        (
            "GET",
            path.as_str(),
            &[("limit", "0")][..],
            None,
            400,
            "invalid_limit",
        ),
        (
            "GET",
            path.as_str(),
            &[("limit", "1000")][..],
            None,
            400,
            "invalid_limit",
        ),
        (
            "GET",
            path.as_str(),
            &[("cursor", "made-up")][..],
            None,
            400,
            "invalid_cursor",
        ),
        (
            "POST",
            path.as_str(),
            &[][..],
            Some("{not json"),
            400,
            "invalid_json",
        ),
        (
            "POST",
            path.as_str(),
            &[][..],
            Some(r#"{"m365Ids":[],"x":1}"#),
            400,
            "invalid_json",
        ),
    ] {
        let (got, answer) = call(&w, method, path, query, body).await;
        assert_eq!(got, status, "{method} {path} {query:?}: {answer}");
        assert_eq!(
            answer["error"]["code"], code,
            "{method} {path} {query:?}: {answer}"
        );
    }
    assert_eq!(w.directory.calls(), 0, "refused before any M365 call");
}

#[tokio::test]
async fn a_page_lists_the_tenants_users_and_an_import_binds_them_without_writing_to_m365() {
    // R-IMP-1, R-IMP-2
    let w = World::new().await;
    let adele = m365(&w, "adele").await;
    m365(&w, "bob").await;
    m365(&w, "carol").await;
    let path = format!("/tenants/{}/import", w.tenant.id);

    let (status, first) = call(&w, "GET", &path, &[("limit", "2")], None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["users"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (status, second) = call(
        &w,
        "GET",
        &path,
        &[("limit", "2"), ("cursor", &cursor)],
        None,
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["users"].as_array().unwrap().len(), 1);
    assert!(second["nextCursor"].is_null(), "{second}");

    let creates = w.directory.create_calls();
    let body = format!(r#"{{"m365Ids":["{adele}"]}}"#);
    let (status, imported) = call(&w, "POST", &path, &[], Some(&body)).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(
        (imported["imported"].as_u64(), imported["failed"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(imported["results"][0]["result"], "imported", "{imported}");
    assert_eq!(
        w.directory.create_calls(),
        creates,
        "nothing written to M365"
    );
    let user = imported["results"][0]["userId"].as_str().unwrap();
    let binding = w.binding(user).await;
    assert_eq!(binding.state, BindingState::Provisioned);
    assert_eq!(
        binding.m365_object_id.map(|id| id.to_string()),
        Some(adele.clone())
    );

    let (_, listed) = call(&w, "GET", &path, &[("status", "imported")], None).await;
    let rows = listed["users"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(rows[0]["m365Id"], adele);
}
