//! What a bind costs the vault and Graph, on the real m365-emulator: `VaultTokens` keeps each
//! tenant's access token in memory (one vault read per cold start, not one per Graph call), drops
//! it when Graph refuses it (401) or when it nears expiry, and a create that finds its UPN taken
//! returns the account its own lookup found (issue 13 "the adapters own what is theirs").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::Utc;
use m365_engine::Error;
use m365_engine::error::{Conflict, ExistingUser};
use m365_engine::model::{Email, RequestToken, TenantId, TenantTokens};
use m365_engine::ports::{Directory, TokenVault};
use m365_engine::testing::FakeTokenVault;
use m365_graph::{EXPIRY_MARGIN, GraphDirectory, TokenProvider, VaultTokens};
use secrecy::{ExposeSecret, SecretString};
use support::{CONTOSO, adele as new_user, start};

/// The admin signs in and consents: the delegated tokens the connect callback would store.
async fn consent(emu: &support::Emu) -> TenantTokens {
    emu.consent().await.to_tenant_tokens().unwrap()
}

/// A vault holding `tokens` and a directory over it, as one cold start builds them.
async fn cold_start(
    emu: &support::Emu,
    tokens: &TenantTokens,
) -> (FakeTokenVault, GraphDirectory<VaultTokens<FakeTokenVault>>) {
    let vault = FakeTokenVault::default();
    vault
        .create(&emu.tenant(), tokens, &RequestToken::generate())
        .await
        .unwrap();
    let client = emu.client();
    let provider = VaultTokens::new(vault.clone(), emu.identity(&client));
    (vault, GraphDirectory::new(client, provider))
}

/// A cold start of a connected tenant.
async fn connected(
    emu: &support::Emu,
) -> (FakeTokenVault, GraphDirectory<VaultTokens<FakeTokenVault>>) {
    cold_start(emu, &consent(emu).await).await
}

/// A cold start whose vault holds an access token Graph refuses (and a good refresh token).
async fn refused_start(
    emu: &support::Emu,
) -> (
    TenantTokens,
    FakeTokenVault,
    GraphDirectory<VaultTokens<FakeTokenVault>>,
) {
    let mut refused = consent(emu).await;
    refused.access_token = SecretString::from("an-access-token-graph-refuses".to_owned());
    let (vault, dir) = cold_start(emu, &refused).await;
    (refused, vault, dir)
}

/// Whether Graph finds the admin (a read that needs a token Graph accepts).
async fn finds_admin(dir: &GraphDirectory<VaultTokens<FakeTokenVault>>, tenant: &TenantId) -> bool {
    dir.find_user_by_upn(tenant, &Email::parse(support::ADMIN).unwrap())
        .await
        .unwrap()
        .is_some()
}

/// The Graph calls of a bind that creates the account: lookup, create, password-stamp read-back.
async fn new_user_bind(
    dir: &GraphDirectory<VaultTokens<FakeTokenVault>>,
    tenant: &TenantId,
    local: &str,
) {
    let new = new_user(local);
    let found = dir
        .find_user_by_upn(tenant, &new.user_principal_name)
        .await
        .unwrap();
    assert!(found.is_none(), "a new user");
    let created = dir.create_user(tenant, &new).await.unwrap();
    dir.last_password_change(tenant, &created.id).await.unwrap();
}

fn graph_requests(emu: &support::Emu, route: &str) -> u64 {
    let state = emu.state.lock();
    state.tenants[CONTOSO]
        .request_counts
        .get(route)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_new_user_bind_reads_the_vault_once_per_cold_start_and_the_next_bind_not_at_all() {
    // R-CONN-4 (the vault's token is used until shortly before it expires); issue 13: at most 1
    // Secrets Manager read per cold start, not one per Graph call (3 for these calls before)
    let emu = start().await;
    let tenant = emu.tenant();
    let (vault, dir) = connected(&emu).await;
    new_user_bind(&dir, &tenant, "first.bind").await;
    assert_eq!(vault.reads(), 1, "one vault read for the three Graph calls");
    // The next bind of the same process, through a clone as each invocation's wiring holds one.
    new_user_bind(&dir.clone(), &tenant, "second.bind").await;
    assert_eq!(vault.reads(), 1, "no vault read at all");
    assert_eq!(graph_requests(&emu, "graph POST /v1.0/users"), 2);
}

#[tokio::test]
async fn a_kept_token_graph_refuses_is_dropped_and_the_vault_read_once_before_the_one_retry() {
    // R-CONN-4 (on-demand refresh): the vault is the source of truth — a token rotated there
    // (by the scheduled refresh) replaces a refused kept one without a token call
    let emu = start().await;
    let tenant = emu.tenant();
    let (_, vault, dir) = refused_start(&emu).await;
    let kept = dir.tokens().access_token(&tenant).await.unwrap();
    assert_eq!(kept.expose_secret(), "an-access-token-graph-refuses");
    assert_eq!(vault.reads(), 1);
    let rotated = consent(&emu).await;
    vault
        .update(&tenant, &rotated, &RequestToken::generate())
        .await
        .unwrap();
    let identity_calls = |emu: &support::Emu| {
        emu.state.lock().tenants[CONTOSO]
            .request_counts
            .get("identity")
            .copied()
            .unwrap_or(0)
    };
    let token_calls = identity_calls(&emu);
    assert!(
        finds_admin(&dir, &tenant).await,
        "the retry with the vault's token succeeds"
    );
    assert_eq!(vault.reads(), 2, "the vault read once after the 401");
    assert_eq!(identity_calls(&emu), token_calls, "no refresh needed");
    assert_eq!(
        dir.tokens()
            .access_token(&tenant)
            .await
            .unwrap()
            .expose_secret(),
        rotated.access_token.expose_secret(),
        "the vault's token is kept from now on"
    );
    assert_eq!(vault.reads(), 2);
}

#[tokio::test]
async fn a_refused_token_the_vault_still_holds_is_refreshed_once_and_the_call_succeeds() {
    // R-CONN-4 (on-demand refresh, rotated tokens saved before use)
    let emu = start().await;
    let tenant = emu.tenant();
    let (refused, vault, dir) = refused_start(&emu).await;
    assert!(
        finds_admin(&dir, &tenant).await,
        "the retry with the refreshed token succeeds"
    );
    assert_eq!(vault.reads(), 2, "cold start, then once after the 401");
    let stored = vault.current(&tenant).unwrap();
    assert_ne!(
        stored.refresh_token.expose_secret(),
        refused.refresh_token.expose_secret(),
        "refreshed once, the rotation saved"
    );
    assert_eq!(vault.versions(&tenant), 2);
    // The refreshed token is kept: the next call reads nothing.
    assert!(finds_admin(&dir, &tenant).await);
    assert_eq!(vault.reads(), 2);
}

#[tokio::test]
async fn a_kept_token_nearing_expiry_is_read_from_the_vault_again() {
    // R-CONN-4: a token the scheduled refresh rotated in the vault is picked up at the latest when
    // the kept one comes within the margin of its expiry
    let emu = start().await;
    let tenant = emu.tenant();
    let mut soon = consent(&emu).await;
    soon.expires_at = Utc::now() + EXPIRY_MARGIN + chrono::Duration::seconds(2);
    let (vault, dir) = cold_start(&emu, &soon).await;
    let kept = dir.tokens().access_token(&tenant).await.unwrap();
    assert_eq!(kept.expose_secret(), soon.access_token.expose_secret());
    dir.tokens().access_token(&tenant).await.unwrap();
    assert_eq!(vault.reads(), 1, "kept while it is not near expiry");
    let rotated = consent(&emu).await;
    vault
        .update(&tenant, &rotated, &RequestToken::generate())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let token = dir.tokens().access_token(&tenant).await.unwrap();
    assert_eq!(
        token.expose_secret(),
        rotated.access_token.expose_secret(),
        "the vault's rotated token"
    );
    assert_eq!(vault.reads(), 2);
    assert_eq!(vault.versions(&tenant), 2, "no refresh of our own");
}

#[tokio::test]
async fn a_create_that_finds_the_upn_taken_returns_the_account_its_one_lookup_found() {
    // R-BIND-2 (adopt the account holding the UPN); issue 13: the engine's bind adopts what the
    // adapter returns, so a conflict costs one Graph lookup, not two
    let emu = start().await;
    let tenant = emu.tenant();
    let (_, dir) = connected(&emu).await;
    let taken = dir.create_user(&tenant, &new_user("taken")).await.unwrap();
    let lookups = graph_requests(&emu, "graph GET /v1.0/users");
    let error = dir
        .create_user(&tenant, &new_user("taken"))
        .await
        .unwrap_err();
    let Error::Conflict(Conflict::UpnExists {
        existing: Some(ExistingUser(found)),
        ..
    }) = &error
    else {
        panic!("a UPN conflict carrying the account: {error:?}")
    };
    assert_eq!(found.id, taken.id);
    assert_eq!(graph_requests(&emu, "graph GET /v1.0/users") - lookups, 1);
    assert!(
        !format!("{error:?}").contains("Adele"),
        "no personal data beyond ids in Debug output"
    );
}
