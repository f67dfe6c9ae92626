//! What the store's writes are built from: attribute values, the keys of items several
//! modules update, and what a cancelled transaction means.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::items::Item;
use super::{StoreError, classify, keys};

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn attr<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Other(anyhow::Error::new(e)))
}

/// A time as the item serialiser writes it (three, six or nine fractional digits, as few as
/// it needs), so that a condition comparing it with a stored time matches.
pub(super) fn timestamp(value: DateTime<Utc>) -> AttributeValue {
    s(value.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// An update's `SET` clauses and the values they name, gathered field by field from a patch:
/// a field the patch leaves out (`None`) adds nothing.
pub(super) struct Assignments {
    clauses: Vec<&'static str>,
    values: Item,
}

impl Assignments {
    /// Starts from the clauses every such update makes and the values they and its condition
    /// name.
    pub(super) fn new<const N: usize>(
        clauses: &[&'static str],
        values: [(&str, AttributeValue); N],
    ) -> Self {
        Self {
            clauses: clauses.to_vec(),
            values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    pub(super) fn set(&mut self, clause: &'static str, name: &str, value: Option<AttributeValue>) {
        if let Some(value) = value {
            self.clauses.push(clause);
            self.values.insert(name.to_owned(), value);
        }
    }

    /// The `SET …` expression and the values it names.
    pub(super) fn into_parts(self) -> (String, Item) {
        (format!("SET {}", self.clauses.join(", ")), self.values)
    }
}

pub(super) fn conversation_key(conversation_id: &str) -> Item {
    Item::from([
        (
            keys::PK.to_owned(),
            s(keys::conversation_pk(conversation_id)),
        ),
        (keys::SK.to_owned(), s(keys::CONVERSATION_SK)),
    ])
}

pub(super) fn user_stats_key(user_id: &str) -> Item {
    Item::from([
        (keys::PK.to_owned(), s(keys::user_pk(user_id))),
        (keys::SK.to_owned(), s(keys::USER_STATS_SK)),
    ])
}

type TransactError<R> = aws_sdk_dynamodb::error::SdkError<
    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
    R,
>;

/// Why each action of a cancelled transaction failed, in the order they were sent (`None`
/// for an action that did not); empty when the transaction was not cancelled.
pub(super) fn cancellation_codes<R>(err: &TransactError<R>) -> Vec<Option<&str>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().filter(|c| *c != "None"))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a cancelled transaction failed on a condition (as opposed to a conflict).
fn cancelled_by_condition<R>(err: &TransactError<R>) -> Option<bool> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(_) => {
            Some(cancellation_codes(err).contains(&Some("ConditionalCheckFailed")))
        }
        _ => None,
    }
}

pub(super) fn write_failed<R: std::fmt::Debug + Send + Sync + 'static>(
    err: TransactError<R>,
    on_condition: StoreError,
) -> StoreError {
    match cancelled_by_condition(&err) {
        Some(true) => on_condition,
        Some(false) => StoreError::Conflict,
        None => classify(err),
    }
}
