//! Changing a conversation's own attributes: its title, settings and choice of model.

use aws_sdk_dynamodb::types::ReturnValue;

use crate::domain::{Conversation, ConversationPatch};
use crate::store::attributes::{Assignments, attr, conversation_key, n, s, timestamp};
use crate::store::items::{self, ConversationItem, Item, from_item};
use crate::store::{Store, StoreError, classify, keys};

impl Store {
    /// Replaces the conversation's title only if it is still `expected`: a title written for
    /// the user never replaces one the user chose meanwhile (`Conflict` then). It leaves
    /// `updated_at` alone, so the conversation keeps its place in the recency order.
    pub async fn replace_title(
        &self,
        user_id: &str,
        conversation_id: &str,
        expected: &str,
        title: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(conversation_key(conversation_id)))
            .update_expression("SET title = :title")
            .condition_expression("user_id = :uid AND title = :expected")
            .expression_attribute_values(":uid", s(user_id))
            .expression_attribute_values(":expected", s(expected))
            .expression_attribute_values(":title", s(title))
            .send()
            .await;
        match result {
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict)
            }
            other => other.map(|_| ()).map_err(classify),
        }
    }

    /// Applies the patch to the caller's conversation and returns the result.
    pub async fn update_conversation(
        &self,
        user_id: &str,
        conversation_id: &str,
        patch: &ConversationPatch,
    ) -> Result<Conversation, StoreError> {
        self.update_conversation_with_llm(user_id, conversation_id, patch, None, None)
            .await
    }

    /// Applies the patch and the choice of provider and model (`None` leaves one as it is) in
    /// one write.
    pub async fn update_conversation_with_llm(
        &self,
        user_id: &str,
        conversation_id: &str,
        patch: &ConversationPatch,
        llm_provider: Option<&str>,
        llm_model: Option<&str>,
    ) -> Result<Conversation, StoreError> {
        let now = crate::domain::now();
        let mut update = Assignments::new(
            &["updated_at = :now", "gsi1sk = :recency"],
            [
                (":now", timestamp(now)),
                (":recency", s(keys::recency_sk(now, conversation_id))),
                (":uid", s(user_id)),
            ],
        );
        update.set("title = :title", ":title", patch.title.as_deref().map(s));
        let description = patch.description.as_deref().map(s);
        update.set("description = :description", ":description", description);
        let status = patch.status.map(|v| attr(&v)).transpose()?;
        update.set("#status = :status", ":status", status);
        let temperature = patch.temperature.map(n);
        update.set("temperature = :temperature", ":temperature", temperature);
        update.set(
            "max_tokens = :max_tokens",
            ":max_tokens",
            patch.max_tokens.map(n),
        );
        let workflow = patch.workflow_config.as_ref().map(attr).transpose()?;
        update.set("workflow_config = :wc", ":wc", workflow);
        let extra = patch.extra_metadata.as_ref().map(attr).transpose()?;
        update.set("extra_metadata = :em", ":em", extra);
        let active = patch.active_message_id.as_deref().map(s);
        update.set("active_message_id = :active", ":active", active);
        update.set(
            "llm_provider = :llm_provider",
            ":llm_provider",
            llm_provider.map(s),
        );
        update.set("llm_model = :llm_model", ":llm_model", llm_model.map(s));
        let (mut expression, values) = update.into_parts();
        // A model belongs to its provider: another provider starts from its own default.
        if llm_model.is_none() && llm_provider.is_some() {
            expression.push_str(" REMOVE llm_model");
        }
        let mut request = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(conversation_key(conversation_id)))
            .update_expression(expression)
            .condition_expression("attribute_exists(pk) AND user_id = :uid")
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew);
        if patch.status.is_some() {
            request = request.expression_attribute_names("#status", "status");
        }
        self.ensure_update_fits(
            user_id,
            conversation_id,
            request.get_update_expression().as_deref(),
            request.get_expression_attribute_values().as_ref(),
        )
        .await?;
        let output = request.send().await.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
            {
                StoreError::NotFound
            } else {
                classify(e)
            }
        })?;
        let item: ConversationItem = from_item(output.attributes.unwrap_or_default())?;
        Ok(item.conversation)
    }

    /// Refuses an update that would take the conversation item past DynamoDB's 400 KB, with
    /// the size it would have, before DynamoDB refuses it with an error of its own. Someone
    /// else's or a missing conversation passes: the update's own condition answers for it.
    async fn ensure_update_fits(
        &self,
        user_id: &str,
        conversation_id: &str,
        expression: Option<&str>,
        values: Option<&Item>,
    ) -> Result<(), StoreError> {
        let (Some(expression), Some(values)) = (expression, values) else {
            return Ok(());
        };
        let Some(mut item) = self
            .get_consistent(conversation_key(conversation_id))
            .await?
        else {
            return Ok(());
        };
        if item
            .get("user_id")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            != Some(user_id)
        {
            return Ok(());
        }
        let (set, remove) = expression
            .strip_prefix("SET ")
            .unwrap_or_default()
            .split_once(" REMOVE ")
            .unwrap_or((expression.strip_prefix("SET ").unwrap_or_default(), ""));
        for name in remove.split(',').map(str::trim) {
            item.remove(name);
        }
        for clause in set.split(", ") {
            if let Some((name, placeholder)) = clause.split_once(" = ")
                && let Some(value) = values.get(placeholder.trim())
            {
                item.insert(
                    name.trim().trim_start_matches('#').to_owned(),
                    value.clone(),
                );
            }
        }
        let bytes = items::item_size(&item);
        if bytes > items::MAX_ITEM_BYTES {
            return Err(StoreError::ItemTooLarge { bytes });
        }
        Ok(())
    }
}
