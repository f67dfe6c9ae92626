//! The chat domain: conversations and their messages, independent of wire dialect and storage.

mod conversation;
mod message;

pub use conversation::{Conversation, ConversationPatch, ConversationStatus, NewConversation};
pub use message::{Message, MessageDraft, MessageRole};

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
