//! A conversation's branches: its messages as a tree, and which branch is active.

use crate::domain::Tree;
use crate::error::ServiceResult;
use crate::store::{ConversationRecord, Store};

use super::{missing, or_missing};

/// The caller's conversation with its messages as a tree; another user's is missing.
pub async fn tree(
    store: &Store,
    user_id: &str,
    conversation_id: &str,
) -> ServiceResult<(ConversationRecord, Tree)> {
    store
        .conversation_tree(user_id, conversation_id)
        .await
        .map_err(or_missing("Conversation"))
}

/// The leaf the active branch ends on once a client picks `message_id`: the newest leaf under
/// it. A message that is not in the caller's conversation is missing.
pub async fn leaf_through(
    store: &Store,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
) -> ServiceResult<String> {
    let (_, tree) = tree(store, user_id, conversation_id).await?;
    tree.newest_leaf_under(message_id)
        .map(str::to_owned)
        .ok_or_else(|| missing("Message"))
}

/// Deletes one of the caller's messages with every message under it.
pub async fn delete_message(
    store: &Store,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
) -> ServiceResult<()> {
    store
        .delete_message(user_id, conversation_id, message_id)
        .await
        .map_err(or_missing("Message"))
}
