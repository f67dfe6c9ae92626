//! Retrieval over the caller's own documents, for the chat turn and `POST /documents/search`.
//!
//! With an embedding model the query is embedded and the chunks that carry a vector of that
//! model are ranked by cosine similarity; chunks without one (their document's embedding
//! failed, or was made by another model) are ranked lexically alongside, so such a document
//! stays findable. Without a model, when embedding the query fails, or when no chunk has a
//! vector of the current model, every chunk is ranked lexically (BM25, normalised into 0..1;
//! see `bm25`). Only the caller's documents are ever read: chunks are
//! found through the caller's own index entries or the caller's own documents, and a chunk
//! counts only while its document exists and belongs to the caller.

use std::collections::{HashMap, HashSet};

use super::bm25;
use super::embedding::{Embedder, cosine};
use crate::AppState;
use crate::domain::{Document, DocumentChunk};
use crate::error::ServiceError;
use crate::store::StoreError;
use crate::store::documents::ChunkItem;

/// Documents read at once when the query names them.
const CONCURRENT_DOCUMENTS: usize = 8;

/// What to look for, and where.
#[derive(Debug, Clone, Copy)]
pub struct RetrievalQuery<'a> {
    pub user_id: &'a str,
    pub query: &'a str,
    /// Most sources returned.
    pub limit: usize,
    /// Least score (0..=1) a source must have.
    pub score_threshold: f64,
    /// Only these documents (of the caller's); `Some(&[])` finds nothing.
    pub document_ids: Option<&'a [String]>,
}

/// A chunk retrieved for a query, as the chat cites it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Source {
    pub document_id: String,
    pub title: String,
    pub chunk_index: u32,
    /// Cosine similarity, or the normalised lexical score, in 0..=1.
    pub score: f64,
    pub content: String,
}

/// How the chunks were ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Embeddings,
    Lexical,
}

/// A ranked chunk with its document.
#[derive(Debug, Clone)]
pub struct Hit {
    pub document: Document,
    pub chunk: DocumentChunk,
    pub score: f64,
    /// How this chunk was scored.
    pub method: Method,
}

impl Hit {
    pub fn source(&self) -> Source {
        Source {
            document_id: self.chunk.document_id.clone(),
            title: self.document.display_title().to_owned(),
            chunk_index: self.chunk.chunk_index,
            score: self.score,
            content: self.chunk.content.clone(),
        }
    }
}

/// The best chunks and how many passed the threshold in all.
#[derive(Debug, Clone)]
pub struct Ranking {
    pub hits: Vec<Hit>,
    pub total: usize,
    /// `Embeddings` when the query was embedded (chunks without a vector are still scored
    /// lexically: see each hit's method).
    pub method: Method,
}

/// One candidate's score: (score in 0..=1, tie-breaker, candidate index, how it was scored).
type Scored = (f64, f64, usize, Method);

/// The top `limit` chunks of the caller's documents scoring at least `score_threshold`,
/// best first.
pub async fn retrieve(
    state: &AppState,
    query: RetrievalQuery<'_>,
) -> Result<Vec<Source>, ServiceError> {
    let ranking = rank(state, query, |_| true).await?;
    Ok(ranking.hits.iter().map(Hit::source).collect())
}

/// Ranks the chunks of the caller's documents that `keep` accepts (and that
/// `query.document_ids` names, when it does).
pub async fn rank(
    state: &AppState,
    query: RetrievalQuery<'_>,
    keep: impl Fn(&Document) -> bool,
) -> Result<Ranking, ServiceError> {
    let mut candidates = candidates(state, &query).await?;
    candidates.retain(|(document, _)| keep(document));
    let embedder = Embedder::from_state(state);
    let scored = match embedder {
        Some(embedder) if has_vectors(&candidates, &embedder.model) => {
            match embedder.embed(&[query.query.to_owned()]).await {
                Ok(mut vectors) => vectors.pop().map(|vector| {
                    let scores = by_embedding(&candidates, &embedder.model, &vector, query.query);
                    (scores, Method::Embeddings)
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "embedding the query failed; ranking lexically");
                    None
                }
            }
        }
        _ => None,
    };
    let (scores, method) =
        scored.unwrap_or_else(|| (lexically(&candidates, query.query), Method::Lexical));
    let mut ranked: Vec<Scored> = scores
        .into_iter()
        // A chunk that shares nothing with the query is no match, whatever the threshold.
        .filter(|(score, _, _, _)| *score > 0.0 && *score >= query.score_threshold)
        .collect();
    ranked.sort_by(|a, b| {
        let (da, ca) = (&candidates[a.2].0.id, candidates[a.2].1.chunk.chunk_index);
        let (db, cb) = (&candidates[b.2].0.id, candidates[b.2].1.chunk.chunk_index);
        b.0.total_cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then_with(|| da.cmp(db))
            .then(ca.cmp(&cb))
    });
    let total = ranked.len();
    let hits = ranked
        .into_iter()
        .take(query.limit)
        .map(|(score, _, i, method)| Hit {
            document: candidates[i].0.clone(),
            chunk: candidates[i].1.chunk.clone(),
            score,
            method,
        })
        .collect();
    Ok(Ranking {
        hits,
        total,
        method,
    })
}

/// The caller's chunks in scope, each with its (live, owned) document.
async fn candidates(
    state: &AppState,
    query: &RetrievalQuery<'_>,
) -> Result<Vec<(Document, ChunkItem)>, StoreError> {
    if query.limit == 0 || query.query.trim().is_empty() {
        return Ok(Vec::new());
    }
    let store = &state.store;
    match query.document_ids {
        Some(ids) => {
            let unique: Vec<&String> = ids.iter().collect::<HashSet<_>>().into_iter().collect();
            let mut found = Vec::new();
            for group in unique.chunks(CONCURRENT_DOCUMENTS) {
                let reads = group
                    .iter()
                    .map(|id| named_document(state, query.user_id, id));
                for chunks in futures_util::future::try_join_all(reads).await? {
                    found.extend(chunks);
                }
            }
            Ok(found)
        }
        None => {
            let (documents, chunks) = tokio::try_join!(
                store.documents(query.user_id),
                store.user_chunks(query.user_id)
            )?;
            let documents: HashMap<String, Document> =
                documents.into_iter().map(|d| (d.id.clone(), d)).collect();
            Ok(chunks
                .into_iter()
                .filter(|c| c.owner_id == query.user_id)
                .filter_map(|c| Some((documents.get(&c.chunk.document_id)?.clone(), c)))
                .collect())
        }
    }
}

/// The chunks of one document the query names, if it is the caller's: read from the
/// document's own partition, consistently, so one uploaded a moment ago is searchable.
async fn named_document(
    state: &AppState,
    user_id: &str,
    document_id: &str,
) -> Result<Vec<(Document, ChunkItem)>, StoreError> {
    let document = match state.store.document(user_id, document_id).await {
        Ok(document) => document,
        Err(StoreError::NotFound) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let chunks = state.store.document_chunks(document_id).await?;
    Ok(chunks.into_iter().map(|c| (document.clone(), c)).collect())
}

fn has_vectors(candidates: &[(Document, ChunkItem)], model: &str) -> bool {
    candidates
        .iter()
        .any(|(_, c)| c.embedding.is_some() && c.chunk.embedding_model.as_deref() == Some(model))
}

/// Each chunk's score: by cosine similarity when it carries a vector of `model`, else
/// lexically (BM25 over all the candidates, so its term weights are those of the whole set).
fn by_embedding(
    candidates: &[(Document, ChunkItem)],
    model: &str,
    query_vector: &[f32],
    query: &str,
) -> Vec<Scored> {
    let mut lexical = None;
    candidates
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let vector = c
                .embedding
                .as_ref()
                .filter(|_| c.chunk.embedding_model.as_deref() == Some(model));
            match vector {
                Some(vector) => {
                    let score = cosine(query_vector, &vector.0);
                    (score, score, i, Method::Embeddings)
                }
                None => lexical.get_or_insert_with(|| lexically(candidates, query))[i],
            }
        })
        .collect()
}

fn lexically(candidates: &[(Document, ChunkItem)], query: &str) -> Vec<Scored> {
    let contents: Vec<&str> = candidates
        .iter()
        .map(|(_, c)| c.chunk.content.as_str())
        .collect();
    bm25::score(query, &contents)
        .into_iter()
        .enumerate()
        .map(|(i, (normalised, raw))| (normalised, raw, i, Method::Lexical))
        .collect()
}
