//! In-memory fakes of the reconcile ports: [`FakeUserDeltas`] derives delta rounds from a
//! [`FakeDirectory`] by comparing its users with the snapshot a link names, and
//! [`FakeReconcileCursors`] keeps each tenant's links in a map, and [`FakeGroupDeltas`] serves
//! group rounds a test scripts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{FakeDirectory, lock};
use crate::error::{InvalidInput, Result};
use crate::model::{M365ObjectId, M365User, PageRequest, TenantId};
use crate::ports::{
    DeltaLink, DeltaStream, Directory, GroupDeltaPage, GroupDeltas, GroupMembershipChange,
    ReconcileCursors, UserChange, UserDeltaPage, UserDeltas,
};

const LINK_PREFIX: &str = "fake-delta:";

type Snapshot = BTreeMap<M365ObjectId, M365User>;

/// Delta rounds over a [`FakeDirectory`]: every round is one page; a link names the snapshot taken
/// when it was issued, and the next round reports the users that differ from it (new or changed,
/// with every attribute) and those gone since (removed).
#[derive(Debug)]
pub struct FakeUserDeltas<'a> {
    directory: &'a FakeDirectory,
    snapshots: Mutex<Vec<Snapshot>>,
    pages: AtomicU64,
    lost: AtomicBool,
}

fn change_of(user: &M365User) -> UserChange {
    UserChange {
        id: user.id.clone(),
        removed: false,
        display_name: Some(user.display_name.clone()),
        // Every attribute is reported, a cleared one as `null` (graph-spec §5).
        given_name: Some(user.given_name.clone()),
        surname: Some(user.surname.clone()),
        job_title: Some(user.job_title.clone()),
        department: Some(user.department.clone()),
        account_enabled: Some(user.account_enabled),
        last_password_change: user.last_password_change,
    }
}

impl<'a> FakeUserDeltas<'a> {
    /// Deltas of `directory`.
    #[must_use]
    pub fn new(directory: &'a FakeDirectory) -> Self {
        Self {
            directory,
            snapshots: Mutex::new(Vec::new()),
            pages: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }
    }

    /// Delta pages served so far.
    #[must_use]
    pub fn pages(&self) -> u64 {
        self.pages.load(Ordering::SeqCst)
    }

    /// Every link issued so far is lost: the next call with a link restarts (Graph's 410).
    pub fn lose_state(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    async fn listing(&self, tenant: &TenantId) -> Result<Snapshot> {
        let mut all = Snapshot::new();
        let mut request = PageRequest::first(1000);
        loop {
            let page = self.directory.list_users(tenant, &request).await?;
            all.extend(page.items.into_iter().map(|u| (u.id.clone(), u)));
            match page.next {
                Some(next) => request = PageRequest::after(next, 1000),
                None => return Ok(all),
            }
        }
    }
}

impl UserDeltas for FakeUserDeltas<'_> {
    async fn users_delta(&self, tenant: &TenantId, link: Option<&str>) -> Result<UserDeltaPage> {
        self.pages.fetch_add(1, Ordering::SeqCst);
        let current = self.listing(tenant).await?;
        let restarted = link.is_some() && self.lost.swap(false, Ordering::SeqCst);
        let previous = match link {
            Some(_) if restarted => None,
            None => None,
            Some(link) => {
                let index: usize = link
                    .strip_prefix(LINK_PREFIX)
                    .and_then(|n| n.parse().ok())
                    .ok_or(InvalidInput::Cursor)?;
                Some(
                    lock(&self.snapshots)
                        .get(index)
                        .cloned()
                        .ok_or(InvalidInput::Cursor)?,
                )
            }
        };
        let changes =
            match &previous {
                None => current.values().map(change_of).collect(),
                Some(before) => {
                    let mut changes: Vec<UserChange> = current
                        .values()
                        .filter(|u| before.get(&u.id) != Some(*u))
                        .map(change_of)
                        .collect();
                    changes.extend(before.keys().filter(|id| !current.contains_key(*id)).map(
                        |id| UserChange {
                            id: id.clone(),
                            removed: true,
                            display_name: None,
                            given_name: None,
                            surname: None,
                            job_title: None,
                            department: None,
                            account_enabled: None,
                            last_password_change: None,
                        },
                    ));
                    changes
                }
            };
        let mut snapshots = lock(&self.snapshots);
        snapshots.push(current);
        let next = DeltaLink::Done(format!("{LINK_PREFIX}{}", snapshots.len() - 1));
        Ok(UserDeltaPage {
            changes,
            next,
            restarted,
        })
    }
}

/// Reconcile cursors in memory.
#[derive(Debug, Default)]
pub struct FakeReconcileCursors {
    links: Mutex<HashMap<(TenantId, DeltaStream), String>>,
    puts: AtomicU64,
}

impl FakeReconcileCursors {
    /// No cursor saved.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times a cursor was saved.
    #[must_use]
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }
}

impl ReconcileCursors for FakeReconcileCursors {
    async fn get(&self, tenant: &TenantId, stream: DeltaStream) -> Result<Option<String>> {
        Ok(lock(&self.links).get(&(tenant.clone(), stream)).cloned())
    }

    async fn put(&self, tenant: &TenantId, stream: DeltaStream, link: &str) -> Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        lock(&self.links).insert((tenant.clone(), stream), link.to_owned());
        Ok(())
    }
}

/// Group delta rounds scripted by the test: each call serves the next queued round (one page),
/// or an empty round when none is queued. Links count the rounds served.
#[derive(Debug, Default)]
pub struct FakeGroupDeltas {
    rounds: Mutex<VecDeque<Vec<GroupMembershipChange>>>,
    served: AtomicU64,
}

impl FakeGroupDeltas {
    /// No rounds queued.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a round reporting `changes`.
    pub fn push_round(&self, changes: Vec<GroupMembershipChange>) {
        lock(&self.rounds).push_back(changes);
    }

    /// Rounds served so far.
    #[must_use]
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

impl GroupDeltas for FakeGroupDeltas {
    async fn groups_delta(
        &self,
        _tenant: &TenantId,
        _link: Option<&str>,
    ) -> Result<GroupDeltaPage> {
        let n = self.served.fetch_add(1, Ordering::SeqCst);
        let changes = lock(&self.rounds).pop_front().unwrap_or_default();
        Ok(GroupDeltaPage {
            changes,
            next: DeltaLink::Done(format!("fake-group-delta:{n}")),
            restarted: false,
        })
    }
}
