//! Conversations and their messages.
//!
//! A conversation and its messages share one partition (`CONV#<id>`), so a conversation's
//! messages come back in order from one query and an append is one transaction over the
//! partition. Ownership is checked on every read and write: another user's conversation is
//! indistinguishable from a missing one.

mod append;
mod read;
mod remove;
mod update;

pub use read::WindowRead;

pub(super) use self::append::{counted, hold_values};

use std::time::Duration;

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};

use super::attributes::{conversation_key, n, s, user_stats_key, write_failed};
use super::items::{ConversationItem, MessageItem, to_item};
use super::{Store, StoreError, keys};
use crate::domain::{
    ChatSession, ChatSnapshot, Conversation, LifetimeUsage, Lineage, Message, MessageDraft,
    MessageRole, Parent, QuotaClaim, QuotaHold,
};

/// A conversation with the bookkeeping an append needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    pub conversation: Conversation,
    pub last_sequence: u64,
    /// A FreeChat chat's session: its quota and window bind a Chatter turn in it too.
    pub session: Option<ChatSession>,
    /// A chat session's character and backend, as its turns need them.
    pub snapshot: Option<ChatSnapshot>,
    pub quota: QuotaState,
}

/// A conversation's lifetime usage and what running turns hold of its quota, as read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QuotaState {
    pub usage: LifetimeUsage,
    held_replies: i64,
    held_tokens: i64,
    held_until: i64,
}

impl QuotaState {
    fn of(item: &ConversationItem) -> Self {
        Self {
            usage: item.usage,
            held_replies: item.quota_held_replies,
            held_tokens: item.quota_held_tokens,
            held_until: item.quota_held_until,
        }
    }

    /// What running turns hold at `now`: nothing once every one of them must have ended.
    pub fn held_at(&self, now: DateTime<Utc>) -> QuotaHold {
        if now.timestamp() > self.held_until {
            return QuotaHold::default();
        }
        QuotaHold {
            replies: self.held_replies.max(0) as u64,
            tokens: self.held_tokens.max(0) as u64,
        }
    }
}

/// What an append does to its conversation's quota holds.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaChange {
    None,
    /// The turn's question: admitted only if the quota leaves room, then held.
    Claim(QuotaClaim),
    /// The turn's answer: its usage is counted, so its hold is let go.
    Settle(QuotaHold),
}

impl ConversationRecord {
    /// A conversation that has no messages yet.
    pub fn new(conversation: Conversation) -> Self {
        Self {
            conversation,
            last_sequence: 0,
            session: None,
            snapshot: None,
            quota: QuotaState::default(),
        }
    }

    pub(super) fn of(item: ConversationItem) -> Self {
        Self {
            quota: QuotaState::of(&item),
            session: item.session,
            snapshot: item.chat_snapshot,
            last_sequence: item.last_sequence,
            conversation: item.conversation,
        }
    }

    /// Gives the drafts their sequence numbers and parents and returns the record as it is
    /// once they are stored, with the messages and what they add to the counters.
    ///
    /// Only an answer becomes the active message (a streaming one once it is settled): a turn
    /// follows the last answer, so a turn
    /// started while another one's question waits for its answer becomes that question's
    /// sibling instead of following it (listings still show the question, at the newest leaf
    /// under the active message).
    fn with_appended(&self, drafts: &[MessageDraft]) -> (Self, Vec<Message>, u64, f64) {
        let conversation = &self.conversation;
        // Without an active message the conversation predates branches (or is empty): its
        // newest message by sequence is the one to follow, which an unrecorded parent means.
        let mut previous = conversation
            .active_message_id
            .clone()
            .map_or(Parent::Unrecorded, Parent::Message);
        let mut messages: Vec<Message> = Vec::with_capacity(drafts.len());
        for (draft, seq) in drafts.iter().zip(self.last_sequence + 1..) {
            let mut draft = draft.clone();
            let parent = draft.parent.take().unwrap_or(previous.clone());
            if draft.lineage.is_none() {
                draft.lineage = match &parent {
                    Parent::Message(id) => messages
                        .iter()
                        .find(|m| m.id == *id)
                        .and_then(Message::lineage_below),
                    // The first message of a conversation, which followed nothing.
                    Parent::Unrecorded if self.last_sequence == 0 => Some(Lineage::root()),
                    Parent::Root => Some(Lineage::root()),
                    Parent::Unrecorded => None,
                };
            }
            let message = draft.into_message(&conversation.id, seq, parent);
            previous = Parent::Message(message.id.clone());
            messages.push(message);
        }
        let tokens: u64 = messages
            .iter()
            .filter_map(|m| m.total_tokens)
            .map(u64::from)
            .sum();
        let cost: f64 = messages.iter().filter_map(|m| m.cost).sum();
        let mut next = self.clone();
        next.last_sequence += messages.len() as u64;
        if let Some(answer) = newest_answer(&messages) {
            next.conversation.active_message_id = Some(answer.id.clone());
        }
        if let Some(last) = messages.last() {
            let c = &mut next.conversation;
            c.message_count += messages.len() as u64;
            c.total_tokens += tokens;
            c.total_cost += cost;
            c.updated_at = last.created_at;
            c.last_message_at = Some(last.created_at);
        }
        (next, messages, tokens, cost)
    }
}

/// Under contention an append re-reads the conversation and tries again, this many times.
const MAX_APPEND_ATTEMPTS: u32 = 60;

impl Store {
    pub async fn create_conversation(&self, conversation: &Conversation) -> Result<(), StoreError> {
        self.create_conversation_with(ConversationRecord::new(conversation.clone()), Vec::new())
            .await
            .map(|_| ())
    }

    /// Creates a conversation together with its first messages, in one transaction.
    pub async fn create_conversation_with(
        &self,
        record: ConversationRecord,
        drafts: Vec<MessageDraft>,
    ) -> Result<(ConversationRecord, Vec<Message>), StoreError> {
        let (created, messages, _, _) = record.with_appended(&drafts);
        let mut item = ConversationItem::new(created.conversation.clone(), created.last_sequence);
        item.usage = LifetimeUsage::of(&messages);
        self.insert_conversation(item, &messages, Vec::new())
            .await?;
        self.recent.appended(&record, &created, &messages);
        Ok((created, messages))
    }

    /// Writes a new conversation item with its messages and the owner's count in one
    /// transaction, together with `extra` actions that must succeed or fail with it. Any
    /// failed condition is a `Conflict`.
    pub(super) async fn insert_conversation(
        &self,
        item: ConversationItem,
        messages: &[Message],
        extra: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let count = Update::builder()
            .table_name(self.table())
            .set_key(Some(user_stats_key(&item.conversation.user_id)))
            .update_expression("ADD conversation_count :one")
            .expression_attribute_values(":one", n(1))
            .build()
            .map_err(anyhow::Error::new)?;
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(anyhow::Error::new)?;
        let mut request = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(count).build());
        for message in messages {
            request = request.transact_items(self.put_message(message)?);
        }
        for action in extra {
            request = request.transact_items(action);
        }
        request
            .send()
            .await
            .map_err(|e| write_failed(e, StoreError::Conflict))?;
        Ok(())
    }

    fn put_message(&self, message: &Message) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(to_item(&MessageItem::new(message.clone()))?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(anyhow::Error::new)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Deletes the caller's conversation and every message stored under it.
    ///
    /// The messages go first and the conversation last, so a deletion that fails half-way
    /// leaves a conversation the caller still sees and can delete again, never messages that
    /// nothing leads to. The final delete is conditioned on the last sequence number read
    /// before the purge: a message appended meanwhile fails it, and the purge runs again.
    pub async fn delete_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<(), StoreError> {
        self.recent.forget(conversation_id);
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let record = self.conversation(user_id, conversation_id).await?;
            self.purge(
                keys::conversation_pk(conversation_id),
                Some(keys::MESSAGE_SK_PREFIX),
            )
            .await?;
            let delete = Delete::builder()
                .table_name(self.table())
                .set_key(Some(conversation_key(conversation_id)))
                .condition_expression("user_id = :uid AND last_sequence = :seen")
                .expression_attribute_values(":uid", s(user_id))
                .expression_attribute_values(":seen", n(record.last_sequence))
                .build()
                .map_err(anyhow::Error::new)?;
            let count = Update::builder()
                .table_name(self.table())
                .set_key(Some(user_stats_key(user_id)))
                .update_expression("ADD conversation_count :minus_one")
                .expression_attribute_values(":minus_one", n(-1))
                .build()
                .map_err(anyhow::Error::new)?;
            let deleted = self
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(TransactWriteItem::builder().update(count).build())
                .send()
                .await
                .map_err(|e| write_failed(e, StoreError::Conflict));
            match deleted {
                // An append (or a concurrent delete) got in between; re-read and see.
                Err(StoreError::Conflict) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(StoreError::Conflict)
    }
}

/// The answer an append makes active: a streaming one becomes active once it is settled.
fn newest_answer(messages: &[Message]) -> Option<&Message> {
    messages
        .iter()
        .rev()
        .find(|m| m.role == MessageRole::Assistant && !m.is_streaming())
}

/// Full jitter keeps concurrent writers that lost together from colliding again.
fn jitter(max: Duration) -> Duration {
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    let seed = uuid::Uuid::new_v4().as_u128() as u64;
    Duration::from_nanos(seed % nanos.max(1))
}
