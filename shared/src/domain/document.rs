//! Documents and their chunks as clients see them (Chatter's `DocumentResponse` and
//! `DocumentChunkResponse`), independent of storage.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::JsonObject;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DocumentStatus {
    Pending,
    Processing,
    Processed,
    Failed,
    Archived,
}

/// The contract's document types. Uploads accept text, Markdown, HTML and PDF; the others
/// exist so filters written against the contract parse.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DocumentType {
    Pdf,
    Text,
    Markdown,
    Html,
    Doc,
    Docx,
    Rtf,
    Odt,
    Csv,
    Json,
    Xml,
    Other,
}

impl DocumentType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Text => "text",
            Self::Markdown => "markdown",
            Self::Html => "html",
            Self::Doc => "doc",
            Self::Docx => "docx",
            Self::Rtf => "rtf",
            Self::Odt => "odt",
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Xml => "xml",
            Self::Other => "other",
        }
    }
}

impl DocumentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Processed => "processed",
            Self::Failed => "failed",
            Self::Archived => "archived",
        }
    }
}

/// A stored document: its metadata and where its processing stands. The text itself lives
/// apart (see `store::keys`), so listing documents never reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    pub id: String,
    pub owner_id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
    /// Recorded for the contract; retrieval and search only ever read the caller's own
    /// documents, public or not.
    pub is_public: bool,
    /// The uploaded name, reduced to a safe base name.
    pub filename: String,
    pub original_filename: String,
    /// Bytes of the uploaded file.
    pub file_size: u64,
    /// SHA-256 of the uploaded file, in hex.
    pub file_hash: String,
    pub mime_type: String,
    pub document_type: DocumentType,
    pub status: DocumentStatus,
    pub processing_started_at: Option<DateTime<Utc>>,
    pub processing_completed_at: Option<DateTime<Utc>>,
    pub processing_error: Option<String>,
    pub chunk_size: u32,
    pub chunk_overlap: u32,
    pub chunk_count: u32,
    /// Starts at 1; each (re)processing adds one.
    pub version: u32,
    pub parent_document_id: Option<String>,
    /// Reads of the document through `GET /documents/{id}`.
    pub view_count: u64,
    /// Searches (`POST /documents/search`) that returned one of its chunks.
    pub search_count: u64,
    pub last_accessed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What an upload decides about a new document; the rest starts as a processing begins.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub is_public: bool,
    /// The uploaded name, already reduced to a safe base name.
    pub filename: String,
    pub file_size: u64,
    pub file_hash: String,
    pub mime_type: String,
    pub document_type: DocumentType,
    pub chunk_size: u32,
    pub chunk_overlap: u32,
}

impl Document {
    /// A new document of `owner_id`, its first processing starting now.
    pub fn create(owner_id: &str, new: NewDocument) -> Self {
        let now = super::now();
        Self {
            id: super::new_id(),
            owner_id: owner_id.to_owned(),
            title: new.title,
            description: new.description,
            tags: new.tags,
            extra_metadata: None,
            is_public: new.is_public,
            original_filename: new.filename.clone(),
            filename: new.filename,
            file_size: new.file_size,
            file_hash: new.file_hash,
            mime_type: new.mime_type,
            document_type: new.document_type,
            status: DocumentStatus::Processing,
            processing_started_at: Some(now),
            processing_completed_at: None,
            processing_error: None,
            chunk_size: new.chunk_size,
            chunk_overlap: new.chunk_overlap,
            chunk_count: 0,
            version: 1,
            parent_document_id: None,
            view_count: 0,
            search_count: 0,
            last_accessed_at: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// What a citation calls the document: its title, else the name it was uploaded under.
    pub fn display_title(&self) -> &str {
        self.title
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(&self.original_filename)
    }
}

/// One piece of a document's text, as it is retrieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DocumentChunk {
    pub id: String,
    pub document_id: String,
    pub content: String,
    pub chunk_index: u32,
    /// Character offsets of the chunk in the document's text (`end_char` exclusive).
    pub start_char: Option<u64>,
    pub end_char: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
    /// Estimated at about four bytes a token, as the chat's prompt budget is.
    pub token_count: Option<u32>,
    pub language: Option<String>,
    pub embedding_model: Option<String>,
    pub embedding_provider: Option<String>,
    pub embedding_created_at: Option<DateTime<Utc>>,
    /// SHA-256 of `content`, in hex.
    pub content_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The fields a client may change after upload; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DocumentPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub extra_metadata: Option<JsonObject>,
    pub is_public: Option<bool>,
}

impl DocumentPatch {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// SHA-256 in lowercase hex, for `file_hash` and `content_hash`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
