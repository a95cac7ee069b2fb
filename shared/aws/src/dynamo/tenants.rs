//! Tenants and their verified-domain claims (one tenant per domain, R-CONN-2), in the tenants
//! table. Claims are written in one transaction so a connect claims all its domains or none.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use m365_engine::error::{Conflict, Entity, Error, FieldProblem, InvalidInput};
use m365_engine::model::{DomainName, Page, PageRequest, Tenant, TenantId};
use m365_engine::ports::TenantStore;

use super::{
    DOC, Item, VERSION, doc, dynamo_error, failed_conditions, from_doc, is_conditional_failure, n,
    query_page, s, string,
};
use crate::schema::{LIST_INDEX, LIST_PK, LIST_SK, PK, SK};

const TENANT: &str = "TENANT";
const DOMAIN: &str = "DOMAIN";
const TENANT_ID: &str = "tenant_id";

/// DynamoDB writes at most 100 items in one transaction.
pub const MAX_DOMAINS_PER_CLAIM: usize = 100;

fn tenant_pk(id: &TenantId) -> String {
    format!("TENANT#{id}")
}

fn domain_pk(domain: &DomainName) -> String {
    format!("DOMAIN#{domain}")
}

const LIST_KEYS: [&str; 4] = [PK, SK, LIST_PK, LIST_SK];

/// [`TenantStore`] on the tenants table.
#[derive(Debug, Clone)]
pub struct DynamoTenants {
    client: Client,
    table: String,
}

impl DynamoTenants {
    /// A store on `table` (a table created from [`crate::schema::TENANTS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn item(tenant: &Tenant) -> Result<Item, Error> {
        Ok(Item::from([
            (PK.to_owned(), s(tenant_pk(&tenant.id))),
            (SK.to_owned(), s(TENANT)),
            (LIST_PK.to_owned(), s(TENANT)),
            (LIST_SK.to_owned(), s(tenant.id.as_str())),
            (VERSION.to_owned(), n(tenant.version)),
            (DOC.to_owned(), doc(tenant)?),
        ]))
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(output.item)
    }

    /// The first of `domains` held by a tenant other than `tenant`, with its holder.
    async fn first_foreign_claim(
        &self,
        tenant: &TenantId,
        domains: &[&DomainName],
    ) -> Result<Option<(DomainName, TenantId)>, Error> {
        for &domain in domains {
            if let Some(owner) = self.tenant_for_domain(domain).await?
                && &owner != tenant
            {
                return Ok(Some((domain.clone(), owner)));
            }
        }
        Ok(None)
    }
}

impl TenantStore for DynamoTenants {
    async fn create(&self, tenant: &Tenant) -> Result<Tenant, Error> {
        let mut stored = tenant.clone();
        stored.version = 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(&stored)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(error) if is_conditional_failure(&error) => {
                Err(Error::Conflict(Conflict::AlreadyExists {
                    entity: Entity::Tenant,
                    id: tenant.id.to_string(),
                }))
            }
            Err(error) => Err(dynamo_error(error)),
        }
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, Error> {
        self.get_item(tenant_pk(id), TENANT)
            .await?
            .map(|item| from_doc(&item))
            .transpose()
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>, Error> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LIST_INDEX.name)
            .key_condition_expression("#k = :kind")
            .expression_attribute_names("#k", LIST_INDEX.partition_key)
            .expression_attribute_values(":kind", s(TENANT));
        query_page(query, page, "tenants", &LIST_KEYS).await
    }

    async fn update(&self, tenant: &Tenant, expected_version: u64) -> Result<Tenant, Error> {
        let mut stored = tenant.clone();
        stored.version = expected_version + 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(&stored)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(error) if is_conditional_failure(&error) => {
                if self
                    .get_item(tenant_pk(&tenant.id), TENANT)
                    .await?
                    .is_some()
                {
                    Err(Error::stale(Entity::Tenant, expected_version))
                } else {
                    Err(Error::not_found(Entity::Tenant, &tenant.id))
                }
            }
            Err(error) => Err(dynamo_error(error)),
        }
    }

    async fn claim_domains(&self, tenant: &TenantId, domains: &[DomainName]) -> Result<(), Error> {
        // A transaction may not touch one item twice: claim each domain once, in order.
        let mut seen = BTreeSet::new();
        let domains: Vec<&DomainName> = domains.iter().filter(|d| seen.insert(*d)).collect();
        if domains.is_empty() {
            return Ok(());
        }
        if domains.len() > MAX_DOMAINS_PER_CLAIM {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "domains",
                problem: FieldProblem::TooLong {
                    max: MAX_DOMAINS_PER_CLAIM,
                },
            }));
        }
        let mut transaction = self.client.transact_write_items();
        for &domain in &domains {
            let put = Put::builder()
                .table_name(&self.table)
                .item(PK, s(domain_pk(domain)))
                .item(SK, s(DOMAIN))
                .item(TENANT_ID, s(tenant.as_str()))
                .condition_expression("attribute_not_exists(#pk) OR #tenant_id = :me")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#tenant_id", TENANT_ID)
                .expression_attribute_values(":me", s(tenant.as_str()))
                .build()
                .map_err(|e| Error::Infrastructure {
                    component: "dynamodb",
                    source: Box::new(e),
                })?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
        match transaction.send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let Some(reasons) = failed_conditions(&error) else {
                    return Err(dynamo_error(error));
                };
                // Name the first contested domain, preferring the service's reasons.
                let contested: Vec<&DomainName> = if reasons.iter().any(|failed| *failed) {
                    domains
                        .iter()
                        .zip(&reasons)
                        .filter(|(_, failed)| **failed)
                        .map(|(domain, _)| *domain)
                        .collect()
                } else {
                    domains.clone()
                };
                match self.first_foreign_claim(tenant, &contested).await? {
                    Some((domain, owner)) => {
                        Err(Error::Conflict(Conflict::DomainClaimed { domain, owner }))
                    }
                    // The competing claim went away meanwhile: let the caller retry.
                    None => Err(dynamo_error(error)),
                }
            }
        }
    }

    async fn release_domains(
        &self,
        tenant: &TenantId,
        domains: &[DomainName],
    ) -> Result<(), Error> {
        for domain in domains {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(domain_pk(domain)))
                .key(SK, s(DOMAIN))
                .condition_expression("#tenant_id = :me")
                .expression_attribute_names("#tenant_id", TENANT_ID)
                .expression_attribute_values(":me", s(tenant.as_str()))
                .send()
                .await;
            match result {
                // Absent, or held by another tenant: not ours to release.
                Ok(_) => {}
                Err(error) if is_conditional_failure(&error) => {}
                Err(error) => return Err(dynamo_error(error)),
            }
        }
        Ok(())
    }

    async fn tenant_for_domain(&self, domain: &DomainName) -> Result<Option<TenantId>, Error> {
        match self.get_item(domain_pk(domain), DOMAIN).await? {
            Some(item) => Ok(Some(TenantId::parse(string(&item, TENANT_ID)?)?)),
            None => Ok(None),
        }
    }
}
