//! Tenant routing by email domain (R-BIND-1, R-CONN-2, R-CONN-3).
//!
//! Every verified domain of a connected tenant is claimed for it (one tenant per domain); only
//! *managed* domains route. A federated domain is claimed too, so that routing can refuse it with
//! its own error instead of calling it unknown.

use crate::error::Result;
use crate::model::{DomainKind, DomainName, Email, Tenant, TenantId, TenantStatus, VerifiedDomain};
use crate::ports::TenantStore;

/// The suffix of a tenant's initial domain (`contoso.onmicrosoft.com`, graph-spec §8.1 `isInitial`).
pub const INITIAL_DOMAIN_SUFFIX: &str = ".onmicrosoft.com";

/// Why an email or a tenant cannot be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// No connected tenant holds the email's domain.
    #[error("no connected tenant holds the domain {domain}")]
    UnclaimedDomain {
        /// The domain.
        domain: DomainName,
    },
    /// The domain is federated (e.g. GoDaddy): M365 does not let us manage its users' sign-in.
    #[error(
        "the domain {domain} is federated in tenant {tenant}; only managed domains can be bound"
    )]
    FederatedDomain {
        /// The domain.
        domain: DomainName,
        /// The tenant that holds it.
        tenant: TenantId,
    },
    /// The tenant holding the domain is not `active`.
    #[error("the tenant {tenant} holding this domain is {}, not active", status.as_str())]
    TenantNotActive {
        /// The tenant.
        tenant: TenantId,
        /// Its status.
        status: TenantStatus,
    },
    /// At connect: apart from its initial `*.onmicrosoft.com` domain, every domain is federated.
    #[error("every custom domain of this tenant is federated; federated tenants are not supported")]
    FederatedTenant,
}

variant_names!(RoutingError::code, "Machine-readable code." {
    UnclaimedDomain => "domain_not_connected",
    FederatedDomain => "federated_domain",
    TenantNotActive => "tenant_not_active",
    FederatedTenant => "federated_tenant_unsupported",
});

/// Routes `email` given the tenant that claimed its domain (`None`: nobody did).
///
/// # Errors
/// [`RoutingError::UnclaimedDomain`], [`RoutingError::FederatedDomain`] or [`RoutingError::TenantNotActive`].
pub fn route<'t>(email: &Email, owner: Option<&'t Tenant>) -> Result<&'t Tenant, RoutingError> {
    let domain = email.domain();
    let Some(tenant) = owner else {
        return Err(RoutingError::UnclaimedDomain { domain });
    };
    match tenant.domain(&domain).map(|d| d.kind) {
        // A claim without the domain in the tenant's list is stale: treat the domain as unclaimed.
        None => Err(RoutingError::UnclaimedDomain { domain }),
        Some(DomainKind::Federated) => Err(RoutingError::FederatedDomain {
            domain,
            tenant: tenant.id.clone(),
        }),
        Some(DomainKind::Managed) if tenant.status != TenantStatus::Active => {
            Err(RoutingError::TenantNotActive {
                tenant: tenant.id.clone(),
                status: tenant.status,
            })
        }
        Some(DomainKind::Managed) => Ok(tenant),
    }
}

/// Looks up the tenant claiming `email`'s domain and routes to it (R-BIND-1).
///
/// # Errors
/// `Error::Routing` as in [`route`]; store failures.
pub async fn resolve_tenant(tenants: &impl TenantStore, email: &Email) -> Result<Tenant> {
    let owner = match tenants.tenant_for_domain(&email.domain()).await? {
        Some(id) => tenants.get(&id).await?,
        None => None,
    };
    Ok(route(email, owner.as_ref())?.clone())
}

/// Decides at connect which domains to claim (R-CONN-2, R-CONN-3): all verified domains, unless the
/// tenant has no managed domain besides its initial `*.onmicrosoft.com` one while having federated
/// domains (a federated tenant, e.g. M365 bought through GoDaddy).
///
/// # Errors
/// [`RoutingError::FederatedTenant`].
pub fn domains_to_claim(domains: &[VerifiedDomain]) -> Result<Vec<DomainName>, RoutingError> {
    let is_initial = |d: &VerifiedDomain| d.name.as_str().ends_with(INITIAL_DOMAIN_SUFFIX);
    let has_federated = domains.iter().any(|d| d.kind == DomainKind::Federated);
    let has_custom_managed = domains
        .iter()
        .any(|d| d.kind == DomainKind::Managed && !is_initial(d));
    if has_federated && !has_custom_managed {
        return Err(RoutingError::FederatedTenant);
    }
    let mut names: Vec<DomainName> = domains.iter().map(|d| d.name.clone()).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(name: &str, kind: DomainKind) -> VerifiedDomain {
        VerifiedDomain {
            name: DomainName::parse(name).unwrap(),
            kind,
        }
    }

    fn tenant(status: TenantStatus) -> Tenant {
        let mut t = Tenant::pending(TenantId::generate(), "Contoso");
        t.status = status;
        t.domains = vec![
            domain("contoso.onmicrosoft.com", DomainKind::Managed),
            domain("contoso.com", DomainKind::Managed),
            domain("contoso-sso.com", DomainKind::Federated),
        ];
        t
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn a_managed_verified_domain_routes_to_its_active_tenant() {
        // R-BIND-1, R-CONN-2
        let t = tenant(TenantStatus::Active);
        assert_eq!(
            route(&email("Alice@Contoso.com"), Some(&t)).map(|t| &t.id),
            Ok(&t.id)
        );
        assert_eq!(
            route(&email("bob@contoso.onmicrosoft.com"), Some(&t)).map(|t| &t.id),
            Ok(&t.id)
        );
    }

    #[test]
    fn an_unclaimed_domain_is_refused_with_its_own_error() {
        // R-BIND-1, R-CONN-2
        assert_eq!(
            route(&email("a@fabrikam.com"), None),
            Err(RoutingError::UnclaimedDomain {
                domain: DomainName::parse("fabrikam.com").unwrap()
            })
        );
        assert_eq!(
            RoutingError::UnclaimedDomain {
                domain: email("a@b.com").domain()
            }
            .code(),
            "domain_not_connected"
        );
    }

    #[test]
    fn a_claim_missing_from_the_tenants_domain_list_counts_as_unclaimed() {
        // R-BIND-1
        let t = tenant(TenantStatus::Active);
        assert!(matches!(
            route(&email("a@fabrikam.com"), Some(&t)),
            Err(RoutingError::UnclaimedDomain { .. })
        ));
    }

    #[test]
    fn a_federated_domain_of_a_mixed_tenant_is_not_routable() {
        // R-CONN-3
        let t = tenant(TenantStatus::Active);
        assert_eq!(
            route(&email("a@contoso-sso.com"), Some(&t)),
            Err(RoutingError::FederatedDomain {
                domain: DomainName::parse("contoso-sso.com").unwrap(),
                tenant: t.id.clone()
            })
        );
    }

    #[test]
    fn a_tenant_that_is_not_active_does_not_route() {
        // R-BIND-1, R-CONN-4, R-CONN-5
        for status in [
            TenantStatus::PendingConsent,
            TenantStatus::ReauthorizationRequired,
            TenantStatus::Deauthorized,
        ] {
            let t = tenant(status);
            assert_eq!(
                route(&email("a@contoso.com"), Some(&t)),
                Err(RoutingError::TenantNotActive {
                    tenant: t.id.clone(),
                    status
                }),
                "{status:?}"
            );
        }
    }

    #[test]
    fn routing_errors_have_distinct_codes() {
        // R-BIND-1, R-CONN-2, R-CONN-3
        let d = email("a@b.com").domain();
        let t = TenantId::generate();
        let codes: std::collections::BTreeSet<&str> = [
            RoutingError::UnclaimedDomain { domain: d.clone() },
            RoutingError::FederatedDomain {
                domain: d,
                tenant: t.clone(),
            },
            RoutingError::TenantNotActive {
                tenant: t,
                status: TenantStatus::Deauthorized,
            },
            RoutingError::FederatedTenant,
        ]
        .iter()
        .map(RoutingError::code)
        .collect();
        assert_eq!(codes.len(), 4);
    }

    #[test]
    fn a_tenant_whose_custom_domains_are_all_federated_is_refused_at_connect() {
        // R-CONN-3
        let godaddy = [
            domain("contoso.onmicrosoft.com", DomainKind::Managed),
            domain("contoso.com", DomainKind::Federated),
        ];
        assert_eq!(
            domains_to_claim(&godaddy),
            Err(RoutingError::FederatedTenant)
        );
        assert_eq!(
            RoutingError::FederatedTenant.code(),
            "federated_tenant_unsupported"
        );
        assert_eq!(
            domains_to_claim(&[domain("contoso.com", DomainKind::Federated)]),
            Err(RoutingError::FederatedTenant)
        );
    }

    #[test]
    fn a_mixed_tenant_claims_all_its_domains() {
        // R-CONN-2, R-CONN-3
        let t = tenant(TenantStatus::Active);
        let claimed = domains_to_claim(&t.domains).unwrap();
        let names: Vec<&str> = claimed.iter().map(DomainName::as_str).collect();
        assert_eq!(
            names,
            ["contoso-sso.com", "contoso.com", "contoso.onmicrosoft.com"]
        );
    }

    #[test]
    fn a_tenant_with_only_its_initial_domain_can_connect() {
        // R-CONN-2
        let only_initial = [domain("contoso.onmicrosoft.com", DomainKind::Managed)];
        assert_eq!(domains_to_claim(&only_initial).map(|d| d.len()), Ok(1));
    }
}
