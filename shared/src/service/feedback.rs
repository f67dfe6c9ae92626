//! Rating answers: a user's thumb up or down (and comment) on an assistant message.

use crate::domain::{Feedback, Message, MessageRole, Rating};
use crate::store::{Store, StoreError};

use super::{ServiceError, ServiceResult};

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
) -> ServiceResult<Message> {
    for _ in 0..MAX_ATTEMPTS {
        let message = store
            .message(user_id, conversation_id, message_id)
            .await
            .map_err(ServiceError::missing("Message"))?;
        if message.role != MessageRole::Assistant {
            return Err(ServiceError::Invalid {
                input: &["path", "message_id"],
                message: "only an assistant message can be rated".into(),
                kind: "assistant_message_required",
            });
        }
        let feedback = rating.map(|rating| Feedback::new(rating, comment.clone()));
        match store.replace_feedback(user_id, &message, feedback).await {
            // Its rating changed since it was read: read it again so the counters stay exact.
            Err(StoreError::Conflict) => continue,
            outcome => return outcome.map_err(ServiceError::missing("Message")),
        }
    }
    Err(ServiceError::Storage(StoreError::Conflict))
}
