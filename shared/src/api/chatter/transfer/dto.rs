//! The wire shapes of export and import: the export's format, and the import file as read
//! and checked before it becomes a [`ConversationImport`].

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};
use utoipa::{IntoParams, ToSchema};

use super::super::conversations::ConversationCreate;
use crate::domain::{
    Feedback, FinishReason, JsonObject, MAX_MESSAGE_CHARS, MessageDraft, MessageRole, Rating,
};
use crate::error::ServiceError;
use crate::http::validate::Violations;
use crate::service::transfer::{ConversationImport, ImportedMessage, MAX_IMPORTED_MESSAGES};

/// What an export is written as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// The conversation with every message, as `GET /conversations/{id}` shows them: what
    /// `POST /conversations/import` reads back.
    #[default]
    Json,
    /// The title, then the active branch turn by turn, for people to read.
    Markdown,
}

impl ExportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Markdown => "md",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (the default) or `markdown`.
    pub format: Option<ExportFormat>,
}

/// A conversation export (`GET /conversations/{id}/export`), read back as a new conversation.
/// Fields an export carries that are the service's to set (ids, owner, counters, times) are
/// ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConversationImportRequest {
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    pub profile_id: Option<String>,
    #[schema(max_length = 32000)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub enable_retrieval: bool,
    pub llm_provider: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub llm_model: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_tokens: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub workflow_config: Option<JsonObject>,
    #[schema(value_type = Option<Object>)]
    pub extra_metadata: Option<JsonObject>,
    /// The leaf of the active branch, by a message's `id` in this file; the last message
    /// when absent.
    pub active_message_id: Option<String>,
    /// In creation order.
    #[schema(max_items = 1000)]
    pub messages: Vec<ImportedMessageRequest>,
}

/// A message of an import file.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ImportedMessageRequest {
    /// Its id in the file, which `parent_id` and `active_message_id` refer to; the stored
    /// message gets a new one.
    pub id: Option<String>,
    pub role: MessageRole,
    #[schema(max_length = 64000)]
    pub content: String,
    /// The message it follows, by its `id` in the file (an earlier message); `null` for a
    /// first message. Without the field, a message follows the one before it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    pub model_used: Option<String>,
    pub provider_used: Option<String>,
    pub response_time_ms: Option<u64>,
    #[schema(minimum = 0.0)]
    pub cost: Option<f64>,
    pub finish_reason: Option<FinishReason>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<JsonObject>,
    /// An assistant message's rating; its time is the import's.
    pub feedback: Option<ImportedFeedback>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ImportedFeedback {
    pub rating: Rating,
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// A field that is there, even as `null`, is `Some`; one left out stays `None` (the default).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// The highest cost a message may carry, in dollars; more is not a real answer's.
const MAX_COST: f64 = 1_000_000.0;
/// DynamoDB cannot store a nonzero number closer to zero than 1e-130.
const MIN_NONZERO_COST: f64 = 1e-12;

impl ImportedMessageRequest {
    /// The message's own rules, at locations relative to it.
    fn violations(&self) -> Violations {
        let mut v = Violations::new();
        v.length(Some(&self.content), 0, MAX_MESSAGE_CHARS, &["content"]);
        v.range(self.cost, 0.0, MAX_COST, &["cost"]);
        v.check(
            self.cost.is_none_or(|c| c == 0.0 || c >= MIN_NONZERO_COST),
            &["cost"],
            format!("must be 0 or at least {MIN_NONZERO_COST:e}"),
            "greater_than_equal",
        );
        v.storable_json(self.metadata.as_ref(), &["metadata"]);
        if let Some(feedback) = &self.feedback {
            v.check(
                self.role == MessageRole::Assistant,
                &["feedback"],
                "only an assistant message can be rated",
                "assistant_message_required",
            );
            v.length(
                feedback.comment.as_deref(),
                0,
                Feedback::MAX_COMMENT_CHARS,
                &["feedback", "comment"],
            );
        }
        v
    }

    fn into_imported(self, parent: Option<usize>) -> ImportedMessage {
        let feedback = self.feedback.map(|f| Feedback::new(f.rating, f.comment));
        let draft = MessageDraft {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            model_used: self.model_used,
            provider_used: self.provider_used,
            response_time_ms: self.response_time_ms,
            cost: self.cost,
            finish_reason: self.finish_reason,
            metadata: self.metadata,
            ..MessageDraft::new(self.role, self.content)
        };
        ImportedMessage {
            draft,
            feedback,
            parent,
        }
    }
}

/// Where each message's `parent_id` leads, by place in the file, with a violation for one that
/// names no earlier message.
fn parents(messages: &[ImportedMessageRequest], v: &mut Violations) -> Vec<Option<usize>> {
    let places: HashMap<&str, usize> = messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((m.id.as_deref()?, i)))
        .collect();
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| match &message.parent_id {
            None => i.checked_sub(1),
            Some(None) => None,
            Some(Some(id)) => {
                let parent = places.get(id.as_str()).copied().filter(|&p| p < i);
                let mut inner = Violations::new();
                inner.check(
                    parent.is_some(),
                    &["parent_id"],
                    "must be the id of an earlier message of the file",
                    "unknown_parent",
                );
                v.nest(&["body", "messages"], i, inner);
                parent
            }
        })
        .collect()
}

impl TryFrom<ConversationImportRequest> for ConversationImport {
    type Error = ServiceError;

    fn try_from(body: ConversationImportRequest) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let count = body.messages.len();
        v.check(
            count <= MAX_IMPORTED_MESSAGES,
            &["body", "messages"],
            format!("must have at most {MAX_IMPORTED_MESSAGES} messages"),
            "too_long",
        );
        let mut ids = HashMap::new();
        for (i, message) in body.messages.iter().enumerate() {
            let mut inner = message.violations();
            if let Some(id) = &message.id {
                inner.check(
                    ids.insert(id.as_str(), i).is_none(),
                    &["id"],
                    "must be unique in the file",
                    "duplicate_id",
                );
            }
            v.nest(&["body", "messages"], i, inner);
        }
        let parents = parents(&body.messages, &mut v);
        let active = body
            .active_message_id
            .as_deref()
            .map(|id| ids.get(id).copied());
        v.check(
            !matches!(active, Some(None)),
            &["body", "active_message_id"],
            "must be the id of a message of the file",
            "unknown_message",
        );
        let conversation = ConversationCreate {
            title: body.title,
            description: body.description,
            profile_id: body.profile_id,
            system_prompt: body.system_prompt,
            enable_retrieval: body.enable_retrieval,
            llm_provider: body.llm_provider,
            llm_model: body.llm_model,
            temperature: body.temperature,
            max_tokens: body.max_tokens,
            workflow_config: body.workflow_config,
            extra_metadata: body.extra_metadata,
        }
        .try_into();
        // The conversation's own violations come with the messages', in one 422.
        let conversation = match (conversation, v.finish()) {
            (Ok(conversation), Ok(())) => conversation,
            (Err(ServiceError::Validation(mut first)), Err(ServiceError::Validation(rest))) => {
                first.extend(rest);
                return Err(ServiceError::Validation(first));
            }
            (Err(err), _) | (_, Err(err)) => return Err(err),
        };
        let messages = body
            .messages
            .into_iter()
            .zip(parents)
            .map(|(message, parent)| message.into_imported(parent))
            .collect();
        Ok(Self {
            conversation,
            messages,
            active: active.flatten(),
        })
    }
}
