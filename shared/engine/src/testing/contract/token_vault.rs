//! Contract of [`TokenVault`]: current/previous versions, idempotent writes, deletion, and the
//! split between `create` (a consent, connect only) and `update` (a refresh, never creates)
//! (R-CONN-1, R-CONN-4, R-CONN-5, R-CONN-8).

use chrono::TimeDelta;
use secrecy::{ExposeSecret, SecretString};

use super::{assert_conflict, fresh_suffix, fresh_tenant_id, now_ms};
use crate::error::{Entity, Error, Result};
use crate::model::{M365TenantId, RequestToken, TenantId, TenantTokens};
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

fn assert_tokens_not_found(result: &Result<()>) {
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

/// Asserts the current tokens of `tenant` (`None`: no tokens), with `why` on failure.
async fn assert_current(
    vault: &impl TokenVault,
    tenant: &TenantId,
    expected: Option<&TenantTokens>,
    why: &str,
) {
    let current = vault.get(tenant).await.expect("get succeeds");
    assert!(same(current.as_ref(), expected), "{why}");
}

/// Asserts the current and the previous tokens of `tenant` (`None`: none).
async fn assert_held(
    vault: &impl TokenVault,
    tenant: &TenantId,
    current: Option<&TenantTokens>,
    previous: Option<&TenantTokens>,
) {
    assert_current(vault, tenant, current, "the current tokens").await;
    let held = vault
        .get_previous(tenant)
        .await
        .expect("get_previous succeeds");
    assert!(same(held.as_ref(), previous), "the previous tokens");
}

/// Creates `tokens` for `tenant` under a new request token.
async fn create(vault: &impl TokenVault, tenant: &TenantId, tokens: &TenantTokens) -> Result<()> {
    vault
        .create(tenant, tokens, &RequestToken::generate())
        .await
}

/// Updates `tenant` to `tokens` under a new request token.
async fn update(vault: &impl TokenVault, tenant: &TenantId, tokens: &TenantTokens) -> Result<()> {
    vault
        .update(tenant, tokens, &RequestToken::generate())
        .await
}

/// R-CONN-1, R-CONN-7: created tokens are read back as current, with the Microsoft tenant that
/// issued them; a tenant without tokens reads as none.
pub async fn stored_tokens_are_read_back_as_current(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    assert_current(vault, &tenant, None, "no tokens").await;
    let first = TenantTokens {
        m365_tenant_id: Some(
            M365TenantId::parse("0c5a7f3e-2d1b-4e6a-9f80-1a2b3c4d5e6f").expect("a GUID"),
        ),
        ..tokens("1")
    };
    create(vault, &tenant, &first)
        .await
        .expect("create succeeds");
    assert_held(vault, &tenant, Some(&first), None).await;
}

/// R-CONN-4: a rotation (update) keeps the old tokens as previous, and so does a reconnect's
/// create over existing tokens.
pub async fn a_second_put_keeps_the_first_as_previous(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let (first, second, third) = (tokens("1"), tokens("2"), tokens("3"));
    create(vault, &tenant, &first)
        .await
        .expect("create succeeds");
    update(vault, &tenant, &second)
        .await
        .expect("update succeeds");
    assert_held(vault, &tenant, Some(&second), Some(&first)).await;
    create(vault, &tenant, &third)
        .await
        .expect("a create over existing tokens (a reconnect) succeeds");
    assert_held(vault, &tenant, Some(&third), Some(&second)).await;
}

/// R-CONN-4: repeating an update with the same request token creates no new version.
pub async fn repeating_a_put_with_the_same_request_token_changes_nothing(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    let (first, second) = (tokens("1"), tokens("2"));
    create(vault, &tenant, &first)
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
    // The repeat did not rotate the first tokens away.
    assert_held(vault, &tenant, Some(&second), Some(&first)).await;
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
    assert_current(vault, &tenant, Some(&first), "the first tokens are current").await;
}

/// R-CONN-5, R-CONN-8: deleted tokens are gone at once, deleting again is harmless, an update
/// (a refresh that was in flight) cannot bring them back, and only a create (a new consent) stores
/// tokens again.
pub async fn deleted_tokens_are_gone_and_can_be_stored_again(vault: &impl TokenVault) {
    let tenant = fresh_tenant_id();
    create(vault, &tenant, &tokens("1"))
        .await
        .expect("create succeeds");
    update(vault, &tenant, &tokens("2"))
        .await
        .expect("update succeeds");
    vault.delete(&tenant).await.expect("delete succeeds");
    assert_held(vault, &tenant, None, None).await;
    vault
        .delete(&tenant)
        .await
        .expect("a second delete succeeds");
    assert_tokens_not_found(&update(vault, &tenant, &tokens("late")).await);
    assert_current(vault, &tenant, None, "a refused update re-created nothing").await;
    let again = tokens("3");
    create(vault, &tenant, &again)
        .await
        .expect("create after delete succeeds");
    assert_held(vault, &tenant, Some(&again), None).await;
}

/// R-CONN-8: an update never creates: a tenant that never had tokens gets none from it.
pub async fn an_update_of_a_tenant_without_tokens_fails_and_creates_nothing(
    vault: &impl TokenVault,
) {
    let tenant = fresh_tenant_id();
    assert_tokens_not_found(&update(vault, &tenant, &tokens("1")).await);
    assert_held(vault, &tenant, None, None).await;
}
