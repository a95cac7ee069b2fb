//! Group reconcile end to end (issue 6 follow-up, R-REC-1, R-GRP-1): a bound security group
//! deleted in M365 is recreated with its members by the `reconcile` function, and a user bound
//! after its group was bound joins the M365 group at the next reconcile; in both cases a second
//! run finds nothing and a dry run writes nothing. Users are bound through the real `directory`,
//! `password-push` and `bind` handlers, groups through the `directory` function, on moto + the
//! m365-emulator; the group is deleted behind our back with Graph itself (an admin's app token).
//! Every test names the requirement it proves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use m365_integration_tests::{OffsetClock, ReconcileScene};
use reconcile::{Reconciler, Settings};
use serde_json::{Value, json};

const PASSWORD: &str = "Correct-Horse-7";

/// A connected Contoso with retry, notification and reconcile-pass queues, and the functions' wiring on them.
struct Stack(ReconcileScene);

impl std::ops::Deref for Stack {
    type Target = ReconcileScene;
    fn deref(&self) -> &ReconcileScene {
        &self.0
    }
}

impl Stack {
    async fn start() -> Option<Self> {
        Some(Self(ReconcileScene::start("gr").await?))
    }

    fn reconciler(&self) -> Reconciler<OffsetClock> {
        self.0.reconciler(Settings::default())
    }

    /// A directory user `id` at contoso.com with a password, not bound.
    async fn user(&self, id: &str) {
        let body = json!({
            "email": format!("{id}@contoso.com"),
            "displayName": format!("User {id}"),
        });
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

    /// Binds `id` with the bind use case alone, as if the bind function stopped right after it
    /// (a crash before the user's groups were followed up).
    async fn bind_without_group_follow_up(&self, id: &str) {
        let p = &self.provisioning;
        let bind = m365_engine::usecase::bind::Bind {
            groups: None,
            ..m365_engine::usecase::bind::Bind::new(p)
        };
        let outcome = bind
            .bind(
                &m365_engine::model::UserId::parse(id).unwrap(),
                m365_engine::usecase::bind::BindRequest {
                    welcome: false,
                    ..m365_engine::usecase::bind::BindRequest::default()
                },
            )
            .await
            .unwrap();
        assert!(
            matches!(outcome, m365_engine::usecase::Outcome::Done { .. }),
            "{outcome:?}"
        );
    }

    /// Directory group `sales` of `members`, bound to Contoso; its M365 group id.
    async fn bound_group(&self, members: &[&str]) -> String {
        let (status, body) = self
            .call(
                "PUT",
                "/groups/sales",
                Some(json!({"name": "Sales", "members": members})),
            )
            .await;
        assert!(status == 200 || status == 201, "{status} {body}");
        let (status, body) = self
            .call(
                "PUT",
                "/groups/sales/binding",
                Some(json!({"tenantId": self.tenant})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        self.m365_group().await
    }

    /// The M365 group id on the `sales` binding.
    async fn m365_group(&self) -> String {
        let (status, binding) = self.call("GET", "/groups/sales/binding", None).await;
        assert_eq!(status, 200, "{binding}");
        binding["m365GroupId"].as_str().unwrap().to_owned()
    }

    /// The ids of the live M365 groups with our `sales` nickname.
    async fn sales_groups(&self) -> Vec<String> {
        let (status, body) = self
            .graph(
                reqwest::Method::GET,
                "/groups?$filter=mailNickname%20eq%20'm365sync-sales'&$select=id",
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn m365_ids(&self, users: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        for user in users {
            let (status, body) = self
                .call("GET", &format!("/users/{user}/binding"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            ids.push(body["m365ObjectId"].as_str().unwrap().to_owned());
        }
        ids.sort();
        ids
    }
}

/// The group plan as `(groupId, reason, unexpected, missing)`.
fn group_plan(report: &Value) -> Vec<(String, String, u64, u64)> {
    report["groups"]["plan"]
        .as_array()
        .unwrap_or_else(|| panic!("no group plan: {report}"))
        .iter()
        .map(|r| {
            (
                r["groupId"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
                r["unexpected"].as_u64().unwrap(),
                r["missing"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_bound_group_deleted_in_m365_is_recreated_with_its_members_and_the_next_run_finds_nothing()
 {
    // R-REC-1 (deletions, group membership), R-GRP-1, R-REC-2 (the dry run writes nothing)
    let Some(s) = Stack::start().await else {
        return;
    };
    for user in ["r0", "r1", "r2"] {
        s.user(user).await;
        s.bind(user).await;
    }
    let old = s.bound_group(&["r0", "r1"]).await;
    let expected = s.m365_ids(&["r0", "r1"]).await;
    assert_eq!(s.group_members(&old).await, expected);
    let deps = s.reconciler();
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["groups"]["plan"], json!([]), "{first}");

    // An admin deletes the security group in M365 (for good, graph-spec §4.5).
    let (status, body) = s
        .graph(reqwest::Method::DELETE, &format!("/groups/{old}"), None)
        .await;
    assert_eq!(status, 204, "{body}");
    assert!(s.sales_groups().await.is_empty());

    let dry = s.reconcile(&deps, true).await;
    assert_eq!(
        group_plan(&dry),
        vec![("sales".into(), "deleted_in_m365".into(), 0, 0)],
        "{dry}"
    );
    assert_eq!(dry["groups"]["plan"][0]["deletedInM365"], true);
    assert_eq!(dry["groups"]["plan"][0]["m365GroupId"], old.as_str());
    assert_eq!(dry["groups"]["applied"], 0);
    assert!(
        s.sales_groups().await.is_empty(),
        "the dry run created nothing"
    );
    assert_eq!(s.m365_group().await, old);

    let repaired = s.reconcile(&deps, false).await;
    assert_eq!(
        group_plan(&repaired),
        vec![("sales".into(), "deleted_in_m365".into(), 0, 0)],
        "{repaired}"
    );
    assert_eq!(repaired["groups"]["applied"], 1, "{repaired}");
    assert_eq!(repaired["groups"]["failed"], 0);
    let new = s.m365_group().await;
    assert_ne!(new, old);
    assert_eq!(s.sales_groups().await, vec![new.clone()]);
    assert_eq!(s.group_members(&new).await, expected);
    let (_, binding) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(binding["state"], "provisioned", "{binding}");

    // Our own create and adds come back in the next round: not drift.
    let second = s.reconcile(&deps, false).await;
    assert_eq!(second["groups"]["plan"], json!([]), "{second}");
    assert_eq!(second["plan"], json!([]), "{second}");
    assert_eq!(s.sales_groups().await, vec![new]);
}

#[tokio::test]
async fn a_user_whose_bind_missed_its_group_joins_the_m365_group_at_the_next_reconcile() {
    // R-REC-1 (group membership), R-GRP-1 (membership mirrors the bound members), R-REC-2.
    // A bind normally puts the user in its bound groups at once (tests/groups.rs); this is the
    // safety net when that follow-up did not happen (a crash right after the bind).
    let Some(s) = Stack::start().await else {
        return;
    };
    for user in ["r0", "r9"] {
        s.user(user).await;
    }
    s.bind("r0").await;
    let group = s.bound_group(&["r0", "r9"]).await;
    let (_, binding) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(binding["skipped"][0]["userId"], "r9", "{binding}");
    assert_eq!(s.group_members(&group).await, s.m365_ids(&["r0"]).await);
    let deps = s.reconciler();
    let first = s.reconcile(&deps, false).await;
    assert_eq!(first["groups"]["plan"], json!([]), "{first}");
    // Absorb our own writes; r9 still unbound is nothing to do.
    let idle = s.reconcile(&deps, false).await;
    assert_eq!(idle["groups"]["plan"], json!([]), "{idle}");

    // r9 is bound after its group, and the bind's group follow-up is lost: no PUT /groups, no
    // re-bind of the group.
    s.bind_without_group_follow_up("r9").await;
    let dry = s.reconcile(&deps, true).await;
    assert_eq!(
        group_plan(&dry),
        vec![("sales".into(), "members_now_bound".into(), 0, 1)],
        "{dry}"
    );
    assert_eq!(s.group_members(&group).await, s.m365_ids(&["r0"]).await);
    let (_, unchanged) = s.call("GET", "/groups/sales/binding", None).await;
    assert_eq!(
        unchanged["skipped"][0]["userId"], "r9",
        "the dry run wrote nothing"
    );

    let repaired = s.reconcile(&deps, false).await;
    assert_eq!(
        group_plan(&repaired),
        vec![("sales".into(), "members_now_bound".into(), 0, 1)],
        "{repaired}"
    );
    assert_eq!(repaired["groups"]["applied"], 1);
    assert_eq!(
        s.group_members(&group).await,
        s.m365_ids(&["r0", "r9"]).await
    );

    // The add comes back in the next round (not drift); after it, an unchanged tenant with a
    // bound group costs only its delta pages in Graph (the binding checks read DynamoDB).
    let second = s.reconcile(&deps, false).await;
    assert_eq!(second["groups"]["plan"], json!([]), "{second}");
    s.reset_requests().await;
    let third = s.reconcile(&deps, false).await;
    assert_eq!(third["groups"]["plan"], json!([]), "{third}");
    assert_eq!(third["plan"], json!([]), "{third}");
    let pages = third["pages"].as_u64().unwrap() + third["groups"]["pages"].as_u64().unwrap();
    let counts = s.graph_requests().await;
    assert_eq!(counts["graph"], pages, "{counts}");
}
