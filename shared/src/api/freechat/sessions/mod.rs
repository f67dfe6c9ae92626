//! FreeChat's chat sessions: starting, listing, updating and deleting them, their memory and
//! its usage.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use futures_util::{StreamExt, TryStreamExt};

use super::messages::page;
use super::{ChatMessageRecordDto, DONE, FreePath, TokenUsageDto, missing, or_missing};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{Character, ChatSession, ChatSnapshot, Conversation, NewConversation};
use crate::error::{ServiceError, ServiceResult};
use crate::http::extract::ApiJson;
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::characters::{character_uid, default_backend, visible_character};
use crate::service::sessions::{chat_settings, own_chat};
use crate::store::{ChatRecord, StoreError};

/// How many chats' latest messages are read at once when listing.
const LATEST_READS_IN_FLIGHT: usize = 16;

mod dto;

use dto::provider_kind;
pub use dto::{ChatContextDto, ChatCreateDto, ChatSessionDto, ChatUpdateDto, MemoryUsageDto};

pub fn routes() -> Router<AppState> {
    // `GET /{characterId}` and `PUT`/`DELETE /{chatId}` share the route's one parameter name.
    Router::new()
        .route("/api/v1/chat", get(list_chats).post(start_chat))
        .route(
            "/api/v1/chat/{id}",
            get(get_default_chat_id)
                .put(update_chat)
                .delete(delete_chat),
        )
        .route("/api/v1/chat/memory/usage/{chatId}", get(get_memory_usage))
        .route("/api/v1/chat/memory/{chatId}", delete(clear_memory))
        .route(
            "/api/v1/chat/messages/rollback/{chatId}/{count}",
            post(rollback_messages),
        )
}

/// The `text/plain` body FreeChat answers some operations with.
fn plain_text(text: String) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
}

/// FreeChat's answer when a chat cannot have the backend asked for.
fn no_backend() -> ServiceError {
    ServiceError::BadRequest("No backend found.".into())
}

/// Why a chat cannot move to a backend that is not its character's: a backend of a
/// character the caller can see is the wrong one (400); any other, also one of another
/// user's private character, is missing (404), so that its existence is not given away.
async fn foreign_backend(state: &AppState, user_id: &str, backend_id: &str) -> ServiceError {
    match state.store.backend(backend_id).await {
        Ok((character, _, _)) if character.is_visible_to(user_id) => no_backend(),
        Ok(_) | Err(StoreError::NotFound) => missing("Backend"),
        Err(other) => other.into(),
    }
}

#[utoipa::path(
    post, path = "/api/v1/chat", tag = "chat", operation_id = "startChat",
    request_body = ChatCreateDto,
    responses(
        (status = 200, description = "The chat's id; the same one again for the same backend", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid input, a backend that is not one of the character's, or a character with none", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such character visible to the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn start_chat(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ChatCreateDto>,
) -> ServiceResult<impl IntoResponse> {
    body.validate()?;
    let user_id = &caller.user_id;
    let (character, backends) = visible_character(&state, user_id, &body.character_uid).await?;
    let backend = match body.backend_id.as_deref() {
        Some(id) => backends.iter().find(|b| b.id == id),
        None => default_backend(&character, &backends),
    }
    .ok_or_else(no_backend)?;
    let mut session = ChatSession {
        character_uid: character.uid.clone(),
        backend_id: backend.id.clone(),
        user_nickname: None,
        user_profile: None,
        character_nickname: None,
        // FreeChat's chat starts in the character's default scene unless told another.
        about: character.info.default_scene.clone(),
        ext: None,
        read_at: crate::domain::now(),
    };
    body.apply(&mut session);
    let settings = chat_settings(&state, &character, backend, &session)?;
    let title = session
        .character_nickname
        .as_deref()
        .unwrap_or(character.display_name());
    let conversation = Conversation::create(
        user_id,
        NewConversation {
            title: format!("Chat with {title}"),
            system_prompt: Some(settings.system_prompt),
            llm_provider: Some(settings.provider),
            llm_model: Some(settings.model),
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            ..Default::default()
        },
    );
    let snapshot = ChatSnapshot::of(&character, backend);
    let chat_id = state
        .store
        .start_chat(conversation, session, snapshot)
        .await?;
    Ok(plain_text(chat_id))
}

#[utoipa::path(
    get, path = "/api/v1/chat", tag = "chat", operation_id = "listChats",
    responses(
        (status = 200, description = "The caller's chats with characters they can see, most recently read first", body = Vec<ChatSessionDto>),
    ),
    security(("bearer" = []))
)]
pub async fn list_chats(
    State(state): State<AppState>,
    caller: Caller,
) -> ServiceResult<Json<Vec<ChatSessionDto>>> {
    let user_id = &caller.user_id;
    let store = &state.store;
    let chats = store.list_chats(user_id).await?;
    let uids: BTreeSet<&str> = chats
        .iter()
        .map(|c| c.session.character_uid.as_str())
        .collect();
    let backend_ids: BTreeSet<(&str, &str)> = chats
        .iter()
        .map(|c| {
            (
                c.session.character_uid.as_str(),
                c.session.backend_id.as_str(),
            )
        })
        .collect();
    let (characters, backends) = tokio::try_join!(
        store.characters_by_uid(uids),
        store.backends_by_id(backend_ids)
    )?;
    // A chat whose character is gone, or no longer visible to its user, is left out, as
    // FreeChat does; it stays in Chatter's list.
    let listed: Vec<(&ChatRecord, &Character)> = chats
        .iter()
        .filter_map(|chat| {
            let character = characters
                .get(&chat.session.character_uid)
                .filter(|c| c.is_visible_to(user_id))?;
            Some((chat, character))
        })
        .collect();
    // The reads are made before they are streamed, so the stream holds no borrowing closure
    // (which would not be `Send` for every lifetime, as an axum handler must be).
    let reads: Vec<_> = listed
        .iter()
        .map(|(chat, _)| store.newest_messages(chat, 1))
        .collect();
    let latest: Vec<_> = futures_util::stream::iter(reads)
        .buffered(LATEST_READS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut sessions: Vec<ChatSessionDto> = listed
        .into_iter()
        .zip(latest)
        .map(|((chat, character), newest)| {
            let latest = match newest.first() {
                Some(message) => Some(ChatMessageRecordDto::of(message, false)),
                None => character
                    .info
                    .greeting
                    .as_deref()
                    .map(|g| ChatMessageRecordDto::greeting(g, chat.conversation().created_at)),
            };
            let backend = backends.get(&chat.session.backend_id);
            let provider = provider_kind(&state.llm, chat.conversation().llm_provider.as_deref());
            ChatSessionDto::of(chat, character, backend, latest, user_id, provider)
        })
        .collect();
    sessions.sort_by(|a, b| {
        (b.context.gmt_read, b.context.gmt_modified)
            .cmp(&(a.context.gmt_read, a.context.gmt_modified))
    });
    Ok(Json(sessions))
}

#[utoipa::path(
    get, path = "/api/v1/chat/{characterId}", tag = "chat", operation_id = "getDefaultChatId",
    params(("characterId" = i64, Path, description = "Character identifier")),
    responses(
        (status = 200, description = "The caller's chat with the character's default backend; empty when there is none yet", body = String, content_type = "text/plain"),
        (status = 400, description = "A character id that is not an integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such character visible to the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_default_chat_id(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_id): FreePath<i64>,
) -> ServiceResult<impl IntoResponse> {
    let user_id = &caller.user_id;
    let uid = character_uid(&state, character_id).await?;
    let (character, backends) = visible_character(&state, user_id, &uid).await?;
    // FreeChat answers a character the user has no chat with (or one without a default
    // backend) with an empty id, not an error: clients start a chat on seeing it.
    let chat = match default_backend(&character, &backends) {
        Some(backend) => state.store.chat_with_backend(user_id, &backend.id).await?,
        None => None,
    };
    Ok(plain_text(
        chat.map(|c| c.id().to_owned()).unwrap_or_default(),
    ))
}

#[utoipa::path(
    put, path = "/api/v1/chat/{chatId}", tag = "chat", operation_id = "updateChat",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    request_body = ChatUpdateDto,
    responses(
        (status = 200, description = "Updated", body = bool, content_type = "application/json"),
        (status = 400, description = "Invalid input, another character, or a backend that is not the character's", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat of the caller, its character or backend is gone, or the character or backend named is not one the caller can see", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The caller already has a chat with that backend", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_chat(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
    ApiJson(body): ApiJson<ChatUpdateDto>,
) -> ServiceResult<Json<bool>> {
    body.chat.validate()?;
    let user_id = &caller.user_id;
    let chat = own_chat(&state, user_id, &chat_id).await?;
    if body.chat.character_uid != chat.session.character_uid {
        // Another user's private character is missing, as on every route; only a character
        // the caller can see is worth telling them their chat cannot move to.
        visible_character(&state, user_id, &body.chat.character_uid).await?;
        return Err(ServiceError::BadRequest(
            "A chat keeps its character; start another chat for another one.".into(),
        ));
    }
    let (character, backends) =
        visible_character(&state, user_id, &chat.session.character_uid).await?;
    let mut session = chat.session.clone();
    if let Some(id) = &body.chat.backend_id {
        session.backend_id = match backends.iter().find(|b| &b.id == id) {
            Some(backend) => backend.id.clone(),
            None => return Err(foreign_backend(&state, user_id, id).await),
        };
    }
    let backend = backends
        .iter()
        .find(|b| b.id == session.backend_id)
        .ok_or_else(|| missing("Backend"))?;
    if let Some(read_at) = body.gmt_read {
        session.read_at = read_at;
    }
    body.chat.apply(&mut session);
    let settings = chat_settings(&state, &character, backend, &session)?;
    state
        .store
        .save_chat(
            &chat,
            &session,
            (&settings, &ChatSnapshot::of(&character, backend)),
        )
        .await
        .map_err(|err| match err {
            StoreError::Conflict => ServiceError::Conflict(
                "You already have a chat with this backend, or the chat changed meanwhile.".into(),
            ),
            other => or_missing("Chat")(other),
        })?;
    Ok(Json(DONE))
}

#[utoipa::path(
    delete, path = "/api/v1/chat/{chatId}", tag = "chat", operation_id = "deleteChat",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    responses(
        (status = 200, description = "Deleted with its messages", body = bool, content_type = "application/json"),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_chat(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
) -> ServiceResult<Json<bool>> {
    let chat = own_chat(&state, &caller.user_id, &chat_id).await?;
    state
        .store
        .delete_chat(&chat)
        .await
        .map_err(or_missing("Chat"))?;
    Ok(Json(DONE))
}

#[utoipa::path(
    get, path = "/api/v1/chat/memory/usage/{chatId}", tag = "chat", operation_id = "getMemoryUsage",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    responses(
        (status = 200, description = "What the chat has used over its whole life; clearing or rolling back messages does not lower it", body = MemoryUsageDto),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_memory_usage(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
) -> ServiceResult<Json<MemoryUsageDto>> {
    let usage = own_chat(&state, &caller.user_id, &chat_id).await?.usage();
    Ok(Json(MemoryUsageDto {
        message_usage: usage.replies,
        token_usage: TokenUsageDto::new(usage.input_tokens, usage.output_tokens),
    }))
}

#[utoipa::path(
    delete, path = "/api/v1/chat/memory/{chatId}", tag = "chat", operation_id = "clearMemory",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    responses(
        (status = 200, description = "Every message removed; what the chat shows now (its greeting, if any)", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn clear_memory(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    let user_id = &caller.user_id;
    let chat = own_chat(&state, user_id, &chat_id).await?;
    state
        .store
        .remove_latest_messages(user_id, &chat_id, None)
        .await
        .map_err(or_missing("Chat"))?;
    Ok(Json(page(&state, user_id, &chat, None, None, false).await?))
}

#[utoipa::path(
    post, path = "/api/v1/chat/messages/rollback/{chatId}/{count}", tag = "chat", operation_id = "rollbackMessages",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("count" = i64, Path, minimum = 1, description = "Message count to be rolled back"),
    ),
    responses(
        (status = 200, description = "The removed messages' ids, newest first", body = Vec<u64>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A count below 1, or one that is not an integer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rollback_messages(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, count)): FreePath<(String, i64)>,
) -> ServiceResult<Json<Vec<u64>>> {
    let mut v = Violations::new();
    v.range(Some(count), 1, i64::MAX, &["path", "count"]);
    v.finish()?;
    let user_id = &caller.user_id;
    own_chat(&state, user_id, &chat_id).await?;
    let removed = state
        .store
        .remove_latest_messages(
            user_id,
            &chat_id,
            Some(usize::try_from(count).unwrap_or(usize::MAX)),
        )
        .await
        .map_err(or_missing("Chat"))?;
    Ok(Json(removed.iter().map(|m| m.sequence_number).collect()))
}
