//! Documents, their text and their chunks.
//!
//! A document's metadata, its extracted text (in parts) and its chunks share one partition
//! (`DOC#<id>`), so deleting a document is one partition purge and its chunks come back in
//! order from one query. The metadata is indexed under its owner (`USER#<uid>#DOCS` in
//! `gsi1`) for listing; each chunk is indexed under its owner too (`USER#<uid>#CHUNKS`), so
//! retrieval reads all of a user's chunks with one query and never scans the table.
//! Ownership is checked on every read and write: another user's document is a missing one.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::{Deserialize, Serialize};

use super::attributes::{Assignments, attr, n, s, timestamp};
use super::items::{Item, from_item, to_item};
use super::ops::Partition;
use super::{Store, StoreError, classify, keys};
use crate::domain::{Document, DocumentChunk, DocumentPatch};

/// Bytes of text per text item: far below the 400 KB item limit, whatever the attributes.
const TEXT_PART_BYTES: usize = 256 * 1024;

/// An embedding stored compactly: the vector's `f32`s as little-endian bytes in one binary
/// attribute (4 bytes a dimension, against about 10 for a list of DynamoDB numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedVector(pub Vec<f32>);

impl PackedVector {
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// `None` when the length is not a whole number of `f32`s.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(4) {
            return None;
        }
        Some(Self(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ))
    }
}

impl Serialize for PackedVector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for PackedVector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = PackedVector;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("little-endian f32 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<PackedVector, E> {
                PackedVector::from_bytes(v)
                    .ok_or_else(|| E::invalid_length(v.len(), &"a multiple of 4 bytes"))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    #[serde(flatten)]
    pub document: Document,
}

impl DocumentItem {
    pub fn new(document: Document) -> Self {
        Self {
            pk: keys::document_pk(&document.id),
            sk: keys::DOCUMENT_SK.to_owned(),
            gsi1pk: keys::user_documents_pk(&document.owner_id),
            gsi1sk: keys::recency_sk(document.created_at, &document.id),
            document,
        }
    }
}

/// A chunk with its owner (for the per-user index) and its embedding, if it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    pub owner_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<PackedVector>,
    #[serde(flatten)]
    pub chunk: DocumentChunk,
}

impl ChunkItem {
    pub fn new(owner_id: &str, chunk: DocumentChunk, embedding: Option<Vec<f32>>) -> Self {
        Self {
            pk: keys::document_pk(&chunk.document_id),
            sk: keys::chunk_sk(chunk.chunk_index),
            gsi1pk: keys::user_chunks_pk(owner_id),
            gsi1sk: keys::user_chunk_sk(&chunk.document_id, chunk.chunk_index),
            owner_id: owner_id.to_owned(),
            embedding: embedding.map(PackedVector),
            chunk,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TextItem {
    pk: String,
    sk: String,
    text: String,
}

/// Splits text into parts of at most `max` bytes, on character boundaries.
fn text_parts(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (part, tail) = rest.split_at(end);
        parts.push(part);
        rest = tail;
    }
    parts
}

fn document_key(document_id: &str) -> Item {
    Item::from([
        (keys::PK.to_owned(), s(keys::document_pk(document_id))),
        (keys::SK.to_owned(), s(keys::DOCUMENT_SK)),
    ])
}

fn not_found_on_condition<E, R>(err: aws_sdk_dynamodb::error::SdkError<E, R>) -> StoreError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
    let condition_failed = err
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException");
    if condition_failed {
        StoreError::NotFound
    } else {
        classify(err)
    }
}

impl Store {
    /// Stores a new document's metadata; it must not exist yet.
    pub async fn create_document(&self, document: &Document) -> Result<(), StoreError> {
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(to_item(&DocumentItem::new(document.clone()))?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| match not_found_on_condition(e) {
                StoreError::NotFound => StoreError::Conflict,
                other => other,
            })?;
        Ok(())
    }

    /// Writes the start or the outcome of a processing: status, counts, settings and times.
    /// The rest (title, tags, ...) is left to concurrent metadata updates.
    ///
    /// Each processing has its own `version`; the write is refused with `Conflict` unless
    /// the stored document still has `expected_version` (the one read before a start, this
    /// processing's own at its end), so of two processings started together only one goes
    /// on, and a superseded one records nothing.
    pub async fn save_processing(
        &self,
        document: &Document,
        expected_version: u32,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(document_key(&document.id)))
            .update_expression(
                "SET #status = :status, processing_started_at = :started, \
                 processing_completed_at = :completed, processing_error = :error, \
                 chunk_size = :size, chunk_overlap = :overlap, chunk_count = :count, \
                 version = :version, updated_at = :updated",
            )
            .condition_expression("attribute_exists(pk) AND owner_id = :uid AND version = :read")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", attr(&document.status)?)
            .expression_attribute_values(":started", attr(&document.processing_started_at)?)
            .expression_attribute_values(":completed", attr(&document.processing_completed_at)?)
            .expression_attribute_values(":error", attr(&document.processing_error)?)
            .expression_attribute_values(":size", n(document.chunk_size))
            .expression_attribute_values(":overlap", n(document.chunk_overlap))
            .expression_attribute_values(":count", n(document.chunk_count))
            .expression_attribute_values(":version", n(document.version))
            .expression_attribute_values(":read", n(expected_version))
            .expression_attribute_values(":updated", timestamp(document.updated_at))
            .expression_attribute_values(":uid", s(&document.owner_id))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await
            .map_err(|err| {
                use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
                // The document is there and the caller's, at another version: superseded.
                let owned = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                        e.item().and_then(|item| item.get("owner_id"))
                            == Some(&s(&document.owner_id))
                    }
                    _ => false,
                };
                if owned {
                    StoreError::Conflict
                } else {
                    not_found_on_condition(err)
                }
            })?;
        Ok(())
    }

    /// The caller's document, or `NotFound` whether it is missing or someone else's.
    pub async fn document(&self, user_id: &str, document_id: &str) -> Result<Document, StoreError> {
        let item = self.get_consistent(document_key(document_id)).await?;
        let item: DocumentItem = from_item(item.ok_or(StoreError::NotFound)?)?;
        if item.document.owner_id != user_id {
            return Err(StoreError::NotFound);
        }
        Ok(item.document)
    }

    /// Every document of the user, oldest first. Documents are metadata only (their text
    /// lives apart), so a user's whole list is small enough to read for filtering and stats.
    pub async fn documents(&self, user_id: &str) -> Result<Vec<Document>, StoreError> {
        self.query(Partition::of_gsi1(keys::user_documents_pk(user_id)))
            .await?
            .into_iter()
            .map(|item| from_item::<DocumentItem>(item).map(|i| i.document))
            .collect()
    }

    /// Records a read: one more view and the time of this access.
    pub async fn record_document_view(
        &self,
        user_id: &str,
        document_id: &str,
    ) -> Result<Document, StoreError> {
        let output = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(document_key(document_id)))
            .update_expression("SET last_accessed_at = :now ADD view_count :one")
            .condition_expression("attribute_exists(pk) AND owner_id = :uid")
            .expression_attribute_values(":now", timestamp(crate::domain::now()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":uid", s(user_id))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(not_found_on_condition)?;
        let item: DocumentItem = from_item(output.attributes.unwrap_or_default())?;
        Ok(item.document)
    }

    /// Counts a search that returned these documents. Best effort: a failure is logged,
    /// never the search's.
    pub async fn record_document_searches(&self, user_id: &str, document_ids: &[String]) {
        let now = crate::domain::now();
        let updates = document_ids.iter().map(|id| async move {
            let outcome = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(document_key(id)))
                .update_expression("SET last_accessed_at = :now ADD search_count :one")
                .condition_expression("attribute_exists(pk) AND owner_id = :uid")
                .expression_attribute_values(":now", timestamp(now))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":uid", s(user_id))
                .send()
                .await;
            if let Err(e) = outcome {
                tracing::warn!(document_id = %id, error = %e, "search count not recorded");
            }
        });
        futures_util::future::join_all(updates).await;
    }

    /// Applies the patch to the caller's document and returns the result.
    pub async fn update_document(
        &self,
        user_id: &str,
        document_id: &str,
        patch: &DocumentPatch,
    ) -> Result<Document, StoreError> {
        let mut update = Assignments::new(
            &["updated_at = :now"],
            [
                (":now", timestamp(crate::domain::now())),
                (":uid", s(user_id)),
            ],
        );
        update.set("title = :title", ":title", patch.title.as_deref().map(s));
        let description = patch.description.as_deref().map(s);
        update.set("description = :description", ":description", description);
        update.set(
            "tags = :tags",
            ":tags",
            patch.tags.as_ref().map(attr).transpose()?,
        );
        let extra = patch.extra_metadata.as_ref().map(attr).transpose()?;
        update.set("extra_metadata = :em", ":em", extra);
        let public = patch.is_public.map(AttributeValue::Bool);
        update.set("is_public = :public", ":public", public);
        let (expression, values) = update.into_parts();
        let output = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(document_key(document_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk) AND owner_id = :uid")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(not_found_on_condition)?;
        let item: DocumentItem = from_item(output.attributes.unwrap_or_default())?;
        Ok(item.document)
    }

    /// Deletes the caller's document, then its text and chunks.
    ///
    /// The metadata goes first, conditioned on the owner, so the document is 404 everywhere
    /// at once and retrieval (which only ranks chunks of live documents) stops seeing it.
    pub async fn delete_document(
        &self,
        user_id: &str,
        document_id: &str,
    ) -> Result<(), StoreError> {
        self.client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(document_key(document_id)))
            .condition_expression("owner_id = :uid")
            .expression_attribute_values(":uid", s(user_id))
            .send()
            .await
            .map_err(not_found_on_condition)?;
        self.purge(keys::document_pk(document_id), None).await
    }

    /// Stores a document's extracted text, replacing what was there.
    pub async fn put_document_text(&self, document_id: &str, text: &str) -> Result<(), StoreError> {
        let pk = keys::document_pk(document_id);
        self.purge(pk.clone(), Some(keys::DOCUMENT_TEXT_SK_PREFIX))
            .await?;
        let items = text_parts(text, TEXT_PART_BYTES)
            .into_iter()
            .zip(0..)
            .map(|(part, index)| {
                to_item(&TextItem {
                    pk: pk.clone(),
                    sk: keys::document_text_sk(index),
                    text: part.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.put_all(items).await
    }

    /// A document's extracted text, as stored (the caller checks ownership first).
    pub async fn document_text(&self, document_id: &str) -> Result<String, StoreError> {
        let parts = self
            .query(
                Partition::of(keys::document_pk(document_id))
                    .prefixed(keys::DOCUMENT_TEXT_SK_PREFIX),
            )
            .await?;
        parts
            .into_iter()
            .map(|item| from_item::<TextItem>(item).map(|t| t.text))
            .collect()
    }

    /// Stores chunks (with their embeddings), several batches at a time.
    pub async fn put_chunks(&self, chunks: Vec<ChunkItem>) -> Result<(), StoreError> {
        let items = chunks
            .iter()
            .map(to_item)
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.put_all(items).await
    }

    /// Removes a document's chunks (before it is chunked anew).
    pub async fn delete_chunks(&self, document_id: &str) -> Result<(), StoreError> {
        self.purge(keys::document_pk(document_id), Some(keys::CHUNK_SK_PREFIX))
            .await
    }

    /// The chunks `offset..offset + limit` of a document, by index: its chunk indexes run
    /// from 0 without gaps, so the page is one key range, whatever the offset. DynamoDB
    /// returns at most 1 MB a query, which large chunks with their vectors exceed well before
    /// the page is full, so the range is read on from where each response stopped.
    pub async fn chunk_page(
        &self,
        document_id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<Vec<DocumentChunk>, StoreError> {
        // Past the last index the key format orders there is nothing; a range running past
        // it would end on a key that sorts before its start, which DynamoDB refuses.
        let max = keys::MAX_CHUNK_INDEX as usize;
        if offset > max {
            return Ok(Vec::new());
        }
        let last = offset.saturating_add(limit.max(1) - 1).min(max);
        let (first, last) = (offset as u32, last as u32);
        let range = Partition::of(keys::document_pk(document_id))
            .between(keys::chunk_sk(first), keys::chunk_sk(last))
            .limit(limit);
        self.query(range)
            .await?
            .into_iter()
            .map(|item| from_item::<ChunkItem>(item).map(|i| i.chunk))
            .collect()
    }

    /// Every chunk of one document, in order, read consistently (so a document uploaded a
    /// moment ago is complete).
    pub async fn document_chunks(&self, document_id: &str) -> Result<Vec<ChunkItem>, StoreError> {
        self.query(Partition::of(keys::document_pk(document_id)).prefixed(keys::CHUNK_SK_PREFIX))
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// Every chunk of every document of the user, from the user's chunk index.
    pub async fn user_chunks(&self, user_id: &str) -> Result<Vec<ChunkItem>, StoreError> {
        self.query(Partition::of_gsi1(keys::user_chunks_pk(user_id)))
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }
}

#[cfg(test)]
mod tests;
