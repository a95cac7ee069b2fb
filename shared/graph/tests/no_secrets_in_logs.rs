//! Captures every log line of the client during a connect, a refresh, creates with passwords, a
//! password reset and throttled retries, and asserts that no token, password or client secret
//! appears (R-SAFE-2) while the diagnostics fields do (STYLE "Tracing").

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::Utc;
use m365_engine::model::{Email, NewM365User};
use m365_engine::ports::{Directory, TokenVault};
use m365_engine::testing::LogBuffer;
use m365_engine::testing::contract::new_m365_user;
use m365_graph::{GraphDirectory, VaultTokens};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use support::{MANAGED, SECRET, start, vault_holding};

#[tokio::test]
async fn no_token_password_or_secret_appears_in_any_log_line() {
    // R-SAFE-2
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = start().await;
    let client = emu.client();
    let identity = emu.identity(&client);
    let start = identity.authorization_url("organizations").unwrap();
    let (code, _) = emu.sign_in(&start.url).await;
    let first = identity
        .exchange_code(
            "organizations",
            &SecretString::from(code.clone()),
            &start.pkce_verifier,
        )
        .await
        .unwrap();
    let mut stored = first.to_tenant_tokens().unwrap();
    stored.expires_at = Utc::now();
    let tenant = emu.tenant();
    let vault = vault_holding(&tenant, &stored).await;
    let dir = GraphDirectory::new(
        client.clone(),
        VaultTokens::new(vault.clone(), identity.clone()),
    );

    emu.fault(json!({"method": "GET", "path": "/v1.0/users", "kind": "429", "count": 1, "retryAfter": "0.2"})).await;
    dir.find_user_by_upn(&tenant, &Email::parse(support::ADMIN).unwrap())
        .await
        .unwrap();
    let password = "Log-Test-Passw0rd!";
    let user = NewM365User {
        password: SecretString::from(password.to_owned()),
        ..new_m365_user(
            Email::parse(&format!("logs.user@{MANAGED}")).unwrap(),
            "logsuser",
            "Logs User",
        )
    };
    let created = dir.create_user(&tenant, &user).await.unwrap();
    let reset = "Another-Passw0rd!";
    dir.set_password(&tenant, &created.id, &SecretString::from(reset.to_owned()))
        .await
        .unwrap();
    let weak = dir
        .create_user(
            &tenant,
            &NewM365User {
                password: SecretString::from("weakweakweak".to_owned()),
                ..user.clone()
            },
        )
        .await;
    assert!(weak.is_err());

    let now = vault.get(&tenant).await.unwrap().unwrap();
    let text = logs.text();
    assert!(
        text.contains("graph.request_id"),
        "diagnostic fields are logged:\n{text}"
    );
    assert!(
        text.contains("retry.after_ms"),
        "the retry wait is logged:\n{text}"
    );
    assert!(
        text.contains("http.status"),
        "the status is logged:\n{text}"
    );
    for secret in [
        first.access_token.expose_secret(),
        first.refresh_token.as_ref().unwrap().expose_secret(),
        now.access_token.expose_secret(),
        now.refresh_token.expose_secret(),
        start.pkce_verifier.expose_secret(),
        code.as_str(),
        password,
        reset,
        "weakweakweak",
        SECRET,
    ] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
    }
}
