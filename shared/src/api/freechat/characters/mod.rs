//! FreeChat's characters and their backends: `/api/v1/character`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};

use super::{DONE, FreePath, or_missing, spring_statuses};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{Backend, BackendSettings, Character, CharacterInfo};
use crate::error::{ServiceError, ServiceResult};
use crate::http::extract::ApiJson;
use crate::http::problem::Problem;
use crate::service::characters::{
    default_backend, owned, owned_backend, visible_character, visible_character_by_id,
};

mod dto;

pub use dto::{
    BackendInput, CharacterBackendDetailsDto, CharacterDetailsDto, CharacterInput,
    CharacterSummaryDto,
};

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
) -> ServiceResult<Json<u64>> {
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
) -> ServiceResult<Json<CharacterSummaryDto>> {
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
) -> ServiceResult<Json<CharacterDetailsDto>> {
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
) -> ServiceResult<Json<bool>> {
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
) -> ServiceResult<Json<bool>> {
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
) -> ServiceResult<impl IntoResponse> {
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
) -> ServiceResult<Json<Vec<CharacterBackendDetailsDto>>> {
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
) -> ServiceResult<Json<CharacterBackendDetailsDto>> {
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
) -> ServiceResult<Json<bool>> {
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
) -> ServiceResult<Json<bool>> {
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
) -> ServiceResult<Json<bool>> {
    let (character, backend) = owned_backend(&state, &caller.user_id, &backend_id).await?;
    state.store.remove_backend(&character, &backend).await?;
    Ok(Json(DONE))
}
