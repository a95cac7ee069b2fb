//! Bindings, one item per user, written with optimistic versions and listed per tenant
//! (optionally per state) through two indexes ordered by user id.

use aws_sdk_dynamodb::Client;
use m365_engine::error::{Entity, Error};
use m365_engine::model::{Binding, BindingState, Page, PageRequest, TenantId, UserId};
use m365_engine::ports::{BindingStore, Expect};

use super::{Condition, DOC, Item, Table, VERSION, doc, from_doc, n, pk_key, query_page, s};
use crate::schema::{BINDINGS_BY_TENANT, BINDINGS_BY_TENANT_STATE, PK};

const TENANT_ID: &str = "tenant_id";
const TENANT_STATE: &str = "tenant_state";
const USER_ID: &str = "user_id";

fn tenant_state(tenant: &TenantId, state: BindingState) -> String {
    format!("{tenant}#{}", state.as_str())
}

/// [`BindingStore`] on the bindings table.
#[derive(Debug, Clone)]
pub struct DynamoBindings {
    table: Table,
}

impl DynamoBindings {
    /// A store on `table` (a table created from [`crate::schema::BINDINGS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    fn item(binding: &Binding) -> Result<Item, Error> {
        Ok(Item::from([
            (PK.to_owned(), s(binding.user_id.as_str())),
            (USER_ID.to_owned(), s(binding.user_id.as_str())),
            (TENANT_ID.to_owned(), s(binding.tenant_id.as_str())),
            (
                TENANT_STATE.to_owned(),
                s(tenant_state(&binding.tenant_id, binding.state)),
            ),
            (VERSION.to_owned(), n(binding.version)),
            (DOC.to_owned(), doc(binding)?),
        ]))
    }
}

impl BindingStore for DynamoBindings {
    async fn get(&self, user: &UserId) -> Result<Option<Binding>, Error> {
        self.table
            .get(pk_key(user.as_str()))
            .await?
            .map(|item| from_doc(&item))
            .transpose()
    }

    async fn put(&self, binding: &Binding, expect: Expect) -> Result<Binding, Error> {
        let mut stored = binding.clone();
        let (condition, expected) = match expect {
            Expect::Absent => (Condition::absent(), 0),
            Expect::Version(version) => (Condition::version(version), version),
        };
        stored.version = expected + 1;
        if self.table.put_if(Self::item(&stored)?, &condition).await? {
            Ok(stored)
        } else {
            Err(Error::stale(Entity::Binding, expected))
        }
    }

    async fn list_by_tenant(
        &self,
        tenant: &TenantId,
        state: Option<BindingState>,
        page: &PageRequest,
    ) -> Result<Page<Binding>, Error> {
        let (index, value, listing) = match state {
            None => (
                BINDINGS_BY_TENANT,
                tenant.to_string(),
                format!("bindings/{tenant}"),
            ),
            Some(state) => (
                BINDINGS_BY_TENANT_STATE,
                tenant_state(tenant, state),
                format!("bindings/{}", tenant_state(tenant, state)),
            ),
        };
        let query = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .index_name(index.name)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", index.partition_key)
            .expression_attribute_values(":v", s(value));
        query_page(query, page, &listing, &[PK, index.partition_key, USER_ID]).await
    }
}
