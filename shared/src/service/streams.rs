//! Streams that outlive their connection: a running answer followed from its checkpoints on
//! any instance, and a stop asked of it through the store.

use std::time::Duration;

use futures_util::Stream;

use super::or_missing;
use crate::AppState;
use crate::domain::Message;
use crate::error::ServiceResult;

/// How often a follower reads the answer: readers stay within this of the checkpoints.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);
/// How long past the streaming turn's deadline an answer may still read as streaming before
/// it counts as abandoned (its function stopped mid-turn and never settled it).
const ABANDONED_AFTER: Duration = Duration::from_secs(30);

/// What a follower of a running answer sees, in order.
#[derive(Debug)]
pub enum Followed {
    /// Text the follower had not had yet.
    Text(String),
    /// The answer as its turn stored it at the end.
    Finished(Box<Message>),
    /// The turn ended without an answer (it failed before any text).
    Vanished,
    /// The turn's function stopped mid-answer; the answer stays as last checkpointed.
    Abandoned(Box<Message>),
}

/// The answer streaming in the caller's conversation (the newest, or the one with this id);
/// `None` when no turn runs there. Another user's conversation is a 404.
pub async fn running_answer(
    state: &AppState,
    user_id: &str,
    conversation_id: &str,
    message_id: Option<&str>,
) -> ServiceResult<Option<Message>> {
    let answer = state
        .store
        .streaming_answer(user_id, conversation_id, message_id)
        .await
        .map_err(or_missing("Conversation"))?;
    Ok(answer.filter(|answer| !abandoned(state, answer)))
}

fn abandoned(state: &AppState, answer: &Message) -> bool {
    let limit = state.config.llm.stream_turn_timeout + ABANDONED_AFTER;
    crate::domain::now() - answer.created_at > chrono::Duration::from_std(limit).unwrap_or_default()
}

/// Asks the running answer's turn to stop; its id when one was running. The turn notices at
/// its next checkpoint (within a second), whichever instance runs it.
pub async fn stop(
    state: &AppState,
    user_id: &str,
    conversation_id: &str,
    message_id: Option<&str>,
) -> ServiceResult<Option<String>> {
    let Some(answer) = running_answer(state, user_id, conversation_id, message_id).await? else {
        return Ok(None);
    };
    let asked = state.store.request_stop(&answer).await?;
    Ok(asked.then_some(answer.id))
}

/// Follows `answer` from its checkpoints: its text after the first `after_chars` characters,
/// as it grows, then how it ended.
pub fn follow(
    state: AppState,
    answer: Message,
    after_chars: usize,
) -> impl Stream<Item = Followed> {
    let follower = Follower {
        state,
        answer,
        unseen: true,
        sent_chars: after_chars,
        ended: false,
    };
    futures_util::stream::unfold(follower, Follower::next)
}

struct Follower {
    state: AppState,
    /// The answer as last read.
    answer: Message,
    /// Whether the answer as last read is still to be looked at.
    unseen: bool,
    sent_chars: usize,
    ended: bool,
}

impl Follower {
    async fn next(mut self) -> Option<(Followed, Self)> {
        if self.ended {
            return None;
        }
        loop {
            if !self.unseen {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                match self.state.store.answer_now(&self.answer).await {
                    Ok(Some(answer)) => self.answer = answer,
                    Ok(None) => return self.end(Followed::Vanished),
                    // Tried again at the next interval, unless the turn is long over.
                    Err(e) => tracing::warn!(error = ?e, "running answer not read"),
                }
            }
            self.unseen = false;
            let content = &self.answer.content;
            let chars = content.chars().count();
            if chars > self.sent_chars {
                let text = content.chars().skip(self.sent_chars).collect();
                self.sent_chars = chars;
                // A finished answer is looked at once more, for its end.
                self.unseen = !self.answer.is_streaming();
                return Some((Followed::Text(text), self));
            }
            if !self.answer.is_streaming() {
                let answer = Box::new(self.answer.clone());
                return self.end(Followed::Finished(answer));
            }
            if abandoned(&self.state, &self.answer) {
                let answer = Box::new(self.answer.clone());
                return self.end(Followed::Abandoned(answer));
            }
        }
    }

    fn end(mut self, last: Followed) -> Option<(Followed, Self)> {
        self.ended = true;
        Some((last, self))
    }
}
