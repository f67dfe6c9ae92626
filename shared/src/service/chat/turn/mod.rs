//! One exchange with the model, from the user's message to the stored answer: `begin`
//! prepares it (its reads, its prompt, its question stored beside the first model call), then
//! `run` or `stream` generates the answer and concludes the turn.

mod deadline;
mod generation;
mod outcome;
mod prepare;
mod question;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use self::deadline::Deadline;
pub use self::deadline::Delivery;
use self::generation::{Opened, RoundEnd};
use self::outcome::error_class;
pub use self::prepare::within_rate_limit;
pub use self::question::beside_the_question;
use super::branching::Branching;
use super::events::{TurnEvent, TurnOutcome};
use super::live::{self, Listeners};
use super::templates::Template;
use super::titles::PendingTitle;
use crate::AppState;
use crate::documents::Source;
use crate::domain::{
    FinishReason, JsonObject, Lineage, Message, QuotaHold, StoredQuestion, Workflow,
};
use crate::error::{ServiceError, ServiceResult, UpstreamFailure};
use crate::llm::{CompletionRequest, Provider};
use crate::metrics::{Dialect, TurnMetrics};
use crate::service::sessions::{self, SessionTurn};
use crate::store::{ConversationRecord, Execution, PendingCount};
use crate::tools::Toolset;

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
    /// Kept with the stored user message (FreeChat's debug view shows it).
    pub user_metadata: Option<JsonObject>,
    /// Most tool calls the turn may make (`workflow_config.max_tool_calls`).
    pub max_tool_calls: Option<u32>,
    /// Retrieval on or off for this turn; `None` follows the conversation.
    pub enable_retrieval: Option<bool>,
    /// Retrieve only from these of the caller's documents.
    pub document_ids: Option<Vec<String>>,
    /// A turn in a FreeChat chat its caller already admitted (and loaded); a Chatter turn
    /// in a chat is admitted by the same rules when it finds itself in one.
    pub session: Option<SessionTurn>,
    /// The question an earlier try of this same request stored before it failed: answered
    /// where it is (if it is still the conversation's newest message) instead of again.
    pub resume: Option<StoredQuestion>,
    /// The API the turn was asked through, for its metrics.
    pub dialect: Dialect,
    /// Whether the answer is awaited whole or streamed: the first model call is made as the
    /// turn begins, beside storing the question.
    pub delivery: Delivery,
    /// The request's rate-limit count, still running: awaited beside the turn's reads, before
    /// anything is written or the model is called. `None`: counted already.
    pub count: Option<PendingCount>,
    /// Where the turn's question goes in the conversation's tree.
    pub branching: Branching,
}

/// A turn whose user message is stored and whose prompt is ready.
pub struct Turn {
    pub record: ConversationRecord,
    pub user_message: Message,
    /// A streamed turn's answer, stored (empty, streaming) beside its question.
    answer: Option<Message>,
    /// The message the answer follows: the question, or the last tool result stored after it
    /// (a regenerated answer follows what the answer it replaces followed). Each turn keeps
    /// its own, so that parallel turns on one leaf never answer each other's questions.
    answer_parent: String,
    /// What the answer carries as its lineage, from its parent.
    answer_lineage: Option<Lineage>,
    /// The answer's siblings already stored when the turn read its conversation.
    siblings: Vec<String>,
    pub provider: Arc<Provider>,
    pub request: CompletionRequest,
    workflow: Workflow,
    toolset: Toolset,
    max_tool_calls: usize,
    /// What retrieval found, cited by number in the prompt.
    sources: Vec<Source>,
    retrieval_ms: u64,
    started: Instant,
    /// What the turn holds of its chat's quota until its answer is stored.
    held: Option<QuotaHold>,
    dialect: Dialect,
    /// The title being written for the conversation this turn started.
    title: Option<PendingTitle>,
    /// The first model call, made while the question was being stored.
    opened: Option<Opened>,
}

impl Turn {
    /// Resolves the conversation and provider, stores the user's message, then runs retrieval
    /// and tool discovery and builds the prompt.
    ///
    /// The clock starts here, so that the execution time in the statistics and the answer's
    /// `response_time_ms` include retrieval and discovery. A failure that is not the client's
    /// (storage, retrieval, the turn's deadline) is still counted in the statistics.
    pub async fn begin(state: &AppState, user_id: &str, input: ChatInput) -> ServiceResult<Self> {
        let started = Instant::now();
        let mut workflow = input
            .workflow
            .or(input.template.map(|t| t.workflow))
            .unwrap_or(Workflow::Plain);
        let dialect = input.dialect;
        // A Chatter turn may find itself in a chat, whose snapshot its question checks; a
        // FreeChat send runs itself again, with what its chat says.
        let again = input.session.is_none().then(|| input.clone());
        let first = Box::pin(Self::prepare(state, user_id, input, started, &mut workflow));
        let result = match (first.await, again) {
            // The chat's character or backend changed since its snapshot: the model request
            // is dropped already, and the turn runs again on a fresh snapshot.
            (Err(ServiceError::ChatChanged), Some(again)) => {
                let resumed = again.resume.as_ref().map(|q| q.conversation_id.clone());
                let chat_id = again.conversation_id.clone().or(resumed);
                async {
                    sessions::refresh(state, user_id, &chat_id.unwrap_or_default()).await?;
                    Box::pin(Self::prepare(state, user_id, again, started, &mut workflow)).await
                }
                .await
            }
            (result, _) => result,
        };
        if let Err(error) = &result
            && error.class().is_service_side()
        {
            let duration_ms = started.elapsed().as_millis() as u64;
            TurnMetrics::failed_early(dialect, workflow, duration_ms, error_class(error))
                .emit(&state.config.metrics_namespace);
            let execution = Execution {
                workflow: workflow.as_str().into(),
                duration_ms,
                error_class: Some(error_class(error).to_owned()),
                ..Default::default()
            };
            Self::record(state, user_id, execution).await;
        }
        result
    }

    /// Where this turn's question is stored.
    pub fn question(&self) -> StoredQuestion {
        StoredQuestion {
            conversation_id: self.record.conversation.id.clone(),
            message_id: self.user_message.id.clone(),
        }
    }

    /// Runs the turn without streaming. On a model failure the user's message stays stored,
    /// and the error says where.
    pub async fn run(mut self, state: &AppState) -> ServiceResult<TurnOutcome> {
        let question = self.question();
        let deadline = Deadline::of(state, self.started, Delivery::Whole);
        let mut generation = self.generate(state, None, deadline).await;
        let error = match std::mem::replace(&mut generation.end, RoundEnd::Complete) {
            RoundEnd::Failed(e) => Some(e),
            _ if generation.content.is_empty() => Some(empty_answer()),
            _ => None,
        };
        match error {
            Some(error) => {
                // Whatever was generated stays stored, marked as cut short by the failure
                // (as a stream stores it); the client still gets the error.
                self.conclude(state, &generation, FinishReason::Error, Some(&error))
                    .await;
                Err(error.after_question(question))
            }
            None => {
                let reason = generation.finish_reason;
                self.conclude(state, &generation, reason, None)
                    .await
                    .unwrap_or_else(|| Err(empty_answer()))
                    .map_err(|error| error.after_question(question))
            }
        }
    }

    /// Runs the turn as a stream of events. A client that goes away stops hearing the turn,
    /// not the turn: its answer is generated to the end and stored (`"stop"`). Meanwhile the
    /// answer is checkpointed, and a stop requested through the store drops the model's
    /// request and stores what was generated as `"cancelled"`. A model that fails mid-answer
    /// leaves what came before stored as `"error"`.
    pub async fn stream(mut self, state: AppState, events: mpsc::Sender<TurnEvent>) {
        let deadline = Deadline::of(&state, self.started, Delivery::Streamed);
        let (listeners, transcript) = Listeners::new(events);
        let stopped = live::until_stopped(&state.store, self.answer.clone(), transcript);
        let generated = tokio::select! {
            generation = self.generate(&state, Some(&listeners), deadline) => Some(generation),
            () = stopped => None,
        };
        let mut generation = generated.unwrap_or_else(|| self.stopped(listeners.text()));
        let (reason, error) = match std::mem::replace(&mut generation.end, RoundEnd::Complete) {
            RoundEnd::Failed(e) => (FinishReason::Error, Some(e)),
            RoundEnd::Complete
                if generation.content.is_empty()
                    && generation.finish_reason != FinishReason::Cancelled =>
            {
                (generation.finish_reason, Some(empty_answer()))
            }
            RoundEnd::Complete => (generation.finish_reason, None),
        };
        let stored = self
            .conclude(&state, &generation, reason, error.as_ref())
            .await;
        let last = match (error, stored) {
            (Some(error), _) | (None, Some(Err(error))) => TurnEvent::Failed(Box::new(error)),
            (None, Some(Ok(outcome))) => TurnEvent::Finished(Box::new(outcome)),
            (None, None) => TurnEvent::Failed(Box::new(empty_answer())),
        };
        listeners.send(last).await;
    }

    /// The id of a streamed turn's answer, stored as the turn began.
    pub fn answer_id(&self) -> Option<&str> {
        self.answer.as_ref().map(|answer| answer.id.as_str())
    }
}

fn empty_answer() -> ServiceError {
    ServiceError::Upstream {
        failure: UpstreamFailure::Failed,
        detail: "The model returned an empty answer.".into(),
    }
}
