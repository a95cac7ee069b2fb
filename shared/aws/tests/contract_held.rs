//! The held-plan contract (R-REC-3: one held plan per tenant, released once, and the round
//! tally), run against the in-memory fake and `DynamoHeldPlans` on moto (a fresh ledger table).

mod common;

use m365_aws::DynamoHeldPlans;
use m365_aws::schema::LEDGER;
use m365_engine::model::TenantId;
use m365_engine::ports::{HeldPlanStore, HeldRecord, RoundTally};
use m365_engine::testing::FakeHeldPlans;

fn record(id: &str, body: String) -> HeldRecord {
    HeldRecord {
        plan_id: id.to_owned(),
        body,
    }
}

async fn one_plan_is_held_per_tenant_and_released_once(store: &impl HeldPlanStore) {
    // R-REC-3
    let (a, b) = (TenantId::generate(), TenantId::generate());
    assert_eq!(store.get(&a).await.expect("get"), None);
    let first = record("plan-1", r#"{"users":[1,2,3]}"#.to_owned());
    assert!(store.hold(&a, &first).await.expect("hold"));
    assert!(
        !store
            .hold(&a, &record("plan-2", "{}".to_owned()))
            .await
            .expect("hold"),
        "one held plan per tenant"
    );
    assert_eq!(store.get(&a).await.expect("get"), Some(first.clone()));
    assert_eq!(store.get(&b).await.expect("get"), None, "per tenant");
    assert!(
        !store.release(&a, "plan-2").await.expect("release"),
        "another plan's id releases nothing"
    );
    assert_eq!(store.get(&a).await.expect("get"), Some(first));
    assert!(store.release(&a, "plan-1").await.expect("release"));
    assert!(
        !store.release(&a, "plan-1").await.expect("release"),
        "a second release finds nothing"
    );
    assert_eq!(store.get(&a).await.expect("get"), None);
    // Once released, the next hold stands.
    assert!(
        store
            .hold(&a, &record("plan-3", "{}".to_owned()))
            .await
            .expect("hold")
    );
}

async fn a_plan_larger_than_an_item_round_trips(store: &impl HeldPlanStore) {
    // R-REC-3 (thousands of repairs: more than DynamoDB's 400 KB item limit)
    let tenant = TenantId::generate();
    let body = format!("[{}]", vec!["\"repair-é\""; 90_000].join(","));
    assert!(body.len() > 900_000);
    let big = record("big", body);
    assert!(store.hold(&tenant, &big).await.expect("hold"));
    assert_eq!(store.get(&tenant).await.expect("get"), Some(big));
    assert!(store.release(&tenant, "big").await.expect("release"));
    assert_eq!(store.get(&tenant).await.expect("get"), None);
}

async fn the_round_tally_is_replaced_and_deleted(store: &impl HeldPlanStore) {
    // R-REC-3 (the whole round counts)
    let tenant = TenantId::generate();
    assert_eq!(store.tally(&tenant).await.expect("tally"), None);
    let tally = RoundTally {
        users: Some("https://graph.microsoft.com/v1.0/users/delta?$skiptoken=x".to_owned()),
        groups: None,
        destructive: 4,
    };
    store.put_tally(&tenant, Some(&tally)).await.expect("put");
    assert_eq!(store.tally(&tenant).await.expect("tally"), Some(tally));
    store.put_tally(&tenant, None).await.expect("delete");
    assert_eq!(store.tally(&tenant).await.expect("tally"), None);
    store
        .put_tally(&tenant, None)
        .await
        .expect("deleting nothing is harmless");
}

async fn the_rejected_repairs_are_replaced_and_deleted(store: &impl HeldPlanStore) {
    // R-REC-3 (a rejected repair is not proposed again until it changes)
    let (a, b) = (TenantId::generate(), TenantId::generate());
    assert_eq!(store.rejected(&a).await.expect("read"), None);
    store
        .put_rejected(&a, Some(r#"[{"kind":"suspend_expired"}]"#))
        .await
        .expect("put");
    store.put_rejected(&a, Some("[]")).await.expect("replace");
    assert_eq!(
        store.rejected(&a).await.expect("read"),
        Some("[]".to_owned())
    );
    assert_eq!(store.rejected(&b).await.expect("read"), None, "per tenant");
    store.put_rejected(&a, None).await.expect("delete");
    assert_eq!(store.rejected(&a).await.expect("read"), None);
}

#[tokio::test]
async fn the_fake_keeps_the_rejected_repairs() {
    the_rejected_repairs_are_replaced_and_deleted(&FakeHeldPlans::new()).await;
}

#[tokio::test]
async fn dynamo_keeps_the_rejected_repairs() {
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    the_rejected_repairs_are_replaced_and_deleted(&DynamoHeldPlans::new(client, table)).await;
}

#[tokio::test]
async fn the_fake_holds_one_plan_per_tenant_and_releases_it_once() {
    one_plan_is_held_per_tenant_and_released_once(&FakeHeldPlans::new()).await;
}

#[tokio::test]
async fn dynamo_holds_one_plan_per_tenant_and_releases_it_once() {
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    one_plan_is_held_per_tenant_and_released_once(&DynamoHeldPlans::new(client, table)).await;
}

#[tokio::test]
async fn the_fake_keeps_a_large_plan() {
    a_plan_larger_than_an_item_round_trips(&FakeHeldPlans::new()).await;
}

#[tokio::test]
async fn dynamo_keeps_a_plan_larger_than_an_item_in_parts() {
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    a_plan_larger_than_an_item_round_trips(&DynamoHeldPlans::new(client, table)).await;
}

#[tokio::test]
async fn the_fake_keeps_the_round_tally() {
    the_round_tally_is_replaced_and_deleted(&FakeHeldPlans::new()).await;
}

#[tokio::test]
async fn dynamo_keeps_the_round_tally() {
    let Some((client, table)) = common::fresh_table(&LEDGER).await else {
        return;
    };
    the_round_tally_is_replaced_and_deleted(&DynamoHeldPlans::new(client, table)).await;
}
