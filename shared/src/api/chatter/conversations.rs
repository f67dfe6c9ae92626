//! Chatter's conversation and message endpoints.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::dto::{ConversationResponse, MessageResponse};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{
    Conversation, ConversationPatch, ConversationStatus, JsonObject, NewConversation,
};
use crate::error::{ApiResult, ServiceError};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::problem::Problem;
use crate::http::validate::Violations;

/// How many of the latest messages `GET /conversations/{id}` includes; older ones are paged
/// through `/messages`.
pub const INLINE_MESSAGES: usize = 200;
const MAX_TITLE_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 2_000;
/// Keeps a conversation item well below DynamoDB's 400 KB limit.
const MAX_SYSTEM_PROMPT_CHARS: usize = 32_000;
const MAX_TOKENS: i64 = 1_000_000;
const MAX_MODEL_CHARS: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/chat/conversations",
            get(list_conversations).post(create_conversation),
        )
        .route(
            "/api/v1/chat/conversations/{conversation_id}",
            get(get_conversation)
                .put(update_conversation)
                .delete(delete_conversation),
        )
        .route(
            "/api/v1/chat/conversations/{conversation_id}/messages",
            get(list_messages),
        )
        .route(
            "/api/v1/chat/conversations/{conversation_id}/messages/{message_id}",
            delete(delete_message),
        )
}

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

/// Checks a provider against those configured and a model name's length (apart from the
/// body's other fields: only the state knows the providers).
fn check_llm(state: &AppState, provider: Option<&str>, model: Option<&str>) -> ApiResult<()> {
    let mut v = Violations::new();
    if let Some(name) = provider {
        v.check(
            state.llm.get(Some(name)).is_some(),
            &["body", "llm_provider"],
            format!("Unknown provider '{name}'."),
            "unknown_provider",
        );
    }
    v.text(model, MAX_MODEL_CHARS, &["body", "llm_model"]);
    v.finish()
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
    pub(crate) fn page(&self, default_limit: usize) -> ApiResult<(usize, usize)> {
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

fn conversation_not_found() -> ServiceError {
    ServiceError::NotFound("Conversation not found.".into())
}

/// Ownership and existence are one question: both answer 404.
fn or_not_found(err: crate::store::StoreError) -> ServiceError {
    match err {
        crate::store::StoreError::NotFound => conversation_not_found(),
        other => other.into(),
    }
}

#[utoipa::path(
    post, path = "/api/v1/chat/conversations", tag = "conversations",
    request_body = ConversationCreate,
    responses(
        (status = 201, description = "Conversation created", body = ConversationResponse),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ConversationCreate>,
) -> ApiResult<(StatusCode, Json<ConversationResponse>)> {
    check_llm(
        &state,
        body.llm_provider.as_deref(),
        body.llm_model.as_deref(),
    )?;
    let conversation = Conversation::create(&caller.user_id, body.try_into()?);
    state.store.create_conversation(&conversation).await?;
    Ok((StatusCode::CREATED, Json(conversation.into())))
}

#[utoipa::path(
    get, path = "/api/v1/chat/conversations", tag = "conversations",
    params(ListConversationsQuery),
    responses(
        (status = 200, description = "The caller's conversations (with `q`, those whose title contains it), most recently updated first", body = ConversationSearchResponse),
        (status = 422, description = "Invalid paging", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_conversations(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListConversationsQuery>,
) -> ApiResult<Json<ConversationSearchResponse>> {
    let (limit, offset) = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page(20)?;
    let mut v = Violations::new();
    v.length(query.q.as_deref(), 0, MAX_TITLE_CHARS, &["query", "q"]);
    v.finish()?;
    let store = &state.store;
    let (conversations, total) = match query.q.as_deref().map(str::trim) {
        Some(text) if !text.is_empty() => {
            store
                .search_conversations(&caller.user_id, text, limit, offset)
                .await?
        }
        _ => {
            store
                .list_conversations(&caller.user_id, limit, offset)
                .await?
        }
    };
    Ok(Json(ConversationSearchResponse {
        conversations: conversations.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(
    get, path = "/api/v1/chat/conversations/{conversation_id}", tag = "conversations",
    params(("conversation_id" = String, Path, description = "Conversation ID"), GetConversationQuery),
    responses(
        (status = 200, description = "The conversation", body = ConversationWithMessages),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<GetConversationQuery>,
) -> ApiResult<Json<ConversationWithMessages>> {
    let (record, messages) = if query.include_messages.unwrap_or(true) {
        state
            .store
            .conversation_with_messages(&caller.user_id, &conversation_id, INLINE_MESSAGES)
            .await
    } else {
        state
            .store
            .conversation(&caller.user_id, &conversation_id)
            .await
            .map(|record| (record, Vec::new()))
    }
    .map_err(or_not_found)?;
    Ok(Json(ConversationWithMessages {
        conversation: record.conversation.into(),
        messages: messages.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    put, path = "/api/v1/chat/conversations/{conversation_id}", tag = "conversations",
    params(("conversation_id" = String, Path, description = "Conversation ID")),
    request_body = ConversationUpdate,
    responses(
        (status = 200, description = "The updated conversation", body = ConversationResponse),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
    ApiJson(mut body): ApiJson<ConversationUpdate>,
) -> ApiResult<Json<ConversationResponse>> {
    check_llm(
        &state,
        body.llm_provider.as_deref(),
        body.llm_model.as_deref(),
    )?;
    let llm_provider = body.llm_provider.take();
    let llm_model = body.llm_model.take().map(|m| m.trim().to_owned());
    let patch: ConversationPatch = body.try_into()?;
    let conversation = if patch.is_empty() && llm_provider.is_none() && llm_model.is_none() {
        state
            .store
            .conversation(&caller.user_id, &conversation_id)
            .await
            .map(|record| record.conversation)
    } else {
        state
            .store
            .update_conversation_with_llm(
                &caller.user_id,
                &conversation_id,
                &patch,
                llm_provider.as_deref(),
                llm_model.as_deref(),
            )
            .await
    }
    .map_err(or_not_found)?;
    Ok(Json(conversation.into()))
}

#[utoipa::path(
    delete, path = "/api/v1/chat/conversations/{conversation_id}", tag = "conversations",
    params(("conversation_id" = String, Path, description = "Conversation ID")),
    responses(
        (status = 200, description = "Deleted with all its messages", body = DeleteResponse),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
) -> ApiResult<Json<DeleteResponse>> {
    state
        .store
        .delete_conversation(&caller.user_id, &conversation_id)
        .await
        .map_err(or_not_found)?;
    Ok(Json(DeleteResponse {
        message: "Conversation deleted successfully".into(),
    }))
}

#[utoipa::path(
    get, path = "/api/v1/chat/conversations/{conversation_id}/messages", tag = "conversations",
    params(("conversation_id" = String, Path, description = "Conversation ID"), PageQuery),
    responses(
        (status = 200, description = "Messages in sequence order", body = Vec<MessageResponse>),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid paging", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Vec<MessageResponse>>> {
    let (limit, offset) = query.page(50)?;
    let messages = state
        .store
        .messages(&caller.user_id, &conversation_id, limit, offset)
        .await
        .map_err(or_not_found)?;
    Ok(Json(messages.into_iter().map(Into::into).collect()))
}

#[utoipa::path(
    delete, path = "/api/v1/chat/conversations/{conversation_id}/messages/{message_id}", tag = "conversations",
    params(
        ("conversation_id" = String, Path, description = "Conversation ID"),
        ("message_id" = String, Path, description = "Message ID"),
    ),
    responses(
        (status = 200, description = "Deleted; the conversation's counters drop accordingly", body = DeleteResponse),
        (status = 404, description = "No such message in a conversation of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((conversation_id, message_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<DeleteResponse>> {
    state
        .store
        .delete_message(&caller.user_id, &conversation_id, &message_id)
        .await
        .map_err(|err| match err {
            crate::store::StoreError::NotFound => {
                ServiceError::NotFound("Message not found.".into())
            }
            other => other.into(),
        })?;
    Ok(Json(DeleteResponse {
        message: "Message deleted successfully".into(),
    }))
}
