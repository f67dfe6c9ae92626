//! FreeChat's message listings: `/messages/{chatId}[/{limit}[/{offset}]]`, and the same under
//! `/messages/debug/` with each record's `ext`.
//!
//! A page is counted back from the newest message: `offset` newest messages are skipped, the
//! `limit` before them are returned in chronological order. The character's greeting counts
//! as the oldest message, so a page that reaches the start shows it first. Without a limit,
//! every message is listed, as FreeChat does.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{ChatMessageRecordDto, FreePath};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ServiceResult;
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::sessions::{active_branch_newest_first, own_chat};
use crate::store::ChatRecord;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/chat/messages/{chatId}", get(list_messages))
        .route(
            "/api/v1/chat/messages/{chatId}/{limit}",
            get(list_messages_with_limit),
        )
        .route(
            "/api/v1/chat/messages/{chatId}/{limit}/{offset}",
            get(list_messages_with_offset),
        )
        .route(
            "/api/v1/chat/messages/debug/{chatId}",
            get(list_debug_messages),
        )
        .route(
            "/api/v1/chat/messages/debug/{chatId}/{limit}",
            get(list_debug_messages_with_limit),
        )
        .route(
            "/api/v1/chat/messages/debug/{chatId}/{limit}/{offset}",
            get(list_debug_messages_with_offset),
        )
}

/// A page of the chat's messages. `debug` adds `ext` when the caller owns the character:
/// the system prompt is the owner's to see.
pub(crate) async fn page(
    state: &AppState,
    user_id: &str,
    chat: &ChatRecord,
    limit: Option<i64>,
    offset: Option<i64>,
    debug: bool,
) -> ServiceResult<Vec<ChatMessageRecordDto>> {
    let mut v = Violations::new();
    v.range(limit, 0, i64::MAX, &["path", "limit"]);
    v.finish()?;
    let limit = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    // FreeChat reads a negative offset as none.
    let offset = offset.map_or(0, |o| usize::try_from(o).unwrap_or(0));
    let wanted = limit.map(|limit| offset.saturating_add(limit));
    // A chat branched through Chatter shows its active branch.
    let newest = active_branch_newest_first(state, chat, wanted);
    let (newest, character) = tokio::try_join!(newest, async {
        // The messages stay the user's even if the character is gone or turned private;
        // only its greeting and the debug view need it.
        match state.store.character(&chat.session.character_uid).await {
            Ok((character, _)) => Ok(Some(character).filter(|c| c.is_visible_to(user_id))),
            Err(crate::store::StoreError::NotFound) => Ok(None),
            Err(other) => Err(other.into()),
        }
    })?;
    let debug = debug && character.as_ref().is_some_and(|c| c.is_owned_by(user_id));
    let reached_start = wanted.is_none_or(|wanted| newest.len() < wanted);
    let greeting = character
        .as_ref()
        .and_then(|c| c.info.greeting.as_deref())
        .filter(|g| reached_start && !g.trim().is_empty())
        .map(|g| ChatMessageRecordDto::greeting(g, chat.conversation().created_at));
    let mut page: Vec<ChatMessageRecordDto> = newest
        .iter()
        .map(|m| ChatMessageRecordDto::of(m, debug))
        .chain(greeting)
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    page.reverse();
    Ok(page)
}

async fn listing(
    state: &AppState,
    caller: &Caller,
    chat_id: &str,
    limit: Option<i64>,
    offset: Option<i64>,
    debug: bool,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    let chat = own_chat(state, &caller.user_id, chat_id).await?;
    Ok(Json(
        page(state, &caller.user_id, &chat, limit, offset, debug).await?,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/chat/messages/{chatId}", tag = "chat", operation_id = "listMessages",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    responses(
        (status = 200, description = "Every message, oldest first", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    listing(&state, &caller, &chat_id, None, None, false).await
}

#[utoipa::path(
    get, path = "/api/v1/chat/messages/{chatId}/{limit}", tag = "chat", operation_id = "listMessages_2",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("limit" = i64, Path, minimum = 0, description = "Messages limit"),
    ),
    responses(
        (status = 200, description = "The newest `limit` messages, oldest first", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A negative limit, or one that is not an integer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages_with_limit(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, limit)): FreePath<(String, i64)>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    listing(&state, &caller, &chat_id, Some(limit), None, false).await
}

#[utoipa::path(
    get, path = "/api/v1/chat/messages/{chatId}/{limit}/{offset}", tag = "chat", operation_id = "listMessages_1",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("limit" = i64, Path, minimum = 0, description = "Messages limit"),
        ("offset" = i64, Path, description = "Messages offset (from new to old)"),
    ),
    responses(
        (status = 200, description = "`limit` messages before the newest `offset`, oldest first", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A negative limit, or one that is not an integer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages_with_offset(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, limit, offset)): FreePath<(String, i64, i64)>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    listing(&state, &caller, &chat_id, Some(limit), Some(offset), false).await
}

#[utoipa::path(
    get, path = "/api/v1/chat/messages/debug/{chatId}", tag = "chat", operation_id = "listDebugMessages_2",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    responses(
        (status = 200, description = "As listMessages, with each record's `ext` when the caller owns the character", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_debug_messages(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    listing(&state, &caller, &chat_id, None, None, true).await
}

#[utoipa::path(
    get, path = "/api/v1/chat/messages/debug/{chatId}/{limit}", tag = "chat", operation_id = "listDebugMessages",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("limit" = i64, Path, minimum = 0, description = "Messages limit"),
    ),
    responses(
        (status = 200, description = "As listMessages_2, with each record's `ext` when the caller owns the character", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A negative limit, or one that is not an integer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_debug_messages_with_limit(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, limit)): FreePath<(String, i64)>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    listing(&state, &caller, &chat_id, Some(limit), None, true).await
}

#[utoipa::path(
    get, path = "/api/v1/chat/messages/debug/{chatId}/{limit}/{offset}", tag = "chat", operation_id = "listDebugMessages_1",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("limit" = i64, Path, minimum = 0, description = "Messages limit"),
        ("offset" = i64, Path, description = "Messages offset (from new to old)"),
    ),
    responses(
        (status = 200, description = "As listMessages_1, with each record's `ext` when the caller owns the character", body = Vec<ChatMessageRecordDto>),
        (status = 404, description = "No such chat of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "A negative limit, or one that is not an integer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_debug_messages_with_offset(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, limit, offset)): FreePath<(String, i64, i64)>,
) -> ServiceResult<Json<Vec<ChatMessageRecordDto>>> {
    listing(&state, &caller, &chat_id, Some(limit), Some(offset), true).await
}
