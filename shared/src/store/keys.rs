//! Every key format of the single table, defined once.
//!
//! | item                | pk                 | sk                | gsi1pk              | gsi1sk                  | lsi1sk          |
//! |---------------------|--------------------|-------------------|---------------------|-------------------------|-----------------|
//! | conversation        | `CONV#<id>`        | `META`            | `USER#<uid>#CONVS`  | `<updated_at>#<id>`     | –               |
//! | message             | `CONV#<id>`        | `MSG#<seq:012>`   | –                   | –                       | `MSGID#<msgid>` |
//! | user counters       | `USER#<uid>`       | `STATS`           | –                   | –                       | –               |
//! | execution stats     | `USER#<uid>`       | `EXECUTIONS`      | –                   | –                       | –               |
//! | rate-limit window   | `RATE#<uid>#<hour>`| `WINDOW`          | –                   | –                       | –               |

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
pub const RATE_WINDOW_SK: &str = "WINDOW";

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

pub fn rate_window_pk(user_id: &str, hour: &str) -> String {
    format!("RATE#{user_id}#{hour}")
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
}
