//! How domain values become DynamoDB items, through serde_dynamo.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::StoreError;
use super::keys;
use crate::domain::{
    Backend, Character, ChatSession, ChatSnapshot, Conversation, LifetimeUsage, Lineage, Message,
};

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
    /// Only on a FreeChat chat session; Chatter never reads or writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<ChatSession>,
    /// Only on a chat session: its character and backend as its turns need them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_snapshot: Option<ChatSnapshot>,
    /// Counted by every append, never by a delete (see [`LifetimeUsage`]).
    #[serde(default, flatten, with = "usage_attributes")]
    pub usage: LifetimeUsage,
    /// What admitted turns hold of a chat's quota until their answers are stored (see
    /// [`crate::domain::QuotaHold`]), counted together; none of it counts after
    /// `quota_held_until` (epoch seconds), by when every one of those turns has ended.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quota_held_replies: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quota_held_tokens: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quota_held_until: i64,
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
            session: None,
            chat_snapshot: None,
            usage: LifetimeUsage::default(),
            quota_held_replies: 0,
            quota_held_tokens: 0,
            quota_held_until: 0,
            conversation,
        }
    }
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

/// The attribute names of a conversation's lifetime usage, prefixed so that they cannot be
/// mistaken for Chatter's `total_tokens`, which drops when a message is deleted.
pub mod usage_attributes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::domain::LifetimeUsage;

    pub const REPLIES: &str = "usage_replies";
    pub const INPUT_TOKENS: &str = "usage_input_tokens";
    pub const OUTPUT_TOKENS: &str = "usage_output_tokens";

    #[derive(Serialize, Deserialize)]
    struct Attributes {
        #[serde(default)]
        usage_replies: u64,
        #[serde(default)]
        usage_input_tokens: u64,
        #[serde(default)]
        usage_output_tokens: u64,
    }

    pub fn serialize<S: Serializer>(
        usage: &LifetimeUsage,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        Attributes {
            usage_replies: usage.replies,
            usage_input_tokens: usage.input_tokens,
            usage_output_tokens: usage.output_tokens,
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<LifetimeUsage, D::Error> {
        let a = Attributes::deserialize(deserializer)?;
        Ok(LifetimeUsage {
            replies: a.usage_replies,
            input_tokens: a.usage_input_tokens,
            output_tokens: a.usage_output_tokens,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CharacterItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub character: Character,
}

impl CharacterItem {
    pub fn new(character: Character) -> Self {
        Self {
            pk: keys::character_pk(&character.uid),
            sk: keys::CHARACTER_SK.to_owned(),
            character,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendItem {
    pub pk: String,
    pub sk: String,
    #[serde(flatten)]
    pub backend: Backend,
}

impl BackendItem {
    pub fn new(backend: Backend) -> Self {
        Self {
            pk: keys::character_pk(&backend.character_uid),
            sk: keys::backend_sk(&backend.id),
            backend,
        }
    }
}

/// Names the item an id leads to: the character of a numeric id or of a backend, or the
/// user's chat with a backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointerItem {
    pub pk: String,
    pub sk: String,
    pub target: String,
}

impl PointerItem {
    pub fn new(pk: String, sk: String, target: impl Into<String>) -> Self {
        Self {
            pk,
            sk,
            target: target.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    pub pk: String,
    pub sk: String,
    pub lsi1sk: String,
    /// Set on a message that does not directly follow its parent (see [`keys::forks_pk`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gsi1sk: Option<String>,
    #[serde(flatten)]
    pub message: Message,
}

impl MessageItem {
    pub fn new(message: Message) -> Self {
        let fork = message
            .lineage
            .as_ref()
            .and_then(Lineage::parent_sequence)
            .filter(|parent| parent + 1 != message.sequence_number);
        Self {
            pk: keys::conversation_pk(&message.conversation_id),
            sk: keys::message_sk(message.sequence_number),
            lsi1sk: keys::message_id_sk(&message.id),
            gsi1pk: fork.map(|parent| keys::forks_pk(&message.conversation_id, parent)),
            gsi1sk: fork.map(|_| keys::message_sk(message.sequence_number)),
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
        draft.finish_reason = Some(crate::domain::FinishReason::Stop);
        let stored = MessageItem::new(draft.into_message("c-1", 42, crate::domain::Parent::Root));
        let item = to_item(&stored).unwrap();
        assert_eq!(item["sk"], AttributeValue::S("MSG#000000000042".into()));
        let back: MessageItem = from_item(item).unwrap();
        assert_eq!(back, stored);
        assert_eq!(back.message.total_tokens, Some(15));
    }

    #[test]
    fn a_chat_session_and_its_usage_survive_the_round_trip() {
        let mut stored = ConversationItem::new(conversation(), 3);
        stored.session = Some(ChatSession {
            character_uid: "char-1".into(),
            backend_id: "backend-1".into(),
            user_nickname: Some("Ann".into()),
            user_profile: None,
            character_nickname: Some("Captain".into()),
            about: Some("On deck.".into()),
            ext: None,
            read_at: crate::domain::now(),
        });
        stored.usage = LifetimeUsage {
            replies: 2,
            input_tokens: 40,
            output_tokens: 9,
        };
        let item = to_item(&stored).unwrap();
        assert_eq!(item["usage_replies"], AttributeValue::N("2".into()));
        assert!(matches!(&item["session"], AttributeValue::M(_)));
        let back: ConversationItem = from_item(item).unwrap();
        assert_eq!(back, stored);
    }

    #[test]
    fn a_conversation_written_before_sessions_reads_as_one_without_session_or_usage() {
        let mut item = to_item(&ConversationItem::new(conversation(), 1)).unwrap();
        item.remove("usage_replies");
        item.remove("usage_input_tokens");
        item.remove("usage_output_tokens");
        let back: ConversationItem = from_item(item).unwrap();
        assert_eq!(back.session, None);
        assert_eq!(back.usage, LifetimeUsage::default());
    }

    #[test]
    fn a_character_and_its_backend_survive_the_round_trip() {
        use crate::domain::{BackendSettings, CharacterInfo, QuotaType, Visibility};
        let mut character = Character::create(
            "owner",
            42,
            CharacterInfo {
                name: "Jack".into(),
                visibility: Visibility::PublicOrg,
                tags: vec!["sea".into(), "demo".into()],
                profile: Some("A sailor.".into()),
                ..Default::default()
            },
        );
        let backend = Backend::create(
            &character.uid,
            BackendSettings {
                quota_type: QuotaType::Tokens,
                init_quota: 1000,
                temperature: Some(0.5),
                model: Some("m".into()),
                ..Default::default()
            },
        );
        character.default_backend_id = Some(backend.id.clone());

        let stored = CharacterItem::new(character);
        let item = to_item(&stored).unwrap();
        assert_eq!(item["sk"], AttributeValue::S("META".into()));
        assert_eq!(item["visibility"], AttributeValue::S("public_org".into()));
        assert_eq!(from_item::<CharacterItem>(item).unwrap(), stored);

        let stored = BackendItem::new(backend);
        let item = to_item(&stored).unwrap();
        assert_eq!(
            item["pk"],
            AttributeValue::S(format!("CHAR#{}", stored.backend.character_uid))
        );
        assert_eq!(item["quota_type"], AttributeValue::S("tokens".into()));
        assert_eq!(from_item::<BackendItem>(item).unwrap(), stored);

        let pointer = PointerItem::new(keys::character_id_pk(42), keys::POINTER_SK.into(), "uid");
        assert_eq!(
            from_item::<PointerItem>(to_item(&pointer).unwrap()).unwrap(),
            pointer
        );
    }

    #[test]
    fn an_item_over_the_limit_is_refused_before_dynamodb_sees_it() {
        let draft = MessageDraft::new(MessageRole::User, "x".repeat(MAX_ITEM_BYTES));
        let err = to_item(&MessageItem::new(draft.into_message(
            "c-1",
            1,
            crate::domain::Parent::Root,
        )))
        .unwrap_err();
        assert!(matches!(err, StoreError::ItemTooLarge { bytes } if bytes > MAX_ITEM_BYTES));
    }
}
