//! Rating answers: a user's thumb up or down (and comment) on an assistant message.

use crate::domain::{Feedback, Message, MessageRole, Placement, Rating};
use crate::error::{ServiceError, ServiceResult};
use crate::store::{Store, StoreError};

use super::{missing, or_missing};

/// Concurrent ratings of one message each re-read and retry; this many tries is plenty.
const MAX_ATTEMPTS: u32 = 20;

/// Sets the caller's rating of an answer (`None` withdraws it, comment and all) and returns
/// the message as it now stands, with its place in the conversation's tree (read in the same
/// two requests as the message alone: the conversation, and one query for its messages).
pub async fn rate_answer(
    store: &Store,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
    rating: Option<Rating>,
    comment: Option<String>,
) -> ServiceResult<(Message, Placement)> {
    for _ in 0..MAX_ATTEMPTS {
        let (_, tree) = store
            .conversation_tree(user_id, conversation_id)
            .await
            .map_err(or_missing("Message"))?;
        let message = tree.get(message_id).ok_or_else(|| missing("Message"))?;
        if message.role != MessageRole::Assistant {
            return Err(ServiceError::invalid(
                ["path".into(), "message_id".into()],
                "only an assistant message can be rated",
                "assistant_message_required",
            ));
        }
        let feedback = rating.map(|rating| Feedback::new(rating, comment.clone()));
        match store.replace_feedback(user_id, message, feedback).await {
            // Its rating changed since it was read: read it again so the counters stay exact.
            Err(StoreError::Conflict) => continue,
            outcome => {
                let rated = outcome.map_err(or_missing("Message"))?;
                return Ok((rated, tree.placement(message_id)));
            }
        }
    }
    Err(StoreError::Conflict.into())
}
