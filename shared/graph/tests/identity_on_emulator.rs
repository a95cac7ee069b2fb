//! `IdentityClient` and `VaultTokens` against the real m365-emulator: authorization code with
//! PKCE S256 + state, refresh-token rotation persisted before use, and token-endpoint errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};

use chrono::Utc;
use m365_engine::Error;
use m365_engine::error::Entity;
use m365_engine::model::{Email, M365TenantId, RequestToken, TenantTokens};
use m365_engine::ports::{Directory, TenantProbe, TokenVault};
use m365_engine::testing::FakeTokenVault;
use m365_graph::{GraphDirectory, TokenError, TokenProvider, TokenSet, VaultTokens};
use secrecy::{ExposeSecret, SecretString};
use support::{ADMIN, CONTOSO, start, vault_holding};

/// The admin signs in and the code is redeemed: tokens with a refresh token.
async fn connect(emu: &support::Emu) -> TokenSet {
    emu.consent().await
}

/// A vault holding `tokens` for the emulator's tenant, and the `VaultTokens` provider over it.
async fn over_vault(
    emu: &support::Emu,
    tokens: &TenantTokens,
) -> (FakeTokenVault, VaultTokens<FakeTokenVault>) {
    let vault = vault_holding(&emu.tenant(), tokens).await;
    let client = emu.client();
    let provider = VaultTokens::new(vault.clone(), emu.identity(&client));
    (vault, provider)
}

#[tokio::test]
async fn an_admin_sign_in_with_pkce_yields_tokens_that_graph_accepts() {
    // R-CONN-1, R-SAFE-3
    let emu = start().await;
    let tokens = connect(&emu).await;
    assert!(
        tokens.refresh_token.is_some(),
        "offline_access gives a refresh token"
    );
    assert!(tokens.expires_at > Utc::now());
    let r = emu
        .admin
        .get(format!("{}/v1.0/domains", emu.base))
        .bearer_auth(tokens.access_token.expose_secret())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_code_redeemed_with_the_wrong_verifier_or_twice_is_refused() {
    // R-SAFE-3 (PKCE), graph-spec §1.2 (single use)
    let emu = start().await;
    let client = emu.client();
    let identity = emu.identity(&client);
    let start = identity.authorization_url("organizations").unwrap();
    let (code, _) = emu.sign_in(&start.url).await;
    let code = SecretString::from(code);
    let wrong =
        SecretString::from("a-different-verifier-that-is-long-enough-0123456789".to_owned());
    let error = identity
        .exchange_code("organizations", &code, &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(error, TokenError::ReauthorizationRequired { .. }),
        "{error:?}"
    );

    let start = identity.authorization_url("organizations").unwrap();
    let (code, _) = emu.sign_in(&start.url).await;
    let code = SecretString::from(code);
    identity
        .exchange_code("organizations", &code, &start.pkce_verifier)
        .await
        .unwrap();
    let error = identity
        .exchange_code("organizations", &code, &start.pkce_verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            TokenError::ReauthorizationRequired {
                aadsts: Some(54005),
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_refresh_rotates_the_refresh_token_and_persists_it_before_returning() {
    // R-CONN-4, graph-spec §1.4
    let emu = start().await;
    let first = connect(&emu).await;
    let old_rt = first.refresh_token.clone().unwrap();
    let client = emu.client();
    let identity = emu.identity(&client);
    let saved: Arc<Mutex<Option<TokenSet>>> = Arc::default();
    let sink = saved.clone();
    let refreshed = identity
        .refresh("organizations", &old_rt, |new| async move {
            *sink.lock().unwrap() = Some(new);
            Ok(())
        })
        .await
        .unwrap();
    let new_rt = refreshed.refresh_token.clone().unwrap();
    assert_ne!(new_rt.expose_secret(), old_rt.expose_secret(), "rotated");
    let persisted = saved
        .lock()
        .unwrap()
        .clone()
        .expect("persisted before return");
    assert_eq!(
        persisted.refresh_token.unwrap().expose_secret(),
        new_rt.expose_secret()
    );
    assert_eq!(
        persisted.access_token.expose_secret(),
        refreshed.access_token.expose_secret()
    );
    // Microsoft does not revoke the old refresh token (graph-spec §1.4).
    identity
        .refresh("organizations", &old_rt, |_| async { Ok(()) })
        .await
        .expect("old token still valid");
}

#[tokio::test]
async fn when_saving_the_rotated_tokens_fails_the_new_tokens_are_not_handed_out() {
    // R-CONN-4 ("saved before it is used")
    let emu = start().await;
    let rt = connect(&emu).await.refresh_token.unwrap();
    let client = emu.client();
    let identity = emu.identity(&client);
    let error = identity
        .refresh("organizations", &rt, |_| async {
            Err(Error::Unavailable {
                component: "secretsmanager",
                reason: m365_engine::error::UnavailableReason::Service,
                retry_after: None,
                graph_request_id: None,
                source: None,
            })
        })
        .await
        .unwrap_err();
    assert!(
        matches!(error, TokenError::Persist(_)) && error.is_retryable(),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_revoked_grant_requires_reauthorization_with_its_aadsts_code() {
    // R-CONN-4, graph-spec §1.4 (admin password reset → AADSTS50173)
    let emu = start().await;
    let rt = connect(&emu).await.refresh_token.unwrap();
    emu.admin_post(
        &format!("/_emulator/tenants/{CONTOSO}/admins/{ADMIN}/reset-password"),
        serde_json::json!({}),
    )
    .await;
    let client = emu.client();
    let error = emu
        .identity(&client)
        .refresh("organizations", &rt, |_| async { Ok(()) })
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            TokenError::ReauthorizationRequired {
                aadsts: Some(50173),
                ..
            }
        ),
        "{error:?}"
    );
    let engine = Error::from(error);
    assert!(
        matches!(engine, Error::ReauthorizationRequired { aadsts: 50173 })
            && !engine.is_retryable()
    );
}

#[tokio::test]
async fn a_wrong_client_secret_is_a_configuration_error() {
    // graph-spec §12 row 2 (AADSTS7000215)
    let emu = start().await;
    let client = emu.client();
    let identity = client.identity(
        support::APP,
        SecretString::from("not-the-secret".to_owned()),
    );
    let error = identity.client_credentials(CONTOSO).await.unwrap_err();
    assert!(
        matches!(&error, TokenError::Configuration { error, aadsts: Some(7_000_215) } if error == "invalid_client"),
        "{error:?}"
    );
    assert!(!Error::from(error).is_retryable());
}

#[tokio::test]
async fn a_503_from_the_token_endpoint_is_retryable() {
    // graph-spec §12 row 3
    let emu = start().await;
    emu.fault(serde_json::json!({"method": "POST", "path": format!("/{CONTOSO}/oauth2/v2.0/token"), "kind": "503", "count": 1, "retryAfter": "1.5"})).await;
    let client = emu.client();
    let error = emu
        .identity(&client)
        .client_credentials(CONTOSO)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            TokenError::Unavailable {
                status: Some(503),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_retryable());
    let engine = Error::from(error);
    assert!(engine.is_retryable());
    assert_eq!(
        engine.retry_after(),
        Some(std::time::Duration::from_millis(1500))
    );
}

#[tokio::test]
async fn an_expiring_access_token_is_refreshed_and_the_rotation_is_in_the_vault_before_graph_is_called()
 {
    // R-CONN-4
    let emu = start().await;
    let tenant = emu.tenant();
    let mut tokens = connect(&emu).await.to_tenant_tokens().unwrap();
    tokens.expires_at = Utc::now() + chrono::Duration::seconds(30);
    let vault = vault_holding(&tenant, &tokens).await;
    let client = emu.client();
    let provider = VaultTokens::new(vault.clone(), emu.identity(&client));
    let dir = GraphDirectory::new(client, provider);
    let found = dir
        .find_user_by_upn(&tenant, &Email::parse(ADMIN).unwrap())
        .await
        .unwrap();
    assert!(found.is_some());
    let stored = vault.get(&tenant).await.unwrap().unwrap();
    assert_ne!(
        stored.refresh_token.expose_secret(),
        tokens.refresh_token.expose_secret(),
        "rotated RT saved"
    );
    assert!(stored.expires_at > Utc::now() + chrono::Duration::minutes(10));
    let previous = vault.get_previous(&tenant).await.unwrap().unwrap();
    assert_eq!(
        previous.refresh_token.expose_secret(),
        tokens.refresh_token.expose_secret()
    );
    // The next call uses the stored token without refreshing again.
    let access = dir.tokens().access_token(&tenant).await.unwrap();
    assert_eq!(access.expose_secret(), stored.access_token.expose_secret());
}

#[tokio::test]
async fn a_tenant_without_tokens_is_not_found() {
    // R-CONN-5 (deauthorized tenants have no tokens)
    let emu = start().await;
    let client = emu.client();
    let provider = VaultTokens::new(FakeTokenVault::default(), emu.identity(&client));
    let error = provider.access_token(&emu.tenant()).await.unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotFound {
                entity: Entity::TenantTokens,
                ..
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn right_after_the_code_exchange_the_new_token_reads_the_tenant_id_and_domains() {
    // R-CONN-1, R-CONN-2 (the connect callback's reads before anything is stored)
    let emu = start().await;
    let tokens = connect(&emu).await;
    let dir = GraphDirectory::new(emu.client(), m365_graph::StaticToken(tokens.access_token));
    let org = dir.organization(&emu.tenant()).await.unwrap();
    assert_eq!(org.id.as_str(), CONTOSO);
    let domains = dir.verified_domains(&emu.tenant()).await.unwrap();
    assert!(domains.iter().any(|d| d.name.as_str() == support::MANAGED));
}

#[tokio::test]
async fn concurrent_callers_of_one_process_share_a_single_refresh() {
    // R-CONN-4 (single-flight per tenant)
    let emu = start().await;
    let tenant = emu.tenant();
    let mut tokens = connect(&emu).await.to_tenant_tokens().unwrap();
    tokens.expires_at = Utc::now();
    let (vault, provider) = over_vault(&emu, &tokens).await;
    let (a, b, c) = tokio::join!(
        provider.access_token(&tenant),
        provider.access_token(&tenant),
        provider.access_token(&tenant)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    // Every refresh issues a distinct access token: one value means one refresh.
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(b.expose_secret(), c.expose_secret());
    let previous = vault.get_previous(&tenant).await.unwrap().unwrap();
    assert_eq!(
        previous.refresh_token.expose_secret(),
        tokens.refresh_token.expose_secret(),
        "rotated exactly once"
    );
}

#[tokio::test]
async fn a_401_refresh_skips_the_token_call_when_another_caller_already_replaced_the_token() {
    // R-CONN-4
    let emu = start().await;
    let tenant = emu.tenant();
    let tokens = connect(&emu).await.to_tenant_tokens().unwrap();
    let (vault, provider) = over_vault(&emu, &tokens).await;
    let rejected = SecretString::from("an-older-token-graph-refused".to_owned());
    let token = provider
        .refresh_access_token(&tenant, &rejected)
        .await
        .unwrap();
    assert_eq!(
        token.expose_secret(),
        tokens.access_token.expose_secret(),
        "the vault's newer token is used"
    );
    assert!(
        vault.get_previous(&tenant).await.unwrap().is_none(),
        "no refresh happened"
    );
    let token = provider
        .refresh_access_token(&tenant, &tokens.access_token)
        .await
        .unwrap();
    assert_ne!(
        token.expose_secret(),
        tokens.access_token.expose_secret(),
        "the refused current token is refreshed"
    );
}

#[tokio::test]
async fn an_on_demand_refresh_goes_to_the_authority_of_the_tenant_that_issued_the_tokens() {
    // R-CONN-7 (every refresh at `/{m365TenantId}` once it is known)
    let emu = start().await;
    let tenant = emu.tenant();
    let contoso = M365TenantId::parse(CONTOSO).unwrap();
    let mut tokens = connect(&emu)
        .await
        .to_tenant_tokens_of(Some(&contoso))
        .unwrap();
    tokens.expires_at = Utc::now();
    let vault = vault_holding(&tenant, &tokens).await;
    let client = emu.client();
    let provider = VaultTokens::new(vault.clone(), emu.identity(&client));
    provider.access_token(&tenant).await.unwrap();
    let stored = vault.get(&tenant).await.unwrap().unwrap();
    assert_eq!(
        stored.m365_tenant_id.as_ref(),
        Some(&contoso),
        "the rotated tokens keep their tenant"
    );
    // Tokens that name a tenant this emulator does not know cannot be refreshed at
    // `organizations` instead: the named authority is the one used.
    let mut foreign = stored.clone();
    foreign.m365_tenant_id =
        Some(M365TenantId::parse("9d3b1e7a-6c4f-4a2d-8e5b-7f6a5b4c3d2e").unwrap());
    foreign.expires_at = Utc::now();
    vault
        .update(
            &tenant,
            &foreign,
            &RequestToken::parse("5".repeat(32)).unwrap(),
        )
        .await
        .unwrap();
    // A new process (the one above keeps its access token in memory until it nears expiry).
    let provider = VaultTokens::new(vault.clone(), emu.identity(&client));
    let error = provider.access_token(&tenant).await.unwrap_err();
    assert!(support::is_identity_failure(&error), "{error:?}");
}

#[tokio::test]
async fn an_on_demand_refresh_that_ends_after_a_deauthorization_saves_nothing() {
    // R-CONN-8: the refresh grant answered, the tokens were deleted (deauthorize), then the
    // rotated tokens are to be saved: the save fails and the secret stays deleted.
    let emu = start().await;
    let tenant = emu.tenant();
    let mut tokens = connect(&emu).await.to_tenant_tokens().unwrap();
    tokens.expires_at = Utc::now();
    let (vault, provider) = over_vault(&emu, &tokens).await;
    let gate = vault.hold_next_write();
    let (refreshed, ()) = tokio::join!(provider.access_token(&tenant), async {
        gate.reached().await;
        vault.delete(&tenant).await.unwrap();
        gate.open();
    });
    let error = refreshed.unwrap_err();
    assert!(
        matches!(
            error,
            Error::NotFound {
                entity: Entity::TenantTokens,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        vault.get(&tenant).await.unwrap().is_none(),
        "not re-created"
    );
    assert_eq!(vault.versions(&tenant), 0);
}

#[tokio::test]
async fn the_probe_reads_the_tenant_and_its_domains_with_the_given_token_alone() {
    // R-CONN-7: the callback's reads use the just-issued token, never the vault
    let emu = start().await;
    let tokens = connect(&emu).await;
    let client = emu.client();
    // A directory whose vault is empty: any vault read would fail with NotFound.
    let dir = GraphDirectory::new(
        client.clone(),
        VaultTokens::new(FakeTokenVault::default(), emu.identity(&client)),
    );
    let consented = dir
        .probe(&emu.tenant(), &tokens.access_token)
        .await
        .unwrap();
    assert_eq!(consented.m365_tenant_id.as_str(), CONTOSO);
    assert!(
        consented
            .domains
            .iter()
            .any(|d| d.name.as_str() == support::MANAGED)
    );
    assert!(
        !consented
            .domains
            .iter()
            .any(|d| d.name.as_str() == "pending.contoso.net"),
        "unverified domains are not the tenant's"
    );
    // A token Graph refuses is final: no refresh, no vault.
    let error = dir
        .probe(
            &emu.tenant(),
            &SecretString::from("not-a-token-the-emulator-issued".to_owned()),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
}
