//! Throttling (graph-spec §7.1, §7.2) and fault injection (§7.3, issue 3 realism switches).

mod graph_support;

use graph_support::*;
use reqwest::Method;
use serde_json::json;

// graph-spec §7.1, §7.2: with a tiny RU quota the next read is a 429 with the documented body and
// headers; x-ms-resource-unit is on every response; the bucket refills with time.
#[tokio::test]
async fn exceeding_the_resource_unit_quota_gives_429_with_retry_after() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (s, _) = emu
        .admin(Method::PUT, "/_emulator/quotas", Some(json!({"tenant": CONTOSO, "appId": SYNC_APP, "resourceUnits": 4, "resourceUnitWindowMs": 10_000, "writes": 100})))
        .await;
    assert_eq!(s, 200);
    let (status, headers, _) = emu.get(&t, "/v1.0/users").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ms-resource-unit"], "2", "GET users costs 2 RU");
    let (status, headers, _) = emu.get(&t, "/v1.0/users").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ms-throttle-limit-percentage"], "1.0");
    let (status, headers, body) = emu.get(&t, "/v1.0/users").await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(
        headers["x-ms-throttle-scope"],
        format!("Tenant_Application/Read/{SYNC_APP}/{CONTOSO}")
    );
    assert_eq!(
        headers["x-ms-throttle-information"],
        "ResourceUnitLimitExceeded"
    );
    assert_eq!(body["error"]["code"], "TooManyRequests");
    assert_eq!(body["error"]["message"], "Please retry again later.");
    assert_eq!(body["error"]["innerError"]["code"], "429");
    assert_eq!(body["error"]["innerError"]["status"], "429");
    assert_eq!(body["error"]["innerError"]["message"], "Please retry after");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    // $select lowers the cost to 1 (§7.2) — still throttled until the bucket refills.
    emu.admin(
        Method::POST,
        "/_emulator/clock/advance",
        Some(json!({"seconds": 5})),
    )
    .await;
    let (status, headers, _) = emu.get(&t, "/v1.0/users?$select=id").await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ms-resource-unit"], "1");
    let (_, counts) = emu
        .admin(
            Method::GET,
            &format!("/_emulator/tenants/{CONTOSO}/requests"),
            None,
        )
        .await;
    assert_eq!(counts["graph.throttled"], 1);
    // Another app in the same tenant has its own bucket.
    let other = emu.token(CONTOSO, READER_APP, &["User.Read.All"]);
    assert_eq!(emu.get(&other, "/v1.0/users").await.0, 200);
}

// graph-spec §7.1: Retry-After may be fractional (switch).
#[tokio::test]
async fn retry_after_can_be_fractional() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::PUT,
        "/_emulator/realism",
        Some(json!({"fractionalRetryAfter": true})),
    )
    .await;
    emu.admin(
        Method::PUT,
        "/_emulator/quotas",
        Some(json!({"resourceUnits": 1000, "writes": 1, "writeWindowMs": 2000})),
    )
    .await;
    assert_eq!(
        emu.patch(&t, &format!("/v1.0/users/{ALEX}"), json!({"jobTitle": "a"}))
            .await
            .0,
        204
    );
    let (status, headers, body) = emu
        .patch(&t, &format!("/v1.0/users/{ALEX}"), json!({"jobTitle": "b"}))
        .await;
    assert_eq!(status, 429);
    let ra: f64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert!(ra > 1.9 && ra <= 2.0, "{ra}");
    assert!(
        headers["retry-after"]
            .to_str()
            .expect("ascii")
            .contains('.')
    );
    assert_eq!(headers["x-ms-throttle-information"], "WriteLimitExceeded");
    assert_eq!(body["error"]["code"], "TooManyRequests");
}

// graph-spec §7.3: injected 503 (JSON + Retry-After), 504, empty-body 502; the fault is used up.
#[tokio::test]
async fn injected_faults_answer_the_next_matching_requests() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    let (s, fault) = emu
        .admin(
            Method::POST,
            "/_emulator/faults",
            Some(json!({"method": "GET", "path": "/v1.0/users", "kind": "503", "retryAfter": "3"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(fault["remaining"], 1);
    let (status, headers, body) = emu.get(&t, "/v1.0/users").await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "3");
    assert_error(
        &body,
        "serviceNotAvailable",
        "The service is temporarily unavailable. Please retry later.",
    );
    assert_eq!(emu.get(&t, "/v1.0/users").await.0, 200);

    emu.admin(
        Method::POST,
        "/_emulator/faults",
        Some(json!({"path": "/v1.0/users*", "kind": "502-empty", "count": 2})),
    )
    .await;
    let r = emu
        .http
        .get(emu.url(&format!("/v1.0/users/{ADELE}")))
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    assert!(r.headers().contains_key("request-id"));
    assert_eq!(r.bytes().await.expect("body").len(), 0);
    assert_eq!(emu.get(&t, "/v1.0/users").await.0, 502);
    assert_eq!(emu.get(&t, "/v1.0/users").await.0, 200);

    emu.admin(
        Method::POST,
        "/_emulator/faults",
        Some(json!({"path": "/v1.0/groups", "kind": "504", "emptyBody": true})),
    )
    .await;
    let r = emu
        .http
        .get(emu.url("/v1.0/groups"))
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 504);
    assert_eq!(r.bytes().await.expect("body").len(), 0);

    emu.admin(
        Method::POST,
        "/_emulator/faults",
        Some(json!({"path": "/v1.0/groups", "kind": "429", "retryAfter": "2.128"})),
    )
    .await;
    let (status, headers, body) = emu.get(&t, "/v1.0/groups").await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2.128");
    assert_eq!(body["error"]["code"], "TooManyRequests");
    let (_, list) = emu.admin(Method::GET, "/_emulator/faults", None).await;
    assert_eq!(list["faults"], json!([]));
}

// Issue 3 realism: "timeout after commit" — the write commits, the response comes too late for
// the client's timeout; a retry of the create then conflicts (the client must look it up).
#[tokio::test]
async fn a_timeout_after_commit_still_commits_the_write() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(Method::POST, "/_emulator/faults", Some(json!({"method": "POST", "path": "/v1.0/users", "kind": "timeout-after-commit", "delayMs": 2_000}))).await;
    let r = emu
        .http
        .post(emu.url("/v1.0/users"))
        .bearer_auth(&t)
        .json(&new_user("slow@contoso.com"))
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()));
    let (status, _, _) = emu.get(&t, "/v1.0/users/slow@contoso.com").await;
    assert_eq!(status, 200, "the write committed");
    let (status, _, body) = emu
        .post(&t, "/v1.0/users", new_user("slow@contoso.com"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"][0]["code"], "ObjectConflict");
}

// Issue 3 realism: "drop after commit" — the connection is dropped without a response, the write
// is committed anyway.
#[tokio::test]
async fn a_dropped_connection_after_commit_still_commits_the_write() {
    let emu = Emu::start().await;
    let t = emu.contoso();
    emu.admin(
        Method::POST,
        "/_emulator/faults",
        Some(json!({"method": "POST", "path": "/v1.0/users", "kind": "drop-after-commit"})),
    )
    .await;
    let r = emu
        .http
        .post(emu.url("/v1.0/users"))
        .bearer_auth(&t)
        .json(&new_user("dropped@contoso.com"))
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "the client sees a broken connection");
    assert_eq!(emu.get(&t, "/v1.0/users/dropped@contoso.com").await.0, 200);
}

// graph-spec §7.2: the tenant-wide write quota spans apps (scope name assumed).
#[tokio::test]
async fn the_tenant_write_quota_is_shared_by_all_apps() {
    let emu = Emu::start().await;
    let (s, _) = emu.admin(Method::PUT, "/_emulator/quotas", Some(json!({"scope": "tenant", "resourceUnits": 1e9, "writes": 1, "writeWindowMs": 300_000}))).await;
    assert_eq!(s, 200);
    assert_eq!(
        emu.patch(
            &emu.contoso(),
            &format!("/v1.0/users/{ALEX}"),
            json!({"jobTitle": "a"})
        )
        .await
        .0,
        204
    );
    let other = emu.token(CONTOSO, READER_APP, &["User.ReadWrite.All"]);
    let (status, headers, _) = emu
        .patch(
            &other,
            &format!("/v1.0/users/{ALEX}"),
            json!({"jobTitle": "b"}),
        )
        .await;
    assert_eq!(status, 429);
    assert_eq!(
        headers["x-ms-throttle-scope"],
        format!("Tenant/ReadWrite/{CONTOSO}")
    );
    assert_eq!(headers["retry-after"], "300");
    // Another tenant is not affected.
    let nw = emu.token(NORTHWIND, SYNC_APP, ALL_ROLES);
    assert_eq!(
        emu.patch(
            &nw,
            "/v1.0/users/megan@northwind.com",
            json!({"jobTitle": "c"})
        )
        .await
        .0,
        204
    );
}
