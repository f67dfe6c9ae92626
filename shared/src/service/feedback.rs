//! Rating answers: a user's thumb up or down (and comment) on an assistant message.

use crate::domain::{Feedback, Message, MessageRole, Rating};
use crate::error::{ApiResult, ServiceError};
use crate::store::{Store, StoreError};

use super::or_missing;

/// Concurrent ratings of one message each re-read and retry; this many tries is plenty.
const MAX_ATTEMPTS: u32 = 20;

/// Sets the caller's rating of an answer (`None` withdraws it, comment and all) and returns
/// the message as it now stands.
pub async fn rate_answer(
    store: &Store,
    user_id: &str,
    conversation_id: &str,
    message_id: &str,
    rating: Option<Rating>,
    comment: Option<String>,
) -> ApiResult<Message> {
    for _ in 0..MAX_ATTEMPTS {
        let message = store
            .message(user_id, conversation_id, message_id)
            .await
            .map_err(or_missing("Message"))?;
        if message.role != MessageRole::Assistant {
            return Err(ServiceError::invalid(
                ["path".into(), "message_id".into()],
                "only an assistant message can be rated",
                "assistant_message_required",
            ));
        }
        let feedback = rating.map(|rating| Feedback::new(rating, comment.clone()));
        match store.replace_feedback(user_id, &message, feedback).await {
            // Its rating changed since it was read: read it again so the counters stay exact.
            Err(StoreError::Conflict) => continue,
            outcome => return outcome.map_err(or_missing("Message")),
        }
    }
    Err(StoreError::Conflict.into())
}
