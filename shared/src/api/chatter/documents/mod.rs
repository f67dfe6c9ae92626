//! Chatter's document endpoints: upload (processed within the request), list, read, update,
//! delete, chunks, search, (re)processing, statistics and the stored text.
//!
//! Documents are the caller's own: another user's document is a 404 on every route, and
//! search ranks only the caller's documents, whatever their `is_public`.

mod form;
pub mod process;
pub mod search;

use std::collections::BTreeMap;

use axum::extract::State;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversations::{DeleteResponse, PageQuery};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{
    Document, DocumentChunk, DocumentPatch, DocumentStatus, DocumentType, JsonObject,
};
use crate::error::{ServiceError, ServiceResult};
use crate::http::download::attachment;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::documents::{self as service, ListFilter, SortField, SortOrder, clean_tags};
use crate::store::StoreError;
use form::{DocumentUploadForm, check_tags};

const MAX_TITLE_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 2_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/documents", get(list_documents))
        .route("/api/v1/documents/upload", post(upload_document))
        .route("/api/v1/documents/search", post(search::search_documents))
        .route("/api/v1/documents/stats/overview", get(document_stats))
        .route(
            "/api/v1/documents/{document_id}",
            get(get_document)
                .put(update_document)
                .delete(delete_document),
        )
        .route(
            "/api/v1/documents/{document_id}/chunks",
            get(document_chunks),
        )
        .route(
            "/api/v1/documents/{document_id}/process",
            post(process::process_document),
        )
        .route(
            "/api/v1/documents/{document_id}/reprocess",
            post(process::reprocess_document),
        )
        .route(
            "/api/v1/documents/{document_id}/download",
            get(download_document),
        )
}

fn document_not_found() -> ServiceError {
    ServiceError::NotFound("Document not found.".into())
}

/// Ownership and existence are one question: both answer 404.
fn or_not_found(err: StoreError) -> ServiceError {
    match err {
        StoreError::NotFound => document_not_found(),
        other => other.into(),
    }
}

#[utoipa::path(
    post, path = "/api/v1/documents/upload", tag = "documents",
    request_body(content = DocumentUploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Stored and processed: `status` is `processed`, or `failed` with `processing_error` when embedding failed", body = Document),
        (status = 413, description = "The upload or its text is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not multipart, or not a text, Markdown, HTML or PDF file", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid form fields, or a file without readable text", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn upload_document(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Result<Multipart, MultipartRejection>,
) -> ServiceResult<(StatusCode, Json<Document>)> {
    let multipart = multipart.map_err(|_| {
        ServiceError::UnsupportedMediaType(
            "Send the upload as multipart/form-data with a `file` part.".into(),
        )
    })?;
    let upload = form::read_upload(multipart).await?;
    let document = service::upload(&state, &caller.user_id, upload).await?;
    Ok((StatusCode::CREATED, Json(document)))
}

/// The list's filters and paging; `tags` may repeat (`?tags=a&tags=b`) and is read apart.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListDocumentsQuery {
    /// Only documents in this status.
    #[param(value_type = Option<DocumentStatus>)]
    status: Option<DocumentStatus>,
    /// Only documents of this type.
    #[param(value_type = Option<DocumentType>)]
    document_type: Option<DocumentType>,
    /// Only the caller's own documents are ever listed; another owner lists nothing.
    owner_id: Option<String>,
    /// Number of results (1 to 100, default 50).
    limit: Option<i64>,
    /// Number of results to skip.
    offset: Option<i64>,
    /// `created_at` (default), `updated_at`, `title`, `filename`, `file_size`,
    /// `chunk_count`, `view_count` or `search_count`.
    sort_by: Option<String>,
    /// `asc` or `desc` (default).
    #[param(value_type = Option<String>, pattern = "^(asc|desc)$")]
    sort_order: Option<SortOrder>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentListResponse {
    pub documents: Vec<Document>,
    pub total_count: usize,
    pub limit: usize,
    pub offset: usize,
}

/// Every value of a repeatable query parameter, each also split on commas.
fn query_list(uri: &Uri, name: &str) -> Option<Vec<String>> {
    let values: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == name || *key == format!("{name}[]"))
        .flat_map(|(_, value)| value.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let values = clean_tags(values);
    (!values.is_empty()).then_some(values)
}

#[utoipa::path(
    get, path = "/api/v1/documents", tag = "documents",
    params(
        ListDocumentsQuery,
        ("tags" = Option<Vec<String>>, Query, description = "Only documents with any of these tags (repeat the parameter, or separate with commas)"),
    ),
    responses(
        (status = 200, description = "A page of the caller's documents", body = DocumentListResponse),
        (status = 422, description = "Invalid filters or paging", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    ApiQuery(query): ApiQuery<ListDocumentsQuery>,
) -> ServiceResult<Json<DocumentListResponse>> {
    let (limit, offset) = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page(50)?;
    let sort_by = query.sort_by.as_deref().unwrap_or("created_at");
    let sort_field = SortField::named(sort_by);
    let mut v = Violations::new();
    v.check(
        sort_field.is_some(),
        &["query", "sort_by"],
        format!("must be one of {}", SortField::NAMES.join(", ")),
        "enum",
    );
    v.finish()?;
    let filter = ListFilter {
        status: query.status,
        document_type: query.document_type,
        owner_id: query.owner_id.as_deref(),
        tags: query_list(&uri, "tags"),
        sort_by: sort_field.unwrap_or(SortField::CreatedAt),
        order: query.sort_order.unwrap_or(SortOrder::Desc),
    };
    let (documents, total_count) =
        service::list(&state, &caller.user_id, filter, limit, offset).await?;
    Ok(Json(DocumentListResponse {
        documents,
        total_count,
        limit,
        offset,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/documents/{document_id}", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID")),
    responses(
        (status = 200, description = "The document (its view count includes this read)", body = Document),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
) -> ServiceResult<Json<Document>> {
    let document = state
        .store
        .record_document_view(&caller.user_id, &document_id)
        .await
        .map_err(or_not_found)?;
    Ok(Json(document))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DocumentUpdate {
    #[schema(min_length = 1, max_length = 255)]
    pub title: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
    pub is_public: Option<bool>,
}

impl TryFrom<DocumentUpdate> for DocumentPatch {
    type Error = ServiceError;

    fn try_from(body: DocumentUpdate) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        v.text(body.title.as_deref(), MAX_TITLE_CHARS, &["body", "title"]);
        let title = body.title.as_deref().map(str::trim);
        v.length(
            body.description.as_deref(),
            0,
            MAX_DESCRIPTION_CHARS,
            &["body", "description"],
        );
        // Counted as sent, as the document bounds them; blanks and repeats are dropped after.
        check_tags(&mut v, body.tags.as_deref());
        let tags = body.tags.map(clean_tags);
        v.storable_json(body.extra_metadata.as_ref(), &["body", "extra_metadata"]);
        v.finish()?;
        Ok(Self {
            title: title.map(str::to_owned),
            description: body.description,
            tags,
            extra_metadata: body.extra_metadata,
            is_public: body.is_public,
        })
    }
}

#[utoipa::path(
    put, path = "/api/v1/documents/{document_id}", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID")),
    request_body = DocumentUpdate,
    responses(
        (status = 200, description = "The updated document; absent fields are unchanged", body = Document),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
    ApiJson(body): ApiJson<DocumentUpdate>,
) -> ServiceResult<Json<Document>> {
    let patch: DocumentPatch = body.try_into()?;
    let document = if patch.is_empty() {
        state.store.document(&caller.user_id, &document_id).await
    } else {
        state
            .store
            .update_document(&caller.user_id, &document_id, &patch)
            .await
    }
    .map_err(or_not_found)?;
    Ok(Json(document))
}

#[utoipa::path(
    delete, path = "/api/v1/documents/{document_id}", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID")),
    responses(
        (status = 200, description = "Deleted with its text and chunks", body = DeleteResponse),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
) -> ServiceResult<Json<DeleteResponse>> {
    state
        .store
        .delete_document(&caller.user_id, &document_id)
        .await
        .map_err(or_not_found)?;
    Ok(Json(DeleteResponse {
        message: "Document deleted successfully".into(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentChunksResponse {
    pub chunks: Vec<DocumentChunk>,
    pub total_count: u32,
    pub limit: usize,
    pub offset: usize,
}

#[utoipa::path(
    get, path = "/api/v1/documents/{document_id}/chunks", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID"), PageQuery),
    responses(
        (status = 200, description = "A page of the document's chunks in order (default 50)", body = DocumentChunksResponse),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid paging", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn document_chunks(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ServiceResult<Json<DocumentChunksResponse>> {
    let (limit, offset) = query.page(50)?;
    // The ownership check and the page run together; the page is dropped unless it is the
    // caller's.
    let (document, chunks) = tokio::try_join!(
        state.store.document(&caller.user_id, &document_id),
        state.store.chunk_page(&document_id, limit, offset)
    )
    .map_err(or_not_found)?;
    Ok(Json(DocumentChunksResponse {
        chunks,
        total_count: document.chunk_count,
        limit,
        offset,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentStatsResponse {
    pub total_documents: usize,
    pub total_chunks: u64,
    pub total_size_bytes: u64,
    pub documents_by_status: BTreeMap<String, usize>,
    pub documents_by_type: BTreeMap<String, usize>,
    /// Average processing time, views, searches, and the embedding model in use (if any).
    #[schema(value_type = Object)]
    pub processing_stats: JsonObject,
}

#[utoipa::path(
    get, path = "/api/v1/documents/stats/overview", tag = "documents",
    responses(
        (status = 200, description = "Counts over the caller's documents", body = DocumentStatsResponse),
    ),
    security(("bearer" = []))
)]
pub async fn document_stats(
    State(state): State<AppState>,
    caller: Caller,
) -> ServiceResult<Json<DocumentStatsResponse>> {
    let overview = service::overview(&state, &caller.user_id).await?;
    let stats = serde_json::json!({
        "average_processing_time_ms": overview.average_processing_ms,
        "total_views": overview.views,
        "total_searches": overview.searches,
        "embedding_model": overview.embedding_model,
    });
    Ok(Json(DocumentStatsResponse {
        total_documents: overview.documents,
        total_chunks: overview.chunks,
        total_size_bytes: overview.size_bytes,
        documents_by_status: overview.by_status,
        documents_by_type: overview.by_type,
        processing_stats: stats.as_object().cloned().unwrap_or_default(),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/documents/{document_id}/download", tag = "documents",
    params(("document_id" = String, Path, description = "Document ID")),
    responses(
        (status = 200, description = "The document's stored text (a PDF's or HTML page's extracted text; the original bytes are not kept)", body = String, content_type = "text/plain"),
        (status = 404, description = "No such document of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn download_document(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(document_id): ApiPath<String>,
) -> ServiceResult<Response> {
    let (document, text) = service::text(&state, &caller.user_id, &document_id).await?;
    let mut filename = document.original_filename;
    if matches!(
        document.document_type,
        DocumentType::Pdf | DocumentType::Html
    ) {
        filename.push_str(".txt");
    }
    let content_type = match document.document_type {
        DocumentType::Markdown => "text/markdown; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&filename)),
        ],
        text,
    )
        .into_response())
}
