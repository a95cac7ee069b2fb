//! `template.yaml` must declare exactly the tables of `m365_aws::schema`: same keys, same
//! indexes, same TTL attribute, string key attributes, on-demand, PITR and encryption. The
//! adapters and the contract tests use the schema; the deployment uses the template; this test
//! keeps them from drifting apart.

use std::collections::BTreeSet;
use std::path::PathBuf;

use m365_aws::schema::{self, TableSchema};
use serde_norway::Value;

fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml is readable");
    serde_norway::from_str(&text).expect("template.yaml is YAML")
}

fn resources(template: &Value) -> &serde_norway::Mapping {
    template["Resources"]
        .as_mapping()
        .expect("Resources is a mapping")
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value:?}"))
}

fn key_schema(value: &Value) -> (String, Option<String>) {
    let mut hash = None;
    let mut range = None;
    for element in value.as_sequence().expect("KeySchema is a list") {
        let name = text(&element["AttributeName"]).to_owned();
        match text(&element["KeyType"]) {
            "HASH" => hash = Some(name),
            "RANGE" => range = Some(name),
            other => panic!("unknown KeyType {other}"),
        }
    }
    (hash.expect("a HASH key"), range)
}

fn declared_tables(template: &Value) -> BTreeSet<String> {
    resources(template)
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(id, _)| text(id).to_owned())
        .collect()
}

fn check(table: &TableSchema, template: &Value) {
    let id = table.logical_id;
    let resource = &resources(template)[id];
    assert_eq!(
        resource["Type"].as_str(),
        Some("AWS::DynamoDB::Table"),
        "{id}"
    );
    let properties = &resource["Properties"];

    assert_eq!(
        properties["BillingMode"].as_str(),
        Some("PAY_PER_REQUEST"),
        "{id} billing"
    );
    assert_eq!(
        properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true),
        "{id} PITR"
    );
    assert_eq!(
        properties["SSESpecification"]["SSEEnabled"].as_bool(),
        Some(true),
        "{id} SSE"
    );

    let (hash, range) = key_schema(&properties["KeySchema"]);
    assert_eq!(hash, table.partition_key, "{id} partition key");
    assert_eq!(range.as_deref(), table.sort_key, "{id} sort key");

    let mut attributes = BTreeSet::new();
    for definition in properties["AttributeDefinitions"]
        .as_sequence()
        .expect("definitions")
    {
        assert_eq!(
            definition["AttributeType"].as_str(),
            Some("S"),
            "{id}: {definition:?}"
        );
        attributes.insert(text(&definition["AttributeName"]).to_owned());
    }
    let expected: BTreeSet<String> = table
        .key_attributes()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(attributes, expected, "{id} attribute definitions");

    let declared_indexes = properties["GlobalSecondaryIndexes"].as_sequence().cloned();
    let declared_indexes = declared_indexes.unwrap_or_default();
    assert_eq!(
        declared_indexes.len(),
        table.indexes.len(),
        "{id} index count"
    );
    for index in table.indexes {
        let declared = declared_indexes
            .iter()
            .find(|candidate| candidate["IndexName"].as_str() == Some(index.name))
            .unwrap_or_else(|| panic!("{id} lacks index {}", index.name));
        let (hash, range) = key_schema(&declared["KeySchema"]);
        assert_eq!(
            hash, index.partition_key,
            "{id}.{} partition key",
            index.name
        );
        assert_eq!(
            range.as_deref(),
            index.sort_key,
            "{id}.{} sort key",
            index.name
        );
        assert_eq!(
            declared["Projection"]["ProjectionType"].as_str(),
            Some("ALL")
        );
    }

    let ttl = &properties["TimeToLiveSpecification"];
    match table.ttl_attribute {
        Some(attribute) => {
            assert_eq!(
                ttl["AttributeName"].as_str(),
                Some(attribute),
                "{id} TTL attribute"
            );
            assert_eq!(ttl["Enabled"].as_bool(), Some(true), "{id} TTL enabled");
        }
        None => assert!(ttl.is_null(), "{id} has a TTL the schema does not know"),
    }
}

#[test]
fn the_template_declares_exactly_the_schema_tables() {
    let template = template();
    let declared = declared_tables(&template);
    let known: BTreeSet<String> = schema::ALL
        .iter()
        .map(|t| t.logical_id.to_owned())
        .collect();
    assert_eq!(declared, known);
}

#[test]
fn every_template_table_has_the_schema_keys_indexes_and_ttl() {
    let template = template();
    for table in &schema::ALL {
        check(table, &template);
    }
}

#[test]
fn the_retry_queue_dead_letters_after_five_receives_with_six_times_the_function_timeout() {
    // R-BIND-6: after the retry budget the message lands in the DLQ.
    let template = template();
    let timeout = template["Globals"]["Function"]["Timeout"]
        .as_u64()
        .expect("global timeout");
    let queue = &resources(&template)["RetryQueue"]["Properties"];
    let visibility = queue["VisibilityTimeout"]
        .as_u64()
        .expect("visibility timeout");
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} < 6 x {timeout}"
    );
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64(), Some(5));
}

#[test]
fn the_tables_expiring_items_are_events_failures_and_the_ledger() {
    // R-AUD-1: events expire (90 days); the ledger's claims expire.
    let with_ttl: Vec<_> = schema::ALL
        .iter()
        .filter(|t| t.ttl_attribute.is_some())
        .map(|t| t.logical_id)
        .collect();
    assert_eq!(with_ttl, ["EventsTable", "FailuresTable", "LedgerTable"]);
}

#[test]
fn tenant_token_policies_cover_exactly_the_prefix_functions_are_given() {
    // R-CONN-1, R-SAFE-2: token secrets are reachable only under m365-sync/<stage>/tenant/.
    let template = template();
    let prefix =
        &template["Globals"]["Function"]["Environment"]["Variables"]["M365_TENANT_SECRET_PREFIX"];
    let Value::Tagged(prefix) = prefix else {
        panic!("the prefix is a !Sub: {prefix:?}")
    };
    let prefix = text(&prefix.value).to_owned();
    assert!(prefix.ends_with("/tenant/"), "{prefix}");
    for policy in ["TenantTokensReadPolicy", "TenantTokensWritePolicy"] {
        let statements = resources(&template)[policy]["Properties"]["PolicyDocument"]["Statement"]
            .as_sequence()
            .expect("statements");
        for statement in statements {
            for resource in statement["Resource"].as_sequence().expect("resources") {
                let Value::Tagged(arn) = resource else {
                    panic!("{policy}: {resource:?}")
                };
                let arn = text(&arn.value);
                assert!(
                    arn.ends_with(&format!(":secret:{prefix}*")),
                    "{policy}: {arn}"
                );
            }
        }
    }
}
