//! Building the prompt: system prompt, the history that fits the context window, the new message.

use crate::documents::Source;
use crate::domain::{Message, MessageRole};
use crate::llm::PromptMessage;

// The turn estimates with these too.
pub(super) use crate::llm::{estimate_tokens, estimated_usage};

/// The system prompt with the retrieved sources appended as numbered passages, so that the
/// model can cite them as [1], [2], ...
pub fn with_sources(system: Option<&str>, sources: &[Source]) -> String {
    let mut prompt = system.map(|s| format!("{s}\n\n")).unwrap_or_default();
    if sources.is_empty() {
        prompt.push_str("No passage of the user's documents matches this question; say so if the answer depends on them.");
        return prompt;
    }
    prompt.push_str(
        "Answer from these passages of the user's documents, citing them by number like [1]:\n",
    );
    for (i, source) in sources.iter().enumerate() {
        prompt.push_str(&format!(
            "\n[{}] {} (part {}):\n{}\n",
            i + 1,
            source.title,
            source.chunk_index + 1,
            source.content.trim()
        ));
    }
    prompt
}

/// The prompt for a turn: `system`, then as many of the latest `history` messages as fit in
/// `budget` tokens (and in `max_history` messages), oldest dropped first, then `new_message`.
pub fn build(
    system: Option<&str>,
    history: &[Message],
    max_history: usize,
    new_message: &str,
    budget: usize,
) -> Vec<PromptMessage> {
    let fixed = system.map_or(0, estimate_tokens) + estimate_tokens(new_message);
    let mut remaining = budget.saturating_sub(fixed);
    let kept: Vec<&Message> = history
        .iter()
        .rev()
        .filter(|m| matches!(m.role, MessageRole::User | MessageRole::Assistant))
        .take(max_history)
        .take_while(|m| {
            let cost = estimate_tokens(&m.content);
            let fits = cost <= remaining;
            remaining = remaining.saturating_sub(cost);
            fits
        })
        .collect();
    system
        .map(PromptMessage::system)
        .into_iter()
        .chain(kept.into_iter().rev().map(|m| {
            let role = if m.role == MessageRole::User {
                MessageRole::User
            } else {
                MessageRole::Assistant
            };
            PromptMessage::new(role, m.content.as_str())
        }))
        .chain(std::iter::once(PromptMessage::user(new_message)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{MessageDraft, Parent};

    fn history(n: u64) -> Vec<Message> {
        (1..=n)
            .map(|i| {
                let role = if i % 2 == 1 {
                    MessageRole::User
                } else {
                    MessageRole::Assistant
                };
                MessageDraft::new(role, format!("message number {i:04}")).into_message(
                    "c",
                    i,
                    Parent::Unrecorded,
                )
            })
            .collect()
    }

    #[test]
    fn the_oldest_messages_are_dropped_to_fit_the_budget() {
        let each = estimate_tokens("message number 0001");
        let prompt = build(
            Some("sys"),
            &history(10),
            100,
            "now",
            estimate_tokens("sys") + estimate_tokens("now") + 3 * each,
        );
        let contents: Vec<&str> = prompt.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(
            contents,
            [
                "sys",
                "message number 0008",
                "message number 0009",
                "message number 0010",
                "now"
            ]
        );
        assert_eq!(prompt[1].role, MessageRole::Assistant);
    }

    #[test]
    fn the_message_window_caps_history_too() {
        let prompt = build(None, &history(10), 2, "now", 100_000);
        assert_eq!(prompt.len(), 3);
        assert_eq!(prompt[0].content, "message number 0009");
    }

    #[test]
    fn sources_are_numbered_after_the_system_prompt() {
        let source = |title: &str, content: &str| Source {
            document_id: "d".into(),
            title: title.into(),
            chunk_index: 0,
            score: 0.9,
            content: content.into(),
        };
        let prompt = with_sources(
            Some("Be brief."),
            &[source("Guide", "Alpha."), source("FAQ", "Beta.")],
        );
        assert!(prompt.starts_with("Be brief.\n\n"));
        assert!(prompt.contains("[1] Guide (part 1):\nAlpha."));
        assert!(prompt.contains("[2] FAQ (part 1):\nBeta."));
        assert!(with_sources(None, &[]).contains("No passage"));
    }

    #[test]
    fn a_tiny_budget_still_sends_the_new_message() {
        let prompt = build(Some("sys"), &history(4), 100, "now", 1);
        assert_eq!(
            prompt.iter().map(|m| m.role).collect::<Vec<_>>(),
            [MessageRole::System, MessageRole::User]
        );
    }
}
