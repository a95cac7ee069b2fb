//! Contract of [`ReconcileRuns`] (R-OPS-2): a run round-trips with every field, is found under
//! its own tenant only, is created once, and an update is applied only on the expected version.

use super::fresh_tenant_id;
use crate::model::{ReconcileRun, RunError, RunStatus};
use crate::ports::ReconcileRuns;

fn sample() -> ReconcileRun {
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-08T03:00:00Z")
        .expect("valid")
        .to_utc();
    ReconcileRun::queued(fresh_tenant_id(), true, at)
}

/// R-OPS-2: a created run reads back as written; under another tenant it is not found.
pub async fn a_run_round_trips_under_its_own_tenant_only(store: &impl ReconcileRuns) {
    let run = sample();
    assert_eq!(
        store.get(&run.tenant_id, &run.run_id).await.expect("read"),
        None
    );
    store.create(&run).await.expect("created");
    assert_eq!(
        store.get(&run.tenant_id, &run.run_id).await.expect("read"),
        Some(run.clone())
    );
    assert_eq!(
        store
            .get(&fresh_tenant_id(), &run.run_id)
            .await
            .expect("read"),
        None,
        "another tenant's run is not found"
    );
    assert!(store.create(&run).await.is_err(), "created once");
}

/// R-OPS-2: an update on the expected version is applied; a stale one is refused.
pub async fn an_update_applies_on_the_expected_version_only(store: &impl ReconcileRuns) {
    let run = sample();
    store.create(&run).await.expect("created");
    let mut done = run.clone();
    done.status = RunStatus::Failed;
    done.passes = 2;
    done.error = Some(RunError {
        code: "forbidden".into(),
        message: "no".into(),
    });
    done.report = Some(serde_json::json!({ "plan": [], "truncated": false }));
    done.started_at = Some(run.requested_at);
    done.finished_at = Some(run.requested_at);
    done.version = 1;
    assert!(store.update(&done, 0).await.expect("updated"));
    assert_eq!(
        store.get(&run.tenant_id, &run.run_id).await.expect("read"),
        Some(done.clone())
    );
    let mut stale = run;
    stale.version = 1;
    assert!(!store.update(&stale, 0).await.expect("refused"), "stale");
    assert_eq!(
        store
            .get(&done.tenant_id, &done.run_id)
            .await
            .expect("read"),
        Some(done)
    );
}
