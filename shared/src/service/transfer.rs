//! Taking a conversation out and bringing it back: an export is the conversation with every
//! message; an import stores such a file as a new conversation of whoever sends it.

use crate::domain::{Conversation, Feedback, Message, MessageDraft, NewConversation};
use crate::error::ApiResult;
use crate::store::Store;

use super::or_missing;

/// The most messages one import stores. Sending adds two at a time; a file holds at most
/// a request body's worth, and this keeps an import's writes (and an export's read) bounded.
pub const MAX_IMPORTED_MESSAGES: usize = 1_000;

/// A conversation with every message, in creation order.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
}

impl Transcript {
    /// The messages a reader follows, first to last: the active branch.
    pub fn active_branch(&self) -> &[Message] {
        &self.messages
    }
}

/// The caller's conversation with every message.
pub async fn export(store: &Store, user_id: &str, conversation_id: &str) -> ApiResult<Transcript> {
    let (record, messages) = store
        .conversation_with_messages(user_id, conversation_id, usize::MAX)
        .await
        .map_err(or_missing("Conversation"))?;
    Ok(Transcript {
        conversation: record.conversation,
        messages,
    })
}

/// One message of an import, checked against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedMessage {
    pub draft: MessageDraft,
    pub feedback: Option<Feedback>,
    /// The message it follows, by its place in the file (always an earlier one); `None` for
    /// a first message.
    pub parent: Option<usize>,
}

/// A conversation to store as new, as an export described it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationImport {
    pub conversation: NewConversation,
    /// In the file's order, which is their creation order.
    pub messages: Vec<ImportedMessage>,
    /// The leaf of the active branch, by its place in the file; `None`: the last message.
    pub active: Option<usize>,
}

/// Stores the import as a new conversation of `user_id`, with new ids and the same content,
/// order, roles and ratings.
pub async fn import(
    store: &Store,
    user_id: &str,
    import: ConversationImport,
) -> ApiResult<Transcript> {
    let conversation = Conversation::create(user_id, import.conversation);
    let messages: Vec<Message> = import
        .messages
        .into_iter()
        .zip(1..)
        .map(|(imported, sequence)| Message {
            feedback: imported.feedback,
            ..imported.draft.into_message(&conversation.id, sequence)
        })
        .collect();
    let conversation = store.import_conversation(conversation, &messages).await?;
    Ok(Transcript {
        conversation,
        messages,
    })
}
