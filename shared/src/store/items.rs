//! How domain values become DynamoDB items, through serde_dynamo.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::keys;
use crate::domain::{Conversation, Message};

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB refuses items over 400 KB; checking first turns that into a clear client error.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversationItem {
    pub pk: String,
    pub sk: String,
    pub gsi1pk: String,
    pub gsi1sk: String,
    /// The highest sequence number ever given to a message here; appends are conditioned on it.
    pub last_sequence: u64,
    #[serde(flatten)]
    pub conversation: Conversation,
}

impl ConversationItem {
    pub fn new(conversation: Conversation, last_sequence: u64) -> Self {
        Self {
            pk: keys::conversation_pk(&conversation.id),
            sk: keys::CONVERSATION_SK.to_owned(),
            gsi1pk: keys::user_conversations_pk(&conversation.user_id),
            gsi1sk: keys::recency_sk(conversation.updated_at, &conversation.id),
            last_sequence,
            conversation,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    pub pk: String,
    pub sk: String,
    pub lsi1sk: String,
    #[serde(flatten)]
    pub message: Message,
}

impl MessageItem {
    pub fn new(message: Message) -> Self {
        Self {
            pk: keys::conversation_pk(&message.conversation_id),
            sk: keys::message_sk(message.sequence_number),
            lsi1sk: keys::message_id_sk(&message.id),
            message,
        }
    }
}

pub fn to_item<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    let item: Item =
        serde_dynamo::to_item(value).map_err(|e| StoreError::Other(anyhow::Error::new(e)))?;
    let size = item_size(&item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::ItemTooLarge { bytes: size });
    }
    Ok(item)
}

pub fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Other(anyhow::Error::new(e)))
}

/// The size DynamoDB bills and limits: attribute names plus values, by its published rules.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => n.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| n.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationStatus, MessageDraft, MessageRole, NewConversation};

    fn conversation() -> Conversation {
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "source".into(),
            serde_json::json!({"app": "web", "n": 3, "tags": ["a", null]}),
        );
        let mut conversation = Conversation::create(
            "user-1",
            NewConversation {
                title: "Trip planning".into(),
                system_prompt: Some("Be brief.".into()),
                temperature: Some(0.25),
                max_tokens: Some(512),
                extra_metadata: Some(metadata),
                ..Default::default()
            },
        );
        conversation.status = ConversationStatus::Archived;
        conversation.total_cost = 0.001_25;
        conversation
    }

    #[test]
    fn a_conversation_survives_the_round_trip() {
        let stored = ConversationItem::new(conversation(), 7);
        let item = to_item(&stored).unwrap();
        assert_eq!(
            item["pk"],
            AttributeValue::S(format!("CONV#{}", stored.conversation.id))
        );
        assert_eq!(item["last_sequence"], AttributeValue::N("7".into()));
        let back: ConversationItem = from_item(item).unwrap();
        assert_eq!(back, stored);
    }

    #[test]
    fn a_message_survives_the_round_trip() {
        let mut draft = MessageDraft::new(MessageRole::Assistant, "Hello there");
        draft.prompt_tokens = Some(12);
        draft.completion_tokens = Some(3);
        draft.cost = Some(0.0004);
        draft.finish_reason = Some("stop".into());
        let stored = MessageItem::new(draft.into_message("c-1", 42));
        let item = to_item(&stored).unwrap();
        assert_eq!(item["sk"], AttributeValue::S("MSG#000000000042".into()));
        let back: MessageItem = from_item(item).unwrap();
        assert_eq!(back, stored);
        assert_eq!(back.message.total_tokens, Some(15));
    }

    #[test]
    fn an_item_over_the_limit_is_refused_before_dynamodb_sees_it() {
        let draft = MessageDraft::new(MessageRole::User, "x".repeat(MAX_ITEM_BYTES));
        let err = to_item(&MessageItem::new(draft.into_message("c-1", 1))).unwrap_err();
        assert!(matches!(err, StoreError::ItemTooLarge { bytes } if bytes > MAX_ITEM_BYTES));
    }
}
