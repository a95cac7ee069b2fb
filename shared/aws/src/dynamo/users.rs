//! Directory users (unique by email through `EMAIL#` claim items written in the same
//! transaction) and groups, in the users table.

use crate::OnHeap;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};
use m365_engine::error::{Conflict, Entity, Error};
use m365_engine::model::{DirectoryUser, Email, Group, GroupId, Page, PageRequest, UserId};
use m365_engine::ports::{GroupStore, UserStore};

use super::{
    DOC, Item, VERSION, doc, dynamo_error, failed_conditions, from_doc, is_conditional_failure, n,
    number, query_page, s, string,
};
use crate::schema::{LIST_INDEX, LIST_PK, LIST_SK, PK, SK};

const USER: &str = "USER";
const EMAIL: &str = "EMAIL";
const GROUP: &str = "GROUP";
const USER_ID: &str = "user_id";
/// The user's email, kept beside the document for diagnostics.
const EMAIL_ATTRIBUTE: &str = "email";

fn user_pk(id: &UserId) -> String {
    format!("USER#{id}")
}

fn email_pk(email: &Email) -> String {
    format!("EMAIL#{email}")
}

fn group_pk(id: &GroupId) -> String {
    format!("GROUP#{id}")
}

const LIST_KEYS: [&str; 4] = [PK, SK, LIST_PK, LIST_SK];

fn bad_request(error: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Infrastructure {
        component: "dynamodb",
        source: Box::new(error),
    }
}

/// [`UserStore`] on the users table.
#[derive(Debug, Clone)]
pub struct DynamoUsers {
    client: Client,
    table: String,
}

impl DynamoUsers {
    /// A store on `table` (a table created from [`crate::schema::USERS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn user_item(&self, user: &DirectoryUser) -> Result<Item, Error> {
        Ok(Item::from([
            (PK.to_owned(), s(user_pk(&user.id))),
            (SK.to_owned(), s(USER)),
            (LIST_PK.to_owned(), s(USER)),
            (LIST_SK.to_owned(), s(user.id.as_str())),
            (EMAIL_ATTRIBUTE.to_owned(), s(user.email.as_str())),
            (VERSION.to_owned(), n(user.version)),
            (DOC.to_owned(), doc(user)?),
        ]))
    }

    fn claim_put(&self, user: &DirectoryUser) -> Result<TransactWriteItem, Error> {
        let put = Put::builder()
            .table_name(&self.table)
            .item(PK, s(email_pk(&user.email)))
            .item(SK, s(EMAIL))
            .item(USER_ID, s(user.id.as_str()))
            .condition_expression("attribute_not_exists(#pk) OR #user_id = :me")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#user_id", USER_ID)
            .expression_attribute_values(":me", s(user.id.as_str()))
            .build()
            .map_err(bad_request)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(output.item)
    }

    /// Why a transactional user write was refused: by the listed reasons when the service
    /// gives them, else by reading the current state.
    async fn explain(
        &self,
        reasons: &[bool],
        user: &DirectoryUser,
        expected_version: Option<u64>,
    ) -> Result<Error, Error> {
        let stored = self.get_item(user_pk(&user.id), USER).await?;
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
            .table_name(&self.table)
            .set_item(Some(self.user_item(&stored)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(bad_request)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_user).build())
            .transact_items(self.claim_put(&stored)?)
            .send()
            .on_heap()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(error) => match failed_conditions(&error) {
                Some(reasons) => Err(self.explain(&reasons, &stored, None).await?),
                None => Err(dynamo_error(error)),
            },
        }
    }

    async fn replace(
        &self,
        user: &DirectoryUser,
        expected_version: u64,
    ) -> Result<DirectoryUser, Error> {
        let Some(current) = self.get_item(user_pk(&user.id), USER).await? else {
            return Err(Error::not_found(Entity::User, &user.id));
        };
        let current: DirectoryUser = from_doc(&current)?;
        let mut stored = user.clone();
        stored.version = expected_version + 1;
        let put_user = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.user_item(&stored)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .map_err(bad_request)?;
        let mut transaction = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_user).build())
            .transact_items(self.claim_put(&stored)?);
        if current.email != stored.email {
            // Free the old address, but only if this user still holds it.
            let release = Delete::builder()
                .table_name(&self.table)
                .key(PK, s(email_pk(&current.email)))
                .key(SK, s(EMAIL))
                .condition_expression("attribute_not_exists(#pk) OR #user_id = :me")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#user_id", USER_ID)
                .expression_attribute_values(":me", s(user.id.as_str()))
                .build()
                .map_err(bad_request)?;
            transaction =
                transaction.transact_items(TransactWriteItem::builder().delete(release).build());
        }
        match transaction.send().on_heap().await {
            Ok(_) => Ok(stored),
            Err(error) => match failed_conditions(&error) {
                Some(reasons) => Err(self
                    .explain(&reasons, &stored, Some(expected_version))
                    .await?),
                None => Err(dynamo_error(error)),
            },
        }
    }

    async fn get(&self, id: &UserId) -> Result<Option<DirectoryUser>, Error> {
        self.get_item(user_pk(id), USER)
            .await?
            .map(|item| from_doc(&item))
            .transpose()
    }

    async fn get_by_email(&self, email: &Email) -> Result<Option<DirectoryUser>, Error> {
        let Some(claim) = self.get_item(email_pk(email), EMAIL).await? else {
            return Ok(None);
        };
        let id = UserId::parse(string(&claim, USER_ID)?)?;
        let user = self.get(&id).await?;
        // A claim and its user are written together; only a user holding this email counts.
        Ok(user.filter(|user| &user.email == email))
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<DirectoryUser>, Error> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LIST_INDEX.name)
            .key_condition_expression("#k = :kind")
            .expression_attribute_names("#k", LIST_INDEX.partition_key)
            .expression_attribute_values(":kind", s(USER));
        query_page(query, page, "users", &LIST_KEYS).await
    }
}

/// [`GroupStore`] on the users table.
#[derive(Debug, Clone)]
pub struct DynamoGroups {
    client: Client,
    table: String,
}

impl DynamoGroups {
    /// A store on `table` (a table created from [`crate::schema::USERS`]).
    #[must_use]
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn item(group: &Group) -> Result<Item, Error> {
        Ok(Item::from([
            (PK.to_owned(), s(group_pk(&group.id))),
            (SK.to_owned(), s(GROUP)),
            (LIST_PK.to_owned(), s(GROUP)),
            (LIST_SK.to_owned(), s(group.id.as_str())),
            (VERSION.to_owned(), n(group.version)),
            (DOC.to_owned(), doc(group)?),
        ]))
    }

    async fn exists(&self, id: &GroupId) -> Result<bool, Error> {
        Ok(self.get(id).await?.is_some())
    }
}

impl GroupStore for DynamoGroups {
    async fn create(&self, group: &Group) -> Result<Group, Error> {
        let mut stored = group.clone();
        stored.version = 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(&stored)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .on_heap()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(error) if is_conditional_failure(&error) => {
                Err(Error::Conflict(Conflict::AlreadyExists {
                    entity: Entity::Group,
                    id: group.id.to_string(),
                }))
            }
            Err(error) => Err(dynamo_error(error)),
        }
    }

    async fn replace(&self, group: &Group, expected_version: u64) -> Result<Group, Error> {
        let mut stored = group.clone();
        stored.version = expected_version + 1;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(&stored)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .on_heap()
            .await;
        match result {
            Ok(_) => Ok(stored),
            Err(error) if is_conditional_failure(&error) => {
                if self.exists(&group.id).await? {
                    Err(Error::stale(Entity::Group, expected_version))
                } else {
                    Err(Error::not_found(Entity::Group, &group.id))
                }
            }
            Err(error) => Err(dynamo_error(error)),
        }
    }

    async fn get(&self, id: &GroupId) -> Result<Option<Group>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(group_pk(id)))
            .key(SK, s(GROUP))
            .consistent_read(true)
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        output.item.map(|item| from_doc(&item)).transpose()
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Group>, Error> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(LIST_INDEX.name)
            .key_condition_expression("#k = :kind")
            .expression_attribute_names("#k", LIST_INDEX.partition_key)
            .expression_attribute_values(":kind", s(GROUP));
        query_page(query, page, "groups", &LIST_KEYS).await
    }

    async fn delete(&self, id: &GroupId) -> Result<(), Error> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(group_pk(id)))
            .key(SK, s(GROUP))
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }
}
