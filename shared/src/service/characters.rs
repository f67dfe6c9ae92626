//! FreeChat's characters: who may see one (its owner, or anyone when public), who may change
//! it (its owner only; to anyone else it is missing), and which of its backends a chat uses.

use crate::AppState;
use crate::domain::{Backend, Character};
use crate::error::ServiceResult;

use super::{missing, or_missing};

/// A character the caller may see (their own, or a public one) with its backends.
pub async fn visible_character(
    state: &AppState,
    user_id: &str,
    uid: &str,
) -> ServiceResult<(Character, Vec<Backend>)> {
    let (character, backends) = state
        .store
        .character(uid)
        .await
        .map_err(or_missing("Character"))?;
    if !character.is_visible_to(user_id) {
        return Err(missing("Character"));
    }
    Ok((character, backends))
}

/// The character's default backend, if it has one.
pub fn default_backend<'a>(character: &Character, backends: &'a [Backend]) -> Option<&'a Backend> {
    let id = character.default_backend_id.as_deref()?;
    backends.iter().find(|b| b.id == id)
}

/// The uid of the character with FreeChat's numeric id (a `Long` there, so a negative one
/// parses and names no character).
pub async fn character_uid(state: &AppState, character_id: i64) -> ServiceResult<String> {
    let id = u64::try_from(character_id).map_err(|_| missing("Character"))?;
    state
        .store
        .character_uid(id)
        .await
        .map_err(or_missing("Character"))
}

/// As [`visible_character`], by FreeChat's numeric id.
pub async fn visible_character_by_id(
    state: &AppState,
    user_id: &str,
    character_id: i64,
) -> ServiceResult<(Character, Vec<Backend>)> {
    let uid = character_uid(state, character_id).await?;
    visible_character(state, user_id, &uid).await
}

/// Only a character's owner changes it; to anyone else it is missing, as it would be if
/// private.
pub fn owned(character: &Character, user_id: &str) -> ServiceResult<()> {
    if character.is_owned_by(user_id) {
        Ok(())
    } else {
        Err(missing("Character"))
    }
}

/// A backend by id, with its character, for the character's owner only.
pub async fn owned_backend(
    state: &AppState,
    user_id: &str,
    backend_id: &str,
) -> ServiceResult<(Character, Backend)> {
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
