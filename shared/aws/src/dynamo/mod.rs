//! DynamoDB adapters of the engine's store ports, and what they share: the `Table` with its
//! consistent reads, conditional writes and transactions, item encoding, error
//! mapping and cursor paging. The key design is documented at the crate root.

/// Sets a [`Condition`] on a request or transaction-item builder (they share the three setters
/// but no trait).
macro_rules! with_condition {
    ($builder:expr, $condition:expr) => {{
        let condition: &$crate::dynamo::Condition = $condition;
        $builder
            .set_condition_expression(condition.expression())
            .set_expression_attribute_names(condition.names())
            .set_expression_attribute_values(condition.values())
    }};
}

mod bindings;
mod coordination;
mod cursors;
mod events;
mod groups;
mod held;
mod ledger;
mod licenses;
mod rate_budget;
mod runs;
mod tenants;
mod users;

use crate::OnHeap;
use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use m365_engine::error::{Conflict, Entity, Error, InvalidInput, UnavailableReason};
use m365_engine::model::{Page, PageRequest, PageToken};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::schema::{LIST_INDEX, LIST_PK, LIST_SK, PK, SK};

pub use bindings::DynamoBindings;
pub use coordination::{DynamoLeases, DynamoPendingConsents};
pub use cursors::DynamoReconcileCursors;
pub use events::{DynamoEvents, DynamoFailures};
pub use groups::DynamoGroups;
pub use held::DynamoHeldPlans;
pub use ledger::DynamoLedger;
pub use licenses::DynamoLicenseSettings;
pub use rate_budget::DynamoRateBudget;
pub use runs::DynamoReconcileRuns;
pub use tenants::DynamoTenants;
pub use users::DynamoUsers;

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

const COMPONENT: &str = "dynamodb";

/// Attribute holding the entity as the engine serializes it (JSON).
pub(crate) const DOC: &str = "doc";
/// Attribute holding the optimistic-concurrency version (number).
pub(crate) const VERSION: &str = "version";

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Why an item read back from DynamoDB could not be decoded (a schema or data corruption).
#[derive(Debug, thiserror::Error)]
pub(crate) enum CorruptItem {
    /// An attribute is absent or has an unexpected type.
    #[error("attribute {0} is missing or not of the expected type")]
    Attribute(&'static str),
    /// The entity document does not deserialize.
    #[error("the stored document does not decode")]
    Document(#[source] serde_json::Error),
}

impl From<CorruptItem> for Error {
    fn from(error: CorruptItem) -> Self {
        Error::Infrastructure {
            component: COMPONENT,
            source: Box::new(error),
        }
    }
}

/// Serializes an entity into the `doc` attribute.
pub(crate) fn doc<T: Serialize>(value: &T) -> Result<AttributeValue, Error> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| Error::Infrastructure {
            component: COMPONENT,
            source: Box::new(e),
        })
}

/// Deserializes the `doc` attribute of an item.
pub(crate) fn from_doc<T: DeserializeOwned>(item: &Item) -> Result<T, Error> {
    let text = string(item, DOC)?;
    Ok(serde_json::from_str(text).map_err(CorruptItem::Document)?)
}

/// A string attribute of an item.
pub(crate) fn string<'a>(item: &'a Item, name: &'static str) -> Result<&'a str, CorruptItem> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(CorruptItem::Attribute(name)),
    }
}

/// A numeric attribute of an item.
pub(crate) fn number(item: &Item, name: &'static str) -> Result<i64, CorruptItem> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().map_err(|_| CorruptItem::Attribute(name)),
        _ => Err(CorruptItem::Attribute(name)),
    }
}

/// Maps an SDK failure onto the engine's error model: throttling → `Throttled`; timeouts,
/// connection failures and 5xx → `Unavailable` (both retryable); anything else →
/// `Infrastructure` (permanent). Conditional failures are handled by each caller before this.
pub(crate) fn sdk_error<E, R>(component: &'static str, error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = error.code().unwrap_or_default();
    let throttled = matches!(
        code,
        "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestThrottled"
    );
    if throttled {
        return Error::Throttled {
            retry_after: None,
            graph_request_id: None,
        };
    }
    let reason = match &error {
        SdkError::TimeoutError(_) => Some(UnavailableReason::Timeout),
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Some(UnavailableReason::Service)
        }
        // A transaction cancelled by a concurrent transaction on the same items succeeds when
        // tried again.
        _ if matches!(
            code,
            "InternalServerError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "InternalServiceError"
                | "TransactionCanceledException"
                | "TransactionConflictException"
                | "TransactionInProgressException"
        ) =>
        {
            Some(UnavailableReason::Service)
        }
        _ => None,
    };
    match reason {
        Some(reason) => Error::Unavailable {
            component,
            reason,
            retry_after: None,
            graph_request_id: None,
            source: Some(Box::new(error)),
        },
        None => Error::Infrastructure {
            component,
            source: Box::new(error),
        },
    }
}

/// Sends an SDK request (on the heap, see [`OnHeap`]): `Ok(Some(output))`, `Ok(None)` when the
/// service refused it with one of the `absent` error codes (what the caller reads as "nothing
/// there"), any other failure mapped by [`sdk_error`] for `component`. The request is boxed before
/// the returned future exists, so that future stays small (a plain `async fn` would hold the
/// SDK's future inline as its argument).
pub(crate) fn send_unless<'a, T, E, R>(
    component: &'static str,
    request: impl std::future::Future<Output = Result<T, SdkError<E, R>>> + 'a,
    absent: &'a [&'a str],
) -> impl std::future::Future<Output = Result<Option<T>, Error>> + 'a
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let request = request.on_heap();
    async move {
        match request.await {
            Ok(output) => Ok(Some(output)),
            Err(error) if error.code().is_some_and(|code| absent.contains(&code)) => Ok(None),
            Err(error) => Err(sdk_error(component, error)),
        }
    }
}

/// Maps a DynamoDB failure (see [`sdk_error`]).
pub(crate) fn dynamo_error<E, R>(error: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    sdk_error(COMPONENT, error)
}

/// Whether a single-item write failed its condition.
pub(crate) fn is_conditional_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

/// Sends a transaction: `Ok(None)` when it committed, `Ok(Some(reasons))` when it was cancelled
/// by a failed condition (see [`failed_conditions`]), any other failure as an error.
pub(crate) async fn send_transaction(
    transaction: TransactWriteItemsFluentBuilder,
) -> Result<Option<Vec<bool>>, Error> {
    match transaction.send().on_heap().await {
        Ok(_) => Ok(None),
        Err(error) => match failed_conditions(&error) {
            Some(reasons) => Ok(Some(reasons)),
            None => Err(dynamo_error(error)),
        },
    }
}

/// For a transaction cancelled by a failed condition, which items failed (by position); an
/// empty list means the service gave no reasons. `None` for any other failure — including a
/// cancellation only for a conflict with a concurrent transaction or for throttling, which
/// [`sdk_error`] reports as retryable.
pub(crate) fn failed_conditions<R>(
    error: &SdkError<TransactWriteItemsError, R>,
) -> Option<Vec<bool>> {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            let reasons: Vec<bool> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|reason| reason.code() == Some("ConditionalCheckFailed"))
                .collect();
            (reasons.is_empty() || reasons.contains(&true)).then_some(reasons)
        }
        _ => None,
    }
}

/// A request that could not be built (a mistake in this crate, not in the input).
pub(crate) fn build_error(error: BuildError) -> Error {
    Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(error),
    }
}

/// The key attributes of the items listed on the [`LIST_INDEX`] (table and index keys).
const LIST_KEYS: [&str; 4] = [PK, SK, LIST_PK, LIST_SK];

/// A versioned entity item of a table with a `pk`/`sk` key that is listed by kind on the
/// [`LIST_INDEX`]: `pk` = `<kind>#<id>`, `sk` = `<kind>`, `list_pk` = `<kind>`, `list_sk` = `<id>`.
pub(crate) fn listed_item<T: Serialize>(
    kind: &str,
    id: &str,
    version: u64,
    entity: &T,
) -> Result<Item, Error> {
    Ok(Item::from([
        (PK.to_owned(), s(format!("{kind}#{id}"))),
        (SK.to_owned(), s(kind)),
        (LIST_PK.to_owned(), s(kind)),
        (LIST_SK.to_owned(), s(id)),
        (VERSION.to_owned(), n(version)),
        (DOC.to_owned(), doc(entity)?),
    ]))
}

/// A write condition: a DynamoDB condition expression with its `#name` and `:value` placeholders.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    expression: &'static str,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

impl Condition {
    /// `expression`, with placeholders added by [`Self::name`] and [`Self::value`].
    pub(crate) fn new(expression: &'static str) -> Self {
        Self {
            expression,
            names: Vec::new(),
            values: Vec::new(),
        }
    }

    /// No item with the key yet (`#pk` absent).
    pub(crate) fn absent() -> Self {
        Self::new("attribute_not_exists(#pk)").name("#pk", PK)
    }

    /// The stored `version` is `expected`.
    pub(crate) fn version(expected: u64) -> Self {
        Self::new("#version = :expected")
            .name("#version", VERSION)
            .value(":expected", n(expected))
    }

    /// Binds a `#name` placeholder to an attribute.
    pub(crate) fn name(mut self, placeholder: &'static str, attribute: &'static str) -> Self {
        self.names.push((placeholder, attribute));
        self
    }

    /// Binds a `:value` placeholder.
    pub(crate) fn value(mut self, placeholder: &'static str, value: AttributeValue) -> Self {
        self.values.push((placeholder, value));
        self
    }

    pub(crate) fn expression(&self) -> Option<String> {
        Some(self.expression.to_owned())
    }

    pub(crate) fn names(&self) -> Option<HashMap<String, String>> {
        Some(
            self.names
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    pub(crate) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| {
            self.values
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        })
    }
}

/// Whether a conditional single-item write met its condition.
fn met<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, Error>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_conditional_failure(&error) => Ok(false),
        Err(error) => Err(dynamo_error(error)),
    }
}

/// The key of an item of a table without a sort key.
pub(crate) fn pk_key(pk: impl Into<String>) -> Item {
    Item::from([(PK.to_owned(), s(pk))])
}

/// The key of an item of a table with a sort key.
pub(crate) fn pk_sk_key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    Item::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

/// A table and the client that reaches it, with the item operations every store shares.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) client: Client,
    pub(crate) name: String,
}

impl Table {
    pub(crate) fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The item with this key ([`pk_key`], [`pk_sk_key`]), read consistently.
    pub(crate) async fn get(&self, key: Item) -> Result<Option<Item>, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .on_heap()
            .await
            .map_err(dynamo_error)?;
        Ok(output.item)
    }

    /// Puts `item` if `condition` holds: `Ok(false)` when it does not.
    pub(crate) async fn put_if(&self, item: Item, condition: &Condition) -> Result<bool, Error> {
        let put = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item));
        met(with_condition!(put, condition).send().on_heap().await)
    }

    /// Deletes the item with `key` if `condition` holds: `Ok(false)` when it does not.
    pub(crate) async fn delete_if(&self, key: Item, condition: &Condition) -> Result<bool, Error> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key));
        met(with_condition!(delete, condition).send().on_heap().await)
    }

    /// Runs a transaction: `Ok(false)` when a condition failed (see [`failed_conditions`]).
    pub(crate) async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, Error> {
        let transaction = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items));
        Ok(send_transaction(transaction).await?.is_none())
    }

    /// The string attribute `attribute` of every item in partition `pk`, in sort-key order: one
    /// consistent `Query` of at most `page` items per request, read to the end (the member →
    /// group and manager → report index items).
    pub(crate) async fn partition_strings(
        &self,
        pk: String,
        attribute: &'static str,
        page: i32,
    ) -> Result<Vec<String>, Error> {
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk))
            .consistent_read(true)
            .limit(page);
        let mut values = Vec::new();
        let mut start = None;
        loop {
            let output = query
                .clone()
                .set_exclusive_start_key(start.take())
                .send()
                .on_heap()
                .await
                .map_err(dynamo_error)?;
            for item in output.items() {
                values.push(string(item, attribute)?.to_owned());
            }
            start = output.last_evaluated_key;
            if start.is_none() {
                return Ok(values);
            }
        }
    }

    /// The item at `pk`/`sk`, read consistently.
    pub(crate) async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, Error> {
        self.get(pk_sk_key(pk, sk)).await
    }

    /// The entity of kind `kind` with id `id` ([`listed_item`]), read consistently.
    pub(crate) async fn get_entity<T: DeserializeOwned>(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, Error> {
        self.get_item(format!("{kind}#{id}"), kind)
            .await?
            .map(|item| from_doc(&item))
            .transpose()
    }

    /// Puts a new entity item; `already_exists` when its key is taken.
    pub(crate) async fn create(&self, item: Item, entity: Entity, id: &str) -> Result<(), Error> {
        if self.put_if(item, &Condition::absent()).await? {
            return Ok(());
        }
        Err(Error::Conflict(Conflict::AlreadyExists {
            entity,
            id: id.to_owned(),
        }))
    }

    /// Replaces the entity item of kind `kind` if its stored version is `expected`;
    /// `stale_version` when it is not, `not_found` when it is absent.
    pub(crate) async fn replace(
        &self,
        item: Item,
        expected: u64,
        (entity, kind, id): (Entity, &str, &str),
    ) -> Result<(), Error> {
        if self.put_if(item, &Condition::version(expected)).await? {
            return Ok(());
        }
        Err(self.refusal(entity, kind, id, expected).await)
    }

    /// Why a write conditional on `version = expected` was refused: `stale_version` when the
    /// entity exists, `not_found` when it does not (or the read failing).
    pub(crate) async fn refusal(
        &self,
        entity: Entity,
        kind: &str,
        id: &str,
        expected: u64,
    ) -> Error {
        match self.get_item(format!("{kind}#{id}"), kind).await {
            Ok(Some(_)) => Error::stale(entity, expected),
            Ok(None) => Error::not_found(entity, id),
            Err(error) => error,
        }
    }

    /// One page of every entity of kind `kind`, by id, on the [`LIST_INDEX`].
    pub(crate) async fn list<T: DeserializeOwned>(
        &self,
        kind: &str,
        listing: &str,
        page: &PageRequest,
    ) -> Result<Page<T>, Error> {
        let query = self
            .client
            .query()
            .table_name(&self.name)
            .index_name(LIST_INDEX.name)
            .key_condition_expression("#k = :kind")
            .expression_attribute_names("#k", LIST_INDEX.partition_key)
            .expression_attribute_values(":kind", s(kind));
        query_page(query, page, listing, &LIST_KEYS).await
    }
}

/// Opaque cursor content: which listing it belongs to, and the key to start after.
#[derive(Serialize, Deserialize)]
struct Cursor {
    #[serde(rename = "l")]
    listing: String,
    #[serde(rename = "k")]
    key: HashMap<String, String>,
}

fn invalid_cursor() -> Error {
    Error::Invalid(InvalidInput::Cursor)
}

fn decode_cursor(token: &PageToken, listing: &str) -> Result<Item, Error> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_str())
        .map_err(|_| invalid_cursor())?;
    let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| invalid_cursor())?;
    if cursor.listing != listing {
        return Err(invalid_cursor());
    }
    Ok(cursor
        .key
        .into_iter()
        .map(|(k, v)| (k, AttributeValue::S(v)))
        .collect())
}

fn encode_cursor(listing: &str, item: &Item, key_attributes: &[&str]) -> Result<PageToken, Error> {
    let mut key = HashMap::with_capacity(key_attributes.len());
    for &name in key_attributes {
        let value = item
            .get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or(CorruptItem::Attribute("key attribute"))?;
        key.insert(name.to_owned(), value.clone());
    }
    let json = serde_json::to_vec(&Cursor {
        listing: listing.to_owned(),
        key,
    })
    .map_err(|e| Error::Infrastructure {
        component: COMPONENT,
        source: Box::new(e),
    })?;
    Ok(PageToken::new(URL_SAFE_NO_PAD.encode(json)))
}

/// Runs `query` page by page until it has one item more than the page holds (or the end), so
/// a page has `next` exactly when more items follow. `listing` names the listing (index and
/// partition) so a cursor from another listing is refused; `key_attributes` are the table and
/// index key attributes that make up DynamoDB's start key.
pub(crate) async fn query_page<T: DeserializeOwned>(
    query: QueryFluentBuilder,
    page: &PageRequest,
    listing: &str,
    key_attributes: &[&str],
) -> Result<Page<T>, Error> {
    let limit = page.limit();
    let mut start = page
        .cursor
        .as_ref()
        .map(|c| decode_cursor(c, listing))
        .transpose()?;
    let mut items: Vec<Item> = Vec::with_capacity(limit + 1);
    loop {
        let wanted = i32::try_from(limit + 1 - items.len()).unwrap_or(i32::MAX);
        let output = query
            .clone()
            .limit(wanted)
            .set_exclusive_start_key(start.take())
            .send()
            .on_heap()
            .await
            .map_err(|e| match e.code() {
                // A start key that does not fit this index: a forged or foreign cursor.
                Some("ValidationException") if page.cursor.is_some() => invalid_cursor(),
                _ => dynamo_error(e),
            })?;
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key;
        if items.len() > limit || start.is_none() {
            break;
        }
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        match items.last() {
            Some(last) => Some(encode_cursor(listing, last, key_attributes)?),
            None => None,
        }
    } else {
        None
    };
    let items = items
        .iter()
        .map(from_doc)
        .collect::<Result<Vec<T>, Error>>()?;
    Ok(Page { items, next })
}
