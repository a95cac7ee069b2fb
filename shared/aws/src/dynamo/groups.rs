//! Directory groups in the users table, and the member → group items that find a user's groups
//! without listing every group (R-GRP-1: a bound user joins its groups at once, on every bind).
//!
//! Items: the group (`GROUP#<group id>` / `GROUP`, listed on the `list` index like users) and one
//! membership item per member: `pk` = `MEMBER#<user id>`, `sk` = `GROUP#<group id>`, holding
//! `group_id` and `group_version` (the group version whose write put it).
//! [`GroupStore::groups_of_member`] is one `Query` on `MEMBER#<user id>` (paged by DynamoDB, read
//! to the end) and one `GetItem` per group found, keeping the groups whose stored members list
//! the user — the caller needs each group's binding and members anyway.
//!
//! Why items in the table and not a global secondary index: an index key is one value per item,
//! so finding groups by member needs one item per membership either way; items in the table are
//! read strongly consistently (an index is not) and are written in the group's own transaction.
//!
//! Writes: a create or replace puts the membership items of the members it adds and deletes
//! those of the members it removes. When that fits in one `TransactWriteItems` (at most 100
//! items: the group and 99 membership changes — every incremental change in practice) it is one
//! atomic transaction. A larger change (a group created with hundreds of members; the API allows
//! 1,000) cannot be atomic in DynamoDB, so it is written in an order that keeps the membership
//! items a superset of the true memberships at every moment: first the added members' items, in
//! transactions each conditional on the group still being as read (a writer that lost a race
//! stops adding); then the group; then the removed members' items, each deleted only if no
//! later write put it again (`group_version <= :written`). An item left over by an interrupted or
//! refused write names a group that does not list the user: the read drops it by checking the
//! group. Leftovers are harmless and not cleaned up. A group deleted and re-created under the same
//! id while a slow large write of the old one still deletes its removed members' items could lose
//! an item of the new group (versions restart at 1); no route deletes groups today.
//!
//! Items written before membership items existed: the product is pre-release, so there is no
//! migration. A group stored without them (no `members_indexed` mark) gets items for all its
//! members at its next create or replace (any membership change, binding or sync writes it).
//! Until then its members do not find it: a bind of such a member joins the M365 group at the
//! next reconcile (`members_now_bound`), as before the follow-up existed.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem};
use m365_engine::error::{Conflict, Entity, Error, UnavailableReason};
use m365_engine::model::{Group, GroupId, Page, PageRequest, UserId};
use m365_engine::ports::GroupStore;

use super::{
    Condition, Item, Table, VERSION, build_error, from_doc, listed_item, n, number, pk_sk_key, s,
};
use crate::schema::{PK, SK};

const GROUP: &str = "GROUP";
const MEMBER: &str = "MEMBER";
const GROUP_ID: &str = "group_id";
const GROUP_VERSION: &str = "group_version";
/// On a group item: its members have membership items.
const MEMBERS_INDEXED: &str = "members_indexed";

/// Most items one `TransactWriteItems` may write (DynamoDB's limit).
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Membership items read per `Query` request.
const MEMBER_QUERY_PAGE: i32 = 100;
/// Times a delete re-reads a group that changed under it.
const DELETE_ATTEMPTS: u32 = 5;

fn group_pk(id: &GroupId) -> String {
    format!("{GROUP}#{id}")
}

fn member_pk(member: &UserId) -> String {
    format!("{MEMBER}#{member}")
}

/// What a write expects of the stored group.
#[derive(Debug, Clone, Copy)]
enum Expected {
    /// A create: no group with the id.
    Absent,
    /// A replace or delete: the group at this version.
    Version(u64),
}

/// [`GroupStore`] on the users table.
#[derive(Debug, Clone)]
pub struct DynamoGroups {
    table: Table,
}

impl DynamoGroups {
    /// A store on `table` (a table created from [`crate::schema::USERS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    fn item(group: &Group) -> Result<Item, Error> {
        let mut item = listed_item(GROUP, group.id.as_str(), group.version, group)?;
        item.insert(MEMBERS_INDEXED.to_owned(), AttributeValue::Bool(true));
        Ok(item)
    }

    fn is_indexed(item: &Item) -> bool {
        matches!(item.get(MEMBERS_INDEXED), Some(AttributeValue::Bool(true)))
    }

    /// The condition a write puts on the stored group.
    fn condition(expected: Expected) -> Condition {
        match expected {
            Expected::Absent => Condition::absent(),
            Expected::Version(v) => Condition::version(v),
        }
    }

    /// The group write of a transaction, conditional on `expected`.
    fn group_put(&self, group: &Group, expected: Expected) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table.name)
            .set_item(Some(Self::item(group)?));
        let put = with_condition!(put, &Self::condition(expected));
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_error)?)
            .build())
    }

    /// A transaction item that only checks the group is still as `expected`.
    fn group_check(&self, id: &GroupId, expected: Expected) -> Result<TransactWriteItem, Error> {
        let check = ConditionCheck::builder()
            .table_name(&self.table.name)
            .set_key(Some(pk_sk_key(group_pk(id), GROUP)));
        let check = with_condition!(check, &Self::condition(expected));
        Ok(TransactWriteItem::builder()
            .condition_check(check.build().map_err(build_error)?)
            .build())
    }

    /// The delete of `pk`/`sk` in a transaction, under `condition` when given.
    fn delete(&self, key: Item, condition: Option<&Condition>) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table.name)
            .set_key(Some(key));
        let delete = match condition {
            Some(condition) => with_condition!(delete, condition),
            None => delete,
        };
        Ok(TransactWriteItem::builder()
            .delete(delete.build().map_err(build_error)?)
            .build())
    }

    /// The delete of group `id` at `version` in a transaction.
    fn group_delete(&self, id: &GroupId, version: u64) -> Result<TransactWriteItem, Error> {
        self.delete(
            pk_sk_key(group_pk(id), GROUP),
            Some(&Condition::version(version)),
        )
    }

    fn member_put(&self, member: &UserId, group: &Group) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table.name)
            .item(PK, s(member_pk(member)))
            .item(SK, s(group_pk(&group.id)))
            .item(GROUP_ID, s(group.id.as_str()))
            .item(GROUP_VERSION, n(group.version))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The condition on deleting a removed member's item: no write after the group's version
    /// `written` put it again.
    fn not_rewritten(written: u64) -> Condition {
        Condition::new("#gv <= :written")
            .name("#gv", GROUP_VERSION)
            .value(":written", n(written))
    }

    /// The delete of `member`'s item of group `id` in a transaction, under `condition`.
    fn member_delete(
        &self,
        member: &UserId,
        id: &GroupId,
        condition: Option<&Condition>,
    ) -> Result<TransactWriteItem, Error> {
        self.delete(pk_sk_key(member_pk(member), group_pk(id)), condition)
    }

    /// Why a write whose group condition failed was refused.
    async fn refused(&self, id: &GroupId, expected: Expected) -> Error {
        match expected {
            Expected::Absent => Error::Conflict(Conflict::AlreadyExists {
                entity: Entity::Group,
                id: id.to_string(),
            }),
            Expected::Version(v) => {
                self.table
                    .refusal(Entity::Group, GROUP, id.as_str(), v)
                    .await
            }
        }
    }

    /// Writes `group` (its new version set) if the stored one is as `expected`, with the
    /// membership items of `added` and without those of `removed` (module docs: one transaction
    /// when it fits, else in superset-keeping order).
    async fn write(
        &self,
        group: &Group,
        expected: Expected,
        added: &[&UserId],
        removed: &[&UserId],
    ) -> Result<(), Error> {
        if added.len() + removed.len() < MAX_TRANSACTION_ITEMS {
            let mut items = vec![self.group_put(group, expected)?];
            for member in added {
                items.push(self.member_put(member, group)?);
            }
            for member in removed {
                items.push(self.member_delete(member, &group.id, None)?);
            }
            return if self.table.transact(items).await? {
                Ok(())
            } else {
                Err(self.refused(&group.id, expected).await)
            };
        }
        for chunk in added.chunks(MAX_TRANSACTION_ITEMS - 1) {
            let mut items = vec![self.group_check(&group.id, expected)?];
            for member in chunk {
                items.push(self.member_put(member, group)?);
            }
            if !self.table.transact(items).await? {
                return Err(self.refused(&group.id, expected).await);
            }
        }
        if !self
            .table
            .transact(vec![self.group_put(group, expected)?])
            .await?
        {
            return Err(self.refused(&group.id, expected).await);
        }
        self.delete_members(removed, &group.id, group.version).await;
        Ok(())
    }

    /// Deletes the membership items of `members` in group `id` that no write after version
    /// `written` put again. The group is written already, so a failure here only leaves
    /// leftovers the read drops: it is logged, not returned.
    async fn delete_members(&self, members: &[&UserId], id: &GroupId, written: u64) {
        let condition = Self::not_rewritten(written);
        for chunk in members.chunks(MAX_TRANSACTION_ITEMS) {
            let items = chunk
                .iter()
                .map(|m| self.member_delete(m, id, Some(&condition)))
                .collect::<Result<Vec<_>, Error>>();
            let done = match items {
                Ok(items) => self.table.transact(items).await,
                Err(e) => Err(e),
            };
            if matches!(done, Ok(true)) {
                continue;
            }
            // One member was put again since (or the transaction failed): one by one.
            for member in chunk {
                let key = pk_sk_key(member_pk(member), group_pk(id));
                if let Err(e) = self.table.delete_if(key, &condition).await {
                    tracing::warn!(
                        group.id = %id,
                        error.code = e.code(),
                        "a removed member's item of the group is left over (harmless)"
                    );
                }
            }
        }
    }
}

impl GroupStore for DynamoGroups {
    async fn create(&self, group: &Group) -> Result<Group, Error> {
        let mut stored = group.clone();
        stored.version = 1;
        let added: Vec<&UserId> = stored.members.iter().collect();
        self.write(&stored, Expected::Absent, &added, &[]).await?;
        Ok(stored)
    }

    async fn replace(&self, group: &Group, expected_version: u64) -> Result<Group, Error> {
        let Some(current) = self.table.get_item(group_pk(&group.id), GROUP).await? else {
            return Err(Error::not_found(Entity::Group, &group.id));
        };
        if i64::try_from(expected_version).ok() != Some(number(&current, VERSION)?) {
            return Err(Error::stale(Entity::Group, expected_version));
        }
        let old: Group = from_doc(&current)?;
        let mut stored = group.clone();
        stored.version = expected_version + 1;
        // A group stored before membership items existed has none: all its members are added.
        let indexed = Self::is_indexed(&current);
        let added: Vec<&UserId> = stored
            .members
            .iter()
            .filter(|m| !indexed || !old.members.contains(*m))
            .collect();
        let removed: Vec<&UserId> = old
            .members
            .iter()
            .filter(|m| indexed && !stored.members.contains(*m))
            .collect();
        let expected = Expected::Version(expected_version);
        if added.is_empty() && removed.is_empty() {
            // Members unchanged (a rename, a binding update): one conditional put.
            self.table
                .replace(
                    Self::item(&stored)?,
                    expected_version,
                    (Entity::Group, GROUP, group.id.as_str()),
                )
                .await?;
        } else {
            self.write(&stored, expected, &added, &removed).await?;
        }
        Ok(stored)
    }

    async fn get(&self, id: &GroupId) -> Result<Option<Group>, Error> {
        self.table.get_entity(GROUP, id.as_str()).await
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Group>, Error> {
        self.table.list(GROUP, "groups", page).await
    }

    async fn groups_of_member(&self, member: &UserId) -> Result<Vec<Group>, Error> {
        let ids = self
            .table
            .partition_strings(member_pk(member), GROUP_ID, MEMBER_QUERY_PAGE)
            .await?
            .into_iter()
            .map(GroupId::parse)
            .collect::<Result<Vec<_>, _>>()?;
        // Sort keys are `GROUP#<id>`: the ids come in id order.
        let mut groups = Vec::with_capacity(ids.len());
        for id in ids {
            // A leftover item names a group that no longer lists the member (module docs).
            if let Some(group) = self.get(&id).await?
                && group.members.contains(member)
            {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    async fn delete(&self, id: &GroupId) -> Result<(), Error> {
        for _ in 0..DELETE_ATTEMPTS {
            let Some(item) = self.table.get_item(group_pk(id), GROUP).await? else {
                return Ok(());
            };
            let group: Group = from_doc(&item)?;
            let members: Vec<&UserId> = if Self::is_indexed(&item) {
                group.members.iter().collect()
            } else {
                Vec::new()
            };
            let mut items = vec![self.group_delete(id, group.version)?];
            if members.len() < MAX_TRANSACTION_ITEMS {
                for member in &members {
                    items.push(self.member_delete(member, id, None)?);
                }
                if self.table.transact(items).await? {
                    return Ok(());
                }
                continue;
            }
            // Too many members for one transaction: the group first, then its items.
            if self.table.transact(items).await? {
                self.delete_members(&members, id, group.version).await;
                return Ok(());
            }
        }
        Err(Error::Unavailable {
            component: "dynamodb",
            reason: UnavailableReason::Service,
            retry_after: None,
            graph_request_id: None,
            source: Some(format!("group {id} kept changing while being deleted").into()),
        })
    }
}
