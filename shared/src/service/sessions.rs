//! FreeChat's chat sessions: whose chat it is and what admits a turn in a chat (its character and backend still there, its quota not used up).

use std::sync::Arc;

use crate::AppState;
use crate::domain::{
    Backend, BackendSettings, Character, ChatSession, ChatSettings, ChatSnapshot, Message,
    MessageWindow, Persona, Tree,
};
use crate::error::{ServiceError, ServiceResult};
use crate::llm::Provider;
use crate::store::ChatRecord;

use super::characters::visible_character;
use super::chat::TURN_WINDOW;
use super::{missing, or_missing};

/// The caller's chat; another user's, or a conversation that is no chat, is missing.
pub async fn own_chat(state: &AppState, user_id: &str, chat_id: &str) -> ServiceResult<ChatRecord> {
    state
        .store
        .chat(user_id, chat_id)
        .await
        .map_err(or_missing("Chat"))
}

/// The chat's active branch, newest first: all FreeChat shows of a chat that was branched
/// through Chatter. Its newest `count` messages (every one for `None`) are found among the
/// chat's newest messages, read in one query, and the branch walked in memory.
pub async fn active_branch_newest_first(
    state: &AppState,
    chat: &ChatRecord,
    count: Option<usize>,
) -> ServiceResult<Vec<Message>> {
    match count {
        Some(count) => {
            let read = count.max(TURN_WINDOW);
            let window = state.store.newest_messages_in(chat.id(), read).await?;
            active_branch_newest(state, chat, window, count).await
        }
        None => {
            let every = Tree::new(state.store.all_messages(chat).await?);
            Ok(newest_first(&every, chat, usize::MAX))
        }
    }
}

/// The newest `count` messages of the chat's active branch, newest first, from its newest
/// messages, `window`, read already; when the branch goes back past them, every message is
/// read (one more query).
pub async fn active_branch_newest(
    state: &AppState,
    chat: &ChatRecord,
    window: MessageWindow,
    count: usize,
) -> ServiceResult<Vec<Message>> {
    let tree = Tree::of(window);
    let active = chat.conversation().active_message_id.as_deref();
    let leaf_read = active.is_none_or(|id| tree.get(id).is_some());
    if leaf_read && tree.reaches_back(tree.active_leaf(active), count) {
        return Ok(newest_first(&tree, chat, count));
    }
    let tree = Tree::new(state.store.all_messages(chat).await?);
    Ok(newest_first(&tree, chat, count))
}

fn newest_first(tree: &Tree, chat: &ChatRecord, count: usize) -> Vec<Message> {
    let active = chat.conversation().active_message_id.as_deref();
    let branch = tree.active_branch(active);
    branch.into_iter().rev().take(count).cloned().collect()
}

/// A turn in a FreeChat chat, admitted by its rules: the chat as
/// loaded, how many earlier messages its prompt may carry (`messageWindowSize`), the
/// backend whose quota it claims when it stores its question, and the character and backend
/// as the turn used them, which storing its question checks are still so.
#[derive(Debug, Clone)]
pub struct SessionTurn {
    pub chat: ChatRecord,
    pub history_window: usize,
    pub backend: BackendSettings,
    pub snapshot: ChatSnapshot,
    /// The chat's newest messages, when they were read beside the chat itself.
    pub messages: Option<MessageWindow>,
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
            snapshot: self.snapshot(),
            messages: None,
        }
    }

    pub fn snapshot(&self) -> ChatSnapshot {
        ChatSnapshot::of(&self.character, &self.backend)
    }

    /// What the chat's item is to be saved with so that its settings and snapshot match its
    /// character and backend as this turn has them; `None` when it has them already.
    pub fn to_save(&self, state: &AppState) -> ServiceResult<Option<(ChatSettings, ChatSnapshot)>> {
        let settings = chat_settings(state, &self.character, &self.backend, &self.chat.session)?;
        let snapshot = self.snapshot();
        let current = settings.differ_from(self.chat.conversation())
            || self.chat.record.snapshot.as_ref() != Some(&snapshot);
        Ok(current.then_some((settings, snapshot)))
    }
}

/// The chat ready for a turn: its character and backend from the chat's snapshot of them
/// when it has one (no read; the turn's question checks it), else from the items.
pub async fn ready(state: &AppState, user_id: &str, chat: ChatRecord) -> ServiceResult<ReadyChat> {
    let snapshot = chat.record.snapshot.clone();
    if let Some(snapshot) = snapshot.filter(|s| s.is_of(&chat.session)) {
        // A snapshot that refuses the turn is confirmed from the items: one of a character
        // made visible again, or of a quota raised since, would otherwise refuse every turn,
        // as no turn would store a question and find it stale.
        if let Ok(ready) = admitted(user_id, chat.clone(), snapshot.character, snapshot.backend) {
            return Ok(ready);
        }
    }
    refreshed(state, user_id, chat).await
}

/// [`ready`] from the chat's character and backend as they are now.
pub async fn refreshed(
    state: &AppState,
    user_id: &str,
    chat: ChatRecord,
) -> ServiceResult<ReadyChat> {
    let (character, backends) =
        visible_character(state, user_id, &chat.session.character_uid).await?;
    let backend = backends
        .into_iter()
        .find(|b| b.id == chat.session.backend_id)
        .ok_or_else(|| missing("Backend"))?;
    admitted(user_id, chat, character, backend)
}

/// The chat's character, its backend and its quota admit a turn of the caller's.
fn admitted(
    user_id: &str,
    chat: ChatRecord,
    character: Character,
    backend: Backend,
) -> ServiceResult<ReadyChat> {
    if !character.is_visible_to(user_id) {
        return Err(missing("Character"));
    }
    let held = chat.record.quota.held_at(crate::domain::now());
    if let Some((used, limit)) = chat.usage().exhausts(&backend.settings, held) {
        return Err(ServiceError::QuotaExceeded(format!(
            "Usage {used} exceeds limit {limit}"
        )));
    }
    Ok(ReadyChat {
        chat,
        character,
        backend,
    })
}

/// Saves the chat's snapshot of its character and backend as they are now, for a turn that
/// found the one it had stale to run again on.
pub async fn refresh(state: &AppState, user_id: &str, chat_id: &str) -> ServiceResult<()> {
    let chat = own_chat(state, user_id, chat_id).await?;
    let ready = refreshed(state, user_id, chat).await?;
    if let Some(saved) = ready.to_save(state)? {
        save_quietly(state, &ready.chat, saved).await;
    }
    Ok(())
}

/// Saves a chat's settings and snapshot as [`ReadyChat::to_save`] found them. Worth a
/// warning, not a failed turn: a chat left without them takes the longer path next time.
pub async fn save_quietly(
    state: &AppState,
    chat: &ChatRecord,
    saved: (ChatSettings, ChatSnapshot),
) {
    let (settings, snapshot) = saved;
    if let Err(e) = state
        .store
        .save_chat(chat, &chat.session, (&settings, &snapshot))
        .await
    {
        tracing::warn!(error = ?e, "chat snapshot not saved");
    }
}

/// The character's system prompt in a session. The scene is the session's `about` alone:
/// a chat starts with the character's default scene as its `about`, and a user who clears
/// it gets no scene, as in FreeChat, rather than the default one back.
pub fn session_prompt(
    character: &Character,
    session: &ChatSession,
    context: Option<&str>,
) -> String {
    scene_prompt(character, &session.persona(context))
}

/// As [`session_prompt`], for any persona.
pub fn scene_prompt(character: &Character, persona: &Persona<'_>) -> String {
    if character.info.default_scene.is_none() {
        return character.system_prompt(persona);
    }
    let mut without_default = character.clone();
    without_default.info.default_scene = None;
    without_default.system_prompt(persona)
}

/// The provider a backend calls, and the model it asks for.
pub fn backend_model(
    state: &AppState,
    backend: &Backend,
) -> ServiceResult<(Arc<Provider>, String)> {
    let wanted = backend.settings.provider.as_deref();
    let provider = state.llm.get(wanted).ok_or_else(|| {
        ServiceError::Conflict(format!(
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
pub fn chat_settings(
    state: &AppState,
    character: &Character,
    backend: &Backend,
    session: &ChatSession,
) -> ServiceResult<ChatSettings> {
    let (provider, model) = backend_model(state, backend)?;
    Ok(ChatSettings {
        system_prompt: session_prompt(character, session, None),
        provider: provider.name.clone(),
        model,
        temperature: backend.settings.temperature,
        max_tokens: backend.settings.max_tokens,
    })
}
