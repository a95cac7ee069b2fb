//! Contract of [`FailureStore`] (R-AUD-1: failures kept apart, with Graph's request id).

use chrono::{DateTime, TimeDelta, Utc};

use super::{collect_pages, fresh_tenant_id, fresh_user_id, now_ms};
use crate::model::{EventId, Failure, OperationId, OperationKind, OperationSubject, TenantId};
use crate::ports::FailureStore;

fn failure(tenant: &TenantId, at: DateTime<Utc>, request_id: Option<&str>) -> Failure {
    let user = fresh_user_id();
    Failure {
        id: EventId::generate(),
        tenant_id: tenant.clone(),
        operation_id: OperationId::new(
            OperationKind::UserBind,
            &OperationSubject::User(user.clone()),
            1,
        ),
        user_id: Some(user),
        code: "throttled".into(),
        message: "M365 asked to slow down".into(),
        graph_request_id: request_id.map(str::to_owned),
        at,
    }
}

/// R-AUD-1: a tenant's failures are listed newest first across pages, with their Graph request ids.
pub async fn failures_of_a_tenant_are_listed_newest_first(store: &impl FailureStore) {
    let tenant = fresh_tenant_id();
    let base = now_ms();
    let mut recorded = Vec::new();
    for n in 0..4 {
        let request_id = (n % 2 == 0).then_some("462649d3-a124-42bc-b046-815fb41aae76");
        // Two failures share an instant: the tie is broken by the greater id first.
        let f = failure(&tenant, base + TimeDelta::seconds(n.min(2)), request_id);
        store.record(&f).await.expect("record succeeds");
        recorded.push(f);
    }
    store
        .record(&failure(&fresh_tenant_id(), base, None))
        .await
        .expect("another tenant's failure");
    recorded.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
    let tenant = &tenant;
    for limit in [1, 3, 10] {
        let listed = collect_pages(limit, |page| async move {
            store.list_by_tenant(tenant, &page).await
        })
        .await;
        assert_eq!(listed, recorded, "limit {limit}");
    }
}
