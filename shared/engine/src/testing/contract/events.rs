//! Contract of [`EventStore`]: newest first by user, tenant and type, `since`, cursor paging (R-AUD-1).

use chrono::{DateTime, TimeDelta, Utc};

use super::{assert_invalid_cursor, collect_pages, fresh_tenant_id, fresh_user_id, now_ms};
use crate::model::{
    Event, EventId, EventKind, OperationId, OperationKind, OperationSubject, PageRequest,
    PageToken, TenantId, UserId,
};
use crate::ports::{EventFilter, EventQuery, EventStore};

fn event(
    kind: EventKind,
    at: DateTime<Utc>,
    user: Option<&UserId>,
    tenant: Option<&TenantId>,
) -> Event {
    Event {
        id: EventId::generate(),
        kind,
        at,
        user_id: user.cloned(),
        tenant_id: tenant.cloned(),
        operation_id: user.map(|u| {
            OperationId::new(
                OperationKind::UserBind,
                &OperationSubject::User(u.clone()),
                1,
            )
        }),
        reason: Some("created".into()),
        details: Some(serde_json::json!({"attempt": 1})),
        actor: Some(crate::model::Actor::local()),
    }
}

fn query(filter: EventFilter, since: Option<DateTime<Utc>>, page: PageRequest) -> EventQuery {
    EventQuery {
        filter,
        since,
        page,
    }
}

/// Newest first, ties broken by the greater id first.
fn newest_first(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
    events
}

async fn all(
    store: &impl EventStore,
    filter: EventFilter,
    since: Option<DateTime<Utc>>,
    limit: u32,
) -> Vec<Event> {
    let (filter, since) = (&filter, since);
    collect_pages(limit, |page| async move {
        store.query(&query(filter.clone(), since, page)).await
    })
    .await
}

/// Appends events for one user and one tenant at distinct (and two equal) instants, oldest first.
async fn seed(
    store: &impl EventStore,
    user: &UserId,
    tenant: &TenantId,
    base: DateTime<Utc>,
) -> Vec<Event> {
    let kinds = [
        EventKind::UserCreateProvision,
        EventKind::UserUpdateProvision,
        EventKind::UserPasswordUpdateProvision,
        EventKind::UserDeprovision,
        EventKind::UserUpdateProvision,
    ];
    let mut events = Vec::new();
    for (n, kind) in kinds.into_iter().enumerate() {
        // The last two share an instant: the tie is broken by id.
        let at = base + TimeDelta::seconds(i64::try_from(n.min(3)).unwrap_or(0));
        let e = event(kind, at, Some(user), Some(tenant));
        store.append(&e).await.expect("append succeeds");
        events.push(e);
    }
    events
}

/// R-AUD-1: a user's events are listed newest first, and only theirs.
pub async fn events_of_a_user_are_listed_newest_first(store: &impl EventStore) {
    let (user, tenant) = (fresh_user_id(), fresh_tenant_id());
    let seeded = seed(store, &user, &tenant, now_ms()).await;
    let other = event(
        EventKind::UserCreateProvision,
        now_ms(),
        Some(&fresh_user_id()),
        Some(&tenant),
    );
    store.append(&other).await.expect("append succeeds");
    assert_eq!(
        all(store, EventFilter::User(user), None, 100).await,
        newest_first(seeded)
    );
}

/// R-AUD-1: a tenant's events (user and connection events) are listed newest first, and only its own.
pub async fn events_of_a_tenant_are_listed_newest_first(store: &impl EventStore) {
    let (user, tenant) = (fresh_user_id(), fresh_tenant_id());
    let base = now_ms();
    let mut expected = seed(store, &user, &tenant, base).await;
    let connected = event(
        EventKind::TenantConnected,
        base - TimeDelta::minutes(5),
        None,
        Some(&tenant),
    );
    store.append(&connected).await.expect("append succeeds");
    expected.push(connected);
    let foreign = event(
        EventKind::TenantConnected,
        base,
        None,
        Some(&fresh_tenant_id()),
    );
    store.append(&foreign).await.expect("append succeeds");
    assert_eq!(
        all(store, EventFilter::Tenant(tenant), None, 100).await,
        newest_first(expected)
    );
}

/// R-AUD-1: events of a type are listed newest first (the store may hold other tests' events of that type).
pub async fn events_of_a_type_are_listed_newest_first(store: &impl EventStore) {
    let tenant = fresh_tenant_id();
    let base = now_ms();
    let mut expected = Vec::new();
    for n in 0..3 {
        let e = event(
            EventKind::ReconcileSafeguardTripped,
            base + TimeDelta::seconds(n),
            None,
            Some(&tenant),
        );
        store.append(&e).await.expect("append succeeds");
        expected.push(e);
    }
    let other_type = event(EventKind::TenantDeauthorized, base, None, Some(&tenant));
    store.append(&other_type).await.expect("append succeeds");
    let listed = all(
        store,
        EventFilter::Kind(EventKind::ReconcileSafeguardTripped),
        None,
        100,
    )
    .await;
    assert!(
        listed
            .iter()
            .all(|e| e.kind == EventKind::ReconcileSafeguardTripped)
    );
    assert!(
        listed
            .windows(2)
            .all(|w| (w[0].at, &w[0].id) >= (w[1].at, &w[1].id)),
        "newest first"
    );
    let mine: Vec<_> = listed
        .into_iter()
        .filter(|e| e.tenant_id.as_ref() == Some(&tenant))
        .collect();
    assert_eq!(mine, newest_first(expected));
}

/// R-AUD-1: `since` keeps the events at or after that instant.
pub async fn since_keeps_only_events_at_or_after_it(store: &impl EventStore) {
    let (user, tenant) = (fresh_user_id(), fresh_tenant_id());
    let base = now_ms();
    let seeded = seed(store, &user, &tenant, base).await;
    let since = base + TimeDelta::seconds(2);
    let expected: Vec<_> = seeded.iter().filter(|e| e.at >= since).cloned().collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(
        all(store, EventFilter::User(user.clone()), Some(since), 100).await,
        newest_first(expected.clone())
    );
    assert_eq!(
        all(store, EventFilter::Tenant(tenant), Some(since), 100).await,
        newest_first(expected)
    );
    let future = base + TimeDelta::hours(1);
    assert!(
        all(store, EventFilter::User(user), Some(future), 100)
            .await
            .is_empty()
    );
}

/// R-AUD-1: paging with a small limit returns every event once, in order, for every index.
pub async fn events_page_through_a_cursor_without_gaps_or_repeats(store: &impl EventStore) {
    let (user, tenant) = (fresh_user_id(), fresh_tenant_id());
    let seeded = newest_first(seed(store, &user, &tenant, now_ms()).await);
    for limit in [1, 2, 3] {
        assert_eq!(
            all(store, EventFilter::User(user.clone()), None, limit).await,
            seeded,
            "limit {limit}"
        );
        assert_eq!(
            all(store, EventFilter::Tenant(tenant.clone()), None, limit).await,
            seeded,
            "limit {limit}"
        );
    }
}

/// R-AUD-1 (no doubled event): appending the same event twice keeps one.
pub async fn appending_the_same_event_twice_keeps_one(store: &impl EventStore) {
    let user = fresh_user_id();
    let e = event(
        EventKind::UserCreateProvision,
        now_ms(),
        Some(&user),
        Some(&fresh_tenant_id()),
    );
    store.append(&e).await.expect("append succeeds");
    store.append(&e).await.expect("a second append succeeds");
    assert_eq!(all(store, EventFilter::User(user), None, 10).await, vec![e]);
}

/// R-SAFE-1: a cursor no store produced is refused as invalid.
pub async fn a_garbage_event_cursor_is_refused(store: &impl EventStore) {
    let q = query(
        EventFilter::User(fresh_user_id()),
        None,
        PageRequest::after(PageToken::new("garbage"), 10),
    );
    assert_invalid_cursor(&store.query(&q).await);
}
