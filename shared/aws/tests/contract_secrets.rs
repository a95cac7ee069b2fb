//! The engine's `TokenVault` and `Sealer` contracts against `SecretsManagerTokenVault` and
//! `SecretsManagerSealer` on moto, each test with its own secret names; and the cursor key
//! adapter (`SecretsManagerCursorKey`).

mod common;

use m365_aws::{SecretsManagerSealer, SecretsManagerTokenVault};

mod token_vault {
    use super::*;

    m365_engine::contract_tests!(token_vault, {
        let Some(config) = common::aws().await else {
            return;
        };
        let client = aws_sdk_secretsmanager::Client::new(&config);
        let prefix = format!("{}/tenant/", common::unique("m365-sync/test"));
        SecretsManagerTokenVault::new(client, prefix, None)
    });
}

mod sealer {
    use super::*;

    m365_engine::contract_tests!(sealer, {
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, secret, _) = common::secret(&config, &common::seal_key_value()).await;
        SecretsManagerSealer::new(client, secret)
    });
}

mod adapter {
    //! Behaviour of the Secrets Manager adapters beyond the ports' contracts.

    use m365_aws::{SecretsManagerSealer, SecretsManagerTokenVault};
    use m365_engine::model::{TenantId, UserId};
    use m365_engine::ports::Sealer;
    use secrecy::{ExposeSecret, SecretString};

    use super::common;

    #[test]
    fn tenant_token_secrets_are_named_under_the_configured_prefix() {
        // R-CONN-1: the IAM policies grant m365-sync/<stage>/tenant/* only.
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let vault = SecretsManagerTokenVault::new(
            aws_sdk_secretsmanager::Client::from_conf(config),
            "m365-sync/prod/tenant/",
            None,
        );
        let tenant = TenantId::generate();
        assert_eq!(
            vault.secret_name(&tenant),
            format!("m365-sync/prod/tenant/{tenant}")
        );
    }

    #[tokio::test]
    async fn a_rotated_seal_key_seals_with_the_new_version_and_still_opens_old_seals() {
        // R-PWD-1: the key version is stored with the ciphertext.
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, secret, first_version) =
            common::secret(&config, &common::seal_key_value()).await;
        let user = UserId::parse(common::unique("u")).expect("id");
        let password = SecretString::from("Correct-Horse-9".to_owned());
        let old = SecretsManagerSealer::new(client.clone(), secret.clone())
            .seal(&user, &password)
            .await
            .expect("sealed with the first key");
        assert_eq!(old.key_version, first_version);

        let rotated = client
            .put_secret_value()
            .secret_id(&secret)
            .secret_string(common::seal_key_value())
            .send()
            .await
            .expect("rotated");
        let sealer = SecretsManagerSealer::new(client, secret);
        let new = sealer
            .seal(&user, &password)
            .await
            .expect("sealed with the new key");
        assert_eq!(Some(new.key_version.as_str()), rotated.version_id());
        assert_ne!(new.key_version, old.key_version);
        for sealed in [&old, &new] {
            let opened = sealer.open(&user, sealed).await.expect("opens");
            assert_eq!(opened.expose_secret(), "Correct-Horse-9");
        }
    }

    #[tokio::test]
    async fn a_seal_key_secret_that_is_not_a_256_bit_hex_key_is_refused() {
        // R-PWD-1: a misconfigured secret never becomes a weak key.
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, secret, _) = common::secret(&config, "correct horse battery staple").await;
        let sealer = SecretsManagerSealer::new(client, secret);
        let user = UserId::parse(common::unique("u")).expect("id");
        let result = sealer
            .seal(&user, &SecretString::from("pw".to_owned()))
            .await;
        assert!(
            matches!(
                result,
                Err(m365_engine::Error::Seal(
                    m365_engine::error::SealError::Malformed
                ))
            ),
            "got {:?}",
            result.map(|_| ())
        );
    }

    #[tokio::test]
    async fn a_new_tenant_token_secret_is_created_with_the_configured_kms_key() {
        // R-SAFE-4: token secrets are encrypted with the stack's own KMS key.
        let Some(config) = common::aws().await else {
            return;
        };
        let client = aws_sdk_secretsmanager::Client::new(&config);
        let key = "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9";
        let prefix = format!("{}/tenant/", common::unique("m365-sync/test"));
        let vault = SecretsManagerTokenVault::new(client.clone(), prefix, Some(key.to_owned()));
        let tenant = TenantId::generate();
        let tokens = m365_engine::model::TenantTokens {
            access_token: SecretString::from("access-kms".to_owned()),
            refresh_token: SecretString::from("refresh-kms".to_owned()),
            expires_at: chrono::Utc::now(),
            m365_tenant_id: None,
        };
        m365_engine::ports::TokenVault::create(
            &vault,
            &tenant,
            &tokens,
            &m365_engine::model::RequestToken::generate(),
        )
        .await
        .expect("stored");
        let described = client
            .describe_secret()
            .secret_id(vault.secret_name(&tenant))
            .send()
            .await
            .expect("described");
        assert_eq!(described.kms_key_id(), Some(key));
    }

    #[tokio::test]
    async fn the_cursor_key_is_read_from_its_secret_once_and_kept() {
        // R-SAFE-1: one Secrets Manager read per cold start at most.
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, secret, _) = common::secret(&config, &"c".repeat(64)).await;
        let keys = m365_aws::SecretsManagerCursorKey::new(client.clone(), secret.clone());
        let first = keys.key().await.expect("read");
        let cursor = first
            .sign_page("tenants", &m365_engine::model::PageToken::new("t"))
            .expect("signed");
        client
            .delete_secret()
            .secret_id(&secret)
            .force_delete_without_recovery(true)
            .send()
            .await
            .expect("deleted");
        let again = keys.clone().key().await.expect("kept in memory");
        assert!(again.open_page("tenants", &cursor).is_ok());
    }

    #[tokio::test]
    async fn a_cursor_key_secret_too_short_or_missing_is_a_configuration_error() {
        // R-SAFE-1: a misconfigured secret never becomes a weak key.
        let Some(config) = common::aws().await else {
            return;
        };
        let (client, secret, _) = common::secret(&config, "short").await;
        let err = m365_aws::SecretsManagerCursorKey::new(client.clone(), secret)
            .key()
            .await
            .expect_err("too short");
        assert!(!err.is_retryable());
        assert!(
            matches!(err, m365_engine::Error::Infrastructure { .. }),
            "{err:?}"
        );
        let missing = m365_aws::SecretsManagerCursorKey::new(client, common::unique("absent"))
            .key()
            .await;
        assert!(missing.is_err());
    }
}
