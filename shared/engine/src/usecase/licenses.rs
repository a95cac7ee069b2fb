//! Licences (R-LIC-1): the tenant's licence settings (`GET`/`PUT /tenants/{tenantId}/settings`),
//! a bound group's licences (`PUT /groups/{groupId}/binding` `licenses`) and keeping each bound
//! user's M365 licences equal to what its sources want.
//!
//! Settings and group licences are checked against the tenant's `subscribedSkus` (graph-spec §9.1)
//! when they are written: an unknown SKU part number or service plan name is a 400
//! (`unknown_sku` / `unknown_service_plan`, the known names listed), a usage location that is not
//! ISO 3166-1 alpha-2 is `invalid_usage_location`, and nothing is written. The names are stored
//! with their ids, so assigning a licence later costs no `subscribedSkus` read.
//!
//! A bound user's wanted licences are the tenant's defaults plus the licences of every bound
//! group (bound to the same tenant) it is a member of, each SKU with the sources that want it.
//! [`Licenses::sync_user`] compares them with what the binding records as granted
//! ([`crate::model::Licensing`]): missing SKUs are added (the account's `usageLocation` is set
//! first — the user's own, else the tenant's — because M365 refuses a licence without one,
//! graph-spec §9.2) and SKUs no source wants any more are removed, in one `assignLicense`. A SKU
//! we never granted is never removed, and a SKU still wanted by another source stays. Each change
//! records `user_update_provision` with the SKUs added and removed. No seat left
//! (`enabledUnits` used up) leaves the account as it is with `licenseState: failed`, code
//! `license_unavailable`, and a failure with Graph's request id; a retryable failure leaves it
//! `pending`. Reconcile ([`Licenses::reconcile_tenant`]) runs the same comparison for every
//! `provisioned` binding, so a freed seat, a changed default or a group membership change is
//! caught up. Graph writes go through the `Directory` client's rate budget like every write.
//!
//! Bind runs [`Licenses::sync_user`] after binding; unbind runs [`Licenses::release`], which
//! removes the licences we granted only when the tenant's `removeLicensesOnUnbind` is set.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Conflict, Entity, Error, InvalidInput, Result};
use crate::model::{
    Binding, BindingError, BindingState, DirectoryUser, Event, EventId, EventKind, Failure,
    GrantedSku, Group, GroupId, GroupLicenses, LicenseInputError, LicenseRequest, LicenseSource,
    LicenseState, Licensing, OperationId, OperationKind, OperationSubject, PageRequest,
    ResolvedLicense, TenantId, TenantSettings, UsageLocation, UserId, resolve_licenses,
    wanted_licenses,
};
use crate::ports::{
    BindingStore, Clock, EventStore, Expect, FailureStore, GroupStore, LicenseDirectory,
    LicenseSettingsStore, LicenseWrite, Ports, TenantStore, UserStore,
};

/// Code of a binding whose licence found no free seat.
pub const LICENSE_UNAVAILABLE: &str = "license_unavailable";
/// Code of a binding whose licence M365 refused for another reason.
pub const LICENSE_REJECTED: &str = "license_rejected";
/// Code of a binding whose licence needs a usage location nobody gave.
pub const USAGE_LOCATION_REQUIRED: &str = "usage_location_required";

/// The user's own usage location (R-ATTR-1), which wins over the tenant's (R-LIC-1).
#[must_use]
pub fn user_usage_location(user: &DirectoryUser) -> Option<&str> {
    user.attributes.usage_location.as_deref()
}

/// `PUT /tenants/{tenantId}/settings` body (every field optional; absent = default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsInput {
    /// ISO 3166-1 alpha-2 usage location for accounts whose user has none.
    #[serde(default)]
    pub usage_location: Option<String>,
    /// Default licences.
    #[serde(default)]
    pub licenses: Vec<LicenseRequest>,
    /// Whether unbind removes the licences we granted.
    #[serde(default)]
    pub remove_licenses_on_unbind: bool,
}

/// Most licences in one setting (a tenant has a few dozen SKUs at most).
pub const MAX_LICENSES: usize = 50;

/// What a reconcile of a tenant's licences did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenseReport {
    /// Bindings looked at.
    pub checked: u32,
    /// Bindings whose licences changed.
    pub changed: u32,
    /// Bindings whose licences could not be assigned (failed or pending).
    pub failed: u32,
}

use_case! {
    /// Licence settings and the licences of bound users (R-LIC-1).
    pub struct Licenses {
        ports: [
            tenants: Tenants, store: LicenseSettings = license_settings, m365: Licensing = licensing,
            groups: Groups, users: Users, bindings: Bindings, events: Events, failures: Failures,
            clock: Clock
        ],
    }
}

impl<P: Ports> Clone for Licenses<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: Ports> Copy for Licenses<'_, P> {}

impl<'a, P: Ports> Licenses<'a, P> {
    /// The licence follow-up of bind and unbind on `ports` (see `Bind::licenses`).
    #[must_use]
    pub fn follow(ports: &'a P) -> Option<Self> {
        Some(Self::new(ports))
    }
}

fn too_many(field: &'static str) -> Error {
    InvalidInput::Field {
        field,
        problem: crate::error::FieldProblem::TooLong { max: MAX_LICENSES },
    }
    .into()
}

impl<P: Ports> Licenses<'_, P> {
    async fn known_tenant(&self, tenant: &TenantId) -> Result<()> {
        match self.tenants.get(tenant).await? {
            Some(_) => Ok(()),
            None => Err(Error::not_found(Entity::Tenant, tenant)),
        }
    }

    /// Checks `requested` against the tenant's `subscribedSkus` (one Graph read; none for an
    /// empty list).
    async fn resolve(
        &self,
        tenant: &TenantId,
        requested: &[LicenseRequest],
    ) -> Result<Vec<ResolvedLicense>> {
        if requested.is_empty() {
            return Ok(Vec::new());
        }
        if requested.len() > MAX_LICENSES {
            return Err(too_many("licenses"));
        }
        let skus = self.m365.subscribed_skus(tenant).await?;
        Ok(resolve_licenses(requested, &skus).map_err(InvalidInput::from)?)
    }

    /// The tenant's settings; the defaults when it never was configured.
    ///
    /// # Errors
    /// `NotFound` (tenant); store failures.
    pub async fn settings(&self, tenant: &TenantId) -> Result<TenantSettings> {
        self.known_tenant(tenant).await?;
        Ok(self
            .store
            .settings(tenant)
            .await?
            .unwrap_or_else(|| TenantSettings::defaults(tenant.clone())))
    }

    /// Validates and stores the tenant's settings (R-LIC-1). They apply to bound users at the
    /// next bind or reconcile.
    ///
    /// # Errors
    /// `NotFound` (tenant); `Invalid` (`invalid_usage_location`, `unknown_sku`,
    /// `unknown_service_plan`), nothing written; Graph failures reading `subscribedSkus`.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant))]
    pub async fn put_settings(
        &self,
        tenant: &TenantId,
        input: SettingsInput,
    ) -> Result<TenantSettings> {
        self.known_tenant(tenant).await?;
        let usage_location = input
            .usage_location
            .as_deref()
            .map(UsageLocation::parse)
            .transpose()
            .map_err(|e| InvalidInput::from(LicenseInputError::from(e)))?;
        let licenses = self.resolve(tenant, &input.licenses).await?;
        let settings = TenantSettings {
            tenant_id: tenant.clone(),
            usage_location,
            licenses,
            remove_licenses_on_unbind: input.remove_licenses_on_unbind,
        };
        self.store.put_settings(&settings).await?;
        tracing::info!(
            licenses = settings.licenses.len(),
            "tenant licence settings saved"
        );
        Ok(settings)
    }

    /// Validates a group's licences for `tenant` (before the group is bound: nothing is written
    /// on bad input).
    ///
    /// # Errors
    /// `Invalid` (`unknown_sku`, `unknown_service_plan`); Graph failures.
    pub async fn check_group_licenses(
        &self,
        tenant: &TenantId,
        requested: &[LicenseRequest],
    ) -> Result<Vec<ResolvedLicense>> {
        self.resolve(tenant, requested).await
    }

    /// Stores a bound group's licences and brings its bound members' licences in line now
    /// (a failure of one member is on its binding; reconcile catches up).
    ///
    /// # Errors
    /// Store failures.
    pub async fn set_group_licenses(
        &self,
        group: &Group,
        tenant: &TenantId,
        licenses: Vec<ResolvedLicense>,
    ) -> Result<()> {
        self.store
            .put_group_licenses(&GroupLicenses {
                group_id: group.id.clone(),
                tenant_id: tenant.clone(),
                licenses,
            })
            .await?;
        self.follow_members(group.members.iter()).await;
        Ok(())
    }

    /// After a group's membership changed: the bound users among `members` (those who joined
    /// and those who left) get their licences brought in line. Never fails: a failure is logged
    /// and reconcile catches up.
    pub async fn follow_members<'u>(&self, members: impl Iterator<Item = &'u UserId>) {
        for user in members {
            if let Err(e) = self.sync_user(user).await {
                tracing::warn!(user.id = %user, error.code = e.code(), "licences not synced now; reconcile catches up");
            }
        }
    }

    /// The sources of `user`'s wanted licences in `tenant`: the tenant's defaults, then each
    /// bound group (bound to `tenant`) it is a member of.
    async fn wanted(
        &self,
        user: &UserId,
        settings: &TenantSettings,
    ) -> Result<BTreeMap<String, GrantedSku>> {
        let mut groups: Vec<(LicenseSource, Vec<ResolvedLicense>)> = Vec::new();
        for group in self.groups.groups_of_member(user).await? {
            let bound_here = group
                .binding
                .as_ref()
                .is_some_and(|b| b.tenant_id == settings.tenant_id);
            if !bound_here {
                continue;
            }
            if let Some(gl) = self.store.group_licenses(&group.id).await?
                && gl.tenant_id == settings.tenant_id
                && !gl.licenses.is_empty()
            {
                groups.push((LicenseSource::Group(group.id.clone()), gl.licenses));
            }
        }
        let mut sources: Vec<(LicenseSource, &[ResolvedLicense])> =
            vec![(LicenseSource::Tenant, settings.licenses.as_slice())];
        sources.extend(groups.iter().map(|(s, l)| (s.clone(), l.as_slice())));
        Ok(wanted_licenses(&sources))
    }

    async fn tenant_settings(&self, tenant: &TenantId) -> Result<TenantSettings> {
        Ok(self
            .store
            .settings(tenant)
            .await?
            .unwrap_or_else(|| TenantSettings::defaults(tenant.clone())))
    }

    /// Brings `user`'s M365 licences in line with what its sources want (see the module doc).
    /// Does nothing for a user without a `provisioned` binding. M365 refusals are not errors:
    /// they are on the binding (`licenseState`), in a failure and, for reconcile, retried.
    ///
    /// # Errors
    /// Store failures; a binding changed meanwhile (`Conflict::StaleVersion`: the next run
    /// catches up).
    #[tracing::instrument(skip_all, fields(op.kind = "user_licenses", user.id = %user))]
    pub async fn sync_user(&self, user: &UserId) -> Result<Option<LicenseState>> {
        let Some(binding) = self.bindings.get(user).await? else {
            return Ok(None);
        };
        let (BindingState::Provisioned, Some(_)) = (binding.state, &binding.m365_object_id) else {
            return Ok(None);
        };
        let settings = self.tenant_settings(&binding.tenant_id).await?;
        let wanted = self.wanted(user, &settings).await?;
        let licensing = binding.licensing.clone();
        let granted = licensing
            .as_ref()
            .map(|l| l.granted.clone())
            .unwrap_or_default();
        let add: Vec<(String, Vec<String>)> = wanted
            .iter()
            .filter(|(id, w)| {
                granted
                    .get(*id)
                    .is_none_or(|g| g.disabled_plan_ids != w.disabled_plan_ids)
            })
            .map(|(id, w)| (id.clone(), w.disabled_plan_ids.clone()))
            .collect();
        let remove: Vec<String> = granted
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        if add.is_empty() && remove.is_empty() {
            let state = if wanted.is_empty() {
                LicenseState::None
            } else {
                LicenseState::Assigned
            };
            let settled = Licensing {
                state,
                granted: wanted,
                error_code: None,
            };
            // Nothing to write to M365; record the sources when they changed (or a failed state
            // that a removal elsewhere resolved).
            if licensing.as_ref() != Some(&settled)
                && (licensing.is_some() || state != LicenseState::None)
            {
                self.save(&binding, settled, None).await?;
            }
            return Ok(Some(state));
        }
        let outcome = self
            .assign(&binding, &settings, &add, &remove, &granted, &wanted)
            .await?;
        Ok(Some(outcome))
    }

    /// Sets the usage location (when adding) and sends one `assignLicense`; records the result.
    async fn assign(
        &self,
        binding: &Binding,
        settings: &TenantSettings,
        add: &[(String, Vec<String>)],
        remove: &[String],
        granted: &BTreeMap<String, GrantedSku>,
        wanted: &BTreeMap<String, GrantedSku>,
    ) -> Result<LicenseState> {
        let tenant = &binding.tenant_id;
        let Some(account) = binding.m365_object_id.as_ref() else {
            return Ok(LicenseState::None);
        };
        let user = self.users.get(&binding.user_id).await?;
        let own = user
            .as_ref()
            .and_then(user_usage_location)
            .and_then(|l| UsageLocation::parse(l).ok());
        let location = own.or_else(|| settings.usage_location.clone());
        let result = if add.is_empty() {
            self.m365
                .assign_licenses(tenant, account, add, remove)
                .await
        } else if let Some(location) = &location {
            match self
                .m365
                .set_usage_location(tenant, account, location)
                .await
            {
                Ok(()) => {
                    self.m365
                        .assign_licenses(tenant, account, add, remove)
                        .await
                }
                Err(e) => Err(e),
            }
        } else {
            let failure = (
                USAGE_LOCATION_REQUIRED,
                "a licence needs a usage location: set the user's or the tenant's usageLocation"
                    .to_owned(),
                None,
            );
            return self
                .refused(binding, granted, LicenseState::Failed, failure)
                .await;
        };
        match result {
            Ok(LicenseWrite::Done) => {
                let added: Vec<&str> = add
                    .iter()
                    .filter_map(|(id, _)| wanted.get(id).map(|w| w.sku.as_str()))
                    .collect();
                let removed: Vec<&str> = remove
                    .iter()
                    .filter_map(|id| granted.get(id).map(|g| g.sku.as_str()))
                    .collect();
                let state = if wanted.is_empty() {
                    LicenseState::None
                } else {
                    LicenseState::Assigned
                };
                let details = serde_json::json!({
                    "m365ObjectId": account,
                    "licensesAdded": added,
                    "licensesRemoved": removed,
                    "usageLocation": if add.is_empty() { None } else { location.as_ref().map(UsageLocation::as_str) },
                });
                let licensing = Licensing {
                    state,
                    granted: wanted.clone(),
                    error_code: None,
                };
                self.save(binding, licensing, Some(details)).await?;
                tracing::info!(
                    added = added.len(),
                    removed = removed.len(),
                    "licences assigned"
                );
                Ok(state)
            }
            Ok(LicenseWrite::NoSeats {
                graph_request_id,
                message,
            }) => {
                self.refused(
                    binding,
                    granted,
                    LicenseState::Failed,
                    (LICENSE_UNAVAILABLE, message, graph_request_id),
                )
                .await
            }
            Err(Error::Rejected {
                message,
                graph_request_id,
                ..
            }) => {
                let failure = (LICENSE_REJECTED, message, graph_request_id);
                self.refused(binding, granted, LicenseState::Failed, failure)
                    .await
            }
            Err(e) => {
                // Throttled or unavailable: `pending`, reconcile tries again; else `failed`.
                let state = if e.is_retryable() {
                    LicenseState::Pending
                } else {
                    LicenseState::Failed
                };
                let failure = (
                    e.code(),
                    e.to_string(),
                    e.graph_request_id().map(str::to_owned),
                );
                self.refused(binding, granted, state, failure).await
            }
        }
    }

    /// Records a licence assignment that did not happen: the binding keeps what was granted,
    /// shows `state` with the code, and a failure holds Graph's request id.
    async fn refused(
        &self,
        binding: &Binding,
        granted: &BTreeMap<String, GrantedSku>,
        state: LicenseState,
        (code, message, graph_request_id): (&str, String, Option<String>),
    ) -> Result<LicenseState> {
        let now = self.clock.now();
        let op = licence_op(binding);
        let failure = Failure {
            id: EventId::derive(&["license_failure", op.as_str(), code]),
            tenant_id: binding.tenant_id.clone(),
            user_id: Some(binding.user_id.clone()),
            operation_id: op,
            code: code.to_owned(),
            message: message.clone(),
            graph_request_id: graph_request_id.clone(),
            at: now,
        };
        self.failures.record(&failure).await?;
        let licensing = Licensing {
            state,
            granted: granted.clone(),
            error_code: Some(code.to_owned()),
        };
        let mut stored = binding.clone();
        stored.last_error = Some(BindingError {
            code: code.to_owned(),
            message,
            graph_request_id,
            at: now,
        });
        tracing::warn!(
            error.code = code,
            state = state.as_str(),
            "licences not assigned"
        );
        self.save(&stored, licensing, None).await?;
        Ok(state)
    }

    /// Writes `licensing` on the binding (the version read: a binding changed meanwhile is left
    /// to the next run) and, with `details`, records `user_update_provision`.
    async fn save(
        &self,
        binding: &Binding,
        licensing: Licensing,
        details: Option<serde_json::Value>,
    ) -> Result<()> {
        let mut next = binding.clone();
        let earlier_code = binding
            .licensing
            .as_ref()
            .and_then(|l| l.error_code.as_deref());
        if licensing.error_code.is_none()
            && next
                .last_error
                .as_ref()
                .is_some_and(|e| is_licence_code(&e.code) || Some(e.code.as_str()) == earlier_code)
        {
            next.last_error = None;
        }
        next.licensing = Some(licensing);
        let stored = self
            .bindings
            .put(&next, Expect::Version(binding.version))
            .await?;
        if let Some(details) = details {
            let op = licence_op(binding);
            let event = Event {
                actor: Some(self.actor.clone()),
                id: EventId::derive(&["license", op.as_str()]),
                kind: EventKind::UserUpdateProvision,
                at: self.clock.now(),
                user_id: Some(binding.user_id.clone()),
                tenant_id: Some(stored.tenant_id.clone()),
                operation_id: Some(op),
                reason: Some("licenses".to_owned()),
                details: Some(details),
            };
            self.events.append(&event).await?;
        }
        Ok(())
    }

    /// Unbind (R-LIC-1): removes the licences we granted `user` when the tenant's
    /// `removeLicensesOnUnbind` is set; otherwise they stay. Never fails the unbind: a failure is
    /// recorded and logged.
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_licenses", user.id = %user))]
    pub async fn release(&self, user: &UserId) -> Result<()> {
        let Some(binding) = self.bindings.get(user).await? else {
            return Ok(());
        };
        let Some(granted) = binding
            .licensing
            .as_ref()
            .map(|l| l.granted.clone())
            .filter(|g| !g.is_empty())
        else {
            return Ok(());
        };
        let settings = self.tenant_settings(&binding.tenant_id).await?;
        if !settings.remove_licenses_on_unbind {
            return Ok(());
        }
        let remove: Vec<String> = granted.keys().cloned().collect();
        let none = BTreeMap::new();
        self.assign(&binding, &settings, &[], &remove, &granted, &none)
            .await?;
        Ok(())
    }

    /// Reconcile (R-LIC-1): [`Self::sync_user`] for every `provisioned` binding of `tenant`.
    ///
    /// # Errors
    /// Store failures listing the bindings.
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_licenses", tenant.id = %tenant))]
    pub async fn reconcile_tenant(&self, tenant: &TenantId) -> Result<LicenseReport> {
        let mut report = LicenseReport::default();
        let mut page = PageRequest::first(crate::model::MAX_PAGE_LIMIT);
        loop {
            let listed = self
                .bindings
                .list_by_tenant(tenant, Some(BindingState::Provisioned), &page)
                .await?;
            for b in &listed.items {
                report.checked += 1;
                let before = b.licensing.clone();
                match self.sync_user(&b.user_id).await {
                    Ok(Some(LicenseState::Failed | LicenseState::Pending)) => report.failed += 1,
                    Ok(_) => {}
                    Err(Error::Conflict(Conflict::StaleVersion { .. })) => continue,
                    Err(e) => return Err(e),
                }
                let after = self.bindings.get(&b.user_id).await?;
                let granted = |l: Option<&Licensing>| {
                    l.map(|l| l.granted.keys().cloned().collect::<BTreeSet<_>>())
                };
                if granted(before.as_ref())
                    != granted(after.as_ref().and_then(|a| a.licensing.as_ref()))
                {
                    report.changed += 1;
                }
            }
            match listed.next {
                Some(next) => page = PageRequest::after(next, crate::model::MAX_PAGE_LIMIT),
                None => break,
            }
        }
        tracing::info!(
            checked = report.checked,
            changed = report.changed,
            failed = report.failed,
            "licences reconciled"
        );
        Ok(report)
    }

    /// Group `id`'s licences, for the API.
    ///
    /// # Errors
    /// Store failures.
    pub async fn group_licenses(&self, id: &GroupId) -> Result<Vec<ResolvedLicense>> {
        Ok(self
            .store
            .group_licenses(id)
            .await?
            .map(|g| g.licenses)
            .unwrap_or_default())
    }
}

fn is_licence_code(code: &str) -> bool {
    matches!(
        code,
        LICENSE_UNAVAILABLE | LICENSE_REJECTED | USAGE_LOCATION_REQUIRED
    )
}

/// The operation id of a licence change of `binding` (one per binding version).
fn licence_op(binding: &Binding) -> OperationId {
    OperationId::new(
        OperationKind::UserUpdate,
        &OperationSubject::User(binding.user_id.clone()),
        format!("licenses-{}", binding.version),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
