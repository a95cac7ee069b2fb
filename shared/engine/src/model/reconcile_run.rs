//! Reconcile runs requested through the API (R-OPS-2): `POST /tenants/{id}/reconcile` answers
//! `202 {"runId"}` at once and the run goes on from the queue of passes; its record says how it
//! is doing and, when it ends, what it planned or did (`GET …/reconcile/runs/{runId}`).

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{IdError, TenantId};

/// A run's id: a random UUID (lower-case, hyphenated), so nobody guesses another's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// A fresh random run id.
    #[must_use]
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// Parses a run id from a path: a UUID, kept in its canonical lower-case form.
    ///
    /// # Errors
    /// [`IdError`] when `raw` is not a UUID.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        uuid::Uuid::parse_str(raw)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| IdError::NotGuid { kind: "run id" })
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Waiting on the queue of passes (also while another pass holds the tenant).
    Queued,
    /// A pass ran and the round goes on (or a pass is running now).
    Running,
    /// The round is finished.
    Done,
    /// It stopped for good; `error` says why.
    Failed,
    /// The safeguard stopped it before any write (R-REC-3); the report shows the trip.
    Held,
}

impl RunStatus {
    /// The snake_case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Held => "held",
        }
    }

    /// No pass runs for it any more.
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Held)
    }
}

/// Why a run failed: a machine code and a message (no payloads, no personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// snake_case code (the engine error's code, or `tenant_not_active`, `tenant_not_found`).
    pub code: String,
    /// In words.
    pub message: String,
}

/// One requested reconcile run of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRun {
    /// Its id.
    pub run_id: RunId,
    /// The tenant (a run is only ever shown to a request on this tenant).
    pub tenant_id: TenantId,
    /// A dry run: plans, writes nothing, moves no cursor (R-REC-2).
    pub dry_run: bool,
    /// Where it stands.
    pub status: RunStatus,
    /// When the API accepted it.
    pub requested_at: DateTime<Utc>,
    /// When its first pass started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended (`done`, `failed`, `held`).
    pub finished_at: Option<DateTime<Utc>>,
    /// Passes counted into the report (a pass is counted once, whatever its deliveries).
    pub passes: u32,
    /// Why it failed.
    pub error: Option<RunError>,
    /// The passes' reports merged (the plan on a dry run, what was done otherwise), bounded:
    /// lists are capped and `truncated` says so. `None` before the first pass.
    pub report: Option<serde_json::Value>,
    /// Optimistic-concurrency version: each update is conditional on it and bumps it.
    #[serde(default)]
    pub version: u64,
    /// Who asked for it (R-AUD-1): its passes, and the events they record, act for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<super::Actor>,
}

impl ReconcileRun {
    /// A run of `tenant` just requested at `now`.
    #[must_use]
    pub fn queued(tenant: TenantId, dry_run: bool, now: DateTime<Utc>) -> Self {
        Self {
            run_id: RunId::generate(),
            tenant_id: tenant,
            dry_run,
            status: RunStatus::Queued,
            requested_at: now,
            started_at: None,
            finished_at: None,
            passes: 0,
            requested_by: None,
            error: None,
            report: None,
            version: 0,
        }
    }
}
