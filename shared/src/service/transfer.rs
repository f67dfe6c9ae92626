//! Taking a conversation out and bringing it back: an export is the conversation with every
//! message; an import stores such a file as a new conversation of whoever sends it.

use crate::domain::{
    Conversation, Feedback, Lineage, Message, MessageDraft, NewConversation, Parent, Tree,
};
use crate::error::ServiceResult;
use crate::store::Store;

use super::or_missing;

/// The most messages one import stores: its writes, and a later export's read, stay bounded
/// whatever the file (a request body holds thousands of short messages).
pub const MAX_IMPORTED_MESSAGES: usize = 1_000;

/// A conversation with every message, as its tree.
#[derive(Debug)]
pub struct Transcript {
    pub conversation: Conversation,
    pub tree: Tree,
}

impl Transcript {
    /// The messages a reader follows, first to last: the active branch.
    pub fn active_branch(&self) -> Vec<&Message> {
        self.tree
            .active_branch(self.conversation.active_message_id.as_deref())
    }
}

/// The caller's conversation with every message.
pub async fn export(
    store: &Store,
    user_id: &str,
    conversation_id: &str,
) -> ServiceResult<Transcript> {
    let (record, tree) = store
        .conversation_tree(user_id, conversation_id)
        .await
        .map_err(or_missing("Conversation"))?;
    Ok(Transcript {
        conversation: record.conversation,
        tree,
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
) -> ServiceResult<Transcript> {
    let mut conversation = Conversation::create(user_id, import.conversation);
    // Parents come earlier in the file, so each one's new id is known when its children come.
    let mut messages: Vec<Message> = Vec::with_capacity(import.messages.len());
    for (imported, sequence) in import.messages.into_iter().zip(1..) {
        let (parent, lineage) = match imported.parent {
            Some(index) => (
                Parent::Message(messages[index].id.clone()),
                messages[index].lineage_below(),
            ),
            None => (Parent::Root, Some(Lineage::root())),
        };
        let mut draft = imported.draft;
        draft.lineage = lineage;
        messages.push(Message {
            feedback: imported.feedback,
            ..draft.into_message(&conversation.id, sequence, parent)
        });
    }
    let active = import.active.or(messages.len().checked_sub(1));
    conversation.active_message_id = active.map(|i| messages[i].id.clone());
    let conversation = store.import_conversation(conversation, &messages).await?;
    Ok(Transcript {
        conversation,
        tree: Tree::new(messages),
    })
}
