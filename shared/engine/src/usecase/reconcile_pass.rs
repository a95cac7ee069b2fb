//! One pass of a tenant's reconcile (DESIGN §4 "reconcile", R-REC-1..5, R-PWD-4, R-GRP-1): the
//! users' drift ([`Reconcile`], over at most `max_pages` delta pages; on a round's first pass also
//! the password-expiry sweep, which reads every bound user) and the group membership drift
//! ([`ReconcileGroups`], R-GRP-1) are both *planned* first; then the safeguard (R-REC-3) counts
//! the pass's blocks, suspensions and removals plus its group member removals, added to what the
//! round's earlier passes applied (the round tally, [`crate::ports::RoundTally`], valid for the
//! pass that starts from the links the previous pass saved). Over the threshold, the pass is
//! *held* ([`super::held`]): nothing is written, the plan waits for an admin's approve or reject,
//! and until then every writing pass of the tenant does nothing. Otherwise the users' repairs are
//! applied, the binds and unbinds found stuck re-queued ([`RequeueStuck`], R-REC-5; not on a dry
//! run), the groups re-mirrored, and the tally saved for the next pass (cleared when the round
//! ends). The answer is one [`TenantReport`], whose [`TenantReport::end`] tells the leased fan-out
//! ([`super::reconcile_queue::ReconcileQueue`]) whether the round goes on.

use serde::Serialize;

use super::held::{HeldPlans, HeldSummary};
use super::reconcile::{Reconcile, ReconcileReport, ReconcileSettings, SafeguardTrip};
use super::reconcile_groups::{GroupReconcileReport, ReconcileGroups};
use super::reconcile_queue::PassEnd;
use super::stuck::{RequeueStuck, Requeued};
use crate::error::Result;
use crate::model::TenantId;
use crate::ports::{HeldPlanStore, Ports, RoundTally};

/// One tenant's pass: users (with the password-expiry sweep) then group membership.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantReport {
    /// Users drift and expiry.
    #[serde(flatten)]
    pub users: ReconcileReport,
    /// Group membership drift; `None` when the safeguard stopped the pass (its group repairs are
    /// in the held plan) or a held plan kept it from running (R-REC-3).
    pub groups: Option<GroupReconcileReport>,
    /// What became of the users report's `stuck` work (R-REC-5); `None` on a dry run or when
    /// the safeguard stopped the run (nothing is written then).
    pub requeued: Option<Requeued>,
    /// The round goes on: its next pass was queued (set by the caller that queued it).
    pub continued: bool,
    /// Licences brought in line (R-LIC-1): on a round's first writing pass only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licenses: Option<super::licenses::LicenseReport>,
    /// The tenant's held plan (R-REC-3): the one this pass held, or the one that kept a writing
    /// pass from doing anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldSummary>,
}

impl TenantReport {
    /// How the pass ended for the queue: stopped by the safeguard, or complete once both delta
    /// rounds (users and groups) are.
    #[must_use]
    pub fn end(&self) -> PassEnd {
        match &self.groups {
            None => PassEnd::Stopped,
            Some(groups) if self.users.complete && groups.complete => PassEnd::Complete,
            Some(_) => PassEnd::Incomplete,
        }
    }
}

/// The reconcile pass use case.
#[derive(Debug)]
pub struct ReconcilePass<'a, P: Ports> {
    /// Every port the pass's use cases read.
    pub ports: &'a P,
    /// Behaviour (safeguard, pages per pass, password policy, stuck work).
    pub settings: &'a ReconcileSettings,
}

impl<'a, P: Ports> ReconcilePass<'a, P> {
    /// The use case on `ports`.
    #[must_use]
    pub fn new(ports: &'a P, settings: &'a ReconcileSettings) -> Self {
        Self { ports, settings }
    }
}

impl<P: Ports> ReconcilePass<'_, P> {
    /// Pass number `number` of a round, writing, with how it ended (for the leased fan-out).
    /// Only the first pass of a round sweeps expired passwords: the sweep reads every bound user,
    /// once per scheduled tick is enough, and a long round's later passes only follow the delta.
    ///
    /// # Errors
    /// As [`Self::run`].
    pub async fn pass(&self, tenant: &TenantId, number: u32) -> Result<(TenantReport, PassEnd)> {
        let report = self.run_pass(tenant, false, number <= 1, number).await?;
        let end = report.end();
        Ok((report, end))
    }

    /// Reconciles one tenant once (one pass, not leased, sweeping expiry when the settings
    /// say so): users, then (unless the safeguard stopped the run) groups.
    ///
    /// # Errors
    /// As [`Reconcile::run`] and [`ReconcileGroups::run`].
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<TenantReport> {
        self.run_pass(tenant, dry_run, true, 1).await
    }

    async fn run_pass(
        &self,
        tenant: &TenantId,
        dry_run: bool,
        sweep_expiry: bool,
        number: u32,
    ) -> Result<TenantReport> {
        let without_sweep;
        let settings = if sweep_expiry {
            self.settings
        } else {
            without_sweep = ReconcileSettings {
                sweep_expiry: false,
                ..self.settings.clone()
            };
            &without_sweep
        };
        let held = HeldPlans::new(self.ports, settings);
        let current = held.get(tenant).await?;
        if !dry_run && let Some(plan) = current {
            // Held (R-REC-3): nothing is applied, tripped or recorded until an admin decides.
            tracing::info!(plan.id = %plan.id, "reconcile pass skipped: a plan is held");
            return Ok(TenantReport {
                users: ReconcileReport::held(tenant),
                groups: None,
                requeued: None,
                continued: false,
                licenses: None,
                held: Some(plan.summary()),
            });
        }
        let current = current.map(|p| p.summary());
        let reconcile = Reconcile::new(self.ports, settings);
        let group_reconcile = ReconcileGroups::new(self.ports, self.settings.max_pages);
        // Boxed: the use cases' futures nest the Graph and DynamoDB futures deep enough to
        // exceed the compiler's layout depth when inlined into the runtime's.
        let mut users = Box::pin(reconcile.plan_pass(tenant, dry_run)).await?;
        // Rejected by an admin and unchanged since: not proposed again (R-REC-3).
        let dropped = users.drop_rejected(&held.rejected(tenant).await?);
        if dropped > 0 {
            tracing::info!(dropped, "rejected repairs left out");
        }
        let groups = Box::pin(group_reconcile.plan_pass(tenant)).await?;
        // The whole round counts (R-REC-3): what its earlier passes applied, when this pass goes
        // on from the links the previous one saved.
        let tally = self.ports.held_plans().tally(tenant).await?;
        let earlier = tally
            .as_ref()
            .filter(|t| t.users == users.start && t.groups == groups.start)
            .map_or(0, |t| t.destructive);
        let destructive = users.destructive();
        let group_removals = groups.removals();
        let this_pass = destructive + group_removals;
        let round_total = earlier + this_pass;
        let allowed = settings.safeguard.allowed(users.report.bound);
        if this_pass > 0 && round_total > allowed {
            let trip = SafeguardTrip {
                destructive,
                bound: users.report.bound,
                threshold: settings.safeguard,
                allowed,
                group_removals,
                earlier,
                round_total,
            };
            let held_plan = if dry_run {
                current
            } else {
                Some(
                    held.hold(tenant, number, &users, &groups, &trip)
                        .await?
                        .summary(),
                )
            };
            users.report.safeguard = Some(trip);
            return Ok(TenantReport {
                users: users.report,
                groups: None,
                requeued: None,
                continued: false,
                licenses: None,
                held: held_plan,
            });
        }
        if dry_run {
            return Ok(TenantReport {
                users: users.report,
                groups: Some(groups.report),
                requeued: None,
                continued: false,
                licenses: None,
                held: current,
            });
        }
        let next = RoundTally {
            users: users.next_link().map(str::to_owned),
            groups: groups.save.clone(),
            destructive: round_total,
        };
        let (users, users_saved) = Box::pin(reconcile.apply_pass(tenant, users)).await?;
        let requeued = Some(
            RequeueStuck::new(self.ports, &settings.stuck)
                .requeue(&users.stuck)
                .await,
        );
        let (groups, groups_saved) = Box::pin(group_reconcile.apply_pass(tenant, groups)).await?;
        let round_over = users.complete && groups.complete;
        if round_over {
            if tally.is_some() {
                self.ports.held_plans().put_tally(tenant, None).await?;
            }
        } else if users_saved && groups_saved {
            // A pass that kept a cursor (a retryable failure) is read again from the same links:
            // the tally it started from still matches them.
            self.ports
                .held_plans()
                .put_tally(tenant, Some(&next))
                .await?;
        }
        // Licences after membership: a seat freed or a group joined since the last round is
        // caught up here (R-LIC-1). Once per round, like the expiry sweep (it reads every
        // provisioned binding); a failure is logged and the next round tries again.
        let licenses = if dry_run || !sweep_expiry {
            None
        } else {
            match Box::pin(super::licenses::Licenses::new(self.ports).reconcile_tenant(tenant))
                .await
            {
                Ok(report) => Some(report),
                Err(e) => {
                    tracing::warn!(error.code = e.code(), "licences not reconciled this round");
                    None
                }
            }
        };
        Ok(TenantReport {
            users,
            groups: Some(groups),
            requeued,
            continued: false,
            licenses,
            held: None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
