//! Held safeguard plans (R-REC-3): a reconcile round that would block, suspend or remove more
//! users than the threshold allows ([`crate::policy::safeguard::Safeguard`], `10%` or `500`;
//! counted over the whole delta round, every pass of it, group member removals included) is not
//! applied and not retried every hour: its plan is *held*, one per tenant, until an admin decides.
//!
//! - **Hold** ([`ReconcilePass`](super::reconcile_pass::ReconcilePass) calls [`HeldPlans::hold`]):
//!   the pass's user repairs (each with the binding and directory-user versions it was planned
//!   against), its group repairs, the counts, the threshold, and what moves the delta cursors
//!   past the pass (the users link — with the full listing's state and its seen ids, saved now —
//!   and the groups link) are stored as one [`HeldPlan`]; `reconcile_safeguard_tripped` is
//!   recorded once, with the plan's id and size. Nothing else is written: no repair, no cursor.
//! - **While held**, a writing pass of the tenant does nothing at all (no delta read, no repair,
//!   no re-queue of stuck work, no licences; it ends `Stopped`, and its report carries the held
//!   plan's summary): it neither applies the held changes nor trips or records again. A dry run
//!   still plans (it reads only).
//! - **Approve** ([`HeldPlans::approve`]) applies exactly the held plan once, under the tenant's
//!   reconcile lease (so neither a pass nor a second approve runs meanwhile; a second approve
//!   meanwhile is [`Decided::Busy`], one after it [`Decided::NoPlan`]). Each user repair is
//!   re-checked first: a binding or directory user changed since the plan (another version:
//!   re-bound, unbound, edited) is skipped with `binding_changed` / `user_changed`; an attribute
//!   repair is recomputed against the account as it is now (`no_longer_needed` when nothing
//!   differs any more); a privileged account is skipped as in a pass (R-BIND-11). Each group is
//!   re-mirrored from the directory as it is now (a group no longer bound to the tenant is
//!   skipped, `group_unbound`). Then the cursors move past the held pass, the round tally is
//!   cleared, the plan is deleted (a conditional delete on its id) and `reconcile_plan_approved`
//!   records the counts. Events of the repairs have ids derived from the plan's id: an approve
//!   cut off before the delete and approved again records none twice.
//!   An approve stopped by a retryable failure (throttling, an outage, the function's deadline)
//!   keeps the plan held and the cursors put (`complete: false`): approving again re-checks
//!   every repair and finishes it (a repair applied already is skipped or finds nothing to do;
//!   a re-applied block writes what is there and records no second event).
//! - **Reject** ([`HeldPlans::reject`]) moves the cursors past the held pass without applying
//!   anything, clears the tally, deletes the plan and records `reconcile_plan_rejected`. The delta
//!   changes the plan came from are behind the saved links, so they are not proposed again
//!   until they change again.
//!
//! User repairs that do not come from the delta — the password-expiry sweep (`suspend_expired`,
//! and a `suspend_disabled` the sweep finds), UPN lookups of bindings without an account
//! (`block`/`link_account`) — are planned from our own stores each round; a reject keeps its
//! plan's user repairs with their versions ([`RejectedRepair`], one list per tenant, replaced by
//! the next reject) and a pass drops such a repair while its binding and directory user are
//! unchanged and the delta does not report its account. Not covered: the group repairs read from
//! binding records (`directory_change`, `members_now_bound`, `mirrored_account_deleted`) are
//! proposed again by the next round (and, still above the threshold, held again).
//!
//! An approve or reject of a plan whose pass was not the last of its round moves the cursors to
//! the middle of the round; the next scheduled pass goes on from there.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::group_sync::GroupOutcome;
use super::patch_for;
use super::reconcile::{
    Applied, Reconcile, ReconcileSettings, Repair, RepairKind, SafeguardTrip, UsersPass,
    UsersResume,
};
use super::reconcile_groups::{GroupRepair, GroupsPass, ReconcileGroups};
use super::reconcile_queue::lease_name;
use crate::error::{Error, Result};
use crate::model::{
    Event, EventId, EventKind, GroupId, M365ObjectId, OperationId, OperationKind, OperationSubject,
    TenantId, UserId,
};
use crate::policy::safeguard::Safeguard;
use crate::ports::{
    BindingStore, Clock, DeltaStream, Directory, EventStore, GroupStore, HeldPlanStore, HeldRecord,
    Leases, Ports, ReconcileCursors, UserStore,
};

/// One user repair of a held plan, with the versions it was planned against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldRepair {
    /// What it does.
    pub kind: RepairKind,
    /// The directory user.
    pub user_id: UserId,
    /// The M365 account.
    pub m365_object_id: M365ObjectId,
    /// For attribute drift: the attributes that differed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    /// `privileged_account`: not applied, as in a pass (R-BIND-11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Why it is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_why: Option<String>,
    /// For `mark_deleted`: missing from a full listing (looked up once more when applied).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub missing_from_listing: bool,
    /// For `set_manager`: the manager's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<M365ObjectId>,
    /// For `overwrite_password`: the M365 change's stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m365_password_change: Option<DateTime<Utc>>,
    /// The binding's version when planned: another one now skips the repair.
    pub binding_version: u64,
    /// The directory user's version when planned (when the plan read the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_version: Option<u64>,
}

/// A repair of a rejected plan, kept so that one not coming from the delta (the expiry sweep, an
/// account lookup) is not proposed again until its binding or user changes (R-REC-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedRepair {
    /// What it did.
    pub kind: RepairKind,
    /// The directory user.
    pub user_id: UserId,
    /// The binding's version when planned.
    pub binding_version: u64,
    /// The directory user's version when planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_version: Option<u64>,
}

/// The counts of a held plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldCounts {
    /// Users the pass would block, suspend or remove.
    pub destructive: usize,
    /// Group members the pass would remove.
    pub group_removals: usize,
    /// Destructive changes applied by the round's earlier passes.
    pub earlier: usize,
    /// `earlier + destructive + groupRemovals`: more than `allowed`.
    pub round_total: usize,
    /// The most the threshold allows in this tenant.
    pub allowed: usize,
    /// The tenant's bound users.
    pub bound: usize,
    /// User repairs held (every kind).
    pub user_repairs: usize,
    /// Group repairs held.
    pub group_repairs: usize,
}

/// Which round and pass a held plan comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldRound {
    /// The pass's number in its round (1: the scheduled one).
    pub pass: u32,
    /// The pass listed every user (first run, or Graph lost the delta state).
    pub full_sync: bool,
    /// The pass ended the users round (`false`: passes are left after it).
    pub complete: bool,
    /// Users delta pages the pass read.
    pub pages: u32,
}

/// Where the delta cursors go once the plan is decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldResume {
    /// The users cursor.
    pub users: Option<UsersResume>,
    /// The groups link.
    pub groups: Option<String>,
}

/// A held plan (R-REC-3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldPlan {
    /// Unique per tenant and hold.
    pub id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// When the safeguard held it.
    pub held_at: DateTime<Utc>,
    /// The threshold it crossed (`10%` or `500`).
    pub threshold: Safeguard,
    /// Counts.
    pub counts: HeldCounts,
    /// Its round and pass.
    pub round: HeldRound,
    /// The user repairs.
    pub users: Vec<HeldRepair>,
    /// The group repairs (each re-mirrors one bound group).
    pub groups: Vec<GroupRepair>,
    /// Where the delta cursors go once decided (not shown by the API).
    pub resume: HeldResume,
}

impl HeldPlan {
    /// The plan as `GET …/reconcile/held` shows it (without the cursors' links).
    #[must_use]
    pub fn view(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("resume");
        }
        value
    }

    /// The short form a pass's report carries while the plan is held.
    #[must_use]
    pub fn summary(&self) -> HeldSummary {
        HeldSummary {
            id: self.id.clone(),
            held_at: self.held_at,
            counts: self.counts.clone(),
        }
    }
}

/// A held plan in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldSummary {
    /// Its id.
    pub id: String,
    /// When it was held.
    pub held_at: DateTime<Utc>,
    /// Its counts.
    pub counts: HeldCounts,
}

/// What a decision found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided<R> {
    /// No plan is held (never, or decided already): API `404 no_held_plan`.
    NoPlan,
    /// A reconcile pass or another decision holds the tenant: API `409 reconcile_in_progress`.
    Busy,
    /// Decided.
    Done(R),
}

/// One held repair not applied by an approve, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotApplied {
    /// The directory user (user repairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// The directory group (group repairs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The repair (`block`, …, or `group` for a group).
    pub kind: String,
    /// Why: `binding_changed`, `user_changed`, `no_longer_needed`, `account_still_there`,
    /// `privileged_account`, `group_unbound`, or a failure's code.
    pub reason: String,
}

/// What an approve or reject did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The plan.
    pub plan_id: String,
    /// `approved` or `rejected`.
    pub decision: &'static str,
    /// User repairs applied.
    pub applied: usize,
    /// Groups re-mirrored.
    pub groups_applied: usize,
    /// Repairs not applied (re-checked and found changed, privileged) with the reason.
    pub skipped: Vec<NotApplied>,
    /// Repairs that failed (recorded in the failures list, like a pass's).
    pub failed: Vec<NotApplied>,
    /// The decision is done: the plan is gone and the cursors moved. `false`: an approve stopped
    /// at a retryable failure (throttling, an outage, the function's deadline) — the plan is still
    /// held, and approving again finishes it.
    pub complete: bool,
}

/// The held-plans use case.
#[derive(Debug)]
pub struct HeldPlans<'a, P: Ports> {
    /// Every port the repairs use.
    pub ports: &'a P,
    /// Behaviour (the threshold, pages per pass).
    pub settings: &'a ReconcileSettings,
}

fn corrupt(e: serde_json::Error) -> Error {
    Error::Infrastructure {
        component: "held_plan",
        source: Box::new(e),
    }
}

fn operation(tenant: &TenantId) -> OperationId {
    OperationId::new(
        OperationKind::Reconcile,
        &OperationSubject::Tenant(tenant.clone()),
        "held",
    )
}

impl<'a, P: Ports> HeldPlans<'a, P> {
    /// The use case on `ports`.
    #[must_use]
    pub fn new(ports: &'a P, settings: &'a ReconcileSettings) -> Self {
        Self { ports, settings }
    }
}

impl<P: Ports> HeldPlans<'_, P> {
    /// The tenant's held plan, if any.
    ///
    /// # Errors
    /// Store failures; a stored plan that does not parse (`Infrastructure`).
    pub async fn get(&self, tenant: &TenantId) -> Result<Option<HeldPlan>> {
        match self.ports.held_plans().get(tenant).await? {
            Some(record) => Ok(Some(serde_json::from_str(&record.body).map_err(corrupt)?)),
            None => Ok(None),
        }
    }

    /// The repairs of the tenant's last rejected plan.
    ///
    /// # Errors
    /// Store failures; a stored list that does not parse (`Infrastructure`).
    pub(crate) async fn rejected(&self, tenant: &TenantId) -> Result<Vec<RejectedRepair>> {
        match self.ports.held_plans().rejected(tenant).await? {
            Some(body) => serde_json::from_str(&body).map_err(corrupt),
            None => Ok(Vec::new()),
        }
    }

    /// Holds a tripped pass's plan (see the module docs): stores it unless one is held already
    /// and records `reconcile_safeguard_tripped` once. Answers the plan held (the existing one
    /// when another pass held first).
    ///
    /// # Errors
    /// Store failures (nothing applied either way).
    pub(crate) async fn hold(
        &self,
        tenant: &TenantId,
        number: u32,
        users: &UsersPass,
        groups: &GroupsPass,
        trip: &SafeguardTrip,
    ) -> Result<HeldPlan> {
        let reconcile = Reconcile::new(self.ports, self.settings);
        let now = self.ports.clock().now();
        let mut held_users = Vec::new();
        for repair in &users.report.plan {
            let Some(binding) = users.bindings.iter().find(|b| b.user_id == repair.user_id) else {
                continue;
            };
            let user_version = users.users.get(&repair.user_id).map(|u| u.version);
            held_users.push(repair.to_held(binding.version, user_version));
        }
        let plan = HeldPlan {
            id: EventId::derive(&[
                tenant.as_str(),
                users.start.as_deref().unwrap_or("full"),
                &now.timestamp_millis().to_string(),
                "held",
            ])
            .to_string(),
            tenant_id: tenant.clone(),
            held_at: now,
            threshold: trip.threshold,
            counts: HeldCounts {
                destructive: trip.destructive,
                group_removals: trip.group_removals,
                earlier: trip.earlier,
                round_total: trip.round_total,
                allowed: trip.allowed,
                bound: trip.bound,
                user_repairs: held_users.len(),
                group_repairs: groups.report.plan.len(),
            },
            round: HeldRound {
                pass: number,
                full_sync: users.report.full_sync,
                complete: users.report.complete,
                pages: users.report.pages,
            },
            users: held_users,
            groups: groups.report.plan.clone(),
            resume: HeldResume {
                users: users.hold(&reconcile, tenant).await?,
                groups: groups.save.clone(),
            },
        };
        let record = HeldRecord {
            plan_id: plan.id.clone(),
            body: serde_json::to_string(&plan).map_err(corrupt)?,
        };
        if !self.ports.held_plans().hold(tenant, &record).await? {
            // Another pass held one first (passes are leased, so only after a lease expired):
            // that one stands, and it was recorded.
            return Ok(self.get(tenant).await?.unwrap_or(plan));
        }
        reconcile
            .record_trip(
                tenant,
                users.start.as_deref(),
                trip,
                Some((
                    &plan.id,
                    plan.counts.user_repairs + plan.counts.group_repairs,
                )),
            )
            .await?;
        tracing::warn!(
            tenant.id = %tenant,
            plan.id = %plan.id,
            destructive = trip.destructive,
            group_removals = trip.group_removals,
            round_total = trip.round_total,
            allowed = trip.allowed,
            "reconcile held by the safeguard"
        );
        Ok(plan)
    }

    /// Applies the tenant's held plan once (see the module docs).
    ///
    /// # Errors
    /// Store, lease or Graph-read failures (the plan stays held; an approve again re-checks
    /// every repair, and the events already recorded are not recorded twice).
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_held_approve", tenant.id = %tenant))]
    pub async fn approve(
        &self,
        tenant: &TenantId,
        holder: &str,
        lease: TimeDelta,
    ) -> Result<Decided<Decision>> {
        self.decide(tenant, holder, lease, true).await
    }

    /// Discards the tenant's held plan and moves the cursors past it (see the module docs).
    ///
    /// # Errors
    /// Store or lease failures (the plan stays held).
    #[tracing::instrument(skip_all, fields(op.kind = "reconcile_held_reject", tenant.id = %tenant))]
    pub async fn reject(
        &self,
        tenant: &TenantId,
        holder: &str,
        lease: TimeDelta,
    ) -> Result<Decided<Decision>> {
        self.decide(tenant, holder, lease, false).await
    }

    async fn decide(
        &self,
        tenant: &TenantId,
        holder: &str,
        lease: TimeDelta,
        approve: bool,
    ) -> Result<Decided<Decision>> {
        let leases = self.ports.leases();
        let name = lease_name(tenant);
        let now = self.ports.clock().now();
        if !leases.acquire(&name, holder, now, now + lease).await? {
            return Ok(Decided::Busy);
        }
        let result = Box::pin(self.decide_leased(tenant, approve)).await;
        if let Err(e) = leases.release(&name, holder).await {
            tracing::warn!(error.code = e.code(), "reconcile lease not released");
        }
        let decided = result?;
        if let Decided::Done(d) = &decided {
            tracing::info!(
                plan.id = %d.plan_id,
                decision = d.decision,
                applied = d.applied,
                groups_applied = d.groups_applied,
                skipped = d.skipped.len(),
                failed = d.failed.len(),
                "held reconcile plan decided"
            );
        }
        Ok(decided)
    }

    async fn decide_leased(&self, tenant: &TenantId, approve: bool) -> Result<Decided<Decision>> {
        let Some(plan) = self.get(tenant).await? else {
            return Ok(Decided::NoPlan);
        };
        let mut decision = Decision {
            plan_id: plan.id.clone(),
            decision: if approve { "approved" } else { "rejected" },
            applied: 0,
            groups_applied: 0,
            skipped: Vec::new(),
            failed: Vec::new(),
            complete: true,
        };
        if approve {
            self.apply_users(tenant, &plan, &mut decision).await?;
            if decision.complete {
                self.apply_groups(tenant, &plan, &mut decision).await?;
            }
            if !decision.complete {
                // Stopped by a retryable failure (throttling, an outage, the function's
                // deadline): the plan stays held and the cursors stay put; approving again
                // re-checks every repair (those applied are skipped or find nothing to do, and
                // their events are not recorded twice) and finishes it.
                tracing::warn!(plan.id = %plan.id, "held plan approve stopped before its end: still held");
                return Ok(Decided::Done(decision));
            }
        }
        // Past the held pass: its changes are behind the saved links (R-REC-3).
        let reconcile = Reconcile::new(self.ports, self.settings);
        if let Some(users) = &plan.resume.users {
            reconcile.resume(tenant, users).await?;
        }
        if let Some(groups) = &plan.resume.groups {
            self.ports
                .cursors()
                .put(tenant, DeltaStream::Groups, groups)
                .await?;
        }
        // The round's count starts again: what the admin decided is not counted twice.
        self.ports.held_plans().put_tally(tenant, None).await?;
        if !approve {
            // Repairs planned from our own stores (not the delta) would come back next round.
            let rejected: Vec<RejectedRepair> = plan
                .users
                .iter()
                .map(|r| RejectedRepair {
                    kind: r.kind,
                    user_id: r.user_id.clone(),
                    binding_version: r.binding_version,
                    user_version: r.user_version,
                })
                .collect();
            let body = serde_json::to_string(&rejected).map_err(corrupt)?;
            self.ports
                .held_plans()
                .put_rejected(tenant, Some(&body))
                .await?;
        }
        if !self.ports.held_plans().release(tenant, &plan.id).await? {
            // Only possible once the lease expired mid-decision and another decision ran.
            tracing::warn!(plan.id = %plan.id, "held plan already released");
            return Ok(Decided::NoPlan);
        }
        let (kind, reason) = if approve {
            (EventKind::ReconcilePlanApproved, "held_plan_approved")
        } else {
            (EventKind::ReconcilePlanRejected, "held_plan_rejected")
        };
        self.ports
            .events()
            .append(&Event {
                // The admin who decided (R-AUD-1).
                actor: Some(self.ports.actor().clone()),
                id: EventId::derive(&[tenant.as_str(), &plan.id, decision.decision]),
                kind,
                at: self.ports.clock().now(),
                user_id: None,
                tenant_id: Some(tenant.clone()),
                operation_id: Some(operation(tenant)),
                reason: Some(reason.to_owned()),
                details: Some(serde_json::json!({
                    "heldPlan": plan.id,
                    "heldAt": plan.held_at,
                    "threshold": plan.threshold,
                    "counts": plan.counts,
                    "applied": decision.applied,
                    "groupsApplied": decision.groups_applied,
                    "skipped": decision.skipped.len(),
                    "failed": decision.failed.len(),
                })),
            })
            .await?;
        // An admin decided: the safeguard incident is over (R-OPS-1); a later trip alerts again.
        Reconcile::new(self.ports, self.settings)
            .safeguard_passed(tenant)
            .await;
        Ok(Decided::Done(decision))
    }

    /// Re-checks and applies each held user repair (see the module docs).
    async fn apply_users(
        &self,
        tenant: &TenantId,
        plan: &HeldPlan,
        decision: &mut Decision,
    ) -> Result<()> {
        let reconcile = Reconcile::new(self.ports, self.settings);
        let run_key = format!("held#{}", plan.id);
        for held in &plan.users {
            let skip = |reason: &str| NotApplied {
                user_id: Some(held.user_id.clone()),
                group_id: None,
                kind: held.kind.as_str().to_owned(),
                reason: reason.to_owned(),
            };
            let binding = self.ports.bindings().get(&held.user_id).await?;
            let Some(binding) =
                binding.filter(|b| b.version == held.binding_version && &b.tenant_id == tenant)
            else {
                decision.skipped.push(skip("binding_changed"));
                continue;
            };
            let user = self.ports.users().get(&held.user_id).await?;
            if let Some(version) = held.user_version
                && user.as_ref().map(|u| u.version) != Some(version)
            {
                decision.skipped.push(skip("user_changed"));
                continue;
            }
            let patch = if held.kind == RepairKind::UpdateAttributes {
                // The account as it is now: only what still differs is written.
                let current = self
                    .ports
                    .directory()
                    .get_user(tenant, &held.m365_object_id)
                    .await?;
                match (user.as_ref(), current.as_ref()) {
                    (Some(user), Some(current)) => {
                        let patch = patch_for(user, Some(current));
                        if patch.is_empty() {
                            decision.skipped.push(skip("no_longer_needed"));
                            continue;
                        }
                        patch
                    }
                    _ => {
                        decision.skipped.push(skip("no_longer_needed"));
                        continue;
                    }
                }
            } else {
                crate::model::M365UserPatch::default()
            };
            let repair = Repair::from_held(held, patch);
            match reconcile
                .apply_repair(tenant, &run_key, &repair, &binding, user.as_ref())
                .await?
            {
                Applied::Done => decision.applied += 1,
                Applied::Skipped => decision.skipped.push(skip("privileged_account")),
                Applied::StillThere => decision.skipped.push(skip("account_still_there")),
                Applied::Failed { retryable, .. } => {
                    decision.failed.push(skip("repair_failed"));
                    if retryable {
                        // Throttled, unavailable or out of time: stop here, keep the plan held.
                        decision.complete = false;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }

    /// Re-mirrors each held group from the directory as it is now.
    async fn apply_groups(
        &self,
        tenant: &TenantId,
        plan: &HeldPlan,
        decision: &mut Decision,
    ) -> Result<()> {
        let groups = ReconcileGroups::new(self.ports, self.settings.max_pages);
        for repair in &plan.groups {
            let not = |reason: &str| NotApplied {
                user_id: None,
                group_id: Some(repair.group_id.clone()),
                kind: "group".to_owned(),
                reason: reason.to_owned(),
            };
            let bound_here = self
                .ports
                .groups()
                .get(&repair.group_id)
                .await?
                .and_then(|g| g.binding)
                .is_some_and(|b| &b.tenant_id == tenant);
            if !bound_here {
                decision.skipped.push(not("group_unbound"));
                continue;
            }
            match groups.sync.push(&repair.group_id).await {
                Ok(GroupOutcome::Failed { .. }) => decision.failed.push(not("group_sync_failed")),
                Ok(_) => decision.groups_applied += 1,
                Err(e) => {
                    decision.failed.push(not(e.code()));
                    if e.is_retryable() {
                        decision.complete = false;
                        return Ok(());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
