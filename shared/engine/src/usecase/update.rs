//! Push a bound user's directory attributes to M365 (R-BIND-7).

use crate::error::Result;
use crate::model::{
    Binding, BindingState, DirectoryUser, OperationId, OperationKind, OperationSubject,
    RetryMessage, UserAttributes, UserId,
};
use crate::ports::Ports;
use crate::ports::{BindingStore, Directory, Expect, UserStore};

use super::{Change, Effects, OnFailure, Outcome, Run, is_m365_not_found, patch_for};

use_case! {
    /// The attribute-update use case.
    pub struct UpdateAttributes {
        ports: [users: Users, directory: Directory],
        built: [
            /// Outcome recording.
            fx: Effects<'a, P> = Effects::new,
        ],
    }
}

/// An attribute push never changes the binding's state: the account keeps working while it waits
/// or after it failed (the failure is on the binding's last error and in the failures list).
const UPDATE_FAILURE: OnFailure = OnFailure {
    deferred: None,
    permanent: None,
};

/// True when `before` and `after` differ in an attribute M365 holds (handlers call
/// [`UpdateAttributes::push`] only then, so an unchanged `PUT` records no event).
#[must_use]
pub fn attributes_changed(before: &DirectoryUser, after: &DirectoryUser) -> bool {
    before.display_name != after.display_name
        || before.given_name != after.given_name
        || before.surname != after.surname
        || before.job_title != after.job_title
        || before.department != after.department
        || before.attributes != after.attributes
}

impl<P: Ports> UpdateAttributes<'_, P> {
    /// Pushes the user's current attributes to its M365 account → `user_update_provision`
    /// (R-BIND-7). A user that is not `provisioned` is left alone (a later bind syncs attributes).
    /// The operation id is `user_update/user:<id>/<user version>`.
    ///
    /// # Errors
    /// `NotFound` (user); store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_update", user.id = %user_id))]
    pub async fn push(&self, user_id: &UserId) -> Result<Outcome> {
        super::reported(self.push_once(user_id, None).await)
    }

    /// [`Self::push`] after a directory change from `since` (the R-ATTR-1 attributes before it):
    /// of those only the changed ones are sent, a cleared one as `null` (`[]` for
    /// `businessPhones`); a cleared `usageLocation` is not sent (Graph's is not nullable,
    /// graph-spec §3.4). A queued retry sends them all (it no longer knows what changed).
    ///
    /// # Errors
    /// As [`Self::push`].
    #[tracing::instrument(skip_all, fields(op.kind = "user_update", user.id = %user_id))]
    pub async fn push_changed(
        &self,
        user_id: &UserId,
        since: Option<&UserAttributes>,
    ) -> Result<Outcome> {
        super::reported(self.push_once(user_id, since).await)
    }

    async fn push_once(&self, user_id: &UserId, since: Option<&UserAttributes>) -> Result<Outcome> {
        let now = self.fx.now();
        let user = super::stored_user(self.users, user_id).await?;
        let binding = self.fx.bindings.get(user_id).await?;
        let Some(binding) = binding.filter(pushable) else {
            return Ok(Outcome::Unchanged {
                binding: self.fx.bindings.get(user_id).await?,
            });
        };
        let subject = OperationSubject::User(user_id.clone());
        let op = OperationId::new(OperationKind::UserUpdate, &subject, user.version);
        if let Some(ended) = self.fx.claim_new(&op, now, Some(&binding)).await? {
            return Ok(ended);
        }
        let run = Run::new(
            op,
            OperationKind::UserUpdate,
            user_id.clone(),
            now,
            None,
            self.actor,
        );
        let result = self.apply(&run, &user, binding, since).await;
        self.fx.abandon(&run.op, result).await
    }

    /// Re-runs a queued attribute push with the user's attributes as they are now.
    ///
    /// # Errors
    /// Store failures.
    #[tracing::instrument(skip_all, fields(op.kind = "user_update", op.id = %message.operation_id, user.id = %user_id, retry.attempt = message.attempt))]
    pub async fn retry(&self, message: &RetryMessage, user_id: &UserId) -> Result<Outcome> {
        let result = self
            .fx
            .rerun(message, OperationKind::UserUpdate, user_id, async |run| {
                let user = self.users.get(user_id).await?;
                let binding = self.fx.bindings.get(user_id).await?.filter(pushable);
                match (user, binding) {
                    (Some(user), Some(binding)) => self.apply(run, &user, binding, None).await,
                    _ => self.fx.superseded(run).await,
                }
            })
            .await;
        super::reported(result)
    }

    async fn apply(
        &self,
        run: &Run<'_>,
        user: &DirectoryUser,
        mut binding: Binding,
        since: Option<&UserAttributes>,
    ) -> Result<Outcome> {
        let expect = Expect::Version(binding.version);
        let Some(id) = binding.m365_object_id.clone() else {
            return self.fx.superseded(run).await;
        };
        let mut patch = patch_for(user, None);
        if let Some(since) = since {
            patch.attributes = user.attributes.patch_from(since).0;
        }
        // R-ATTR-1: the event names the attributes of R-ATTR-1 it sent.
        let sent = patch.attributes.names();
        let details = (!sent.is_empty()).then(|| serde_json::json!({ "attributes": sent }));
        match self
            .directory
            .update_user(&binding.tenant_id, &id, &patch)
            .await
        {
            Ok(()) => {
                binding.pending_reason = None;
                binding.last_error = None;
                self.fx
                    .succeed_with(run, &binding, expect, Change::AttributesUpdated, details)
                    .await
            }
            Err(e) if is_m365_not_found(&e) => {
                binding.state = BindingState::DeletedInM365;
                binding.pending_reason = None;
                self.fx
                    .succeed(run, &binding, expect, Change::DeletedInM365)
                    .await
            }
            Err(e) => self.fx.fail(run, binding, expect, e, UPDATE_FAILURE).await,
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
    use crate::model::EventKind;
    use crate::ports::UserStore;
    use crate::usecase::testkit::{World, uid, unavailable};

    async fn renamed(w: &World) -> DirectoryUser {
        let mut user = w.users.get(&uid("adele")).await.unwrap().unwrap();
        user.display_name = "Adele Vance-Smith".into();
        user.job_title = Some("Director".into());
        user.department = None;
        let v = user.version;
        w.users.replace(&user, v).await.unwrap()
    }

    #[tokio::test]
    async fn changed_attributes_of_a_bound_user_reach_m365_with_user_update_provision() {
        // R-BIND-7
        let w = World::new().await;
        let before = w.user("adele").await;
        w.bind("adele").await;
        let after = renamed(&w).await;
        assert!(attributes_changed(&before, &after));
        let Outcome::Done { change, .. } = w.updater().push(&uid("adele")).await.unwrap() else {
            panic!("pushed")
        };
        assert_eq!(change, Change::AttributesUpdated);
        let id = World::object_id(&w.binding("adele").await);
        let account = w.directory.user(&w.tenant.id, &id).unwrap();
        assert_eq!(account.display_name, "Adele Vance-Smith");
        assert_eq!(account.job_title.as_deref(), Some("Director"));
        assert_eq!(
            account.department, None,
            "a cleared attribute is cleared in M365"
        );
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
        // The same change delivered again changes nothing.
        let calls = w.directory.calls();
        assert!(matches!(
            w.updater().push(&uid("adele")).await.unwrap(),
            Outcome::AlreadyDone { .. }
        ));
        assert_eq!(w.directory.calls(), calls);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
    }

    #[tokio::test]
    async fn only_attributes_m365_holds_count_as_changed() {
        // R-BIND-7
        let w = World::new().await;
        let before = w.user("adele").await;
        let mut after = before.clone();
        after.version += 1;
        after.state = crate::model::UserState::Disabled;
        assert!(!attributes_changed(&before, &after));
        after.surname = Some("Other".into());
        assert!(attributes_changed(&before, &after));
    }

    #[tokio::test]
    async fn an_unbound_user_is_not_pushed() {
        // R-BIND-7 (only bound users)
        let w = World::new().await;
        w.user("adele").await;
        let outcome = w.updater().push(&uid("adele")).await.unwrap();
        assert_eq!(outcome, Outcome::Unchanged { binding: None });
        assert_eq!(w.directory.calls(), 0);
        assert!(w.events.all().is_empty());
    }

    #[tokio::test]
    async fn an_attribute_push_to_an_account_deleted_in_m365_marks_the_binding() {
        // R-BIND-8
        let w = World::with_bound(&["adele"]).await;
        let id = World::object_id(&w.binding("adele").await);
        w.directory.soft_delete(&w.tenant.id, &id).unwrap();
        renamed(&w).await;
        let Outcome::Done { binding, change } = w.updater().push(&uid("adele")).await.unwrap()
        else {
            panic!("settled")
        };
        assert_eq!(change, Change::DeletedInM365);
        assert_eq!(binding.state, BindingState::DeletedInM365);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 0);
    }

    #[tokio::test]
    async fn a_failed_attribute_push_is_retried_and_keeps_the_account_provisioned() {
        // R-BIND-7, R-BIND-6
        let mut w = World::with_bound(&["adele"]).await;
        renamed(&w).await;
        w.directory
            .fail_next_call(unavailable(UnavailableReason::Service));
        let Outcome::Deferred { binding, .. } = w.updater().push(&uid("adele")).await.unwrap()
        else {
            panic!("deferred")
        };
        assert_eq!(binding.state, BindingState::Provisioned);
        assert_eq!(
            binding.pending_reason.as_deref(),
            Some("service_unavailable")
        );
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 0);
        w.drain().await;
        let id = World::object_id(&w.binding("adele").await);
        assert_eq!(
            w.directory.user(&w.tenant.id, &id).unwrap().display_name,
            "Adele Vance-Smith"
        );
        assert_eq!(w.binding("adele").await.pending_reason, None);
        assert_eq!(w.count_events(EventKind::UserUpdateProvision), 1);
    }
}
