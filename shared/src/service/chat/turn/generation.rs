//! The model rounds of a turn: each model call, the tools it asks for, and the events a
//! streaming turn reports as they happen.

use std::time::Instant;

use futures_util::StreamExt;

use super::deadline::Deadline;
use super::{Delivery, Turn};
use crate::AppState;
use crate::domain::{FinishReason, JsonObject, MessageDraft, MessageRole, Parent, Workflow};
use crate::error::ServiceError;
use crate::llm::{
    Completion, CompletionRequest, CompletionStream, PromptMessage, Provider, StreamEvent,
    ToolCall, Usage,
};
use crate::service::chat::events::TurnEvent;
use crate::service::chat::live::Listeners;
use crate::service::chat::prompt::estimated_usage;
use crate::tools::ToolRun;

const GENERATE_NODE: &str = "generate";
const TOOL_NODE: &str = "tool";
const RETRIEVE_NODE: &str = "retrieve";

/// The first model call of a turn, sent beside storing its question: the whole answer, or the
/// opened stream whose tokens wait (in the connection) until the question is stored.
pub(super) enum Opened {
    Answer(Result<Completion, ServiceError>),
    Stream(Result<CompletionStream, ServiceError>),
}

impl Opened {
    pub(super) async fn open(
        provider: &Provider,
        request: &CompletionRequest,
        delivery: Delivery,
        deadline: Deadline,
    ) -> Self {
        let late = || deadline.exceeded();
        match delivery {
            Delivery::Whole => Self::Answer(
                tokio::time::timeout_at(deadline.at, provider.client.complete(request))
                    .await
                    .map_or_else(|_| Err(late()), |c| c.map_err(ServiceError::from)),
            ),
            Delivery::Streamed => Self::Stream(
                tokio::time::timeout_at(deadline.at, provider.client.stream(request))
                    .await
                    .map_or_else(|_| Err(late()), |c| c.map_err(ServiceError::from)),
            ),
        }
    }
}

/// What one model call produced, and how it ended.
#[derive(Default)]
struct Round {
    content: String,
    tool_calls: Vec<ToolCall>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    first_token: Option<Instant>,
}

pub(super) enum RoundEnd {
    Complete,
    Failed(ServiceError),
}

/// Everything the workflow produced, and how it ended.
pub(super) struct Generation {
    pub(super) content: String,
    pub(super) usage: Usage,
    pub(super) finish_reason: FinishReason,
    pub(super) tool_runs: Vec<ToolRun>,
    pub(super) end: RoundEnd,
    pub(super) first_token: Option<Instant>,
}

pub(super) fn details(
    pairs: impl IntoIterator<Item = (&'static str, serde_json::Value)>,
) -> JsonObject {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// The start of a tool's output, for progress events; the model gets all of it.
fn summary(text: &str) -> String {
    const SUMMARY_CHARS: usize = 200;
    let mut summary: String = text.chars().take(SUMMARY_CHARS).collect();
    if text.chars().count() > SUMMARY_CHARS {
        summary.push_str("...");
    }
    summary
}

async fn emit(events: Option<&Listeners>, event: TurnEvent) {
    if let Some(events) = events {
        events.send(event).await;
    }
}

impl Turn {
    /// One model call. Streaming forwards each token as it arrives.
    async fn call_model(
        &mut self,
        request: &CompletionRequest,
        events: Option<&Listeners>,
        deadline: Deadline,
    ) -> (Round, RoundEnd) {
        let delivery = match events {
            Some(_) => Delivery::Streamed,
            None => Delivery::Whole,
        };
        // The first call was made as the turn began; one made for the other delivery (a
        // caller that asked for one and ran the other) is made again.
        let opened = match self.opened.take() {
            Some(opened) => opened,
            None => Opened::open(&self.provider, request, delivery, deadline).await,
        };
        let opened = match (opened, delivery) {
            (opened @ Opened::Answer(_), Delivery::Whole)
            | (opened @ Opened::Stream(_), Delivery::Streamed) => opened,
            _ => Opened::open(&self.provider, request, delivery, deadline).await,
        };
        let Some(events) = events else {
            let Opened::Answer(completion) = opened else {
                unreachable!("an answer was opened for a turn without events")
            };
            return match completion {
                Ok(c) => (
                    Round {
                        content: c.content,
                        tool_calls: c.tool_calls,
                        usage: c.usage,
                        finish_reason: c.finish_reason,
                        first_token: None,
                    },
                    RoundEnd::Complete,
                ),
                Err(e) => (Round::default(), RoundEnd::Failed(e)),
            };
        };
        let mut round = Round::default();
        let Opened::Stream(opened) = opened else {
            unreachable!("a stream was opened for a turn with events")
        };
        let mut chunks = match opened {
            Ok(chunks) => chunks,
            Err(e) => return (round, RoundEnd::Failed(e)),
        };
        loop {
            let Ok(next) = tokio::time::timeout_at(deadline.at, chunks.next()).await else {
                return (round, RoundEnd::Failed(deadline.exceeded()));
            };
            let Some(chunk) = next else { break };
            match chunk {
                Ok(StreamEvent::Delta(text)) => {
                    round.first_token.get_or_insert_with(Instant::now);
                    round.content.push_str(&text);
                    events.send(TurnEvent::Token(text)).await;
                }
                Ok(StreamEvent::ToolCalls(calls)) => round.tool_calls.extend(calls),
                Ok(StreamEvent::Finish(reason)) => round.finish_reason = Some(reason),
                Ok(StreamEvent::Usage(usage)) => round.usage = Some(usage),
                Err(e) => return (round, RoundEnd::Failed(e.into())),
            }
        }
        (round, RoundEnd::Complete)
    }

    /// The workflow: call the model; while it asks for tools (and the limit allows), run them
    /// in parallel, store each call and result, and call the model again with the results.
    pub(super) async fn generate(
        &mut self,
        state: &AppState,
        events: Option<&Listeners>,
        deadline: Deadline,
    ) -> Generation {
        if matches!(self.workflow, Workflow::Rag | Workflow::Full) {
            emit(
                events,
                TurnEvent::NodeStarted {
                    node: RETRIEVE_NODE,
                    details: JsonObject::new(),
                },
            )
            .await;
            emit(
                events,
                TurnEvent::NodeCompleted {
                    node: RETRIEVE_NODE,
                    duration_ms: self.retrieval_ms,
                    details: details([("sources", self.sources.len().into())]),
                },
            )
            .await;
        }
        let mut messages = self.request.messages.clone();
        let mut usage = Usage::default();
        let mut tool_runs = Vec::new();
        let mut calls_left = self.max_tool_calls;
        let mut first_token = None;
        loop {
            let request = round_request(&self.request, messages.clone(), calls_left);
            let node_started = Instant::now();
            emit(
                events,
                TurnEvent::NodeStarted {
                    node: GENERATE_NODE,
                    details: JsonObject::new(),
                },
            )
            .await;
            let (round, end) = self.call_model(&request, events, deadline).await;
            first_token = first_token.or(round.first_token);
            usage = usage
                + round
                    .usage
                    .unwrap_or_else(|| estimated_usage(&request, &round.content));
            let generation = |end| Generation {
                content: round.content.clone(),
                usage,
                finish_reason: round
                    .finish_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, FinishReason::from_provider),
                tool_runs: tool_runs.clone(),
                end,
                first_token,
            };
            if !matches!(end, RoundEnd::Complete) {
                return generation(end);
            }
            emit(
                events,
                TurnEvent::NodeCompleted {
                    node: GENERATE_NODE,
                    duration_ms: node_started.elapsed().as_millis() as u64,
                    details: JsonObject::new(),
                },
            )
            .await;
            // Past the limit the model was offered no tools; calls it makes anyway go unanswered.
            if round.tool_calls.is_empty() || calls_left == 0 {
                return generation(RoundEnd::Complete);
            }

            let calls: Vec<ToolCall> = round.tool_calls.iter().take(calls_left).cloned().collect();
            calls_left -= calls.len();
            for call in &calls {
                emit(
                    events,
                    TurnEvent::NodeStarted {
                        node: TOOL_NODE,
                        details: details([
                            ("tool", call.function.name.clone().into()),
                            ("arguments", call.function.arguments.clone().into()),
                        ]),
                    },
                )
                .await;
            }
            let runs = tokio::time::timeout_at(
                deadline.at,
                futures_util::future::join_all(
                    calls.iter().map(|call| self.toolset.run(&state.mcp, call)),
                ),
            )
            .await;
            let Ok(runs) = runs else {
                return generation(RoundEnd::Failed(deadline.exceeded()));
            };
            for run in &runs {
                emit(
                    events,
                    TurnEvent::NodeCompleted {
                        node: TOOL_NODE,
                        duration_ms: run.duration_ms,
                        details: details([
                            ("tool", run.name.clone().into()),
                            ("arguments", run.arguments.clone().into()),
                            ("result", summary(&run.output).into()),
                            ("is_error", run.is_error.into()),
                        ]),
                    },
                )
                .await;
            }
            // The first result follows the turn's own last message; the others follow it in turn.
            let mut after = Some((
                Parent::Message(self.answer_parent.clone()),
                self.answer_lineage.clone(),
            ));
            let drafts = runs.iter().map(|run| {
                let mut draft = MessageDraft::new(MessageRole::Tool, run.output.clone());
                if let Some((parent, lineage)) = after.take() {
                    draft.parent = Some(parent);
                    draft.lineage = lineage;
                }
                draft.metadata = Some(details([
                    ("tool_call_id", run.call_id.clone().into()),
                    ("tool", run.name.clone().into()),
                    ("arguments", run.arguments.clone().into()),
                    ("is_error", run.is_error.into()),
                    ("duration_ms", run.duration_ms.into()),
                ]));
                draft
            });
            match state
                .store
                .append_messages(self.record.clone(), drafts.collect())
                .await
            {
                Ok((record, stored)) => {
                    self.record = record;
                    if let Some(last) = stored.last() {
                        self.answer_parent.clone_from(&last.id);
                        self.answer_lineage = last.lineage_below();
                    }
                }
                Err(e) => return generation(RoundEnd::Failed(e.into())),
            }
            messages.push(PromptMessage::asking(round.content.clone(), calls));
            messages.extend(
                runs.iter()
                    .map(|run| PromptMessage::tool_result(&run.call_id, &run.output)),
            );
            tool_runs.extend(runs);
        }
    }

    /// What a stopped turn generated: the text its listeners were sent, its usage estimated.
    pub(super) fn stopped(&self, content: String) -> Generation {
        Generation {
            usage: estimated_usage(&self.request, &content),
            content,
            finish_reason: FinishReason::Cancelled,
            tool_runs: Vec::new(),
            end: RoundEnd::Complete,
            first_token: None,
        }
    }
}

/// The request of one model call of a turn, with the messages so far.
pub(super) fn round_request(
    turn: &CompletionRequest,
    messages: Vec<PromptMessage>,
    calls_left: usize,
) -> CompletionRequest {
    CompletionRequest {
        messages,
        // Once the limit is reached the model gets no tools, so it has to answer.
        tools: if calls_left > 0 {
            turn.tools.clone()
        } else {
            Vec::new()
        },
        ..turn.clone()
    }
}
