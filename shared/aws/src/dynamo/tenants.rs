//! Tenants and their verified-domain claims (one tenant per domain, R-CONN-2), in the tenants
//! table. A connect claims all its domains or none: up to 100 domains in one transaction; more
//! (a `TransactWriteItems` holds at most 100 items) in transactions of 100, and when a later one
//! meets a domain of another tenant, the domains this claim took in the earlier ones are released
//! again. Each claim marks the domain items it creates with a fresh claim token (an item that
//! already existed keeps a marker naming its holder), so that release takes back exactly what
//! this claim added, never a domain the tenant held before.

use crate::OnHeap;
use std::collections::BTreeSet;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
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
/// The claim that created a domain item (a fresh token), or the holder's id for an item that
/// already existed when it was (re-)claimed.
const CLAIM: &str = "claim";

/// DynamoDB writes at most 100 items in one transaction: a claim of more domains is split into
/// transactions of this size.
pub const MAX_DOMAINS_PER_CLAIM: usize = 100;

/// Upper bound on the domains of one claim (far above any real tenant; Entra allows 5,000 domains
/// per tenant), so that bad data cannot make a connect loop over DynamoDB for long.
pub const MAX_DOMAINS: usize = 5_000;

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
            .on_heap()
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

impl DynamoTenants {
    /// Claims up to [`MAX_DOMAINS_PER_CLAIM`] domains in one transaction: each is created for
    /// `tenant` (marked with `token`) or already held by it (marked with its holder's id).
    async fn claim_chunk(
        &self,
        tenant: &TenantId,
        domains: &[&DomainName],
        token: &str,
    ) -> Result<(), Error> {
        let mut transaction = self.client.transact_write_items();
        for &domain in domains {
            // `claim` is computed first from the item as it was: a new item gets this claim's
            // token, an existing one (already ours) its holder's id.
            let update = Update::builder()
                .table_name(&self.table)
                .key(PK, s(domain_pk(domain)))
                .key(SK, s(DOMAIN))
                .update_expression(
                    "SET #claim = if_not_exists(#tenant_id, :token), #tenant_id = :me",
                )
                .condition_expression("attribute_not_exists(#pk) OR #tenant_id = :me")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#tenant_id", TENANT_ID)
                .expression_attribute_names("#claim", CLAIM)
                .expression_attribute_values(":me", s(tenant.as_str()))
                .expression_attribute_values(":token", s(token))
                .build()
                .map_err(|e| Error::Infrastructure {
                    component: "dynamodb",
                    source: Box::new(e),
                })?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().update(update).build());
        }
        match transaction.send().on_heap().await {
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
                    domains.to_vec()
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

    /// Deletes the domain items the claim `token` created (those it found already held stay).
    async fn release_claimed(&self, domains: &[&DomainName], token: &str) -> Result<(), Error> {
        for domain in domains {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(domain_pk(domain)))
                .key(SK, s(DOMAIN))
                .condition_expression("#claim = :token")
                .expression_attribute_names("#claim", CLAIM)
                .expression_attribute_values(":token", s(token))
                .send()
                .on_heap()
                .await;
            match result {
                Ok(_) => {}
                Err(error) if is_conditional_failure(&error) => {}
                Err(error) => return Err(dynamo_error(error)),
            }
        }
        Ok(())
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
            .on_heap()
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
            .on_heap()
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
        if domains.len() > MAX_DOMAINS {
            return Err(Error::Invalid(InvalidInput::Field {
                field: "domains",
                problem: FieldProblem::TooLong { max: MAX_DOMAINS },
            }));
        }
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut claimed: Vec<&DomainName> = Vec::new();
        for chunk in domains.chunks(MAX_DOMAINS_PER_CLAIM) {
            if let Err(e) = self.claim_chunk(tenant, chunk, &token).await {
                // All or nothing across transactions: take back what the earlier ones took.
                if let Err(release) = self.release_claimed(&claimed, &token).await {
                    tracing::warn!(
                        tenant.id = %tenant,
                        error.code = release.code(),
                        "releasing the domains of a refused claim failed"
                    );
                }
                return Err(e);
            }
            claimed.extend(chunk);
        }
        Ok(())
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
                .on_heap()
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
