//! A streamed answer while its turn runs: stored empty beside its question (status
//! `streaming`), checkpointed as it grows, stopped through a flag on its item, and settled
//! with its usage once the turn ends.
//!
//! The stop travels through the answer's own item: a stop request sets the flag (only while
//! the answer streams), and every checkpoint is conditioned on the flag being absent, so the
//! turn learns of a stop from the write it makes anyway, on whichever instance it runs.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::attributes::{conversation_key, n, s, timestamp, write_failed};
use super::conversations::{counted, hold_values};
use super::items::{Item, MessageItem, from_item, to_item};
use super::{ConversationRecord, QuotaChange, Store, StoreError, classify, keys};
use crate::domain::{LifetimeUsage, Message, MessageStatus};

/// Set on a streaming answer's item when someone asks its turn to stop.
const STOP_REQUESTED: &str = "stop_requested";
/// How many of a conversation's newest messages are searched for its running answer: the
/// answer, the tool messages its turn appended after it (10 at most by default), and a
/// question asked meanwhile.
const RUNNING_ANSWER_WINDOW: usize = 16;

/// Settles give up after this many writes that raced others.
const MAX_SETTLE_ATTEMPTS: u32 = 20;

/// Where a settled answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerPlace {
    /// Where it was stored as its turn began.
    Kept,
    /// After the messages its turn stored since (its tool results, which it follows): the
    /// same id at the next sequence number, since a message comes after its parent.
    AfterItsTurn,
}

/// What a checkpoint found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    Saved,
    /// A stop was requested (or the answer no longer streams): nothing was written.
    Refused,
}

fn answer_key(answer: &Message) -> Item {
    Item::from([
        (
            keys::PK.to_owned(),
            s(keys::conversation_pk(&answer.conversation_id)),
        ),
        (
            keys::SK.to_owned(),
            s(keys::message_sk(answer.sequence_number)),
        ),
    ])
}

fn streaming() -> Result<aws_sdk_dynamodb::types::AttributeValue, StoreError> {
    super::attributes::attr(&MessageStatus::Streaming)
}

impl Store {
    /// Writes the answer so far, unless a stop was requested or the answer was settled.
    pub async fn checkpoint_answer(
        &self,
        answer: &Message,
        content: &str,
    ) -> Result<Checkpoint, StoreError> {
        let written = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(answer_key(answer)))
            .update_expression("SET #content = :content")
            .condition_expression("#status = :streaming AND attribute_not_exists(#stop)")
            .expression_attribute_names("#content", "content")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#stop", STOP_REQUESTED)
            .expression_attribute_values(":content", s(content))
            .expression_attribute_values(":streaming", streaming()?)
            .send()
            .await;
        match written {
            Ok(_) => Ok(Checkpoint::Saved),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(Checkpoint::Refused)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Whether a stop was requested for the answer: a read of the flag alone, for a turn
    /// that has had no new text to checkpoint for a while.
    pub async fn stop_requested(&self, answer: &Message) -> Result<bool, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(answer_key(answer)))
            .projection_expression("#stop")
            .expression_attribute_names("#stop", STOP_REQUESTED)
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output
            .item
            .is_some_and(|item| item.contains_key(STOP_REQUESTED)))
    }

    /// Asks the answer's turn to stop; `false` when the answer no longer streams.
    pub async fn request_stop(&self, answer: &Message) -> Result<bool, StoreError> {
        let written = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(answer_key(answer)))
            .update_expression("SET #stop = :requested")
            .condition_expression("#status = :streaming")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#stop", STOP_REQUESTED)
            .expression_attribute_values(":requested", timestamp(crate::domain::now()))
            .expression_attribute_values(":streaming", streaming()?)
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Ok(false)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// The answer streaming in the caller's conversation: the newest one, or the one with
    /// this id. `NotFound` when the conversation is missing or someone else's.
    pub async fn streaming_answer(
        &self,
        user_id: &str,
        conversation_id: &str,
        message_id: Option<&str>,
    ) -> Result<Option<Message>, StoreError> {
        let answer = match message_id {
            Some(id) => {
                let (_, tree) = self.conversation_tree(user_id, conversation_id).await?;
                tree.get(id).cloned()
            }
            None => {
                let (_, newest) = tokio::try_join!(
                    self.conversation(user_id, conversation_id),
                    self.latest_messages(conversation_id, RUNNING_ANSWER_WINDOW)
                )?;
                newest.into_iter().find(Message::is_streaming)
            }
        };
        Ok(answer.filter(Message::is_streaming))
    }

    /// The answer as stored now, where it was or (settled after its turn's tool results)
    /// by its id; `None` once it is gone (its turn produced nothing).
    pub async fn answer_now(&self, answer: &Message) -> Result<Option<Message>, StoreError> {
        if let Some(item) = self.get_consistent(answer_key(answer)).await? {
            return from_item::<MessageItem>(item).map(|i| Some(i.message));
        }
        self.message_by_id(&answer.conversation_id, &answer.id)
            .await
    }

    /// Stores the finished answer, with what it adds to its conversation's counters and
    /// usage, and lets go of (or keeps) the quota its turn held. `place` says whether it
    /// stays where it was stored or moves after the messages its turn stored since.
    pub async fn settle_answer(
        &self,
        mut record: ConversationRecord,
        mut answer: Message,
        quota: &QuotaChange,
        place: AnswerPlace,
    ) -> Result<(ConversationRecord, Message), StoreError> {
        answer.status = None;
        let placeholder = answer.clone();
        let mut backoff = std::time::Duration::from_millis(2);
        for _ in 0..MAX_SETTLE_ATTEMPTS {
            if place == AnswerPlace::AfterItsTurn {
                answer.sequence_number = record.last_sequence + 1;
            }
            match self
                .try_settle(&record, &placeholder, &answer, quota, place)
                .await
            {
                // Another write to the conversation came first: read it again and retry.
                Err(StoreError::Conflict) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_millis(100));
                    let conversation = &record.conversation;
                    record = self
                        .conversation(&conversation.user_id, &conversation.id)
                        .await?;
                }
                outcome => return outcome,
            }
        }
        Err(StoreError::Conflict)
    }

    async fn try_settle(
        &self,
        record: &ConversationRecord,
        placeholder: &Message,
        answer: &Message,
        quota: &QuotaChange,
        place: AnswerPlace,
    ) -> Result<(ConversationRecord, Message), StoreError> {
        let usage = LifetimeUsage::of(std::slice::from_ref(answer));
        let tokens = answer.total_tokens.unwrap_or(0);
        let cost = answer.cost.unwrap_or(0.0);
        let now = crate::domain::now();
        let mut next = record.clone();
        let conversation = &mut next.conversation;
        conversation.total_tokens += u64::from(tokens);
        conversation.total_cost += cost;
        conversation.updated_at = now;
        // Settled, the answer is the one a next turn follows.
        conversation.active_message_id = Some(answer.id.clone());
        let (add, mut values) = match quota {
            QuotaChange::Settle(hold) => (
                ", quota_held_replies :held_replies, quota_held_tokens :held_tokens",
                hold_values(*hold, -1),
            ),
            _ => ("", Item::new()),
        };
        let (set, condition) = match place {
            AnswerPlace::Kept => ("", "user_id = :uid"),
            AnswerPlace::AfterItsTurn => {
                next.last_sequence = answer.sequence_number;
                values.insert(":last".into(), n(answer.sequence_number));
                values.insert(":expected".into(), n(record.last_sequence));
                (
                    ", last_sequence = :last",
                    "last_sequence = :expected AND user_id = :uid",
                )
            }
        };
        let counters_added = counted(&mut values, u64::from(tokens), cost, &usage);
        let counters = Update::builder()
            .table_name(self.table())
            .set_key(Some(conversation_key(&conversation.id)))
            .update_expression(format!(
                "SET updated_at = :now, gsi1sk = :recency, active_message_id = :active{set} \
                 ADD {counters_added}{add}"
            ))
            .set_expression_attribute_values(Some(values))
            .condition_expression(condition)
            .expression_attribute_values(":uid", s(&conversation.user_id))
            .expression_attribute_values(":now", timestamp(now))
            .expression_attribute_values(":active", s(&answer.id))
            .expression_attribute_values(":recency", s(keys::recency_sk(now, &conversation.id)))
            .build()
            .map_err(anyhow::Error::new)?;
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(to_item(&MessageItem::new(answer.clone()))?))
            .condition_expression(match place {
                AnswerPlace::Kept => "attribute_exists(pk)",
                AnswerPlace::AfterItsTurn => "attribute_not_exists(pk)",
            })
            .build()
            .map_err(anyhow::Error::new)?;
        let mut request = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(counters).build())
            .transact_items(TransactWriteItem::builder().put(put).build());
        if place == AnswerPlace::AfterItsTurn {
            let delete = Delete::builder()
                .table_name(self.table())
                .set_key(Some(answer_key(placeholder)))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(anyhow::Error::new)?;
            request = request.transact_items(TransactWriteItem::builder().delete(delete).build());
        }
        request
            .send()
            .await
            .map_err(|e| write_failed(e, StoreError::Conflict))?;
        self.recent.settled(record, &next, placeholder, answer);
        Ok((next, answer.clone()))
    }

    /// Removes the answer of a turn that produced none, with its place in the counters.
    pub async fn discard_answer(&self, user_id: &str, answer: &Message) -> Result<(), StoreError> {
        self.remove_messages(
            user_id,
            &answer.conversation_id,
            std::slice::from_ref(answer),
            StoreError::NotFound,
            None,
        )
        .await
    }
}
