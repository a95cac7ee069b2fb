//! The licence fakes (R-LIC-1): [`FakeLicenseSettings`] (tenant settings and group licences in
//! memory) and [`FakeLicensing`], a licence directory with seats that answers like M365 does
//! (graph-spec §9): `assignLicense` needs a usage location first, refuses an unknown SKU, and
//! refuses a SKU whose seats (`enabledUnits`) are all consumed, with a request id.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::lock;
use crate::error::{Error, Result};
use crate::model::{
    GroupId, GroupLicenses, M365ObjectId, ServicePlan, SubscribedSku, TenantId, TenantSettings,
    UsageLocation,
};
use crate::ports::{LicenseDirectory, LicenseSettingsStore, LicenseWrite};

/// Tenant settings and group licences in memory.
#[derive(Debug, Default)]
pub struct FakeLicenseSettings {
    settings: Mutex<HashMap<TenantId, TenantSettings>>,
    groups: Mutex<HashMap<GroupId, GroupLicenses>>,
}

impl FakeLicenseSettings {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl LicenseSettingsStore for FakeLicenseSettings {
    async fn settings(&self, tenant: &TenantId) -> Result<Option<TenantSettings>> {
        Ok(lock(&self.settings).get(tenant).cloned())
    }

    async fn put_settings(&self, settings: &TenantSettings) -> Result<()> {
        lock(&self.settings).insert(settings.tenant_id.clone(), settings.clone());
        Ok(())
    }

    async fn group_licenses(&self, group: &GroupId) -> Result<Option<GroupLicenses>> {
        Ok(lock(&self.groups).get(group).cloned())
    }

    async fn put_group_licenses(&self, licenses: &GroupLicenses) -> Result<()> {
        lock(&self.groups).insert(licenses.group_id.clone(), licenses.clone());
        Ok(())
    }
}

/// One account's licence side in the fake.
#[derive(Debug, Default, Clone)]
struct Account {
    usage_location: Option<UsageLocation>,
    /// SKU id → disabled plan ids.
    assigned: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
struct State {
    skus: HashMap<TenantId, Vec<SubscribedSku>>,
    accounts: HashMap<(TenantId, M365ObjectId), Account>,
    requests: u64,
    /// Graph writes made (usage location PATCHes and `assignLicense` calls).
    writes: u64,
    faults: Vec<Error>,
}

/// A licence directory with seats, per tenant.
#[derive(Debug, Default)]
pub struct FakeLicensing {
    state: Mutex<State>,
}

impl FakeLicensing {
    /// No tenant subscribes to anything.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// `tenant` subscribes to `part_number` (id `sku_id`) with `seats` seats and `plans`
    /// (`(id, name)`).
    pub fn subscribe(
        &self,
        tenant: &TenantId,
        sku_id: &str,
        part_number: &str,
        seats: u32,
        plans: &[(&str, &str)],
    ) {
        lock(&self.state)
            .skus
            .entry(tenant.clone())
            .or_default()
            .push(SubscribedSku {
                sku_id: sku_id.to_owned(),
                sku_part_number: part_number.to_owned(),
                service_plans: plans
                    .iter()
                    .map(|(id, name)| ServicePlan {
                        id: (*id).to_owned(),
                        name: (*name).to_owned(),
                    })
                    .collect(),
                enabled_units: seats,
                consumed_units: 0,
            });
    }

    /// The account's licences (SKU id → disabled plan ids).
    #[must_use]
    pub fn assigned(&self, tenant: &TenantId, id: &M365ObjectId) -> BTreeMap<String, Vec<String>> {
        lock(&self.state)
            .accounts
            .get(&(tenant.clone(), id.clone()))
            .map(|a| a.assigned.clone())
            .unwrap_or_default()
    }

    /// The account's usage location.
    #[must_use]
    pub fn usage_location(&self, tenant: &TenantId, id: &M365ObjectId) -> Option<UsageLocation> {
        lock(&self.state)
            .accounts
            .get(&(tenant.clone(), id.clone()))
            .and_then(|a| a.usage_location.clone())
    }

    /// An admin removes `sku_id` from the account behind our back (frees a seat).
    pub fn revoke(&self, tenant: &TenantId, id: &M365ObjectId, sku_id: &str) {
        if let Some(a) = lock(&self.state)
            .accounts
            .get_mut(&(tenant.clone(), id.clone()))
        {
            a.assigned.remove(sku_id);
        }
    }

    /// Graph writes made so far.
    #[must_use]
    pub fn writes(&self) -> u64 {
        lock(&self.state).writes
    }

    /// The next call fails with `error`.
    pub fn fail_next_call(&self, error: Error) {
        lock(&self.state).faults.push(error);
    }

    fn consumed(state: &State, tenant: &TenantId, sku_id: &str) -> u32 {
        let n = state
            .accounts
            .iter()
            .filter(|((t, _), a)| t == tenant && a.assigned.contains_key(sku_id))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn take_fault(state: &mut State) -> Result<()> {
        if state.faults.is_empty() {
            Ok(())
        } else {
            Err(state.faults.remove(0))
        }
    }
}

fn rejected(message: String, request_id: String) -> Error {
    Error::Rejected {
        graph_code: "Request_BadRequest".to_owned(),
        message,
        graph_request_id: Some(request_id),
    }
}

impl LicenseDirectory for FakeLicensing {
    async fn subscribed_skus(&self, tenant: &TenantId) -> Result<Vec<SubscribedSku>> {
        let mut state = lock(&self.state);
        Self::take_fault(&mut state)?;
        let skus = state.skus.get(tenant).cloned().unwrap_or_default();
        Ok(skus
            .into_iter()
            .map(|mut s| {
                s.consumed_units = Self::consumed(&state, tenant, &s.sku_id);
                s
            })
            .collect())
    }

    async fn set_usage_location(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        location: &UsageLocation,
    ) -> Result<()> {
        let mut state = lock(&self.state);
        Self::take_fault(&mut state)?;
        state.writes += 1;
        state
            .accounts
            .entry((tenant.clone(), id.clone()))
            .or_default()
            .usage_location = Some(location.clone());
        Ok(())
    }

    async fn assign_licenses(
        &self,
        tenant: &TenantId,
        id: &M365ObjectId,
        add: &[(String, Vec<String>)],
        remove: &[String],
    ) -> Result<LicenseWrite> {
        let mut state = lock(&self.state);
        Self::take_fault(&mut state)?;
        state.writes += 1;
        state.requests += 1;
        let request_id = format!("fake-license-{}", state.requests);
        let key = (tenant.clone(), id.clone());
        let account = state.accounts.get(&key).cloned().unwrap_or_default();
        let skus = state.skus.get(tenant).cloned().unwrap_or_default();
        if !add.is_empty() && account.usage_location.is_none() {
            return Err(rejected(
                "License assignment cannot be done for user with invalid usage location.".into(),
                request_id,
            ));
        }
        for (sku_id, _) in add {
            let Some(sku) = skus.iter().find(|s| &s.sku_id == sku_id) else {
                return Err(rejected(
                    format!("License {sku_id} does not correspond to a valid company License."),
                    request_id,
                ));
            };
            if !account.assigned.contains_key(sku_id)
                && Self::consumed(&state, tenant, sku_id) >= sku.enabled_units
            {
                return Ok(LicenseWrite::NoSeats {
                    graph_request_id: Some(request_id),
                    message: format!(
                        "Subscription with SKU {sku_id} does not have any available licenses."
                    ),
                });
            }
        }
        let account = state.accounts.entry(key).or_default();
        for sku in remove {
            account.assigned.remove(sku);
        }
        for (sku, disabled) in add {
            account.assigned.insert(sku.clone(), disabled.clone());
        }
        Ok(LicenseWrite::Done)
    }
}

#[cfg(test)]
mod tests {
    contract_tests!(license_settings, super::FakeLicenseSettings::new());
}
