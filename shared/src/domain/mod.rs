//! The chat domain: conversations and their messages, FreeChat's characters and chat
//! sessions over them, and the documents retrieval draws on, independent of wire dialect
//! and storage.

mod character;
mod conversation;
mod document;
mod lineage;
mod message;
mod session;
mod tree;
mod workflow;

pub use character::{
    Backend, BackendSettings, Character, CharacterInfo, Persona, QuotaType, Visibility,
};
pub use conversation::{Conversation, ConversationPatch, ConversationStatus, NewConversation};
pub use document::{
    Document, DocumentChunk, DocumentPatch, DocumentStatus, DocumentType, NewDocument, sha256_hex,
};
pub use lineage::Lineage;
pub use message::{
    Feedback, FinishReason, MAX_MESSAGE_CHARS, Message, MessageDraft, MessageRole, MessageStatus,
    Rating, StoredQuestion,
};
pub use session::{ChatSession, ChatSettings, ChatSnapshot, LifetimeUsage, QuotaClaim, QuotaHold};
pub use tree::{BranchView, MessageWindow, Parent, Placement, Tree};
pub use workflow::Workflow;

use chrono::{DateTime, SubsecRound, Utc};

/// Timestamps are kept to the microsecond so that their text form has a fixed width and
/// sorts the same way as the instants themselves.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Ids are UUIDv7: unique without coordination and sortable by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// JSON object fields kept verbatim for the client (`workflow_config`, `extra_metadata`).
pub type JsonObject = serde_json::Map<String, serde_json::Value>;
