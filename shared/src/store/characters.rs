//! FreeChat's characters and their backends.
//!
//! A character and its backends share the character's partition (`CHAR#<uid>`), so one
//! query returns a character with all its backends. A numeric character id and a backend id
//! each lead there through a pointer item written in the same transaction as what it points
//! to, so every lookup is strongly consistent and none needs a scan. Which backend is the
//! default is an attribute of the character item, so there is never more than one.

use aws_sdk_dynamodb::types::{
    ConditionCheck, Delete, Put, ReturnValue, TransactWriteItem, Update,
};

use chrono::{DateTime, Utc};

use super::attributes::{attr, n, s, timestamp, write_failed};
use super::items::{BackendItem, CharacterItem, Item, PointerItem, from_item, to_item};
use super::ops::Partition;
use super::{Store, StoreError, classify, keys};
use crate::domain::{Backend, Character, ChatSnapshot};

/// The key of the item at `pk` / `sk`.
pub(super) fn key(pk: String, sk: &str) -> Item {
    Item::from([(keys::PK.to_owned(), s(pk)), (keys::SK.to_owned(), s(sk))])
}

/// Conditions of a write that creates an item, and of one that changes an existing item.
pub(super) const NEW: &str = "attribute_not_exists(pk)";
pub(super) const EXISTS: &str = "attribute_exists(pk)";

fn character_key(uid: &str) -> Item {
    key(keys::character_pk(uid), keys::CHARACTER_SK)
}

fn backend_key(backend: &Backend) -> Item {
    key(
        keys::character_pk(&backend.character_uid),
        &keys::backend_sk(&backend.id),
    )
}

fn backend_pointer_key(backend_id: &str) -> Item {
    key(keys::backend_pk(backend_id), keys::POINTER_SK)
}

fn character_id_pointer_key(character_id: u64) -> Item {
    key(keys::character_id_pk(character_id), keys::POINTER_SK)
}

impl Store {
    /// A transaction's Put of an item, refused unless `condition` (with its `values`) holds.
    pub(super) fn put_action(
        &self,
        item: Item,
        condition: &str,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .build()
            .map_err(anyhow::Error::new)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A transaction's Delete of the item at `key`, refused unless `condition` (with its
    /// `values`) holds.
    pub(super) fn delete_action(
        &self,
        key: Item,
        condition: Option<&str>,
        values: Option<Item>,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(self.table())
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_values(values)
            .build()
            .map_err(anyhow::Error::new)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs the actions as one transaction; a failed condition is `on_condition`.
    pub(super) async fn transact(
        &self,
        actions: Vec<TransactWriteItem>,
        on_condition: StoreError,
    ) -> Result<(), StoreError> {
        self.client()
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
            .map_err(|e| write_failed(e, on_condition))?;
        Ok(())
    }

    /// A transaction's checks that the snapshot's character and backend are still as it has
    /// them (same `modified_at`, so also neither removed).
    pub(super) fn unchanged(
        &self,
        snapshot: &ChatSnapshot,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let ChatSnapshot { character, backend } = snapshot;
        [
            (character_key(&character.uid), &character.modified_at),
            (backend_key(backend), &backend.modified_at),
        ]
        .into_iter()
        .map(|(key, modified_at)| {
            // The value as the item stores it, whatever digits its text form drops.
            let check = ConditionCheck::builder()
                .table_name(self.table())
                .set_key(Some(key))
                .condition_expression("modified_at = :read")
                .expression_attribute_values(":read", attr(modified_at)?)
                .build()
                .map_err(anyhow::Error::new)?;
            Ok(TransactWriteItem::builder().condition_check(check).build())
        })
        .collect()
    }

    /// What the pointer item at `key` names, or `NotFound`.
    pub(super) async fn pointer(&self, key: Item) -> Result<String, StoreError> {
        let item = self.get_consistent(key).await?;
        let item: PointerItem = from_item(item.ok_or(StoreError::NotFound)?)?;
        Ok(item.target)
    }

    /// The next numeric character id, from one atomic counter shared by every instance.
    pub async fn next_character_id(&self) -> Result<u64, StoreError> {
        let output = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(
                keys::CHARACTER_COUNTER_PK.to_owned(),
                keys::COUNTER_SK,
            )))
            .update_expression("ADD last_value :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(classify)?;
        output
            .attributes
            .and_then(|a| a.get("last_value")?.as_n().ok()?.parse().ok())
            .ok_or_else(|| {
                StoreError::Other(anyhow::anyhow!("the character counter is unreadable"))
            })
    }

    /// Stores a new character with the pointer from its numeric id.
    pub async fn create_character(&self, character: &Character) -> Result<(), StoreError> {
        let pointer = PointerItem::new(
            keys::character_id_pk(character.id),
            keys::POINTER_SK.to_owned(),
            &character.uid,
        );
        self.transact(
            vec![
                self.put_action(to_item(&CharacterItem::new(character.clone()))?, NEW, None)?,
                self.put_action(to_item(&pointer)?, NEW, None)?,
            ],
            StoreError::Conflict,
        )
        .await
    }

    /// The uid of the character with this numeric id.
    pub async fn character_uid(&self, character_id: u64) -> Result<String, StoreError> {
        self.pointer(character_id_pointer_key(character_id)).await
    }

    /// A character with its backends, oldest backend first, from one query of its partition.
    pub async fn character(&self, uid: &str) -> Result<(Character, Vec<Backend>), StoreError> {
        let mut character = None;
        let mut backends = Vec::new();
        for item in self.query(Partition::of(keys::character_pk(uid))).await? {
            match item.get(keys::SK).and_then(|v| v.as_s().ok()) {
                Some(sk) if sk == keys::CHARACTER_SK => {
                    character = Some(from_item::<CharacterItem>(item)?.character);
                }
                Some(sk) if sk.starts_with(keys::BACKEND_SK_PREFIX) => {
                    backends.push(from_item::<BackendItem>(item)?.backend);
                }
                _ => {}
            }
        }
        // Backend ids are UUIDv7, so their key order is not creation order across clocks.
        backends.sort_by_key(|b| b.created_at);
        Ok((character.ok_or(StoreError::NotFound)?, backends))
    }

    /// Replaces a character's item, unless it changed since it was read at `read_modified_at`
    /// (then `Conflict`, so a concurrent change of the default backend is never lost).
    pub async fn replace_character(
        &self,
        character: &Character,
        read_modified_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(to_item(&CharacterItem::new(character.clone()))?))
            .condition_expression("modified_at = :read")
            .expression_attribute_values(":read", timestamp(read_modified_at))
            .build()
            .map_err(anyhow::Error::new)?;
        self.transact(
            vec![TransactWriteItem::builder().put(put).build()],
            StoreError::Conflict,
        )
        .await
    }

    /// Deletes a character: first the character and its id pointer, in one transaction, so
    /// it is gone from every route at once; then its backends and their pointers.
    pub async fn delete_character(
        &self,
        character: &Character,
        backends: &[Backend],
    ) -> Result<(), StoreError> {
        self.transact(
            vec![
                self.delete_action(character_key(&character.uid), Some(EXISTS), None)?,
                self.delete_action(character_id_pointer_key(character.id), None, None)?,
            ],
            StoreError::NotFound,
        )
        .await?;
        let keys = backends
            .iter()
            .flat_map(|b| [backend_key(b), backend_pointer_key(&b.id)]);
        self.delete_all(keys).await
    }

    /// Adds a backend to its character. It becomes the default when asked to, or when the
    /// character has none yet.
    pub async fn add_backend(
        &self,
        backend: &Backend,
        make_default: bool,
    ) -> Result<(), StoreError> {
        let pointer = PointerItem::new(
            keys::backend_pk(&backend.id),
            keys::POINTER_SK.to_owned(),
            &backend.character_uid,
        );
        let default = if make_default {
            "SET default_backend_id = :id"
        } else {
            "SET default_backend_id = if_not_exists(default_backend_id, :id)"
        };
        let character = Update::builder()
            .table_name(self.table())
            .set_key(Some(character_key(&backend.character_uid)))
            .update_expression(default)
            .condition_expression(EXISTS)
            .expression_attribute_values(":id", s(&backend.id))
            .build()
            .map_err(anyhow::Error::new)?;
        self.transact(
            vec![
                self.put_action(to_item(&BackendItem::new(backend.clone()))?, NEW, None)?,
                self.put_action(to_item(&pointer)?, NEW, None)?,
                TransactWriteItem::builder().update(character).build(),
            ],
            StoreError::NotFound,
        )
        .await
    }

    /// A backend by its id, with its character and the character's other backends.
    pub async fn backend(
        &self,
        backend_id: &str,
    ) -> Result<(Character, Vec<Backend>, Backend), StoreError> {
        let uid = self.pointer(backend_pointer_key(backend_id)).await?;
        let (character, backends) = self.character(&uid).await?;
        let backend = backends
            .iter()
            .find(|b| b.id == backend_id)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        Ok((character, backends, backend))
    }

    /// Replaces a backend's item; `NotFound` if it was removed meanwhile.
    pub async fn replace_backend(&self, backend: &Backend) -> Result<(), StoreError> {
        self.transact(
            vec![self.put_action(to_item(&BackendItem::new(backend.clone()))?, EXISTS, None)?],
            StoreError::NotFound,
        )
        .await
    }

    /// Makes a backend its character's default, provided both still exist.
    pub async fn set_default_backend(&self, backend: &Backend) -> Result<(), StoreError> {
        let exists = ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(backend_key(backend)))
            .condition_expression(EXISTS)
            .build()
            .map_err(anyhow::Error::new)?;
        let character = Update::builder()
            .table_name(self.table())
            .set_key(Some(character_key(&backend.character_uid)))
            .update_expression("SET default_backend_id = :id, modified_at = :now")
            .condition_expression(EXISTS)
            .expression_attribute_values(":id", s(&backend.id))
            .expression_attribute_values(":now", timestamp(crate::domain::now()))
            .build()
            .map_err(anyhow::Error::new)?;
        self.transact(
            vec![
                TransactWriteItem::builder().condition_check(exists).build(),
                TransactWriteItem::builder().update(character).build(),
            ],
            StoreError::NotFound,
        )
        .await
    }

    /// Removes a backend and its pointer; a removed default leaves the character without one.
    pub async fn remove_backend(
        &self,
        character: &Character,
        backend: &Backend,
    ) -> Result<(), StoreError> {
        let mut actions = vec![
            self.delete_action(backend_key(backend), Some(EXISTS), None)?,
            self.delete_action(backend_pointer_key(&backend.id), None, None)?,
        ];
        if character.default_backend_id.as_deref() == Some(backend.id.as_str()) {
            let no_default = Update::builder()
                .table_name(self.table())
                .set_key(Some(character_key(&character.uid)))
                .update_expression("REMOVE default_backend_id")
                .condition_expression("default_backend_id = :id")
                .expression_attribute_values(":id", s(&backend.id))
                .build()
                .map_err(anyhow::Error::new)?;
            actions.push(TransactWriteItem::builder().update(no_default).build());
        }
        self.transact(actions, StoreError::Conflict).await
    }
}
