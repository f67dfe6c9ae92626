//! Chatter's response shapes: what its clients read, built from the domain's conversations and
//! messages so that stored items and the wire can change apart.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{
    Conversation, ConversationStatus, Feedback, FinishReason, JsonObject, Message, MessageRole,
    MessageStatus, Placement, Tree,
};

/// A conversation as Chatter's clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationResponse {
    pub id: String,
    pub user_id: String,
    pub title: String,
    pub description: Option<String>,
    pub profile_id: Option<String>,
    pub status: ConversationStatus,
    pub llm_provider: Option<String>,
    pub llm_model: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub enable_retrieval: bool,
    pub message_count: u64,
    pub total_tokens: u64,
    pub total_cost: f64,
    pub system_prompt: Option<String>,
    pub context_window: u32,
    pub memory_enabled: bool,
    pub memory_strategy: Option<String>,
    pub retrieval_limit: u32,
    pub retrieval_score_threshold: f64,
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
    #[schema(value_type = Option<Object>)]
    pub workflow_config: Option<JsonObject>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_message_at: Option<DateTime<Utc>>,
    /// The leaf of the active branch: what a turn without `edit_message_id` or
    /// `regenerate_message_id` follows. Null before the first message (and, in a list, for a
    /// conversation that predates branches).
    pub active_message_id: Option<String>,
}

impl ConversationResponse {
    /// The conversation with its active leaf as its messages place it.
    pub fn in_tree(conversation: Conversation, tree: &Tree) -> Self {
        let leaf = tree
            .active_leaf(conversation.active_message_id.as_deref())
            .map(str::to_owned);
        Self {
            active_message_id: leaf,
            ..conversation.into()
        }
    }
}

impl From<Conversation> for ConversationResponse {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id,
            user_id: c.user_id,
            title: c.title,
            description: c.description,
            profile_id: c.profile_id,
            status: c.status,
            llm_provider: c.llm_provider,
            llm_model: c.llm_model,
            temperature: c.temperature,
            max_tokens: c.max_tokens,
            enable_retrieval: c.enable_retrieval,
            message_count: c.message_count,
            total_tokens: c.total_tokens,
            total_cost: c.total_cost,
            system_prompt: c.system_prompt,
            context_window: c.context_window,
            memory_enabled: c.memory_enabled,
            memory_strategy: c.memory_strategy,
            retrieval_limit: c.retrieval_limit,
            retrieval_score_threshold: c.retrieval_score_threshold,
            tags: c.tags,
            extra_metadata: c.extra_metadata,
            workflow_config: c.workflow_config,
            created_at: c.created_at,
            updated_at: c.updated_at,
            last_message_at: c.last_message_at,
            active_message_id: c.active_message_id,
        }
    }
}

/// A message as Chatter's clients see it. `sequence_number` is unique and increasing within
/// its conversation and never reused, even after a delete.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageResponse {
    pub id: String,
    pub conversation_id: String,
    pub role: MessageRole,
    pub content: String,
    pub sequence_number: u64,
    /// The message this one follows; null for a first message.
    pub parent_id: Option<String>,
    /// Every message with the same parent, oldest first, this one included: the versions a
    /// client can switch between.
    pub sibling_ids: Vec<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub total_tokens: Option<u32>,
    pub model_used: Option<String>,
    pub provider_used: Option<String>,
    pub response_time_ms: Option<u64>,
    pub cost: Option<f64>,
    pub finish_reason: Option<FinishReason>,
    /// `streaming` while its turn still generates it (the content is the answer so far).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// Workflow details kept with the message (citations, tool calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    pub created_at: DateTime<Utc>,
    /// The user's rating of an assistant message, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

impl MessageResponse {
    /// The message with its place in its conversation's tree.
    pub fn in_tree(tree: &Tree, m: Message) -> Self {
        let placement = tree.placement(&m.id);
        Self::placed(m, placement)
    }

    pub fn placed(m: Message, placement: Placement) -> Self {
        Self {
            parent_id: placement.parent_id,
            sibling_ids: placement.sibling_ids,
            id: m.id,
            conversation_id: m.conversation_id,
            role: m.role,
            content: m.content,
            sequence_number: m.sequence_number,
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            total_tokens: m.total_tokens,
            model_used: m.model_used,
            provider_used: m.provider_used,
            response_time_ms: m.response_time_ms,
            cost: m.cost,
            finish_reason: m.finish_reason,
            status: m.status,
            metadata: m.metadata,
            created_at: m.created_at,
            feedback: m.feedback,
        }
    }
}
