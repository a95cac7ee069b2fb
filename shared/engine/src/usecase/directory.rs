//! The company directory (DESIGN §3, the `directory` function): saving a directory user or group
//! and what that asks of M365, and the audit listings.
//!
//! - [`UpsertUser`]: `PUT /users/{userId}`. The draft is trimmed and checked (a blank optional
//!   attribute is absent; names with control or bidirectional-override characters are refused,
//!   R-SAFE-1), then created or replaced — an unchanged user is not written at all, and a replaced
//!   one keeps its sealed password and when it was set (the password is `PUT` elsewhere, R-PWD-1).
//!   The email of a user whose binding is live cannot change (it is the UPN the tenant was routed
//!   by, R-BIND-1): `409 email_change_while_bound`, nothing written. What the saved user needs in
//!   M365 is decided by [`sync_needed`]: its binding does not follow its `state` → [`Suspension`]
//!   (R-BIND-9; its error is the caller's, the user being stored and a repeated request catching
//!   the binding up); an attribute M365 holds changed → [`UpdateAttributes`] (R-BIND-7; the user
//!   is stored either way, a push that did not start is `not_pushed`).
//! - [`UpsertGroup`]: `PUT /groups/{groupId}`. The binding is the sync's and survives the upsert;
//!   when the group is bound and its members changed, the membership is mirrored at once
//!   ([`SyncGroup::push`], R-GRP-1; a push that did not start is `not_pushed`).
//! - [`AuditTrail`]: `GET /events` and `GET /tenants/{id}/failures` (R-AUD-1), paged with opaque
//!   cursors signed with the deployment's cursor key and bound to the listing and its filter
//!   ([`crate::policy::cursor`]): a cursor of another listing is `invalid_cursor`.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use crate::error::{Conflict, FieldProblem, InvalidInput, Result};
use crate::model::{
    Binding, BindingState, DEFAULT_PAGE_LIMIT, DirectoryUser, Email, Event, Failure, Group,
    GroupId, PageRequest, TenantId, UserAttributes, UserId, UserState,
};
use crate::policy::cursor::CursorKey;
use crate::policy::password::DirectoryPasswordPolicy;
use crate::ports::{
    BindingStore, Clock, CursorKeys, EventFilter, EventQuery, EventStore, FailureStore, GroupStore,
    Ports, UserStore,
};

use super::Outcome;
use super::group_sync::{GroupOutcome, SyncGroup};
use super::manager::SyncManager;
use super::suspend::{Suspension, UserSync, sync_needed};
use super::update::{UpdateAttributes, attributes_changed};

/// Most members a group may list in one request.
pub const MAX_GROUP_MEMBERS: usize = 1_000;
/// Largest page a listing answers.
pub const MAX_LIMIT: u32 = 100;

/// A directory user as a caller sends it (`PUT /users/{userId}`), before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDraft {
    /// Email (the UPN in M365).
    pub email: String,
    /// Display name (required).
    pub display_name: String,
    /// Given name; blank is absent.
    pub given_name: Option<String>,
    /// Surname; blank is absent.
    pub surname: Option<String>,
    /// Job title; blank is absent.
    pub job_title: Option<String>,
    /// Department; blank is absent.
    pub department: Option<String>,
    /// `active` when absent.
    pub state: Option<UserState>,
    /// The R-ATTR-1 attributes; blank ones are absent.
    pub attributes: UserAttributes,
    /// The manager's directory user id (R-ATTR-1); blank is absent. Not the user itself; an id
    /// not (yet) in the directory is accepted and linked once that user exists and is bound.
    pub manager_id: Option<String>,
    /// Where the welcome email goes instead of the M365 address (R-NOT-1); blank is absent.
    /// Checked like `email`.
    pub notification_email: Option<String>,
}

/// What saving a user did in M365.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSynced {
    /// The user has no binding.
    NotBound,
    /// M365 already follows the user (nothing changed, or nothing M365 holds).
    Unchanged,
    /// The binding followed the user's changed `state` (R-BIND-9).
    State(Outcome),
    /// The changed attributes were pushed (R-BIND-7).
    Attributes(Outcome),
    /// The attribute push did not start (logged; the user is stored, reconcile catches it up).
    NotPushed,
}

impl UserSynced {
    /// `not_bound`, `unchanged`, `not_pushed`, or the push's outcome name.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotBound => "not_bound",
            Self::Unchanged => "unchanged",
            Self::State(outcome) | Self::Attributes(outcome) => outcome.as_str(),
            Self::NotPushed => "not_pushed",
        }
    }

    /// The binding after a state change was followed (shown to the caller, R-BIND-9).
    #[must_use]
    pub fn binding(&self) -> Option<&Binding> {
        match self {
            Self::State(outcome) => outcome.binding(),
            _ => None,
        }
    }
}

/// A saved directory user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserUpserted {
    /// The user as stored.
    pub user: DirectoryUser,
    /// It did not exist before.
    pub created: bool,
    /// What happened in M365.
    pub sync: UserSynced,
}

use_case! {
    /// The directory-user upsert use case.
    pub struct UpsertUser {
        ports: [users: Users, bindings: Bindings, clock: Clock],
        built: [
            /// The directory password policy (an expired password keeps a re-activated user suspended).
            password_policy: &'a DirectoryPasswordPolicy = Ports::password_policy,
            /// Follows a changed `state` (R-BIND-9).
            suspension: Suspension<'a, P> = Suspension::new,
            /// Pushes changed attributes (R-BIND-7).
            update: UpdateAttributes<'a, P> = UpdateAttributes::new,
            /// Links a changed manager (R-ATTR-1).
            manager: SyncManager<'a, P> = SyncManager::new,
        ],
    }
}

fn blank_to_none(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// A binding through which M365 holds the user's email as its UPN.
fn is_live(binding: &Binding) -> bool {
    !matches!(
        binding.state,
        BindingState::Unselected | BindingState::DeletedInM365
    )
}

impl<P: Ports> UpsertUser<'_, P> {
    /// Saves `draft` as user `id` and brings M365 in line (see the module docs).
    ///
    /// # Errors
    /// `Invalid` (email, names, fields), nothing written; `Conflict::EmailChangeWhileBound`,
    /// `Conflict::EmailExists`, `Conflict::StaleVersion`; store failures; a state change whose
    /// follow-up failed before anything was queued (the user is stored).
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    pub async fn upsert(&self, id: &UserId, draft: UserDraft) -> Result<UserUpserted> {
        let email = Email::parse(draft.email.trim())?;
        let mut user = DirectoryUser::new(id.clone(), email, draft.display_name.trim());
        user.given_name = blank_to_none(draft.given_name);
        user.surname = blank_to_none(draft.surname);
        user.job_title = blank_to_none(draft.job_title);
        user.department = blank_to_none(draft.department);
        user.attributes = draft.attributes.normalized();
        user.state = draft.state.unwrap_or_default();
        user.manager_id = blank_to_none(draft.manager_id)
            .map(UserId::parse)
            .transpose()?;
        user.notification_email = blank_to_none(draft.notification_email)
            .map(|e| {
                Email::parse(&e).map_err(|problem| InvalidInput::EmailField {
                    field: "notificationEmail",
                    problem,
                })
            })
            .transpose()?;
        user.validate()?;

        let before = self.users.get(id).await?;
        let binding = self.bindings.get(id).await?;
        let stored = match &before {
            None => self.users.create(&user).await?,
            Some(old) => {
                if binding.as_ref().is_some_and(is_live) && old.email != user.email {
                    return Err(Conflict::EmailChangeWhileBound.into());
                }
                if !attributes_changed(old, &user)
                    && old.email == user.email
                    && old.state == user.state
                    && old.manager_id == user.manager_id
                    && old.notification_email == user.notification_email
                {
                    // Nothing to store; M365 may still lag behind the state (a run cut short).
                    old.clone()
                } else {
                    user.password.clone_from(&old.password);
                    user.password_changed_at = old.password_changed_at;
                    self.users.replace(&user, old.version).await?
                }
            }
        };
        let needed = sync_needed(
            before.as_ref(),
            &stored,
            binding.as_ref(),
            self.password_policy,
            self.clock.now(),
        );
        let unchanged = before
            .as_ref()
            .is_some_and(|old| old.version == stored.version);
        let sync = match (&binding, needed) {
            (_, UserSync::Nothing) if unchanged => UserSynced::Unchanged,
            (None, _) => UserSynced::NotBound,
            (Some(_), UserSync::Nothing) => UserSynced::Unchanged,
            // A failed M365 write is on the binding and the retry queue. An error before anything
            // was queued is the caller's to see: the user is stored, and sending the same request
            // again catches the binding up (the state is compared with the binding, not with the
            // stored user). Boxed: the use case's future is deep.
            (Some(_), UserSync::State) => {
                UserSynced::State(Box::pin(self.suspension.apply(id)).await?)
            }
            // The user is stored either way; a failed push is on the binding and the retry queue.
            (Some(_), UserSync::Attributes) => match self
                .update
                .push_changed(id, before.as_ref().map(|b| &b.attributes))
                .await
            {
                Ok(outcome) => UserSynced::Attributes(outcome),
                Err(e) => {
                    tracing::warn!(error.code = e.code(), "attribute push not started");
                    UserSynced::NotPushed
                }
            },
        };
        // R-ATTR-1: a changed manager of a bound user reaches M365 (a failure is on the binding
        // and, when retryable, on the retry queue; the user is stored either way).
        let manager_changed = before
            .as_ref()
            .is_some_and(|old| old.manager_id != stored.manager_id);
        if manager_changed && binding.is_some() {
            match Box::pin(self.manager.push(id)).await {
                Ok(outcome) => tracing::info!(outcome = outcome.as_str(), "manager pushed"),
                Err(e) => tracing::warn!(error.code = e.code(), "manager push not started"),
            }
        }
        Ok(UserUpserted {
            user: stored,
            created: before.is_none(),
            sync,
        })
    }
}

/// A directory group as a caller sends it (`PUT /groups/{groupId}`), before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDraft {
    /// Name (required).
    pub name: String,
    /// Member user ids (at most [`MAX_GROUP_MEMBERS`]).
    pub members: Vec<String>,
}

/// What saving a group did in M365.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSynced {
    /// The group has no binding.
    NotBound,
    /// Its members did not change.
    Unchanged,
    /// The membership was mirrored (R-GRP-1).
    Pushed(Box<GroupOutcome>),
    /// The push did not start (logged; the group is stored, reconcile catches it up).
    NotPushed,
}

impl GroupSynced {
    /// `not_bound`, `unchanged`, `not_pushed`, or the push's outcome name.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotBound => "not_bound",
            Self::Unchanged => "unchanged",
            Self::Pushed(outcome) => outcome.as_str(),
            Self::NotPushed => "not_pushed",
        }
    }
}

/// A saved directory group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUpserted {
    /// The group as stored (with its binding after a push).
    pub group: Group,
    /// It did not exist before.
    pub created: bool,
    /// What happened in M365.
    pub sync: GroupSynced,
}

use_case! {
    /// The directory-group upsert use case.
    pub struct UpsertGroup {
        ports: [groups: Groups],
        built: [
            /// Mirrors a bound group's membership (R-GRP-1).
            sync: SyncGroup<'a, P> = SyncGroup::new,
        ],
    }
}

impl<P: Ports> UpsertGroup<'_, P> {
    /// Saves `draft` as group `id`; a bound group whose members changed is mirrored now.
    ///
    /// # Errors
    /// `Invalid` (too many members, a bad member id, the name), nothing written;
    /// `Conflict::StaleVersion`; store failures.
    #[tracing::instrument(skip_all, fields(group.id = %id))]
    pub async fn upsert(&self, id: &GroupId, draft: GroupDraft) -> Result<GroupUpserted> {
        if draft.members.len() > MAX_GROUP_MEMBERS {
            return Err(InvalidInput::Field {
                field: "members",
                problem: FieldProblem::TooLong {
                    max: MAX_GROUP_MEMBERS,
                },
            }
            .into());
        }
        let members = draft
            .members
            .iter()
            .map(|m| UserId::parse(m.as_str()))
            .collect::<std::result::Result<BTreeSet<_>, _>>()?;
        let mut group = Group::new(id.clone(), draft.name.trim(), members);
        group.validate()?;
        let (stored, created, members_changed) = match self.groups.get(id).await? {
            None => (self.groups.create(&group).await?, true, false),
            Some(old) => {
                let members_changed = old.members != group.members;
                group.version = old.version;
                // The binding is the sync's, not the caller's: it survives the upsert.
                group.binding.clone_from(&old.binding);
                if old.name == group.name && !members_changed {
                    (old, false, false)
                } else {
                    let stored = self.groups.replace(&group, group.version).await?;
                    (stored, false, members_changed)
                }
            }
        };
        let (group, sync) = if stored.binding.is_none() {
            (stored, GroupSynced::NotBound)
        } else if !members_changed {
            (stored, GroupSynced::Unchanged)
        } else {
            // The group is stored either way; a failed push is on the binding and the retry queue.
            match self.sync.push(id).await {
                Ok(outcome) => (
                    outcome.group().cloned().unwrap_or(stored),
                    GroupSynced::Pushed(Box::new(outcome)),
                ),
                Err(e) => {
                    tracing::warn!(error.code = e.code(), "group membership push not started");
                    (stored, GroupSynced::NotPushed)
                }
            }
        };
        Ok(GroupUpserted {
            group,
            created,
            sync,
        })
    }
}

/// Which page of a listing a caller asks for: the raw `cursor` and `limit` query parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageAsk<'q> {
    /// The `cursor` of the previous page (`None`: the first page).
    pub cursor: Option<&'q str>,
    /// The `limit` (`1..=MAX_LIMIT`; `None`: [`DEFAULT_PAGE_LIMIT`]).
    pub limit: Option<&'q str>,
}

/// One page of a listing, with the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// The cursor of the next page, when there may be more.
    pub next_cursor: Option<String>,
}

use_case! {
    /// The audit listings (R-AUD-1).
    pub struct AuditTrail {
        ports: [events: Events, failures: Failures, cursor_keys: CursorKeys],
    }
}

impl<P: Ports> AuditTrail<'_, P> {
    /// Events matching `filter` (at or after `since`), newest first.
    ///
    /// # Errors
    /// `Invalid` for a bad `limit` or a cursor not of this listing; store failures.
    pub async fn events(
        &self,
        filter: EventFilter,
        since: Option<DateTime<Utc>>,
        ask: PageAsk<'_>,
    ) -> Result<Listed<Event>> {
        let listing = match &filter {
            EventFilter::User(u) => format!("events/user/{u}"),
            EventFilter::Tenant(t) => format!("events/tenant/{t}"),
            EventFilter::Kind(k) => format!("events/type/{}", k.as_str()),
        };
        let listing = match since {
            Some(s) => format!(
                "{listing}/since/{}",
                s.timestamp_nanos_opt().unwrap_or_default()
            ),
            None => listing,
        };
        let (page, key) = self.page(&listing, ask).await?;
        let query = EventQuery {
            filter,
            since,
            page,
        };
        let found = self.events.query(&query).await?;
        Ok(Listed {
            next_cursor: key.next_cursor(&listing, found.next.as_ref())?,
            items: found.items,
        })
    }

    /// `tenant`'s failures with Graph's request id, newest first.
    ///
    /// # Errors
    /// As [`Self::events`].
    pub async fn failures(&self, tenant: &TenantId, ask: PageAsk<'_>) -> Result<Listed<Failure>> {
        let listing = format!("failures/{tenant}");
        let (page, key) = self.page(&listing, ask).await?;
        let found = self.failures.list_by_tenant(tenant, &page).await?;
        Ok(Listed {
            next_cursor: key.next_cursor(&listing, found.next.as_ref())?,
            items: found.items,
        })
    }

    /// The page `ask` is for: `limit` checked, and `cursor` opened with the cursor key for
    /// `listing` (a cursor of another listing or filter is `invalid_cursor`). Returns the key too,
    /// to sign the next cursor with.
    async fn page(&self, listing: &str, ask: PageAsk<'_>) -> Result<(PageRequest, CursorKey)> {
        let limit = match ask.limit.map(str::parse::<u32>) {
            None => DEFAULT_PAGE_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                return Err(InvalidInput::Field {
                    field: "limit",
                    problem: FieldProblem::TooLong {
                        max: MAX_LIMIT as usize,
                    },
                }
                .into());
            }
        };
        let key = self.cursor_keys.key().await?;
        let page = key.page_request(listing, ask.cursor, limit)?;
        Ok((page, key))
    }
}

#[cfg(test)]
mod tests;
