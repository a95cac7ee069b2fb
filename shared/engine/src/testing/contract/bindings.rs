//! Contract of [`BindingStore`]: one binding per user, optimistic versions, listing by tenant and state.

use super::{
    assert_conflict, collect_pages, fresh_suffix, fresh_tenant_id, fresh_user_id, now_ms,
    user_id_with,
};
use crate::model::{
    Binding, BindingError, BindingState, M365ObjectId, SuspendedReason, TenantId, UserId,
};
use crate::ports::{BindingStore, Expect};

/// The binding of `user`; the read must succeed.
async fn stored(store: &impl BindingStore, user: &UserId) -> Option<Binding> {
    store.get(user).await.expect("get succeeds")
}

/// Creates `binding` (none may exist for its user); the put must succeed.
async fn create(store: &impl BindingStore, binding: &Binding) -> Binding {
    store
        .put(binding, Expect::Absent)
        .await
        .expect("create succeeds")
}

/// Writes `binding` over the one at version 1; the put must succeed.
async fn update(store: &impl BindingStore, binding: &Binding) -> Binding {
    store
        .put(binding, Expect::Version(1))
        .await
        .expect("update succeeds")
}

/// Every binding of `tenant` (in `state`, if given), in pages of `limit`.
async fn listed(
    store: &impl BindingStore,
    tenant: &TenantId,
    state: Option<BindingState>,
    limit: u32,
) -> Vec<Binding> {
    collect_pages(limit, |page| async move {
        store.list_by_tenant(tenant, state, &page).await
    })
    .await
}

fn binding(tenant: &TenantId) -> Binding {
    Binding::pending(fresh_user_id(), tenant.clone(), "creating")
}

/// R-BIND-1: a binding is created only if the user has none (a user is bound to at most one tenant).
pub async fn a_binding_is_created_only_if_absent(store: &impl BindingStore) {
    let b = binding(&fresh_tenant_id());
    let created = create(store, &b).await;
    assert_eq!(
        created,
        Binding {
            version: 1,
            ..b.clone()
        }
    );
    assert_eq!(stored(store, &b.user_id).await, Some(created.clone()));
    let elsewhere = Binding {
        tenant_id: fresh_tenant_id(),
        ..b
    };
    assert_conflict(
        &store.put(&elsewhere, Expect::Absent).await,
        "stale_version",
    );
    assert_eq!(stored(store, &created.user_id).await, Some(created));
    assert_eq!(
        store.get(&fresh_user_id()).await.expect("get succeeds"),
        None
    );
}

/// R-BIND-6 / R-SAFE-1: a binding update with a stale version is refused and changes nothing.
pub async fn a_stale_binding_update_is_refused(store: &impl BindingStore) {
    let created = create(store, &binding(&fresh_tenant_id())).await;
    let provisioned = Binding {
        state: BindingState::Provisioned,
        pending_reason: None,
        m365_object_id: Some(M365ObjectId::generate()),
        ..created.clone()
    };
    let updated = update(store, &provisioned).await;
    assert_eq!(updated.version, 2);
    let late = Binding {
        state: BindingState::Error,
        ..created
    };
    assert_conflict(&store.put(&late, Expect::Version(1)).await, "stale_version");
    assert_eq!(stored(store, &updated.user_id).await, Some(updated));
}

/// R-SAFE-1: updating a binding that does not exist is refused as stale.
pub async fn updating_a_missing_binding_is_refused(store: &impl BindingStore) {
    let b = binding(&fresh_tenant_id());
    assert_conflict(&store.put(&b, Expect::Version(1)).await, "stale_version");
    assert_eq!(stored(store, &b.user_id).await, None);
}

/// R-BIND-6 / R-AUD-1: the last error (with Graph's request id) and the pending reason round trip;
/// R-BIND-11: so does the privileged-adoption flag.
pub async fn a_binding_round_trips_with_its_last_error(store: &impl BindingStore) {
    let b = Binding {
        adopted_privileged: true,
        state: BindingState::Error,
        pending_reason: Some("address_held".into()),
        last_error: Some(BindingError {
            code: "address_held".into(),
            message: "the address is still held by a deleted account".into(),
            graph_request_id: Some("613a2372-1a63-4b13-8c94-56793bbb140c".into()),
            at: now_ms(),
        }),
        m365_object_id: Some(M365ObjectId::generate()),
        ..binding(&fresh_tenant_id())
    };
    let created = create(store, &b).await;
    assert_eq!(stored(store, &b.user_id).await, Some(created));
}

/// R-BIND-9 / R-BIND-12: a suspended binding keeps why (`suspendedReason`), the operation in flight
/// and the stamp of the directory password it last received.
pub async fn a_suspended_binding_round_trips_with_its_reason(store: &impl BindingStore) {
    let b = Binding {
        state: BindingState::Suspended,
        pending_reason: None,
        m365_object_id: Some(M365ObjectId::generate()),
        suspended_reason: Some(SuspendedReason::DirectoryDisabled),
        pushed_password_set_at: Some(now_ms()),
        ..binding(&fresh_tenant_id())
    };
    let created = create(store, &b).await;
    let read = stored(store, &b.user_id).await;
    assert_eq!(read, Some(created.clone()));
    assert_eq!(
        read.and_then(|r| r.suspended_reason),
        Some(SuspendedReason::DirectoryDisabled)
    );
    let active = Binding {
        state: BindingState::Provisioned,
        suspended_reason: None,
        ..created
    };
    let updated = update(store, &active).await;
    assert_eq!(stored(store, &b.user_id).await, Some(updated));
}

/// R-CONN-5 / R-REC-1: a tenant's bindings are listed across pages, each once, optionally by state.
pub async fn bindings_are_listed_by_tenant_with_an_optional_state_filter(
    store: &impl BindingStore,
) {
    let tenant = fresh_tenant_id();
    let prefix = format!("b-{}", fresh_suffix());
    let states = [
        BindingState::Provisioned,
        BindingState::Blocked,
        BindingState::Provisioned,
        BindingState::Pending,
        BindingState::Provisioned,
    ];
    let mut all = Vec::new();
    for (n, state) in states.into_iter().enumerate() {
        let b = Binding {
            state,
            ..Binding::pending(user_id_with(&prefix, n), tenant.clone(), "x")
        };
        all.push(create(store, &b).await);
    }
    store
        .put(&binding(&fresh_tenant_id()), Expect::Absent)
        .await
        .expect("another tenant's binding");
    assert_eq!(listed(store, &tenant, None, 2).await, all);
    let provisioned = listed(store, &tenant, Some(BindingState::Provisioned), 2).await;
    let expected: Vec<_> = all
        .iter()
        .filter(|b| b.state == BindingState::Provisioned)
        .cloned()
        .collect();
    assert_eq!(provisioned, expected);
    let none = listed(store, &tenant, Some(BindingState::Unselected), 2).await;
    assert!(none.is_empty());
}

/// R-CONN-5: a state change moves a binding between state listings.
pub async fn a_state_change_moves_a_binding_between_state_listings(store: &impl BindingStore) {
    let tenant = fresh_tenant_id();
    let created = create(store, &binding(&tenant)).await;
    let unselected = Binding {
        state: BindingState::Unselected,
        ..created
    };
    let updated = update(store, &unselected).await;
    let pending = listed(store, &tenant, Some(BindingState::Pending), 10).await;
    assert!(pending.is_empty());
    let now_unselected = listed(store, &tenant, Some(BindingState::Unselected), 10).await;
    assert_eq!(now_unselected, vec![updated]);
}
