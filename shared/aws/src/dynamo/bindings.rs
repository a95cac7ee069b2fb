//! Bindings, one item per user, written with optimistic versions and listed per tenant
//! (optionally per state) through two indexes ordered by user id.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use m365_engine::error::{Entity, Error};
use m365_engine::model::{Binding, BindingState, Page, PageRequest, TenantId, UserId};
use m365_engine::ports::{BindingStore, Expect};

use super::{
    DOC, Item, VERSION, doc, dynamo_error, from_doc, is_conditional_failure, n, query_page, s,
};
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
    client: Client,
    table: String,
}

impl DynamoBindings {
    /// A store on `table` (a table created from [`crate::schema::BINDINGS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
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
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(user.as_str()))
            .consistent_read(true)
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        output.item.map(|item| from_doc(&item)).transpose()
    }

    async fn put(&self, binding: &Binding, expect: Expect) -> Result<Binding, Error> {
        let mut stored = binding.clone();
        let request = self.client.put_item().table_name(&self.table);
        let (request, expected) = match expect {
            Expect::Absent => {
                stored.version = 1;
                let request = request
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", PK);
                (request, 0)
            }
            Expect::Version(version) => {
                stored.version = version + 1;
                let request = request
                    .condition_expression("#version = :expected")
                    .expression_attribute_names("#version", VERSION)
                    .expression_attribute_values(":expected", n(version));
                (request, version)
            }
        };
        match request
            .set_item(Some(Self::item(&stored)?))
            .send()
            .on_heap()
            .await
        {
            Ok(_) => Ok(stored),
            Err(error) if is_conditional_failure(&error) => {
                Err(Error::stale(Entity::Binding, expected))
            }
            Err(error) => Err(dynamo_error(error)),
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
            .client
            .query()
            .table_name(&self.table)
            .index_name(index.name)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", index.partition_key)
            .expression_attribute_values(":v", s(value));
        query_page(query, page, &listing, &[PK, index.partition_key, USER_ID]).await
    }
}
