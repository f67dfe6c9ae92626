//! Storing a turn's question, which runs beside the work the model's answer waits for.

use crate::AppState;
use crate::domain::{ChatSnapshot, Message, MessageDraft, QuotaClaim, QuotaHold};
use crate::error::ServiceResult;
use crate::store::{ConversationRecord, QuotaChange};

/// Where a turn's question goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// A conversation the turn creates with it.
    NewConversation,
    Existing,
}

/// What storing a turn's question leaves: the conversation as written, the stored question
/// (and a streamed turn's answer), and the quota the turn holds.
pub(super) struct StoredQuestionOf {
    pub(super) record: ConversationRecord,
    pub(super) question: Message,
    pub(super) answer: Option<Message>,
    pub(super) held: Option<QuotaHold>,
}

/// Stores the turn's question, and a streamed turn's empty answer after it: in a new
/// conversation (one transaction with it), or appended to its conversation with the quota it
/// claims and, in a chat, checking that the chat's character and backend are still as the
/// turn used them. A question asked before, by a try that failed, is already stored and holds
/// no quota any more.
pub(super) async fn store_question(
    state: &AppState,
    (record, place): (ConversationRecord, Place),
    (question, answer): (MessageDraft, Option<MessageDraft>),
    (claim, snapshot): (Option<QuotaClaim>, Option<ChatSnapshot>),
    asked: Option<Message>,
) -> ServiceResult<StoredQuestionOf> {
    if let Some(question) = asked {
        let (record, answer) = match answer {
            Some(answer) => {
                let (record, mut stored) =
                    state.store.append_messages(record, vec![answer]).await?;
                (record, stored.pop())
            }
            None => (record, None),
        };
        return Ok(StoredQuestionOf {
            record,
            question,
            answer,
            held: None,
        });
    }
    let held = claim.as_ref().map(|c| c.hold);
    let drafts = std::iter::once(question).chain(answer).collect();
    let (record, mut stored) = if place == Place::NewConversation {
        state.store.create_conversation_with(record, drafts).await?
    } else {
        let quota = claim.map_or(QuotaChange::None, QuotaChange::Claim);
        state
            .store
            .append_checked(record, drafts, &quota, snapshot.as_ref())
            .await?
    };
    let question = stored.remove(0);
    Ok(StoredQuestionOf {
        record,
        question,
        answer: stored.pop(),
        held,
    })
}

/// Runs `work` (retrieval, the prompt, the first model call) beside `storing` the question
/// (or another step the model's answer must wait for). The store always runs to its end;
/// when it fails, `work` is dropped at once (an open model request is cancelled, so the
/// provider stops) and the store's error is the turn's.
pub async fn beside_the_question<S, W>(
    storing: impl Future<Output = ServiceResult<S>>,
    work: impl Future<Output = W>,
) -> ServiceResult<(S, W)> {
    tokio::pin!(storing, work);
    tokio::select! {
        stored = &mut storing => {
            let stored = stored?;
            Ok((stored, work.await))
        }
        done = &mut work => Ok((storing.await?, done)),
    }
}
