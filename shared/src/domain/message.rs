use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tree::Parent;
use super::{JsonObject, Lineage};

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
    /// Its ancestors' sequence numbers; `None` when they were not known as it was stored
    /// (before messages kept them, or appended after a message the writer had not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Lineage>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub total_tokens: Option<u32>,
    pub model_used: Option<String>,
    pub provider_used: Option<String>,
    pub response_time_ms: Option<u64>,
    pub cost: Option<f64>,
    pub finish_reason: Option<FinishReason>,
    /// `streaming` while its turn is still writing it: the content is the answer so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// Workflow details kept with the message (citations, tool calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<JsonObject>,
    pub created_at: DateTime<Utc>,
    /// The user's rating of an assistant message, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The model reached its token limit.
    Length,
    ToolCalls,
    ContentFilter,
    /// Someone asked the turn to stop; the answer is what was generated until then.
    Cancelled,
    /// The turn ended without finishing its answer (its function stopped mid-turn).
    Interrupted,
    /// The model or the turn failed midway; the answer is what came before.
    Error,
    /// A reason no other variant names, as a provider may give one.
    #[serde(other)]
    Other,
}

impl FinishReason {
    /// The reason a provider gave, in Chat Completions' words.
    pub fn from_provider(reason: &str) -> Self {
        match reason {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "tool_calls" | "function_call" => Self::ToolCalls,
            "content_filter" => Self::ContentFilter,
            _ => Self::Other,
        }
    }
}

/// Where a stored message is in its life; a finished one has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Its turn is still generating it.
    Streaming,
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

impl Message {
    pub fn is_streaming(&self) -> bool {
        self.status == Some(MessageStatus::Streaming)
    }

    /// The lineage of a message that follows this one, when this one's is known.
    pub fn lineage_below(&self) -> Option<Lineage> {
        self.lineage
            .as_ref()
            .map(|lineage| lineage.then(self.sequence_number))
    }
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
    /// The lineage of the message it follows, and that message; `None` when the store derives
    /// it (the parent is in the same append, or unknown).
    pub lineage: Option<Lineage>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub model_used: Option<String>,
    pub provider_used: Option<String>,
    pub response_time_ms: Option<u64>,
    pub cost: Option<f64>,
    pub finish_reason: Option<FinishReason>,
    pub status: Option<MessageStatus>,
    pub metadata: Option<JsonObject>,
}

impl MessageDraft {
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            parent: None,
            lineage: None,
            prompt_tokens: None,
            completion_tokens: None,
            model_used: None,
            provider_used: None,
            response_time_ms: None,
            cost: None,
            finish_reason: None,
            status: None,
            metadata: None,
        }
    }

    /// An assistant answer that its turn is about to generate, stored empty beside the
    /// question so that readers can follow it and anyone can stop it.
    pub fn streaming_answer() -> Self {
        Self {
            status: Some(MessageStatus::Streaming),
            ..Self::new(MessageRole::Assistant, "")
        }
    }

    pub fn total_tokens(&self) -> Option<u32> {
        match (self.prompt_tokens, self.completion_tokens) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
        }
    }

    /// The finished message that takes `answer`'s place: its id, position and creation time,
    /// and its parent unless the draft names another (tool results stored meanwhile).
    pub fn finishing(mut self, answer: &Message) -> Message {
        let parent = match self.parent.take() {
            Some(parent) => parent,
            None => {
                self.lineage.clone_from(&answer.lineage);
                answer.parent.clone()
            }
        };
        Message {
            id: answer.id.clone(),
            created_at: answer.created_at,
            ..self.into_message(&answer.conversation_id, answer.sequence_number, parent)
        }
    }

    /// The draft placed after `parent`, whose own lineage, when it is a message, the store
    /// knows only if it is in the same append: [`Self::following`] says it.
    pub fn after(mut self, parent: Parent) -> Self {
        if parent == Parent::Root {
            self.lineage = Some(Lineage::root());
        }
        self.parent = Some(parent);
        self
    }

    /// The draft placed after `parent`, with the lineage that gives it.
    pub fn following(mut self, parent: &Message) -> Self {
        self.lineage = parent.lineage_below();
        self.parent = Some(Parent::Message(parent.id.clone()));
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
            lineage: self.lineage,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens,
            model_used: self.model_used,
            provider_used: self.provider_used,
            response_time_ms: self.response_time_ms,
            cost: self.cost,
            finish_reason: self.finish_reason,
            status: self.status,
            metadata: self.metadata,
            created_at: super::now(),
            feedback: None,
        }
    }
}
