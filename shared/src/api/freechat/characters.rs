//! FreeChat's characters and their backends: `/api/v1/character`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{DONE, FreePath, missing, or_missing, spring_statuses};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{Backend, BackendSettings, Character, CharacterInfo, QuotaType, Visibility};
use crate::error::{ApiResult, ServiceError};
use crate::http::extract::ApiJson;
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::llm::Providers;
use crate::service::sessions::{default_backend, visible_character};

const MAX_NAME_CHARS: usize = 100;
const MAX_SHORT_TEXT_CHARS: usize = 4_000;
const MAX_LONG_TEXT_CHARS: usize = 32_000;
const MAX_URL_CHARS: usize = 2_048;
const MAX_TAGS: usize = 20;
const MAX_TAG_CHARS: usize = 50;
/// Chatter's own limit on `max_tokens` for one answer.
const MAX_ANSWER_TOKENS: i64 = 8_192;

pub fn routes() -> Router<AppState> {
    // axum allows one parameter name per position, so routes that FreeChat documents with
    // different names (a character uid or a backend id) share `{id}`.
    let routes = Router::new()
        .route("/api/v1/character", post(create_character))
        .route(
            "/api/v1/character/{characterId}",
            put(update_character).delete(delete_character),
        )
        .route(
            "/api/v1/character/summary/{characterId}",
            get(get_character_summary),
        )
        .route(
            "/api/v1/character/details/{characterId}",
            get(get_character_details),
        )
        .route(
            "/api/v1/character/backends/{characterUid}",
            get(list_character_backends),
        )
        .route(
            "/api/v1/character/backend/{id}",
            post(add_character_backend)
                .put(update_character_backend)
                .delete(remove_character_backend),
        )
        .route(
            "/api/v1/character/backend/default/{id}",
            get(get_default_character_backend).put(set_default_character_backend),
        );
    spring_statuses(routes)
}

/// A character to create, or the fields of one to change: absent fields keep their value,
/// an empty text clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterCreateDTO)]
pub struct CharacterInput {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    pub visibility: Option<Visibility>,
    #[schema(max_length = 100)]
    pub parent_uid: Option<String>,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    #[schema(max_length = 100)]
    pub nickname: Option<String>,
    #[schema(max_length = 2048)]
    pub avatar: Option<String>,
    #[schema(max_length = 2048)]
    pub picture: Option<String>,
    /// `male` | `female` | `other`.
    #[schema(max_length = 100)]
    pub gender: Option<String>,
    #[schema(max_length = 32000)]
    pub profile: Option<String>,
    #[schema(max_length = 4000)]
    pub greeting: Option<String>,
    #[schema(max_length = 4000)]
    pub chat_style: Option<String>,
    #[schema(max_length = 32000)]
    pub chat_example: Option<String>,
    #[schema(max_length = 4000)]
    pub default_scene: Option<String>,
    /// `en` (the default) | `zh` | ...
    #[schema(max_length = 100)]
    pub lang: Option<String>,
    /// Anything the client keeps with the character, as JSON text.
    #[schema(max_length = 32000)]
    pub ext: Option<String>,
    #[schema(max_length = 32000)]
    pub draft: Option<String>,
    #[schema(max_items = 20)]
    pub tags: Option<Vec<String>>,
}

/// Replaces `field` unless `value` is absent; an empty text clears it.
fn set(field: &mut Option<String>, value: Option<String>) {
    if let Some(value) = value {
        *field = Some(value).filter(|v| !v.trim().is_empty());
    }
}

impl CharacterInput {
    fn validate(&self) -> ApiResult<()> {
        let mut v = Violations::new();
        v.text(Some(&self.name), MAX_NAME_CHARS, &["body", "name"]);
        for (value, max, field) in [
            (&self.parent_uid, MAX_NAME_CHARS, "parentUid"),
            (&self.nickname, MAX_NAME_CHARS, "nickname"),
            (&self.gender, MAX_NAME_CHARS, "gender"),
            (&self.lang, MAX_NAME_CHARS, "lang"),
            (&self.avatar, MAX_URL_CHARS, "avatar"),
            (&self.picture, MAX_URL_CHARS, "picture"),
            (&self.description, MAX_SHORT_TEXT_CHARS, "description"),
            (&self.greeting, MAX_SHORT_TEXT_CHARS, "greeting"),
            (&self.chat_style, MAX_SHORT_TEXT_CHARS, "chatStyle"),
            (&self.default_scene, MAX_SHORT_TEXT_CHARS, "defaultScene"),
            (&self.profile, MAX_LONG_TEXT_CHARS, "profile"),
            (&self.chat_example, MAX_LONG_TEXT_CHARS, "chatExample"),
            (&self.ext, MAX_LONG_TEXT_CHARS, "ext"),
            (&self.draft, MAX_LONG_TEXT_CHARS, "draft"),
        ] {
            v.length(value.as_deref(), 0, max, &["body", field]);
        }
        if let Some(tags) = &self.tags {
            v.check(
                tags.len() <= MAX_TAGS,
                &["body", "tags"],
                format!("must have at most {MAX_TAGS} tags"),
                "too_long",
            );
            v.check(
                tags.iter()
                    .all(|t| (1..=MAX_TAG_CHARS).contains(&t.trim().chars().count())),
                &["body", "tags"],
                format!("each tag must have 1 to {MAX_TAG_CHARS} characters"),
                "string_too_long",
            );
        }
        v.finish()
    }

    /// Validates the input and writes it over `info`.
    fn apply(self, info: &mut CharacterInfo) -> ApiResult<()> {
        self.validate()?;
        info.name = self.name.trim().to_owned();
        if let Some(visibility) = self.visibility {
            info.visibility = visibility;
        }
        set(&mut info.parent_uid, self.parent_uid);
        set(&mut info.description, self.description);
        set(&mut info.nickname, self.nickname);
        set(&mut info.avatar, self.avatar);
        set(&mut info.picture, self.picture);
        set(&mut info.gender, self.gender);
        set(&mut info.profile, self.profile);
        set(&mut info.greeting, self.greeting);
        set(&mut info.chat_style, self.chat_style);
        set(&mut info.chat_example, self.chat_example);
        set(&mut info.default_scene, self.default_scene);
        set(&mut info.lang, self.lang);
        set(&mut info.ext, self.ext);
        set(&mut info.draft, self.draft);
        if let Some(tags) = self.tags {
            info.tags = tags.into_iter().map(|t| t.trim().to_owned()).collect();
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterSummaryDTO)]
pub struct CharacterSummaryDto {
    pub character_id: u64,
    pub character_uid: String,
    pub gmt_create: DateTime<Utc>,
    pub gmt_modified: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_uid: Option<String>,
    pub visibility: Visibility,
    pub version: u32,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    pub lang: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_scene: Option<String>,
    pub priority: i32,
    /// The owner's user id.
    pub username: String,
    pub tags: Vec<String>,
}

impl From<&Character> for CharacterSummaryDto {
    fn from(c: &Character) -> Self {
        let info = c.info.clone();
        Self {
            character_id: c.id,
            character_uid: c.uid.clone(),
            gmt_create: c.created_at,
            gmt_modified: c.modified_at,
            parent_uid: info.parent_uid,
            visibility: info.visibility,
            version: c.version,
            name: info.name,
            description: info.description,
            nickname: info.nickname,
            avatar: info.avatar,
            picture: info.picture,
            gender: info.gender,
            lang: info.lang.unwrap_or_else(|| "en".into()),
            greeting: info.greeting,
            default_scene: info.default_scene,
            priority: c.priority,
            username: c.owner.clone(),
            tags: info.tags,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterDetailsDTO)]
pub struct CharacterDetailsDto {
    #[serde(flatten)]
    pub summary: CharacterSummaryDto,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_style: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_example: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
    /// The owner's working copy; only the owner sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
    pub backends: Vec<CharacterBackendDetailsDto>,
}

/// A backend to add, or the fields of one to change (absent fields keep their value). The
/// model is named directly instead of through FreeChat's prompt tasks, whose fields
/// (`chatPromptTaskId` and the like) are accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterBackendDTO)]
pub struct BackendInput {
    pub is_default: Option<bool>,
    /// Messages of history in the prompt, 10 to 500 (default 50).
    #[schema(minimum = 10, maximum = 500)]
    pub message_window_size: Option<i64>,
    /// What a chat may use: replies or tokens, by `quotaType`.
    #[schema(minimum = 0)]
    pub init_quota: Option<i64>,
    pub quota_type: Option<QuotaType>,
    /// Minutes to wait for a proactive chat.
    #[schema(minimum = 0, maximum = 4_294_967_295_f64)]
    pub proactive_chat_waiting_time: Option<i64>,
    /// A configured provider (the deployment's default when absent).
    pub provider: Option<String>,
    /// The provider's default model when absent.
    #[schema(min_length = 1, max_length = 100)]
    pub model: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 8192)]
    pub max_tokens: Option<i64>,
}

impl BackendInput {
    /// Validates the input and writes it over `settings`.
    fn apply(self, providers: &Providers, settings: &mut BackendSettings) -> ApiResult<()> {
        let mut v = Violations::new();
        v.range(
            self.message_window_size,
            i64::from(BackendSettings::MIN_MESSAGE_WINDOW),
            i64::from(BackendSettings::MAX_MESSAGE_WINDOW),
            &["body", "messageWindowSize"],
        );
        v.range(self.init_quota, 0, i64::MAX, &["body", "initQuota"]);
        v.range(
            self.proactive_chat_waiting_time,
            0,
            i64::from(u32::MAX),
            &["body", "proactiveChatWaitingTime"],
        );
        v.temperature(self.temperature, &["body", "temperature"]);
        v.range(
            self.max_tokens,
            1,
            MAX_ANSWER_TOKENS,
            &["body", "maxTokens"],
        );
        v.length(self.model.as_deref(), 1, MAX_NAME_CHARS, &["body", "model"]);
        if let Some(name) = &self.provider {
            v.check(
                providers.get(Some(name)).is_some(),
                &["body", "provider"],
                format!("Unknown provider '{name}'."),
                "unknown_provider",
            );
        }
        v.finish()?;
        // The ranges above make these conversions exact.
        let narrow = |value: i64| u32::try_from(value).unwrap_or(u32::MAX);
        if let Some(size) = self.message_window_size {
            settings.message_window_size = narrow(size);
        }
        if let Some(quota) = self.init_quota {
            settings.init_quota = quota.unsigned_abs();
        }
        if let Some(kind) = self.quota_type {
            settings.quota_type = kind;
        }
        if let Some(minutes) = self.proactive_chat_waiting_time {
            settings.proactive_chat_waiting_time = narrow(minutes);
        }
        if self.provider.is_some() {
            settings.provider = self.provider;
        }
        if self.model.is_some() {
            settings.model = self.model;
        }
        if self.temperature.is_some() {
            settings.temperature = self.temperature;
        }
        if let Some(tokens) = self.max_tokens {
            settings.max_tokens = Some(narrow(tokens));
        }
        Ok(())
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CharacterBackendDetailsDTO)]
pub struct CharacterBackendDetailsDto {
    pub backend_id: String,
    pub gmt_create: DateTime<Utc>,
    pub gmt_modified: DateTime<Utc>,
    pub character_uid: String,
    pub is_default: bool,
    pub message_window_size: u32,
    pub init_quota: u64,
    pub quota_type: QuotaType,
    pub proactive_chat_waiting_time: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

impl CharacterBackendDetailsDto {
    fn of(character: &Character, backend: &Backend) -> Self {
        let s = backend.settings.clone();
        Self {
            backend_id: backend.id.clone(),
            gmt_create: backend.created_at,
            gmt_modified: backend.modified_at,
            character_uid: backend.character_uid.clone(),
            is_default: character.default_backend_id.as_deref() == Some(backend.id.as_str()),
            message_window_size: s.message_window_size,
            init_quota: s.init_quota,
            quota_type: s.quota_type,
            proactive_chat_waiting_time: s.proactive_chat_waiting_time,
            provider: s.provider,
            model: s.model,
            temperature: s.temperature,
            max_tokens: s.max_tokens,
        }
    }
}

/// The uid of the character with FreeChat's numeric id (a `Long` there, so a negative one
/// parses and names no character).
pub(crate) async fn character_uid(state: &AppState, character_id: i64) -> ApiResult<String> {
    let id = u64::try_from(character_id).map_err(|_| missing("Character"))?;
    state
        .store
        .character_uid(id)
        .await
        .map_err(or_missing("Character"))
}

/// As [`visible_character`], by FreeChat's numeric id.
async fn visible_character_by_id(
    state: &AppState,
    user_id: &str,
    character_id: i64,
) -> ApiResult<(Character, Vec<Backend>)> {
    let uid = character_uid(state, character_id).await?;
    visible_character(state, user_id, &uid).await
}

/// Only a character's owner changes it; to anyone else it is missing, as it would be if
/// private.
fn owned(character: &Character, user_id: &str) -> ApiResult<()> {
    if character.is_owned_by(user_id) {
        Ok(())
    } else {
        Err(missing("Character"))
    }
}

/// A backend by id, with its character, for the character's owner only.
async fn owned_backend(
    state: &AppState,
    user_id: &str,
    backend_id: &str,
) -> ApiResult<(Character, Backend)> {
    let (character, _, backend) = state
        .store
        .backend(backend_id)
        .await
        .map_err(or_missing("Backend"))?;
    if !character.is_owned_by(user_id) {
        return Err(missing("Backend"));
    }
    Ok((character, backend))
}

#[utoipa::path(
    post, path = "/api/v1/character", tag = "character", operation_id = "createCharacter",
    request_body = CharacterInput,
    responses(
        (status = 200, description = "The new character's numeric id", body = u64, content_type = "application/json"),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_character(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CharacterInput>,
) -> ApiResult<Json<u64>> {
    let mut info = CharacterInfo::default();
    body.apply(&mut info)?;
    let id = state.store.next_character_id().await?;
    let character = Character::create(&caller.user_id, id, info);
    state.store.create_character(&character).await?;
    Ok(Json(character.id))
}

#[utoipa::path(
    get, path = "/api/v1/character/summary/{characterId}", tag = "character", operation_id = "getCharacterSummary",
    params(("characterId" = i64, Path, description = "Character identifier")),
    responses(
        (status = 400, description = "A character id that is not an integer", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The character's summary", body = CharacterSummaryDto),
        (status = 404, description = "No such character visible to the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_character_summary(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_id): FreePath<i64>,
) -> ApiResult<Json<CharacterSummaryDto>> {
    let (character, _) = visible_character_by_id(&state, &caller.user_id, character_id).await?;
    Ok(Json((&character).into()))
}

#[utoipa::path(
    get, path = "/api/v1/character/details/{characterId}", tag = "character", operation_id = "getCharacterDetails",
    params(("characterId" = i64, Path, description = "Character identifier")),
    responses(
        (status = 400, description = "A character id that is not an integer", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "The character with its backends", body = CharacterDetailsDto),
        (status = 404, description = "No such character visible to the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_character_details(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_id): FreePath<i64>,
) -> ApiResult<Json<CharacterDetailsDto>> {
    let (character, backends) =
        visible_character_by_id(&state, &caller.user_id, character_id).await?;
    let info = character.info.clone();
    Ok(Json(CharacterDetailsDto {
        summary: (&character).into(),
        profile: info.profile,
        chat_style: info.chat_style,
        chat_example: info.chat_example,
        ext: info.ext,
        draft: info
            .draft
            .filter(|_| character.is_owned_by(&caller.user_id)),
        backends: backends
            .iter()
            .map(|b| CharacterBackendDetailsDto::of(&character, b))
            .collect(),
    }))
}

#[utoipa::path(
    put, path = "/api/v1/character/{characterId}", tag = "character", operation_id = "updateCharacter",
    params(("characterId" = i64, Path, description = "Character identifier")),
    request_body = CharacterInput,
    responses(
        (status = 200, description = "Updated", body = bool, content_type = "application/json"),
        (status = 400, description = "Invalid input, or a character id that is not an integer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such character of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Changed by another request meanwhile", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_character(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_id): FreePath<i64>,
    ApiJson(body): ApiJson<CharacterInput>,
) -> ApiResult<Json<bool>> {
    let (mut character, _) = visible_character_by_id(&state, &caller.user_id, character_id).await?;
    owned(&character, &caller.user_id)?;
    body.apply(&mut character.info)?;
    let read_modified_at = character.modified_at;
    character.modified_at = crate::domain::now();
    state
        .store
        .replace_character(&character, read_modified_at)
        .await?;
    Ok(Json(DONE))
}

#[utoipa::path(
    delete, path = "/api/v1/character/{characterId}", tag = "character", operation_id = "deleteCharacter",
    params(("characterId" = i64, Path, description = "Character identifier")),
    responses(
        (status = 400, description = "A character id that is not an integer", body = Problem, content_type = "application/problem+json"),
        (status = 200, description = "Deleted with its backends", body = bool, content_type = "application/json"),
        (status = 404, description = "No such character of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_character(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_id): FreePath<i64>,
) -> ApiResult<Json<bool>> {
    let (character, backends) =
        visible_character_by_id(&state, &caller.user_id, character_id).await?;
    owned(&character, &caller.user_id)?;
    state
        .store
        .delete_character(&character, &backends)
        .await
        .map_err(or_missing("Character"))?;
    Ok(Json(DONE))
}

#[utoipa::path(
    post, path = "/api/v1/character/backend/{characterUid}", tag = "character", operation_id = "addCharacterBackend",
    params(("characterUid" = String, Path, description = "Character immutable identifier")),
    request_body = BackendInput,
    responses(
        (status = 200, description = "The new backend's id", body = String, content_type = "text/plain"),
        (status = 404, description = "No such character of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn add_character_backend(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_uid): FreePath<String>,
    ApiJson(body): ApiJson<BackendInput>,
) -> ApiResult<impl IntoResponse> {
    let (character, _) = visible_character(&state, &caller.user_id, &character_uid).await?;
    owned(&character, &caller.user_id)?;
    let make_default = body.is_default == Some(true);
    let mut settings = BackendSettings::default();
    body.apply(&state.llm, &mut settings)?;
    let backend = Backend::create(&character.uid, settings);
    state
        .store
        .add_backend(&backend, make_default)
        .await
        .map_err(or_missing("Character"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        backend.id,
    ))
}

#[utoipa::path(
    get, path = "/api/v1/character/backends/{characterUid}", tag = "character", operation_id = "listCharacterBackends",
    params(("characterUid" = String, Path, description = "Character immutable identifier")),
    responses(
        (status = 200, description = "The character's backends, oldest first", body = Vec<CharacterBackendDetailsDto>),
        (status = 404, description = "No such character visible to the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_character_backends(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_uid): FreePath<String>,
) -> ApiResult<Json<Vec<CharacterBackendDetailsDto>>> {
    let (character, backends) = visible_character(&state, &caller.user_id, &character_uid).await?;
    Ok(Json(
        backends
            .iter()
            .map(|b| CharacterBackendDetailsDto::of(&character, b))
            .collect(),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/character/backend/default/{characterUid}", tag = "character", operation_id = "getDefaultCharacterBackend",
    params(("characterUid" = String, Path, description = "Character immutable identifier")),
    responses(
        (status = 200, description = "The character's default backend", body = CharacterBackendDetailsDto),
        (status = 404, description = "No such character visible to the caller, or it has no backend", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_default_character_backend(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(character_uid): FreePath<String>,
) -> ApiResult<Json<CharacterBackendDetailsDto>> {
    let (character, backends) = visible_character(&state, &caller.user_id, &character_uid).await?;
    let backend = default_backend(&character, &backends)
        .ok_or_else(|| ServiceError::NotFound("The character has no default backend.".into()))?;
    Ok(Json(CharacterBackendDetailsDto::of(&character, backend)))
}

#[utoipa::path(
    put, path = "/api/v1/character/backend/default/{characterBackendId}", tag = "character", operation_id = "setDefaultCharacterBackend",
    params(("characterBackendId" = String, Path, description = "Character backend identifier")),
    responses(
        (status = 200, description = "The backend is now its character's default", body = bool, content_type = "application/json"),
        (status = 404, description = "No such backend of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn set_default_character_backend(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(backend_id): FreePath<String>,
) -> ApiResult<Json<bool>> {
    let (_, backend) = owned_backend(&state, &caller.user_id, &backend_id).await?;
    state
        .store
        .set_default_backend(&backend)
        .await
        .map_err(or_missing("Backend"))?;
    Ok(Json(DONE))
}

#[utoipa::path(
    put, path = "/api/v1/character/backend/{characterBackendId}", tag = "character", operation_id = "updateCharacterBackend",
    params(("characterBackendId" = String, Path, description = "Character backend identifier")),
    request_body = BackendInput,
    responses(
        (status = 200, description = "Updated", body = bool, content_type = "application/json"),
        (status = 404, description = "No such backend of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_character_backend(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(backend_id): FreePath<String>,
    ApiJson(body): ApiJson<BackendInput>,
) -> ApiResult<Json<bool>> {
    let (_, mut backend) = owned_backend(&state, &caller.user_id, &backend_id).await?;
    let make_default = body.is_default == Some(true);
    body.apply(&state.llm, &mut backend.settings)?;
    backend.modified_at = crate::domain::now();
    let store = &state.store;
    store
        .replace_backend(&backend)
        .await
        .map_err(or_missing("Backend"))?;
    if make_default {
        store
            .set_default_backend(&backend)
            .await
            .map_err(or_missing("Backend"))?;
    }
    Ok(Json(DONE))
}

#[utoipa::path(
    delete, path = "/api/v1/character/backend/{characterBackendId}", tag = "character", operation_id = "removeCharacterBackend",
    params(("characterBackendId" = String, Path, description = "Character backend identifier")),
    responses(
        (status = 200, description = "Removed; a removed default leaves the character without one", body = bool, content_type = "application/json"),
        (status = 404, description = "No such backend of the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn remove_character_backend(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(backend_id): FreePath<String>,
) -> ApiResult<Json<bool>> {
    let (character, backend) = owned_backend(&state, &caller.user_id, &backend_id).await?;
    state.store.remove_backend(&character, &backend).await?;
    Ok(Json(DONE))
}
