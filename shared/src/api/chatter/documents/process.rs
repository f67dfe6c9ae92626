//! Chatter's (re)processing routes: a document's stored text chunked and embedded again,
//! within the request.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::form::check_chunking;
use crate::AppState;
use crate::auth::Caller;
use crate::documents::processing::Embeddings;
use crate::domain::DocumentStatus;
use crate::error::ServiceResult;
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::documents::{self as service, Reprocessed, Reprocessing, WhenProcessed};

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DocumentProcessingRequest {
    /// Process a document that is already processed (default false).
    #[serde(default)]
    pub reprocess: bool,
    /// New chunk size (100 to 10000); default: the document's.
    #[schema(minimum = 100, maximum = 10000)]
    pub chunk_size: Option<i64>,
    /// New chunk overlap (0 to 2000); default: the document's.
    #[schema(minimum = 0, maximum = 2000)]
    pub chunk_overlap: Option<i64>,
    /// Embed the chunks when an embedding model is configured (default true).
    pub generate_embeddings: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentProcessingResponse {
    pub document_id: String,
    pub status: DocumentStatus,
    pub message: String,
    pub processing_started_at: Option<DateTime<Utc>>,
}

/// Chunks (and embeds) the document's stored text again, within the request.
async fn reprocess(
    state: &AppState,
    caller: &Caller,
    document_id: &str,
    request: DocumentProcessingRequest,
) -> ServiceResult<DocumentProcessingResponse> {
    let document = service::owned(state, &caller.user_id, document_id).await?;
    // Settings the request leaves out are the document's own.
    let mut v = Violations::new();
    let (chunk_size, chunk_overlap) = check_chunking(
        &mut v,
        Some(request.chunk_size.unwrap_or(i64::from(document.chunk_size))),
        Some(
            request
                .chunk_overlap
                .unwrap_or(i64::from(document.chunk_overlap)),
        ),
    );
    v.finish()?;
    let how = Reprocessing {
        chunk_size,
        chunk_overlap,
        when_processed: if request.reprocess {
            WhenProcessed::ProcessAgain
        } else {
            WhenProcessed::Keep
        },
        embeddings: if request.generate_embeddings.unwrap_or(true) {
            Embeddings::Generate
        } else {
            Embeddings::Skip
        },
    };
    let (document, message) = match service::reprocess(state, document, how).await? {
        Reprocessed::AlreadyProcessed(document) => (
            document,
            "The document is already processed; send `reprocess: true` to process it again."
                .to_owned(),
        ),
        Reprocessed::Ran(document) => {
            let message = match &document.processing_error {
                Some(error) => format!("Processing failed: {error}"),
                None if document.chunk_count == 1 => "Processed into 1 chunk.".to_owned(),
                None => format!("Processed into {} chunks.", document.chunk_count),
            };
            (document, message)
        }
    };
    Ok(DocumentProcessingResponse {
        document_id: document.id,
        status: document.status,
        message,
        processing_started_at: document.processing_started_at,
    })
}

#[utoipa::path(
    post, path = "/api/v1/documents/{document_id}/process", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID")),
    request_body = DocumentProcessingRequest,
    responses(
        (status = 200, description = "Processed within the request (or already processed)", body = DocumentProcessingResponse),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another processing of the document is under way", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid settings", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn process_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
    ApiJson(body): ApiJson<DocumentProcessingRequest>,
) -> ServiceResult<Json<DocumentProcessingResponse>> {
    reprocess(&state, &caller, &document_id, body)
        .await
        .map(Json)
}

#[utoipa::path(
    post, path = "/api/v1/documents/{document_id}/reprocess", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID")),
    responses(
        (status = 200, description = "Chunked and embedded again with its settings, within the request", body = DocumentProcessingResponse),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another processing of the document is under way", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn reprocess_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
) -> ServiceResult<Json<DocumentProcessingResponse>> {
    let request = DocumentProcessingRequest {
        reprocess: true,
        ..Default::default()
    };
    reprocess(&state, &caller, &document_id, request)
        .await
        .map(Json)
}
