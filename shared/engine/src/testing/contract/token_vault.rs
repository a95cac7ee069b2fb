//! Contract of [`TokenVault`]: current/previous versions, idempotent puts, deletion (R-CONN-1, R-CONN-4, R-CONN-5).

use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};

use super::{assert_conflict, fresh_suffix, fresh_tenant_id, now_ms};
use crate::model::{RequestToken, TenantTokens};
use crate::ports::TokenVault;

fn tokens(tag: &str) -> TenantTokens {
    TenantTokens {
        access_token: SecretString::from(format!("access-{tag}-{}", fresh_suffix())),
        refresh_token: SecretString::from(format!("refresh-{tag}-{}", fresh_suffix())),
        expires_at: now_ms() + TimeDelta::hours(1),
    }
}

fn same(a: Option<&TenantTokens>, b: Option<&TenantTokens>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.access_token.expose_secret() == b.access_token.expose_secret()
                && a.refresh_token.expose_secret() == b.refresh_token.expose_secret()
                && a.expires_at == b.expires_at
        }
        (None, None) => true,
        _ => false,
    }
}

/// R-CONN-1: stored tokens are read back as current; a tenant without tokens reads as none.
pub async fn stored_tokens_are_read_back_as_current(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    assert!(vault.get(&tenant).await.expect("get succeeds").is_none());
    let first = tokens("1");
    vault
        .put(&tenant, &first, &RequestToken::generate())
        .await
        .expect("put succeeds");
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&first)
    ));
    assert!(
        vault
            .get_previous(&tenant)
            .await
            .expect("get_previous succeeds")
            .is_none()
    );
}

/// R-CONN-4: a rotation keeps the old tokens as previous.
pub async fn a_second_put_keeps_the_first_as_previous(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let (first, second, third) = (tokens("1"), tokens("2"), tokens("3"));
    vault
        .put(&tenant, &first, &RequestToken::generate())
        .await
        .expect("put succeeds");
    vault
        .put(&tenant, &second, &RequestToken::generate())
        .await
        .expect("put succeeds");
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&second)
    ));
    assert!(same(
        vault
            .get_previous(&tenant)
            .await
            .expect("get_previous succeeds")
            .as_ref(),
        Some(&first)
    ));
    vault
        .put(&tenant, &third, &RequestToken::generate())
        .await
        .expect("put succeeds");
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&third)
    ));
    assert!(same(
        vault
            .get_previous(&tenant)
            .await
            .expect("get_previous succeeds")
            .as_ref(),
        Some(&second)
    ));
}

/// R-CONN-4: repeating a put with the same request token creates no new version.
pub async fn repeating_a_put_with_the_same_request_token_changes_nothing(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let (first, second) = (tokens("1"), tokens("2"));
    vault
        .put(&tenant, &first, &RequestToken::generate())
        .await
        .expect("put succeeds");
    let request = RequestToken::generate();
    vault
        .put(&tenant, &second, &request)
        .await
        .expect("put succeeds");
    vault
        .put(&tenant, &second, &request)
        .await
        .expect("the repeated put succeeds");
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&second)
    ));
    assert!(
        same(
            vault
                .get_previous(&tenant)
                .await
                .expect("get_previous succeeds")
                .as_ref(),
            Some(&first)
        ),
        "the repeat did not rotate the first tokens away"
    );
}

/// R-CONN-4: reusing a request token with other tokens is refused and changes nothing.
pub async fn reusing_a_request_token_with_other_tokens_is_refused(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let first = tokens("1");
    let request = RequestToken::generate();
    vault
        .put(&tenant, &first, &request)
        .await
        .expect("put succeeds");
    assert_conflict(
        &vault.put(&tenant, &tokens("2"), &request).await,
        "request_token_reused",
    );
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&first)
    ));
}

/// R-CONN-5: deleted tokens are gone at once, deleting again is harmless, and a reconnect can store new ones.
pub async fn deleted_tokens_are_gone_and_can_be_stored_again(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    vault
        .put(&tenant, &tokens("1"), &RequestToken::generate())
        .await
        .expect("put succeeds");
    vault
        .put(&tenant, &tokens("2"), &RequestToken::generate())
        .await
        .expect("put succeeds");
    vault.delete(&tenant).await.expect("delete succeeds");
    assert!(vault.get(&tenant).await.expect("get succeeds").is_none());
    assert!(
        vault
            .get_previous(&tenant)
            .await
            .expect("get_previous succeeds")
            .is_none()
    );
    vault
        .delete(&tenant)
        .await
        .expect("a second delete succeeds");
    let again = tokens("3");
    vault
        .put(&tenant, &again, &RequestToken::generate())
        .await
        .expect("put after delete succeeds");
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&again)
    ));
    assert!(
        vault
            .get_previous(&tenant)
            .await
            .expect("get_previous succeeds")
            .is_none()
    );
}
