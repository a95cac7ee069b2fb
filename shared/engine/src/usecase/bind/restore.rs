//! Restore instead of waiting (R-BIND-10): a re-bind that finds no active account with the user's
//! UPN looks for the deleted one in M365's `deletedItems` — the binding's own account by its
//! object id (a `deleted_in_m365` binding, or a 404 on unblocking it), else a deleted user with
//! that UPN (graph-spec §3.6) — and restores it when it was deleted less than 30 days ago. Without
//! a known account the UPN is looked up among deleted users only when M365 answers that a
//! deleted account still holds the address (the create's `address_held`): a first bind costs no
//! extra request (DESIGN §5). M365 brings back the same object id with its mailbox, licences
//! and group memberships (graph-spec §3.5); the bind then adopts it as usual (privilege check,
//! attributes, sign-in enabled, directory password), so the binding is `provisioned` at once with
//! `restored: true` and no address wait.
//!
//! The restore is written ahead (`InFlight::restore_of`) before it is sent: a restore that
//! landed but whose answer was lost (timeout, crash) is recognized by the retry, which finds the
//! account active with that id and adopts it as restored — it is never treated as a failure nor
//! as someone else's account. A restore M365 refuses because another object took one of the
//! account's addresses meanwhile (`restore_conflict`) is not tried again by this bind: it falls
//! back to the address wait and a new account (R-BIND-8), with the reason on the binding
//! (`restoreConflict`). `"restore": false` in the request skips all of this.

use serde_json::{Value, json};

use crate::error::{Conflict, Error, Result};
use crate::model::{
    Binding, BindingState, DeletedM365User, DirectoryUser, M365ObjectId, M365User, Tenant, TenantId,
};
use crate::ports::{BindingStore, Directory, Expect, Ports};
use crate::usecase::{BoxFuture, Outcome, Run, is_m365_not_found};

use super::{BIND_FAILURE, Bind};

/// What a restore attempt left the bind with.
enum Attempt {
    /// The account is active again (restored now, or by an earlier attempt whose answer was
    /// lost): adopt it.
    Restored {
        binding: Binding,
        expect: Expect,
        account: Box<M365User>,
    },
    /// Nothing to restore (none deleted, purged, `restore: false`, or M365 refused): go on to
    /// create.
    NotRestored { binding: Binding, expect: Expect },
    /// A Graph failure was recorded (deferred or failed): the bind ends with it.
    Failed(Outcome),
}

/// The account of a binding M365 deleted (`deleted_in_m365`) in the tenant the user routes to:
/// the one to restore.
pub(super) fn deleted_account(
    current: Option<&Binding>,
    tenant: &TenantId,
) -> Option<M365ObjectId> {
    current
        .filter(|b| b.state == BindingState::DeletedInM365 && b.tenant_id == *tenant)
        .and_then(|b| b.m365_object_id.clone())
}

/// The binding's own account turned out deleted (a 404 on unblocking it): restore that one.
pub(super) fn remember_deleted(binding: &mut Binding, id: M365ObjectId) {
    if let Some(f) = binding.in_flight.as_mut() {
        f.restore_of.get_or_insert(id);
    }
}

/// Whether the bind may still restore: the request did not say `restore: false` and M365 has
/// not refused this bind's restore.
pub(super) fn may_restore(binding: &Binding) -> bool {
    binding
        .in_flight
        .as_ref()
        .is_some_and(|f| !f.no_restore && binding.restore_conflict.is_none())
}

/// Whether the bind knows a deleted account of this binding to restore (and may restore).
pub(super) fn has_candidate(binding: &Binding) -> bool {
    may_restore(binding)
        && binding
            .in_flight
            .as_ref()
            .is_some_and(|f| f.restore_of.is_some())
}

/// Whether `found` is the account this bind restores (or restored, answer lost).
pub(super) fn is_restored(binding: &Binding, found: &M365ObjectId) -> bool {
    binding
        .in_flight
        .as_ref()
        .is_some_and(|f| !f.no_restore && f.restore_of.as_ref() == Some(found))
}

/// The event details of a bind, with `"restored": true` for a restored account.
pub(super) fn details(restored: bool, details: Option<Value>) -> Option<Value> {
    if !restored {
        return details;
    }
    let mut out = match details {
        Some(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    out.insert("restored".into(), json!(true));
    Some(Value::Object(out))
}

/// Whether the deleted item is `user`'s account: its UPN is the user's email. Real Entra may
/// show a deleted user's UPN prefixed with its object id without dashes (graph-spec is silent:
/// unconfirmed); that form is accepted too.
fn same_upn(deleted: &DeletedM365User, user: &DirectoryUser) -> bool {
    let upn = deleted.user_principal_name.to_ascii_lowercase();
    let email = user.email.as_str().to_ascii_lowercase();
    let id = deleted.id.as_str().replace('-', "").to_ascii_lowercase();
    upn == email || upn.strip_prefix(&id) == Some(email.as_str())
}

impl<P: Ports> Bind<'_, P> {
    /// Restores the user's deleted account if there is one ([`Self::restore`]) and adopts it:
    /// `Ok(outcome)` when the bind ended (restored and adopted, or a Graph failure recorded),
    /// `Err((binding, expect))` when nothing was restored and the bind goes on. Boxed
    /// ([`BoxFuture`]): the caller's frame keeps a pointer only.
    ///
    /// # Errors
    /// Store failures.
    pub(super) fn restore_and_adopt<'s>(
        &'s self,
        run: &'s Run<'_>,
        user: &'s DirectoryUser,
        tenant: &'s Tenant,
        binding: Binding,
        expect: Expect,
    ) -> BoxFuture<'s, Result<std::result::Result<Outcome, (Binding, Expect)>>> {
        Box::pin(async move {
            Ok(
                match self.restore(run, user, tenant, binding, expect).await? {
                    Attempt::Restored {
                        binding,
                        expect,
                        account,
                    } => Ok(self
                        .adopt_existing(run, user, tenant, binding, expect, *account)
                        .await?),
                    Attempt::Failed(outcome) => Ok(outcome),
                    Attempt::NotRestored { binding, expect } => Err((binding, expect)),
                },
            )
        })
    }

    /// Restores the user's deleted account if there is one to restore (see the module docs).
    ///
    /// # Errors
    /// Store failures (Graph failures are recorded: [`Attempt::Failed`]).
    async fn restore(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        tenant: &Tenant,
        mut binding: Binding,
        mut expect: Expect,
    ) -> Result<Attempt> {
        // `restore: false`, or M365 already refused this bind's restore.
        if !may_restore(&binding) {
            return Ok(Attempt::NotRestored { binding, expect });
        }
        let known = binding
            .in_flight
            .as_ref()
            .and_then(|f| f.restore_of.clone());
        let found = match known {
            Some(id) => match self.directory.get_deleted_user(&tenant.id, &id).await {
                Ok(None) => {
                    self.directory
                        .find_deleted_user_by_upn(&tenant.id, &user.email)
                        .await
                }
                other => other,
            },
            None => {
                self.directory
                    .find_deleted_user_by_upn(&tenant.id, &user.email)
                    .await
            }
        };
        let deleted = match found {
            Ok(Some(d)) if d.restorable_at(run.now) && same_upn(&d, user) => d,
            Ok(_) => return Ok(Attempt::NotRestored { binding, expect }),
            Err(e) => return self.failed(run, binding, expect, e).await,
        };
        // Write-ahead: an account found later with this id is the restored one.
        if let Some(f) = binding.in_flight.as_mut() {
            f.restore_of = Some(deleted.id.clone());
        }
        binding.pending_reason = Some("restoring".to_owned());
        binding = self.fx.bindings.put(&binding, expect).await?;
        expect = Expect::Version(binding.version);
        match self.directory.restore_user(&tenant.id, &deleted.id).await {
            Ok(account) => {
                tracing::info!(tenant.id = %tenant.id, user.id = %account.id, "m365 account restored from deleted items");
                Ok(Attempt::Restored {
                    binding,
                    expect,
                    account: Box::new(account),
                })
            }
            Err(Error::Conflict(refused @ Conflict::RestoreConflict { .. })) => {
                tracing::info!(tenant.id = %tenant.id, user.id = %deleted.id, error.code = refused.code(), "m365 refused the restore; falling back to a new account");
                binding.restore_conflict = Some(refused.to_string());
                Ok(Attempt::NotRestored { binding, expect })
            }
            // Restored already (an earlier restore's answer was lost) or purged meanwhile.
            Err(e) if is_m365_not_found(&e) => {
                match self.directory.get_user(&tenant.id, &deleted.id).await {
                    Ok(Some(account)) => Ok(Attempt::Restored {
                        binding,
                        expect,
                        account: Box::new(account),
                    }),
                    Ok(None) => Ok(Attempt::NotRestored { binding, expect }),
                    Err(e) => self.failed(run, binding, expect, e).await,
                }
            }
            Err(e) => self.failed(run, binding, expect, e).await,
        }
    }

    async fn failed(
        &self,
        run: &Run<'_>,
        binding: Binding,
        expect: Expect,
        error: Error,
    ) -> Result<Attempt> {
        let outcome = self
            .fx
            .fail(run, binding, expect, error, BIND_FAILURE)
            .await?;
        Ok(Attempt::Failed(outcome))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use crate::error::{Conflict, Error, UnavailableReason};
    use crate::model::{BindingState, EventKind, M365ObjectId};
    use crate::ports::Directory;
    use crate::usecase::Outcome;
    use crate::usecase::testkit::{World, uid, unavailable};

    /// Adele bound, her account deleted in M365 and the binding marked `deleted_in_m365`
    /// (R-BIND-8); returns the deleted account's id.
    async fn deleted_in_m365(w: &World) -> M365ObjectId {
        w.user("adele").await;
        w.bind("adele").await;
        let id = World::object_id(&w.binding("adele").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        w.unbinder().unbind(&uid("adele")).await.unwrap();
        assert_eq!(w.binding("adele").await.state, BindingState::DeletedInM365);
        id
    }

    /// Lets a re-bind's lookups through, so the next fault hits its restore call.
    fn before_the_restore_call(w: &World) {
        w.directory.pass_next_call(); // find_user_by_upn
        w.directory.pass_next_call(); // get_deleted_user
    }

    fn restored_events(w: &World) -> usize {
        w.events
            .all()
            .iter()
            .filter(|e| {
                e.kind == EventKind::UserUpdateProvision
                    && e.details.as_ref().is_some_and(|d| d["restored"] == true)
            })
            .count()
    }

    #[tokio::test]
    async fn rebinding_a_user_whose_account_was_deleted_restores_the_same_account_at_once() {
        // R-BIND-10
        let w = World::new().await;
        let old = deleted_in_m365(&w).await;
        let Outcome::Done { binding, .. } = w.bind("adele").await else {
            panic!("restored at once, no address wait")
        };
        assert_eq!(binding.state, BindingState::Provisioned);
        assert!(binding.restored);
        assert_eq!(binding.restore_conflict, None);
        assert_eq!(binding.m365_object_id, Some(old.clone()));
        let account = w.directory.user(&w.tenant.id, &old).expect("active again");
        assert!(account.account_enabled);
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
        assert!(w.queue.snapshot().is_empty(), "nothing waits");
        assert_eq!(restored_events(&w), 1);
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 1);
        let stored = w.binding("adele").await;
        assert!(stored.restored && stored.in_flight.is_none());
        // The next bind of a provisioned binding changes nothing; a later re-bind says anew.
        assert!(matches!(w.bind("adele").await, Outcome::Unchanged { .. }));
    }

    #[tokio::test]
    async fn restore_false_waits_for_the_address_and_creates_a_new_account() {
        // R-BIND-10 (`restore: false` keeps R-BIND-8)
        let mut w = World::new().await;
        let old = deleted_in_m365(&w).await;
        let Outcome::Deferred { binding, .. } = w.bind_without_restore("adele").await else {
            panic!("address wait")
        };
        assert_eq!(binding.pending_reason.as_deref(), Some("address_held"));
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert!(!binding.restored);
        assert_ne!(binding.m365_object_id, Some(old.clone()));
        assert!(
            w.directory
                .get_deleted_user(&w.tenant.id, &old)
                .await
                .unwrap()
                .is_some(),
            "the old account stays deleted"
        );
        assert_eq!(restored_events(&w), 0);
    }

    #[tokio::test]
    async fn a_restore_m365_refuses_falls_back_to_the_address_wait_with_the_reason() {
        // R-BIND-10 (restore conflict), R-BIND-8
        let mut w = World::new().await;
        let old = deleted_in_m365(&w).await;
        before_the_restore_call(&w);
        w.directory
            .fail_next_call(Error::Conflict(Conflict::RestoreConflict {
                account: old.to_string(),
                property: "userPrincipalName".to_owned(),
            }));
        let Outcome::Deferred { binding, .. } = w.bind("adele").await else {
            panic!("address wait")
        };
        assert_eq!(binding.state, BindingState::Pending);
        assert_eq!(binding.pending_reason.as_deref(), Some("address_held"));
        let reason = binding
            .restore_conflict
            .clone()
            .expect("reason on the binding");
        assert!(reason.contains("userPrincipalName"), "{reason}");
        assert_eq!(
            w.binding("adele").await.restore_conflict,
            Some(reason.clone())
        );
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert!(!binding.restored);
        assert_ne!(binding.m365_object_id, Some(old));
        assert_eq!(
            binding.restore_conflict,
            Some(reason),
            "why it is a new account"
        );
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 2);
    }

    #[tokio::test]
    async fn a_restore_whose_answer_was_lost_is_recognized_by_the_retry_never_failed() {
        // R-BIND-10, R-BIND-12 (a retry after a restore that landed but timed out)
        let mut w = World::new().await;
        let old = deleted_in_m365(&w).await;
        before_the_restore_call(&w);
        w.directory
            .fail_next_call_after_commit(unavailable(UnavailableReason::Timeout));
        let Outcome::Deferred { binding, .. } = w.bind("adele").await else {
            panic!("timeout: retried")
        };
        assert_eq!(binding.in_flight.unwrap().restore_of, Some(old.clone()));
        assert!(w.directory.user(&w.tenant.id, &old).is_some(), "it landed");
        w.drain().await;
        let binding = w.binding("adele").await;
        assert_eq!(binding.state, BindingState::Provisioned);
        assert!(binding.restored);
        assert_eq!(binding.m365_object_id, Some(old));
        assert_eq!(restored_events(&w), 1);
        assert!(w.dead_letters.is_empty());
    }

    #[tokio::test]
    async fn a_restore_that_timed_out_before_landing_is_sent_again_by_the_retry() {
        // R-BIND-10, R-BIND-6
        let mut w = World::new().await;
        let old = deleted_in_m365(&w).await;
        before_the_restore_call(&w);
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Timeout));
        assert!(matches!(w.bind("adele").await, Outcome::Deferred { .. }));
        assert!(w.directory.user(&w.tenant.id, &old).is_none());
        w.drain().await;
        let binding = w.binding("adele").await;
        assert!(binding.restored);
        assert_eq!(binding.m365_object_id, Some(old));
        assert_eq!(w.directory.active_user_count(&w.tenant.id), 1);
    }

    #[tokio::test]
    async fn an_account_deleted_more_than_30_days_ago_is_gone_and_a_new_one_is_created() {
        // R-BIND-10 (30 days), R-BIND-8
        let w = World::new().await;
        let old = deleted_in_m365(&w).await;
        w.clock.advance(TimeDelta::days(30));
        let Outcome::Done { binding, .. } = w.bind("adele").await else {
            panic!("created: the address was released long ago")
        };
        assert!(!binding.restored);
        assert_ne!(binding.m365_object_id, Some(old));
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 2);
    }

    #[tokio::test]
    async fn a_deleted_account_holding_the_address_is_restored_by_its_upn() {
        // R-BIND-10 (no account id on the binding: found by UPN among deleted users)
        let (w, account) = World::with_adeles_account("Str0ng!Passw0rd").await;
        w.directory.soft_delete(&w.tenant.id, &account.id).unwrap();
        let Outcome::Done { binding, .. } = w.bind("adele").await else {
            panic!("restored")
        };
        assert!(binding.restored);
        assert_eq!(binding.m365_object_id, Some(account.id.clone()));
        assert!(
            w.directory
                .user(&w.tenant.id, &account.id)
                .unwrap()
                .account_enabled
        );
        assert_eq!(w.count_events(EventKind::UserCreateProvision), 0);
        assert_eq!(restored_events(&w), 1);
    }

    #[tokio::test]
    async fn an_unbind_racing_a_restore_leaves_the_restored_account_blocked() {
        // R-BIND-12, R-BIND-10
        let w = World::new().await;
        let old = deleted_in_m365(&w).await;
        let mut held = w
            .directory
            .hold_next("restore_user", crate::testing::Stage::AfterCommit);
        let race = async {
            let bind = w.bind("adele");
            let unbind = async {
                assert!(held.arrived().await);
                let outcome = w.unbinder().unbind(&uid("adele")).await;
                held.release();
                outcome
            };
            tokio::join!(bind, unbind)
        };
        let (_, unbound) = crate::usecase::testkit::interleaved(race).await;
        unbound.unwrap();
        let binding = w.binding("adele").await;
        assert_ne!(binding.state, BindingState::Provisioned);
        let account = w.directory.user(&w.tenant.id, &old).expect("restored");
        assert!(!account.account_enabled, "never left enabled");
    }

    #[tokio::test]
    async fn a_deleted_upn_matches_as_is_or_prefixed_with_the_object_id() {
        // R-BIND-10 (graph-spec silent on deleted UPNs: both forms accepted)
        let id = M365ObjectId::parse("46cc6179-19d0-473e-97ad-6ff84347bbbb").unwrap();
        let user = World::new().await.user("adele").await;
        let deleted = |upn: &str| crate::model::DeletedM365User {
            id: id.clone(),
            user_principal_name: upn.to_owned(),
            deleted_at: None,
        };
        let email = user.email.as_str().to_owned();
        assert!(super::same_upn(&deleted(&email.to_uppercase()), &user));
        assert!(super::same_upn(
            &deleted(&format!("46cc617919d0473e97ad6ff84347bbbb{email}")),
            &user
        ));
        assert!(!super::same_upn(&deleted(&format!("x{email}")), &user));
    }
}
