//! Removing messages, with what they held on their conversation's counters.

use std::time::Duration;

use aws_sdk_dynamodb::types::{Delete, TransactWriteItem, Update};

use super::{MAX_APPEND_ATTEMPTS, jitter};
use crate::domain::Message;
use crate::store::attributes::{
    cancellation_codes, conversation_key, n, s, timestamp, write_failed,
};
use crate::store::items::Item;
use crate::store::{Store, StoreError, keys};

/// TransactWriteItems takes at most 100 actions; removals keep one for the counters.
const REMOVALS_PER_TRANSACTION: usize = 99;

impl Store {
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
    pub(in crate::store) async fn remove_messages(
        &self,
        user_id: &str,
        conversation_id: &str,
        messages: &[Message],
        on_message_gone: StoreError,
        active: Option<&str>,
    ) -> Result<(), StoreError> {
        // Another instance notices the removal by the message count; this one forgets at once.
        self.recent.forget(conversation_id);
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
