//! Every key format of the single table, defined once.
//!
//! | item                | pk                  | sk                | gsi1pk              | gsi1sk                  | lsi1sk          |
//! |---------------------|---------------------|-------------------|---------------------|-------------------------|-----------------|
//! | conversation        | `CONV#<id>`         | `META`            | `USER#<uid>#CONVS`  | `<updated_at>#<id>`     | –               |
//! | message             | `CONV#<id>`         | `MSG#<seq:012>`   | fork only: `CONV#<id>#FORKS#<parent seq:012>` | `MSG#<seq:012>` | `MSGID#<msgid>` |
//! | user counters       | `USER#<uid>`        | `STATS`           | –                   | –                       | –               |
//! | execution stats     | `USER#<uid>`        | `EXECUTIONS`      | –                   | –                       | –               |
//! | idempotency record  | `IDEM#<sha256>`     | `RESPONSE`        | –                   | –                       | –               |
//! | user's chat         | `USER#<uid>`        | `CHAT#<backend>`  | –                   | –                       | –               |
//! | rate-limit window   | `RATE#<uid>#<hour>` | `WINDOW`          | –                   | –                       | –               |
//! | document            | `DOC#<id>`          | `META`            | `USER#<uid>#DOCS`   | `<created_at>#<id>`     | –               |
//! | document text part  | `DOC#<id>`          | `TEXT#<part:04>`  | –                   | –                       | –               |
//! | document chunk      | `DOC#<id>`          | `CHUNK#<idx:06>`  | `USER#<uid>#CHUNKS` | `<doc id>#<idx:06>`     | –               |
//! | character           | `CHAR#<uid>`        | `META`            | –                   | –                       | –               |
//! | character backend   | `CHAR#<uid>`        | `BACKEND#<id>`    | –                   | –                       | –               |
//! | character id        | `CHARID#<number>`   | `POINTER`         | –                   | –                       | –               |
//! | backend id          | `BACKEND#<id>`      | `POINTER`         | –                   | –                       | –               |
//! | character counter   | `COUNTER#CHARACTER` | `COUNTER`         | –                   | –                       | –               |
//!
//! A FreeChat chat session is a conversation item with a `session` attribute. The user's chat
//! items point from a backend to the user's chat with it (one per user and backend); the id
//! pointers name the character a numeric character id or a backend id belongs to. So every
//! lookup FreeChat makes by id is a strongly consistent GetItem or Query.

use chrono::{DateTime, Utc};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
pub const LSI1: &str = "lsi1";
pub const LSI1_SK: &str = "lsi1sk";
/// Epoch seconds after which DynamoDB's TTL may delete the item.
pub const TTL: &str = "expires_at";

pub const CONVERSATION_SK: &str = "META";
pub const MESSAGE_SK_PREFIX: &str = "MSG#";
pub const USER_STATS_SK: &str = "STATS";
pub const EXECUTION_STATS_SK: &str = "EXECUTIONS";
/// Followed by the hash of the user and the key (see `idempotency`).
pub const IDEMPOTENCY_PK_PREFIX: &str = "IDEM#";
pub const IDEMPOTENCY_SK: &str = "RESPONSE";
pub const RATE_WINDOW_SK: &str = "WINDOW";
pub const CHAT_SK_PREFIX: &str = "CHAT#";
pub const CHARACTER_SK: &str = "META";
pub const BACKEND_SK_PREFIX: &str = "BACKEND#";
pub const POINTER_SK: &str = "POINTER";
pub const CHARACTER_COUNTER_PK: &str = "COUNTER#CHARACTER";
pub const COUNTER_SK: &str = "COUNTER";
pub const DOCUMENT_SK: &str = "META";
pub const DOCUMENT_TEXT_SK_PREFIX: &str = "TEXT#";
pub const CHUNK_SK_PREFIX: &str = "CHUNK#";

pub fn conversation_pk(conversation_id: &str) -> String {
    format!("CONV#{conversation_id}")
}

/// Zero-padded so that the lexical order of the sort key is the numeric order of the sequence.
pub fn message_sk(sequence_number: u64) -> String {
    format!("{MESSAGE_SK_PREFIX}{sequence_number:012}")
}

pub fn message_id_sk(message_id: &str) -> String {
    format!("MSGID#{message_id}")
}

/// In `gsi1`, the messages that follow the message at `parent_sequence` without coming right
/// after it (an edit, a regenerated answer, a turn beside another): with the one right after
/// it, when that one follows it, they are all of its children, found without reading the
/// messages between. Only such forks are in the index, so it costs a copy of them alone.
pub fn forks_pk(conversation_id: &str, parent_sequence: u64) -> String {
    format!("CONV#{conversation_id}#FORKS#{parent_sequence:012}")
}

pub fn user_conversations_pk(user_id: &str) -> String {
    format!("USER#{user_id}#CONVS")
}

/// Timestamps are written with a fixed width (see `domain::now`), so this sorts by recency.
pub fn recency_sk(updated_at: DateTime<Utc>, id: &str) -> String {
    format!(
        "{}#{id}",
        updated_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

pub fn user_pk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

/// Under the user's partition: the user's chat with this backend.
pub fn chat_sk(backend_id: &str) -> String {
    format!("{CHAT_SK_PREFIX}{backend_id}")
}

pub fn character_pk(character_uid: &str) -> String {
    format!("CHAR#{character_uid}")
}

/// Under the character's partition, so a character and its backends come back from one query.
pub fn backend_sk(backend_id: &str) -> String {
    format!("{BACKEND_SK_PREFIX}{backend_id}")
}

pub fn character_id_pk(character_id: u64) -> String {
    format!("CHARID#{character_id}")
}

pub fn backend_pk(backend_id: &str) -> String {
    format!("BACKEND#{backend_id}")
}

pub fn rate_window_pk(user_id: &str, hour: &str) -> String {
    format!("RATE#{user_id}#{hour}")
}

pub fn document_pk(document_id: &str) -> String {
    format!("DOC#{document_id}")
}

/// The extracted text is kept in parts, in order, each well below the item size limit.
pub fn document_text_sk(part: u32) -> String {
    format!("{DOCUMENT_TEXT_SK_PREFIX}{part:04}")
}

/// The largest chunk index whose key [`chunk_sk`] keeps in order (six digits).
pub const MAX_CHUNK_INDEX: u32 = 999_999;

/// Zero-padded so that a document's chunks come back in order from one query.
pub fn chunk_sk(chunk_index: u32) -> String {
    format!("{CHUNK_SK_PREFIX}{chunk_index:06}")
}

/// A user's documents in `gsi1`, oldest first by creation time.
pub fn user_documents_pk(user_id: &str) -> String {
    format!("USER#{user_id}#DOCS")
}

/// A user's chunks in `gsi1`: retrieval reads them all in one query, never a table scan.
pub fn user_chunks_pk(user_id: &str) -> String {
    format!("USER#{user_id}#CHUNKS")
}

pub fn user_chunk_sk(document_id: &str, chunk_index: u32) -> String {
    format!("{document_id}#{chunk_index:06}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_sort_in_sequence_order() {
        assert!(message_sk(9) < message_sk(10));
        assert!(message_sk(99_999) < message_sk(100_000));
    }

    #[test]
    fn recency_keys_sort_by_time() {
        let earlier = "2026-01-01T00:00:00.000001Z".parse().unwrap();
        let later = "2026-01-01T00:00:00.100000Z".parse().unwrap();
        assert!(recency_sk(earlier, "b") < recency_sk(later, "a"));
    }

    #[test]
    fn chunk_keys_sort_in_index_order() {
        assert!(chunk_sk(9) < chunk_sk(10));
        assert!(chunk_sk(99_999) < chunk_sk(100_000));
        assert!(user_chunk_sk("d", 9) < user_chunk_sk("d", 10));
    }
}
