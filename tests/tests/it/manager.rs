//! `managerId` end to end (R-ATTR-1): directory users saved and bound through the real
//! `directory` and `bind` handlers on moto + the m365-emulator, the manager read back from M365
//! with Graph (`GET /users/{id}/manager`), drift made with Graph behind our back and repaired by
//! the `reconcile` function.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::model::{EventKind, PageRequest};
use m365_engine::ports::{EventFilter, EventQuery, EventStore};
use m365_integration_tests::ReconcileScene;
use reconcile::Settings;
use serde_json::{Value, json};

struct Stack(ReconcileScene);

impl std::ops::Deref for Stack {
    type Target = ReconcileScene;
    fn deref(&self) -> &ReconcileScene {
        &self.0
    }
}

impl Stack {
    async fn start() -> Option<Self> {
        Some(Self(ReconcileScene::start("mgr").await?))
    }

    /// `PUT /users/{id}` with `managerId` `manager` (absent when `None`).
    async fn save(&self, id: &str, manager: Option<&str>) {
        let mut body = json!({
            "email": format!("{id}@contoso.com"),
            "displayName": format!("User {id}"),
        });
        if let Some(manager) = manager {
            body["managerId"] = json!(manager);
        }
        let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
        assert!(status == 200 || status == 201, "{status} {answer}");
        assert_eq!(
            answer["user"]["managerId"].as_str(),
            manager,
            "the API shows managerId: {answer}"
        );
    }

    async fn bind(&self, id: &str) {
        let (status, answer) = self
            .call(
                "PUT",
                &format!("/users/{id}/binding"),
                Some(json!({ "welcome": false })),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    async fn m365_id(&self, id: &str) -> String {
        let (status, body) = self
            .call("GET", &format!("/users/{id}/binding"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["m365ObjectId"].as_str().unwrap().to_owned()
    }

    /// The object id of `id`'s manager as Graph answers it, `None` on Graph's 404.
    async fn m365_manager(&self, id: &str) -> Option<String> {
        let (status, body) = self
            .graph(
                reqwest::Method::GET,
                &format!("/users/{id}@contoso.com/manager"),
                None,
            )
            .await;
        match status {
            200 => Some(body["id"].as_str().unwrap().to_owned()),
            404 => {
                assert_eq!(body["error"]["code"], "Request_ResourceNotFound", "{body}");
                None
            }
            other => panic!("{other} {body}"),
        }
    }

    async fn manager_events(&self, reason: &str) -> Vec<Value> {
        self.world
            .app
            .events
            .query(&EventQuery {
                filter: EventFilter::Kind(EventKind::UserUpdateProvision),
                since: None,
                page: PageRequest::first(100),
            })
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.details.unwrap_or(Value::Null))
            .collect()
    }
}

#[tokio::test]
async fn a_manager_is_set_when_both_are_bound_then_changed_and_cleared_in_m365() {
    // R-ATTR-1
    let Some(s) = Stack::start().await else {
        return;
    };
    // The report is bound before its manager: nothing to link yet.
    s.save("boss", None).await;
    s.save("chief", None).await;
    s.save("adele", Some("boss")).await;
    s.bind("adele").await;
    assert_eq!(s.m365_manager("adele").await, None);

    // The manager bound later is linked then.
    s.bind("boss").await;
    let boss = s.m365_id("boss").await;
    assert_eq!(s.m365_manager("adele").await, Some(boss.clone()));
    let events = s.manager_events("manager_updated").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["manager"]["userId"], "boss");
    assert_eq!(events[0]["manager"]["m365ObjectId"], boss.as_str());

    // Changed on a bound user (the R-BIND-7 path).
    s.bind("chief").await;
    s.save("adele", Some("chief")).await;
    assert_eq!(
        s.m365_manager("adele").await,
        Some(s.m365_id("chief").await)
    );

    // Cleared in the directory: removed in M365.
    s.save("adele", None).await;
    assert_eq!(s.m365_manager("adele").await, None);
    let events = s.manager_events("manager_updated").await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().any(|d| d["manager"].is_null()), "{events:?}");
}

#[tokio::test]
async fn a_user_bound_after_its_manager_gets_it_and_a_self_reference_is_refused() {
    // R-ATTR-1, R-SAFE-1
    let Some(s) = Stack::start().await else {
        return;
    };
    s.save("boss", None).await;
    s.bind("boss").await;
    s.save("adele", Some("boss")).await;
    s.bind("adele").await;
    assert_eq!(s.m365_manager("adele").await, Some(s.m365_id("boss").await));

    let (status, body) = s
        .call(
            "PUT",
            "/users/adele",
            Some(json!({
                "email": "adele@contoso.com",
                "displayName": "User adele",
                "managerId": "adele",
            })),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field", "{body}");
    assert_eq!(s.m365_manager("adele").await, Some(s.m365_id("boss").await));
}

#[tokio::test]
async fn manager_drift_made_in_m365_is_repaired_by_reconcile() {
    // R-ATTR-1, R-REC-1
    let Some(s) = Stack::start().await else {
        return;
    };
    for id in ["boss", "chief"] {
        s.save(id, None).await;
        s.bind(id).await;
    }
    s.save("adele", Some("boss")).await;
    s.bind("adele").await;
    let boss = s.m365_id("boss").await;
    let chief = s.m365_id("chief").await;
    let deps = s.reconciler(Settings::default());
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["fullSync"], true, "{first}");
    assert_eq!(first["plan"], json!([]), "{first}");

    // An admin assigns another manager with Graph, behind our back.
    let (status, body) = s
        .graph(
            reqwest::Method::PUT,
            "/users/adele@contoso.com/manager/$ref",
            Some(json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/users/{chief}")})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(s.m365_manager("adele").await, Some(chief));

    let dry = s.reconcile(&deps, true).await;
    assert_eq!(dry["plan"][0]["kind"], "set_manager", "{dry}");
    assert_eq!(dry["plan"][0]["manager"], boss.as_str(), "{dry}");
    let repaired = s.reconcile(&deps, false).await;
    assert_eq!(repaired["plan"][0]["kind"], "set_manager", "{repaired}");
    assert_eq!(s.m365_manager("adele").await, Some(boss.clone()));
    let events = s.manager_events("reconcile_manager").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["manager"]["m365ObjectId"], boss.as_str());

    let again = s.reconcile(&deps, false).await;
    assert_eq!(again["plan"], json!([]), "repaired once: {again}");
}
