//! The one Rust description of every DynamoDB table: keys, global secondary indexes and the
//! TTL attribute. Tests and the local stack create tables from it, and a test checks that
//! `template.yaml` declares exactly the same keys and indexes, so the two cannot drift.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::update_time_to_live::UpdateTimeToLiveError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, SseSpecification, TimeToLiveSpecification,
};

/// A global secondary index (projection: all attributes; every key attribute is a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexSchema {
    /// Index name.
    pub name: &'static str,
    /// Partition key attribute.
    pub partition_key: &'static str,
    /// Sort key attribute.
    pub sort_key: Option<&'static str>,
}

/// A table (on-demand billing; every key attribute is a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSchema {
    /// The table's logical id in `template.yaml`.
    pub logical_id: &'static str,
    /// Partition key attribute.
    pub partition_key: &'static str,
    /// Sort key attribute.
    pub sort_key: Option<&'static str>,
    /// Global secondary indexes.
    pub indexes: &'static [IndexSchema],
    /// Attribute holding the expiry time (epoch seconds) when the table uses TTL.
    pub ttl_attribute: Option<&'static str>,
}

/// Partition key attribute name of every table.
pub const PK: &str = "pk";
/// Sort key attribute name of the tables that have one.
pub const SK: &str = "sk";
/// TTL attribute name (epoch seconds) of the tables that expire items.
pub const EXPIRES_AT: &str = "expires_at";

/// Partition key of the `list` index: the kind of item (`USER`, `GROUP`, `TENANT`).
pub const LIST_PK: &str = "list_pk";
/// Sort key of the `list` index: the item's id.
pub const LIST_SK: &str = "list_sk";

/// Index listing every item of a kind (`list_pk` = kind, `list_sk` = id), used by the users
/// and tenants tables.
pub const LIST_INDEX: IndexSchema = IndexSchema {
    name: "list",
    partition_key: LIST_PK,
    sort_key: Some(LIST_SK),
};

/// Users, email claims, groups and their member → group items (`MEMBER#<user>` / `GROUP#<group>`,
/// keyed by the table's own `pk`/`sk`: no index).
pub const USERS: TableSchema = TableSchema {
    logical_id: "UsersTable",
    partition_key: PK,
    sort_key: Some(SK),
    indexes: &[LIST_INDEX],
    ttl_attribute: None,
};

/// Tenants and domain claims.
pub const TENANTS: TableSchema = TableSchema {
    logical_id: "TenantsTable",
    partition_key: PK,
    sort_key: Some(SK),
    indexes: &[LIST_INDEX],
    ttl_attribute: None,
};

/// Bindings of a tenant, by user id.
pub const BINDINGS_BY_TENANT: IndexSchema = IndexSchema {
    name: "by_tenant",
    partition_key: "tenant_id",
    sort_key: Some("user_id"),
};
/// Bindings of a tenant in one state (`tenant_state` = `<tenant id>#<state>`), by user id.
pub const BINDINGS_BY_TENANT_STATE: IndexSchema = IndexSchema {
    name: "by_tenant_state",
    partition_key: "tenant_state",
    sort_key: Some("user_id"),
};

/// One binding per user.
pub const BINDINGS: TableSchema = TableSchema {
    logical_id: "BindingsTable",
    partition_key: PK,
    sort_key: None,
    indexes: &[BINDINGS_BY_TENANT, BINDINGS_BY_TENANT_STATE],
    ttl_attribute: None,
};

/// Events newest first by user.
pub const EVENTS_BY_USER: IndexSchema = IndexSchema {
    name: "by_user",
    partition_key: "user_id",
    sort_key: Some("at_id"),
};
/// Events newest first by tenant.
pub const EVENTS_BY_TENANT: IndexSchema = IndexSchema {
    name: "by_tenant",
    partition_key: "tenant_id",
    sort_key: Some("at_id"),
};
/// Events newest first by kind.
pub const EVENTS_BY_KIND: IndexSchema = IndexSchema {
    name: "by_kind",
    partition_key: "kind",
    sort_key: Some("at_id"),
};

/// Events (90-day TTL).
pub const EVENTS: TableSchema = TableSchema {
    logical_id: "EventsTable",
    partition_key: PK,
    sort_key: None,
    indexes: &[EVENTS_BY_USER, EVENTS_BY_TENANT, EVENTS_BY_KIND],
    ttl_attribute: Some(EXPIRES_AT),
};

/// Failures newest first by tenant (90-day TTL).
pub const FAILURES: TableSchema = TableSchema {
    logical_id: "FailuresTable",
    partition_key: PK,
    sort_key: Some(SK),
    indexes: &[],
    ttl_attribute: Some(EXPIRES_AT),
};

/// The idempotency ledger (TTL from each claim).
pub const LEDGER: TableSchema = TableSchema {
    logical_id: "LedgerTable",
    partition_key: PK,
    sort_key: None,
    indexes: &[],
    ttl_attribute: Some(EXPIRES_AT),
};

/// Every table of the project.
pub const ALL: [TableSchema; 6] = [USERS, TENANTS, BINDINGS, EVENTS, FAILURES, LEDGER];

/// Why a table could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTableFailed {
    /// The request could not be built (a schema mistake).
    #[error("invalid table definition")]
    Build(#[from] BuildError),
    /// DynamoDB refused `CreateTable`.
    #[error("CreateTable failed")]
    Create(#[from] SdkError<CreateTableError>),
    /// DynamoDB refused `UpdateTimeToLive`.
    #[error("UpdateTimeToLive failed")]
    Ttl(#[from] SdkError<UpdateTimeToLiveError>),
}

impl TableSchema {
    /// Every attribute used as a key of the table or of one of its indexes, each once.
    #[must_use]
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut names = vec![self.partition_key];
        names.extend(self.sort_key);
        for index in self.indexes {
            names.push(index.partition_key);
            names.extend(index.sort_key);
        }
        let mut seen = Vec::with_capacity(names.len());
        for name in names {
            if !seen.contains(&name) {
                seen.push(name);
            }
        }
        seen
    }

    /// Creates the table under `name` (on demand, encrypted) and enables its TTL, as the
    /// template does. Point-in-time recovery is a deployment concern left to the template.
    ///
    /// # Errors
    /// [`CreateTableFailed`] when DynamoDB refuses either call.
    pub async fn create(&self, client: &Client, name: &str) -> Result<(), CreateTableFailed> {
        let mut request = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .sse_specification(SseSpecification::builder().enabled(true).build())
            .set_key_schema(Some(key_schema(self.partition_key, self.sort_key)?));
        for attribute in self.key_attributes() {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()?,
            );
        }
        for index in self.indexes {
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(index.name)
                    .set_key_schema(Some(key_schema(index.partition_key, index.sort_key)?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()?,
            );
        }
        request.send().on_heap().await?;
        if let Some(attribute) = self.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .on_heap()
                .await?;
        }
        Ok(())
    }
}

fn key_schema(
    partition_key: &str,
    sort_key: Option<&str>,
) -> Result<Vec<KeySchemaElement>, BuildError> {
    let mut keys = vec![
        KeySchemaElement::builder()
            .attribute_name(partition_key)
            .key_type(KeyType::Hash)
            .build()?,
    ];
    if let Some(sort_key) = sort_key {
        keys.push(
            KeySchemaElement::builder()
                .attribute_name(sort_key)
                .key_type(KeyType::Range)
                .build()?,
        );
    }
    Ok(keys)
}
