//! Bad input on moto and the m365-emulator (R-SAFE-1), through the functions' handlers with real
//! API Gateway v2 events: every listing route (`GET /tenants`, `GET /events`,
//! `GET /tenants/{tenantId}/failures`, `GET /tenants/{tenantId}/import`) answers a forged,
//! altered, foreign or unsigned cursor with 400 `invalid_cursor` (never a 5xx, never a page), and
//! names holding control or bidirectional-override characters are 400 `invalid_name` with
//! nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use chrono::Utc;
use m365_engine::model::{
    Event, EventId, EventKind, Failure, OperationId, OperationKind, OperationSubject, PageToken,
    TenantId, UserId,
};
use m365_engine::policy::cursor::CursorKey;
use m365_engine::ports::{EventStore, FailureStore, TenantStore};
use m365_integration_tests::started;
use m365_integration_tests::{World, api_request};
use m365_lambda::provision::Deployed;
use secrecy::SecretString;
use serde_json::{Value, json};

struct Stack {
    world: World,
    directory: Deployed,
    import: Deployed,
    tenant: String,
}

impl Stack {
    async fn start() -> Option<Self> {
        let mut world = World::start().await?;
        world.add_provisioning_resources("bad-input").await;
        let tenant = world.connect_contoso("Contoso").await;
        let directory = Deployed::from_app(&world.app, &world.graph);
        let import = Deployed::from_app(&world.app, &world.graph);
        Some(Self {
            world,
            directory,
            import,
            tenant,
        })
    }

    /// Sends a request to the function serving `path`; status and JSON body.
    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let request = api_request(method, path, query, body);
        let response = match segments.as_slice() {
            ["tenants"] | ["tenants", _] | ["oauth", ..] => {
                return self.world.call(method, path, query, None).await;
            }
            ["tenants", _, "import"] => import_page::handle(&self.import, request).await,
            _ => directory::handle(&self.directory, request).await,
        }
        .unwrap();
        let status = response.status().as_u16();
        let body = match response.body() {
            lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap(),
            _ => Value::Null,
        };
        (status, body)
    }

    async fn tenant_count(&self) -> usize {
        self.world
            .app
            .tenants
            .list(&m365_engine::model::PageRequest::first(100))
            .await
            .unwrap()
            .items
            .len()
    }
}

/// A listing route, with the query of its first page.
struct Listing {
    path: String,
    query: Vec<(&'static str, String)>,
}

impl Listing {
    fn query_with<'a>(&'a self, cursor: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
        let mut q: Vec<(&str, &str)> = self.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Some(c) = cursor {
            q.push(("cursor", c));
        }
        q
    }
}

/// The first page's `nextCursor` of `listing`, checked to lead to a second page that works.
async fn genuine_cursor(s: &Stack, listing: &Listing) -> String {
    let (status, first) = s
        .call("GET", &listing.path, &listing.query_with(None), None)
        .await;
    assert_eq!(status, 200, "{} {first}", listing.path);
    let cursor = first["nextCursor"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: a second page exists: {first}", listing.path))
        .to_owned();
    let (status, second) = s
        .call(
            "GET",
            &listing.path,
            &listing.query_with(Some(&cursor)),
            None,
        )
        .await;
    assert_eq!(
        status, 200,
        "{}: the genuine cursor works: {second}",
        listing.path
    );
    assert_ne!(
        first, second,
        "{}: the second page is another page",
        listing.path
    );
    cursor
}

/// The same cursor with one character of its signed payload changed.
fn tampered(cursor: &str) -> String {
    let mut chars: Vec<char> = cursor.chars().collect();
    chars[2] = if chars[2] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_altered_or_foreign_cursor_is_a_400_invalid_cursor_on_every_listing_route() {
    // R-SAFE-1: every pagination cursor is opaque and signed.
    let s = started!(Stack::start());
    // Three tenants (Contoso connected, two pending), three events and three failures of Contoso.
    for name in ["Fabrikam", "Litware"] {
        let (status, body) = s
            .world
            .call("POST", "/tenants", &[], Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let tenant = TenantId::parse(&s.tenant).unwrap();
    for i in 0..3 {
        s.world
            .app
            .events
            .append(&Event {
                id: EventId::generate(),
                kind: EventKind::TenantConnected,
                at: Utc::now(),
                user_id: None,
                tenant_id: Some(tenant.clone()),
                operation_id: None,
                reason: Some(format!("test-{i}")),
                details: None,
                actor: Some(m365_engine::model::Actor::local()),
            })
            .await
            .unwrap();
        s.world
            .app
            .failures
            .record(&Failure {
                id: EventId::generate(),
                tenant_id: tenant.clone(),
                user_id: None,
                operation_id: OperationId::new(
                    OperationKind::UserBind,
                    &OperationSubject::User(UserId::parse(format!("u{i}")).unwrap()),
                    1,
                ),
                code: "test_failure".into(),
                message: "a failure recorded by the test".into(),
                graph_request_id: None,
                at: Utc::now(),
            })
            .await
            .unwrap();
    }

    let listings = [
        Listing {
            path: "/tenants".into(),
            query: vec![("limit", "1".into())],
        },
        Listing {
            path: "/events".into(),
            query: vec![("tenantId", s.tenant.clone()), ("limit", "1".into())],
        },
        Listing {
            path: format!("/tenants/{}/failures", s.tenant),
            query: vec![("limit", "1".into())],
        },
        Listing {
            path: format!("/tenants/{}/import", s.tenant),
            query: vec![("limit", "1".into())],
        },
    ];
    let mut genuine = Vec::new();
    for listing in &listings {
        genuine.push(genuine_cursor(&s, listing).await);
    }

    let key = s.world.app.cursor_key.key().await.unwrap();
    let other_key = CursorKey::new(SecretString::from("another-deployment-".repeat(3))).unwrap();
    // What the API handed out before cursors were signed: the store's own page token.
    let unsigned_store_token = key.open_page("tenants", &genuine[0]).unwrap();
    let events_of_another_tenant = key
        .sign_page(
            &format!("events/tenant/{}", TenantId::generate()),
            &key.open_page(&format!("events/tenant/{}", s.tenant), &genuine[1])
                .unwrap(),
        )
        .unwrap();
    for (i, listing) in listings.iter().enumerate() {
        let own = &genuine[i];
        let mut forged = vec![
            ("garbage".to_owned(), "garbage"),
            (
                "a.b".to_owned(),
                "two parts, not base64url of a signed state",
            ),
            (tampered(own), "its own cursor, altered"),
            (
                other_key
                    .sign_page("tenants", &PageToken::new(unsigned_store_token.as_str()))
                    .unwrap(),
                "signed under another key",
            ),
            (
                unsigned_store_token.as_str().to_owned(),
                "an unsigned store token (the old format)",
            ),
            (
                key.sign_page("tenants", &PageToken::new("eyJsIjoieCIsImsiOnt9fQ"))
                    .unwrap(),
                "a well-signed cursor of GET /tenants with a made-up store token",
            ),
            ("A".repeat(5000), "oversized"),
        ];
        // Every other listing's genuine cursor.
        for (j, theirs) in genuine.iter().enumerate() {
            if j != i {
                forged.push((theirs.clone(), "a cursor of another listing"));
            }
        }
        if listing.path == "/events" {
            forged.push((events_of_another_tenant.clone(), "another tenant's events"));
        }
        for (cursor, why) in forged {
            if listing.path == "/tenants" && why.starts_with("a well-signed cursor") {
                // Genuinely signed by this deployment for this listing: the store's token
                // inside is what the store decides about (its own listing check).
                let (status, body) = s
                    .call(
                        "GET",
                        &listing.path,
                        &listing.query_with(Some(&cursor)),
                        None,
                    )
                    .await;
                assert!(status < 500, "{}: {why}: {status} {body}", listing.path);
                continue;
            }
            let (status, body) = s
                .call(
                    "GET",
                    &listing.path,
                    &listing.query_with(Some(&cursor)),
                    None,
                )
                .await;
            assert_eq!(status, 400, "{}: {why}: {body}", listing.path);
            assert_eq!(
                body["error"]["code"], "invalid_cursor",
                "{}: {why}: {body}",
                listing.path
            );
        }
    }
    // The events cursor is bound to its filter: the same tenant's cursor under another filter.
    let (status, body) = s
        .call(
            "GET",
            "/events",
            &[
                ("type", "tenant_connected"),
                ("limit", "1"),
                ("cursor", &genuine[1]),
            ],
            None,
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_cursor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_or_bidi_override_characters_in_names_are_a_400_invalid_name_and_nothing_is_written()
 {
    // R-SAFE-1
    let s = started!(Stack::start());
    let tenants_before = s.tenant_count().await;
    for name in [
        "Fab\u{0}rikam",
        "Fabrikam\u{1b}[2J",
        "Fabrikam\r\nSet-Cookie: x",
        "Fab\trikam",
        "\u{202E}mikarbaF",
        "Fabrikam\u{2066}",
    ] {
        let (status, body) = s
            .world
            .call("POST", "/tenants", &[], Some(json!({ "name": name })))
            .await;
        assert_eq!(status, 400, "{name:?}: {body}");
        assert_eq!(body["error"]["code"], "invalid_name", "{name:?}");
    }
    assert_eq!(
        s.tenant_count().await,
        tenants_before,
        "no tenant was written"
    );

    // A new user: each free-text attribute, each kind of character.
    let base = json!({"email": "eve@contoso.com", "displayName": "Eve Example"});
    for (field, value) in [
        ("displayName", "Eve\u{0}Example"),
        ("givenName", "E\u{1b}]0;pwned\u{7}ve"),
        ("surname", "Example\nInjected: line"),
        ("jobTitle", "CEO\u{202E}fdp.exe"),
        ("department", "Sales\u{2067}"),
        ("department", "Sa\u{85}les"),
        ("jobTitle", "Line\u{2028}break"),
    ] {
        let mut body = base.clone();
        body[field] = json!(value);
        let (status, answer) = s.call("PUT", "/users/eve", &[], Some(body)).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_name", "{field}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(field),
            "the message names the field: {answer}"
        );
    }
    let (status, _) = s.call("GET", "/users/eve", &[], None).await;
    assert_eq!(status, 404, "the user was not written");
    // Nor its email claim: the same email is free for a valid user.
    let (status, answer) = s.call("PUT", "/users/eve", &[], Some(base.clone())).await;
    assert_eq!(status, 201, "{answer}");

    // An existing user keeps its stored attributes when an update is refused.
    let mut bad = base.clone();
    bad["surname"] = json!("Doe\r\nX");
    let (status, answer) = s.call("PUT", "/users/eve", &[], Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_name");
    let (status, stored) = s.call("GET", "/users/eve", &[], None).await;
    assert_eq!(status, 200);
    assert_eq!(stored["surname"], Value::Null, "{stored}");
    assert_eq!(stored["version"], 1, "not rewritten: {stored}");

    // Groups.
    for name in [
        "Sales\u{0}",
        "Sa\u{1b}[1mles",
        "Sales\nAdmins",
        "Sales\u{202D}",
    ] {
        let (status, answer) = s
            .call(
                "PUT",
                "/groups/sales",
                &[],
                Some(json!({"name": name, "members": ["eve"]})),
            )
            .await;
        assert_eq!(status, 400, "{name:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_name", "{name:?}");
    }
    let (status, _) = s.call("GET", "/groups/sales", &[], None).await;
    assert_eq!(status, 404, "the group was not written");
}
