//! Chatter's document endpoints: upload (processed within the request), list, read, update,
//! delete, chunks, search, (re)processing, statistics and the stored text.
//!
//! Documents are the caller's own: another user's document is a 404 on every route, and
//! search ranks only the caller's documents, whatever their `is_public`.

use std::collections::{BTreeMap, HashSet};

use axum::extract::State;
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversations::{DeleteResponse, PageQuery};
use crate::AppState;
use crate::auth::Caller;
use crate::documents::chunking::{
    CHUNK_OVERLAP_RANGE, CHUNK_SIZE_RANGE, DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE,
};
use crate::documents::embedding::Embedder;
use crate::documents::retrieval::{self, Method, RetrievalQuery};
use crate::documents::{
    Document, DocumentChunk, DocumentPatch, DocumentStatus, DocumentType, extract, model,
    processing,
};
use crate::domain::JsonObject;
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::store::StoreError;

const MAX_TITLE_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 2_000;
const MAX_FILENAME_CHARS: usize = 255;
const MAX_TAGS: usize = 50;
const MAX_TAG_CHARS: usize = 100;
const MAX_QUERY_CHARS: usize = 1_000;
/// Fields of the upload form other than the file are short; a longer one is refused unread.
const MAX_FORM_FIELD_BYTES: usize = 16 * 1024;
/// Fields a list can be sorted by.
const SORT_FIELDS: &[&str] = &[
    "created_at",
    "updated_at",
    "title",
    "filename",
    "file_size",
    "chunk_count",
    "view_count",
    "search_count",
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/documents", get(list_documents))
        .route("/api/v1/documents/upload", post(upload_document))
        .route("/api/v1/documents/search", post(search_documents))
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
            post(process_document),
        )
        .route(
            "/api/v1/documents/{document_id}/reprocess",
            post(reprocess_document),
        )
        .route(
            "/api/v1/documents/{document_id}/download",
            get(download_document),
        )
}

fn document_not_found() -> ApiError {
    ApiError::NotFound("Document not found.".into())
}

/// One processing at a time, so that a document's chunks are always one processing's.
fn processing_under_way() -> ApiError {
    ApiError::Conflict(
        "The document is being processed; retry when its status is no longer `processing`.".into(),
    )
}

/// Ownership and existence are one question: both answer 404.
fn or_not_found(err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound => document_not_found(),
        other => other.into(),
    }
}

/// The upload form, as the contract describes it (for the OpenAPI document; the handler
/// reads the parts as they come).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct DocumentUploadForm {
    /// The document: text, Markdown, HTML or PDF.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    #[schema(max_length = 255)]
    title: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// A JSON list (`["a","b"]`) or comma-separated (`a, b`).
    tags: Option<String>,
    /// Characters per chunk, 100 to 10000 (default 1000).
    #[schema(minimum = 100, maximum = 10000)]
    chunk_size: Option<i64>,
    /// Characters repeated between neighbouring chunks, 0 to 2000 (default 200).
    #[schema(minimum = 0, maximum = 2000)]
    chunk_overlap: Option<i64>,
    is_public: Option<bool>,
}

/// The uploaded file.
struct UploadedFile {
    filename: String,
    content_type: Option<String>,
    bytes: bytes::Bytes,
}

/// The upload form once read and checked.
struct Upload {
    file: UploadedFile,
    title: Option<String>,
    description: Option<String>,
    tags: Option<Vec<String>>,
    chunk_size: u32,
    chunk_overlap: u32,
    is_public: bool,
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("The upload is larger than this API accepts.".into())
    } else {
        ApiError::BadRequest(format!(
            "The multipart body could not be read: {}.",
            err.body_text()
        ))
    }
}

async fn text_field(field: Field<'_>, name: &str) -> ApiResult<String> {
    let bytes = field.bytes().await.map_err(multipart_error)?;
    if bytes.len() > MAX_FORM_FIELD_BYTES {
        return Err(ApiError::invalid(
            ["body".into(), name.into()],
            format!("must be at most {MAX_FORM_FIELD_BYTES} bytes"),
            "string_too_long",
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::invalid(
            ["body".into(), name.into()],
            "must be UTF-8 text",
            "string_type",
        )
    })
}

/// Tags as a JSON list of strings or comma-separated; trimmed, without blanks or repeats.
fn parse_tags(raw: &str) -> Option<Vec<String>> {
    let raw = raw.trim();
    let tags: Vec<String> = if raw.starts_with('[') {
        serde_json::from_str(raw).ok()?
    } else {
        raw.split(',').map(str::to_owned).collect()
    };
    Some(clean_tags(tags))
}

fn clean_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    tags.into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty() && seen.insert(t.clone()))
        .collect()
}

fn check_tags(v: &mut Violations, tags: Option<&[String]>) {
    if let Some(tags) = tags {
        v.check(
            tags.len() <= MAX_TAGS,
            &["body", "tags"],
            format!("must have at most {MAX_TAGS} tags"),
            "too_long",
        );
        v.check(
            tags.iter().all(|t| t.chars().count() <= MAX_TAG_CHARS),
            &["body", "tags"],
            format!("each tag must have at most {MAX_TAG_CHARS} characters"),
            "string_too_long",
        );
    }
}

fn parse_form_int(v: &mut Violations, raw: Option<&str>, name: &str) -> Option<i64> {
    let raw = raw?.trim();
    let parsed = raw.parse().ok();
    v.check(
        parsed.is_some(),
        &["body", name],
        "must be a valid integer",
        "int_parsing",
    );
    parsed
}

fn parse_form_bool(v: &mut Violations, raw: Option<&str>, name: &str) -> Option<bool> {
    let parsed = match raw?.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    };
    v.check(
        parsed.is_some(),
        &["body", name],
        "must be a valid boolean",
        "bool_parsing",
    );
    parsed
}

/// Checks chunking settings the way the contract bounds them.
fn check_chunking(v: &mut Violations, size: Option<i64>, overlap: Option<i64>) -> (u32, u32) {
    v.range(
        size,
        CHUNK_SIZE_RANGE.0,
        CHUNK_SIZE_RANGE.1,
        &["body", "chunk_size"],
    );
    v.range(
        overlap,
        CHUNK_OVERLAP_RANGE.0,
        CHUNK_OVERLAP_RANGE.1,
        &["body", "chunk_overlap"],
    );
    let size = size.map_or(DEFAULT_CHUNK_SIZE, |s| {
        s.clamp(1, i64::from(u32::MAX)) as u32
    });
    let overlap = overlap.map_or(DEFAULT_CHUNK_OVERLAP.min(size / 2), |o| {
        o.clamp(0, i64::from(u32::MAX)) as u32
    });
    v.check(
        overlap < size,
        &["body", "chunk_overlap"],
        "must be less than chunk_size",
        "less_than",
    );
    (size, overlap)
}

/// A file name without directories or control characters, at most 255 characters.
fn safe_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILENAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "untitled".into()
    } else {
        clean.to_owned()
    }
}

/// Reads the form's parts in order, then checks them all at once.
async fn read_upload(mut multipart: Multipart) -> ApiResult<Upload> {
    let mut file = None;
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut v = Violations::new();
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        match name.as_str() {
            "file" => {
                let filename = safe_filename(field.file_name().unwrap_or_default());
                let content_type = field.content_type().map(str::to_owned);
                let bytes = field.bytes().await.map_err(multipart_error)?;
                v.check(
                    file.is_none(),
                    &["body", "file"],
                    "send one file per upload",
                    "value_error",
                );
                file = Some(UploadedFile {
                    filename,
                    content_type,
                    bytes,
                });
            }
            "title" | "description" | "tags" | "chunk_size" | "chunk_overlap" | "is_public" => {
                let value = text_field(field, &name).await?;
                fields.insert(name, value);
            }
            // Parts the contract does not name are skipped, as unknown JSON fields are.
            _ => {}
        }
    }
    let get = |name: &str| fields.get(name).map(String::as_str);
    v.check(
        file.is_some(),
        &["body", "file"],
        "Field required",
        "missing",
    );
    if let Some(file) = &file {
        v.check(
            !file.bytes.is_empty(),
            &["body", "file"],
            "the file is empty",
            "value_error",
        );
    }
    // A blank title is none: the file's name stands in for it.
    v.length(get("title"), 0, MAX_TITLE_CHARS, &["body", "title"]);
    let title = get("title").map(str::trim).filter(|t| !t.is_empty());
    v.length(
        get("description"),
        0,
        MAX_DESCRIPTION_CHARS,
        &["body", "description"],
    );
    let description = get("description").filter(|d| !d.trim().is_empty());
    let tags = get("tags").map(parse_tags);
    v.check(
        !matches!(tags, Some(None)),
        &["body", "tags"],
        "must be a JSON list of strings or comma-separated",
        "value_error",
    );
    let tags = tags.flatten().filter(|t| !t.is_empty());
    check_tags(&mut v, tags.as_deref());
    let size = parse_form_int(&mut v, get("chunk_size"), "chunk_size");
    let overlap = parse_form_int(&mut v, get("chunk_overlap"), "chunk_overlap");
    let (chunk_size, chunk_overlap) = check_chunking(&mut v, size, overlap);
    let is_public = parse_form_bool(&mut v, get("is_public"), "is_public").unwrap_or(false);
    v.finish()?;
    let file = file.ok_or_else(|| {
        ApiError::invalid(["body".into(), "file".into()], "Field required", "missing")
    })?;
    Ok(Upload {
        file,
        title: title.map(str::to_owned),
        description: description.map(str::to_owned),
        tags,
        chunk_size,
        chunk_overlap,
        is_public,
    })
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
) -> ApiResult<(StatusCode, Json<Document>)> {
    let multipart = multipart.map_err(|_| {
        ApiError::UnsupportedMediaType(
            "Send the upload as multipart/form-data with a `file` part.".into(),
        )
    })?;
    let upload = read_upload(multipart).await?;
    let file = upload.file;
    let kind = extract::document_type(&file.filename, file.content_type.as_deref(), &file.bytes)?;
    let file_size = file.bytes.len() as u64;
    let file_hash = model::sha256_hex(&file.bytes);
    let text = extract::extract_text(kind, file.bytes).await?;
    let chunks = processing::chunk_text(&text, upload.chunk_size, upload.chunk_overlap)?;
    let now = crate::domain::now();
    let document = Document {
        id: crate::domain::new_id(),
        owner_id: caller.user_id,
        title: upload.title,
        description: upload.description,
        tags: upload.tags,
        extra_metadata: None,
        is_public: upload.is_public,
        filename: file.filename.clone(),
        original_filename: file.filename,
        file_size,
        file_hash,
        mime_type: extract::mime_type(kind).to_owned(),
        document_type: kind,
        status: DocumentStatus::Processing,
        processing_started_at: Some(now),
        processing_completed_at: None,
        processing_error: None,
        chunk_size: upload.chunk_size,
        chunk_overlap: upload.chunk_overlap,
        chunk_count: 0,
        version: 1,
        parent_document_id: None,
        view_count: 0,
        search_count: 0,
        last_accessed_at: None,
        created_at: now,
        updated_at: now,
    };
    // The document exists (as `processing`) before its text and chunks, so an interrupted
    // upload leaves something the owner can see and delete, never unreachable chunks.
    state.store.create_document(&document).await?;
    state.store.put_document_text(&document.id, &text).await?;
    let document = processing::process(&state, document, chunks, true, false).await?;
    Ok((StatusCode::CREATED, Json(document)))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
enum SortOrder {
    Asc,
    Desc,
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

/// Whether a document carries any of the tags (no tags asked for: any document).
fn has_any_tag(document: &Document, tags: Option<&[String]>) -> bool {
    tags.is_none_or(|wanted| {
        document
            .tags
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|t| wanted.contains(t))
    })
}

fn sort_documents(documents: &mut [Document], sort_by: &str, order: SortOrder) {
    documents.sort_by(|a, b| {
        let ordering = match sort_by {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "title" => a
                .display_title()
                .to_lowercase()
                .cmp(&b.display_title().to_lowercase()),
            "filename" => a.filename.cmp(&b.filename),
            "file_size" => a.file_size.cmp(&b.file_size),
            "chunk_count" => a.chunk_count.cmp(&b.chunk_count),
            "view_count" => a.view_count.cmp(&b.view_count),
            "search_count" => a.search_count.cmp(&b.search_count),
            _ => a.created_at.cmp(&b.created_at),
        }
        .then_with(|| a.id.cmp(&b.id));
        match order {
            SortOrder::Asc => ordering,
            SortOrder::Desc => ordering.reverse(),
        }
    });
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
) -> ApiResult<Json<DocumentListResponse>> {
    let (limit, offset) = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page(50)?;
    let sort_by = query.sort_by.as_deref().unwrap_or("created_at");
    let mut v = Violations::new();
    v.check(
        SORT_FIELDS.contains(&sort_by),
        &["query", "sort_by"],
        format!("must be one of {}", SORT_FIELDS.join(", ")),
        "enum",
    );
    v.finish()?;
    let tags = query_list(&uri, "tags");
    let mut documents = match query.owner_id.as_deref() {
        Some(owner) if owner != caller.user_id => Vec::new(),
        _ => state.store.documents(&caller.user_id).await?,
    };
    documents.retain(|d| {
        query.status.is_none_or(|s| d.status == s)
            && query.document_type.is_none_or(|t| d.document_type == t)
            && has_any_tag(d, tags.as_deref())
    });
    sort_documents(
        &mut documents,
        sort_by,
        query.sort_order.unwrap_or(SortOrder::Desc),
    );
    let total_count = documents.len();
    let documents = documents.into_iter().skip(offset).take(limit).collect();
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
) -> ApiResult<Json<Document>> {
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
    type Error = ApiError;

    fn try_from(body: DocumentUpdate) -> Result<Self, ApiError> {
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
) -> ApiResult<Json<Document>> {
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
) -> ApiResult<Json<DeleteResponse>> {
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
) -> ApiResult<Json<DocumentChunksResponse>> {
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
) -> ApiResult<Json<DocumentSearchResponse>> {
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
) -> ApiResult<DocumentProcessingResponse> {
    let mut document = state
        .store
        .document(&caller.user_id, document_id)
        .await
        .map_err(or_not_found)?;
    let mut v = Violations::new();
    let (size, overlap) = check_chunking(
        &mut v,
        Some(request.chunk_size.unwrap_or(i64::from(document.chunk_size))),
        Some(
            request
                .chunk_overlap
                .unwrap_or(i64::from(document.chunk_overlap)),
        ),
    );
    v.finish()?;
    if document.status == DocumentStatus::Processed && !request.reprocess {
        return Ok(DocumentProcessingResponse {
            document_id: document.id,
            status: document.status,
            message:
                "The document is already processed; send `reprocess: true` to process it again."
                    .into(),
            processing_started_at: document.processing_started_at,
        });
    }
    let now = crate::domain::now();
    if document.status == DocumentStatus::Processing
        && document
            .processing_started_at
            .is_some_and(|started| now - started < processing::PROCESSING_LEASE)
    {
        return Err(processing_under_way());
    }
    let text = state.store.document_text(document_id).await?;
    let chunks = processing::chunk_text(&text, size, overlap)?;
    let read_version = document.version;
    document.status = DocumentStatus::Processing;
    document.processing_started_at = Some(now);
    document.processing_completed_at = None;
    document.processing_error = None;
    document.chunk_size = size;
    document.chunk_overlap = overlap;
    document.version += 1;
    document.updated_at = now;
    state
        .store
        .save_processing(&document, read_version)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => processing_under_way(),
            other => or_not_found(other),
        })?;
    let embed = request.generate_embeddings.unwrap_or(true);
    let document = processing::process(state, document, chunks, embed, true).await?;
    let message = match &document.processing_error {
        Some(error) => format!("Processing failed: {error}"),
        None if document.chunk_count == 1 => "Processed into 1 chunk.".to_owned(),
        None => format!("Processed into {} chunks.", document.chunk_count),
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
) -> ApiResult<Json<DocumentProcessingResponse>> {
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
) -> ApiResult<Json<DocumentProcessingResponse>> {
    let request = DocumentProcessingRequest {
        reprocess: true,
        ..Default::default()
    };
    reprocess(&state, &caller, &document_id, request)
        .await
        .map(Json)
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
) -> ApiResult<Json<DocumentStatsResponse>> {
    let documents = state.store.documents(&caller.user_id).await?;
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
    let average_ms = (!durations.is_empty())
        .then(|| durations.iter().sum::<i64>() as f64 / durations.len() as f64);
    let stats = serde_json::json!({
        "average_processing_time_ms": average_ms,
        "total_views": documents.iter().map(|d| d.view_count).sum::<u64>(),
        "total_searches": documents.iter().map(|d| d.search_count).sum::<u64>(),
        "embedding_model": Embedder::from_state(&state).map(|e| e.model),
    });
    Ok(Json(DocumentStatsResponse {
        total_documents: documents.len(),
        total_chunks: documents.iter().map(|d| u64::from(d.chunk_count)).sum(),
        total_size_bytes: documents.iter().map(|d| d.file_size).sum(),
        documents_by_status: by_status,
        documents_by_type: by_type,
        processing_stats: stats.as_object().cloned().unwrap_or_default(),
    }))
}

/// A file name for a header: ASCII letters, digits and `._-` kept, the rest `_`.
fn header_filename(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
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
) -> ApiResult<Response> {
    let document = state
        .store
        .document(&caller.user_id, &document_id)
        .await
        .map_err(or_not_found)?;
    let text = state.store.document_text(&document_id).await?;
    let mut filename = header_filename(&document.original_filename);
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
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_come_as_a_json_list_or_comma_separated() {
        assert_eq!(
            parse_tags(r#"["a", " b ", "a", ""]"#),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_tags("x, y,,x"), Some(vec!["x".into(), "y".into()]));
        assert_eq!(parse_tags("[1, 2]"), None);
    }

    #[test]
    fn file_names_lose_their_directories_and_control_characters() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("C:\\docs\\report.pdf"), "report.pdf");
        assert_eq!(safe_filename("a\u{0}b.txt"), "ab.txt");
        assert_eq!(safe_filename(".."), "untitled");
        assert_eq!(header_filename("résumé \"x\".md"), "r_sum___x_.md");
    }
}
