//! FreeChat's chat sessions: conversations that carry a `session` attribute.
//!
//! A user has at most one chat per backend. The item `USER#<uid>` / `CHAT#<backend id>` names
//! it, is written in the same transaction as the conversation, and lists the user's chats in
//! one query. A conversation deleted through Chatter leaves that pointer behind; it is then
//! treated as absent and replaced when the user starts a chat with the backend again.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{KeysAndAttributes, TransactWriteItem, Update};

use super::attributes::{attr, conversation_key, s};
use super::characters::{NEW, key};
use super::items::{
    BackendItem, CharacterItem, ConversationItem, Item, PointerItem, from_item, to_item,
};
use super::ops::Partition;
use super::{ConversationRecord, Store, StoreError, classify, keys};
use crate::domain::{
    Backend, Character, ChatSession, ChatSettings, ChatSnapshot, Conversation, LifetimeUsage,
    Message,
};

/// BatchGetItem takes at most this many keys.
const BATCH_GET_LIMIT: usize = 100;
/// Starting a chat re-reads and retries at most this often when another start races it.
const START_ATTEMPTS: usize = 3;

/// A chat session: its conversation, FreeChat's fields, and what it has used.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRecord {
    pub record: ConversationRecord,
    pub session: ChatSession,
}

impl ChatRecord {
    pub fn id(&self) -> &str {
        &self.record.conversation.id
    }

    pub fn conversation(&self) -> &Conversation {
        &self.record.conversation
    }

    /// What the chat has used over its life.
    pub fn usage(&self) -> LifetimeUsage {
        self.record.quota.usage
    }

    /// The user's own session, or nothing (someone else's conversation, or a Chatter one).
    fn owned(item: ConversationItem, user_id: &str) -> Option<Self> {
        if item.conversation.user_id != user_id {
            return None;
        }
        let record = ConversationRecord::of(item);
        Some(Self {
            session: record.session.clone()?,
            record,
        })
    }
}

fn chat_pointer_key(user_id: &str, backend_id: &str) -> Item {
    key(keys::user_pk(user_id), &keys::chat_sk(backend_id))
}

impl Store {
    /// The caller's chat session; `NotFound` when it is missing, someone else's, or a
    /// conversation that is not a chat session.
    pub async fn chat(&self, user_id: &str, chat_id: &str) -> Result<ChatRecord, StoreError> {
        let item = self.get_consistent(conversation_key(chat_id)).await?;
        let item: ConversationItem = from_item(item.ok_or(StoreError::NotFound)?)?;
        ChatRecord::owned(item, user_id).ok_or(StoreError::NotFound)
    }

    /// The caller's chat with a backend, if there is one.
    pub async fn chat_with_backend(
        &self,
        user_id: &str,
        backend_id: &str,
    ) -> Result<Option<ChatRecord>, StoreError> {
        let chat_id = match self.pointer(chat_pointer_key(user_id, backend_id)).await {
            Err(StoreError::NotFound) => return Ok(None),
            other => other?,
        };
        match self.chat(user_id, &chat_id).await {
            Err(StoreError::NotFound) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Starts the user's chat with the session's backend and returns its id; when the user
    /// already has one (also one started concurrently), returns that one instead.
    pub async fn start_chat(
        &self,
        conversation: Conversation,
        session: ChatSession,
        snapshot: ChatSnapshot,
    ) -> Result<String, StoreError> {
        let user_id = conversation.user_id.clone();
        let chat_id = conversation.id.clone();
        let pointer_key = chat_pointer_key(&user_id, &session.backend_id);
        let pointer = to_item(&PointerItem::new(
            keys::user_pk(&user_id),
            keys::chat_sk(&session.backend_id),
            &chat_id,
        ))?;
        let mut item = ConversationItem::new(conversation, 0);
        item.session = Some(session);
        item.chat_snapshot = Some(snapshot);
        for _ in 0..START_ATTEMPTS {
            let stale = match self.pointer(pointer_key.clone()).await {
                Err(StoreError::NotFound) => None,
                Err(other) => return Err(other),
                Ok(existing) => match self.chat(&user_id, &existing).await {
                    Ok(chat) => return Ok(chat.id().to_owned()),
                    Err(StoreError::NotFound) => Some(existing),
                    Err(other) => return Err(other),
                },
            };
            // The pointer is claimed in the conversation's transaction: of two concurrent
            // starts, one creates the chat and the other finds it on its next attempt.
            let claim = match stale {
                None => self.put_action(pointer.clone(), NEW, None)?,
                Some(stale) => self.put_action(
                    pointer.clone(),
                    "target = :stale",
                    Some(Item::from([(":stale".to_owned(), s(stale))])),
                )?,
            };
            match self
                .insert_conversation(item.clone(), &[], vec![claim])
                .await
            {
                Err(StoreError::Conflict) => tokio::time::sleep(Duration::from_millis(5)).await,
                other => return other.map(|()| chat_id),
            }
        }
        Err(StoreError::Conflict)
    }

    /// The caller's chat sessions, in no particular order.
    pub async fn list_chats(&self, user_id: &str) -> Result<Vec<ChatRecord>, StoreError> {
        let chat_ids = self
            .query(Partition::of(keys::user_pk(user_id)).prefixed(keys::CHAT_SK_PREFIX))
            .await?
            .into_iter()
            .map(|item| from_item::<PointerItem>(item).map(|p| p.target))
            .collect::<Result<Vec<_>, _>>()?;
        let items = self
            .batch_get(chat_ids.iter().map(|id| conversation_key(id)).collect())
            .await?;
        Ok(items
            .into_iter()
            .map(from_item::<ConversationItem>)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter_map(|item| ChatRecord::owned(item, user_id))
            .collect())
    }

    /// Characters by uid; missing ones are left out.
    pub async fn characters_by_uid(
        &self,
        uids: impl IntoIterator<Item = &str>,
    ) -> Result<HashMap<String, Character>, StoreError> {
        let keys = uids
            .into_iter()
            .map(|uid| key(keys::character_pk(uid), keys::CHARACTER_SK))
            .collect();
        self.batch_get(keys)
            .await?
            .into_iter()
            .map(|item| {
                let character = from_item::<CharacterItem>(item)?.character;
                Ok((character.uid.clone(), character))
            })
            .collect()
    }

    /// Backends by (character uid, backend id); missing ones are left out.
    pub async fn backends_by_id<'a>(
        &self,
        ids: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<HashMap<String, Backend>, StoreError> {
        let keys = ids
            .into_iter()
            .map(|(uid, id)| key(keys::character_pk(uid), &keys::backend_sk(id)))
            .collect();
        self.batch_get(keys)
            .await?
            .into_iter()
            .map(|item| {
                let backend = from_item::<BackendItem>(item)?.backend;
                Ok((backend.id.clone(), backend))
            })
            .collect()
    }

    /// The chat's newest `count` messages, newest first.
    pub async fn newest_messages(
        &self,
        chat: &ChatRecord,
        count: usize,
    ) -> Result<Vec<Message>, StoreError> {
        self.latest_messages(chat.id(), count).await
    }

    /// Every message of the chat, oldest first, read page by page (DynamoDB answers a query
    /// with at most 1 MB), so that a long history comes back whole.
    pub async fn all_messages(&self, chat: &ChatRecord) -> Result<Vec<Message>, StoreError> {
        self.every_message(chat.id()).await
    }

    /// Saves a chat's session, the settings its conversation carries and its snapshot of its
    /// character and backend. A session that moves
    /// to another backend moves the user's pointer with it, unless the user already has a chat
    /// with that backend (`Conflict`).
    pub async fn save_chat(
        &self,
        chat: &ChatRecord,
        session: &ChatSession,
        (settings, snapshot): (&ChatSettings, &ChatSnapshot),
    ) -> Result<(), StoreError> {
        let user_id = &chat.conversation().user_id;
        let update = Update::builder()
            .table_name(self.table())
            .set_key(Some(conversation_key(chat.id())))
            .update_expression(
                "SET #session = :session, system_prompt = :prompt, llm_provider = :provider, \
                 llm_model = :model, temperature = :temperature, max_tokens = :max_tokens, \
                 chat_snapshot = :snapshot",
            )
            .condition_expression("user_id = :uid AND attribute_exists(#session)")
            .expression_attribute_names("#session", "session")
            .expression_attribute_values(":uid", s(user_id))
            .expression_attribute_values(":session", attr(session)?)
            .expression_attribute_values(":prompt", s(&settings.system_prompt))
            .expression_attribute_values(":provider", s(&settings.provider))
            .expression_attribute_values(":model", s(&settings.model))
            .expression_attribute_values(":temperature", attr(&settings.temperature)?)
            .expression_attribute_values(":max_tokens", attr(&settings.max_tokens)?)
            .expression_attribute_values(":snapshot", attr(snapshot)?)
            .build()
            .map_err(anyhow::Error::new)?;
        let mut actions = vec![TransactWriteItem::builder().update(update).build()];
        if session.backend_id != chat.session.backend_id {
            let moved = PointerItem::new(
                keys::user_pk(user_id),
                keys::chat_sk(&session.backend_id),
                chat.id(),
            );
            actions.push(self.put_action(to_item(&moved)?, NEW, None)?);
            actions.push(self.delete_action(
                chat_pointer_key(user_id, &chat.session.backend_id),
                Some("target = :id"),
                Some(Item::from([(":id".to_owned(), s(chat.id()))])),
            )?);
        }
        self.transact(actions, StoreError::Conflict).await
    }

    /// Deletes a chat session like any conversation, then the user's pointer to it.
    pub async fn delete_chat(&self, chat: &ChatRecord) -> Result<(), StoreError> {
        let user_id = &chat.conversation().user_id;
        self.delete_conversation(user_id, chat.id()).await?;
        let pointer = self.delete_action(
            chat_pointer_key(user_id, &chat.session.backend_id),
            Some("target = :id"),
            Some(Item::from([(":id".to_owned(), s(chat.id()))])),
        )?;
        match self.transact(vec![pointer], StoreError::NotFound).await {
            // The pointer already leads to a newer chat with the backend.
            Err(StoreError::NotFound) => Ok(()),
            other => other,
        }
    }

    /// BatchGetItem over any number of keys, strongly consistent, resubmitting what DynamoDB
    /// leaves unprocessed under load. The items come back in no particular order.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_LIMIT) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(true)
                    .build()
                    .map_err(anyhow::Error::new)?,
            );
            let mut backoff = Duration::from_millis(20);
            while let Some(request) = pending.take() {
                let output = self
                    .client()
                    .batch_get_item()
                    .request_items(self.table(), request)
                    .send()
                    .await
                    .map_err(classify)?;
                found.extend(
                    output
                        .responses
                        .and_then(|mut r| r.remove(self.table()))
                        .unwrap_or_default(),
                );
                pending = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(self.table()))
                    .filter(|k| !k.keys.is_empty());
                if pending.is_some() {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
        Ok(found)
    }
}
