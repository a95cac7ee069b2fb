//! In-memory fakes of the reconcile ports: [`FakeUserDeltas`] derives delta rounds from a
//! [`FakeDirectory`] by comparing its users with the snapshot a link names, and
//! [`FakeReconcileCursors`] keeps each tenant's links in a map, and [`FakeGroupDeltas`] serves
//! group rounds a test scripts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::{FakeDirectory, lock};
use crate::error::{FieldProblem, InvalidInput, Result};
use crate::model::{M365ObjectId, M365User, PageRequest, TenantId};
use crate::ports::{
    DeltaLink, DeltaStream, Directory, FullListing, GroupDeltaPage, GroupDeltas,
    GroupMembershipChange, ReconcileCursors, SEEN_PART_MAX, UserChange, UserDeltaPage, UserDeltas,
};

const LINK_PREFIX: &str = "fake-delta:";

type Snapshot = BTreeMap<M365ObjectId, M365User>;
/// Each user's manager when a snapshot was taken (R-ATTR-1).
type Managers = BTreeMap<M365ObjectId, M365ObjectId>;

/// Delta rounds over a [`FakeDirectory`]: a link names the snapshot taken when it was issued, and
/// the next round reports the users that differ from it (new or changed, with every attribute)
/// and those gone since (removed). Every round is one page, unless [`FakeUserDeltas::with_page_size`]
/// splits rounds into pages (the round is computed when its first page is read).
#[derive(Debug)]
pub struct FakeUserDeltas {
    directory: FakeDirectory,
    snapshots: Mutex<Vec<Snapshot>>,
    /// The managers of each snapshot (same index), for `manager@delta` (R-ATTR-1).
    manager_snapshots: Mutex<Vec<Managers>>,
    /// Rounds served in several pages: their items and the snapshot their final link names.
    rounds: Mutex<Vec<(Vec<UserChange>, usize)>>,
    page_size: Option<usize>,
    pages: AtomicU64,
    lost: AtomicBool,
}

const MORE_PREFIX: &str = "fake-delta-more:";

/// A change of `id` that reports no attribute: its removal when `removed`, else only that it
/// changed.
pub(crate) fn bare_change(id: &M365ObjectId, removed: bool) -> UserChange {
    UserChange {
        id: id.clone(),
        removed,
        display_name: None,
        given_name: None,
        surname: None,
        job_title: None,
        department: None,
        attributes: crate::model::AttributesPatch::default(),
        account_enabled: None,
        last_password_change: None,
        manager: None,
    }
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
        attributes: crate::model::AttributesPatch::every(&user.attributes),
        account_enabled: Some(user.account_enabled),
        last_password_change: user.last_password_change,
        manager: None,
    }
}

/// [`change_of`] reporting `manager@delta` as `manager` (R-ATTR-1): `Some(Some(m))` assigned,
/// `Some(None)` removed, `None` not reported (the emulator's shape).
fn change_with_manager(user: &M365User, manager: Option<Option<M365ObjectId>>) -> UserChange {
    UserChange {
        manager,
        ..change_of(user)
    }
}

impl FakeUserDeltas {
    /// Deltas of `directory` (a handle on the same M365).
    #[must_use]
    pub fn new(directory: &FakeDirectory) -> Self {
        Self {
            directory: directory.clone(),
            snapshots: Mutex::new(Vec::new()),
            manager_snapshots: Mutex::new(Vec::new()),
            rounds: Mutex::new(Vec::new()),
            page_size: None,
            pages: AtomicU64::new(0),
            lost: AtomicBool::new(false),
        }
    }

    /// Deltas of `directory` whose rounds come in pages of at most `size` items.
    #[must_use]
    pub fn with_page_size(directory: &FakeDirectory, size: usize) -> Self {
        Self {
            page_size: Some(size.max(1)),
            ..Self::new(directory)
        }
    }

    /// Page `offset / page size` of multi-page round `round`.
    fn page_of(&self, round: usize, offset: usize, restarted: bool) -> Result<UserDeltaPage> {
        let rounds = lock(&self.rounds);
        let (items, snapshot) = rounds.get(round).ok_or(InvalidInput::Cursor)?;
        let size = self.page_size.unwrap_or(usize::MAX);
        let end = offset.saturating_add(size).min(items.len());
        let changes = items.get(offset..end).ok_or(InvalidInput::Cursor)?.to_vec();
        let next = if end < items.len() {
            DeltaLink::More(format!("{MORE_PREFIX}{round}:{end}"))
        } else {
            DeltaLink::Done(format!("{LINK_PREFIX}{snapshot}"))
        };
        Ok(UserDeltaPage {
            changes,
            next,
            restarted,
        })
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

impl UserDeltas for FakeUserDeltas {
    async fn users_delta(&self, tenant: &TenantId, link: Option<&str>) -> Result<UserDeltaPage> {
        self.pages.fetch_add(1, Ordering::SeqCst);
        let restarted = link.is_some() && self.lost.swap(false, Ordering::SeqCst);
        if !restarted && let Some(more) = link.and_then(|l| l.strip_prefix(MORE_PREFIX)) {
            let (round, offset) = more
                .split_once(':')
                .and_then(|(r, o)| Some((r.parse().ok()?, o.parse().ok()?)))
                .ok_or(InvalidInput::Cursor)?;
            return self.page_of(round, offset, false);
        }
        let current = self.listing(tenant).await?;
        let managers = self.directory.managers(tenant);
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
        // The managers of the snapshot the link names (empty for a full listing).
        let managers_before = match (link, &previous) {
            (Some(link), Some(_)) => link
                .strip_prefix(LINK_PREFIX)
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|i| lock(&self.manager_snapshots).get(i).cloned())
                .unwrap_or_default(),
            _ => Managers::new(),
        };
        let changes = match &previous {
            None => current
                .values()
                .map(|u| change_with_manager(u, managers.get(&u.id).cloned().map(Some)))
                .collect(),
            Some(before) => {
                let mut changes: Vec<UserChange> = current
                    .values()
                    .filter(|u| {
                        before.get(&u.id) != Some(*u)
                            || managers.get(&u.id) != managers_before.get(&u.id)
                    })
                    .map(|u| {
                        let now = managers.get(&u.id);
                        let reported = (now != managers_before.get(&u.id)).then(|| now.cloned());
                        change_with_manager(u, reported)
                    })
                    .collect();
                changes.extend(
                    before
                        .keys()
                        .filter(|id| !current.contains_key(*id))
                        .map(|id| bare_change(id, true)),
                );
                changes
            }
        };
        let snapshot = {
            let mut snapshots = lock(&self.snapshots);
            snapshots.push(current);
            lock(&self.manager_snapshots).push(managers);
            snapshots.len() - 1
        };
        if self.page_size.is_some_and(|size| changes.len() > size) {
            let round = {
                let mut rounds = lock(&self.rounds);
                rounds.push((changes, snapshot));
                rounds.len() - 1
            };
            return self.page_of(round, 0, restarted);
        }
        Ok(UserDeltaPage {
            changes,
            next: DeltaLink::Done(format!("{LINK_PREFIX}{snapshot}")),
            restarted,
        })
    }
}

/// Reconcile cursors in memory (with the full listings under way and their seen ids).
#[derive(Debug, Default)]
pub struct FakeReconcileCursors {
    links: Mutex<HashMap<(TenantId, DeltaStream), String>>,
    puts: AtomicU64,
    listings: Mutex<HashMap<TenantId, FullListing>>,
    seen: Mutex<HashMap<SeenKey, Vec<M365ObjectId>>>,
}

/// A saved part of a full listing's seen ids: tenant, listing start, part number.
type SeenKey = (TenantId, DateTime<Utc>, u32);

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

    /// Seen-id parts stored (of every listing, finished or not).
    #[must_use]
    pub fn seen_parts(&self) -> usize {
        lock(&self.seen).len()
    }

    /// Loses every stored seen-id part (as if they had expired).
    pub fn lose_seen_parts(&self) {
        lock(&self.seen).clear();
    }
}

impl ReconcileCursors for FakeReconcileCursors {
    async fn get(&self, tenant: &TenantId, stream: DeltaStream) -> Result<Option<String>> {
        Ok(lock(&self.links).get(&(tenant.clone(), stream)).cloned())
    }

    async fn put(&self, tenant: &TenantId, stream: DeltaStream, link: &str) -> Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        lock(&self.links).insert((tenant.clone(), stream), link.to_owned());
        if stream == DeltaStream::Users {
            lock(&self.listings).remove(tenant);
        }
        Ok(())
    }

    async fn full_listing(&self, tenant: &TenantId) -> Result<Option<FullListing>> {
        Ok(lock(&self.listings).get(tenant).copied())
    }

    async fn put_in_full_listing(
        &self,
        tenant: &TenantId,
        link: &str,
        listing: &FullListing,
    ) -> Result<()> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        lock(&self.links).insert((tenant.clone(), DeltaStream::Users), link.to_owned());
        lock(&self.listings).insert(tenant.clone(), *listing);
        Ok(())
    }

    async fn put_seen(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
        part: u32,
        ids: &[M365ObjectId],
    ) -> Result<()> {
        if ids.len() > SEEN_PART_MAX {
            return Err(InvalidInput::Field {
                field: "ids",
                problem: FieldProblem::TooLong { max: SEEN_PART_MAX },
            }
            .into());
        }
        lock(&self.seen).insert((tenant.clone(), listing.started_at, part), ids.to_vec());
        Ok(())
    }

    async fn seen(
        &self,
        tenant: &TenantId,
        listing: &FullListing,
    ) -> Result<Option<Vec<M365ObjectId>>> {
        let seen = lock(&self.seen);
        let mut all = Vec::new();
        for part in 0..listing.parts {
            match seen.get(&(tenant.clone(), listing.started_at, part)) {
                Some(ids) => all.extend(ids.iter().cloned()),
                None => return Ok(None),
            }
        }
        Ok(Some(all))
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
