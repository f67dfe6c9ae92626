use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::JsonObject;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    Active,
    Archived,
    Deleted,
}

/// A conversation: its settings and the counters its messages keep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
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
    pub extra_metadata: Option<JsonObject>,
    pub workflow_config: Option<JsonObject>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_message_at: Option<DateTime<Utc>>,
    /// The message last answered, edited or chosen: the active branch runs through it to the
    /// newest leaf under it. Absent before branches were recorded, when the newest message
    /// ends the one linear branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_message_id: Option<String>,
}

/// What a client chooses when it creates a conversation; the rest takes its defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewConversation {
    pub title: String,
    pub description: Option<String>,
    pub profile_id: Option<String>,
    pub system_prompt: Option<String>,
    pub enable_retrieval: bool,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub llm_provider: Option<String>,
    pub llm_model: Option<String>,
    pub workflow_config: Option<JsonObject>,
    pub extra_metadata: Option<JsonObject>,
}

impl Conversation {
    pub const DEFAULT_CONTEXT_WINDOW: u32 = 4096;
    pub const DEFAULT_RETRIEVAL_LIMIT: u32 = 5;
    pub const DEFAULT_RETRIEVAL_SCORE_THRESHOLD: f64 = 0.7;

    pub fn create(user_id: &str, new: NewConversation) -> Self {
        let now = super::now();
        Self {
            id: super::new_id(),
            user_id: user_id.to_owned(),
            title: new.title,
            description: new.description,
            profile_id: new.profile_id,
            status: ConversationStatus::Active,
            llm_provider: new.llm_provider,
            llm_model: new.llm_model,
            temperature: new.temperature,
            max_tokens: new.max_tokens,
            enable_retrieval: new.enable_retrieval,
            message_count: 0,
            total_tokens: 0,
            total_cost: 0.0,
            system_prompt: new.system_prompt,
            context_window: Self::DEFAULT_CONTEXT_WINDOW,
            memory_enabled: true,
            memory_strategy: None,
            retrieval_limit: Self::DEFAULT_RETRIEVAL_LIMIT,
            retrieval_score_threshold: Self::DEFAULT_RETRIEVAL_SCORE_THRESHOLD,
            tags: None,
            extra_metadata: new.extra_metadata,
            workflow_config: new.workflow_config,
            created_at: now,
            updated_at: now,
            last_message_at: None,
            active_message_id: None,
        }
    }
}

/// The fields a client may change after creation. `None` leaves a field as it is; ids, owner,
/// counters and timestamps are not here, so a client can never set them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConversationPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub status: Option<ConversationStatus>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub workflow_config: Option<JsonObject>,
    pub extra_metadata: Option<JsonObject>,
    /// The leaf the active branch now ends on.
    pub active_message_id: Option<String>,
}

impl ConversationPatch {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
