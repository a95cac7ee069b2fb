//! Secrets Manager reads of a tenant's tokens per bind (issue 13, R-CONN-4): the deployed wiring
//! (`App`, `GraphApp`, `Deployed`, the bind handler) on moto and the m365-emulator, with the
//! token vault's Secrets Manager client counting its `GetSecretValue` calls. The access token is
//! kept in memory: a new-user bind reads the vault at most once per cold start (it read it once
//! per Graph call before: 4 reads for this bind), and a second bind of the same process not at
//! all.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_secretsmanager::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_secretsmanager::config::{ConfigBag, Intercept};
use aws_sdk_secretsmanager::error::BoxError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueInput;
use m365_aws::SecretsManagerTokenVault;
use m365_integration_tests::{CONTOSO, World, api_request, json_response};
use m365_lambda::provision::Deployed;
use serde_json::json;

/// Counts the `GetSecretValue` calls of the client it is attached to.
#[derive(Debug, Clone, Default)]
struct SecretReads(Arc<AtomicUsize>);

impl SecretReads {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Intercept for SecretReads {
    fn name(&self) -> &'static str {
        "SecretReads"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context
            .input()
            .downcast_ref::<GetSecretValueInput>()
            .is_some()
        {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Puts directory user `id` and binds it (a new M365 account); the bind's status.
async fn put_and_bind(deps: &Deployed, id: &str) -> u16 {
    let body = json!({"email": format!("{id}@contoso.com"), "displayName": format!("User {id}")});
    let request = api_request("PUT", &format!("/users/{id}"), &[], Some(body));
    let (status, answer) = json_response(&directory::handle(deps, request).await.unwrap());
    assert!(status == 200 || status == 201, "{status} {answer}");
    let request = api_request("PUT", &format!("/users/{id}/binding"), &[], None);
    let (status, answer) = json_response(&bind::handle(deps, request).await.unwrap());
    assert_eq!(status, 200, "bound at once: {answer}");
    assert_eq!(answer["binding"]["state"], "provisioned", "{answer}");
    status
}

#[tokio::test]
async fn a_new_user_bind_reads_the_tenants_tokens_at_most_once_per_cold_start() {
    // R-CONN-4 (the vault's access token used until shortly before it expires); issue 13
    let Some(mut world) = World::start().await else {
        eprintln!("moto not running; skipped");
        return;
    };
    world.add_provisioning_resources("vault-reads").await;
    world.connect_contoso("Contoso").await;
    // The bind function's cold start, its token vault on a counting Secrets Manager client.
    let reads = SecretReads::default();
    let secrets = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&world.sdk)
            .interceptor(reads.clone())
            .build(),
    );
    let resources = &world.app.config.resources;
    world.app.token_vault = SecretsManagerTokenVault::new(
        secrets,
        &resources.tenant_secret_prefix,
        resources.secrets_kms_key_id.clone(),
    );
    let graph = world.graph_app();
    let deps = Deployed::from_app(&world.app, &graph);

    put_and_bind(&deps, "adele").await;
    assert_eq!(
        reads.count(),
        1,
        "one read for every Graph call of the bind"
    );
    put_and_bind(&deps, "bianca").await;
    assert_eq!(
        reads.count(),
        1,
        "the second bind of the process reads none"
    );
    let accounts = world
        .emulator
        .get(&format!("/_emulator/tenants/{CONTOSO}"))
        .await;
    let upns: Vec<&str> = accounts["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["properties"]["userPrincipalName"].as_str())
        .collect();
    assert!(upns.contains(&"adele@contoso.com") && upns.contains(&"bianca@contoso.com"));
}
