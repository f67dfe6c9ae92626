//! Chatter's conversation and message endpoints.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
mod dto;

use dto::MAX_TITLE_CHARS;

pub use dto::{
    ConversationCreate, ConversationSearchResponse, ConversationUpdate, ConversationWithMessages,
    DeleteResponse, GetConversationQuery, ListConversationsQuery, MessagesQuery, PageQuery,
};

use super::dto::{ConversationResponse, MessageResponse};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{Conversation, ConversationPatch};
use crate::error::{ServiceError, ServiceResult};
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::branches;

/// How many of the latest messages `GET /conversations/{id}` includes; older ones are paged
/// through `/messages`.
pub const INLINE_MESSAGES: usize = 200;
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

/// Checks a provider against those configured and a model name's length (apart from the
/// body's other fields: only the state knows the providers).
pub(super) fn check_llm(
    state: &AppState,
    provider: Option<&str>,
    model: Option<&str>,
) -> ServiceResult<()> {
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
) -> ServiceResult<(StatusCode, Json<ConversationResponse>)> {
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
) -> ServiceResult<Json<ConversationSearchResponse>> {
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
) -> ServiceResult<Json<ConversationWithMessages>> {
    if !query.include_messages.unwrap_or(true) {
        let record = state
            .store
            .conversation(&caller.user_id, &conversation_id)
            .await
            .map_err(or_not_found)?;
        return Ok(Json(ConversationWithMessages {
            conversation: record.conversation.into(),
            messages: Vec::new(),
        }));
    }
    let (record, tree) = branches::tree(&state.store, &caller.user_id, &conversation_id).await?;
    let active = record.conversation.active_message_id.as_deref();
    let shown = tree.view(query.branch.unwrap_or_default(), active);
    let messages = shown[shown.len().saturating_sub(INLINE_MESSAGES)..]
        .iter()
        .map(|m| MessageResponse::in_tree(&tree, (*m).clone()))
        .collect();
    Ok(Json(ConversationWithMessages {
        conversation: ConversationResponse::in_tree(record.conversation, &tree),
        messages,
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
) -> ServiceResult<Json<ConversationResponse>> {
    check_llm(
        &state,
        body.llm_provider.as_deref(),
        body.llm_model.as_deref(),
    )?;
    let llm_provider = body.llm_provider.take();
    let llm_model = body.llm_model.take().map(|m| m.trim().to_owned());
    let chosen = body.active_message_id.take();
    let mut patch: ConversationPatch = body.try_into()?;
    if let Some(message_id) = chosen {
        patch.active_message_id = Some(
            branches::leaf_through(&state.store, &caller.user_id, &conversation_id, &message_id)
                .await?,
        );
    }
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
) -> ServiceResult<Json<DeleteResponse>> {
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
    params(("conversation_id" = String, Path, description = "Conversation ID"), MessagesQuery),
    responses(
        (status = 200, description = "The active branch from its first message (or with `branch=all` every message), in sequence order", body = Vec<MessageResponse>),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid paging", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> ServiceResult<Json<Vec<MessageResponse>>> {
    let (limit, offset) = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page(50)?;
    let (record, tree) = branches::tree(&state.store, &caller.user_id, &conversation_id).await?;
    let active = record.conversation.active_message_id.as_deref();
    let page = tree
        .view(query.branch.unwrap_or_default(), active)
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|m| MessageResponse::in_tree(&tree, m.clone()))
        .collect();
    Ok(Json(page))
}

#[utoipa::path(
    delete, path = "/api/v1/chat/conversations/{conversation_id}/messages/{message_id}", tag = "conversations",
    params(
        ("conversation_id" = String, Path, description = "Conversation ID"),
        ("message_id" = String, Path, description = "Message ID"),
    ),
    responses(
        (status = 200, description = "Deleted with every message under it; the conversation's counters drop by all of them", body = DeleteResponse),
        (status = 404, description = "No such message in a conversation of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_message(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((conversation_id, message_id)): ApiPath<(String, String)>,
) -> ServiceResult<Json<DeleteResponse>> {
    branches::delete_message(&state.store, &caller.user_id, &conversation_id, &message_id).await?;
    Ok(Json(DeleteResponse {
        message: "Message deleted successfully".into(),
    }))
}
