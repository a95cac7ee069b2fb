//! Offboarding that always works (issue 12), end to end on moto and the m365-emulator: the
//! `directory`, `bind`, `unbind`, `password-push` and `retry-worker` handlers called with real API
//! Gateway v2 events, the retry worker driven from the real retry queue, and the M365 side checked
//! in the emulator — `accountEnabled`, `signInSessionsValidFromDateTime`, the user's refresh
//! tokens and the user's own sign-in on the emulator's sign-in page. Every test names the
//! requirement it proves.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::time::Duration;

use chrono::TimeDelta;
use m365_integration_tests::started;
use m365_integration_tests::{
    APP_ID, APP_SECRET, CONTOSO, Functions, OffsetClock, ProvisioningResources, REDIRECT, World,
    queue_depth,
};
use m365_lambda::provision::Deployed;
use serde_json::{Value, json};

/// A connected Contoso with the retry queue, and each function's wiring (as separate Lambdas).
struct Stack {
    world: World,
    fns: Functions,
    clock: OffsetClock,
    sqs: aws_sdk_sqs::Client,
    retry_url: String,
}

/// How the emulator's sign-in page answered a user's own sign-in.
#[derive(Debug, PartialEq, Eq)]
enum SignIn {
    /// Signed in (redirected with a code).
    Code(String),
    /// Refused with this AADSTS number (50126 wrong password, 50057 disabled).
    Refused(String),
}

impl Stack {
    async fn start() -> Option<Self> {
        Self::start_with(|_| {}).await
    }

    /// A stack whose functions' wiring `adjust` changes (e.g. the password policy).
    async fn start_with(adjust: impl Fn(&mut Deployed<OffsetClock>)) -> Option<Self> {
        let mut world = World::start().await?;
        let sqs = aws_sdk_sqs::Client::new(&world.sdk);
        let ProvisioningResources { retry_url, .. } =
            world.add_provisioning_resources("offboard").await;
        world.connect_contoso("Contoso").await;
        let clock = OffsetClock::default();
        let fns = Functions::new(|| {
            let graph = world.graph_app();
            let mut deps = Deployed::with_clock(&world.app, &graph, clock.clone());
            Functions::short_retry_waits(&mut deps);
            deps.retry.max_attempts = 12;
            adjust(&mut deps);
            deps
        });
        Some(Self {
            world,
            fns,
            clock,
            sqs,
            retry_url,
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
        self.fns.call(method, path, query, body).await
    }

    async fn put_user(&self, id: &str, extra: Value) -> (u16, Value) {
        let mut body =
            json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.call("PUT", &format!("/users/{id}"), Some(body)).await
    }

    async fn set_password(&self, id: &str, password: &str) {
        let (status, body) = self
            .call(
                "POST",
                &format!("/users/{id}/password"),
                Some(json!({"password": password})),
            )
            .await;
        assert_eq!(status, 204, "{body}");
    }

    async fn binding(&self, id: &str) -> Value {
        let (status, body) = self
            .call("GET", &format!("/users/{id}/binding"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The active M365 account with this UPN, as the emulator holds it (Graph properties).
    async fn m365(&self, upn: &str) -> Value {
        let t = self
            .world
            .emulator
            .get(&format!("/_emulator/tenants/{CONTOSO}"))
            .await;
        let found: Vec<Value> = t["users"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| {
                u["deletedAt"].is_null()
                    && u["properties"]["userPrincipalName"]
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case(upn))
            })
            .map(|u| u["properties"].clone())
            .collect();
        assert_eq!(found.len(), 1, "exactly one account for {upn}");
        found[0].clone()
    }

    /// The user's events (newest first) as `(type, reason)`.
    async fn events(&self, user: &str) -> Vec<(String, String)> {
        let (status, body) = self
            .call_query("GET", "/events", &[("userId", user)], None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    async fn count(&self, user: &str, kind: &str) -> usize {
        self.events(user)
            .await
            .iter()
            .filter(|(k, _)| k == kind)
            .count()
    }

    /// The user signs in on the emulator's page (their own credentials, `openid offline_access`).
    async fn sign_in(&self, upn: &str, password: &str) -> SignIn {
        let emulator = &self.world.emulator;
        let form = [
            ("client_id", APP_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid offline_access"),
            ("state", "offboarding"),
            ("code_challenge", VERIFIER),
            ("code_challenge_method", "plain"),
            ("login", upn),
            ("passwd", password),
            ("action", "accept"),
        ];
        let r = emulator
            .http
            .post(format!("{}/{CONTOSO}/oauth2/v2.0/authorize", emulator.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        if r.status() == reqwest::StatusCode::FOUND {
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let code = reqwest::Url::parse(&location)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("no code in {location}"));
            return SignIn::Code(code);
        }
        let error = r
            .headers()
            .get("x-ms-ests-error")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        SignIn::Refused(error)
    }

    /// The token endpoint: redeems a code (→ a refresh token) or refreshes; status and body.
    async fn token(&self, grant: &[(&str, &str)]) -> (u16, Value) {
        let emulator = &self.world.emulator;
        let mut form = vec![("client_id", APP_ID), ("client_secret", APP_SECRET)];
        form.extend_from_slice(grant);
        let r = emulator
            .http
            .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", emulator.base))
            .form(&form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Signs the user in and returns a refresh token of their session.
    async fn session(&self, upn: &str, password: &str) -> String {
        let SignIn::Code(code) = self.sign_in(upn, password).await else {
            panic!("{upn} could not sign in")
        };
        let (status, tokens) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(status, 200, "{tokens}");
        tokens["refresh_token"].as_str().unwrap().to_owned()
    }

    async fn advance_emulator(&self, seconds: u64) {
        self.world.emulator.advance_clock(seconds).await;
    }

    async fn fault(&self, fault: Value) {
        let status = self
            .world
            .emulator
            .send(reqwest::Method::POST, "/_emulator/faults", fault)
            .await;
        assert!(status.is_success(), "{status}");
    }

    /// Waits until every injected fault was hit (the request carrying it is now in flight).
    async fn faults_hit(&self) {
        for _ in 0..200 {
            let left = self.world.emulator.get("/_emulator/faults").await;
            let remaining: u64 = left["faults"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["remaining"].as_u64().unwrap_or(0))
                .sum();
            if remaining == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the injected fault was never hit");
    }

    async fn queue_depth(&self) -> usize {
        queue_depth(&self.sqs, &self.retry_url).await
    }

    /// Runs the retry worker on real SQS batches until the retry queue is empty.
    async fn drain(&self, deadline: Duration) -> Vec<String> {
        self.fns.drain(&self.sqs, &self.retry_url, deadline).await
    }

    /// `id` put in the directory with a password and bound: its account is provisioned.
    async fn bound(&self, id: &str, password: &str) -> Value {
        let (status, _) = self.put_user(id, json!({})).await;
        assert_eq!(status, 201);
        self.set_password(id, password).await;
        let (status, body) = self
            .call(
                "PUT",
                &format!("/users/{id}/binding"),
                Some(json!({"welcome": false})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["binding"]["state"], "provisioned", "{body}");
        body["binding"].clone()
    }
}

/// The PKCE verifier (method `plain`) of the users' own sign-ins.
const VERIFIER: &str = "offboarding-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_disabled_in_the_directory_is_blocked_and_signed_out_and_comes_back_when_active() {
    // R-BIND-9
    let s = started!(Stack::start());
    let upn = "sara@contoso.com";
    s.bound("sara", "Sara-Passw0rd-1").await;
    let refresh = s.session(upn, "Sara-Passw0rd-1").await;
    let before = s.m365(upn).await["signInSessionsValidFromDateTime"].clone();
    s.advance_emulator(5).await;

    let (status, body) = s.put_user("sara", json!({"state": "disabled"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["state"], "disabled");
    assert_eq!(body["sync"], "done", "{body}");
    assert_eq!(body["binding"]["state"], "suspended", "{body}");
    assert_eq!(body["binding"]["suspendedReason"], "directory_disabled");
    let account = s.m365(upn).await;
    assert_eq!(account["accountEnabled"], false, "sign-in blocked");
    assert!(account["signInSessionsValidFromDateTime"].is_string());
    assert_ne!(
        account["signInSessionsValidFromDateTime"], before,
        "signInSessionsValidFromDateTime moved"
    );
    // Her open session is over: the refresh token is revoked, and she cannot sign in again.
    let (status, refused) = s
        .token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(refused["error_codes"], json!([50173]), "{refused}");
    assert_eq!(
        s.sign_in(upn, "Sara-Passw0rd-1").await,
        SignIn::Refused("50057".into())
    );
    assert_eq!(
        s.events("sara").await[0],
        (
            "user_deprovision".to_owned(),
            "directory_disabled".to_owned()
        )
    );
    let shown = s.binding("sara").await;
    assert_eq!(shown["state"], "suspended");
    assert_eq!(shown["suspendedReason"], "directory_disabled");

    // The same request again changes nothing.
    let (status, body) = s.put_user("sara", json!({"state": "disabled"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["sync"], "unchanged", "{body}");
    assert_eq!(s.count("sara", "user_deprovision").await, 1);

    // A disabled user is not bound: 409, nothing written.
    let (status, refused) = s.call("PUT", "/users/sara/binding", None).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "user_disabled");
    assert_eq!(s.binding("sara").await, shown);
    assert_eq!(s.m365(upn).await["accountEnabled"], false);

    // Back to active, with a new title: re-enabled with the directory's attributes.
    let (status, body) = s
        .put_user("sara", json!({"state": "active", "jobTitle": "Returning"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"], "done", "{body}");
    assert_eq!(body["binding"]["state"], "provisioned");
    assert!(body["binding"].get("suspendedReason").is_none(), "{body}");
    let account = s.m365(upn).await;
    assert_eq!(account["accountEnabled"], true);
    assert_eq!(account["jobTitle"], "Returning");
    assert_eq!(
        s.events("sara").await[0],
        ("user_update_provision".to_owned(), "reactivated".to_owned())
    );
    assert!(matches!(
        s.sign_in(upn, "Sara-Passw0rd-1").await,
        SignIn::Code(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_suspension_goes_through_the_retry_queue_and_then_signs_the_user_out() {
    // R-BIND-9, R-BIND-6 (through the retry queue like every write)
    let s = started!(Stack::start());
    let upn = "tom@contoso.com";
    let binding = s.bound("tom", "Tom-Passw0rd-12").await;
    let before = s.m365(upn).await["signInSessionsValidFromDateTime"].clone();
    s.advance_emulator(5).await;
    // More 429s than the client retries in-process: the revocation waits on the queue.
    s.fault(json!({
        "method": "POST",
        "path": format!("/v1.0/users/{}/revokeSignInSessions", binding["m365ObjectId"].as_str().unwrap()),
        "kind": "429", "count": 5, "retryAfter": "0.05"
    }))
    .await;
    let (status, body) = s.put_user("tom", json!({"state": "disabled"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sync"], "deferred", "{body}");
    assert_eq!(body["binding"]["pendingReason"], "throttled");
    assert_eq!(s.count("tom", "user_deprovision").await, 0, "not yet");
    s.clock.advance(TimeDelta::seconds(5));
    let bodies = s.drain(Duration::from_secs(30)).await;
    assert!(
        bodies.iter().any(|b| b.contains("user_state")),
        "{bodies:?}"
    );
    let shown = s.binding("tom").await;
    assert_eq!(shown["state"], "suspended", "{shown}");
    assert_eq!(shown["suspendedReason"], "directory_disabled");
    let account = s.m365(upn).await;
    assert_eq!(account["accountEnabled"], false);
    assert_ne!(account["signInSessionsValidFromDateTime"], before);
    assert_eq!(
        s.events("tom").await[0],
        (
            "user_deprovision".to_owned(),
            "directory_disabled".to_owned()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_active_with_an_expired_password_stays_suspended_until_a_new_password() {
    // R-BIND-9, R-PWD-4 (the directory functions read the policy's maximum age)
    let s = started!(Stack::start_with(|deps: &mut Deployed<OffsetClock>| {
        deps.password_policy = m365_engine::policy::password::DirectoryPasswordPolicy::new(
            8,
            [],
            Some(TimeDelta::days(30)),
        )
        .unwrap();
    }));
    let upn = "una@contoso.com";
    s.bound("una", "Una-Passw0rd-77").await;
    let (_, body) = s.put_user("una", json!({"state": "disabled"})).await;
    assert_eq!(
        body["binding"]["suspendedReason"], "directory_disabled",
        "{body}"
    );
    s.clock.advance(TimeDelta::days(31));
    let (status, body) = s.put_user("una", json!({"state": "active"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "suspended", "{body}");
    assert_eq!(body["binding"]["suspendedReason"], "password_expired");
    assert_eq!(s.m365(upn).await["accountEnabled"], false);
    assert_eq!(s.count("una", "user_update_provision").await, 0);
    // A new password lifts the expiry suspension.
    s.set_password("una", "Una-Passw0rd-88").await;
    let shown = s.binding("una").await;
    assert_eq!(shown["state"], "provisioned", "{shown}");
    assert_eq!(s.m365(upn).await["accountEnabled"], true);
}

/// The end state both race orders must reach (R-BIND-12): the account blocked and signed out,
/// the binding `blocked` with that account, and exactly `deprovisions` `user_deprovision` events —
/// no enabled account behind a binding that says otherwise.
async fn assert_unbind_won(s: &Stack, user: &str, deprovisions: usize) {
    let upn = format!("{user}@contoso.com");
    let account = s.m365(&upn).await;
    assert_eq!(account["accountEnabled"], false, "the account is blocked");
    let shown = s.binding(user).await;
    assert_eq!(shown["state"], "blocked", "{shown}");
    assert_eq!(shown["m365ObjectId"], account["id"], "{shown}");
    assert_eq!(s.count(user, "user_deprovision").await, deprovisions);
    assert_eq!(s.depth_now().await, 0, "nothing left queued");
}

impl Stack {
    async fn depth_now(&self) -> usize {
        self.drain(Duration::from_secs(10)).await;
        self.queue_depth().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbind_while_the_binds_create_is_answering_wins_and_the_new_account_is_blocked() {
    // R-BIND-12 (the bind's Graph write first): the create commits in M365, its answer is slow;
    // the unbind, sent meanwhile, finds the account, blocks it and settles; the bind's final
    // write then loses, and the bind records nothing.
    let s = started!(Stack::start());
    let (status, _) = s.put_user("vic", json!({})).await;
    assert_eq!(status, 201);
    s.fault(json!({"method": "POST", "path": "/v1.0/users", "kind": "timeout-after-commit", "delayMs": 3000}))
        .await;
    let bind = s.call("PUT", "/users/vic/binding", Some(json!({"welcome": false})));
    let unbind = async {
        s.faults_hit().await;
        s.call("DELETE", "/users/vic/binding", None).await
    };
    let ((bind_status, bound), (unbind_status, unbound)) = tokio::join!(bind, unbind);
    assert_eq!(unbind_status, 200, "{unbound}");
    assert_eq!(unbound["binding"]["state"], "blocked", "{unbound}");
    assert_eq!(bind_status, 200, "{bound}");
    assert_eq!(bound["outcome"], "superseded", "{bound}");
    assert_unbind_won(&s, "vic", 1).await;
    assert_eq!(
        s.count("vic", "user_create_provision").await,
        0,
        "nothing recorded for the bind that lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebind_whose_enable_lands_after_the_unbind_blocks_the_account_again() {
    // R-BIND-12 (the unbind's Graph write first): the re-bind's first write is slow to answer;
    // the unbind, sent meanwhile, records its intent, blocks and settles; only then does the
    // re-bind's enable reach M365 — its final write loses and it blocks the account again.
    let s = started!(Stack::start());
    let binding = s.bound("wes", "Wes-Passw0rd-31").await;
    let (status, _) = s.call("DELETE", "/users/wes/binding", None).await;
    assert_eq!(status, 200);
    let id = binding["m365ObjectId"].as_str().unwrap().to_owned();
    s.fault(json!({"method": "PATCH", "path": format!("/v1.0/users/{id}"), "kind": "timeout-after-commit", "delayMs": 3000}))
        .await;
    let rebind = s.call("PUT", "/users/wes/binding", Some(json!({"welcome": false})));
    let unbind = async {
        s.faults_hit().await;
        let answer = s.call("DELETE", "/users/wes/binding", None).await;
        // The unbind is done while the re-bind still waits for its first answer.
        assert_eq!(s.m365("wes@contoso.com").await["accountEnabled"], false);
        answer
    };
    let ((bind_status, bound), (unbind_status, unbound)) = tokio::join!(rebind, unbind);
    assert_eq!(unbind_status, 200, "{unbound}");
    assert_eq!(unbound["binding"]["state"], "blocked", "{unbound}");
    assert_eq!(bind_status, 200, "{bound}");
    assert_eq!(bound["outcome"], "superseded", "{bound}");
    assert_unbind_won(&s, "wes", 2).await;
    assert_eq!(
        s.count("wes", "user_update_provision").await,
        0,
        "nothing recorded for the re-bind that lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebind_applies_the_password_set_while_the_user_was_unbound() {
    // R-BIND-12 (a password set while unbound is applied when the user is bound again)
    let s = started!(Stack::start());
    let upn = "xia@contoso.com";
    s.bound("xia", "First-Passw0rd-1").await;
    s.set_password("xia", "Second-Passw0rd-2").await;
    let (status, _) = s.call("DELETE", "/users/xia/binding", None).await;
    assert_eq!(status, 200);
    s.set_password("xia", "Third-Passw0rd-3").await;
    // Unbound: M365 still holds the second password (blocked, so a right password gets 50057).
    assert_eq!(
        s.sign_in(upn, "Second-Passw0rd-2").await,
        SignIn::Refused("50057".into())
    );
    assert_eq!(
        s.sign_in(upn, "Third-Passw0rd-3").await,
        SignIn::Refused("50126".into())
    );
    let pushes = s.count("xia", "user_password_update_provision").await;
    assert_eq!(pushes, 1, "only the push made while bound");
    let (status, body) = s
        .call("PUT", "/users/xia/binding", Some(json!({"welcome": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["binding"]["state"], "provisioned");
    assert!(matches!(
        s.sign_in(upn, "Third-Passw0rd-3").await,
        SignIn::Code(_)
    ));
    assert_eq!(
        s.sign_in(upn, "Second-Passw0rd-2").await,
        SignIn::Refused("50126".into())
    );
    assert_eq!(
        s.count("xia", "user_password_update_provision").await,
        2,
        "the re-bind's push is recorded"
    );
    assert_eq!(s.m365(upn).await["accountEnabled"], true);
}
