//! FreeChat's chat sessions: starting, listing, updating and deleting them, their memory and
//! its usage.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::characters::{CharacterSummaryDto, character_uid};
use super::messages::page;
use super::{ChatMessageRecordDto, DONE, FreePath, TokenUsageDto, missing, or_missing};
use crate::AppState;
use crate::auth::Caller;
use crate::config::ProviderApi;
use crate::domain::{
    Backend, Character, ChatSession, ChatSettings, Conversation, NewConversation, Persona,
    QuotaType, Visibility,
};
use crate::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, MAX_ID_CHARS, is_id};
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::llm::{Provider, Providers};
use crate::service::sessions::{default_backend, own_chat, visible_character};
use crate::store::{ChatRecord, StoreError};

const MAX_NICKNAME_CHARS: usize = 100;
const MAX_TEXT_CHARS: usize = 4_000;
const MAX_EXT_CHARS: usize = 32_000;
/// How many chats' latest messages are read at once when listing.
const LATEST_READS_IN_FLIGHT: usize = 16;

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

/// How the user appears in a chat. FreeChat's `apiKeyName` and `apiKeyValue` are ignored:
/// a backend names its provider, whose key the deployment holds.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatCreateDTO)]
pub struct ChatCreateDto {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub character_uid: String,
    /// The character's default backend when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub backend_id: Option<String>,
    #[schema(max_length = 100)]
    pub user_nickname: Option<String>,
    #[schema(max_length = 4000)]
    pub user_profile: Option<String>,
    #[schema(max_length = 100)]
    pub character_nickname: Option<String>,
    /// The scene of the chat.
    #[schema(max_length = 4000)]
    pub about: Option<String>,
    #[schema(max_length = 32000)]
    pub ext: Option<String>,
}

impl ChatCreateDto {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Violations::new();
        // Ids are bounded as in a path, so an id that passes here cannot fail there.
        let id_rule = format!("must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'");
        v.check(
            is_id(&self.character_uid),
            &["body", "characterUid"],
            &id_rule,
            "value_error",
        );
        v.check(
            self.backend_id.as_deref().is_none_or(is_id),
            &["body", "backendId"],
            &id_rule,
            "value_error",
        );
        for (value, max, field) in [
            (&self.user_nickname, MAX_NICKNAME_CHARS, "userNickname"),
            (
                &self.character_nickname,
                MAX_NICKNAME_CHARS,
                "characterNickname",
            ),
            (&self.user_profile, MAX_TEXT_CHARS, "userProfile"),
            (&self.about, MAX_TEXT_CHARS, "about"),
            (&self.ext, MAX_EXT_CHARS, "ext"),
        ] {
            v.length(value.as_deref(), 0, max, &["body", field]);
        }
        v.finish()
    }

    /// Writes the fields present over the session; an empty text clears one.
    fn apply(self, session: &mut ChatSession) {
        let set = |field: &mut Option<String>, value: Option<String>| {
            if let Some(value) = value {
                *field = Some(value).filter(|v| !v.trim().is_empty());
            }
        };
        set(&mut session.user_nickname, self.user_nickname);
        set(&mut session.user_profile, self.user_profile);
        set(&mut session.character_nickname, self.character_nickname);
        set(&mut session.about, self.about);
        set(&mut session.ext, self.ext);
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatUpdateDTO)]
pub struct ChatUpdateDto {
    /// Must be the chat's character: a chat never changes character.
    #[serde(flatten)]
    pub chat: ChatCreateDto,
    /// When the user read the chat; chats list most recently read first.
    pub gmt_read: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatContextDTO)]
pub struct ChatContextDto {
    pub chat_id: String,
    pub gmt_create: DateTime<Utc>,
    pub gmt_modified: DateTime<Utc>,
    pub gmt_read: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub character_nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub about: Option<String>,
    pub backend_id: String,
    /// The backend's quota, counted in `quotaType` units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_type: Option<QuotaType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatSessionDTO)]
pub struct ChatSessionDto {
    pub context: ChatContextDto,
    pub character: CharacterSummaryDto,
    /// The kind of service the chat's model runs on, in FreeChat's terms: `open_ai`,
    /// `azure_open_ai`, `dash_scope`, `hugging_face`, or `unknown` for a provider this
    /// deployment no longer has.
    pub provider: &'static str,
    /// The newest message, or the character's greeting before there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_message_record: Option<ChatMessageRecordDto>,
    pub proactive_chat_waiting_time: u32,
    /// `online` (a public character), `invisible` (the caller's own private one) or
    /// `offline` (the backend is gone).
    pub sender_status: &'static str,
    /// Whether the caller owns the character, and so may list debug messages with `ext`.
    pub is_debug_enabled: bool,
    /// Always false: keys belong to the deployment's providers.
    pub is_customized_api_key_enabled: bool,
}

impl ChatSessionDto {
    fn of(
        chat: &ChatRecord,
        character: &Character,
        backend: Option<&Backend>,
        latest: Option<ChatMessageRecordDto>,
        user_id: &str,
        provider: &'static str,
    ) -> Self {
        let conversation = chat.conversation();
        let session = chat.session.clone();
        let is_debug_enabled = character.is_owned_by(user_id);
        let sender_status = match (backend, character.info.visibility) {
            (None, _) => "offline",
            (Some(_), Visibility::Public) => "online",
            (Some(_), _) => "invisible",
        };
        Self {
            context: ChatContextDto {
                chat_id: conversation.id.clone(),
                gmt_create: conversation.created_at,
                gmt_modified: conversation.updated_at,
                gmt_read: session.read_at,
                user_nickname: session.user_nickname,
                user_profile: session.user_profile,
                character_nickname: session.character_nickname,
                about: session.about,
                backend_id: session.backend_id,
                quota: backend.map(|b| b.settings.init_quota),
                quota_type: backend.map(|b| b.settings.quota_type),
                ext: session.ext,
            },
            character: character.into(),
            provider,
            latest_message_record: latest,
            proactive_chat_waiting_time: backend
                .map_or(0, |b| b.settings.proactive_chat_waiting_time),
            sender_status,
            is_debug_enabled,
            is_customized_api_key_enabled: false,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MemoryUsageDTO)]
pub struct MemoryUsageDto {
    /// The character's replies over the chat's whole life.
    pub message_usage: u64,
    pub token_usage: TokenUsageDto,
}

/// FreeChat's name for the kind of service behind a configured provider. An OpenAI-compatible
/// provider is `open_ai` unless its host is one of the services FreeChat names that also
/// serve that API.
fn provider_kind(providers: &Providers, name: Option<&str>) -> &'static str {
    let Some(provider) = providers.get(name) else {
        return "unknown";
    };
    let ProviderApi::OpenAiCompatible { base_url, .. } = &provider.config.api else {
        // Bedrock is none of the kinds FreeChat names.
        return "unknown";
    };
    let host = reqwest::Url::parse(base_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if host.ends_with(".openai.azure.com") || host.ends_with(".azure-api.net") {
        "azure_open_ai"
    } else if host.starts_with("dashscope") && host.ends_with(".aliyuncs.com") {
        "dash_scope"
    } else if host == "huggingface.co" || host.ends_with(".huggingface.co") {
        "hugging_face"
    } else {
        "open_ai"
    }
}

/// The character's system prompt in a session. The scene is the session's `about` alone:
/// a chat starts with the character's default scene as its `about`, and a user who clears
/// it gets no scene, as in FreeChat, rather than the default one back.
pub(crate) fn session_prompt(
    character: &Character,
    session: &ChatSession,
    context: Option<&str>,
) -> String {
    scene_prompt(character, &session.persona(context))
}

/// As [`session_prompt`], for any persona.
pub(crate) fn scene_prompt(character: &Character, persona: &Persona<'_>) -> String {
    if character.info.default_scene.is_none() {
        return character.system_prompt(persona);
    }
    let mut without_default = character.clone();
    without_default.info.default_scene = None;
    without_default.system_prompt(persona)
}

/// The provider a backend calls, and the model it asks for.
pub(crate) fn backend_model(
    state: &AppState,
    backend: &Backend,
) -> ApiResult<(Arc<Provider>, String)> {
    let wanted = backend.settings.provider.as_deref();
    let provider = state.llm.get(wanted).ok_or_else(|| {
        ApiError::Conflict(format!(
            "The backend names the provider '{}', which this deployment does not have.",
            wanted.unwrap_or_default()
        ))
    })?;
    let model = backend
        .settings
        .model
        .clone()
        .unwrap_or_else(|| provider.config.default_model.clone());
    Ok((provider, model))
}

/// What a chat's conversation carries from its character and backend: the character's
/// system prompt for this session, and the backend's provider, model and sampling.
pub(crate) fn chat_settings(
    state: &AppState,
    character: &Character,
    backend: &Backend,
    session: &ChatSession,
) -> ApiResult<ChatSettings> {
    let (provider, model) = backend_model(state, backend)?;
    Ok(ChatSettings {
        system_prompt: session_prompt(character, session, None),
        provider: provider.name.clone(),
        model,
        temperature: backend.settings.temperature,
        max_tokens: backend.settings.max_tokens,
    })
}

/// FreeChat's answer when a chat cannot have the backend asked for.
fn no_backend() -> ApiError {
    ApiError::BadRequest("No backend found.".into())
}

/// Why a chat cannot move to a backend that is not its character's: a backend of a
/// character the caller can see is the wrong one (400); any other, also one of another
/// user's private character, is missing (404), so that its existence is not given away.
async fn foreign_backend(state: &AppState, user_id: &str, backend_id: &str) -> ApiError {
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
) -> ApiResult<impl IntoResponse> {
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
    let chat_id = state.store.start_chat(conversation, session).await?;
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
) -> ApiResult<Json<Vec<ChatSessionDto>>> {
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
) -> ApiResult<impl IntoResponse> {
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
) -> ApiResult<Json<bool>> {
    body.chat.validate()?;
    let user_id = &caller.user_id;
    let chat = own_chat(&state, user_id, &chat_id).await?;
    if body.chat.character_uid != chat.session.character_uid {
        // Another user's private character is missing, as on every route; only a character
        // the caller can see is worth telling them their chat cannot move to.
        visible_character(&state, user_id, &body.chat.character_uid).await?;
        return Err(ApiError::BadRequest(
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
        .save_chat(&chat, &session, &settings)
        .await
        .map_err(|err| match err {
            StoreError::Conflict => ApiError::Conflict(
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
) -> ApiResult<Json<bool>> {
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
) -> ApiResult<Json<MemoryUsageDto>> {
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
) -> ApiResult<Json<Vec<ChatMessageRecordDto>>> {
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
) -> ApiResult<Json<Vec<u64>>> {
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
