//! Contract of [`TokenVault`]: current/previous versions, idempotent writes, deletion, and the
//! split between `create` (a consent, connect only) and `update` (a refresh, never creates)
//! (R-CONN-1, R-CONN-4, R-CONN-5, R-CONN-8).

use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};

use super::{assert_conflict, fresh_suffix, fresh_tenant_id, now_ms};
use crate::error::{Entity, Error};
use crate::model::{M365TenantId, RequestToken, TenantTokens};
use crate::ports::TokenVault;

fn tokens(tag: &str) -> TenantTokens {
    TenantTokens {
        access_token: SecretString::from(format!("access-{tag}-{}", fresh_suffix())),
        refresh_token: SecretString::from(format!("refresh-{tag}-{}", fresh_suffix())),
        expires_at: now_ms() + TimeDelta::hours(1),
        m365_tenant_id: None,
    }
}

fn same(a: Option<&TenantTokens>, b: Option<&TenantTokens>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.access_token.expose_secret() == b.access_token.expose_secret()
                && a.refresh_token.expose_secret() == b.refresh_token.expose_secret()
                && a.expires_at == b.expires_at
                && a.m365_tenant_id == b.m365_tenant_id
        }
        (None, None) => true,
        _ => false,
    }
}

fn assert_tokens_not_found(result: &crate::Result<()>) {
    assert!(
        matches!(
            result,
            Err(Error::NotFound {
                entity: Entity::TenantTokens,
                ..
            })
        ),
        "expected tenant tokens not found, got {result:?}"
    );
}

/// R-CONN-1, R-CONN-7: created tokens are read back as current, with the Microsoft tenant that
/// issued them; a tenant without tokens reads as none.
pub async fn stored_tokens_are_read_back_as_current(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    assert!(vault.get(&tenant).await.expect("get succeeds").is_none());
    let first = TenantTokens {
        m365_tenant_id: Some(
            M365TenantId::parse("0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f").expect("a GUID"),
        ),
        ..tokens("1")
    };
    vault
        .create(&tenant, &first, &RequestToken::generate())
        .await
        .expect("create succeeds");
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

/// R-CONN-4: a rotation (update) keeps the old tokens as previous, and so does a reconnect's
/// create over existing tokens.
pub async fn a_second_put_keeps_the_first_as_previous(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let (first, second, third) = (tokens("1"), tokens("2"), tokens("3"));
    vault
        .create(&tenant, &first, &RequestToken::generate())
        .await
        .expect("create succeeds");
    vault
        .update(&tenant, &second, &RequestToken::generate())
        .await
        .expect("update succeeds");
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
        .create(&tenant, &third, &RequestToken::generate())
        .await
        .expect("a create over existing tokens (a reconnect) succeeds");
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

/// R-CONN-4: repeating an update with the same request token creates no new version.
pub async fn repeating_a_put_with_the_same_request_token_changes_nothing(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let (first, second) = (tokens("1"), tokens("2"));
    vault
        .create(&tenant, &first, &RequestToken::generate())
        .await
        .expect("create succeeds");
    let request = RequestToken::generate();
    vault
        .update(&tenant, &second, &request)
        .await
        .expect("update succeeds");
    vault
        .update(&tenant, &second, &request)
        .await
        .expect("the repeated update succeeds");
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
        .create(&tenant, &first, &request)
        .await
        .expect("create succeeds");
    assert_conflict(
        &vault.update(&tenant, &tokens("2"), &request).await,
        "request_token_reused",
    );
    assert!(same(
        vault.get(&tenant).await.expect("get succeeds").as_ref(),
        Some(&first)
    ));
}

/// R-CONN-5, R-CONN-8: deleted tokens are gone at once, deleting again is harmless, an update
/// (a refresh that was in flight) cannot bring them back, and only a create (a new consent) stores
/// tokens again.
pub async fn deleted_tokens_are_gone_and_can_be_stored_again(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    vault
        .create(&tenant, &tokens("1"), &RequestToken::generate())
        .await
        .expect("create succeeds");
    vault
        .update(&tenant, &tokens("2"), &RequestToken::generate())
        .await
        .expect("update succeeds");
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
    assert_tokens_not_found(
        &vault
            .update(&tenant, &tokens("late"), &RequestToken::generate())
            .await,
    );
    assert!(
        vault.get(&tenant).await.expect("get succeeds").is_none(),
        "a refused update re-created nothing"
    );
    let again = tokens("3");
    vault
        .create(&tenant, &again, &RequestToken::generate())
        .await
        .expect("create after delete succeeds");
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

/// R-CONN-8: an update never creates: a tenant that never had tokens gets none from it.
pub async fn an_update_of_a_tenant_without_tokens_fails_and_creates_nothing(
    vault: &impl TokenVault,
) {
    let tenant = fresh_tenant_id();
    assert_tokens_not_found(
        &vault
            .update(&tenant, &tokens("1"), &RequestToken::generate())
            .await,
    );
    assert!(vault.get(&tenant).await.expect("get succeeds").is_none());
    assert!(
        vault
            .get_previous(&tenant)
            .await
            .expect("get_previous succeeds")
            .is_none()
    );
}
