//! Reading conversations: one by its owner, a page of them, and a conversation's messages.

use std::ops::RangeInclusive;

use super::ConversationRecord;
use crate::domain::{Conversation, Message, MessageWindow, Parent, Tree};
use crate::store::attributes::{conversation_key, s, user_stats_key};
use crate::store::items::{ConversationItem, Item, MessageItem, from_item};
use crate::store::ops::Partition;
use crate::store::{Store, StoreError, classify, keys};

/// A conversation's newest messages as read beside its item, before the item says whether
/// what this instance kept of them still holds.
#[derive(Debug)]
pub enum WindowRead {
    /// Its newest messages.
    Newest(MessageWindow),
    /// The messages appended after those this instance kept.
    Since(Vec<Message>),
}

impl Store {
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

    /// The caller's conversation with its newest `count` messages (every one when it has no
    /// more), read together as [`Self::conversation_tree`] reads them: what a turn reads, so
    /// that it costs the history it sends rather than the whole conversation.
    pub async fn conversation_window(
        &self,
        user_id: &str,
        conversation_id: &str,
        count: usize,
    ) -> Result<(ConversationRecord, MessageWindow), StoreError> {
        let (record, read) = tokio::try_join!(
            self.conversation(user_id, conversation_id),
            self.window_read(conversation_id, count)
        )?;
        let window = self.window_as_of(&record, count, read).await?;
        Ok((record, window))
    }

    /// The read of a conversation's newest `count` messages that goes beside the read of its
    /// item (whose owner the caller checks): when this instance kept its newest messages,
    /// only those appended since (see `recent`). [`Self::window_as_of`] finishes it.
    pub async fn window_read(
        &self,
        conversation_id: &str,
        count: usize,
    ) -> Result<WindowRead, StoreError> {
        match self.recent.kept_until(conversation_id, count) {
            Some(kept_until) => self
                .messages_after(conversation_id, kept_until, count + 1)
                .await
                .map(WindowRead::Since),
            None => self
                .newest_messages_in(conversation_id, count)
                .await
                .map(WindowRead::Newest),
        }
    }

    /// The newest `count` messages of the conversation `record` (read beside `read`) shows:
    /// what was kept with what was appended since, when the record shows nothing kept
    /// changed; otherwise they are read again.
    pub async fn window_as_of(
        &self,
        record: &ConversationRecord,
        count: usize,
        read: WindowRead,
    ) -> Result<MessageWindow, StoreError> {
        let id = &record.conversation.id;
        let window = match read {
            WindowRead::Newest(window) => window,
            WindowRead::Since(newer) => match self.recent.window(id, count, record, newer) {
                Some(window) => return Ok(window),
                None => self.newest_messages_in(id, count).await?,
            },
        };
        self.recent.keep(record, &window);
        Ok(window)
    }

    /// The newest `limit` messages after the sequence number `after`, in sequence order.
    async fn messages_after(
        &self,
        conversation_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let partition = Partition::of(keys::conversation_pk(conversation_id))
            // The largest sequence number twelve digits write.
            .between(
                keys::message_sk(after + 1),
                keys::message_sk(999_999_999_999),
            )
            .backward()
            .limit(limit);
        let mut messages = self
            .query(partition)
            .await?
            .into_iter()
            .map(|item| from_item::<MessageItem>(item).map(|i| i.message))
            .collect::<Result<Vec<_>, _>>()?;
        messages.reverse();
        Ok(messages)
    }

    /// A conversation's newest `count` messages, and whether it has older ones; whose
    /// conversation it is is the caller's to check.
    pub async fn newest_messages_in(
        &self,
        conversation_id: &str,
        count: usize,
    ) -> Result<MessageWindow, StoreError> {
        // One more than asked tells whether there are older ones, in the same query.
        let mut messages = self
            .latest_messages(conversation_id, count.saturating_add(1))
            .await?;
        let older_left_out = messages.len() > count;
        messages.truncate(count);
        Ok(MessageWindow {
            messages,
            older_left_out,
        })
    }

    /// Every message of a conversation in sequence order, read page by page; whose
    /// conversation it is is the caller's to check.
    pub async fn every_message(&self, conversation_id: &str) -> Result<Vec<Message>, StoreError> {
        let partition =
            Partition::of(keys::conversation_pk(conversation_id)).prefixed(keys::MESSAGE_SK_PREFIX);
        self.query(partition)
            .await?
            .into_iter()
            .map(|item| from_item::<MessageItem>(item).map(|i| i.message))
            .collect()
    }

    /// A message of a conversation by its id, wherever its sequence number puts it; whose
    /// conversation it is is the caller's to check.
    pub async fn message_by_id(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<Option<Message>, StoreError> {
        let output = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(keys::LSI1)
            .key_condition_expression("pk = :pk AND lsi1sk = :id")
            .expression_attribute_values(":pk", s(keys::conversation_pk(conversation_id)))
            .expression_attribute_values(":id", s(keys::message_id_sk(message_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output
            .items
            .and_then(|items| items.into_iter().next())
            .map(|item| from_item::<MessageItem>(item).map(|i| i.message))
            .transpose()
    }

    /// The messages of a conversation whose sequence numbers lie in `runs` (a path, as a
    /// [`crate::domain::Lineage`] names it), one query per run, all at once; whose
    /// conversation it is is the caller's to check.
    pub async fn messages_in_runs(
        &self,
        conversation_id: &str,
        runs: &[RangeInclusive<u64>],
    ) -> Result<Vec<Message>, StoreError> {
        let queries = runs.iter().map(|run| {
            let partition = Partition::of(keys::conversation_pk(conversation_id))
                .between(keys::message_sk(*run.start()), keys::message_sk(*run.end()));
            self.query(partition)
        });
        futures_util::future::try_join_all(queries)
            .await?
            .into_iter()
            .flatten()
            .map(|item| from_item::<MessageItem>(item).map(|i| i.message))
            .collect()
    }

    /// Every message that follows `parent`, in sequence order: the one right after it, when it
    /// follows it, and the forks the index lists (see [`keys::forks_pk`]). Complete for a
    /// parent that keeps its lineage, as every message written since messages kept theirs
    /// does (its children know theirs, so each fork is in the index); eventually consistent
    /// for the forks, as the index is.
    pub async fn children_of(
        &self,
        conversation_id: &str,
        parent: &Message,
    ) -> Result<Vec<Message>, StoreError> {
        let next = Item::from([
            (
                keys::PK.to_owned(),
                s(keys::conversation_pk(conversation_id)),
            ),
            (
                keys::SK.to_owned(),
                s(keys::message_sk(parent.sequence_number + 1)),
            ),
        ]);
        let forks = Partition::of_gsi1(keys::forks_pk(conversation_id, parent.sequence_number));
        let (next, forks) = tokio::try_join!(self.get_consistent(next), self.query(forks))?;
        let mut children = Vec::with_capacity(forks.len() + 1);
        for item in next.into_iter().chain(forks) {
            let message = from_item::<MessageItem>(item)?.message;
            if message.parent == Parent::Message(parent.id.clone()) {
                children.push(message);
            }
        }
        children.sort_by_key(|m| m.sequence_number);
        Ok(children)
    }

    /// A conversation's latest `limit` messages, newest first, read page by page so that large
    /// messages cannot cut the answer short at DynamoDB's 1 MB per query.
    pub(in crate::store) async fn latest_messages(
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
}
