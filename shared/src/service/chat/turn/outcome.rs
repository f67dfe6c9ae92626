//! How a turn ends: its answer stored with usage and cost, its execution recorded, and what
//! it held or left behind let go of.

use super::Turn;
use super::generation::{Generation, details};
use crate::AppState;
use crate::domain::{
    FinishReason, JsonObject, Message, MessageDraft, MessageRole, Parent, Placement, QuotaHold,
    Workflow,
};
use crate::error::{ServiceError, ServiceResult};
use crate::metrics::{Failure, Stage, TurnMetrics};
use crate::service::chat::events::TurnOutcome;
use crate::store::{AnswerPlace, Execution, QuotaChange};

/// The class under which a failed execution is counted.
pub(super) fn error_class(error: &ServiceError) -> &'static str {
    error.class().as_str()
}

impl Turn {
    /// Stores the answer with its usage and cost, and records the execution.
    async fn finish(
        self,
        state: &AppState,
        generation: &Generation,
        finish_reason: FinishReason,
    ) -> ServiceResult<TurnOutcome> {
        let usage = generation.usage;
        let cost = self.provider.cost(usage);
        let mut draft = MessageDraft::new(MessageRole::Assistant, generation.content.clone())
            .after(Parent::Message(self.answer_parent.clone()));
        draft.lineage.clone_from(&self.answer_lineage);
        draft.prompt_tokens = Some(usage.prompt_tokens);
        draft.completion_tokens = Some(usage.completion_tokens);
        draft.model_used = Some(self.request.model.clone());
        draft.provider_used = Some(self.provider.name.clone());
        draft.response_time_ms = Some(self.started.elapsed().as_millis() as u64);
        draft.cost = Some(cost);
        draft.finish_reason = Some(finish_reason);
        draft.metadata = self.metadata(generation);
        let quota = self.held.map_or(QuotaChange::None, QuotaChange::Settle);
        let (record, message) = match &self.answer {
            Some(answer) => {
                let place = match &answer.parent {
                    Parent::Message(id) if *id != self.answer_parent => AnswerPlace::AfterItsTurn,
                    _ => AnswerPlace::Kept,
                };
                let answer = draft.finishing(answer);
                state
                    .store
                    .settle_answer(self.record, answer, &quota, place)
                    .await?
            }
            None => {
                let (record, mut stored) = state
                    .store
                    .append_with_quota(self.record, vec![draft], &quota)
                    .await?;
                (record, stored.remove(0))
            }
        };
        let mut sibling_ids = self.siblings;
        if !sibling_ids.contains(&message.id) {
            sibling_ids.push(message.id.clone());
        }
        Ok(TurnOutcome {
            conversation: record.conversation,
            placement: Placement {
                parent_id: Some(self.answer_parent),
                sibling_ids,
            },
            message,
            usage,
            cost,
        })
    }

    /// What the stored answer keeps about how it was made.
    fn metadata(&self, generation: &Generation) -> Option<JsonObject> {
        if self.workflow == Workflow::Plain {
            return None;
        }
        let tool_calls: Vec<serde_json::Value> = generation
            .tool_runs
            .iter()
            .map(|run| {
                serde_json::json!({
                    "tool": run.name, "arguments": run.arguments,
                    "is_error": run.is_error, "duration_ms": run.duration_ms,
                })
            })
            .collect();
        let mut metadata = details([
            ("workflow", self.workflow.as_str().into()),
            ("tool_calls", tool_calls.into()),
        ]);
        if matches!(self.workflow, Workflow::Rag | Workflow::Full) {
            let citations: Vec<serde_json::Value> = self
                .sources
                .iter()
                .map(|source| {
                    serde_json::json!({
                        "document_id": source.document_id, "title": source.title,
                        "chunk_index": source.chunk_index, "score": source.score,
                    })
                })
                .collect();
            metadata.insert("sources".into(), citations.into());
        }
        if !self.toolset.unavailable.is_empty() {
            metadata.insert(
                "unavailable_tools".into(),
                self.toolset.unavailable.clone().into(),
            );
        }
        Some(metadata)
    }

    fn execution(&self, generation: &Generation, error: Option<&ServiceError>) -> Execution {
        let mcp_used = matches!(self.workflow, Workflow::Tools | Workflow::Full)
            && !self.toolset.tools().is_empty();
        let hit = mcp_used && self.toolset.cache_hit;
        Execution {
            workflow: self.workflow.as_str().into(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            error_class: error.map(|e| error_class(e).to_owned()),
            tool_runs: generation
                .tool_runs
                .iter()
                .map(|r| (r.name.clone(), r.duration_ms, r.is_error))
                .collect(),
            cache_hits: u32::from(hit),
            cache_misses: u32::from(mcp_used && !hit),
        }
    }

    fn metrics(&self, generation: &Generation, error: Option<&ServiceError>) -> TurnMetrics {
        TurnMetrics {
            dialect: self.dialect,
            workflow: self.workflow,
            duration_ms: self.started.elapsed().as_millis() as u64,
            time_to_first_token_ms: generation
                .first_token
                .map(|at| at.duration_since(self.started).as_millis() as u64),
            prompt_tokens: generation.usage.prompt_tokens,
            completion_tokens: generation.usage.completion_tokens,
            cost: self.provider.cost(generation.usage),
            failure: error.map(|error| Failure {
                class: error_class(error),
                stage: Stage::Generation,
            }),
        }
    }

    /// Records the execution; statistics are worth a warning, never a failed turn.
    pub(super) async fn record(state: &AppState, user_id: &str, execution: Execution) {
        if let Err(e) = state.store.record_execution(user_id, &execution).await {
            tracing::warn!(error = ?e, "execution statistics not recorded");
        }
    }

    /// Stores the answer (when there is one) and records the execution, side by side.
    pub(super) async fn conclude(
        mut self,
        state: &AppState,
        generation: &Generation,
        finish_reason: FinishReason,
        error: Option<&ServiceError>,
    ) -> Option<ServiceResult<TurnOutcome>> {
        let execution = self.execution(generation, error);
        self.metrics(generation, error)
            .emit(&state.config.metrics_namespace);
        let user_id = self.record.conversation.user_id.clone();
        let (conversation_id, held) = (self.record.conversation.id.clone(), self.held);
        let answer = self.answer.clone();
        let title = self.title.take();
        let store = async {
            // A stopped answer is kept even empty: its readers learn that it was stopped.
            let stored =
                if generation.content.is_empty() && finish_reason != FinishReason::Cancelled {
                    discard_answer(state, &user_id, answer.as_ref()).await;
                    None
                } else {
                    Some(self.finish(state, generation, finish_reason).await)
                };
            // Without a stored answer, no usage replaces what the turn held.
            if !matches!(stored, Some(Ok(_))) {
                release_hold(state, &conversation_id, held).await;
            }
            stored
        };
        let title = async {
            match title {
                Some(pending) => pending.written().await,
                None => None,
            }
        };
        let (mut stored, (), title) =
            tokio::join!(store, Self::record(state, &user_id, execution), title);
        if let (Some(Ok(outcome)), Some(title)) = (&mut stored, title) {
            outcome.conversation.title = title;
        }
        stored
    }
}

/// Removes a streamed turn's empty answer when the turn ends without one; left behind, it
/// would read as a turn still running until its deadline passes.
pub(super) async fn discard_answer(state: &AppState, user_id: &str, answer: Option<&Message>) {
    let Some(answer) = answer else { return };
    if let Err(e) = state.store.discard_answer(user_id, answer).await {
        tracing::warn!(error = ?e, "empty streamed answer not removed");
    }
}

/// Lets go of a turn's quota hold; a hold left behind only counts until it expires.
pub(super) async fn release_hold(state: &AppState, conversation_id: &str, held: Option<QuotaHold>) {
    let Some(hold) = held else { return };
    if let Err(e) = state.store.release_quota_hold(conversation_id, hold).await {
        tracing::warn!(error = ?e, "quota hold not released");
    }
}
