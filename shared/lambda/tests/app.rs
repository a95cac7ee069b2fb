//! `App` wires working adapters from a `Config` and the SDK's standard configuration: on moto
//! (reached only through `AWS_ENDPOINT_URL`), a user written through `app.users` is read back
//! and a password sealed through `app.sealer` opens again. Skips loudly without moto locally;
//! fails in CI.

use aws_config::BehaviorVersion;
use m365_aws::Resources;
use m365_aws::schema::{self, TableSchema};
use m365_engine::testing::contract;
use m365_lambda::{App, Config};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn moto_available() -> bool {
    if std::env::var_os("AWS_ENDPOINT_URL").is_some() {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !ci,
        "AWS_ENDPOINT_URL is not set: in CI a missing moto is a failure"
    );
    eprintln!(
        "\n*** SKIPPED: AWS_ENDPOINT_URL is not set; run `make test` to run this test. ***\n"
    );
    false
}

async fn create(client: &aws_sdk_dynamodb::Client, table: &TableSchema) -> String {
    let name = unique(&table.logical_id.to_ascii_lowercase());
    table.create(client, &name).await.expect("table created");
    name
}

#[tokio::test]
async fn the_app_wires_adapters_that_reach_the_configured_resources() {
    if !moto_available() {
        return;
    }
    let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let seal_key_secret_id = unique("m365-sync/test/seal-key");
    secrets
        .create_secret()
        .name(&seal_key_secret_id)
        .secret_string("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
        .send()
        .await
        .expect("seal key secret created");
    let cursor_key_secret_id = unique("m365-sync/test/cursor-key");
    secrets
        .create_secret()
        .name(&cursor_key_secret_id)
        .secret_string("k".repeat(64))
        .send()
        .await
        .expect("cursor key secret created");
    let config = Config::with_resources(
        Resources {
            users_table: create(&dynamodb, &schema::USERS).await,
            tenants_table: create(&dynamodb, &schema::TENANTS).await,
            bindings_table: create(&dynamodb, &schema::BINDINGS).await,
            events_table: create(&dynamodb, &schema::EVENTS).await,
            failures_table: create(&dynamodb, &schema::FAILURES).await,
            ledger_table: create(&dynamodb, &schema::LEDGER).await,
            retry_queue_url: "http://127.0.0.1:1/000000000000/unused".to_owned(),
            notifications_queue_url: "http://127.0.0.1:1/000000000000/unused".to_owned(),
            tenant_secret_prefix: format!("{}/", unique("m365-sync/test/tenant")),
            seal_key_secret_id,
            cursor_key_secret_id: cursor_key_secret_id.clone(),
            secrets_kms_key_id: None,
        },
        "m365-sync/test/oauth-client".to_owned(),
    );

    let app = App::new(config).await;

    contract::users::a_created_user_can_be_read_by_id_and_by_email(&app.users).await;
    contract::tenants::claimed_domains_route_to_their_tenant(&app.tenants).await;
    contract::sealer::a_sealed_password_opens_to_the_same_password(&app.sealer).await;
    contract::token_vault::stored_tokens_are_read_back_as_current(&app.token_vault).await;
    let key = app.cursor_key.key().await.expect("the cursor key is wired");
    let cursor = key
        .sign_page("tenants", &m365_engine::model::PageToken::new("t"))
        .expect("signed");
    assert!(key.open_page("tenants", &cursor).is_ok());
}
