//! Conversations and their messages.
//!
//! A conversation and its messages share one partition (`CONV#<id>`), so a conversation's
//! messages come back in order from one query and an append is one transaction over the
//! partition. Ownership is checked on every read and write: another user's conversation is
//! indistinguishable from a missing one.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, Put, ReturnValue, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::items::{ConversationItem, Item, MessageItem, from_item, to_item, usage_attributes};
use super::ops::Partition;
use super::{Store, StoreError, classify, keys};
use crate::domain::{
    ChatSession, ChatSnapshot, Conversation, ConversationPatch, LifetimeUsage, Message,
    MessageDraft, MessageRole, Parent, QuotaClaim, QuotaHold, Tree,
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
        let messages: Vec<Message> = drafts
            .iter()
            .zip(self.last_sequence + 1..)
            .map(|(draft, seq)| {
                let mut draft = draft.clone();
                let parent = draft.parent.take().unwrap_or(previous.clone());
                let message = draft.into_message(&conversation.id, seq, parent);
                previous = Parent::Message(message.id.clone());
                message
            })
            .collect();
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
/// TransactWriteItems takes at most 100 actions; removals keep one for the counters.
const REMOVALS_PER_TRANSACTION: usize = 99;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn attr<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(|e| StoreError::Other(anyhow::Error::new(e)))
}

/// A time as the item serialiser writes it (three, six or nine fractional digits, as few as
/// it needs), so that a condition comparing it with a stored time matches.
pub(super) fn timestamp(value: DateTime<Utc>) -> AttributeValue {
    s(value.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

pub(super) fn conversation_key(conversation_id: &str) -> Item {
    Item::from([
        (
            keys::PK.to_owned(),
            s(keys::conversation_pk(conversation_id)),
        ),
        (keys::SK.to_owned(), s(keys::CONVERSATION_SK)),
    ])
}

pub(super) fn user_stats_key(user_id: &str) -> Item {
    Item::from([
        (keys::PK.to_owned(), s(keys::user_pk(user_id))),
        (keys::SK.to_owned(), s(keys::USER_STATS_SK)),
    ])
}

type TransactError<R> = aws_sdk_dynamodb::error::SdkError<
    aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
    R,
>;

/// Why each action of a cancelled transaction failed, in the order they were sent (`None`
/// for an action that did not); empty when the transaction was not cancelled.
fn cancellation_codes<R>(err: &TransactError<R>) -> Vec<Option<&str>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().filter(|c| *c != "None"))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a cancelled transaction failed on a condition (as opposed to a conflict).
fn cancelled_by_condition<R>(err: &TransactError<R>) -> Option<bool> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(_) => {
            Some(cancellation_codes(err).contains(&Some("ConditionalCheckFailed")))
        }
        _ => None,
    }
}

pub(super) fn write_failed<R: std::fmt::Debug + Send + Sync + 'static>(
    err: TransactError<R>,
    on_condition: StoreError,
) -> StoreError {
    match cancelled_by_condition(&err) {
        Some(true) => on_condition,
        Some(false) => StoreError::Conflict,
        None => classify(err),
    }
}

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

    /// The caller's conversation, or `NotFound` whether it is missing or someone else's.
    pub async fn conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<ConversationRecord, StoreError> {
        let item = self
            .get_consistent(conversation_key(conversation_id))
            .await?;
        let item: ConversationItem = from_item(item.ok_or(StoreError::NotFound)?)?;
        if item.conversation.user_id != user_id {
            return Err(StoreError::NotFound);
        }
        Ok(ConversationRecord::of(item))
    }

    /// A page of the caller's conversations, most recently updated first, and how many there are.
    pub async fn list_conversations(
        &self,
        user_id: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Conversation>, u64), StoreError> {
        let page = async {
            let partition = Partition::of_gsi1(keys::user_conversations_pk(user_id))
                .backward()
                .limit(offset + limit);
            self.query(partition)
                .await?
                .into_iter()
                .skip(offset)
                .map(|item| from_item::<ConversationItem>(item).map(|i| i.conversation))
                .collect::<Result<Vec<_>, _>>()
        };
        let total = async {
            let output = self
                .client()
                .get_item()
                .table_name(self.table())
                .set_key(Some(user_stats_key(user_id)))
                .projection_expression("conversation_count")
                .send()
                .await
                .map_err(classify)?;
            Ok::<_, StoreError>(
                output
                    .item
                    .and_then(|i| i.get("conversation_count")?.as_n().ok()?.parse().ok())
                    .unwrap_or(0u64),
            )
        };
        tokio::try_join!(page, total)
    }

    /// A page of the caller's conversations whose title contains `text` (case-insensitive),
    /// most recently updated first, and how many match. Titles are matched here, not by a
    /// filter expression: DynamoDB's `contains` is case-sensitive, and a filter reads (and
    /// bills) the same items as this does.
    pub async fn search_conversations(
        &self,
        user_id: &str,
        text: &str,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Conversation>, u64), StoreError> {
        let wanted = text.to_lowercase();
        let partition = Partition::of_gsi1(keys::user_conversations_pk(user_id)).backward();
        let mut matches = Vec::new();
        for item in self.query(partition).await? {
            let conversation = from_item::<ConversationItem>(item)?.conversation;
            if conversation.title.to_lowercase().contains(&wanted) {
                matches.push(conversation);
            }
        }
        let total = matches.len() as u64;
        Ok((
            matches.into_iter().skip(offset).take(limit).collect(),
            total,
        ))
    }

    /// Replaces the conversation's title only if it is still `expected`: a title written for
    /// the user never replaces one the user chose meanwhile (`Conflict` then). It leaves
    /// `updated_at` alone, so the conversation keeps its place in the recency order.
    pub async fn replace_title(
        &self,
        user_id: &str,
        conversation_id: &str,
        expected: &str,
        title: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(conversation_key(conversation_id)))
            .update_expression("SET title = :title")
            .condition_expression("user_id = :uid AND title = :expected")
            .expression_attribute_values(":uid", s(user_id))
            .expression_attribute_values(":expected", s(expected))
            .expression_attribute_values(":title", s(title))
            .send()
            .await;
        match result {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            other => other.map(|_| ()).map_err(classify),
        }
    }

    /// Applies the patch to the caller's conversation and returns the result.
    pub async fn update_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
        patch: &ConversationPatch,
    ) -> Result<Conversation, StoreError> {
        self.update_conversation_with_llm(user_id, conversation_id, patch, None, None)
            .await
    }

    /// Applies the patch and the choice of provider and model (`None` leaves one as it is) in
    /// one write.
    pub async fn update_conversation_with_llm(
        &self,
        user_id: &str,
        conversation_id: &str,
        patch: &ConversationPatch,
        llm_provider: Option<&str>,
        llm_model: Option<&str>,
    ) -> Result<Conversation, StoreError> {
        let now = crate::domain::now();
        let mut sets = vec!["updated_at = :now", "gsi1sk = :recency"];
        let mut values = Item::from([
            (":now".to_owned(), timestamp(now)),
            (
                ":recency".to_owned(),
                s(keys::recency_sk(now, conversation_id)),
            ),
            (":uid".to_owned(), s(user_id)),
        ]);
        let mut set = |clause: &'static str, name: &str, value: AttributeValue| {
            sets.push(clause);
            values.insert(name.to_owned(), value);
        };
        if let Some(v) = &patch.title {
            set("title = :title", ":title", s(v));
        }
        if let Some(v) = &patch.description {
            set("description = :description", ":description", s(v));
        }
        if let Some(v) = patch.status {
            set("#status = :status", ":status", attr(&v)?);
        }
        if let Some(v) = patch.temperature {
            set("temperature = :temperature", ":temperature", n(v));
        }
        if let Some(v) = patch.max_tokens {
            set("max_tokens = :max_tokens", ":max_tokens", n(v));
        }
        if let Some(v) = &patch.workflow_config {
            set("workflow_config = :wc", ":wc", attr(v)?);
        }
        if let Some(v) = &patch.extra_metadata {
            set("extra_metadata = :em", ":em", attr(v)?);
        }
        if let Some(v) = &patch.active_message_id {
            set("active_message_id = :active", ":active", s(v));
        }
        if let Some(v) = llm_provider {
            set("llm_provider = :llm_provider", ":llm_provider", s(v));
        }
        let mut removes = Vec::new();
        match (llm_model, llm_provider) {
            (Some(v), _) => set("llm_model = :llm_model", ":llm_model", s(v)),
            // A model belongs to its provider: another provider starts from its own default.
            (None, Some(_)) => removes.push("llm_model"),
            (None, None) => {}
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let mut request = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(conversation_key(conversation_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk) AND user_id = :uid")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew);
        if patch.status.is_some() {
            request = request.expression_attribute_names("#status", "status");
        }
        self.ensure_update_fits(
            user_id,
            conversation_id,
            request.get_update_expression().as_deref(),
            request.get_expression_attribute_values().as_ref(),
        )
        .await?;
        let output = request.send().await.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
            {
                StoreError::NotFound
            } else {
                classify(e)
            }
        })?;
        let item: ConversationItem = from_item(output.attributes.unwrap_or_default())?;
        Ok(item.conversation)
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

    /// Refuses an update that would take the conversation item past DynamoDB's 400 KB, with
    /// the size it would have, before DynamoDB refuses it with an error of its own. Someone
    /// else's or a missing conversation passes: the update's own condition answers for it.
    async fn ensure_update_fits(
        &self,
        user_id: &str,
        conversation_id: &str,
        expression: Option<&str>,
        values: Option<&Item>,
    ) -> Result<(), StoreError> {
        let (Some(expression), Some(values)) = (expression, values) else {
            return Ok(());
        };
        let Some(mut item) = self
            .get_consistent(conversation_key(conversation_id))
            .await?
        else {
            return Ok(());
        };
        if item
            .get("user_id")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            != Some(user_id)
        {
            return Ok(());
        }
        let (set, remove) = expression
            .strip_prefix("SET ")
            .unwrap_or_default()
            .split_once(" REMOVE ")
            .unwrap_or((expression.strip_prefix("SET ").unwrap_or_default(), ""));
        for name in remove.split(',').map(str::trim) {
            item.remove(name);
        }
        for clause in set.split(", ") {
            if let Some((name, placeholder)) = clause.split_once(" = ")
                && let Some(value) = values.get(placeholder.trim())
            {
                item.insert(
                    name.trim().trim_start_matches('#').to_owned(),
                    value.clone(),
                );
            }
        }
        let bytes = super::items::item_size(&item);
        if bytes > super::items::MAX_ITEM_BYTES {
            return Err(StoreError::ItemTooLarge { bytes });
        }
        Ok(())
    }

    /// The caller's conversation with every one of its messages as a tree. Both reads go
    /// out together, and the messages come back from one query (page by page past DynamoDB's
    /// 1 MB), however many branches there are: a branch's history is then walked in memory.
    pub async fn conversation_tree(
        &self,
        user_id: &str,
        conversation_id: &str,
    ) -> Result<(ConversationRecord, Tree), StoreError> {
        // The ownership check and the query run together; the messages are dropped if they are
        // not the caller's, so an outsider learns nothing and the owner waits for one round trip.
        let (record, messages) = tokio::try_join!(
            self.conversation(user_id, conversation_id),
            self.every_message(conversation_id)
        )?;
        Ok((record, Tree::new(messages)))
    }

    /// Every message of a conversation in sequence order, read page by page.
    pub(super) async fn every_message(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<Message>, StoreError> {
        let partition =
            Partition::of(keys::conversation_pk(conversation_id)).prefixed(keys::MESSAGE_SK_PREFIX);
        self.query(partition)
            .await?
            .into_iter()
            .map(|item| from_item::<MessageItem>(item).map(|i| i.message))
            .collect()
    }

    /// A conversation's latest `limit` messages, newest first, read page by page so that large
    /// messages cannot cut the answer short at DynamoDB's 1 MB per query.
    pub(super) async fn latest_messages(
        &self,
        conversation_id: &str,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let partition = Partition::of(keys::conversation_pk(conversation_id))
            .prefixed(keys::MESSAGE_SK_PREFIX)
            .backward()
            .limit(limit);
        self.query(partition)
            .await?
            .into_iter()
            .map(|item| from_item::<MessageItem>(item).map(|i| i.message))
            .collect()
    }

    /// Appends messages after the last one, in one transaction with the conversation's counters.
    ///
    /// The write is conditioned on the sequence number the caller read, so concurrent writers
    /// never share or skip a number; the loser re-reads and tries again.
    pub async fn append_messages(
        &self,
        record: ConversationRecord,
        drafts: Vec<MessageDraft>,
    ) -> Result<(ConversationRecord, Vec<Message>), StoreError> {
        self.append_with_quota(record, drafts, &QuotaChange::None)
            .await
    }

    /// [`Self::append_messages`], also claiming or letting go of quota: a claim is checked
    /// against the conversation as this append read it and written in the same transaction,
    /// so of turns admitted in parallel no more pass than the quota has room for
    /// (`QuotaExceeded` for the others).
    pub async fn append_with_quota(
        &self,
        record: ConversationRecord,
        drafts: Vec<MessageDraft>,
        quota: &QuotaChange,
    ) -> Result<(ConversationRecord, Vec<Message>), StoreError> {
        self.append_checked(record, drafts, quota, None).await
    }

    /// [`Self::append_with_quota`], only while the chat's character and backend are as
    /// `snapshot` has them (`Stale` otherwise, with nothing written).
    pub async fn append_checked(
        &self,
        mut record: ConversationRecord,
        drafts: Vec<MessageDraft>,
        quota: &QuotaChange,
        snapshot: Option<&ChatSnapshot>,
    ) -> Result<(ConversationRecord, Vec<Message>), StoreError> {
        let _queued = self.append_lock(&record.conversation.id).lock().await;
        let mut backoff = Duration::from_millis(2);
        for _ in 0..MAX_APPEND_ATTEMPTS {
            match self.try_append(&record, &drafts, quota, snapshot).await {
                Err(StoreError::Conflict) => {
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                    record = self
                        .conversation(&record.conversation.user_id, &record.conversation.id)
                        .await?;
                }
                outcome => return outcome,
            }
        }
        Err(StoreError::Conflict)
    }

    async fn try_append(
        &self,
        record: &ConversationRecord,
        drafts: &[MessageDraft],
        quota: &QuotaChange,
        snapshot: Option<&ChatSnapshot>,
    ) -> Result<(ConversationRecord, Vec<Message>), StoreError> {
        let (updated, messages, tokens, cost) = record.with_appended(drafts);
        let usage = LifetimeUsage::of(&messages);
        let conversation = &updated.conversation;
        let now = conversation.updated_at;
        let mut request = self.client().transact_write_items();
        for message in &messages {
            request = request.transact_items(self.put_message(message)?);
        }
        let (mut set, mut add) = (String::new(), String::new());
        let mut values = Item::new();
        match quota {
            QuotaChange::None => {}
            QuotaChange::Claim(claim) => {
                let room = record.quota.held_at(crate::domain::now());
                if let Some((used, limit)) = record.quota.usage.exhausts(&claim.quota, room) {
                    return Err(StoreError::QuotaExceeded { used, limit });
                }
                // Holds that no longer count are replaced, not added to.
                if room == QuotaHold::default() {
                    set = ", quota_held_replies = :held_replies, quota_held_tokens = :held_tokens"
                        .into();
                } else {
                    add =
                        ", quota_held_replies :held_replies, quota_held_tokens :held_tokens".into();
                }
                set.push_str(", quota_held_until = :held_until");
                values = hold_values(claim.hold, 1);
                let until = claim.expires_at.timestamp().max(record.quota.held_until);
                values.insert(":held_until".into(), n(until));
            }
            QuotaChange::Settle(hold) => {
                add = ", quota_held_replies :held_replies, quota_held_tokens :held_tokens".into();
                values = hold_values(*hold, -1);
            }
        }
        // Written only by an append that moves it (one with an answer): another append must not
        // put back the value it read.
        if let Some(answer) = newest_answer(&messages) {
            set.push_str(", active_message_id = :active");
            values.insert(":active".into(), s(&answer.id));
        }
        let counters = Update::builder()
            .table_name(self.table())
            .set_key(Some(conversation_key(&conversation.id)))
            .update_expression(format!(
                "SET last_sequence = :last, updated_at = :now, last_message_at = :now, \
                 gsi1sk = :recency{set} ADD message_count :count, total_tokens :tokens, \
                 total_cost :cost, {} :replies, {} :input, {} :output{add}",
                usage_attributes::REPLIES,
                usage_attributes::INPUT_TOKENS,
                usage_attributes::OUTPUT_TOKENS,
            ))
            .set_expression_attribute_values(Some(values))
            .condition_expression("last_sequence = :expected AND user_id = :uid")
            .expression_attribute_values(":last", n(updated.last_sequence))
            .expression_attribute_values(":expected", n(record.last_sequence))
            .expression_attribute_values(":uid", s(&conversation.user_id))
            .expression_attribute_values(":now", timestamp(now))
            .expression_attribute_values(":recency", s(keys::recency_sk(now, &conversation.id)))
            .expression_attribute_values(":count", n(messages.len()))
            .expression_attribute_values(":tokens", n(tokens))
            .expression_attribute_values(":cost", n(cost))
            .expression_attribute_values(":replies", n(usage.replies))
            .expression_attribute_values(":input", n(usage.input_tokens))
            .expression_attribute_values(":output", n(usage.output_tokens))
            .build()
            .map_err(anyhow::Error::new)?;
        request = request.transact_items(TransactWriteItem::builder().update(counters).build());
        // The snapshot's checks come last: a failure at or after this index is theirs.
        let first_check = messages.len() + 1;
        if let Some(snapshot) = snapshot {
            for check in self.unchanged(snapshot)? {
                request = request.transact_items(check);
            }
        }
        request.send().await.map_err(|e| {
            let stale = cancellation_codes(&e)
                .iter()
                .skip(first_check)
                .any(|code| *code == Some("ConditionalCheckFailed"));
            if stale {
                StoreError::Stale
            } else {
                write_failed(e, StoreError::Conflict)
            }
        })?;
        Ok((updated, messages))
    }

    /// Lets go of what a turn held of its conversation's quota, when it ended without an
    /// answer to count instead.
    pub async fn release_quota_hold(
        &self,
        conversation_id: &str,
        hold: QuotaHold,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(conversation_key(conversation_id)))
            .update_expression(
                "ADD quota_held_replies :held_replies, quota_held_tokens :held_tokens",
            )
            .condition_expression("attribute_exists(pk)")
            .set_expression_attribute_values(Some(hold_values(hold, -1)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Deletes one of the caller's messages with every message under it; the conversation's
    /// counters drop by what they held. An active branch that ran through it moves to the
    /// newest leaf under its parent.
    pub async fn delete_message(
        &self,
        user_id: &str,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let (record, tree) = self.conversation_tree(user_id, conversation_id).await?;
        let doomed: Vec<Message> = tree.subtree(message_id).into_iter().cloned().collect();
        if doomed.is_empty() {
            return Err(StoreError::NotFound);
        }
        let active =
            tree.active_leaf_without(record.conversation.active_message_id.as_deref(), &doomed);
        self.remove_each_chunk(
            user_id,
            conversation_id,
            &doomed,
            || StoreError::NotFound,
            active.as_deref(),
        )
        .await
    }

    /// Removes the newest `count` messages of the caller's active branch (all of it when
    /// `count` is `None`) with every message under them, and returns them, newest first.
    /// Their sequence numbers are never given out again.
    pub async fn remove_latest_messages(
        &self,
        user_id: &str,
        conversation_id: &str,
        count: Option<usize>,
    ) -> Result<Vec<Message>, StoreError> {
        let mut backoff = Duration::from_millis(2);
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let (record, tree) = self.conversation_tree(user_id, conversation_id).await?;
            let recorded = record.conversation.active_message_id.as_deref();
            let branch = tree.active_branch(recorded);
            // The branch is one path: what lies under its oldest removed message is the rest.
            let oldest = branch.len().saturating_sub(count.unwrap_or(usize::MAX));
            let doomed: Vec<Message> = branch
                .get(oldest)
                .map(|m| tree.subtree(&m.id).into_iter().cloned().collect())
                .unwrap_or_default();
            let active = tree.active_leaf_without(recorded, &doomed);
            match self
                .remove_each_chunk(
                    user_id,
                    conversation_id,
                    &doomed,
                    || StoreError::Conflict,
                    active.as_deref(),
                )
                .await
            {
                // A concurrent removal took some of these first: read the branch again and
                // remove from it, so that each caller removes its own `count`.
                Err(StoreError::Conflict) => {
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                outcome => return outcome.map(|()| doomed),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Removes `messages` (children before their parents) a transaction at a time; the
    /// first also moves the conversation's active message to `active`, when given.
    async fn remove_each_chunk(
        &self,
        user_id: &str,
        conversation_id: &str,
        messages: &[Message],
        on_message_gone: fn() -> StoreError,
        mut active: Option<&str>,
    ) -> Result<(), StoreError> {
        for chunk in messages.chunks(REMOVALS_PER_TRANSACTION) {
            self.remove_messages(
                user_id,
                conversation_id,
                chunk,
                on_message_gone(),
                active.take(),
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes messages in one transaction with what they held on the conversation's
    /// counters, so the two never disagree. A message already gone fails the whole removal
    /// with `on_message_gone`; a conversation gone (or someone else's) with `NotFound`.
    pub(super) async fn remove_messages(
        &self,
        user_id: &str,
        conversation_id: &str,
        messages: &[Message],
        on_message_gone: StoreError,
        active: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = crate::domain::now();
        let tokens: i64 = messages
            .iter()
            .map(|m| i64::from(m.total_tokens.unwrap_or(0)))
            .sum();
        let cost: f64 = messages.iter().filter_map(|m| m.cost).sum();
        let counters = Update::builder()
            .table_name(self.table())
            .set_key(Some(conversation_key(conversation_id)))
            .update_expression(format!(
                "SET updated_at = :now, gsi1sk = :recency{} \
                 ADD message_count :count, total_tokens :tokens, total_cost :cost",
                if active.is_some() {
                    ", active_message_id = :active"
                } else {
                    ""
                }
            ))
            .set_expression_attribute_values(
                active.map(|id| Item::from([(":active".to_owned(), s(id))])),
            )
            .condition_expression("user_id = :uid")
            .expression_attribute_values(":uid", s(user_id))
            .expression_attribute_values(":now", timestamp(now))
            .expression_attribute_values(":recency", s(keys::recency_sk(now, conversation_id)))
            .expression_attribute_values(":count", n(-(messages.len() as i64)))
            .expression_attribute_values(":tokens", n(-tokens))
            .expression_attribute_values(":cost", n(-cost))
            .build()
            .map_err(anyhow::Error::new)?;
        let mut request = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(counters).build());
        for message in messages {
            let delete = Delete::builder()
                .table_name(self.table())
                .key(keys::PK, s(keys::conversation_pk(conversation_id)))
                .key(keys::SK, s(keys::message_sk(message.sequence_number)))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(anyhow::Error::new)?;
            request = request.transact_items(TransactWriteItem::builder().delete(delete).build());
        }
        request.send().await.map_err(|e| {
            // The counters' update comes first: its condition is the conversation's.
            match cancellation_codes(&e).first().copied().flatten() {
                Some("ConditionalCheckFailed") => StoreError::NotFound,
                _ => write_failed(e, on_message_gone),
            }
        })?;
        Ok(())
    }
}

/// A hold's figures as expression values, added (`sign` 1) or taken away (-1).
pub(super) fn hold_values(hold: QuotaHold, sign: i64) -> Item {
    Item::from([
        (":held_replies".to_owned(), n(sign * hold.replies as i64)),
        (":held_tokens".to_owned(), n(sign * hold.tokens as i64)),
    ])
}

/// The newest answer among `messages`: what an append makes the active message.
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
