//! A title the model writes for a conversation a turn started, from its first message.
//!
//! It is asked for as soon as the question is stored and runs beside the answer, so it adds
//! no wait unless it outlasts the answer (at most [`TITLE_TIMEOUT`]). Whatever goes wrong
//! (the model fails, writes nothing usable, the user renamed the conversation meanwhile), the
//! conversation keeps the title it has, and the turn is not affected.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::AppState;
use crate::domain::Conversation;
use crate::llm::{CompletionRequest, PromptMessage, Provider};
use crate::store::{Store, StoreError};

/// The longest title written.
pub const MAX_TITLE_CHARS: usize = 60;
/// A title is worth a short wait at the end of a turn, never a long one.
const TITLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the first message the model reads: the start says what it is about.
const MESSAGE_CHARS: usize = 2_000;
/// Enough for a title of 60 characters in most languages.
const TITLE_TOKENS: u32 = 32;
const INSTRUCTION: &str = "Write a short title (at most 8 words) for a conversation that \
    starts with the user's message below. Answer with the title only: no quotes, no \
    punctuation at the end.";

/// A title being written; [`PendingTitle::written`] waits for it.
pub struct PendingTitle(JoinHandle<Option<String>>);

impl PendingTitle {
    /// Starts writing a title for `conversation`, just created with `message` as its first
    /// message, unless titles are turned off. `provider` and `model` are the turn's, used
    /// unless `TITLE_PROVIDER` or `TITLE_MODEL` names others.
    pub fn start(
        state: &AppState,
        provider: &Arc<Provider>,
        model: &str,
        conversation: &Conversation,
        message: &str,
    ) -> Option<Self> {
        let config = &state.config.titles;
        if !config.enabled {
            return None;
        }
        let provider = match &config.provider {
            Some(name) => state.llm.get(Some(name))?,
            None => provider.clone(),
        };
        let request = CompletionRequest {
            model: config.model.clone().unwrap_or_else(|| model.to_owned()),
            messages: vec![
                PromptMessage::system(INSTRUCTION),
                PromptMessage::user(message.chars().take(MESSAGE_CHARS).collect::<String>()),
            ],
            temperature: Some(0.2),
            max_tokens: Some(TITLE_TOKENS),
            tools: Vec::new(),
        };
        let target = Target {
            store: state.store.clone(),
            user_id: conversation.user_id.clone(),
            conversation_id: conversation.id.clone(),
            current: conversation.title.clone(),
        };
        Some(Self(tokio::spawn(write(provider, request, target))))
    }

    /// The title written, or `None` if the conversation kept its own.
    pub async fn written(self) -> Option<String> {
        self.0.await.ok().flatten()
    }
}

/// The conversation a title is for, and the title it has now.
struct Target {
    store: Store,
    user_id: String,
    conversation_id: String,
    current: String,
}

async fn write(
    provider: Arc<Provider>,
    request: CompletionRequest,
    target: Target,
) -> Option<String> {
    let completion =
        match tokio::time::timeout(TITLE_TIMEOUT, provider.client.complete(&request)).await {
            Ok(Ok(completion)) => completion,
            Ok(Err(error)) => {
                tracing::warn!(%error, "no title written: the model failed");
                return None;
            }
            Err(_) => {
                tracing::warn!("no title written: the model took too long");
                return None;
            }
        };
    let title = clean(&completion.content)?;
    let written = target
        .store
        .replace_title(
            &target.user_id,
            &target.conversation_id,
            &target.current,
            &title,
        )
        .await;
    match written {
        Ok(()) => Some(title),
        // Renamed by the user, or deleted, meanwhile: theirs stands.
        Err(StoreError::Conflict | StoreError::NotFound) => None,
        Err(error) => {
            tracing::warn!(?error, "no title written: storage failed");
            None
        }
    }
}

/// The title in what the model wrote: its first line, without the quotes, label or closing
/// punctuation models add, whitespace collapsed, cut to [`MAX_TITLE_CHARS`] at a word
/// boundary when there is one. `None` when nothing is left.
fn clean(written: &str) -> Option<String> {
    let line = written.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .strip_prefix("Title:")
        .or_else(|| line.strip_prefix("title:"))
        .unwrap_or(line);
    let words: Vec<&str> = line.split_whitespace().collect::<Vec<_>>();
    let joined = words.join(" ");
    let trimmed = joined
        .trim_matches(|c: char| matches!(c, '"' | '\'' | '`' | '*' | '#' | '“' | '”' | '«' | '»'))
        .trim_end_matches(['.', '!', ':', ';', ','])
        .trim();
    if trimmed.chars().count() <= MAX_TITLE_CHARS {
        return (!trimmed.is_empty()).then(|| trimmed.to_owned());
    }
    let cut: String = trimmed.chars().take(MAX_TITLE_CHARS).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space > 0 => &cut[..space],
        _ => cut.as_str(),
    };
    Some(
        at_word
            .trim_end_matches([',', ':', ';', '-', ' '])
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_loses_its_quotes_label_and_closing_punctuation() {
        assert_eq!(
            clean("\"Planning a trip to Paris.\"").as_deref(),
            Some("Planning a trip to Paris")
        );
        assert_eq!(
            clean("\n  Title: **Rust   lifetimes** \nmore").as_deref(),
            Some("Rust lifetimes")
        );
        assert_eq!(clean("  \n \"\" "), None);
    }

    #[test]
    fn a_long_title_is_cut_at_a_word_within_sixty_characters() {
        let long = "Comparing the long term maintenance costs of several different databases";
        let title = clean(long).unwrap();
        assert!(title.chars().count() <= MAX_TITLE_CHARS, "{title}");
        assert_eq!(
            title,
            "Comparing the long term maintenance costs of several"
        );
        let one_word = "x".repeat(80);
        assert_eq!(clean(&one_word).unwrap(), "x".repeat(60));
    }
}
