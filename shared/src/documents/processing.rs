//! Turning a document's text into stored, searchable chunks, inside the request that asks
//! for it: chunk, embed (when an embedding model is configured), store, record the outcome.

use super::chunking::{self, Chunk};
use super::embedding::Embedder;
use crate::AppState;
use crate::domain::{Document, DocumentChunk, DocumentStatus, sha256_hex};
use crate::error::ServiceError;
use crate::store::StoreError;
use crate::store::documents::ChunkItem;

/// How long a processing may run before another may start over it: longer than the
/// documents function may run, so only a processing whose function died is taken over.
pub const PROCESSING_LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Most chunks one document may have: every chunk is written (and embedded) within the
/// request, which API Gateway ends at 30 s.
pub const MAX_CHUNKS: usize = 2_000;

/// Whether a processing embeds the chunks it stores (when an embedding model is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embeddings {
    Generate,
    Skip,
}

/// What a processing does about chunks an earlier processing of the document stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlierChunks {
    /// There are none: the document's first processing.
    None,
    /// Deleted first, so that the document's chunks are this processing's only.
    Replace,
}

/// The chunks of `text`, or an invalid `chunk_size` when there would be more than
/// [`MAX_CHUNKS`].
pub fn chunk_text(
    text: &str,
    chunk_size: u32,
    chunk_overlap: u32,
) -> Result<Vec<Chunk>, ServiceError> {
    let chunks = chunking::split(text, chunk_size as usize, chunk_overlap as usize);
    if chunks.len() > MAX_CHUNKS {
        return Err(ServiceError::invalid(
            ["body".into(), "chunk_size".into()],
            format!(
                "The document would make {} chunks of {chunk_size} characters; the limit is \
                 {MAX_CHUNKS}. Use a larger chunk_size or a smaller document.",
                chunks.len()
            ),
            "value_error",
        ));
    }
    Ok(chunks)
}

/// Embeds (when asked and a model is configured) and stores `chunks` as the document's
/// only chunks, then records the outcome on the document: `processed`, or `failed` with the
/// reason when embedding failed (the chunks are then stored without vectors, and
/// reprocessing retries). Storage failures are errors.
pub async fn process(
    state: &AppState,
    mut document: Document,
    chunks: Vec<Chunk>,
    embeddings: Embeddings,
    earlier: EarlierChunks,
) -> Result<Document, StoreError> {
    let embedder = Embedder::from_state(state).filter(|_| embeddings == Embeddings::Generate);
    let contents: Vec<String> = chunks.iter().map(|c| c.content.clone()).collect();
    let (vectors, error) = match &embedder {
        None => (None, None),
        Some(embedder) => match embedder.embed(&contents).await {
            Ok(vectors) => (Some(vectors), None),
            Err(e) => {
                tracing::warn!(document_id = %document.id, error = %e, "embedding failed");
                (
                    None,
                    Some(format!("Embedding failed: {}", e.client_message())),
                )
            }
        },
    };
    let now = crate::domain::now();
    let embedded_by = embedder
        .as_ref()
        .filter(|_| vectors.is_some())
        .map(|e| (e.model.clone(), e.provider.name.clone()));
    let mut vectors = vectors.map(Vec::into_iter);
    let items: Vec<ChunkItem> = chunks
        .into_iter()
        .zip(0..)
        .map(|(chunk, index)| {
            let chunk = DocumentChunk {
                id: crate::domain::new_id(),
                document_id: document.id.clone(),
                content_hash: sha256_hex(chunk.content.as_bytes()),
                token_count: u32::try_from(crate::llm::estimate_tokens(&chunk.content)).ok(),
                start_char: Some(chunk.start_char as u64),
                end_char: Some(chunk.end_char as u64),
                content: chunk.content,
                chunk_index: index,
                extra_metadata: None,
                language: None,
                embedding_model: embedded_by.as_ref().map(|(m, _)| m.clone()),
                embedding_provider: embedded_by.as_ref().map(|(_, p)| p.clone()),
                embedding_created_at: embedded_by.as_ref().map(|_| now),
                created_at: now,
                updated_at: now,
            };
            let vector = vectors.as_mut().and_then(Iterator::next);
            ChunkItem::new(&document.owner_id, chunk, vector)
        })
        .collect();
    let count = items.len() as u32;
    let stored = async {
        if earlier == EarlierChunks::Replace {
            state.store.delete_chunks(&document.id).await?;
        }
        state.store.put_chunks(items).await
    }
    .await;
    let completed = crate::domain::now();
    document.processing_completed_at = Some(completed);
    document.updated_at = completed;
    match stored {
        Ok(()) => {
            document.chunk_count = count;
            document.status = if error.is_some() {
                DocumentStatus::Failed
            } else {
                DocumentStatus::Processed
            };
            document.processing_error = error;
            state
                .store
                .save_processing(&document, document.version)
                .await?;
            Ok(document)
        }
        Err(e) => {
            // Leave the document marked as failed rather than processing forever; the
            // request still fails with the storage error.
            document.status = DocumentStatus::Failed;
            document.processing_error =
                Some("The chunks could not be stored; reprocess the document.".into());
            if let Err(mark) = state
                .store
                .save_processing(&document, document.version)
                .await
            {
                tracing::warn!(document_id = %document.id, error = %mark, "could not mark the document failed");
            }
            Err(e)
        }
    }
}
