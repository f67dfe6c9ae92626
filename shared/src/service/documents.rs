//! Documents as their owner works with them: an upload processed at once, the list with its
//! filters and order, processing again, and figures over them all.
//!
//! A document's processing is a small state machine: `processing` from the start of a run
//! until it records `processed` or `failed`. One run at a time, so a document's chunks are
//! always one run's: another run may only start over one whose lease has run out (its
//! function died).

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use utoipa::ToSchema;

use super::{missing, or_missing};
use crate::AppState;
use crate::documents::embedding::Embedder;
use crate::documents::extract;
use crate::documents::processing::{self, EarlierChunks, Embeddings};
use crate::domain::{Document, DocumentStatus, DocumentType, NewDocument, sha256_hex};
use crate::error::{ServiceError, ServiceResult};
use crate::store::StoreError;

const DOCUMENT: &str = "Document";

/// An upload as its form was read and checked.
pub struct Upload {
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: bytes::Bytes,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub chunk_size: u32,
    pub chunk_overlap: u32,
    pub is_public: bool,
}

/// Stores the upload and processes it within the call: the document's text is extracted,
/// chunked and (with an embedding model) embedded.
pub async fn upload(state: &AppState, owner_id: &str, upload: Upload) -> ServiceResult<Document> {
    let kind = extract::document_type(
        &upload.filename,
        upload.content_type.as_deref(),
        &upload.bytes,
    )?;
    let file_size = upload.bytes.len() as u64;
    let file_hash = sha256_hex(&upload.bytes);
    let text = extract::extract_text(kind, upload.bytes).await?;
    let chunks = processing::chunk_text(&text, upload.chunk_size, upload.chunk_overlap)?;
    let document = Document::create(
        owner_id,
        NewDocument {
            title: upload.title,
            description: upload.description,
            tags: upload.tags,
            is_public: upload.is_public,
            filename: upload.filename,
            file_size,
            file_hash,
            mime_type: extract::mime_type(kind).to_owned(),
            document_type: kind,
            chunk_size: upload.chunk_size,
            chunk_overlap: upload.chunk_overlap,
        },
    );
    // The document exists (as `processing`) before its text and chunks, so an interrupted
    // upload leaves something the owner can see and delete, never unreachable chunks.
    state.store.create_document(&document).await?;
    state.store.put_document_text(&document.id, &text).await?;
    let document = processing::process(
        state,
        document,
        chunks,
        Embeddings::Generate,
        EarlierChunks::None,
    )
    .await?;
    Ok(document)
}

/// Tags trimmed, without blanks or repeats, in their first order.
pub fn clean_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    tags.into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && seen.insert(t.clone()))
        .collect()
}

/// Whether a document carries any of the tags (no tags asked for: any document).
pub fn has_any_tag(document: &Document, tags: Option<&[String]>) -> bool {
    tags.is_none_or(|wanted| {
        document
            .tags
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|t| wanted.contains(t))
    })
}

/// What a list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortField {
    CreatedAt,
    UpdatedAt,
    Title,
    Filename,
    FileSize,
    ChunkCount,
    ViewCount,
    SearchCount,
}

impl SortField {
    pub const NAMES: [&'static str; 8] = [
        "created_at",
        "updated_at",
        "title",
        "filename",
        "file_size",
        "chunk_count",
        "view_count",
        "search_count",
    ];
    const ALL: [Self; 8] = [
        Self::CreatedAt,
        Self::UpdatedAt,
        Self::Title,
        Self::Filename,
        Self::FileSize,
        Self::ChunkCount,
        Self::ViewCount,
        Self::SearchCount,
    ];

    /// The field of this name, one of [`Self::NAMES`].
    pub fn named(name: &str) -> Option<Self> {
        let at = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[at])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// Which of the owner's documents a list shows, and in what order.
pub struct ListFilter<'a> {
    pub status: Option<DocumentStatus>,
    pub document_type: Option<DocumentType>,
    /// Only the caller's own documents are ever listed: another owner lists nothing.
    pub owner_id: Option<&'a str>,
    pub tags: Option<Vec<String>>,
    pub sort_by: SortField,
    pub order: SortOrder,
}

/// A page of the caller's documents that pass the filter, and how many pass it.
pub async fn list(
    state: &AppState,
    user_id: &str,
    filter: ListFilter<'_>,
    limit: usize,
    offset: usize,
) -> ServiceResult<(Vec<Document>, usize)> {
    let mut documents = match filter.owner_id {
        Some(owner) if owner != user_id => Vec::new(),
        _ => state.store.documents(user_id).await?,
    };
    documents.retain(|d| {
        filter.status.is_none_or(|s| d.status == s)
            && filter.document_type.is_none_or(|t| d.document_type == t)
            && has_any_tag(d, filter.tags.as_deref())
    });
    sort(&mut documents, filter.sort_by, filter.order);
    let total = documents.len();
    Ok((
        documents.into_iter().skip(offset).take(limit).collect(),
        total,
    ))
}

fn sort(documents: &mut [Document], by: SortField, order: SortOrder) {
    documents.sort_by(|a, b| {
        let ordering = match by {
            SortField::CreatedAt => a.created_at.cmp(&b.created_at),
            SortField::UpdatedAt => a.updated_at.cmp(&b.updated_at),
            SortField::Title => a
                .display_title()
                .to_lowercase()
                .cmp(&b.display_title().to_lowercase()),
            SortField::Filename => a.filename.cmp(&b.filename),
            SortField::FileSize => a.file_size.cmp(&b.file_size),
            SortField::ChunkCount => a.chunk_count.cmp(&b.chunk_count),
            SortField::ViewCount => a.view_count.cmp(&b.view_count),
            SortField::SearchCount => a.search_count.cmp(&b.search_count),
        }
        .then_with(|| a.id.cmp(&b.id));
        match order {
            SortOrder::Asc => ordering,
            SortOrder::Desc => ordering.reverse(),
        }
    });
}

/// The caller's document.
pub async fn owned(state: &AppState, user_id: &str, document_id: &str) -> ServiceResult<Document> {
    state
        .store
        .document(user_id, document_id)
        .await
        .map_err(or_missing(DOCUMENT))
}

/// When a document that is already processed is processed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenProcessed {
    /// It is left as it is.
    Keep,
    /// It is processed again all the same.
    ProcessAgain,
}

/// How to process a document again.
pub struct Reprocessing {
    pub chunk_size: u32,
    pub chunk_overlap: u32,
    pub when_processed: WhenProcessed,
    pub embeddings: Embeddings,
}

/// What processing again did.
pub enum Reprocessed {
    /// Nothing: the document was processed already (see [`WhenProcessed::Keep`]).
    AlreadyProcessed(Document),
    /// Processed within the call: `processed`, or `failed` with the reason.
    Ran(Document),
}

fn processing_under_way() -> ServiceError {
    ServiceError::Conflict(
        "The document is being processed; retry when its status is no longer `processing`.".into(),
    )
}

/// Chunks (and embeds) `document`'s stored text again, within the call, unless another
/// processing holds it.
pub async fn reprocess(
    state: &AppState,
    mut document: Document,
    how: Reprocessing,
) -> ServiceResult<Reprocessed> {
    if document.status == DocumentStatus::Processed && how.when_processed == WhenProcessed::Keep {
        return Ok(Reprocessed::AlreadyProcessed(document));
    }
    let now = crate::domain::now();
    if document.status == DocumentStatus::Processing
        && document
            .processing_started_at
            .is_some_and(|started| now - started < processing::PROCESSING_LEASE)
    {
        return Err(processing_under_way());
    }
    let text = state.store.document_text(&document.id).await?;
    let chunks = processing::chunk_text(&text, how.chunk_size, how.chunk_overlap)?;
    let read_version = document.version;
    document.status = DocumentStatus::Processing;
    document.processing_started_at = Some(now);
    document.processing_completed_at = None;
    document.processing_error = None;
    document.chunk_size = how.chunk_size;
    document.chunk_overlap = how.chunk_overlap;
    document.version += 1;
    document.updated_at = now;
    state
        .store
        .save_processing(&document, read_version)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => processing_under_way(),
            StoreError::NotFound => missing(DOCUMENT),
            other => other.into(),
        })?;
    let document = processing::process(
        state,
        document,
        chunks,
        how.embeddings,
        EarlierChunks::Replace,
    )
    .await?;
    Ok(Reprocessed::Ran(document))
}

/// Figures over all of a user's documents.
pub struct Overview {
    pub documents: usize,
    pub chunks: u64,
    pub size_bytes: u64,
    pub by_status: BTreeMap<String, usize>,
    pub by_type: BTreeMap<String, usize>,
    /// Over the documents whose processing completed.
    pub average_processing_ms: Option<f64>,
    pub views: u64,
    pub searches: u64,
    pub embedding_model: Option<String>,
}

pub async fn overview(state: &AppState, user_id: &str) -> ServiceResult<Overview> {
    let documents = state.store.documents(user_id).await?;
    let mut by_status = BTreeMap::new();
    let mut by_type = BTreeMap::new();
    for document in &documents {
        *by_status
            .entry(document.status.as_str().to_owned())
            .or_insert(0) += 1;
        *by_type
            .entry(document.document_type.as_str().to_owned())
            .or_insert(0) += 1;
    }
    let durations: Vec<i64> = documents
        .iter()
        .filter_map(|d| {
            Some((d.processing_completed_at? - d.processing_started_at?).num_milliseconds())
        })
        .collect();
    Ok(Overview {
        documents: documents.len(),
        chunks: documents.iter().map(|d| u64::from(d.chunk_count)).sum(),
        size_bytes: documents.iter().map(|d| d.file_size).sum(),
        by_status,
        by_type,
        average_processing_ms: (!durations.is_empty())
            .then(|| durations.iter().sum::<i64>() as f64 / durations.len() as f64),
        views: documents.iter().map(|d| d.view_count).sum(),
        searches: documents.iter().map(|d| d.search_count).sum(),
        embedding_model: Embedder::from_state(state).map(|e| e.model),
    })
}

/// The caller's document with its stored text.
pub async fn text(
    state: &AppState,
    user_id: &str,
    document_id: &str,
) -> ServiceResult<(Document, String)> {
    let document = owned(state, user_id, document_id).await?;
    let text = state.store.document_text(document_id).await?;
    Ok((document, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sort_field_is_found_by_its_name() {
        for (name, field) in SortField::NAMES.iter().zip(SortField::ALL) {
            assert_eq!(SortField::named(name), Some(field));
        }
        assert_eq!(SortField::named("size"), None);
    }
}
