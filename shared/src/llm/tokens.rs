//! Token counts estimated from text, for budgets and for providers that report no usage.

use super::{CompletionRequest, Usage};

/// Per-message overhead of the chat format, in tokens.
const MESSAGE_OVERHEAD: usize = 4;

/// A tokenizer-free estimate (about four bytes a token for English text): close enough to
/// budget a context window, size a document's chunks and account for usage when a provider
/// reports none.
pub fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(4) + MESSAGE_OVERHEAD
}

/// Usage estimated from the text, for a provider that reports none.
pub fn estimated_usage(request: &CompletionRequest, answer: &str) -> Usage {
    Usage {
        prompt_tokens: request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content) as u32)
            .sum(),
        completion_tokens: estimate_tokens(answer) as u32,
    }
}
