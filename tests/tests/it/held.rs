//! Held safeguard plans end to end (R-REC-3, issue 15): users bound through the real `directory`,
//! `password-push`, `bind` and `unbind` handlers on moto + the m365-emulator, drift made behind
//! our back (the emulator's portal, or Graph itself), then the reconcile function invoked with
//! real API Gateway v2 events: a tripped round is held (`GET …/reconcile/held`), approved (applied
//! once: the accounts blocked once, the events recorded once, a second approve refused) or
//! rejected (discarded, and not proposed again by the next run). The plan lives in DynamoDB
//! (`DynamoHeldPlans` on the ledger table).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use m365_engine::model::{BindingState, EventKind};
use m365_integration_tests::{CONTOSO, ReconcileScene};
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
        Some(Self(ReconcileScene::start("held").await?))
    }

    /// [`Self::start`] with the admin alerts (R-OPS-1) going to a topic with a queue subscribed;
    /// the queue's URL.
    async fn start_alerting() -> Option<(Self, String)> {
        let mut scene = ReconcileScene::start("held").await?;
        let url = scene.world.subscribe_admin_alerts().await;
        Some((Self(scene), url))
    }

    /// Directory users `h0..h{n-1}` at contoso.com with a password, each bound.
    async fn bound_users(&self, n: usize) {
        for i in 0..n {
            let id = format!("h{i}");
            let body = json!({
                "email": format!("{id}@contoso.com"),
                "displayName": format!("User {id}"),
            });
            let (status, answer) = self.call("PUT", &format!("/users/{id}"), Some(body)).await;
            assert!(status == 200 || status == 201, "{status} {answer}");
            let password = json!({ "password": "Correct-Horse-7" });
            let path = format!("/users/{id}/password");
            let (status, answer) = self.call("POST", &path, Some(password)).await;
            assert_eq!(status, 204, "{answer}");
            let welcome = json!({ "welcome": false });
            let path = format!("/users/{id}/binding");
            let (status, answer) = self.call("PUT", &path, Some(welcome)).await;
            assert_eq!(status, 200, "{answer}");
        }
    }

    /// Whether `upn`'s account is enabled in M365 (the emulator's own record).
    async fn enabled_in_m365(&self, upn: &str) -> bool {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        t["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| {
                u["deletedAt"].is_null()
                    && u["properties"]["userPrincipalName"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case(upn))
            })
            .map(|u| u["properties"]["accountEnabled"] == Value::Bool(true))
            .expect("the account exists")
    }

    /// Enables `upn`'s account behind Graph's back (an admin in the portal).
    async fn enable_in_portal(&self, upn: &str) {
        let status = self
            .world
            .emulator
            .send(
                reqwest::Method::PATCH,
                &format!("/_emulator/tenants/{CONTOSO}/users/{upn}"),
                json!({ "accountEnabled": true }),
            )
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// Deletes `upn`'s account in M365 with Graph itself.
    async fn delete_in_m365(&self, upn: &str) {
        let (status, body) = self
            .graph(reqwest::Method::DELETE, &format!("/users/{upn}"), None)
            .await;
        assert_eq!(status, 204, "{body}");
    }

    /// The `user_deprovision` events reconcile recorded for blocking an account again.
    async fn reblocks(&self) -> usize {
        self.events_of(EventKind::UserDeprovision)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some("reconcile_blocked_again"))
            .count()
    }
}

#[tokio::test]
async fn a_held_plan_is_shown_then_approved_once_blocking_each_account_once() {
    // R-REC-3; R-OPS-1 (the trip reaches the admins' topic once); R-AUD-1 (the decision's actor)
    let Some((s, alerts)) = Stack::start_alerting().await else {
        return;
    };
    s.bound_users(10).await;
    let deps = s.reconciler(Settings::default());
    for id in ["h0", "h1", "h2"] {
        let (status, body) = s
            .call("DELETE", &format!("/users/{id}/binding"), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    s.reconcile(&deps, false).await;
    for upn in ["h0@contoso.com", "h1@contoso.com", "h2@contoso.com"] {
        s.enable_in_portal(upn).await;
    }
    let (status, none) = s.held(&deps, None).await;
    assert_eq!(status, 404, "{none}");
    assert_eq!(none["error"]["code"], "no_held_plan");

    // Three blocks in a tenant of ten: more than 10%, held.
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["safeguard"]["destructive"], 3, "{report}");
    assert_eq!(report["applied"], 0);
    let id = report["held"]["id"].as_str().unwrap().to_owned();
    assert!(s.enabled_in_m365("h0@contoso.com").await, "nothing applied");
    assert_eq!(
        s.events_of(EventKind::ReconcileSafeguardTripped)
            .await
            .len(),
        1
    );

    let (status, plan) = s.held(&deps, None).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["id"], id.as_str());
    assert_eq!(plan["threshold"], "10%");
    assert_eq!(plan["counts"]["destructive"], 3);
    assert_eq!(plan["counts"]["allowed"], 1);
    assert_eq!(plan["counts"]["bound"], 10);
    assert!(plan["heldAt"].is_string(), "{plan}");
    assert_eq!(plan["round"]["pass"], 1);
    let users = plan["users"].as_array().unwrap();
    assert_eq!(users.len(), 3, "{plan}");
    assert!(users.iter().all(|r| r["kind"] == "block"), "{plan}");

    // A later run neither applies nor trips again while the plan is held.
    let again = s.reconcile(&deps, false).await;
    assert_eq!(again["held"]["id"], id.as_str(), "{again}");
    assert!(s.enabled_in_m365("h1@contoso.com").await);
    assert_eq!(
        s.events_of(EventKind::ReconcileSafeguardTripped)
            .await
            .len(),
        1
    );
    // One alert for the incident, with the plan's size, however often the run comes back.
    let got = s.world.admin_alerts(&alerts).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["kind"], "safeguard_tripped");
    assert_eq!(got[0]["tenantId"], s.tenant.as_str());
    assert_eq!(got[0]["details"]["held"], 3, "{got:?}");
    let tripped = s.events_of(EventKind::ReconcileSafeguardTripped).await;
    assert_eq!(
        tripped[0].actor.as_ref().map(|a| a.as_str()),
        Some(m365_integration_tests::ADMIN_ARN),
        "the run's pass acts for the admin who asked for the run"
    );

    let (status, decision) = s.held(&deps, Some("approve")).await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["planId"], id.as_str());
    assert_eq!(decision["applied"], 3, "{decision}");
    assert_eq!(decision["skipped"], json!([]));
    for upn in ["h0@contoso.com", "h1@contoso.com", "h2@contoso.com"] {
        assert!(!s.enabled_in_m365(upn).await, "{upn} blocked");
    }
    assert_eq!(s.reblocks().await, 3, "one event per account");
    let approved = s.events_of(EventKind::ReconcilePlanApproved).await;
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].details.as_ref().unwrap()["applied"], 3);
    assert_eq!(
        approved[0].actor.as_ref().map(|a| a.as_str()),
        Some(m365_integration_tests::ADMIN_ARN),
        "the admin who approved"
    );

    // Once: a second approve finds no plan and applies nothing.
    let (status, second) = s.held(&deps, Some("approve")).await;
    assert_eq!(status, 404, "{second}");
    assert_eq!(second["error"]["code"], "no_held_plan");
    assert_eq!(s.reblocks().await, 3);
    assert_eq!(s.events_of(EventKind::ReconcilePlanApproved).await.len(), 1);
    let (status, _) = s.held(&deps, None).await;
    assert_eq!(status, 404);

    // The next run finds our own blocks: nothing to do.
    let next = s.reconcile(&deps, false).await;
    assert_eq!(next["plan"], json!([]), "{next}");
    assert_eq!(next["held"], Value::Null);
    assert_eq!(s.reblocks().await, 3);
    assert_eq!(
        s.events_of(EventKind::ReconcileSafeguardTripped)
            .await
            .len(),
        1
    );
    assert_eq!(
        s.world.admin_alerts(&alerts).await,
        Vec::<Value>::new(),
        "nothing more was alerted"
    );
}

#[tokio::test]
async fn a_rejected_plan_is_discarded_and_not_proposed_again_by_the_next_run() {
    // R-REC-3
    let Some(s) = Stack::start().await else {
        return;
    };
    s.bound_users(10).await;
    let deps = s.reconciler(Settings::default());
    s.reconcile(&deps, false).await;
    s.delete_in_m365("h3@contoso.com").await;
    s.delete_in_m365("h4@contoso.com").await;
    let report = s.reconcile(&deps, false).await;
    assert_eq!(report["safeguard"]["destructive"], 2, "{report}");
    let id = report["held"]["id"].as_str().unwrap().to_owned();

    let (status, decision) = s.held(&deps, Some("reject")).await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["planId"], id.as_str());
    assert_eq!(decision["decision"], "rejected");
    assert_eq!(decision["applied"], 0);
    let rejected = s.events_of(EventKind::ReconcilePlanRejected).await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(s.binding_state("h3").await, BindingState::Provisioned);

    // Not proposed again: the cursor moved past the held round.
    let next = s.reconcile(&deps, false).await;
    assert_eq!(next["plan"], json!([]), "{next}");
    assert_eq!(next["safeguard"], Value::Null);
    assert_eq!(next["held"], Value::Null);
    assert_eq!(s.binding_state("h3").await, BindingState::Provisioned);
    assert_eq!(
        s.events_of(EventKind::ReconcileSafeguardTripped)
            .await
            .len(),
        1
    );
    let (status, gone) = s.held(&deps, Some("reject")).await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(gone["error"]["code"], "no_held_plan");
}
