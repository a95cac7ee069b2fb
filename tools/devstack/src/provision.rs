//! Creating the template's tables, queues, secrets and SES email identities on moto, in
//! dependency order, and recording what their references resolve to locally.
//!
//! An `AWS::SES::EmailIdentity` is created with SES v2 `CreateEmailIdentity`, as CloudFormation
//! does; the identity is then the welcome email's verified sender on the local stack (moto
//! considers a created identity verified; on AWS its owner follows SES's verification link).
//!
//! Local names are the template's own (`TableName`, `QueueName`, `Name`, resolved with the
//! parameters), so they are deterministic; a resource without a name gets
//! `<stack>-<logical id>`. Resources that already exist (devstack restarted against the same
//! moto) are reused.

use std::collections::BTreeMap;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value as Json;

use crate::intrinsic::{ResolveError, Scope, scalar_text};
use crate::template::{FUNCTION, Template};

/// The account id moto uses by default; it appears in every local ARN.
pub const ACCOUNT_ID: &str = "123456789012";

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A resource's properties refer to something that cannot be resolved.
    #[error("resolving {logical_id}")]
    Resolve {
        /// Logical id.
        logical_id: String,
        /// Why.
        #[source]
        source: ResolveError,
    },
    /// Resources refer to each other in a cycle, or to resources never created.
    #[error("cannot order the creation of {0:?}")]
    Unordered(Vec<String>),
    /// A property has the wrong shape.
    #[error("{logical_id}: {problem}")]
    Shape {
        /// Logical id.
        logical_id: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// DynamoDB refused a call.
    #[error("creating table {logical_id} on moto")]
    Dynamo {
        /// Logical id.
        logical_id: String,
        /// The SDK error.
        #[source]
        source: Box<aws_sdk_dynamodb::Error>,
    },
    /// SQS refused a call.
    #[error("creating queue {logical_id} on moto")]
    Sqs {
        /// Logical id.
        logical_id: String,
        /// The SDK error.
        #[source]
        source: Box<aws_sdk_sqs::Error>,
    },
    /// SES refused a call.
    #[error("creating SES identity {logical_id} on moto")]
    Ses {
        /// Logical id.
        logical_id: String,
        /// The SDK error.
        #[source]
        source: Box<aws_sdk_sesv2::Error>,
    },
    /// Secrets Manager refused a call.
    #[error("creating secret {logical_id} on moto")]
    Secrets {
        /// Logical id.
        logical_id: String,
        /// The SDK error.
        #[source]
        source: Box<aws_sdk_secretsmanager::Error>,
    },
    /// SNS refused a call.
    #[error("creating SNS resource {logical_id} on moto")]
    Sns {
        /// Logical id.
        logical_id: String,
        /// The SDK error.
        #[source]
        source: Box<aws_sdk_sns::Error>,
    },
}

/// What was created, by logical id.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Provisioned {
    /// Table logical id → table name.
    pub tables: BTreeMap<String, String>,
    /// Queue logical id → queue URL.
    pub queues: BTreeMap<String, String>,
    /// Queue ARN → queue URL (to find an event source's queue).
    pub queue_urls_by_arn: BTreeMap<String, String>,
    /// Secret logical id → secret ARN.
    pub secrets: BTreeMap<String, String>,
    /// SES email identity logical id → identity (an address or a domain).
    pub email_identities: BTreeMap<String, String>,
    /// SNS topic logical id → topic ARN (the admin alerts topic, R-OPS-1).
    pub topics: BTreeMap<String, String>,
}

/// The inputs of provisioning.
#[derive(Debug)]
pub struct ProvisionInput<'a> {
    /// The template.
    pub template: &'a Template,
    /// Parameter values (defaults already applied) and pseudo parameters.
    pub parameters: BTreeMap<String, String>,
    /// Stack name used for unnamed resources.
    pub stack: &'a str,
    /// Secret values given on the command line, by logical id or secret name.
    pub secret_values: &'a BTreeMap<String, SecretString>,
}

/// Creates every table, queue and secret of the template and returns the scope resolving
/// references to them (functions and other resources get deterministic local values).
///
/// # Errors
/// [`ProvisionError`] when a resource cannot be resolved or moto refuses it.
pub async fn provision(
    config: &SdkConfig,
    input: ProvisionInput<'_>,
) -> Result<(Scope, Provisioned), ProvisionError> {
    let template = input.template;
    let region = input
        .parameters
        .get("AWS::Region")
        .cloned()
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut scope = Scope::new(
        input.parameters.clone(),
        template.resources.iter().map(|r| r.logical_id.clone()),
    );
    let dynamo = aws_sdk_dynamodb::Client::new(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let secrets = aws_sdk_secretsmanager::Client::new(config);
    let ses = aws_sdk_sesv2::Client::new(config);
    let sns = aws_sdk_sns::Client::new(config);
    let mut out = Provisioned::default();

    // Resources devstack does not create still resolve, to deterministic local values.
    for resource in &template.resources {
        let id = &resource.logical_id;
        match resource.kind.as_str() {
            "AWS::DynamoDB::Table"
            | "AWS::SQS::Queue"
            | "AWS::SecretsManager::Secret"
            | "AWS::SES::EmailIdentity" => {}
            "AWS::SNS::Topic" | "AWS::SNS::Subscription" => {}
            FUNCTION => {
                let name = Template::function_name(resource, input.stack);
                let arn = format!("arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}");
                scope.define(id, name, [("Arn", arn)]);
            }
            "AWS::IAM::ManagedPolicy" => {
                let arn = format!("arn:aws:iam::{ACCOUNT_ID}:policy/{}-{id}", input.stack);
                scope.define(id, arn.clone(), [("PolicyArn", arn)]);
            }
            // devstack creates no KMS keys (it has no KMS client): a key resolves to nothing,
            // so the functions' optional key variable is blank and secrets use Secrets
            // Manager's default key, as they would without the variable.
            "AWS::KMS::Key" => scope.define(
                id,
                String::new(),
                [("Arn", String::new()), ("KeyId", String::new())],
            ),
            _ => scope.define(id, id.clone(), []),
        }
    }

    let mut pending: Vec<_> = template
        .resources
        .iter()
        .filter(|r| !scope.is_defined(&r.logical_id))
        .collect();
    while !pending.is_empty() {
        let mut waiting = Vec::new();
        let before = pending.len();
        for resource in pending {
            let id = resource.logical_id.clone();
            let properties =
                match scope.resolve(&serde_norway::Value::Mapping(resource.properties.clone())) {
                    Ok(p) => p,
                    Err(ResolveError::NotYet(_)) => {
                        waiting.push(resource);
                        continue;
                    }
                    Err(source) => {
                        return Err(ProvisionError::Resolve {
                            logical_id: id,
                            source,
                        });
                    }
                };
            match resource.kind.as_str() {
                "AWS::DynamoDB::Table" => {
                    let name = text(&properties, "TableName")
                        .unwrap_or_else(|| format!("{}-{id}", input.stack));
                    create_table(&dynamo, &id, &name, &properties).await?;
                    let arn = format!("arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}");
                    scope.define(&id, name.clone(), [("Arn", arn)]);
                    out.tables.insert(id, name);
                }
                "AWS::SQS::Queue" => {
                    let (url, arn, name) =
                        create_queue(&sqs, &id, input.stack, &properties).await?;
                    scope.define(
                        &id,
                        url.clone(),
                        [
                            ("Arn", arn.clone()),
                            ("QueueName", name),
                            ("QueueUrl", url.clone()),
                        ],
                    );
                    out.queue_urls_by_arn.insert(arn, url.clone());
                    out.queues.insert(id, url);
                }
                "AWS::SecretsManager::Secret" => {
                    let name = text(&properties, "Name")
                        .unwrap_or_else(|| format!("{}-{id}", input.stack));
                    let given = input
                        .secret_values
                        .get(&id)
                        .or_else(|| input.secret_values.get(&name));
                    let arn = create_secret(&secrets, &id, &name, &properties, given).await?;
                    scope.define(&id, arn.clone(), [("Id", arn.clone())]);
                    out.secrets.insert(id, arn);
                }
                "AWS::SES::EmailIdentity" => {
                    let identity = text(&properties, "EmailIdentity")
                        .ok_or_else(|| shape(&id, "EmailIdentity is missing"))?;
                    create_email_identity(&ses, &id, &identity).await?;
                    scope.define(&id, identity.clone(), []);
                    out.email_identities.insert(id, identity);
                }
                "AWS::SNS::Topic" => {
                    let name = text(&properties, "TopicName")
                        .unwrap_or_else(|| format!("{}-{id}", input.stack));
                    let arn = create_topic(&sns, &id, &name).await?;
                    scope.define(
                        &id,
                        arn.clone(),
                        [("TopicArn", arn.clone()), ("TopicName", name)],
                    );
                    out.topics.insert(id, arn);
                }
                // Conditions are not evaluated: a subscription whose endpoint resolves empty
                // (AdminAlertsEmailSubscription without AlertEmail) is the one its condition
                // would skip, and is skipped.
                "AWS::SNS::Subscription" => {
                    let endpoint = text(&properties, "Endpoint").unwrap_or_default();
                    let arn = if endpoint.is_empty() {
                        String::new()
                    } else {
                        subscribe(&sns, &id, &properties, &endpoint).await?
                    };
                    scope.define(&id, arn, []);
                }
                _ => {}
            }
        }
        if waiting.len() == before {
            return Err(ProvisionError::Unordered(
                waiting.iter().map(|r| r.logical_id.clone()).collect(),
            ));
        }
        pending = waiting;
    }
    Ok((scope, out))
}

fn text(properties: &Json, name: &str) -> Option<String> {
    properties.get(name).and_then(scalar_text)
}

fn shape(logical_id: &str, problem: &'static str) -> ProvisionError {
    ProvisionError::Shape {
        logical_id: logical_id.to_owned(),
        problem,
    }
}

fn key_schema(id: &str, keys: Option<&Json>) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    let keys = keys
        .and_then(Json::as_array)
        .ok_or_else(|| shape(id, "KeySchema is not a list"))?;
    keys.iter()
        .map(|k| {
            let name = k
                .get("AttributeName")
                .and_then(Json::as_str)
                .ok_or_else(|| shape(id, "key without AttributeName"))?;
            let kind = match k.get("KeyType").and_then(Json::as_str) {
                Some("HASH") => KeyType::Hash,
                Some("RANGE") => KeyType::Range,
                _ => return Err(shape(id, "KeyType is neither HASH nor RANGE")),
            };
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|_| shape(id, "invalid key"))
        })
        .collect()
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    id: &str,
    name: &str,
    properties: &Json,
) -> Result<(), ProvisionError> {
    let dynamo_error = |e: aws_sdk_dynamodb::Error| ProvisionError::Dynamo {
        logical_id: id.to_owned(),
        source: Box::new(e),
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .set_key_schema(Some(key_schema(id, properties.get("KeySchema"))?));
    // Local tables are on demand whatever the template's billing mode.
    request = request.billing_mode(BillingMode::PayPerRequest);
    for definition in properties
        .get("AttributeDefinitions")
        .and_then(Json::as_array)
        .ok_or_else(|| shape(id, "AttributeDefinitions is not a list"))?
    {
        let attribute = definition
            .get("AttributeName")
            .and_then(Json::as_str)
            .ok_or_else(|| shape(id, "attribute without AttributeName"))?;
        let kind = match definition.get("AttributeType").and_then(Json::as_str) {
            Some("S") => ScalarAttributeType::S,
            Some("N") => ScalarAttributeType::N,
            Some("B") => ScalarAttributeType::B,
            _ => return Err(shape(id, "AttributeType is not S, N or B")),
        };
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(kind)
                .build()
                .map_err(|_| shape(id, "invalid attribute definition"))?,
        );
    }
    if let Some(indexes) = properties
        .get("GlobalSecondaryIndexes")
        .and_then(Json::as_array)
    {
        for index in indexes {
            let index_name = index
                .get("IndexName")
                .and_then(Json::as_str)
                .ok_or_else(|| shape(id, "index without IndexName"))?;
            let projection = index.get("Projection");
            let projection_type = match projection
                .and_then(|p| p.get("ProjectionType"))
                .and_then(Json::as_str)
            {
                Some("KEYS_ONLY") => ProjectionType::KeysOnly,
                Some("INCLUDE") => ProjectionType::Include,
                _ => ProjectionType::All,
            };
            let non_key: Option<Vec<String>> = projection
                .and_then(|p| p.get("NonKeyAttributes"))
                .and_then(Json::as_array)
                .map(|a| a.iter().filter_map(scalar_text).collect());
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index_name)
                    .set_key_schema(Some(key_schema(id, index.get("KeySchema"))?))
                    .projection(
                        Projection::builder()
                            .projection_type(projection_type)
                            .set_non_key_attributes(non_key)
                            .build(),
                    )
                    .build()
                    .map_err(|_| shape(id, "invalid index"))?,
            );
        }
    }
    match request.send().await {
        Ok(_) => {}
        Err(e) => {
            let e = aws_sdk_dynamodb::Error::from(e);
            if matches!(e, aws_sdk_dynamodb::Error::ResourceInUseException(_)) {
                tracing::info!(table = name, "table exists already; reusing it");
                return Ok(());
            }
            return Err(dynamo_error(e));
        }
    }
    if let Some(ttl) = properties.get("TimeToLiveSpecification")
        && ttl.get("Enabled") == Some(&Json::Bool(true))
        && let Some(attribute) = ttl.get("AttributeName").and_then(Json::as_str)
    {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(attribute)
                    .build()
                    .map_err(|_| shape(id, "invalid TimeToLiveSpecification"))?,
            )
            .send()
            .await
            .map_err(|e| dynamo_error(e.into()))?;
    }
    Ok(())
}

/// Creates a queue; returns its URL, ARN and name.
async fn create_queue(
    client: &aws_sdk_sqs::Client,
    id: &str,
    stack: &str,
    properties: &Json,
) -> Result<(String, String, String), ProvisionError> {
    let sqs_error = |e: aws_sdk_sqs::Error| ProvisionError::Sqs {
        logical_id: id.to_owned(),
        source: Box::new(e),
    };
    let fifo = properties.get("FifoQueue") == Some(&Json::Bool(true));
    let name = text(properties, "QueueName").unwrap_or_else(|| {
        if fifo {
            format!("{stack}-{id}.fifo")
        } else {
            format!("{stack}-{id}")
        }
    });
    let mut request = client.create_queue().queue_name(&name);
    for (property, attribute) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
        ("FifoQueue", QueueAttributeName::FifoQueue),
        (
            "ContentBasedDeduplication",
            QueueAttributeName::ContentBasedDeduplication,
        ),
    ] {
        if let Some(value) = text(properties, property) {
            request = request.attributes(attribute, value);
        }
    }
    if let Some(policy) = properties.get("RedrivePolicy") {
        // The template gives a mapping; SQS takes its JSON text (maxReceiveCount as a number).
        let policy = match policy {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    let url = match request.send().await {
        Ok(output) => output.queue_url,
        Err(e) => {
            let e = aws_sdk_sqs::Error::from(e);
            if !matches!(e, aws_sdk_sqs::Error::QueueNameExists(_)) {
                return Err(sqs_error(e));
            }
            tracing::info!(queue = %name, "queue exists with other attributes; reusing it");
            client
                .get_queue_url()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| sqs_error(e.into()))?
                .queue_url
        }
    }
    .ok_or_else(|| shape(id, "moto returned no queue URL"))?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sqs_error(e.into()))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| shape(id, "moto returned no queue ARN"))?;
    Ok((url, arn, name))
}

/// Creates a secret (or reuses an existing one); returns its ARN. The value is, in order:
/// the one given on the command line, `SecretString`, or one made like
/// `GenerateSecretString` would.
async fn create_topic(
    client: &aws_sdk_sns::Client,
    id: &str,
    name: &str,
) -> Result<String, ProvisionError> {
    let output =
        client
            .create_topic()
            .name(name)
            .send()
            .await
            .map_err(|e| ProvisionError::Sns {
                logical_id: id.to_owned(),
                source: Box::new(e.into()),
            })?;
    output
        .topic_arn
        .ok_or_else(|| shape(id, "moto returned no topic ARN"))
}

async fn subscribe(
    client: &aws_sdk_sns::Client,
    id: &str,
    properties: &Json,
    endpoint: &str,
) -> Result<String, ProvisionError> {
    let topic = text(properties, "TopicArn").ok_or_else(|| shape(id, "TopicArn is missing"))?;
    let protocol = text(properties, "Protocol").ok_or_else(|| shape(id, "Protocol is missing"))?;
    let output = client
        .subscribe()
        .topic_arn(topic)
        .protocol(protocol)
        .endpoint(endpoint)
        .send()
        .await
        .map_err(|e| ProvisionError::Sns {
            logical_id: id.to_owned(),
            source: Box::new(e.into()),
        })?;
    Ok(output.subscription_arn.unwrap_or_default())
}

async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    id: &str,
    name: &str,
    properties: &Json,
    given: Option<&SecretString>,
) -> Result<String, ProvisionError> {
    let secrets_error = |e: aws_sdk_secretsmanager::Error| ProvisionError::Secrets {
        logical_id: id.to_owned(),
        source: Box::new(e),
    };
    let value: SecretString = match (given, text(properties, "SecretString")) {
        (Some(v), _) => v.clone(),
        (None, Some(v)) => SecretString::from(v),
        (None, None) => generate(
            id,
            properties
                .get("GenerateSecretString")
                .unwrap_or(&Json::Null),
        )?,
    };
    let created = client
        .create_secret()
        .name(name)
        .set_description(text(properties, "Description"))
        .secret_string(value.expose_secret())
        .send()
        .await;
    match created {
        Ok(output) => output
            .arn
            .ok_or_else(|| shape(id, "moto returned no secret ARN")),
        Err(e) => {
            let e = aws_sdk_secretsmanager::Error::from(e);
            if !matches!(e, aws_sdk_secretsmanager::Error::ResourceExistsException(_)) {
                return Err(secrets_error(e));
            }
            if given.is_some() {
                client
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value.expose_secret())
                    .send()
                    .await
                    .map_err(|e| secrets_error(e.into()))?;
            }
            client
                .describe_secret()
                .secret_id(name)
                .send()
                .await
                .map_err(|e| secrets_error(e.into()))?
                .arn
                .ok_or_else(|| shape(id, "moto returned no secret ARN"))
        }
    }
}

/// Creates an SES email identity (or reuses an existing one).
async fn create_email_identity(
    client: &aws_sdk_sesv2::Client,
    id: &str,
    identity: &str,
) -> Result<(), ProvisionError> {
    match client
        .create_email_identity()
        .email_identity(identity)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = aws_sdk_sesv2::Error::from(e);
            if matches!(e, aws_sdk_sesv2::Error::AlreadyExistsException(_)) {
                tracing::info!(identity, "SES identity exists already; reusing it");
                return Ok(());
            }
            Err(ProvisionError::Ses {
                logical_id: id.to_owned(),
                source: Box::new(e),
            })
        }
    }
}

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A value made as Secrets Manager's `GenerateSecretString` describes: a random password
/// (length, excluded characters and classes, one of each included class by default),
/// optionally placed under `GenerateStringKey` inside `SecretStringTemplate`.
fn generate(id: &str, spec: &Json) -> Result<SecretString, ProvisionError> {
    let flag =
        |name: &str, default: bool| spec.get(name).and_then(Json::as_bool).unwrap_or(default);
    let length = spec
        .get("PasswordLength")
        .and_then(scalar_text)
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(32);
    let excluded: Vec<char> = text(spec, "ExcludeCharacters")
        .unwrap_or_default()
        .chars()
        .collect();
    let mut classes: Vec<Vec<char>> = Vec::new();
    for (skip, chars) in [
        (
            flag("ExcludeLowercase", false),
            ('a'..='z').collect::<String>(),
        ),
        (
            flag("ExcludeUppercase", false),
            ('A'..='Z').collect::<String>(),
        ),
        (
            flag("ExcludeNumbers", false),
            ('0'..='9').collect::<String>(),
        ),
        (flag("ExcludePunctuation", false), PUNCTUATION.to_owned()),
        (!flag("IncludeSpace", false), " ".to_owned()),
    ] {
        if skip {
            continue;
        }
        let class: Vec<char> = chars.chars().filter(|c| !excluded.contains(c)).collect();
        if !class.is_empty() {
            classes.push(class);
        }
    }
    let alphabet: Vec<char> = classes.iter().flatten().copied().collect();
    if alphabet.is_empty() || length == 0 {
        return Err(shape(
            id,
            "GenerateSecretString leaves no characters to use",
        ));
    }
    let require_each = flag("RequireEachIncludedType", true) && length >= classes.len();
    let mut rng = rand::rng();
    let password = loop {
        let candidate: String = (0..length)
            .map(|_| alphabet[rng.random_range(0..alphabet.len())])
            .collect();
        if !require_each
            || classes
                .iter()
                .all(|c| candidate.chars().any(|x| c.contains(&x)))
        {
            break candidate;
        }
    };
    match (
        text(spec, "SecretStringTemplate"),
        text(spec, "GenerateStringKey"),
    ) {
        (Some(template), Some(key)) => {
            let Ok(Json::Object(mut object)) = serde_json::from_str::<Json>(&template) else {
                return Err(shape(id, "SecretStringTemplate is not a JSON object"));
            };
            object.insert(key, Json::String(password));
            Ok(SecretString::from(Json::Object(object).to_string()))
        }
        _ => Ok(SecretString::from(password)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn generated_secrets_follow_the_template_rules() {
        // The seal key rule of template.yaml: 64 lowercase hexadecimal characters.
        let spec = serde_json::json!({
            "PasswordLength": 64, "ExcludeUppercase": true, "ExcludePunctuation": true,
            "ExcludeCharacters": "ghijklmnopqrstuvwxyz", "RequireEachIncludedType": false
        });
        let key = generate("SealKeySecret", &spec).unwrap();
        let key = key.expose_secret();
        assert_eq!(key.len(), 64);
        assert!(
            key.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );

        let spec = serde_json::json!({
            "SecretStringTemplate": "{\"client_id\": \"abc\"}", "GenerateStringKey": "client_secret",
            "PasswordLength": 40, "ExcludePunctuation": true
        });
        let value: Json =
            serde_json::from_str(generate("OAuth", &spec).unwrap().expose_secret()).unwrap();
        assert_eq!(value["client_id"], "abc");
        let secret = value["client_secret"].as_str().unwrap();
        assert_eq!(secret.len(), 40);
        assert!(secret.chars().all(char::is_alphanumeric));
    }
}
