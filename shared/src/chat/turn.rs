//! One exchange with the model, from the user's message to the stored answer.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::templates::{Template, Workflow};
use super::{estimate_tokens, prompt};
use crate::AppState;
use crate::domain::{Conversation, Message, MessageDraft, MessageRole, NewConversation};
use crate::error::{ApiError, ApiResult};
use crate::llm::{CompletionRequest, LlmError, Provider, StreamEvent, Usage};
use crate::store::{ConversationRecord, StoreError};

/// How many recent messages are read to fill the context window.
const HISTORY_FETCH: usize = 100;
const TITLE_CHARS: usize = 50;
const GENERATE_NODE: &str = "generate";

/// A validated chat request, whichever dialect it came in.
#[derive(Debug, Clone, Default)]
pub struct ChatInput {
    pub message: String,
    pub conversation_id: Option<String>,
    pub provider: Option<String>,
    pub workflow: Option<Workflow>,
    pub template: Option<&'static Template>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub context_limit: Option<u32>,
    pub system_prompt_override: Option<String>,
    /// Caps how many earlier messages the prompt carries (FreeChat's `messageWindowSize`).
    pub history_limit: Option<usize>,
    /// Kept with the stored user message (FreeChat's debug view shows it).
    pub user_metadata: Option<crate::domain::JsonObject>,
}

/// A turn whose user message is stored and whose prompt is ready.
pub struct Turn {
    pub record: ConversationRecord,
    pub user_message: Message,
    pub provider: Arc<Provider>,
    pub request: CompletionRequest,
    started: Instant,
}

/// The stored answer of a finished turn.
pub struct TurnOutcome {
    pub conversation: Conversation,
    pub message: Message,
    pub usage: Usage,
    pub cost: f64,
}

/// What a streaming turn reports, in order, to whichever dialect frames it.
#[derive(Debug)]
pub enum TurnEvent {
    NodeStarted {
        node: &'static str,
    },
    Token(String),
    NodeCompleted {
        node: &'static str,
        duration_ms: u64,
    },
    Finished(Box<TurnOutcome>),
    Failed {
        message: String,
    },
}

impl std::fmt::Debug for TurnOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnOutcome")
            .field("message_id", &self.message.id)
            .field("usage", &self.usage)
            .finish()
    }
}

fn title_from(message: &str) -> String {
    let trimmed = message.trim();
    let mut title: String = trimmed.chars().take(TITLE_CHARS).collect();
    if trimmed.chars().count() > TITLE_CHARS {
        title.push_str("...");
    }
    title
}

impl Turn {
    /// Resolves the conversation, provider and prompt, and stores the user's message.
    pub async fn begin(state: &AppState, user_id: &str, input: ChatInput) -> ApiResult<Self> {
        let workflow = input
            .workflow
            .or(input.template.map(|t| t.workflow))
            .unwrap_or(Workflow::Plain);
        if workflow != Workflow::Plain {
            return Err(ApiError::invalid(
                ["body".into(), "workflow".into()],
                format!(
                    "The '{}' workflow is not available on this deployment yet.",
                    workflow.as_str()
                ),
                "workflow_unavailable",
            ));
        }
        let (record, history) = match &input.conversation_id {
            Some(id) => state
                .store
                .conversation_with_messages(
                    user_id,
                    id,
                    input.history_limit.unwrap_or(HISTORY_FETCH),
                )
                .await
                .map_err(|e| match e {
                    StoreError::NotFound => ApiError::NotFound("Conversation not found.".into()),
                    other => other.into(),
                })?,
            None => (
                ConversationRecord::new(Conversation::create(
                    user_id,
                    NewConversation {
                        title: title_from(&input.message),
                        llm_provider: input.provider.clone(),
                        ..Default::default()
                    },
                )),
                Vec::new(),
            ),
        };
        let conversation = &record.conversation;
        let provider_name = input
            .provider
            .as_deref()
            .or(conversation.llm_provider.as_deref());
        let provider = state.llm.get(provider_name).ok_or_else(|| {
            ApiError::invalid(
                ["body".into(), "provider".into()],
                format!("Unknown provider '{}'.", provider_name.unwrap_or_default()),
                "unknown_provider",
            )
        })?;
        let template = input.template;
        let system = input
            .system_prompt_override
            .as_deref()
            .or(conversation.system_prompt.as_deref())
            .or(template.map(|t| t.system_message));
        let budget = input.context_limit.unwrap_or(conversation.context_window) as usize;
        let memory = if conversation.memory_enabled {
            input
                .history_limit
                .or(template.map(|t| t.memory_window as usize))
                .unwrap_or(HISTORY_FETCH)
        } else {
            0
        };
        let request = CompletionRequest {
            model: conversation
                .llm_model
                .clone()
                .filter(|_| conversation.llm_provider.as_deref() == Some(provider.name.as_str()))
                .unwrap_or_else(|| provider.config.default_model.clone()),
            messages: prompt::build(system, &history, memory, &input.message, budget),
            temperature: input
                .temperature
                .or(conversation.temperature)
                .or(template.map(|t| t.temperature)),
            max_tokens: input.max_tokens.or(conversation.max_tokens),
            tools: Vec::new(),
        };

        let is_new = input.conversation_id.is_none();
        let mut user = MessageDraft::new(MessageRole::User, input.message);
        user.metadata = input.user_metadata;
        let (record, mut stored) = if is_new {
            state
                .store
                .create_conversation_with(record, vec![user])
                .await?
        } else {
            state.store.append_messages(record, vec![user]).await?
        };
        Ok(Self {
            record,
            user_message: stored.remove(0),
            provider,
            request,
            started: Instant::now(),
        })
    }

    /// Stores the model's answer and adds its usage and cost to the conversation.
    pub async fn finish(
        self,
        state: &AppState,
        content: String,
        usage: Option<Usage>,
        finish_reason: &str,
    ) -> ApiResult<TurnOutcome> {
        let usage = usage.unwrap_or_else(|| Usage {
            prompt_tokens: self
                .request
                .messages
                .iter()
                .map(|m| estimate_tokens(&m.content) as u32)
                .sum(),
            completion_tokens: estimate_tokens(&content) as u32,
        });
        let cost = self.provider.cost(usage);
        let mut draft = MessageDraft::new(MessageRole::Assistant, content);
        draft.prompt_tokens = Some(usage.prompt_tokens);
        draft.completion_tokens = Some(usage.completion_tokens);
        draft.model_used = Some(self.request.model.clone());
        draft.provider_used = Some(self.provider.name.clone());
        draft.response_time_ms = Some(self.started.elapsed().as_millis() as u64);
        draft.cost = Some(cost);
        draft.finish_reason = Some(finish_reason.to_owned());
        let (record, mut stored) = state
            .store
            .append_messages(self.record, vec![draft])
            .await?;
        Ok(TurnOutcome {
            conversation: record.conversation,
            message: stored.remove(0),
            usage,
            cost,
        })
    }

    /// Runs the turn without streaming. On a model failure the user's message stays stored.
    pub async fn run(self, state: &AppState) -> ApiResult<TurnOutcome> {
        let completion = self.provider.client.complete(&self.request).await?;
        if completion.content.is_empty() {
            return Err(ApiError::Upstream {
                status: axum::http::StatusCode::BAD_GATEWAY,
                detail: "The model returned an empty answer.".into(),
            });
        }
        let reason = completion.finish_reason.unwrap_or_else(|| "stop".into());
        self.finish(state, completion.content, completion.usage, &reason)
            .await
    }

    /// Runs the turn as a stream of events. Whatever was generated is stored, also when the
    /// model fails mid-answer (`finish_reason: "error"`) or the client goes away
    /// (`"interrupted"`).
    pub async fn stream(self, state: AppState, events: mpsc::Sender<TurnEvent>) {
        let node_started = Instant::now();
        let _ = events
            .send(TurnEvent::NodeStarted {
                node: GENERATE_NODE,
            })
            .await;
        let mut content = String::new();
        let mut usage = None;
        let mut finish = None;
        let mut failure: Option<LlmError> = None;
        let mut interrupted = false;
        match self.provider.client.stream(&self.request).await {
            Err(e) => failure = Some(e),
            Ok(mut chunks) => {
                while let Some(chunk) = chunks.next().await {
                    match chunk {
                        Ok(StreamEvent::Delta(text)) => {
                            content.push_str(&text);
                            if events.send(TurnEvent::Token(text)).await.is_err() {
                                interrupted = true;
                                break;
                            }
                        }
                        Ok(StreamEvent::Finish(reason)) => finish = Some(reason),
                        Ok(StreamEvent::ToolCalls(_)) => {}
                        Ok(StreamEvent::Usage(u)) => usage = Some(u),
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        let reason = match (&failure, interrupted) {
            (_, true) => "interrupted".to_owned(),
            (Some(_), _) => "error".to_owned(),
            _ => finish.unwrap_or_else(|| "stop".into()),
        };
        let stored = if content.is_empty() {
            None
        } else {
            Some(self.finish(&state, content, usage, &reason).await)
        };
        if let Some(err) = failure {
            tracing::warn!(error = %err, "model stream failed");
            let _ = events
                .send(TurnEvent::Failed {
                    message: err.client_message(),
                })
                .await;
            return;
        }
        let _ = events
            .send(TurnEvent::NodeCompleted {
                node: GENERATE_NODE,
                duration_ms: node_started.elapsed().as_millis() as u64,
            })
            .await;
        let last = match stored {
            Some(Ok(outcome)) => TurnEvent::Finished(Box::new(outcome)),
            Some(Err(err)) => TurnEvent::Failed {
                message: err.problem().detail,
            },
            None => TurnEvent::Failed {
                message: "The model returned an empty answer.".into(),
            },
        };
        let _ = events.send(last).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_the_first_fifty_characters_of_the_message() {
        assert_eq!(title_from("  Short question  "), "Short question");
        let long = "x".repeat(60);
        assert_eq!(title_from(&long), format!("{}...", "x".repeat(50)));
        assert_eq!(title_from(&"é".repeat(50)), "é".repeat(50));
    }
}
