//! The reconcile cursor contract (R-REC-1: a run starts from the link the last one saved, per
//! tenant and per delta stream), run against the in-memory fake and `DynamoReconcileCursors` on
//! moto (a fresh ledger table).

mod common;

use chrono::{TimeDelta, Utc};
use m365_aws::DynamoReconcileCursors;
use m365_aws::schema::LEDGER;
use m365_engine::model::{M365ObjectId, TenantId};
use m365_engine::ports::{DeltaStream, FullListing, ReconcileCursors, SEEN_PART_MAX};
use m365_engine::testing::FakeReconcileCursors;

async fn a_saved_link_is_read_back_per_tenant_and_stream(cursors: &impl ReconcileCursors) {
    // R-REC-1
    let (a, b) = (TenantId::generate(), TenantId::generate());
    assert_eq!(
        cursors.get(&a, DeltaStream::Users).await.expect("get"),
        None,
        "never reconciled: a full sync"
    );
    let link = "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=abc";
    cursors
        .put(&a, DeltaStream::Users, link)
        .await
        .expect("put");
    assert_eq!(
        cursors.get(&a, DeltaStream::Users).await.expect("get"),
        Some(link.to_owned())
    );
    assert_eq!(
        cursors.get(&a, DeltaStream::Groups).await.expect("get"),
        None
    );
    assert_eq!(
        cursors.get(&b, DeltaStream::Users).await.expect("get"),
        None
    );
    cursors
        .put(&a, DeltaStream::Users, "next")
        .await
        .expect("put");
    assert_eq!(
        cursors.get(&a, DeltaStream::Users).await.expect("get"),
        Some("next".to_owned()),
        "a put replaces the link"
    );
}

async fn a_full_listing_is_saved_with_its_link_and_remembers_the_ids_it_saw(
    cursors: &impl ReconcileCursors,
) {
    // R-REC-4 (a full listing spanning passes: its state and seen ids survive between passes)
    let tenant = TenantId::generate();
    assert_eq!(cursors.full_listing(&tenant).await.expect("read"), None);
    let started_at = Utc::now() - TimeDelta::minutes(3);
    let listing = FullListing {
        started_at,
        parts: 0,
    };
    // Millisecond precision is what is kept.
    let listing = FullListing {
        started_at: chrono::DateTime::from_timestamp_millis(listing.started_at.timestamp_millis())
            .expect("valid"),
        ..listing
    };
    assert_eq!(
        cursors.seen(&tenant, &listing).await.expect("no parts"),
        Some(Vec::new())
    );
    let first: Vec<M365ObjectId> = (0..SEEN_PART_MAX)
        .map(|_| M365ObjectId::generate())
        .collect();
    let second = vec![M365ObjectId::generate(), M365ObjectId::generate()];
    cursors
        .put_seen(&tenant, &listing, 0, &first)
        .await
        .expect("a full part fits");
    cursors
        .put_seen(&tenant, &listing, 1, &[M365ObjectId::generate()])
        .await
        .expect("put");
    cursors
        .put_seen(&tenant, &listing, 1, &second)
        .await
        .expect("a part written again replaces it");
    let saved = FullListing {
        parts: 2,
        ..listing
    };
    cursors
        .put_in_full_listing(&tenant, "next-page", &saved)
        .await
        .expect("put");
    assert_eq!(
        cursors.get(&tenant, DeltaStream::Users).await.expect("get"),
        Some("next-page".to_owned())
    );
    assert_eq!(
        cursors.full_listing(&tenant).await.expect("read"),
        Some(saved)
    );
    let mut want: Vec<M365ObjectId> = first.iter().chain(&second).cloned().collect();
    let mut got = cursors
        .seen(&tenant, &saved)
        .await
        .expect("read")
        .expect("every part is there");
    want.sort();
    got.sort();
    assert_eq!(got, want);
    let missing_part = FullListing { parts: 3, ..saved };
    assert_eq!(
        cursors.seen(&tenant, &missing_part).await.expect("read"),
        None,
        "a part that is not there makes the memory incomplete"
    );
    let too_many: Vec<M365ObjectId> = (0..=SEEN_PART_MAX)
        .map(|_| M365ObjectId::generate())
        .collect();
    assert_eq!(
        cursors
            .put_seen(&tenant, &saved, 2, &too_many)
            .await
            .expect_err("over the part limit")
            .code(),
        "invalid_field"
    );
    // Another tenant sees nothing of it.
    assert_eq!(
        cursors
            .full_listing(&TenantId::generate())
            .await
            .expect("read"),
        None
    );
    // The round's final link ends the listing.
    cursors
        .put(&tenant, DeltaStream::Users, "done")
        .await
        .expect("put");
    assert_eq!(cursors.full_listing(&tenant).await.expect("read"), None);
    assert_eq!(
        cursors.get(&tenant, DeltaStream::Users).await.expect("get"),
        Some("done".to_owned())
    );
}

#[tokio::test]
async fn the_fake_keeps_a_full_listing_and_its_seen_ids() {
    a_full_listing_is_saved_with_its_link_and_remembers_the_ids_it_saw(
        &FakeReconcileCursors::new(),
    )
    .await;
}

#[tokio::test]
async fn dynamo_keeps_a_full_listing_and_its_seen_ids() {
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    a_full_listing_is_saved_with_its_link_and_remembers_the_ids_it_saw(
        &DynamoReconcileCursors::new(client, table),
    )
    .await;
}

#[tokio::test]
async fn the_fake_keeps_links_per_tenant_and_stream() {
    a_saved_link_is_read_back_per_tenant_and_stream(&FakeReconcileCursors::new()).await;
}

#[tokio::test]
async fn dynamo_keeps_links_per_tenant_and_stream() {
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    a_saved_link_is_read_back_per_tenant_and_stream(&DynamoReconcileCursors::new(client, table))
        .await;
}
