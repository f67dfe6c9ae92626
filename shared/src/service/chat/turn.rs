//! One exchange with the model, from the user's message to the stored answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::branching::{Branching, Placed};
use super::live::{self, Listeners};
use super::prompt::{self, estimated_usage};
use super::templates::Template;
use super::titles::PendingTitle;
use crate::AppState;
use crate::documents::{self, RetrievalQuery, Source};
use crate::domain::{
    ChatSnapshot, Conversation, FinishReason, JsonObject, Message, MessageDraft, MessageRole,
    NewConversation, Parent, Placement, QuotaClaim, QuotaHold, StoredQuestion, Tree, Workflow,
};
use crate::error::{ApiResult, ServiceError, UpstreamFailure};
use crate::llm::{
    Completion, CompletionRequest, CompletionStream, PromptMessage, Provider, StreamEvent,
    ToolCall, Usage,
};
use crate::metrics::{Dialect, Failure, Stage, TurnMetrics};
use crate::service::sessions::{self, SessionTurn};
use crate::store::{
    AnswerPlace, ChatRecord, ConversationRecord, Execution, PendingCount, QuotaChange, StoreError,
};
use crate::tools::{ToolRun, Toolset};

/// How many earlier messages a prompt carries at most when neither its chat nor its
/// template says.
const HISTORY_FETCH: usize = 100;
const TITLE_CHARS: usize = 50;
const GENERATE_NODE: &str = "generate";
const TOOL_NODE: &str = "tool";
const RETRIEVE_NODE: &str = "retrieve";
/// How much longer than the longest turn a quota hold counts.
const QUOTA_HOLD_MARGIN_SECS: u64 = 60;
/// Tool calls a turn may make when neither the request nor its template says.
const DEFAULT_MAX_TOOL_CALLS: u32 = 10;

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

/// The first model call of a turn, sent beside storing its question: the whole answer, or the
/// opened stream whose tokens wait (in the connection) until the question is stored.
enum Opened {
    Answer(Result<Completion, ServiceError>),
    Stream(Result<CompletionStream, ServiceError>),
}

impl Opened {
    async fn open(
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

/// Waits for the request's rate-limit count, if it is still running: over a limit, the
/// turn ends with the 429 before it writes anything or calls the model.
pub async fn within_rate_limit(count: Option<&PendingCount>) -> ApiResult<()> {
    let Some(count) = count else { return Ok(()) };
    match count.status().await?.retry_after_secs {
        Some(retry_after_secs) => Err(ServiceError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}

/// Where a turn's question goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A conversation the turn creates with it.
    NewConversation,
    Existing,
}

/// What storing a turn's question leaves: the conversation as written, the stored question
/// (and a streamed turn's answer), and the quota the turn holds.
struct StoredQuestionOf {
    record: ConversationRecord,
    question: Message,
    answer: Option<Message>,
    held: Option<QuotaHold>,
}

/// Stores the turn's question, and a streamed turn's empty answer after it: in a new
/// conversation (one transaction with it), or appended to its conversation with the quota it
/// claims and, in a chat, checking that the chat's character and backend are still as the
/// turn used them. A question asked before, by a try that failed, is already stored and holds
/// no quota any more.
async fn store_question(
    state: &AppState,
    (record, place): (ConversationRecord, Place),
    (question, answer): (MessageDraft, Option<MessageDraft>),
    (claim, snapshot): (Option<QuotaClaim>, Option<ChatSnapshot>),
    asked: Option<Message>,
) -> ApiResult<StoredQuestionOf> {
    if let Some(question) = asked {
        let (record, answer) = match answer {
            Some(answer) => {
                let (record, mut stored) =
                    state.store.append_messages(record, vec![answer]).await?;
                (record, stored.pop())
            }
            None => (record, None),
        };
        return Ok(StoredQuestionOf {
            record,
            question,
            answer,
            held: None,
        });
    }
    let held = claim.as_ref().map(|c| c.hold);
    let drafts = std::iter::once(question).chain(answer).collect();
    let (record, mut stored) = if place == Place::NewConversation {
        state.store.create_conversation_with(record, drafts).await?
    } else {
        let quota = claim.map_or(QuotaChange::None, QuotaChange::Claim);
        state
            .store
            .append_checked(record, drafts, &quota, snapshot.as_ref())
            .await?
    };
    let question = stored.remove(0);
    Ok(StoredQuestionOf {
        record,
        question,
        answer: stored.pop(),
        held,
    })
}

/// Runs `work` (retrieval, the prompt, the first model call) beside `storing` the question
/// (or another step the model's answer must wait for). The store always runs to its end;
/// when it fails, `work` is dropped at once (an open model request is cancelled, so the
/// provider stops) and the store's error is the turn's.
pub async fn beside_the_question<S, W>(
    storing: impl Future<Output = ApiResult<S>>,
    work: impl Future<Output = W>,
) -> ApiResult<(S, W)> {
    tokio::pin!(storing, work);
    tokio::select! {
        stored = &mut storing => {
            let stored = stored?;
            Ok((stored, work.await))
        }
        done = &mut work => Ok((storing.await?, done)),
    }
}

/// The stored answer of a finished turn.
pub struct TurnOutcome {
    pub conversation: Conversation,
    pub message: Message,
    /// Where the answer sits in its conversation's tree.
    pub placement: Placement,
    pub usage: Usage,
    pub cost: f64,
}

/// What a streaming turn reports, in order, to whichever dialect frames it. Each model call
/// and each tool run is a node, announced when it starts and when it completes.
#[derive(Debug)]
pub enum TurnEvent {
    NodeStarted {
        node: &'static str,
        details: JsonObject,
    },
    Token(String),
    NodeCompleted {
        node: &'static str,
        duration_ms: u64,
        details: JsonObject,
    },
    Finished(Box<TurnOutcome>),
    Failed(Box<ServiceError>),
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

/// What one model call produced, and how it ended.
#[derive(Default)]
struct Round {
    content: String,
    tool_calls: Vec<ToolCall>,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    first_token: Option<Instant>,
}

enum RoundEnd {
    Complete,
    Failed(ServiceError),
}

/// Everything the workflow produced, and how it ended.
struct Generation {
    content: String,
    usage: Usage,
    finish_reason: FinishReason,
    tool_runs: Vec<ToolRun>,
    end: RoundEnd,
    first_token: Option<Instant>,
}

fn details(pairs: impl IntoIterator<Item = (&'static str, serde_json::Value)>) -> JsonObject {
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

/// The class under which a failed execution is counted.
fn error_class(error: &ServiceError) -> &'static str {
    error.class().as_str()
}

async fn emit(events: Option<&Listeners>, event: TurnEvent) {
    if let Some(events) = events {
        events.send(event).await;
    }
}

impl Turn {
    /// Resolves the conversation and provider, stores the user's message, then runs retrieval
    /// and tool discovery and builds the prompt.
    ///
    /// The clock starts here, so that the execution time in the statistics and the answer's
    /// `response_time_ms` include retrieval and discovery. A failure that is not the client's
    /// (storage, retrieval, the turn's deadline) is still counted in the statistics.
    pub async fn begin(state: &AppState, user_id: &str, input: ChatInput) -> ApiResult<Self> {
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

    async fn prepare(
        state: &AppState,
        user_id: &str,
        mut input: ChatInput,
        started: Instant,
        workflow: &mut Workflow,
    ) -> ApiResult<Self> {
        let template = input.template;
        let session = input.session.take();
        let target = session
            .as_ref()
            .map(|s| s.chat.id().to_owned())
            .or(input.conversation_id.clone());
        let resumed = input.resume.take().filter(|question| {
            target
                .as_ref()
                .is_none_or(|id| *id == question.conversation_id)
        });
        let target = target.or(resumed.as_ref().map(|q| q.conversation_id.clone()));
        // The rate-limit count and the reads the prompt needs go out together: one DynamoDB
        // step before the question is stored and the model called, side by side. Every
        // message of the conversation is read (one query, as before branches), and the path
        // the prompt carries is walked in memory, however many branches there are.
        let admitted = within_rate_limit(input.count.as_ref());
        let reads =
            async {
                Ok::<_, ServiceError>(match (session, &target) {
                    (Some(mut session), _) => {
                        let messages = match session.messages.take() {
                            Some(messages) => messages,
                            None => state.store.all_messages(&session.chat).await?,
                        };
                        (
                            session.chat.record.clone(),
                            Tree::new(messages),
                            Some(session),
                        )
                    }
                    (None, Some(id)) => {
                        let (record, tree) =
                            state.store.conversation_tree(user_id, id).await.map_err(
                                |e| match e {
                                    StoreError::NotFound => {
                                        ServiceError::NotFound("Conversation not found.".into())
                                    }
                                    other => other.into(),
                                },
                            )?;
                        (record, tree, None)
                    }
                    (None, None) => (
                        ConversationRecord::new(Conversation::create(
                            user_id,
                            NewConversation {
                                title: title_from(&input.message),
                                llm_provider: input.provider.clone(),
                                ..Default::default()
                            },
                        )),
                        Tree::default(),
                        None,
                    ),
                })
            };
        let (admitted, reads) = tokio::join!(admitted, reads);
        admitted?;
        let (record, tree, mut session) = reads?;
        let place = match target {
            None => Place::NewConversation,
            Some(_) => Place::Existing,
        };
        let Placed {
            parent,
            history,
            asked,
            answer_after,
        } = Placed::in_tree(
            &tree,
            record.conversation.active_message_id.as_deref(),
            &input.branching,
            resumed,
        )?;
        if let Some(question) = &asked {
            input.message.clone_from(&question.content);
        }
        let siblings = answer_after
            .as_deref()
            .map(|parent| tree.child_ids(Some(parent)))
            .unwrap_or_default();
        if let Some(chat_session) = record.session.clone()
            && session.is_none()
        {
            // A Chatter turn may not skip what FreeChat's send enforces on the same chat.
            let chat = ChatRecord {
                record: record.clone(),
                session: chat_session,
            };
            session = Some(sessions::ready(state, user_id, chat).await?.turn());
        }
        let history_limit = session.as_ref().map(|s| s.history_window);
        let (quota, snapshot) = session.map(|s| (s.backend, s.snapshot)).unzip();
        let conversation = &record.conversation;
        let retrieval = input
            .enable_retrieval
            .unwrap_or(conversation.enable_retrieval);
        *workflow = match (*workflow, retrieval) {
            (Workflow::Plain, true) => Workflow::Rag,
            (Workflow::Tools, true) => Workflow::Full,
            (workflow, _) => workflow,
        };
        let workflow = *workflow;
        let provider_name = input
            .provider
            .as_deref()
            .or(conversation.llm_provider.as_deref());
        let provider = state.llm.get(provider_name).ok_or_else(|| {
            ServiceError::invalid(
                ["body".into(), "provider".into()],
                format!("Unknown provider '{}'.", provider_name.unwrap_or_default()),
                "unknown_provider",
            )
        })?;
        // The conversation's model belongs to the conversation's provider (the default one
        // when it names none); a request that picks another provider gets that one's model.
        let conversation_provider = state
            .llm
            .get(conversation.llm_provider.as_deref())
            .map(|p| p.name.clone());
        let model = conversation
            .llm_model
            .clone()
            .filter(|_| conversation_provider.as_deref() == Some(provider.name.as_str()))
            .unwrap_or_else(|| provider.config.default_model.clone());
        let system_prompt = input
            .system_prompt_override
            .clone()
            .or_else(|| conversation.system_prompt.clone())
            .or_else(|| template.map(|t| t.system_message.to_owned()));
        let budget = input.context_limit.unwrap_or(conversation.context_window) as usize;
        let memory = if conversation.memory_enabled {
            history_limit
                .or(template.map(|t| t.memory_window as usize))
                .unwrap_or(HISTORY_FETCH)
        } else {
            0
        };
        let temperature = input
            .temperature
            .or(conversation.temperature)
            .or(template.map(|t| t.temperature));
        let max_tokens = input
            .max_tokens
            .or(conversation.max_tokens)
            .or(template.and_then(|t| t.max_tokens));
        let retrieval_limit = template
            .and_then(|t| t.max_documents)
            .unwrap_or(conversation.retrieval_limit) as usize;
        let score_threshold = conversation.retrieval_score_threshold;
        let max_tool_calls = input
            .max_tool_calls
            .or(template.and_then(|t| t.max_tool_calls))
            .unwrap_or(DEFAULT_MAX_TOOL_CALLS) as usize;

        // The question's store runs to its end whatever retrieval, discovery or the model do:
        // neither an embedding provider nor an MCP server that fails may lose it.
        let message = input.message;
        let mut user = MessageDraft::new(MessageRole::User, message.clone()).after(parent);
        user.metadata = input.user_metadata;
        // The answer follows its question: the one stored with it, or one stored before (a
        // regenerated answer follows what the answer it replaces followed).
        let answer = (input.delivery == Delivery::Streamed).then(|| {
            let draft = MessageDraft::streaming_answer();
            match (&answer_after, &asked) {
                (Some(parent), _) => draft.after(Parent::Message(parent.clone())),
                (None, Some(question)) => draft.after(Parent::Message(question.id.clone())),
                (None, None) => draft,
            }
        });
        // A hold outlives the longest turn, so that it counts for as long as its turn runs.
        let claim = quota.as_ref().and_then(|quota| {
            let expires_at = crate::domain::now()
                + turn_timeout(state, Delivery::Streamed)
                + Duration::from_secs(QUOTA_HOLD_MARGIN_SECS);
            QuotaClaim::of(quota, prompt::estimate_tokens(&message) as u64, expires_at)
        });
        let deadline = Deadline::of(state, started, input.delivery);
        let title_model = model.clone();
        // A claim on a chat's quota was admitted by the chat's usage as read; parallel sends
        // race in the store, beside their model calls. A turn whose claim the store refuses
        // has started a model request and drops it at once (its 429 is today's), the price
        // of not waiting for the claim before asking the model.
        let storing = async {
            let stored = store_question(
                state,
                (record, place),
                (user, answer),
                (claim, snapshot),
                asked,
            )
            .await?;
            // Written beside the answer, from the question the new conversation starts with.
            let title = (place == Place::NewConversation)
                .then(|| {
                    let conversation = &stored.record.conversation;
                    PendingTitle::start(state, &provider, &title_model, conversation, &message)
                })
                .flatten();
            Ok((stored, title))
        };
        // Retrieval and tool discovery need no stored question, and the model needs only the
        // prompt: all of it goes out while the question is being stored.
        let preparing = async {
            let discovery = async {
                if matches!(workflow, Workflow::Tools | Workflow::Full) {
                    let discovered = Toolset::discover(&state.mcp).await;
                    match template.filter(|t| !t.required_tools.is_empty()) {
                        Some(t) => discovered.only(t.required_tools),
                        None => discovered,
                    }
                } else {
                    Toolset::default()
                }
            };
            let retrieval_started = Instant::now();
            let retrieval = async {
                if matches!(workflow, Workflow::Rag | Workflow::Full) {
                    documents::retrieve(
                        state,
                        RetrievalQuery {
                            user_id,
                            query: &message,
                            limit: retrieval_limit,
                            score_threshold,
                            document_ids: input.document_ids.as_deref(),
                        },
                    )
                    .await
                } else {
                    Ok(Vec::new())
                }
            };
            let (toolset, sources, retrieval_ms) = tokio::time::timeout_at(
                (started + turn_timeout(state, Delivery::Whole)).into(),
                async {
                    tokio::join!(discovery, async {
                        let sources = retrieval.await;
                        (sources, retrieval_started.elapsed().as_millis() as u64)
                    })
                },
            )
            .await
            .map_err(|_| deadline_exceeded(turn_timeout(state, Delivery::Whole)))
            .and_then(|(toolset, (sources, ms))| Ok((toolset, sources?, ms)))?;
            let system = if matches!(workflow, Workflow::Rag | Workflow::Full) {
                Some(prompt::with_sources(system_prompt.as_deref(), &sources))
            } else {
                system_prompt
            };
            let request = CompletionRequest {
                model,
                messages: prompt::build(system.as_deref(), &history, memory, &message, budget),
                temperature,
                max_tokens,
                tools: toolset.specs(),
            };
            let opened = Opened::open(
                &provider,
                &round_request(&request, request.messages.clone(), max_tool_calls),
                input.delivery,
                deadline,
            )
            .await;
            Ok::<_, ServiceError>((toolset, sources, retrieval_ms, request, opened))
        };
        // Boxed: the two together would make the handler's future too large for a thread's stack.
        let (stored, prepared) =
            beside_the_question(Box::pin(storing), Box::pin(preparing)).await?;
        let (
            StoredQuestionOf {
                record,
                question: user_message,
                answer,
                held,
            },
            title,
        ) = stored;
        let (toolset, sources, retrieval_ms, request, opened) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                let question = StoredQuestion {
                    conversation_id: record.conversation.id.clone(),
                    message_id: user_message.id.clone(),
                };
                release_hold(state, &record.conversation.id, held).await;
                let user_id = &record.conversation.user_id;
                discard_answer(state, user_id, answer.as_ref()).await;
                return Err(error.after_question(question));
            }
        };
        Ok(Self {
            record,
            answer_parent: answer_after.unwrap_or_else(|| user_message.id.clone()),
            siblings,
            user_message,
            answer,
            provider,
            request,
            workflow,
            toolset,
            max_tool_calls,
            sources,
            retrieval_ms,
            started,
            held,
            dialect: input.dialect,
            opened: Some(opened),
            title,
        })
    }

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
    async fn generate(
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
            let mut after = Some(Parent::Message(self.answer_parent.clone()));
            let drafts = runs.iter().map(|run| {
                let mut draft = MessageDraft::new(MessageRole::Tool, run.output.clone());
                draft.parent = after.take();
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

    /// Stores the answer with its usage and cost, and records the execution.
    async fn finish(
        self,
        state: &AppState,
        generation: &Generation,
        finish_reason: FinishReason,
    ) -> ApiResult<TurnOutcome> {
        let usage = generation.usage;
        let cost = self.provider.cost(usage);
        let mut draft = MessageDraft::new(MessageRole::Assistant, generation.content.clone())
            .after(Parent::Message(self.answer_parent.clone()));
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
    async fn record(state: &AppState, user_id: &str, execution: Execution) {
        if let Err(e) = state.store.record_execution(user_id, &execution).await {
            tracing::warn!(error = ?e, "execution statistics not recorded");
        }
    }

    /// Stores the answer (when there is one) and records the execution, side by side.
    async fn conclude(
        mut self,
        state: &AppState,
        generation: &Generation,
        finish_reason: FinishReason,
        error: Option<&ServiceError>,
    ) -> Option<ApiResult<TurnOutcome>> {
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

    /// Where this turn's question is stored.
    pub fn question(&self) -> StoredQuestion {
        StoredQuestion {
            conversation_id: self.record.conversation.id.clone(),
            message_id: self.user_message.id.clone(),
        }
    }

    /// Runs the turn without streaming. On a model failure the user's message stays stored,
    /// and the error says where.
    pub async fn run(mut self, state: &AppState) -> ApiResult<TurnOutcome> {
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

    /// What a stopped turn generated: the text its listeners were sent, its usage estimated.
    fn stopped(&self, content: String) -> Generation {
        Generation {
            usage: estimated_usage(&self.request, &content),
            content,
            finish_reason: FinishReason::Cancelled,
            tool_runs: Vec::new(),
            end: RoundEnd::Complete,
            first_token: None,
        }
    }

    /// The id of a streamed turn's answer, stored as the turn began.
    pub fn answer_id(&self) -> Option<&str> {
        self.answer.as_ref().map(|answer| answer.id.as_str())
    }
}

/// Removes a streamed turn's empty answer when the turn ends without one; left behind, it
/// would read as a turn still running until its deadline passes.
async fn discard_answer(state: &AppState, user_id: &str, answer: Option<&Message>) {
    let Some(answer) = answer else { return };
    if let Err(e) = state.store.discard_answer(user_id, answer).await {
        tracing::warn!(error = ?e, "empty streamed answer not removed");
    }
}

/// Lets go of a turn's quota hold; a hold left behind only counts until it expires.
async fn release_hold(state: &AppState, conversation_id: &str, held: Option<QuotaHold>) {
    let Some(hold) = held else { return };
    if let Err(e) = state.store.release_quota_hold(conversation_id, hold).await {
        tracing::warn!(error = ?e, "quota hold not released");
    }
}

/// The request of one model call of a turn, with the messages so far.
fn round_request(
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

/// When a turn must have ended: before the function's own timeout, so that the client gets a
/// clean error and what was said is stored.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    limit: Duration,
}

impl Deadline {
    fn of(state: &AppState, started: Instant, delivery: Delivery) -> Self {
        let limit = turn_timeout(state, delivery);
        Self {
            at: (started + limit).into(),
            limit,
        }
    }

    fn exceeded(self) -> ServiceError {
        deadline_exceeded(self.limit)
    }
}

/// How the answer reaches the client, which decides how long a turn may take and how its
/// first model call, made beside storing the question, is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    #[default]
    /// In one response, which must come before the gateway cuts the request.
    Whole,
    /// As a stream, which may run until the streaming function's timeout.
    Streamed,
}

fn turn_timeout(state: &AppState, delivery: Delivery) -> Duration {
    match delivery {
        Delivery::Whole => state.config.llm.turn_timeout,
        Delivery::Streamed => state.config.llm.stream_turn_timeout,
    }
}

fn deadline_exceeded(limit: Duration) -> ServiceError {
    ServiceError::Upstream {
        failure: UpstreamFailure::TimedOut,
        detail: format!(
            "The answer took longer than the {} s a turn may take and was stopped.",
            limit.as_secs()
        ),
    }
}

fn empty_answer() -> ServiceError {
    ServiceError::Upstream {
        failure: UpstreamFailure::Failed,
        detail: "The model returned an empty answer.".into(),
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
