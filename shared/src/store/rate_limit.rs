//! Per-user request counting for rate limits, shared by every Lambda instance.
//!
//! One item per user and hour holds the hour's count and one count per minute, so a request
//! costs a single atomic UpdateItem. TTL removes the item once its hour is over.

use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Timelike, Utc};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

use super::{Store, StoreError, classify, keys};
use crate::config::RateLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limits: RateLimits,
    pub remaining_minute: u64,
    pub remaining_hour: u64,
    /// Set when this request is over a limit: seconds until the window that is full resets.
    pub retry_after_secs: Option<u64>,
}

impl RateLimitStatus {
    /// What a caller that has not been counted may still do.
    pub fn unused(limits: RateLimits) -> Self {
        Self {
            limits,
            remaining_minute: limits.per_minute.into(),
            remaining_hour: limits.per_hour.into(),
            retry_after_secs: None,
        }
    }

    fn from_counts(limits: RateLimits, minute: u64, hour: u64, now: DateTime<Utc>) -> Self {
        let to_next_minute = 60 - u64::from(now.second());
        let to_next_hour = 3600 - u64::from(now.minute() * 60 + now.second());
        let retry_after_secs = if hour > u64::from(limits.per_hour) {
            Some(to_next_hour)
        } else if minute > u64::from(limits.per_minute) {
            Some(to_next_minute)
        } else {
            None
        };
        Self {
            limits,
            remaining_minute: u64::from(limits.per_minute).saturating_sub(minute),
            remaining_hour: u64::from(limits.per_hour).saturating_sub(hour),
            retry_after_secs,
        }
    }
}

/// A request's count, started when the request arrived and awaited by each party that must
/// not go on over the limit: a read endpoint's answer waits for it beside its reads, a chat
/// turn before it calls the model, the rate-limit headers at the end. Cloning shares the one
/// count; it runs while any clone is awaited.
#[derive(Clone)]
pub struct PendingCount(Shared<BoxFuture<'static, Result<RateLimitStatus, Arc<StoreError>>>>);

impl std::fmt::Debug for PendingCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingCount")
    }
}

impl PendingCount {
    pub fn start(store: Store, user_id: String, limits: RateLimits, now: DateTime<Utc>) -> Self {
        let count = async move {
            store
                .count_request(&user_id, limits, now)
                .await
                .map_err(Arc::new)
        };
        Self(count.boxed().shared())
    }

    /// The count's outcome, once it is there.
    pub async fn status(&self) -> Result<RateLimitStatus, Arc<StoreError>> {
        self.0.clone().await
    }
}

impl Store {
    /// Counts one request for the user and reports the budget that is left.
    pub async fn count_request(
        &self,
        user_id: &str,
        limits: RateLimits,
        now: DateTime<Utc>,
    ) -> Result<RateLimitStatus, StoreError> {
        let hour = now.format("%Y%m%d%H").to_string();
        let expires = now.timestamp() + 2 * 3600;
        let output = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(
                keys::PK,
                AttributeValue::S(keys::rate_window_pk(user_id, &hour)),
            )
            .key(keys::SK, AttributeValue::S(keys::RATE_WINDOW_SK.into()))
            .update_expression(
                "ADD hour_count :one, #minute :one SET #ttl = if_not_exists(#ttl, :ttl)",
            )
            .expression_attribute_names("#minute", format!("m{:02}", now.minute()))
            .expression_attribute_names("#ttl", keys::TTL)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":ttl", AttributeValue::N(expires.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(classify)?;
        let attributes = output.attributes.unwrap_or_default();
        let count = |name: &str| {
            attributes
                .get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0u64)
        };
        Ok(RateLimitStatus::from_counts(
            limits,
            count(&format!("m{:02}", now.minute())),
            count("hour_count"),
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RateLimits = RateLimits {
        per_minute: 2,
        per_hour: 5,
    };

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn within_the_limits_nothing_is_refused() {
        let status = RateLimitStatus::from_counts(LIMITS, 2, 2, at("2026-01-01T10:00:10Z"));
        assert_eq!(status.retry_after_secs, None);
        assert_eq!(status.remaining_minute, 0);
        assert_eq!(status.remaining_hour, 3);
    }

    #[test]
    fn over_the_minute_limit_waits_for_the_next_minute() {
        let status = RateLimitStatus::from_counts(LIMITS, 3, 3, at("2026-01-01T10:00:10Z"));
        assert_eq!(status.retry_after_secs, Some(50));
    }

    #[test]
    fn over_the_hour_limit_waits_for_the_next_hour() {
        let status = RateLimitStatus::from_counts(LIMITS, 1, 6, at("2026-01-01T10:59:00Z"));
        assert_eq!(status.retry_after_secs, Some(60));
        assert_eq!(status.remaining_hour, 0);
    }
}
