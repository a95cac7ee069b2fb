//! `GraphIdentity` (the engine's `IdentityPlatform` port) against the real m365-emulator: the
//! sign-in URL, the code exchange with the PKCE verifier, a wrong verifier, refresh rotation and a
//! revoked grant, in the engine's words.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use m365_engine::Error;
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
    let request = port.authorization_request().unwrap();
    let url = reqwest::Url::parse(&request.url).unwrap();
    let (code, state) = emu.sign_in(&url).await;
    assert_eq!(state, request.state);
    let tokens = port
        .exchange_code(&SecretString::from(code), &request.pkce_verifier)
        .await
        .unwrap();
    assert!(tokens.expires_at > chrono::Utc::now());
    let rotated = port.refresh(&tokens.refresh_token).await.unwrap();
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
    let request = port.authorization_request().unwrap();
    let (code, _) = emu
        .sign_in(&reqwest::Url::parse(&request.url).unwrap())
        .await;
    let other = port.authorization_request().unwrap();
    let error = port
        .exchange_code(&SecretString::from(code), &other.pkce_verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::ReauthorizationRequired { .. }),
        "{error:?}"
    );

    let request = port.authorization_request().unwrap();
    let (code, _) = emu
        .sign_in(&reqwest::Url::parse(&request.url).unwrap())
        .await;
    let tokens = port
        .exchange_code(&SecretString::from(code), &request.pkce_verifier)
        .await
        .unwrap();
    emu.admin_post(
        &format!("/_emulator/tenants/{CONTOSO}/admins/{ADMIN}/reset-password"),
        serde_json::json!({}),
    )
    .await;
    let error = port.refresh(&tokens.refresh_token).await.unwrap_err();
    assert!(
        matches!(error, Error::ReauthorizationRequired { aadsts: 50_173 }),
        "{error:?}"
    );
}
