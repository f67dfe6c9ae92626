//! FreeChat's chat sessions: whose chat it is, which characters a user may see, and what
//! admits a turn in a chat (its character and backend still there, its quota not used up).

use crate::AppState;
use crate::domain::{Backend, BackendSettings, Character, Message};
use crate::error::{ApiError, ApiResult};
use crate::store::ChatRecord;

use super::{missing, or_missing};

/// The caller's chat; another user's, or a conversation that is no chat, is missing.
pub async fn own_chat(state: &AppState, user_id: &str, chat_id: &str) -> ApiResult<ChatRecord> {
    state
        .store
        .chat(user_id, chat_id)
        .await
        .map_err(or_missing("Chat"))
}

/// A character the caller may see (their own, or a public one) with its backends.
pub async fn visible_character(
    state: &AppState,
    user_id: &str,
    uid: &str,
) -> ApiResult<(Character, Vec<Backend>)> {
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

/// A turn in a FreeChat chat, admitted by its rules: the chat as
/// loaded, how many earlier messages its prompt may carry (`messageWindowSize`), and the
/// backend whose quota it claims when it stores its question.
#[derive(Debug, Clone)]
pub struct SessionTurn {
    pub chat: ChatRecord,
    pub history_window: usize,
    pub backend: BackendSettings,
    /// The chat's newest messages, when they were read beside the chat itself.
    pub newest: Option<NewestMessages>,
}

/// A chat's newest messages, newest first, read before its window was known: how many were
/// asked for, and what came back.
#[derive(Debug, Clone)]
pub struct NewestMessages {
    pub asked: usize,
    pub messages: Vec<Message>,
}

impl NewestMessages {
    /// The newest `count`, if as many were asked for.
    pub fn newest(self, count: usize) -> Option<Vec<Message>> {
        (count <= self.asked).then(|| self.messages.into_iter().take(count).collect())
    }
}

/// A chat that can take a turn: its character and backend are there, and its quota is not
/// plainly used up (the turn's claim, made with its question, is what holds under
/// parallel sends).
pub struct ReadyChat {
    pub chat: ChatRecord,
    pub character: Character,
    pub backend: Backend,
}

impl ReadyChat {
    /// The turn this chat admits, as the chat turn takes it.
    pub fn turn(&self) -> SessionTurn {
        SessionTurn {
            chat: self.chat.clone(),
            // The window holds the new message too, so it leaves room for one fewer before it.
            history_window: (self.backend.settings.message_window_size as usize).saturating_sub(1),
            backend: self.backend.settings.clone(),
            newest: None,
        }
    }
}

pub async fn ready_chat(state: &AppState, user_id: &str, chat_id: &str) -> ApiResult<ReadyChat> {
    let chat = own_chat(state, user_id, chat_id).await?;
    ready(state, user_id, chat).await
}

/// [`ready_chat`] of a chat already read.
pub async fn ready(state: &AppState, user_id: &str, chat: ChatRecord) -> ApiResult<ReadyChat> {
    let (character, backends) =
        visible_character(state, user_id, &chat.session.character_uid).await?;
    let backend = backends
        .into_iter()
        .find(|b| b.id == chat.session.backend_id)
        .ok_or_else(|| missing("Backend"))?;
    let held = chat.record.quota.held_at(crate::domain::now());
    if let Some((used, limit)) = chat.usage().exhausts(&backend.settings, held) {
        return Err(ApiError::QuotaExceeded(format!(
            "Usage {used} exceeds limit {limit}"
        )));
    }
    Ok(ReadyChat {
        chat,
        character,
        backend,
    })
}
