//! Chatter's conversation request bodies and queries, checked into the domain's values, and
//! the list and detail shapes built from its response DTOs.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::super::dto::{ConversationResponse, MessageResponse};
use crate::domain::{
    BranchView, ConversationPatch, ConversationStatus, JsonObject, NewConversation,
};
use crate::error::{ServiceError, ServiceResult};
use crate::http::validate::Violations;

pub(super) const MAX_TITLE_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Keeps a conversation item well below DynamoDB's 400 KB limit.
const MAX_SYSTEM_PROMPT_CHARS: usize = 32_000;
const MAX_TOKENS: i64 = 1_000_000;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConversationCreate {
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    pub profile_id: Option<String>,
    #[schema(max_length = 32000)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub enable_retrieval: bool,
    /// One of the configured providers; its turns use it unless a request names another.
    pub llm_provider: Option<String>,
    /// The model its turns ask the conversation's provider for.
    #[schema(min_length = 1, max_length = 200)]
    pub llm_model: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub workflow_config: Option<JsonObject>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
}

impl TryFrom<ConversationCreate> for NewConversation {
    type Error = ServiceError;

    fn try_from(body: ConversationCreate) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        v.text(Some(&body.title), MAX_TITLE_CHARS, &["body", "title"]);
        v.length(
            body.description.as_deref(),
            0,
            MAX_DESCRIPTION_CHARS,
            &["body", "description"],
        );
        v.length(
            body.system_prompt.as_deref(),
            0,
            MAX_SYSTEM_PROMPT_CHARS,
            &["body", "system_prompt"],
        );
        v.temperature(body.temperature, &["body", "temperature"]);
        v.range(body.max_tokens, 1, MAX_TOKENS, &["body", "max_tokens"]);
        v.storable_json(body.workflow_config.as_ref(), &["body", "workflow_config"]);
        v.storable_json(body.extra_metadata.as_ref(), &["body", "extra_metadata"]);
        v.finish()?;
        Ok(Self {
            title: body.title.trim().to_owned(),
            description: body.description,
            profile_id: body.profile_id,
            system_prompt: body.system_prompt,
            enable_retrieval: body.enable_retrieval,
            temperature: body.temperature,
            max_tokens: body.max_tokens.and_then(|t| u32::try_from(t).ok()),
            llm_provider: body.llm_provider,
            llm_model: body.llm_model.map(|m| m.trim().to_owned()),
            workflow_config: body.workflow_config,
            extra_metadata: body.extra_metadata,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConversationUpdate {
    #[schema(min_length = 1, max_length = 255)]
    pub title: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    pub status: Option<ConversationStatus>,
    /// Another configured provider; without `llm_model` its default model applies.
    pub llm_provider: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub llm_model: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub workflow_config: Option<JsonObject>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
    /// Any message of the conversation: the active branch becomes the path through it to the
    /// newest leaf under it (an unknown id is a 404).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub active_message_id: Option<String>,
}

impl TryFrom<ConversationUpdate> for ConversationPatch {
    type Error = ServiceError;

    fn try_from(body: ConversationUpdate) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        v.text(body.title.as_deref(), MAX_TITLE_CHARS, &["body", "title"]);
        let title = body.title.as_deref().map(str::trim);
        v.length(
            body.description.as_deref(),
            0,
            MAX_DESCRIPTION_CHARS,
            &["body", "description"],
        );
        v.temperature(body.temperature, &["body", "temperature"]);
        v.range(body.max_tokens, 1, MAX_TOKENS, &["body", "max_tokens"]);
        v.storable_json(body.workflow_config.as_ref(), &["body", "workflow_config"]);
        v.storable_json(body.extra_metadata.as_ref(), &["body", "extra_metadata"]);
        v.finish()?;
        Ok(Self {
            title: title.map(str::to_owned),
            description: body.description,
            status: body.status,
            temperature: body.temperature,
            max_tokens: body.max_tokens.and_then(|t| u32::try_from(t).ok()),
            workflow_config: body.workflow_config,
            extra_metadata: body.extra_metadata,
            // Checked against the conversation's messages, then set to the leaf it leads to.
            active_message_id: None,
        })
    }
}

/// `limit` and `offset` of a list, checked against the bounds the contract gives.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Number of results per page (1 to 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Number of results to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<i64>,
}

impl PageQuery {
    pub(crate) fn page(&self, default_limit: usize) -> ServiceResult<(usize, usize)> {
        let mut v = Violations::new();
        v.range(self.limit, 1, 100, &["query", "limit"]);
        v.range(self.offset, 0, 1_000_000, &["query", "offset"]);
        v.finish()?;
        let limit = self.limit.map_or(default_limit, |l| l as usize);
        Ok((limit, self.offset.unwrap_or(0) as usize))
    }
}

/// The list's paging, and what its titles must contain.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListConversationsQuery {
    /// Number of results per page (1 to 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Number of results to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<i64>,
    /// Only conversations whose title contains this text, ignoring case; `total` counts them.
    #[param(max_length = 255)]
    pub q: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetConversationQuery {
    /// Include the latest messages in the response (default true).
    pub include_messages: Option<bool>,
    /// `active` (the default): the active branch, from its first message to its leaf;
    /// `all`: every message of every branch, in creation order.
    #[param(inline)]
    pub branch: Option<BranchView>,
}

/// A page of a conversation's messages, of the active branch or of all of them.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Number of results per page (1 to 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Number of results to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<i64>,
    /// `active` (the default): the active branch, from its first message to its leaf;
    /// `all`: every message of every branch, in creation order.
    #[param(inline)]
    pub branch: Option<BranchView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationSearchResponse {
    pub conversations: Vec<ConversationResponse>,
    pub total: u64,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationWithMessages {
    #[serde(flatten)]
    pub conversation: ConversationResponse,
    pub messages: Vec<MessageResponse>,
}

/// The body of a successful delete.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    pub message: String,
}
