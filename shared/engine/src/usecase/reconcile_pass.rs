//! One pass of a tenant's reconcile (DESIGN §4 "reconcile", R-REC-1..5, R-PWD-4, R-GRP-1): the
//! users' drift ([`Reconcile`], over at most `max_pages` delta pages; on a round's first pass also
//! the password-expiry sweep, which reads every bound user), then — unless the users' safeguard
//! stopped the pass (R-REC-3), in which case nothing more is written — the re-queue of the binds
//! and unbinds found stuck ([`RequeueStuck`], R-REC-5; not on a dry run) and the group membership
//! drift ([`ReconcileGroups`], R-GRP-1). The answer is one [`TenantReport`], whose
//! [`TenantReport::end`] tells the leased fan-out ([`super::reconcile_queue::ReconcileQueue`])
//! whether the round goes on.

use serde::Serialize;

use super::reconcile::{Reconcile, ReconcileReport, ReconcileSettings};
use super::reconcile_groups::{GroupReconcileReport, ReconcileGroups};
use super::reconcile_queue::PassEnd;
use super::stuck::{RequeueStuck, Requeued};
use crate::error::Result;
use crate::model::TenantId;
use crate::ports::Ports;

/// One tenant's pass: users (with the password-expiry sweep) then group membership.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantReport {
    /// Users drift and expiry.
    #[serde(flatten)]
    pub users: ReconcileReport,
    /// Group membership drift; `None` when the users' safeguard stopped the run first.
    pub groups: Option<GroupReconcileReport>,
    /// What became of the users report's `stuck` work (R-REC-5); `None` on a dry run or when
    /// the safeguard stopped the run (nothing is written then).
    pub requeued: Option<Requeued>,
    /// The round goes on: its next pass was queued (set by the caller that queued it).
    pub continued: bool,
    /// Licences brought in line (R-LIC-1): on a round's first writing pass only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub licenses: Option<super::licenses::LicenseReport>,
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
        let report = self.run_pass(tenant, false, number <= 1).await?;
        let end = report.end();
        Ok((report, end))
    }

    /// Reconciles one tenant once (one pass, not leased, sweeping expiry when the settings
    /// say so): users, then (unless the safeguard stopped the run) groups.
    ///
    /// # Errors
    /// As [`Reconcile::run`] and [`ReconcileGroups::run`].
    pub async fn run(&self, tenant: &TenantId, dry_run: bool) -> Result<TenantReport> {
        self.run_pass(tenant, dry_run, true).await
    }

    async fn run_pass(
        &self,
        tenant: &TenantId,
        dry_run: bool,
        sweep_expiry: bool,
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
        // Boxed: the use cases' futures nest the Graph and DynamoDB futures deep enough to
        // exceed the compiler's layout depth when inlined into the runtime's.
        let users = Box::pin(Reconcile::new(self.ports, settings).run(tenant, dry_run)).await?;
        if users.safeguard.is_some() {
            return Ok(TenantReport {
                users,
                groups: None,
                requeued: None,
                continued: false,
                licenses: None,
            });
        }
        let requeued = if dry_run {
            None
        } else {
            Some(
                RequeueStuck::new(self.ports, &settings.stuck)
                    .requeue(&users.stuck)
                    .await,
            )
        };
        let groups = Box::pin(
            ReconcileGroups::new(self.ports, self.settings.max_pages).run(tenant, dry_run),
        )
        .await?;
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
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
