//! `GraphDirectory` against the real m365-emulator: the engine's directory contract, paging past
//! 999, throttling with fractional `Retry-After`, empty-body 502s, eventual-consistency 404s,
//! creates whose outcome is unknown, retry bounds and the one token refresh on 401.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_engine::testing::contract::{assert_created_from, assert_not_found};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use m365_engine::Error;
use m365_engine::error::UnavailableReason;
use m365_engine::model::{DomainKind, DomainName, Email, M365ObjectId, PageRequest, TenantId};
use m365_engine::ports::Directory;
use m365_engine::testing::contract::directory::DirectoryTenant;
use m365_graph::{GraphDirectory, TokenProvider};
use secrecy::SecretString;
use serde_json::json;
use support::{CONTOSO, FEDERATED, MANAGED, adele as new_user, start, start_with};

/// The engine's directory contract, one test per contract function, each on its own emulator
/// (R-BIND-1, R-BIND-2, R-BIND-5, R-BIND-7, R-BIND-8, R-BIND-9, R-CONN-1, R-CONN-3, R-PWD-1,
/// R-PWD-2, R-IMP-1).
mod contract {
    use super::{DirectoryTenant, DomainName, FEDERATED, MANAGED, start};

    m365_engine::contract_tests!(directory, {
        let emu = start().await;
        let tenant = DirectoryTenant {
            tenant: emu.tenant(),
            managed: DomainName::parse(MANAGED).unwrap(),
            federated: Some(DomainName::parse(FEDERATED).unwrap()),
        };
        (emu.directory(), tenant, emu)
    });
}

#[tokio::test]
async fn verified_domains_are_managed_or_federated_and_unverified_ones_are_left_out() {
    // R-CONN-2, R-CONN-3
    let emu = start().await;
    let domains = emu
        .directory()
        .verified_domains(&emu.tenant())
        .await
        .unwrap();
    let kind = |name: &str| {
        domains
            .iter()
            .find(|d| d.name.as_str() == name)
            .map(|d| d.kind)
    };
    assert_eq!(kind(MANAGED), Some(DomainKind::Managed));
    assert_eq!(kind("contoso.onmicrosoft.com"), Some(DomainKind::Managed));
    assert_eq!(kind(FEDERATED), Some(DomainKind::Federated));
    assert_eq!(kind("pending.contoso.net"), None);
}

#[tokio::test]
async fn listing_pages_past_999_users_returns_each_user_once() {
    // R-IMP-1, graph-spec §2.3 ($top ≤ 999, follow the whole nextLink)
    let emu = start_with(1203).await;
    let dir = emu.directory();
    let tenant = emu.tenant();
    let first = dir
        .list_users(&tenant, &PageRequest::first(1000))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 999, "Graph's largest page");
    let mut ids: Vec<_> = first.items.iter().map(|u| u.id.clone()).collect();
    let mut next = first.next;
    let mut pages = 1;
    while let Some(cursor) = next {
        let page = dir
            .list_users(&tenant, &PageRequest::after(cursor, 1000))
            .await
            .unwrap();
        ids.extend(page.items.iter().map(|u| u.id.clone()));
        next = page.next;
        pages += 1;
    }
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no user twice");
    assert!(total >= 1203, "every seeded user listed: {total}");
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn a_foreign_page_cursor_is_refused_without_sending_the_token_anywhere() {
    // R-SAFE-1, R-SAFE-2
    let emu = start().await;
    let cursor = m365_engine::model::PageToken::new("https://evil.example/v1.0/users?$skiptoken=x");
    let result = emu
        .directory()
        .list_users(&emu.tenant(), &PageRequest::after(cursor, 10))
        .await;
    assert!(matches!(result, Err(Error::Invalid(_))), "{result:?}");
}

#[tokio::test]
async fn a_429_with_fractional_retry_after_is_waited_out_and_retried() {
    // R-BIND-6, graph-spec §7.1
    let emu = start().await;
    emu.fault(json!({"method": "GET", "path": "/v1.0/users", "kind": "429", "count": 2, "retryAfter": "0.35"})).await;
    let started = Instant::now();
    let found = emu
        .directory()
        .find_user_by_upn(&emu.tenant(), &Email::parse(support::ADMIN).unwrap())
        .await;
    assert!(found.unwrap().is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "waited 2 × 0.35 s: {:?}",
        started.elapsed()
    );
    assert!(
        emu.faults().await.is_empty(),
        "both throttled answers were consumed"
    );
}

#[tokio::test]
async fn a_throttled_create_is_not_retried_in_process_and_reports_the_fractional_wait() {
    // R-BIND-6, STYLE "no blind POST retries"
    let emu = start().await;
    emu.fault(json!({"method": "POST", "path": "/v1.0/users", "kind": "429", "count": 1, "retryAfter": "1.25"})).await;
    let user = new_user("throttled.create");
    let result = emu.directory().create_user(&emu.tenant(), &user).await;
    let error = result.unwrap_err();
    assert!(
        matches!(error, Error::Throttled { .. }) && error.is_retryable(),
        "{error:?}"
    );
    assert_eq!(error.retry_after(), Some(Duration::from_millis(1250)));
    assert_eq!(emu.accounts_with_upn(user.user_principal_name.as_str()), 0);
}

#[tokio::test]
async fn an_empty_body_502_on_an_idempotent_request_is_retried() {
    // R-BIND-6, graph-spec §7.3
    let emu = start().await;
    let dir = emu.directory();
    let created = dir
        .create_user(&emu.tenant(), &new_user("empty.body"))
        .await
        .unwrap();
    emu.fault(json!({"method": "PATCH", "path": format!("/v1.0/users/{}", created.id), "kind": "502-empty", "count": 2})).await;
    dir.set_account_enabled(&emu.tenant(), &created.id, false)
        .await
        .unwrap();
    assert_eq!(emu.user_enabled(created.id.as_str()), Some(false));
}

#[tokio::test]
async fn an_empty_body_502_on_create_is_resolved_by_lookup_and_never_posted_twice() {
    // R-BIND-2, R-BIND-6, graph-spec §7.3
    let emu = start().await;
    let dir = emu.directory();
    let user = new_user("proxy.failed");
    emu.fault(json!({"method": "POST", "path": "/v1.0/users", "kind": "502-empty", "count": 1}))
        .await;
    let error = dir.create_user(&emu.tenant(), &user).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unavailable {
                reason: UnavailableReason::Service,
                ..
            }
        ) && error.is_retryable(),
        "{error:?}"
    );
    assert_eq!(
        emu.accounts_with_upn(user.user_principal_name.as_str()),
        0,
        "the proxy's 502 created nothing"
    );
    // The retry (from the queue) creates it once.
    dir.create_user(&emu.tenant(), &user).await.unwrap();
    assert_eq!(emu.accounts_with_upn(user.user_principal_name.as_str()), 1);
}

#[tokio::test]
async fn a_create_that_times_out_after_commit_is_found_by_upn_and_no_second_account_appears() {
    // R-BIND-2 ("never a duplicate account, even when a create times out"), graph-spec §7.3
    let emu = start().await;
    let dir =
        emu.directory_from(emu.client_with(Duration::from_millis(400), support::fast_retry()));
    let user = new_user("slow.commit");
    emu.fault(json!({"method": "POST", "path": "/v1.0/users", "kind": "timeout-after-commit", "count": 1, "delayMs": 2000})).await;
    let created = dir
        .create_user(&emu.tenant(), &user)
        .await
        .expect("resolved by lookup");
    assert_created_from(&created, &user);
    assert_eq!(emu.accounts_with_upn(user.user_principal_name.as_str()), 1);
    // A redelivered create does not make a second account either: it is a UPN conflict.
    let again = dir.create_user(&emu.tenant(), &user).await;
    assert!(
        matches!(&again, Err(e) if e.is_conflict("upn_exists")),
        "{again:?}"
    );
    assert_eq!(emu.accounts_with_upn(user.user_principal_name.as_str()), 1);
}

#[tokio::test]
async fn a_timed_out_create_not_yet_visible_is_retryable_and_the_retry_adopts_instead_of_duplicating()
 {
    // R-BIND-2, R-BIND-6, graph-spec §7.4
    let emu = start().await;
    emu.realism(json!({"replicationLagMs": 60_000})).await;
    let dir =
        emu.directory_from(emu.client_with(Duration::from_millis(400), support::fast_retry()));
    let user = new_user("lagging.commit");
    emu.fault(json!({"method": "POST", "path": "/v1.0/users", "kind": "timeout-after-commit", "count": 1, "delayMs": 2000})).await;
    let error = dir.create_user(&emu.tenant(), &user).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unavailable {
                reason: UnavailableReason::Timeout,
                ..
            }
        ),
        "{error:?}"
    );
    let retry = dir.create_user(&emu.tenant(), &user).await.unwrap_err();
    assert!(
        retry.is_retryable(),
        "the address is taken but not visible yet: wait, {retry:?}"
    );
    assert_eq!(emu.accounts_with_upn(user.user_principal_name.as_str()), 1);
}

#[tokio::test]
async fn a_404_right_after_our_own_create_is_retried_until_the_user_replicates() {
    // R-BIND-6, graph-spec §7.4, §12 ("404 right after our own create")
    let emu = start().await;
    emu.realism(json!({"replicationLagMs": 700})).await;
    let dir = emu.directory();
    let created = dir
        .create_user(&emu.tenant(), &new_user("fresh.user"))
        .await
        .unwrap();
    support::retried_past_lag(dir.set_account_enabled(&emu.tenant(), &created.id, false)).await;
    assert_eq!(emu.user_enabled(created.id.as_str()), Some(false));
}

#[tokio::test]
async fn a_404_on_a_user_we_did_not_just_create_is_not_found_at_once() {
    // R-BIND-8
    let emu = start().await;
    let started = Instant::now();
    let result = emu
        .directory()
        .set_account_enabled(&emu.tenant(), &M365ObjectId::generate(), false)
        .await;
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_millis(1000));
}

#[tokio::test]
async fn retries_stop_after_the_attempt_limit() {
    // STYLE "bounded retries (count)"
    let emu = start().await;
    emu.fault(json!({"method": "GET", "path": "/v1.0/users", "kind": "503", "count": 20, "retryAfter": "0.01"})).await;
    let result = emu
        .directory()
        .find_user_by_upn(&emu.tenant(), &Email::parse(support::ADMIN).unwrap())
        .await;
    let error = result.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    let remaining = emu.faults().await[0]["remaining"].as_u64().unwrap();
    assert_eq!(20 - remaining, 5, "exactly max_attempts requests");
}

#[tokio::test]
async fn retries_stop_at_the_deadline() {
    // STYLE "bounded retries (Lambda deadline)"
    let emu = start().await;
    emu.fault(json!({"method": "GET", "path": "/v1.0/users", "kind": "429", "count": 20, "retryAfter": "2"})).await;
    let dir = emu
        .directory()
        .with_deadline(tokio::time::Instant::now() + Duration::from_millis(500));
    let started = Instant::now();
    let error = dir
        .find_user_by_upn(&emu.tenant(), &Email::parse(support::ADMIN).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Throttled { .. }), "{error:?}");
    assert_eq!(
        error.retry_after(),
        Some(Duration::from_secs(2)),
        "handed to the retry queue"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "did not sleep past the deadline"
    );
}

/// A provider whose first token Graph refuses; `refresh` returns a good token or, when
/// `refresh_works` is false, another refused one.
struct FlakyTokens {
    good: SecretString,
    refresh_works: bool,
    refreshes: AtomicU32,
}

impl TokenProvider for FlakyTokens {
    async fn access_token(&self, _: &TenantId) -> m365_engine::Result<SecretString> {
        Ok(SecretString::from(
            "eyJhbGciOiJub25lIn0.eyJleHAiOjF9.c2ln".to_owned(),
        ))
    }

    async fn refresh_access_token(
        &self,
        _: &TenantId,
        _: &SecretString,
    ) -> m365_engine::Result<SecretString> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if self.refresh_works {
            Ok(self.good.clone())
        } else {
            self.access_token(&TenantId::parse(CONTOSO).unwrap()).await
        }
    }
}

async fn good_token(emu: &support::Emu) -> SecretString {
    let client = emu.client();
    emu.identity(&client)
        .client_credentials(CONTOSO)
        .await
        .unwrap()
        .access_token
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_succeeds() {
    // R-CONN-4, graph-spec §12 row 4
    let emu = start().await;
    let tokens = FlakyTokens {
        good: good_token(&emu).await,
        refresh_works: true,
        refreshes: AtomicU32::new(0),
    };
    let dir = GraphDirectory::new(emu.client(), tokens);
    let found = dir
        .find_user_by_upn(&emu.tenant(), &Email::parse(support::ADMIN).unwrap())
        .await
        .unwrap();
    assert!(found.is_some());
    assert_eq!(dir.tokens().refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_second_401_after_the_refresh_is_a_permanent_unauthorized() {
    // R-CONN-4, graph-spec §12 row 4 ("refresh once, then fail")
    let emu = start().await;
    let tokens = FlakyTokens {
        good: good_token(&emu).await,
        refresh_works: false,
        refreshes: AtomicU32::new(0),
    };
    let dir = GraphDirectory::new(emu.client(), tokens);
    let error = dir
        .find_user_by_upn(&emu.tenant(), &Email::parse(support::ADMIN).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Unauthorized { .. }) && !error.is_retryable(),
        "{error:?}"
    );
    assert_eq!(dir.tokens().refreshes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn errors_and_debug_output_never_show_the_password_or_token() {
    // R-SAFE-2
    let emu = start().await;
    let dir = emu.directory();
    let mut user = new_user("weak.password");
    user.password = SecretString::from("secretsecret".to_owned());
    let error = dir.create_user(&emu.tenant(), &user).await.unwrap_err();
    let shown = format!("{error:?} {error}");
    assert!(!shown.contains("secretsecret"), "{shown}");
    assert!(!format!("{dir:?}").contains("eyJ"), "no token in Debug");
}

#[tokio::test]
async fn an_address_still_held_by_a_deleted_account_is_a_retryable_wait_not_a_conflict() {
    // R-BIND-6 ("an address still held by a recently deleted account is retried"), R-BIND-8
    let emu = start().await;
    emu.realism(json!({"addressReleaseDelayMs": 3_600_000}))
        .await;
    let dir = emu.directory();
    let user = new_user("deleted.holder");
    let created = dir.create_user(&emu.tenant(), &user).await.unwrap();
    let token = good_token(&emu).await;
    let r = reqwest::Client::new()
        .delete(format!("{}/v1.0/users/{}", emu.base, created.id))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let error = dir.create_user(&emu.tenant(), &user).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::Unavailable {
                reason: UnavailableReason::AddressHeld,
                ..
            }
        ) && error.is_retryable(),
        "{error:?}"
    );
    assert_eq!(
        dir.find_user_by_upn(&emu.tenant(), &user.user_principal_name)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn revoking_sessions_moves_sign_in_sessions_valid_from_and_a_missing_user_is_not_found() {
    // R-BIND-9 (graph-spec §1.4: revokeSignInSessions revokes refresh tokens; §3.4)
    let emu = start().await;
    let dir = emu.directory();
    let created = dir
        .create_user(&emu.tenant(), &new_user("leaver"))
        .await
        .unwrap();
    let stamp = |emu: &support::Emu| {
        let state = emu.state.lock();
        let user = &state.tenants[CONTOSO].users[created.id.as_str()];
        (
            user.properties
                .get("signInSessionsValidFromDateTime")
                .cloned(),
            user.tokens_valid_from,
        )
    };
    let (before, _) = stamp(&emu);
    emu.state
        .lock()
        .clock
        .advance(chrono::Duration::seconds(30));
    dir.revoke_sign_in_sessions(&emu.tenant(), &created.id)
        .await
        .unwrap();
    let (after, valid_from) = stamp(&emu);
    assert!(after.is_some(), "the property is set");
    assert_ne!(before, after, "signInSessionsValidFromDateTime moved");
    assert!(
        valid_from.is_some(),
        "refresh tokens issued before are revoked"
    );
    assert_not_found(
        &dir.revoke_sign_in_sessions(&emu.tenant(), &M365ObjectId::generate())
            .await,
    );
}
