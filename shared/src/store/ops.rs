//! What every store module does alike: a consistent GetItem, a Query of one partition (of
//! the table or an index, optionally by sort-key prefix) read page by page, and batched
//! writes and deletes.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};

use super::items::Item;
use super::{Store, StoreError, classify, keys};

/// BatchWriteItem takes at most this many requests.
const BATCH_WRITE_LIMIT: usize = 25;
/// Batches in flight at once when many items are written.
const CONCURRENT_BATCHES: usize = 4;

/// Which partition to read, and how much of it.
pub(super) struct Partition<'a> {
    index: Option<&'a str>,
    pk: String,
    sort_keys: SortKeys<'a>,
    forward: bool,
    limit: Option<usize>,
}

impl<'a> Partition<'a> {
    /// A partition of the table.
    pub fn of(pk: String) -> Self {
        Self {
            index: None,
            pk,
            sort_keys: SortKeys::All,
            forward: true,
            limit: None,
        }
    }

    /// A partition of the global index `gsi1`.
    pub fn of_gsi1(pk: String) -> Self {
        Self {
            index: Some(keys::GSI1),
            ..Self::of(pk)
        }
    }

    /// Only the items whose sort key starts with `prefix`.
    pub fn prefixed(mut self, prefix: &'a str) -> Self {
        self.sort_keys = SortKeys::Prefixed(prefix);
        self
    }

    /// Only the items whose sort key lies in `first..=last`.
    pub fn between(mut self, first: String, last: String) -> Self {
        self.sort_keys = SortKeys::Between(first, last);
        self
    }

    /// Newest (highest sort key) first.
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    /// At most this many items.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    fn key_condition(&self) -> String {
        let (pk, sk) = match self.index {
            Some(_) => (keys::GSI1_PK, keys::GSI1_SK),
            None => (keys::PK, keys::SK),
        };
        match self.sort_keys {
            SortKeys::All => format!("{pk} = :pk"),
            SortKeys::Prefixed(_) => format!("{pk} = :pk AND begins_with({sk}, :prefix)"),
            SortKeys::Between(..) => format!("{pk} = :pk AND {sk} BETWEEN :first AND :last"),
        }
    }

    fn values(&self) -> Item {
        let mut values = Item::from([(":pk".to_owned(), AttributeValue::S(self.pk.clone()))]);
        match &self.sort_keys {
            SortKeys::All => {}
            SortKeys::Prefixed(prefix) => {
                values.insert(
                    ":prefix".to_owned(),
                    AttributeValue::S((*prefix).to_owned()),
                );
            }
            SortKeys::Between(first, last) => {
                values.insert(":first".to_owned(), AttributeValue::S(first.clone()));
                values.insert(":last".to_owned(), AttributeValue::S(last.clone()));
            }
        }
        values
    }
}

/// Which of a partition's sort keys a query reads.
enum SortKeys<'a> {
    All,
    Prefixed(&'a str),
    Between(String, String),
}

impl Store {
    /// A strongly consistent read of one item.
    pub(super) async fn get_consistent(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.item)
    }

    /// The partition's items in sort-key order, following DynamoDB's pages until the limit.
    pub(super) async fn query(&self, partition: Partition<'_>) -> Result<Vec<Item>, StoreError> {
        // DynamoDB refuses a Limit of 0.
        if partition.limit == Some(0) {
            return Ok(Vec::new());
        }
        let values = partition.values();
        let condition = partition.key_condition();
        let mut items: Vec<Item> = Vec::new();
        let mut start = None;
        loop {
            let wanted = partition.limit.map(|limit| limit - items.len());
            let output = self
                .client()
                .query()
                .table_name(self.table())
                .set_index_name(partition.index.map(str::to_owned))
                .key_condition_expression(&condition)
                .set_expression_attribute_values(Some(values.clone()))
                .scan_index_forward(partition.forward)
                .set_limit(wanted.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                // Base-table reads are consistent; a global index cannot be.
                .consistent_read(partition.index.is_none())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            items.extend(output.items.unwrap_or_default());
            start = output.last_evaluated_key;
            let full = partition.limit.is_some_and(|limit| items.len() >= limit);
            if start.is_none() || full {
                return Ok(items);
            }
        }
    }

    /// Writes the requests in batches of 25, a few batches at once.
    pub(super) async fn write_all(
        &self,
        mut requests: Vec<WriteRequest>,
    ) -> Result<(), StoreError> {
        while !requests.is_empty() {
            let rest =
                requests.split_off(requests.len().min(BATCH_WRITE_LIMIT * CONCURRENT_BATCHES));
            let batches = requests
                .chunks(BATCH_WRITE_LIMIT)
                .map(|batch| self.batch_write(batch.to_vec()));
            futures_util::future::try_join_all(batches).await?;
            requests = rest;
        }
        Ok(())
    }

    /// One BatchWriteItem, resubmitting what DynamoDB leaves unprocessed under load.
    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut backoff = Duration::from_millis(20);
        while !requests.is_empty() {
            let output = self
                .client()
                .batch_write_item()
                .request_items(self.table(), requests)
                .send()
                .await
                .map_err(classify)?;
            requests = output
                .unprocessed_items
                .and_then(|mut u| u.remove(self.table()))
                .unwrap_or_default();
            if !requests.is_empty() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        Ok(())
    }

    pub(super) async fn put_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let requests = items
            .into_iter()
            .map(|item| {
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(anyhow::Error::new)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_all(requests).await
    }

    pub(super) async fn delete_all(
        &self,
        keys: impl IntoIterator<Item = Item>,
    ) -> Result<(), StoreError> {
        let requests = keys
            .into_iter()
            .map(|key| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map_err(anyhow::Error::new)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_all(requests).await
    }

    /// Deletes every item of a table partition, or those whose sort key starts with `prefix`.
    pub(super) async fn purge(&self, pk: String, prefix: Option<&str>) -> Result<(), StoreError> {
        let partition = match prefix {
            Some(prefix) => Partition::of(pk).prefixed(prefix),
            None => Partition::of(pk),
        };
        let keys: Vec<Item> = self
            .query(partition)
            .await?
            .into_iter()
            .map(|item| {
                item.into_iter()
                    .filter(|(name, _)| name == keys::PK || name == keys::SK)
                    .collect()
            })
            .collect();
        self.delete_all(keys).await
    }
}
