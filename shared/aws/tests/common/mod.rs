//! What the contract tests share: the AWS configuration for the moto server that
//! `scripts/with-moto.sh` starts (through the SDK's standard `AWS_ENDPOINT_URL`), and fresh,
//! uniquely named tables, queues and secrets, created from the same definitions the template uses.
//!
//! Without `AWS_ENDPOINT_URL` the tests skip loudly on a developer machine and FAIL in CI
//! (`CI` set): a missing moto is never a silent pass there.

#![allow(dead_code, unused_macros, clippy::unwrap_used)]

use aws_config::{BehaviorVersion, SdkConfig};
use m365_aws::schema::TableSchema;

/// The shared SDK configuration, or `None` (after a loud message) when no endpoint is set
/// outside CI.
pub async fn aws() -> Option<SdkConfig> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(
            !ci,
            "AWS_ENDPOINT_URL is not set: contract tests need moto (run them with `make test` \
             or scripts/with-moto.sh); in CI this is a failure, not a skip"
        );
        eprintln!(
            "\n*** SKIPPED: AWS_ENDPOINT_URL is not set, so this contract test did not run \
             against moto. Run `make test` (or scripts/with-moto.sh cargo test) to run it. ***\n"
        );
        return None;
    }
    Some(aws_config::defaults(BehaviorVersion::latest()).load().await)
}

/// A name no other test uses: `<prefix>-<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A fresh table made from `schema`.
pub async fn table(config: &SdkConfig, schema: &TableSchema) -> (aws_sdk_dynamodb::Client, String) {
    let client = aws_sdk_dynamodb::Client::new(config);
    let name = unique(&schema.logical_id.to_ascii_lowercase());
    schema
        .create(&client, &name)
        .await
        .expect("table created on moto");
    (client, name)
}

/// A fresh table made from `schema` on the moto of [`aws`], or `None` when moto is absent (the
/// caller then returns: skipped, loudly).
pub async fn fresh_table(schema: &TableSchema) -> Option<(aws_sdk_dynamodb::Client, String)> {
    let config = aws().await?;
    Some(table(&config, schema).await)
}

/// `on_table!(USERS, DynamoUsers::new)`: the adapter built by `new(client, table)` on a fresh
/// table made from the schema, or `return` from the calling test when moto is absent.
macro_rules! on_table {
    ($schema:expr, $new:expr) => {
        match $crate::common::fresh_table(&$schema).await {
            Some((client, table)) => ($new)(client, table),
            None => return,
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_table;

/// `contracts_on_tables!(users: USERS => DynamoUsers::new, ...)`: per port, a module running
/// every engine contract of the port (`m365_engine::contract_tests!`) on a fresh table each.
macro_rules! contracts_on_tables {
    ($($port:ident: $schema:ident => $new:expr),+ $(,)?) => {$(
        mod $port {
            #[allow(unused_imports)]
            use super::*;
            m365_engine::contract_tests!($port, $crate::common::on_table!($schema, $new));
        }
    )+};
}
#[allow(unused_imports)]
pub(crate) use contracts_on_tables;

/// A fresh standard queue with the template's visibility timeout; returns its URL.
pub async fn queue(config: &SdkConfig) -> (aws_sdk_sqs::Client, String) {
    let client = aws_sdk_sqs::Client::new(config);
    let output = client
        .create_queue()
        .queue_name(unique("retry"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "180",
        )
        .send()
        .await
        .expect("queue created on moto");
    (client, output.queue_url.expect("queue url"))
}

/// A fresh secret holding `value`; returns its name and version id.
pub async fn secret(
    config: &SdkConfig,
    value: &str,
) -> (aws_sdk_secretsmanager::Client, String, String) {
    let client = aws_sdk_secretsmanager::Client::new(config);
    let name = unique("m365-sync/test/seal-key");
    let output = client
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .expect("secret created on moto");
    (client, name, output.version_id.expect("version id"))
}

/// A fresh seal key value as the template generates it: 64 lowercase hexadecimal characters.
pub fn seal_key_value() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}
