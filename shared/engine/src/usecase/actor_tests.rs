//! Every event names who caused it (R-AUD-1): the caller of the request, kept by the work that
//! outlives it (retries, re-queued stuck work), `schedule` for scheduled work.

use crate::model::{Actor, EventKind};
use crate::ports::{BindingStore, Ports};
use crate::usecase::testkit::{World, bind_deferred_by, throttled, uid};

const ADMIN: &str = "arn:aws:sts::123456789012:assumed-role/Admins/alice";

fn admin() -> Actor {
    Actor::principal(ADMIN).unwrap()
}

#[tokio::test]
async fn a_bind_records_its_event_in_the_name_of_its_caller() {
    // R-AUD-1
    let mut w = World::new().await;
    w.actor = admin();
    w.user("alice").await;
    w.bind("alice").await;
    assert_eq!(w.event(EventKind::UserCreateProvision).actor, Some(admin()));
}

#[tokio::test]
async fn a_retried_bind_keeps_the_actor_of_its_request_not_the_workers() {
    // R-AUD-1: the retry message and the operation in flight carry the caller.
    let mut w = World::new().await;
    w.actor = admin();
    let (binding, retry) = bind_deferred_by(&w, "alice", throttled()).await;
    assert_eq!(
        retry.actor,
        Some(admin()),
        "the queued retry names the caller"
    );
    assert_eq!(
        binding.in_flight.and_then(|f| f.actor),
        Some(admin()),
        "so does the operation in flight"
    );
    // The retry worker runs as scheduled work.
    w.actor = Actor::schedule();
    w.clock.advance(chrono::TimeDelta::minutes(5));
    w.drain().await;
    let created = w.event(EventKind::UserCreateProvision);
    assert_eq!(created.actor, Some(admin()));
}

#[tokio::test]
async fn an_unbind_names_its_own_caller_not_the_binds() {
    // R-AUD-1
    let mut w = World::new().await;
    w.actor = admin();
    w.user("alice").await;
    w.bind("alice").await;
    w.actor = Actor::principal("arn:aws:iam::123456789012:user/bob").unwrap();
    w.unbinder().unbind(&uid("alice")).await.unwrap();
    let deprovision = w.event(EventKind::UserDeprovision);
    assert_eq!(
        deprovision.actor.as_ref().map(Actor::as_str),
        Some("arn:aws:iam::123456789012:user/bob")
    );
    assert_eq!(w.event(EventKind::UserCreateProvision).actor, Some(admin()));
    assert!(w.bindings.get(&uid("alice")).await.unwrap().is_some());
}

#[tokio::test]
async fn the_world_acts_locally_unless_told_otherwise() {
    // R-AUD-1: `local` on the local stack.
    let w = World::new().await;
    assert_eq!(w.actor().as_str(), Actor::LOCAL);
}
