//! Ratings of answers, and the owner's counters of them.
//!
//! A message's feedback and the owner's `feedback_up` / `feedback_down` counters change in one
//! transaction conditioned on the rating the writer read, so concurrent changes to one
//! message never count a rating twice or lose one: the loser re-reads and tries again.

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::attributes::{attr, n, s, write_failed};
use super::{Store, StoreError, keys};
use crate::domain::{Feedback, Message, Rating};

/// The attribute names of the counters, on the owner's execution statistics item.
pub(super) const UP: &str = "feedback_up";
pub(super) const DOWN: &str = "feedback_down";

/// How many answers of a user stand rated up and down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackCounts {
    pub up: u64,
    pub down: u64,
}

/// What moving from one rating to another adds to the (up, down) counters.
fn counter_change(before: Option<Rating>, after: Option<Rating>) -> (i64, i64) {
    let count = |rating: Option<Rating>| match rating {
        Some(Rating::Up) => (1, 0),
        Some(Rating::Down) => (0, 1),
        None => (0, 0),
    };
    let (b, a) = (count(before), count(after));
    (a.0 - b.0, a.1 - b.1)
}

impl Store {
    /// Replaces the feedback of `message` as it was read (`None` clears it) and moves the
    /// owner's counters by the change. `Conflict` when its rating changed since the read.
    pub async fn replace_feedback(
        &self,
        user_id: &str,
        message: &Message,
        feedback: Option<Feedback>,
    ) -> Result<Message, StoreError> {
        let before = message.feedback.as_ref().map(|f| f.rating);
        let after = feedback.as_ref().map(|f| f.rating);
        let mut update = Update::builder()
            .table_name(self.table())
            .key(keys::PK, s(keys::conversation_pk(&message.conversation_id)))
            .key(keys::SK, s(keys::message_sk(message.sequence_number)))
            .expression_attribute_names("#fb", "feedback");
        update = match &feedback {
            Some(value) => update
                .update_expression("SET #fb = :fb")
                .expression_attribute_values(":fb", attr(value)?),
            None => update.update_expression("REMOVE #fb"),
        };
        update = match before {
            Some(rating) => update
                .condition_expression("attribute_exists(pk) AND #fb.#rating = :before")
                .expression_attribute_names("#rating", "rating")
                .expression_attribute_values(":before", attr(&rating)?),
            None => {
                update.condition_expression("attribute_exists(pk) AND attribute_not_exists(#fb)")
            }
        };
        let mut request = self.client().transact_write_items().transact_items(
            TransactWriteItem::builder()
                .update(update.build().map_err(anyhow::Error::new)?)
                .build(),
        );
        let (up, down) = counter_change(before, after);
        if (up, down) != (0, 0) {
            request = request.transact_items(self.feedback_counters(user_id, up, down)?);
        }
        request
            .send()
            .await
            .map_err(|e| write_failed(e, StoreError::Conflict))?;
        Ok(Message {
            feedback,
            ..message.clone()
        })
    }
}

impl Store {
    /// Moves the owner's (up, down) counters by these amounts, as one action of a transaction
    /// that changes the ratings they count.
    pub(super) fn feedback_counters(
        &self,
        user_id: &str,
        up: i64,
        down: i64,
    ) -> Result<TransactWriteItem, StoreError> {
        let counters = Update::builder()
            .table_name(self.table())
            .set_key(Some(Self::stats_key(user_id).into_iter().collect()))
            .update_expression(format!("ADD {UP} :up, {DOWN} :down"))
            .expression_attribute_values(":up", n(up))
            .expression_attribute_values(":down", n(down))
            .build()
            .map_err(anyhow::Error::new)?;
        Ok(TransactWriteItem::builder().update(counters).build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_rating_moves_one_count_to_the_other_counter() {
        assert_eq!(counter_change(None, Some(Rating::Up)), (1, 0));
        assert_eq!(
            counter_change(Some(Rating::Up), Some(Rating::Down)),
            (-1, 1)
        );
        assert_eq!(counter_change(Some(Rating::Down), None), (0, -1));
        assert_eq!(counter_change(Some(Rating::Up), Some(Rating::Up)), (0, 0));
    }
}
