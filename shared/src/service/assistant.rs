//! FreeChat's assistant: another character, speaking for the user, suggests the user's next
//! message. It reads the chat like a turn does but stores nothing.

use std::sync::Arc;

use super::characters::{default_backend, visible_character};
use super::chat::{TURN_WINDOW, beside_the_question, within_rate_limit};
use super::sessions::{
    ReadyChat, active_branch_newest, backend_model, own_chat, ready, refreshed, save_quietly,
    scene_prompt,
};
use crate::AppState;
use crate::domain::{Character, Message, MessageRole, Persona};
use crate::error::{ServiceError, ServiceResult};
use crate::llm::{CompletionRequest, PromptMessage, Provider};
use crate::store::PendingCount;

/// What the assistant is asked to do, after its own character prompt.
const ASSISTANT_TASK: &str = "Write the next message of the person you speak for in the \
    conversation so far, in their voice. Answer with that message only.";
/// Stands in for an empty history, as a prompt needs a message to answer.
const NO_HISTORY_YET: &str = "(The conversation has not started yet.)";

/// The assistant's model call, made by `ask`, and its request: the assistant character,
/// speaking for the user, reads the chat with the roles swapped, so that its answer is the
/// user's next message.
///
/// One DynamoDB step before the model: the rate-limit count, the chat, the assistant and the
/// chat's messages together (the active branch is walked among them in memory); the chat's character and backend come from the chat's
/// snapshot of them. Storing nothing, the assistant has no transaction to check the snapshot
/// in: it reads the items beside the model call instead, and when they changed drops the call
/// at once and asks again from them.
pub async fn assistant_answer<T, Asking>(
    state: &AppState,
    user_id: &str,
    (chat_id, assistant_uid): (&str, &str),
    count: Option<&PendingCount>,
    ask: impl Fn(Arc<Provider>, CompletionRequest) -> Asking,
) -> ServiceResult<(T, CompletionRequest)>
where
    Asking: Future<Output = ServiceResult<T>>,
{
    let (admitted, chat, assistant, messages) = tokio::join!(
        within_rate_limit(count),
        own_chat(state, user_id, chat_id),
        visible_character(state, user_id, assistant_uid),
        state.store.window_read(chat_id, TURN_WINDOW)
    );
    admitted?;
    let chat = chat?;
    let messages = state
        .store
        .window_as_of(&chat.record, TURN_WINDOW, messages?)
        .await?;
    let (assistant, backends) = assistant?;
    let backend = default_backend(&assistant, &backends)
        .ok_or_else(|| ServiceError::BadRequest("No backend found.".into()))?;
    let (provider, model) = backend_model(state, backend)?;
    let window = backend.settings.message_window_size as usize;
    let newest = active_branch_newest(state, &chat, messages, window).await?;
    let prompt = |ready: &ReadyChat| {
        let system = format!(
            "{}\n\n{ASSISTANT_TASK}",
            scene_prompt(&assistant, &assistant_persona(ready))
        );
        CompletionRequest {
            model: model.clone(),
            messages: swapped_history(system, &ready.character, &newest, window),
            temperature: backend.settings.temperature,
            max_tokens: backend.settings.max_tokens,
            tools: Vec::new(),
        }
    };
    // The assistant's answer counts against nothing, but as in FreeChat a chat whose quota
    // is used up gets no help either.
    let ready = ready(state, user_id, chat.clone()).await?;
    let used = ready.snapshot();
    let request = prompt(&ready);
    let checked = async {
        if chat.record.snapshot.as_ref() != Some(&used) {
            // Read from the items just now: only saved, for the next turn.
            if let Some(saved) = ready.to_save(state)? {
                save_quietly(state, &ready.chat, saved).await;
            }
            return Ok(());
        }
        let live = refreshed(state, user_id, chat.clone()).await?;
        match live.snapshot().same_versions(&used) {
            true => Ok(()),
            false => Err(ServiceError::ChatChanged),
        }
    };
    match beside_the_question(checked, ask(provider.clone(), request.clone())).await {
        Ok(((), answer)) => Ok((answer?, request)),
        Err(ServiceError::ChatChanged) => {
            let ready = refreshed(state, user_id, chat).await?;
            let request = prompt(&ready);
            let save = async {
                if let Some(saved) = ready.to_save(state)? {
                    save_quietly(state, &ready.chat, saved).await;
                }
                Ok::<_, ServiceError>(())
            };
            let (answer, saved) = tokio::join!(ask(provider, request.clone()), save);
            saved?;
            Ok((answer?, request))
        }
        Err(error) => Err(error),
    }
}

/// Who speaks in the assistant's prompt: the assistant as the user, to the chat's character.
fn assistant_persona(ready: &ReadyChat) -> Persona<'_> {
    let (session, character) = (&ready.chat.session, &ready.character);
    Persona {
        character_nickname: session.user_nickname.as_deref(),
        user_nickname: Some(
            session
                .character_nickname
                .as_deref()
                .unwrap_or(character.display_name()),
        ),
        user_profile: character.info.description.as_deref(),
        about: session.about.as_deref(),
        context: None,
    }
}

/// The chat's newest messages (newest first) as the assistant reads them, after its system
/// prompt: the user's words as its own and the character's as the other side's.
fn swapped_history(
    system: String,
    character: &Character,
    newest: &[Message],
    window: usize,
) -> Vec<PromptMessage> {
    let greeting = character
        .info
        .greeting
        .as_deref()
        .filter(|g| newest.len() < window && !g.trim().is_empty())
        .map(PromptMessage::user);
    let mut history: Vec<PromptMessage> = newest
        .iter()
        .rev()
        .filter_map(|m| match m.role {
            MessageRole::User => Some(PromptMessage::assistant(m.content.as_str())),
            MessageRole::Assistant => Some(PromptMessage::user(m.content.as_str())),
            MessageRole::System | MessageRole::Tool => None,
        })
        .collect();
    if let Some(greeting) = greeting {
        history.insert(0, greeting);
    }
    if history.is_empty() {
        history.push(PromptMessage::user(NO_HISTORY_YET));
    }
    std::iter::once(PromptMessage::system(system))
        .chain(history)
        .collect()
}
