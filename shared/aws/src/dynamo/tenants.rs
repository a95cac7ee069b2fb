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
    Condition, Item, Table, build_error, dynamo_error, failed_conditions, listed_item, pk_sk_key,
    s, string,
};
use crate::schema::{PK, SK};

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

fn domain_pk(domain: &DomainName) -> String {
    format!("DOMAIN#{domain}")
}

/// [`TenantStore`] on the tenants table.
#[derive(Debug, Clone)]
pub struct DynamoTenants {
    table: Table,
}

impl DynamoTenants {
    /// A store on `table` (a table created from [`crate::schema::TENANTS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    fn item(tenant: &Tenant) -> Result<Item, Error> {
        listed_item(TENANT, tenant.id.as_str(), tenant.version, tenant)
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

    /// Deletes the claim item of `domain` if its `attribute` equals `value`; otherwise (or when
    /// absent) leaves it, successfully.
    async fn delete_domain_if(
        &self,
        domain: &DomainName,
        attribute: &'static str,
        value: &str,
    ) -> Result<(), Error> {
        let condition = Condition::new("#a = :v")
            .name("#a", attribute)
            .value(":v", s(value));
        self.table
            .delete_if(pk_sk_key(domain_pk(domain), DOMAIN), &condition)
            .await?;
        Ok(())
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
        let mut transaction = self.table.client.transact_write_items();
        for &domain in domains {
            // `claim` is computed first from the item as it was: a new item gets this claim's
            // token, an existing one (already ours) its holder's id.
            let update = Update::builder()
                .table_name(&self.table.name)
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
                .map_err(build_error)?;
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
            self.delete_domain_if(domain, CLAIM, token).await?;
        }
        Ok(())
    }
}

impl TenantStore for DynamoTenants {
    async fn create(&self, tenant: &Tenant) -> Result<Tenant, Error> {
        let mut stored = tenant.clone();
        stored.version = 1;
        self.table
            .create(Self::item(&stored)?, Entity::Tenant, tenant.id.as_str())
            .await?;
        Ok(stored)
    }

    async fn get(&self, id: &TenantId) -> Result<Option<Tenant>, Error> {
        self.table.get_entity(TENANT, id.as_str()).await
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Tenant>, Error> {
        self.table.list(TENANT, "tenants", page).await
    }

    async fn update(&self, tenant: &Tenant, expected_version: u64) -> Result<Tenant, Error> {
        let mut stored = tenant.clone();
        stored.version = expected_version + 1;
        self.table
            .replace(
                Self::item(&stored)?,
                expected_version,
                (Entity::Tenant, TENANT, tenant.id.as_str()),
            )
            .await?;
        Ok(stored)
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
            // Absent, or held by another tenant: not ours to release.
            self.delete_domain_if(domain, TENANT_ID, tenant.as_str())
                .await?;
        }
        Ok(())
    }

    async fn tenant_for_domain(&self, domain: &DomainName) -> Result<Option<TenantId>, Error> {
        match self.table.get_item(domain_pk(domain), DOMAIN).await? {
            Some(item) => Ok(Some(TenantId::parse(string(&item, TENANT_ID)?)?)),
            None => Ok(None),
        }
    }
}
