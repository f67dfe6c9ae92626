//! Chatter's document search: the best chunks of the caller's documents for a query.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::documents::retrieval::{self, Method, RetrievalQuery};
use crate::domain::{Document, DocumentType, JsonObject};
use crate::error::ServiceResult;
use crate::http::extract::ApiJson;
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::documents::{clean_tags, has_any_tag};

const MAX_QUERY_CHARS: usize = 1_000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct DocumentSearchRequest {
    #[schema(min_length = 1, max_length = 1000)]
    pub query: String,
    /// Most results (1 to 100, default 10).
    #[schema(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Least score (0 to 1, default 0.5): cosine similarity with an embedding model, else
    /// the normalised lexical score.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub score_threshold: Option<f64>,
    pub document_types: Option<Vec<DocumentType>>,
    /// Only documents with any of these tags.
    pub tags: Option<Vec<String>>,
    /// Accepted for compatibility: each result always carries its chunk's content.
    #[serde(default)]
    pub include_content: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentSearchResult {
    pub document_id: String,
    pub chunk_id: String,
    pub score: f64,
    pub content: String,
    /// The chunk's index and offsets, and how it was ranked (`embeddings` or `lexical`).
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    pub document: Document,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentSearchResponse {
    pub results: Vec<DocumentSearchResult>,
    /// Matches above the threshold, before `limit`.
    pub total_results: usize,
    pub query: String,
    pub score_threshold: f64,
}

#[utoipa::path(
    post, path = "/api/v1/documents/search", tag = "documents",
    request_body = DocumentSearchRequest,
    responses(
        (status = 200, description = "The best chunks of the caller's documents, best first", body = DocumentSearchResponse),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn search_documents(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<DocumentSearchRequest>,
) -> ServiceResult<Json<DocumentSearchResponse>> {
    let mut v = Violations::new();
    v.text(Some(&body.query), MAX_QUERY_CHARS, &["body", "query"]);
    let query = body.query.trim();
    v.range(body.limit, 1, 100, &["body", "limit"]);
    v.range(body.score_threshold, 0.0, 1.0, &["body", "score_threshold"]);
    v.finish()?;
    let limit = body.limit.map_or(10, |l| l as usize);
    let score_threshold = body.score_threshold.unwrap_or(0.5);
    let tags = body.tags.map(clean_tags).filter(|t| !t.is_empty());
    let types = body.document_types.filter(|t| !t.is_empty());
    let ranking = retrieval::rank(
        &state,
        RetrievalQuery {
            user_id: &caller.user_id,
            query,
            limit,
            score_threshold,
            document_ids: None,
        },
        |document| {
            types
                .as_deref()
                .is_none_or(|t| t.contains(&document.document_type))
                && has_any_tag(document, tags.as_deref())
        },
    )
    .await?;
    let mut found: Vec<String> = ranking.hits.iter().map(|h| h.document.id.clone()).collect();
    found.sort();
    found.dedup();
    state
        .store
        .record_document_searches(&caller.user_id, &found)
        .await;
    let results = ranking
        .hits
        .into_iter()
        .map(|hit| {
            let chunk = hit.chunk;
            let metadata = serde_json::json!({
                "chunk_index": chunk.chunk_index,
                "start_char": chunk.start_char,
                "end_char": chunk.end_char,
                "ranking": match hit.method {
                    Method::Embeddings => "embeddings",
                    Method::Lexical => "lexical",
                },
            });
            DocumentSearchResult {
                document_id: chunk.document_id,
                chunk_id: chunk.id,
                score: hit.score,
                content: chunk.content,
                metadata: metadata.as_object().cloned(),
                document: hit.document,
            }
        })
        .collect();
    Ok(Json(DocumentSearchResponse {
        results,
        total_results: ranking.total,
        query: query.to_owned(),
        score_threshold,
    }))
}
