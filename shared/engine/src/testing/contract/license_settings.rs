//! Contract of [`LicenseSettingsStore`] (R-LIC-1): a tenant's settings and a group's licences
//! round-trip, a second write replaces the first, and what was never written reads as `None`.

use super::{fresh_suffix, fresh_tenant_id};
use crate::model::{GroupId, GroupLicenses, ResolvedLicense, TenantSettings, UsageLocation};
use crate::ports::LicenseSettingsStore;

fn e3(disabled: &[&str]) -> ResolvedLicense {
    ResolvedLicense {
        sku: "ENTERPRISEPACK".into(),
        sku_id: "6fd2c87f-b296-42f0-b197-1e91e994b900".into(),
        disabled_plans: disabled.iter().map(|p| (*p).to_owned()).collect(),
        disabled_plan_ids: disabled.iter().map(|p| format!("{p}-id")).collect(),
    }
}

/// R-LIC-1: settings round-trip with every field; a second put replaces them.
pub async fn tenant_settings_round_trip_and_a_second_put_replaces_them(
    store: &impl LicenseSettingsStore,
) {
    let tenant = fresh_tenant_id();
    assert_eq!(store.settings(&tenant).await.expect("read"), None);
    let first = TenantSettings {
        tenant_id: tenant.clone(),
        usage_location: Some(UsageLocation::parse("US").expect("valid")),
        licenses: vec![e3(&["SWAY"])],
        remove_licenses_on_unbind: true,
    };
    store.put_settings(&first).await.expect("put");
    assert_eq!(store.settings(&tenant).await.expect("read"), Some(first));
    let second = TenantSettings::defaults(tenant.clone());
    store.put_settings(&second).await.expect("put");
    assert_eq!(store.settings(&tenant).await.expect("read"), Some(second));
}

/// R-LIC-1: a group's licences round-trip; another group's read as `None`.
pub async fn group_licenses_round_trip_per_group(store: &impl LicenseSettingsStore) {
    let group = GroupId::parse(format!("g-{}", fresh_suffix())).expect("valid id");
    let other = GroupId::parse(format!("g-{}", fresh_suffix())).expect("valid id");
    let licenses = GroupLicenses {
        group_id: group.clone(),
        tenant_id: fresh_tenant_id(),
        licenses: vec![e3(&[])],
    };
    store.put_group_licenses(&licenses).await.expect("put");
    assert_eq!(
        store.group_licenses(&group).await.expect("read"),
        Some(licenses)
    );
    assert_eq!(store.group_licenses(&other).await.expect("read"), None);
}
