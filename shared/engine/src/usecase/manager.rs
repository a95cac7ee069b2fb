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
        let run = Run::new(op, OperationKind::UserManager, user_id.clone(), now, None);
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
