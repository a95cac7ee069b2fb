//! The reconcile cursor contract (R-REC-1: a run starts from the link the last one saved, per
//! tenant and per delta stream), run against the in-memory fake and `DynamoReconcileCursors` on
//! moto (a fresh ledger table).

mod common;

use m365_aws::DynamoReconcileCursors;
use m365_aws::schema::LEDGER;
use m365_engine::model::TenantId;
use m365_engine::ports::{DeltaStream, ReconcileCursors};
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

#[tokio::test]
async fn the_fake_keeps_links_per_tenant_and_stream() {
    a_saved_link_is_read_back_per_tenant_and_stream(&FakeReconcileCursors::new()).await;
}

#[tokio::test]
async fn dynamo_keeps_links_per_tenant_and_stream() {
    let Some(config) = common::aws().await else {
        return;
    };
    let (client, table) = common::table(&config, &LEDGER).await;
    a_saved_link_is_read_back_per_tenant_and_stream(&DynamoReconcileCursors::new(client, table))
        .await;
}
