//! `GraphIdentity` (the engine's `IdentityPlatform` port) against the real m365-emulator: the
//! sign-in URL, the code exchange with the PKCE verifier, a wrong verifier, refresh rotation and a
//! revoked grant, in the engine's words.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_engine::Error;
use m365_engine::model::M365TenantId;
use m365_engine::ports::IdentityPlatform;
use m365_graph::GraphIdentity;
use secrecy::{ExposeSecret, SecretString};
use support::{ADMIN, CONTOSO, start};

fn platform(emu: &support::Emu) -> GraphIdentity {
    GraphIdentity::new(emu.identity(&emu.client()))
}

#[tokio::test]
async fn the_port_connects_with_pkce_and_refreshes_with_rotation() {
    // R-CONN-1, R-CONN-4, R-SAFE-3
    let emu = start().await;
    let port = platform(&emu);
    let request = port.authorization_request(None).unwrap();
    let url = reqwest::Url::parse(&request.url).unwrap();
    let (code, state) = emu.sign_in(&url).await;
    assert_eq!(state, request.state);
    let tokens = port
        .exchange_code(&SecretString::from(code), &request.pkce_verifier, None)
        .await
        .unwrap();
    assert!(tokens.expires_at > chrono::Utc::now());
    let rotated = port.refresh(&tokens.refresh_token, None).await.unwrap();
    assert_ne!(
        rotated.refresh_token.expose_secret(),
        tokens.refresh_token.expose_secret()
    );
    assert_ne!(
        rotated.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
}

#[tokio::test]
async fn a_wrong_verifier_is_an_invalid_grant_and_a_revoked_grant_names_its_aadsts_code() {
    // R-SAFE-3 (PKCE), R-CONN-4 (AADSTS50173 after an admin password reset)
    let emu = start().await;
    let port = platform(&emu);
    let request = port.authorization_request(None).unwrap();
    let (code, _) = emu
        .sign_in(&reqwest::Url::parse(&request.url).unwrap())
        .await;
    let other = port.authorization_request(None).unwrap();
    let error = port
        .exchange_code(&SecretString::from(code), &other.pkce_verifier, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ReauthorizationRequired { .. }),
        "{error:?}"
    );

    let request = port.authorization_request(None).unwrap();
    let (code, _) = emu
        .sign_in(&reqwest::Url::parse(&request.url).unwrap())
        .await;
    let tokens = port
        .exchange_code(&SecretString::from(code), &request.pkce_verifier, None)
        .await
        .unwrap();
    emu.admin_post(
        &format!("/_emulator/tenants/{CONTOSO}/admins/{ADMIN}/reset-password"),
        serde_json::json!({}),
    )
    .await;
    let error = port.refresh(&tokens.refresh_token, None).await.unwrap_err();
    assert!(
        matches!(error, Error::ReauthorizationRequired { aadsts: 50_173 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn once_the_tenant_is_known_sign_in_exchange_and_refresh_go_to_its_own_authority() {
    // R-CONN-7 (`/{m365TenantId}` instead of `organizations`)
    let emu = start().await;
    let port = platform(&emu);
    let contoso = M365TenantId::parse(CONTOSO).unwrap();
    let request = port.authorization_request(Some(&contoso)).unwrap();
    let url = reqwest::Url::parse(&request.url).unwrap();
    assert_eq!(url.path(), format!("/{CONTOSO}/oauth2/v2.0/authorize"));
    let (code, _) = emu.sign_in(&url).await;
    let tokens = port
        .exchange_code(
            &SecretString::from(code),
            &request.pkce_verifier,
            Some(&contoso),
        )
        .await
        .unwrap();
    assert_eq!(tokens.m365_tenant_id.as_ref(), Some(&contoso));
    let rotated = port
        .refresh(&tokens.refresh_token, Some(&contoso))
        .await
        .unwrap();
    assert_eq!(rotated.m365_tenant_id.as_ref(), Some(&contoso));
    // The same refresh token at an authority this emulator does not know is refused (AADSTS90002,
    // a configuration error), where `organizations` would have taken it: the authority named is
    // the one used.
    let elsewhere = M365TenantId::parse("9d3b1e7a-6c4f-4a2d-8e5b-7f6a5b4c3d2e").unwrap();
    let error = port
        .refresh(&rotated.refresh_token, Some(&elsewhere))
        .await
        .unwrap_err();
    assert!(support::is_identity_failure(&error), "{error:?}");
    assert!(port.refresh(&rotated.refresh_token, None).await.is_ok());
}
