//! A bound user's manager in M365 (R-ATTR-1): the directory's `managerId` names a directory
//! user; once both are bound to the same tenant (each with an account), the user's account gets
//! the manager's account as `manager` (`PUT /users/{id}/manager/$ref`); a cleared `managerId`
//! removes it (`DELETE …/manager/$ref`).
//!
//! [`SyncManager::push`] brings one user's manager in line and records `user_update_provision`
//! with the manager in its details (`{"manager": {"userId", "m365ObjectId"}}`, or
//! `{"manager": null}` when removed). It runs:
//! - after a bind ([`SyncManager::follow_bind`], called by `Bind` like its group follow-up): the
//!   bound user is linked to its bound manager, and its bound direct reports
//!   ([`crate::ports::UserStore::reports_of`], no scan of all users) to it — so whichever of the
//!   two binds last makes the link. A bind never removes a manager (an adopted account keeps the
//!   one M365 has until the directory says otherwise: reconcile compares);
//! - after `PUT /users/{userId}` changed `managerId` of a bound user (R-BIND-7 path).
//!
//! A manager named but not bound (yet) in that tenant leaves M365 as it is: nothing to link to.
//! The operation id is `user_manager/user:<id>/<user version>:<manager's object id or none>`,
//! so a repeated request changes nothing twice and a manager bound later is a new intent. A
//! retryable Graph failure goes to the retry queue like every follow-up (the binding keeps its
//! state; the failure is on its last error) and [`SyncManager::retry`] re-runs it with the
//! directory as it is then.

use crate::error::Result;
use crate::model::{
    Binding, BindingState, DirectoryUser, M365ObjectId, OperationId, OperationKind,
    OperationSubject, RetryMessage, UserId,
};
use crate::ports::Ports;
use crate::ports::{BindingStore, Directory, Expect, UserStore};

use super::{Change, Effects, OnFailure, Outcome, Run};

use_case! {
    /// The manager-link use case.
    pub struct SyncManager {
        ports: [users: Users, directory: Directory],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
        ],
    }
}

/// A manager push never changes the binding's state (the account works either way).
const MANAGER_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: None,
};

/// What M365 should show as a user's manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WantedManager {
    /// This account (the directory manager's, bound in the same tenant).
    Account(UserId, M365ObjectId),
    /// None: the directory names no manager.
    Nobody,
    /// Unknown yet: the directory manager is absent or not bound in the user's tenant.
    NotBound,
}

/// A binding whose account may be a manager or have one: it exists and is ours.
fn has_account(binding: &Binding) -> bool {
    binding.m365_object_id.is_some()
        && matches!(
            binding.state,
            BindingState::Provisioned | BindingState::Blocked | BindingState::Suspended
        )
}

/// The manager `user`'s account (bound through `binding`) should have in M365.
///
/// # Errors
/// Store failures.
pub(crate) async fn wanted_manager<B: BindingStore>(
    bindings: &B,
    user: &DirectoryUser,
    binding: &Binding,
) -> Result<WantedManager> {
    let Some(manager) = &user.manager_id else {
        return Ok(WantedManager::Nobody);
    };
    let theirs = bindings.get(manager).await?;
    Ok(
        match theirs.filter(|b| b.tenant_id == binding.tenant_id && has_account(b)) {
            Some(b) => match b.m365_object_id {
                Some(id) => WantedManager::Account(manager.clone(), id),
                None => WantedManager::NotBound,
            },
            None => WantedManager::NotBound,
        },
    )
}

/// The event details of a manager change.
pub(crate) fn manager_details(wanted: &WantedManager) -> serde_json::Value {
    match wanted {
        WantedManager::Account(user, id) => {
            serde_json::json!({"manager": {"userId": user, "m365ObjectId": id}})
        }
        _ => serde_json::json!({ "manager": null }),
    }
}

impl<P: Ports> SyncManager<'_, P> {
    /// After `user_id` was bound: links it to its bound manager, and its bound direct reports to
    /// it (module docs). Never fails: each link's failure is on that report's binding and, when
    /// retryable, on the retry queue; a store failure is logged (reconcile compares managers).
    pub async fn follow_bind(&self, user_id: &UserId) {
        if let Err(e) = self.follow_bind_once(user_id).await {
            tracing::warn!(
                error.code = e.code(),
                error.retryable = e.is_retryable(),
                "managers not linked after the bind; reconcile compares them"
            );
        }
    }

    async fn follow_bind_once(&self, user_id: &UserId) -> Result<()> {
        // Two reads when nobody is involved: the user (has it a manager?) and its reports.
        let has_manager = self
            .users
            .get(user_id)
            .await?
            .is_some_and(|u| u.manager_id.is_some());
        let mut linked = Vec::new();
        if has_manager {
            linked.push(user_id.clone());
        }
        linked.extend(
            self.users
                .reports_of(user_id)
                .await?
                .into_iter()
                .map(|u| u.id),
        );
        for id in linked {
            let outcome = Box::pin(self.sync(&id, false)).await?;
            tracing::info!(user.id = %id, outcome = outcome.as_str(), "manager followed the bind");
        }
        Ok(())
    }

    /// Brings `user_id`'s manager in M365 in line with its `managerId` after the directory user
    /// changed (R-BIND-7 path): sets it, or removes it when cleared. A user that is not bound,
    /// or whose manager is not bound in its tenant, is left alone ([`Outcome::Unchanged`]).
    ///
    /// # Errors
    /// `NotFound` (user); store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_manager", user.id = %user_id))]
    pub async fn push(&self, user_id: &UserId) -> Result<Outcome> {
        super::reported(self.sync(user_id, true).await)
    }

    async fn sync(&self, user_id: &UserId, may_clear: bool) -> Result<Outcome> {
        let now = self.fx.now();
        let user = super::stored_user(self.users, user_id).await?;
        let binding = self.fx.bindings.get(user_id).await?;
        let Some(binding) = binding.filter(pushable) else {
            return Ok(Outcome::Unchanged { binding: None });
        };
        let wanted = wanted_manager(self.fx.bindings, &user, &binding).await?;
        let intent = match &wanted {
            WantedManager::Account(_, id) => format!("{}:{id}", user.version),
            WantedManager::Nobody if may_clear => format!("{}:none", user.version),
            WantedManager::Nobody | WantedManager::NotBound => {
                return Ok(Outcome::Unchanged {
                    binding: Some(binding),
                });
            }
        };
        let subject = OperationSubject::User(user_id.clone());
        let op = OperationId::new(OperationKind::UserManager, &subject, intent);
        if let Some(ended) = self.fx.claim_new(&op, now, Some(&binding)).await? {
            return Ok(ended);
        }
        let run = Run::new(
            op,
            OperationKind::UserManager,
            user_id.clone(),
            now,
            None,
            self.actor,
        );
        let result = self.apply(&run, &wanted, binding).await;
        self.fx.abandon(&run.op, result).await
    }

    /// Re-runs a queued manager push with the directory as it is now.
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_manager", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let result = self
            .fx
            .rerun(message, OperationKind::UserManager, user_id, async |run| {
                let user = self.users.get(user_id).await?;
                let binding = self.fx.bindings.get(user_id).await?.filter(pushable);
                match (user, binding) {
                    (Some(user), Some(binding)) => {
                        let wanted = wanted_manager(self.fx.bindings, &user, &binding).await?;
                        if wanted == WantedManager::NotBound {
                            return self.fx.superseded(run).await;
                        }
                        self.apply(run, &wanted, binding).await
                    }
                    _ => self.fx.superseded(run).await,
                }
            })
            .await;
        super::reported(result)
    }

    async fn apply(
        &self,
        run: &Run<'_>,
        wanted: &WantedManager,
        mut binding: Binding,
    ) -> Result<Outcome> {
        let expect = Expect::Version(binding.version);
        let Some(id) = binding.m365_object_id.clone() else {
            return self.fx.superseded(run).await;
        };
        let written = match wanted {
            WantedManager::Account(_, manager) => {
                self.directory
                    .set_manager(&binding.tenant_id, &id, manager)
                    .await
            }
            WantedManager::Nobody => self.directory.clear_manager(&binding.tenant_id, &id).await,
            WantedManager::NotBound => return self.fx.superseded(run).await,
        };
        match written {
            Ok(()) => {
                binding.pending_reason = None;
                binding.last_error = None;
                self.fx
                    .succeed_with(
                        run,
                        &binding,
                        expect,
                        Change::ManagerUpdated,
                        Some(manager_details(wanted)),
                    )
                    .await
            }
            // A missing account (the user's or the manager's) is a permanent failure on this
            // binding; reconcile marks a deleted account (R-BIND-8).
            Err(e) => self.fx.fail(run, binding, expect, e, MANAGER_FAILURE).await,
        }
    }
}

fn pushable(binding: &Binding) -> bool {
    binding.state == BindingState::Provisioned && binding.m365_object_id.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::UnavailableReason;
    use crate::model::{Event, EventKind};
    use crate::usecase::directory::{UpsertUser, UserDraft};
    use crate::usecase::reconcile::{Reconcile, ReconcileSettings, RepairKind};
    use crate::usecase::testkit::{World, uid, unavailable};

    /// Saves `id`'s `managerId` through `PUT /users/{id}` (the R-BIND-7 path).
    async fn save_manager(w: &World, id: &str, manager: Option<&str>) {
        let user = w.users.get(&uid(id)).await.unwrap().unwrap();
        let draft = UserDraft {
            email: user.email.to_string(),
            display_name: user.display_name.clone(),
            given_name: user.given_name.clone(),
            surname: user.surname.clone(),
            job_title: user.job_title.clone(),
            department: user.department.clone(),
            manager_id: manager.map(str::to_owned),
            ..UserDraft::default()
        };
        UpsertUser::new(w).upsert(&uid(id), draft).await.unwrap();
    }

    /// Creates `id` with `managerId` `manager` (not bound).
    async fn user_reporting_to(w: &World, id: &str, manager: &str) {
        let mut user = w.user(id).await;
        user.manager_id = Some(uid(manager));
        w.users.replace(&user, user.version).await.unwrap();
    }

    async fn account(w: &World, id: &str) -> M365ObjectId {
        World::object_id(&w.binding(id).await)
    }

    async fn m365_manager(w: &World, id: &str) -> Option<M365ObjectId> {
        w.directory.manager(&w.tenant.id, &account(w, id).await)
    }

    fn manager_events(w: &World) -> Vec<Event> {
        w.events_with_reason("manager_updated")
    }

    #[tokio::test]
    async fn a_user_bound_after_its_manager_gets_the_managers_account_as_manager() {
        // R-ATTR-1
        let w = World::with_bound(&["boss"]).await;
        user_reporting_to(&w, "adele", "boss").await;
        w.bind("adele").await;
        let boss = account(&w, "boss").await;
        assert_eq!(m365_manager(&w, "adele").await, Some(boss.clone()));
        let events = manager_events(&w);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::UserUpdateProvision);
        assert_eq!(events[0].user_id, Some(uid("adele")));
        let details = events[0].details.clone().unwrap();
        assert_eq!(details["manager"]["userId"], "boss");
        assert_eq!(details["manager"]["m365ObjectId"], boss.as_str());
    }

    #[tokio::test]
    async fn a_manager_bound_later_is_linked_to_its_bound_reports_then() {
        // R-ATTR-1
        let w = World::new().await;
        user_reporting_to(&w, "adele", "boss").await;
        user_reporting_to(&w, "alex", "boss").await;
        w.user("boss").await;
        w.bind("adele").await;
        w.bind("alex").await;
        assert_eq!(
            m365_manager(&w, "adele").await,
            None,
            "the manager is not bound yet"
        );
        assert!(manager_events(&w).is_empty());
        w.bind("boss").await;
        let boss = account(&w, "boss").await;
        assert_eq!(m365_manager(&w, "adele").await, Some(boss.clone()));
        assert_eq!(m365_manager(&w, "alex").await, Some(boss));
        assert_eq!(manager_events(&w).len(), 2);
    }

    #[tokio::test]
    async fn a_bind_involving_no_manager_makes_no_manager_call() {
        // R-ATTR-1 (a plain bind costs what it cost before)
        let w = World::new().await;
        w.user("adele").await;
        w.bind("adele").await;
        let calls = w.directory.calls();
        w.user("alex").await;
        w.bind("alex").await;
        let per_bind = w.directory.calls() - calls;
        assert!(per_bind <= 2, "{per_bind} Graph calls for a new-user bind");
        assert!(manager_events(&w).is_empty());
    }

    #[tokio::test]
    async fn changing_the_manager_of_a_bound_user_updates_m365_and_clearing_removes_it() {
        // R-ATTR-1, R-BIND-7
        let w = World::with_bound(&["adele", "boss", "chief"]).await;
        save_manager(&w, "adele", Some("boss")).await;
        assert_eq!(
            m365_manager(&w, "adele").await,
            Some(account(&w, "boss").await)
        );
        save_manager(&w, "adele", Some("chief")).await;
        assert_eq!(
            m365_manager(&w, "adele").await,
            Some(account(&w, "chief").await)
        );
        let calls = w.directory.calls();
        save_manager(&w, "adele", Some("chief")).await;
        assert_eq!(
            w.directory.calls(),
            calls,
            "an unchanged manager is not pushed"
        );
        save_manager(&w, "adele", None).await;
        assert_eq!(m365_manager(&w, "adele").await, None);
        let events = manager_events(&w);
        assert_eq!(events.len(), 3);
        let removals = events
            .iter()
            .filter(|e| e.details.as_ref().is_some_and(|d| d["manager"].is_null()))
            .count();
        assert_eq!(removals, 1, "the removal is recorded with `manager: null`");
    }

    #[tokio::test]
    async fn a_manager_that_is_not_bound_leaves_m365_alone() {
        // R-ATTR-1
        let w = World::with_bound(&["adele"]).await;
        w.user("boss").await;
        let calls = w.directory.calls();
        save_manager(&w, "adele", Some("boss")).await;
        save_manager(&w, "adele", Some("nobody-yet")).await;
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(m365_manager(&w, "adele").await, None);
    }

    #[tokio::test]
    async fn a_user_named_as_its_own_manager_is_refused_and_nothing_is_written() {
        // R-ATTR-1, R-SAFE-1
        let w = World::with_bound(&["adele"]).await;
        let before = w.users.get(&uid("adele")).await.unwrap().unwrap();
        let err = UpsertUser::new(&w)
            .upsert(
                &uid("adele"),
                UserDraft {
                    email: before.email.to_string(),
                    display_name: before.display_name.clone(),
                    manager_id: Some("adele".into()),
                    ..UserDraft::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert_eq!(
            w.users.get(&uid("adele")).await.unwrap().unwrap().version,
            before.version
        );
    }

    #[tokio::test]
    async fn a_throttled_manager_push_goes_through_the_retry_queue() {
        // R-ATTR-1, R-BIND-6
        let mut w = World::with_bound(&["adele", "boss"]).await;
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Service));
        save_manager(&w, "adele", Some("boss")).await;
        assert_eq!(m365_manager(&w, "adele").await, None);
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(
            binding.pending_reason.as_deref(),
            Some("service_unavailable")
        );
        assert!(
            w.queue
                .snapshot()
                .iter()
                .any(|m| m.message.kind == OperationKind::UserManager)
        );
        w.drain().await;
        assert_eq!(
            m365_manager(&w, "adele").await,
            Some(account(&w, "boss").await)
        );
        assert_eq!(w.binding("adele").await.pending_reason, None);
        assert_eq!(manager_events(&w).len(), 1);
    }

    /// After a first reconcile pass, an M365 admin makes chief's account adele's manager in the
    /// portal (drift the next pass sees); chief's account.
    async fn admin_makes_chief_adeles_manager(
        w: &World,
        reconcile: &Reconcile<'_, World>,
    ) -> M365ObjectId {
        reconcile.run(&w.tenant.id, false).await.unwrap();
        let adele = account(w, "adele").await;
        let chief = account(w, "chief").await;
        w.directory
            .set_manager_by_admin(&w.tenant.id, &adele, Some(&chief));
        chief
    }

    #[tokio::test]
    async fn reconcile_sets_the_directory_manager_again_after_m365_drift() {
        // R-ATTR-1, R-REC-1
        let w = World::with_bound(&["adele", "boss", "chief"]).await;
        save_manager(&w, "adele", Some("boss")).await;
        let settings = ReconcileSettings::default();
        let reconcile = Reconcile::new(&w, &settings);
        let chief = admin_makes_chief_adeles_manager(&w, &reconcile).await;
        let dry = reconcile.run(&w.tenant.id, true).await.unwrap();
        let planned: Vec<_> = dry
            .plan
            .iter()
            .filter(|r| r.kind == RepairKind::SetManager)
            .collect();
        assert_eq!(planned.len(), 1, "{:?}", dry.plan);
        assert_eq!(planned[0].manager, Some(account(&w, "boss").await));
        assert_eq!(
            m365_manager(&w, "adele").await,
            Some(chief),
            "a dry run writes nothing"
        );
        reconcile.run(&w.tenant.id, false).await.unwrap();
        assert_eq!(
            m365_manager(&w, "adele").await,
            Some(account(&w, "boss").await)
        );
        assert_eq!(w.events_with_reason("reconcile_manager").len(), 1);
        let again = reconcile.run(&w.tenant.id, false).await.unwrap();
        assert!(
            !again.plan.iter().any(|r| r.kind == RepairKind::SetManager),
            "repaired once"
        );
    }

    #[tokio::test]
    async fn reconcile_leaves_the_m365_manager_of_a_user_without_manager_id_alone() {
        // R-ATTR-1 (only the directory's own links are repaired)
        let w = World::with_bound(&["adele", "chief"]).await;
        let settings = ReconcileSettings::default();
        let reconcile = Reconcile::new(&w, &settings);
        let chief = admin_makes_chief_adeles_manager(&w, &reconcile).await;
        let report = reconcile.run(&w.tenant.id, false).await.unwrap();
        assert!(!report.plan.iter().any(|r| r.kind == RepairKind::SetManager));
        assert_eq!(m365_manager(&w, "adele").await, Some(chief));
    }
}
