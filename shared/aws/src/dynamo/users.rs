//! Directory users (unique by email through `EMAIL#` claim items written in the same
//! transaction), in the users table (groups: [`super::groups`]).
//!
//! Direct reports (R-ATTR-1): a user with a `managerId` has a report item, `pk` =
//! `REPORT#<manager id>`, `sk` = `USER#<user id>`, written (and the previous manager's deleted)
//! in the same transaction as the user, so [`UserStore::reports_of`] is one `Query` on
//! `REPORT#<manager id>` plus one `GetItem` per report, keeping the users that still name that
//! manager. Users stored before `managerId` existed load with none and need no item.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use m365_engine::error::{Conflict, Entity, Error};
use m365_engine::model::{DirectoryUser, Email, Page, PageRequest, UserId};
use m365_engine::ports::UserStore;

use super::{
    Condition, Item, Table, VERSION, build_error, from_doc, listed_item, n, number, pk_sk_key, s,
    send_transaction, string,
};
use crate::schema::{PK, SK};

const USER: &str = "USER";
const EMAIL: &str = "EMAIL";
const USER_ID: &str = "user_id";
const REPORT: &str = "REPORT";
/// Report items read per `Query` request.
const REPORT_QUERY_PAGE: i32 = 100;

fn report_pk(manager: &UserId) -> String {
    format!("{REPORT}#{manager}")
}
/// The user's email, kept beside the document for diagnostics.
const EMAIL_ATTRIBUTE: &str = "email";

fn user_pk(id: &UserId) -> String {
    format!("USER#{id}")
}

fn email_pk(email: &Email) -> String {
    format!("EMAIL#{email}")
}

/// An email claim that is free or already held by `user`.
fn free_or_held_by(user: &UserId) -> Condition {
    Condition::new("attribute_not_exists(#pk) OR #user_id = :me")
        .name("#pk", PK)
        .name("#user_id", USER_ID)
        .value(":me", s(user.as_str()))
}

/// [`UserStore`] on the users table.
#[derive(Debug, Clone)]
pub struct DynamoUsers {
    table: Table,
}

impl DynamoUsers {
    /// A store on `table` (a table created from [`crate::schema::USERS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table),
        }
    }

    fn user_item(user: &DirectoryUser) -> Result<Item, Error> {
        let mut item = listed_item(USER, user.id.as_str(), user.version, user)?;
        item.insert(EMAIL_ATTRIBUTE.to_owned(), s(user.email.as_str()));
        Ok(item)
    }

    fn claim_put(&self, user: &DirectoryUser) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table.name)
            .item(PK, s(email_pk(&user.email)))
            .item(SK, s(EMAIL))
            .item(USER_ID, s(user.id.as_str()));
        let put = with_condition!(put, &free_or_held_by(&user.id));
        Ok(TransactWriteItem::builder()
            .put(put.build().map_err(build_error)?)
            .build())
    }

    /// The report item of `user` under its manager `manager` (module docs).
    fn report_put(&self, user: &UserId, manager: &UserId) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table.name)
            .item(PK, s(report_pk(manager)))
            .item(SK, s(user_pk(user)))
            .item(USER_ID, s(user.as_str()))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// The delete of `user`'s report item under `manager`.
    fn report_delete(&self, user: &UserId, manager: &UserId) -> Result<TransactWriteItem, Error> {
        let delete = Delete::builder()
            .table_name(&self.table.name)
            .set_key(Some(pk_sk_key(report_pk(manager), user_pk(user))))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Why a transactional user write was refused: by the listed reasons when the service
    /// gives them, else by reading the current state.
    /// The items of one user write, in the order [`Self::explain`] reads the cancellation
    /// reasons of: the user's put, its email claim, then the report index items when the manager
    /// changes from `old_manager` (R-ATTR-1: the previous manager's item goes, the new one's comes).
    fn user_items(
        &self,
        put_user: Put,
        stored: &DirectoryUser,
        old_manager: Option<&UserId>,
    ) -> Result<Vec<TransactWriteItem>, Error> {
        let mut items = vec![
            TransactWriteItem::builder().put(put_user).build(),
            self.claim_put(stored)?,
        ];
        if old_manager != stored.manager_id.as_ref() {
            if let Some(old) = old_manager {
                items.push(self.report_delete(&stored.id, old)?);
            }
            if let Some(new) = &stored.manager_id {
                items.push(self.report_put(&stored.id, new)?);
            }
        }
        Ok(items)
    }

    /// Sends `items` as one transaction: `None` when committed, else which conditions failed.
    async fn write(&self, items: Vec<TransactWriteItem>) -> Result<Option<Vec<bool>>, Error> {
        send_transaction(
            self.table
                .client
                .transact_write_items()
                .set_transact_items(Some(items)),
        )
        .await
    }

    async fn explain(
        &self,
        reasons: &[bool],
        user: &DirectoryUser,
        expected_version: Option<u64>,
    ) -> Result<Error, Error> {
        let stored = self.table.get_item(user_pk(&user.id), USER).await?;
        let user_failed = reasons.first().copied().unwrap_or(false);
        let claim_failed = reasons.get(1).copied().unwrap_or(false);
        let stored_version = stored
            .as_ref()
            .map(|item| number(item, VERSION))
            .transpose()?;
        let user_condition_broken = match expected_version {
            None => stored.is_some(),
            Some(expected) => stored_version != i64::try_from(expected).ok(),
        };
        if user_failed || (reasons.is_empty() && user_condition_broken) {
            return Ok(match expected_version {
                None => Error::Conflict(Conflict::AlreadyExists {
                    entity: Entity::User,
                    id: user.id.to_string(),
                }),
                Some(_) if stored.is_none() => Error::not_found(Entity::User, &user.id),
                Some(expected) => Error::stale(Entity::User, expected),
            });
        }
        if claim_failed || reasons.is_empty() {
            return Ok(Error::Conflict(Conflict::EmailExists {
                email: user.email.clone(),
            }));
        }
        Ok(Error::Infrastructure {
            component: "dynamodb",
            source: "transaction cancelled without a failed condition".into(),
        })
    }
}

impl UserStore for DynamoUsers {
    async fn create(&self, user: &DirectoryUser) -> Result<DirectoryUser, Error> {
        let mut stored = user.clone();
        stored.version = 1;
        let put_user = Put::builder()
            .table_name(&self.table.name)
            .set_item(Some(Self::user_item(&stored)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        let items = self.user_items(put_user, &stored, None)?;
        match self.write(items).await? {
            None => Ok(stored),
            Some(reasons) => Err(self.explain(&reasons, &stored, None).await?),
        }
    }

    async fn replace(
        &self,
        user: &DirectoryUser,
        expected_version: u64,
    ) -> Result<DirectoryUser, Error> {
        let Some(current) = self.table.get_item(user_pk(&user.id), USER).await? else {
            return Err(Error::not_found(Entity::User, &user.id));
        };
        let current: DirectoryUser = from_doc(&current)?;
        let mut stored = user.clone();
        stored.version = expected_version + 1;
        let put_user = Put::builder()
            .table_name(&self.table.name)
            .set_item(Some(Self::user_item(&stored)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .map_err(build_error)?;
        let mut items = self.user_items(put_user, &stored, current.manager_id.as_ref())?;
        if current.email != stored.email {
            // Free the old address, but only if this user still holds it.
            let release = Delete::builder()
                .table_name(&self.table.name)
                .set_key(Some(pk_sk_key(email_pk(&current.email), EMAIL)));
            let release = with_condition!(release, &free_or_held_by(&user.id))
                .build()
                .map_err(build_error)?;
            items.push(TransactWriteItem::builder().delete(release).build());
        }
        match self.write(items).await? {
            None => Ok(stored),
            Some(reasons) => Err(self
                .explain(&reasons, &stored, Some(expected_version))
                .await?),
        }
    }

    async fn get(&self, id: &UserId) -> Result<Option<DirectoryUser>, Error> {
        self.table.get_entity(USER, id.as_str()).await
    }

    async fn get_by_email(&self, email: &Email) -> Result<Option<DirectoryUser>, Error> {
        let Some(claim) = self.table.get_item(email_pk(email), EMAIL).await? else {
            return Ok(None);
        };
        let id = UserId::parse(string(&claim, USER_ID)?)?;
        let user = self.get(&id).await?;
        // A claim and its user are written together; only a user holding this email counts.
        Ok(user.filter(|user| &user.email == email))
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<DirectoryUser>, Error> {
        self.table.list(USER, "users", page).await
    }

    async fn reports_of(&self, manager: &UserId) -> Result<Vec<DirectoryUser>, Error> {
        let ids = self
            .table
            .partition_strings(report_pk(manager), USER_ID, REPORT_QUERY_PAGE)
            .await?;
        // Sort keys are `USER#<id>`: the ids come in id order.
        let mut reports = Vec::with_capacity(ids.len());
        for id in ids {
            // Only a user that still names this manager counts.
            if let Some(user) = self.get(&UserId::parse(id)?).await?
                && user.manager_id.as_ref() == Some(manager)
            {
                reports.push(user);
            }
        }
        Ok(reports)
    }
}
