//! An imported conversation, stored whole under new ids.
//!
//! A transaction takes at most 100 actions, so the messages go first, in batches, and the
//! conversation item last, in one transaction with the owner's counters: until it is written
//! nothing leads to the messages, and an import that fails takes them away again.

use super::items::{ConversationItem, MessageItem, to_item};
use super::{Store, StoreError, keys};
use crate::domain::{Conversation, LifetimeUsage, Message, Rating};

impl Store {
    /// Stores a new conversation with its messages (numbered from 1, in order) and returns it
    /// with its counters set: the messages, their tokens and cost, and their ratings in the
    /// owner's feedback counters. A message too large to store fails it before any write.
    pub async fn import_conversation(
        &self,
        mut conversation: Conversation,
        messages: &[Message],
    ) -> Result<Conversation, StoreError> {
        let items = messages
            .iter()
            .map(|m| to_item(&MessageItem::new(m.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        conversation.message_count = messages.len() as u64;
        conversation.total_tokens = messages
            .iter()
            .filter_map(|m| m.total_tokens)
            .map(u64::from)
            .sum();
        conversation.total_cost = messages.iter().filter_map(|m| m.cost).sum();
        conversation.last_message_at = messages.last().map(|m| m.created_at);
        let last_sequence = messages.last().map_or(0, |m| m.sequence_number);
        let mut item = ConversationItem::new(conversation.clone(), last_sequence);
        item.usage = LifetimeUsage::of(messages);
        let rated = |rating| {
            messages
                .iter()
                .filter(|m| m.feedback.as_ref().map(|f| f.rating) == Some(rating))
                .count() as i64
        };
        let (up, down) = (rated(Rating::Up), rated(Rating::Down));
        let counters = if (up, down) == (0, 0) {
            Vec::new()
        } else {
            vec![self.feedback_counters(&conversation.user_id, up, down)?]
        };
        let written = async {
            self.put_all(items).await?;
            self.insert_conversation(item, &[], counters).await
        }
        .await;
        if let Err(err) = &written {
            let pk = keys::conversation_pk(&conversation.id);
            if let Err(cleanup) = self.purge(pk, Some(keys::MESSAGE_SK_PREFIX)).await {
                tracing::warn!(error = %cleanup, import = %err, "an unfinished import's messages stay behind");
            }
        }
        written.map(|()| conversation)
    }
}
