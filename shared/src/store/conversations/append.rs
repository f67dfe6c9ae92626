//! Appending messages after a conversation's last one, with the quota a turn claims or
//! settles in the same transaction.

use std::time::Duration;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::{ConversationRecord, MAX_APPEND_ATTEMPTS, QuotaChange, jitter, newest_answer};
use crate::domain::{ChatSnapshot, LifetimeUsage, Message, MessageDraft, QuotaHold};
use crate::store::attributes::{
    cancellation_codes, conversation_key, n, s, timestamp, write_failed,
};
use crate::store::items::{Item, usage_attributes};
use crate::store::{Store, StoreError, classify, keys};

impl Store {
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
        let counters_added = counted(&mut values, tokens, cost, &usage);
        let counters = Update::builder()
            .table_name(self.table())
            .set_key(Some(conversation_key(&conversation.id)))
            .update_expression(format!(
                "SET last_sequence = :last, updated_at = :now, last_message_at = :now, \
                 gsi1sk = :recency{set} ADD message_count :count, {counters_added}{add}"
            ))
            .set_expression_attribute_values(Some(values))
            .condition_expression("last_sequence = :expected AND user_id = :uid")
            .expression_attribute_values(":last", n(updated.last_sequence))
            .expression_attribute_values(":expected", n(record.last_sequence))
            .expression_attribute_values(":uid", s(&conversation.user_id))
            .expression_attribute_values(":now", timestamp(now))
            .expression_attribute_values(":recency", s(keys::recency_sk(now, &conversation.id)))
            .expression_attribute_values(":count", n(messages.len()))
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
        self.recent.appended(record, &updated, &messages);
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
}

/// A hold's figures as expression values, added (`sign` 1) or taken away (-1).
pub(in crate::store) fn hold_values(hold: QuotaHold, sign: i64) -> Item {
    Item::from([
        (":held_replies".to_owned(), n(sign * hold.replies as i64)),
        (":held_tokens".to_owned(), n(sign * hold.tokens as i64)),
    ])
}

/// What stored messages add to their conversation's counters: the `ADD` clauses, with their
/// values put in `values`.
pub(in crate::store) fn counted(
    values: &mut Item,
    tokens: u64,
    cost: f64,
    usage: &LifetimeUsage,
) -> String {
    values.extend([
        (":tokens".to_owned(), n(tokens)),
        (":cost".to_owned(), n(cost)),
        (":replies".to_owned(), n(usage.replies)),
        (":input".to_owned(), n(usage.input_tokens)),
        (":output".to_owned(), n(usage.output_tokens)),
    ]);
    format!(
        "total_tokens :tokens, total_cost :cost, {} :replies, {} :input, {} :output",
        usage_attributes::REPLIES,
        usage_attributes::INPUT_TOKENS,
        usage_attributes::OUTPUT_TOKENS,
    )
}
