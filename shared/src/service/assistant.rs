//! FreeChat's assistant: another character, speaking for the user, suggests the user's next
//! message. It reads the chat like a turn does but stores nothing.

use std::sync::Arc;

use super::characters::{default_backend, visible_character};
use super::chat::within_rate_limit;
use super::sessions::{
    ReadyChat, active_branch_newest_first, backend_model, own_chat, ready, scene_prompt,
};
use crate::AppState;
use crate::domain::{MessageRole, Persona};
use crate::error::{ApiResult, ServiceError};
use crate::llm::{CompletionRequest, PromptMessage, Provider};
use crate::store::PendingCount;

/// What the assistant is asked to do, after its own character prompt.
const ASSISTANT_TASK: &str = "Write the next message of the person you speak for in the \
    conversation so far, in their voice. Answer with that message only.";
/// Stands in for an empty history, as a prompt needs a message to answer.
const NO_HISTORY_YET: &str = "(The conversation has not started yet.)";

/// The assistant's model call: the assistant character, speaking for the user, reads the
/// chat with the roles swapped, so that its answer is the user's next message.
pub async fn assistant_request(
    state: &AppState,
    user_id: &str,
    (chat_id, assistant_uid): (&str, &str),
    count: Option<&PendingCount>,
) -> ApiResult<(Arc<Provider>, CompletionRequest)> {
    // Two DynamoDB steps before the model: the rate-limit count, the chat and the assistant
    // together, then the chat's character and history together.
    let (admitted, chat, assistant) = tokio::join!(
        within_rate_limit(count),
        own_chat(state, user_id, chat_id),
        visible_character(state, user_id, assistant_uid)
    );
    admitted?;
    let chat = chat?;
    let (assistant, backends) = assistant?;
    let backend = default_backend(&assistant, &backends)
        .ok_or_else(|| ServiceError::BadRequest("No backend found.".into()))?;
    let (provider, model) = backend_model(state, backend)?;
    let window = backend.settings.message_window_size as usize;
    // The assistant's answer counts against nothing, but as in FreeChat a chat whose quota
    // is used up gets no help either.
    let (ready, newest) = tokio::join!(
        ready(state, user_id, chat.clone()),
        active_branch_newest_first(state, &chat)
    );
    let ReadyChat {
        chat, character, ..
    } = ready?;
    let mut newest = newest?;
    newest.truncate(window);
    let session = &chat.session;
    let persona = Persona {
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
    };
    let system = format!("{}\n\n{ASSISTANT_TASK}", scene_prompt(&assistant, &persona));
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
    let messages = std::iter::once(PromptMessage::system(system))
        .chain(history)
        .collect();
    let request = CompletionRequest {
        model,
        messages,
        temperature: backend.settings.temperature,
        max_tokens: backend.settings.max_tokens,
        tools: Vec::new(),
    };
    Ok((provider, request))
}
