//! Idempotency records: the first response to a request sent with an `Idempotency-Key`,
//! kept so that a retry gets the same answer instead of a second model call.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::items::{MAX_ITEM_BYTES, item_size};
use super::{Store, StoreError, classify, keys};
use crate::domain::StoredQuestion;

/// How long a completed record answers retries; DynamoDB's TTL removes it afterwards.
const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);
const PENDING: &str = "pending";
const DONE: &str = "done";
/// Given up after a failure that stored the request's question: the next try takes the key
/// over and learns where the question is.
const RELEASED: &str = "released";

/// A response as it was first sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// What claiming a key found.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// This request owns the key and must complete or release it; an earlier try that
    /// failed after storing its question left where it is.
    Acquired { resume: Option<StoredQuestion> },
    /// The same request already finished; here is its response.
    Replay(StoredResponse),
    /// The same request is still running elsewhere.
    InProgress,
    /// The key was used with a different request.
    Mismatch,
}

/// The key's partition: user and key hashed together, so neither can forge the other's.
fn record_pk(user_id: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(user_id.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}{hex}", keys::IDEMPOTENCY_PK_PREFIX)
}

fn key_of(user_id: &str, key: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            keys::PK.to_owned(),
            AttributeValue::S(record_pk(user_id, key)),
        ),
        (
            keys::SK.to_owned(),
            AttributeValue::S(keys::IDEMPOTENCY_SK.into()),
        ),
    ])
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn condition_failed<E>(err: &aws_sdk_dynamodb::error::SdkError<E>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

impl Store {
    /// Claims `key` for a request whose content hashes to `fingerprint`. A pending claim
    /// whose lease has run out (its Lambda died) can be taken over, so a crash never blocks
    /// a key for longer than the lease.
    pub async fn claim_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        lease: Duration,
        now: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        let now_secs = now.timestamp();
        // A record deleted between the failed claim and the read is claimed again, once.
        for _ in 0..2 {
            let mut item = key_of(user_id, key);
            item.insert("state".into(), s(PENDING));
            item.insert("fingerprint".into(), s(fingerprint));
            item.insert("lease_until".into(), n(now_secs + lease.as_secs() as i64));
            item.insert(keys::TTL.into(), n(now_secs + RECORD_TTL.as_secs() as i64));
            let claimed = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression(
                    "attribute_not_exists(pk) OR #ttl < :now \
                     OR (#state = :pending AND lease_until < :now) \
                     OR (#state = :released AND fingerprint = :fingerprint)",
                )
                .expression_attribute_names("#ttl", keys::TTL)
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":now", n(now_secs))
                .expression_attribute_values(":pending", s(PENDING))
                .expression_attribute_values(":released", s(RELEASED))
                .expression_attribute_values(":fingerprint", s(fingerprint))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await;
            match claimed {
                Ok(output) => {
                    let old = output.attributes.unwrap_or_default();
                    let text = |name: &str| old.get(name).and_then(|v| v.as_s().ok()).cloned();
                    let resume = match (text("conversation_id"), text("message_id")) {
                        (Some(conversation_id), Some(message_id))
                            if text("state").as_deref() == Some(RELEASED) =>
                        {
                            Some(StoredQuestion {
                                conversation_id,
                                message_id,
                            })
                        }
                        _ => None,
                    };
                    return Ok(Claim::Acquired { resume });
                }
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(classify(e)),
            }
            let existing = self.get_consistent(key_of(user_id, key)).await?;
            let Some(existing) = existing else { continue };
            let text = |name: &str| existing.get(name).and_then(|v| v.as_s().ok()).cloned();
            if text("fingerprint").as_deref() != Some(fingerprint) {
                return Ok(Claim::Mismatch);
            }
            match text("state").as_deref() {
                Some(DONE) => {}
                // Released between the failed claim and the read: claimed on the next pass.
                Some(RELEASED) => continue,
                _ => return Ok(Claim::InProgress),
            }
            let status = existing
                .get("status")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            let body = existing
                .get("body")
                .and_then(|v| v.as_b().ok())
                .map(|b| b.as_ref().to_vec())
                .unwrap_or_default();
            return Ok(Claim::Replay(StoredResponse {
                status,
                content_type: text("content_type").unwrap_or_default(),
                body,
            }));
        }
        Ok(Claim::InProgress)
    }

    /// Keeps the response for retries. One too large to keep releases the key instead.
    pub async fn complete_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        let values = HashMap::from([
            (":done".to_owned(), s(DONE)),
            (":status".to_owned(), n(i64::from(response.status))),
            (":type".to_owned(), s(&response.content_type)),
            (
                ":body".to_owned(),
                AttributeValue::B(Blob::new(response.body.clone())),
            ),
            (":fingerprint".to_owned(), s(fingerprint)),
        ]);
        if item_size(&values) > MAX_ITEM_BYTES - 1024 {
            return self
                .release_idempotency_key(user_id, key, fingerprint, None)
                .await;
        }
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key_of(user_id, key)))
            .update_expression(
                "SET #state = :done, #status = :status, content_type = :type, body = :body",
            )
            .condition_expression("fingerprint = :fingerprint")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            // Another request took the key over after this one's lease ran out; its record stands.
            Err(e) if condition_failed(&e) => Ok(()),
            other => other.map(|_| ()).map_err(classify),
        }
    }

    /// Gives the key up, so that a retry runs the request again: from the start, or, when
    /// the failed request had stored its `question`, answering that question.
    pub async fn release_idempotency_key(
        &self,
        user_id: &str,
        key: &str,
        fingerprint: &str,
        question: Option<&StoredQuestion>,
    ) -> Result<(), StoreError> {
        // Another request took the key over after this one's lease ran out: its claim stands.
        match question {
            None => self
                .client()
                .delete_item()
                .table_name(self.table())
                .set_key(Some(key_of(user_id, key)))
                .condition_expression("fingerprint = :fingerprint")
                .expression_attribute_values(":fingerprint", s(fingerprint))
                .send()
                .await
                .map(drop)
                .or_else(unless_condition_failed),
            Some(question) => self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key_of(user_id, key)))
                .update_expression(
                    "SET #state = :released, conversation_id = :conversation, message_id = :message",
                )
                .condition_expression("fingerprint = :fingerprint")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":released", s(RELEASED))
                .expression_attribute_values(":conversation", s(&question.conversation_id))
                .expression_attribute_values(":message", s(&question.message_id))
                .expression_attribute_values(":fingerprint", s(fingerprint))
                .send()
                .await
                .map(drop)
                .or_else(unless_condition_failed),
        }
    }
}

/// A failed condition is no error here; anything else is.
fn unless_condition_failed<E>(err: aws_sdk_dynamodb::error::SdkError<E>) -> Result<(), StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if condition_failed(&err) {
        Ok(())
    } else {
        Err(classify(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_different_users_never_collide() {
        assert_ne!(record_pk("alice", "k"), record_pk("bob", "k"));
        assert_ne!(record_pk("a#b", "c"), record_pk("a", "b#c"));
        assert_eq!(record_pk("alice", "k"), record_pk("alice", "k"));
    }
}
