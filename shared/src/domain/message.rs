use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::JsonObject;
use super::tree::Parent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    System,
    Tool,
}

/// A stored message. `sequence_number` is unique and increasing within its conversation and
/// never reused, even after a delete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub role: MessageRole,
    pub content: String,
    pub sequence_number: u64,
    /// The message it follows in its conversation's tree.
    #[serde(default, skip_serializing_if = "Parent::is_unrecorded")]
    pub parent: Parent,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub total_tokens: Option<u32>,
    pub model_used: Option<String>,
    pub provider_used: Option<String>,
    pub response_time_ms: Option<u64>,
    pub cost: Option<f64>,
    pub finish_reason: Option<String>,
    /// Workflow details kept with the message (citations, tool calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
    pub created_at: DateTime<Utc>,
    /// The user's rating of an assistant message, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

/// A closed set: a rating is a thumb up or down, nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

/// What a user said about an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Feedback {
    pub rating: Rating,
    pub comment: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl Feedback {
    /// The longest comment kept with a rating.
    pub const MAX_COMMENT_CHARS: usize = 2_000;

    pub fn new(rating: Rating, comment: Option<String>) -> Self {
        Self {
            rating,
            comment,
            updated_at: super::now(),
        }
    }
}

/// The longest message either dialect takes: it keeps a message, with its metadata, well
/// inside DynamoDB's 400 KB item.
pub const MAX_MESSAGE_CHARS: usize = 64_000;

/// Where a turn's question was stored: a turn that fails after storing it says so, and a
/// retry of the same request answers it there instead of asking it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredQuestion {
    pub conversation_id: String,
    pub message_id: String,
}

/// A message before the store gives it its place in the conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDraft {
    pub role: MessageRole,
    pub content: String,
    /// The message it follows. `None`: the one before it in the same append, or for the
    /// first, the conversation's active leaf as the store finds it (a turn names its parent,
    /// so that parallel turns on one leaf become siblings instead of following each other).
    pub parent: Option<Parent>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub model_used: Option<String>,
    pub provider_used: Option<String>,
    pub response_time_ms: Option<u64>,
    pub cost: Option<f64>,
    pub finish_reason: Option<String>,
    pub metadata: Option<JsonObject>,
}

impl MessageDraft {
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            parent: None,
            prompt_tokens: None,
            completion_tokens: None,
            model_used: None,
            provider_used: None,
            response_time_ms: None,
            cost: None,
            finish_reason: None,
            metadata: None,
        }
    }

    pub fn total_tokens(&self) -> Option<u32> {
        match (self.prompt_tokens, self.completion_tokens) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
        }
    }

    /// The draft placed after `parent`.
    pub fn after(mut self, parent: Parent) -> Self {
        self.parent = Some(parent);
        self
    }

    pub fn into_message(
        self,
        conversation_id: &str,
        sequence_number: u64,
        parent: Parent,
    ) -> Message {
        let total_tokens = self.total_tokens();
        Message {
            id: super::new_id(),
            conversation_id: conversation_id.to_owned(),
            role: self.role,
            content: self.content,
            sequence_number,
            parent,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens,
            model_used: self.model_used,
            provider_used: self.provider_used,
            response_time_ms: self.response_time_ms,
            cost: self.cost,
            finish_reason: self.finish_reason,
            metadata: self.metadata,
            created_at: super::now(),
            feedback: None,
        }
    }
}
