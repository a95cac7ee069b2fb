//! Licences (R-LIC-1): a tenant's licence settings (usage location, default SKUs with disabled
//! service plans, whether unbind removes licences), a bound group's licences, the SKUs M365 sells
//! the tenant (`subscribedSkus`, graph-spec §9.1) and which source granted which SKU to a bound
//! user, so that a licence still granted by another source is never removed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{GroupId, TenantId};

/// A usage location: an ISO 3166-1 alpha-2 country code (`US`, `GB`, `JP`), which M365 requires
/// before it assigns a licence (graph-spec §9.2). The shape is checked (two ASCII letters, kept
/// upper case) as the emulator checks it; whether the code is an assigned ISO country is left to
/// M365 (graph-spec is silent on the exact list: unconfirmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UsageLocation(String);

/// A usage location that is not an assigned ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("usageLocation must be an ISO 3166-1 alpha-2 country code (two letters, e.g. US)")]
pub struct UsageLocationError;

impl UsageLocation {
    /// Parses a country code (either case; stored upper case), checked against the same list of
    /// assigned ISO 3166-1 alpha-2 codes as a directory user's `usageLocation` (R-ATTR-1), so a
    /// tenant's default is refused exactly where a user's would be.
    ///
    /// # Errors
    /// [`UsageLocationError`] for anything but an assigned code.
    pub fn parse(value: &str) -> Result<Self, UsageLocationError> {
        let code = value.to_ascii_uppercase();
        if super::attributes::is_country_code(&code) {
            Ok(Self(code))
        } else {
            Err(UsageLocationError)
        }
    }

    /// The code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UsageLocation {
    type Error = UsageLocationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<UsageLocation> for String {
    fn from(value: UsageLocation) -> Self {
        value.0
    }
}

impl std::fmt::Display for UsageLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A licence setting refused (400, R-LIC-1): the message lists the names the tenant knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseInputError {
    /// The SKU part number is not among the tenant's `subscribedSkus`.
    #[error("unknown SKU '{sku}'; the tenant subscribes to: {}", known.join(", "))]
    UnknownSku {
        /// The part number asked for.
        sku: String,
        /// The tenant's part numbers.
        known: Vec<String>,
    },
    /// The service plan is not part of the SKU.
    #[error("unknown service plan '{plan}' in SKU '{sku}'; its plans are: {}", known.join(", "))]
    UnknownServicePlan {
        /// The SKU.
        sku: String,
        /// The plan name asked for.
        plan: String,
        /// The SKU's plan names.
        known: Vec<String>,
    },
    /// A bad usage location.
    #[error(transparent)]
    UsageLocation(#[from] UsageLocationError),
}

impl LicenseInputError {
    /// Machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSku { .. } => "unknown_sku",
            Self::UnknownServicePlan { .. } => "unknown_service_plan",
            Self::UsageLocation(_) => "invalid_usage_location",
        }
    }
}

/// Checks `requested` licences against the tenant's `skus` and resolves names to ids.
///
/// # Errors
/// [`LicenseInputError::UnknownSku`] / [`LicenseInputError::UnknownServicePlan`], listing the
/// known names.
pub fn resolve_licenses(
    requested: &[LicenseRequest],
    skus: &[SubscribedSku],
) -> Result<Vec<ResolvedLicense>, LicenseInputError> {
    requested
        .iter()
        .map(|r| {
            let sku = skus
                .iter()
                .find(|s| s.sku_part_number.eq_ignore_ascii_case(&r.sku))
                .ok_or_else(|| LicenseInputError::UnknownSku {
                    sku: r.sku.clone(),
                    known: skus.iter().map(|s| s.sku_part_number.clone()).collect(),
                })?;
            let mut disabled_plans = Vec::new();
            let mut disabled_plan_ids = Vec::new();
            for name in &r.disabled_plans {
                let plan = sku
                    .service_plans
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| LicenseInputError::UnknownServicePlan {
                        sku: sku.sku_part_number.clone(),
                        plan: name.clone(),
                        known: sku.service_plans.iter().map(|p| p.name.clone()).collect(),
                    })?;
                disabled_plans.push(plan.name.clone());
                disabled_plan_ids.push(plan.id.clone());
            }
            Ok(ResolvedLicense {
                sku: sku.sku_part_number.clone(),
                sku_id: sku.sku_id.clone(),
                disabled_plans,
                disabled_plan_ids,
            })
        })
        .collect()
}

/// A licence as the API names it: a SKU part number and the names of its disabled service plans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LicenseRequest {
    /// SKU part number (e.g. `ENTERPRISEPACK`).
    pub sku: String,
    /// Service plan names to disable (e.g. `SWAY`).
    #[serde(default)]
    pub disabled_plans: Vec<String>,
}

/// A licence checked against the tenant's `subscribedSkus`: names and M365 ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedLicense {
    /// SKU part number.
    pub sku: String,
    /// M365's SKU id (GUID).
    pub sku_id: String,
    /// Disabled service plan names.
    pub disabled_plans: Vec<String>,
    /// Their ids (what `assignLicense` takes).
    pub disabled_plan_ids: Vec<String>,
}

impl ResolvedLicense {
    /// The API shape (names only).
    #[must_use]
    pub fn request(&self) -> LicenseRequest {
        LicenseRequest {
            sku: self.sku.clone(),
            disabled_plans: self.disabled_plans.clone(),
        }
    }
}

/// A tenant's licence settings (`GET`/`PUT /tenants/{tenantId}/settings`, R-LIC-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSettings {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Usage location set on accounts whose user has none.
    pub usage_location: Option<UsageLocation>,
    /// Licences every bound user gets.
    pub licenses: Vec<ResolvedLicense>,
    /// Whether unbinding removes the licences we granted.
    pub remove_licenses_on_unbind: bool,
}

impl TenantSettings {
    /// The settings of a tenant never configured: no usage location, no licences, licences kept
    /// on unbind.
    #[must_use]
    pub fn defaults(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            usage_location: None,
            licenses: Vec::new(),
            remove_licenses_on_unbind: false,
        }
    }
}

/// The licences a bound group gives its bound members (`PUT /groups/{groupId}/binding`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupLicenses {
    /// The directory group.
    pub group_id: GroupId,
    /// The tenant its binding is in.
    pub tenant_id: TenantId,
    /// Its licences (empty: none).
    pub licenses: Vec<ResolvedLicense>,
}

/// One service plan of a subscribed SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePlan {
    /// Plan id (GUID).
    pub id: String,
    /// Plan name (e.g. `EXCHANGE_S_ENTERPRISE`).
    pub name: String,
}

/// A SKU the tenant subscribes to (`subscribedSkus`, graph-spec §9.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribedSku {
    /// SKU id (GUID).
    pub sku_id: String,
    /// Part number (e.g. `ENTERPRISEPACK`).
    pub sku_part_number: String,
    /// Its service plans.
    pub service_plans: Vec<ServicePlan>,
    /// Purchased seats (`prepaidUnits.enabled`).
    pub enabled_units: u32,
    /// Seats in use.
    pub consumed_units: u32,
}

/// Who granted a licence to a bound user: the tenant's defaults or a bound group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum LicenseSource {
    /// The tenant settings' default licences.
    Tenant,
    /// A bound directory group's licences.
    Group(GroupId),
}

/// One SKU we granted a bound user, with the sources that want it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantedSku {
    /// SKU part number (for events and the API).
    pub sku: String,
    /// Disabled plan ids as assigned.
    pub disabled_plan_ids: Vec<String>,
    /// The sources granting it (never empty while granted).
    pub sources: BTreeSet<LicenseSource>,
}

/// Where a bound user's licences stand (`licenseState` of the binding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseState {
    /// No licence is due (no defaults, no licensed group).
    None,
    /// Licences are due and not assigned yet (to be done by the bind or reconcile).
    Pending,
    /// Every due licence is assigned.
    Assigned,
    /// M365 refused an assignment (no seat left, `license_unavailable`; or another refusal):
    /// reconcile tries again.
    Failed,
}

impl LicenseState {
    /// The snake_case name shown in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Pending => "pending",
            Self::Assigned => "assigned",
            Self::Failed => "failed",
        }
    }
}

/// A bound user's licences: what we granted (by SKU id, with the granting sources) and how the
/// last assignment went. Kept on the binding (R-LIC-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Licensing {
    /// Where the licences stand.
    pub state: LicenseState,
    /// SKUs granted, by SKU id.
    #[serde(default)]
    pub granted: BTreeMap<String, GrantedSku>,
    /// Machine code of the last refusal (`license_unavailable`, `license_rejected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

/// The SKUs each source wants for one user: the wanted licence by SKU id with its sources (the
/// first source's disabled plans win when two sources ask for the same SKU differently).
#[must_use]
pub fn wanted_licenses(
    sources: &[(LicenseSource, &[ResolvedLicense])],
) -> BTreeMap<String, GrantedSku> {
    let mut wanted: BTreeMap<String, GrantedSku> = BTreeMap::new();
    for (source, licenses) in sources {
        for l in *licenses {
            wanted
                .entry(l.sku_id.clone())
                .or_insert_with(|| GrantedSku {
                    sku: l.sku.clone(),
                    disabled_plan_ids: l.disabled_plan_ids.clone(),
                    sources: BTreeSet::new(),
                })
                .sources
                .insert(source.clone());
        }
    }
    wanted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lic(sku: &str, id: &str) -> ResolvedLicense {
        ResolvedLicense {
            sku: sku.into(),
            sku_id: id.into(),
            disabled_plans: vec![],
            disabled_plan_ids: vec![],
        }
    }

    #[test]
    fn a_usage_location_is_two_letters_kept_upper_case() {
        // R-LIC-1
        assert_eq!(UsageLocation::parse("us").unwrap().as_str(), "US");
        assert!(UsageLocation::parse("USA").is_err());
        assert!(UsageLocation::parse("U1").is_err());
        // Two letters that are no assigned country (R-ATTR-1's list, R-LIC-1).
        assert!(UsageLocation::parse("XX").is_err());
        assert!(UsageLocation::parse("uk").is_err());
        assert_eq!(UsageLocation::parse("gb").unwrap().as_str(), "GB");
        assert!(UsageLocation::parse("").is_err());
    }

    #[test]
    fn a_sku_wanted_by_two_sources_lists_both() {
        // R-LIC-1: a licence another source still grants is never removed
        let tenant = [lic("E3", "e3")];
        let sales = [lic("E3", "e3"), lic("PBI", "pbi")];
        let g = GroupId::parse("sales").unwrap();
        let wanted = wanted_licenses(&[
            (LicenseSource::Tenant, &tenant),
            (LicenseSource::Group(g.clone()), &sales),
        ]);
        assert_eq!(wanted.len(), 2);
        assert_eq!(wanted["e3"].sources.len(), 2);
        assert_eq!(
            wanted["pbi"].sources,
            BTreeSet::from([LicenseSource::Group(g)])
        );
    }

    fn e3() -> SubscribedSku {
        SubscribedSku {
            sku_id: "e3-id".into(),
            sku_part_number: "ENTERPRISEPACK".into(),
            service_plans: vec![ServicePlan {
                id: "sway-id".into(),
                name: "SWAY".into(),
            }],
            enabled_units: 5,
            consumed_units: 0,
        }
    }

    #[test]
    fn licences_resolve_to_sku_and_plan_ids() {
        // R-LIC-1
        let r = resolve_licenses(
            &[LicenseRequest {
                sku: "ENTERPRISEPACK".into(),
                disabled_plans: vec!["SWAY".into()],
            }],
            &[e3()],
        )
        .unwrap();
        assert_eq!(r[0].sku_id, "e3-id");
        assert_eq!(r[0].disabled_plan_ids, vec!["sway-id".to_owned()]);
    }

    #[test]
    fn an_unknown_sku_or_plan_is_refused_with_the_known_names() {
        // R-LIC-1
        let e = resolve_licenses(
            &[LicenseRequest {
                sku: "NOPE".into(),
                disabled_plans: vec![],
            }],
            &[e3()],
        )
        .unwrap_err();
        assert_eq!(e.code(), "unknown_sku");
        assert!(e.to_string().contains("ENTERPRISEPACK"), "{e}");
        let e = resolve_licenses(
            &[LicenseRequest {
                sku: "ENTERPRISEPACK".into(),
                disabled_plans: vec!["YAMMER".into()],
            }],
            &[e3()],
        )
        .unwrap_err();
        assert_eq!(e.code(), "unknown_service_plan");
        assert!(e.to_string().contains("SWAY"), "{e}");
    }

    #[test]
    fn licence_sources_serialize_with_their_kind() {
        // R-LIC-1
        let g = LicenseSource::Group(GroupId::parse("sales").unwrap());
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "group", "id": "sales"}));
        assert_eq!(serde_json::from_value::<LicenseSource>(v).unwrap(), g);
    }
}
