//! Talking in a chat: `/send/{chatId}` and its stream go through the chat turn every dialect
//! shares; `/send/assistant/...` asks another character for the user's next message, and
//! stores nothing.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use tracing::Instrument;

use super::{ChatMessageDto, FreePath, LlmResultDto, METADATA_KEY, TurnMetadata, spring_statuses};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{FinishReason, JsonObject, MAX_MESSAGE_CHARS, StoredQuestion};
use crate::error::ApiResult;
use crate::http::extract::{ApiJson, Resumed};
use crate::http::idempotency::StreamOutcome;
use crate::http::problem::{self, Problem};
use crate::http::sse;
use crate::http::validate::Violations;
use crate::llm::{CompletionRequest, CompletionStream, StreamEvent, Usage, estimated_usage};
use crate::metrics::Dialect;
use crate::service::assistant::assistant_request;
use crate::service::chat::{ChatInput, Delivery, Turn, TurnEvent, within_rate_limit};
use crate::service::sessions::{ReadyChat, SessionTurn, chat_settings, ready_chat, session_prompt};
use crate::store::PendingCount;

const MAX_NAME_CHARS: usize = 100;
const MAX_CONTEXT_CHARS: usize = 32_000;
/// Request/response routes, served by the sessions function.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/chat/send/{chatId}", post(send_message))
        .route(
            "/api/v1/chat/send/assistant/{chatId}/{assistantUid}",
            get(send_assistant),
        )
}

/// Streaming routes, served by the streaming function.
pub fn streaming_routes() -> Router<AppState> {
    let routes = Router::new()
        .route(
            "/api/v1/chat/send/stream/{chatId}",
            post(stream_send_message),
        )
        .route(
            "/api/v1/chat/send/stream/assistant/{chatId}/{assistantUid}",
            get(stream_send_assistant),
        );
    spring_statuses(routes)
}

/// What the user said, validated.
struct Said {
    text: String,
    name: Option<String>,
    context: Option<String>,
}

impl ChatMessageDto {
    /// The user's text: `contentText`, else the text parts of `contents`, one a line.
    fn said(self) -> ApiResult<Said> {
        let mut v = Violations::new();
        v.check(
            self.role
                .as_deref()
                .is_none_or(|r| r.eq_ignore_ascii_case("user")),
            &["body", "role"],
            "Only user messages can be sent.",
            "value_error",
        );
        let contents = self.contents.unwrap_or_default();
        v.check(
            contents
                .iter()
                .all(|c| c.kind.as_deref().is_none_or(|k| k == "text")),
            &["body", "contents"],
            "Only text contents are supported.",
            "value_error",
        );
        let text = match self.content_text.filter(|t| !t.trim().is_empty()) {
            Some(text) => text,
            None => contents
                .into_iter()
                .map(|c| c.content)
                .collect::<Vec<_>>()
                .join("\n"),
        };
        v.length(
            Some(text.trim()),
            1,
            MAX_MESSAGE_CHARS,
            &["body", "contents"],
        );
        v.length(self.name.as_deref(), 0, MAX_NAME_CHARS, &["body", "name"]);
        v.length(
            self.context.as_deref(),
            0,
            MAX_CONTEXT_CHARS,
            &["body", "context"],
        );
        v.finish()?;
        Ok(Said {
            text,
            name: self.name,
            context: self.context.filter(|c| !c.trim().is_empty()),
        })
    }
}

/// Stores the user's message and prepares the model call: the character's system prompt
/// (with this message's context), the last `messageWindowSize` messages counting this one,
/// the backend's model.
async fn begin_turn(
    state: &AppState,
    user_id: &str,
    chat_id: &str,
    body: ChatMessageDto,
    delivery: Delivery,
    (resume, count): Resumed,
) -> ApiResult<Turn> {
    let said = body.said()?;
    // The rate-limit count and the chat's messages go out with the chat's reads (its item,
    // then its character): the turn walks the active branch among them in memory.
    let (admitted, ready, messages) = tokio::join!(
        within_rate_limit(count.as_ref().map(|Extension(count)| count)),
        ready_chat(state, user_id, chat_id),
        state.store.messages_in(chat_id)
    );
    admitted?;
    let mut ready = ready?;
    let messages = messages?;
    let ReadyChat {
        chat,
        character,
        backend,
    } = &mut ready;
    // The conversation keeps the character's prompt and the backend's model, so that a
    // Chatter turn in it speaks the same way; they follow edits of either.
    let settings = chat_settings(state, character, backend, &chat.session)?;
    if settings.differ_from(chat.conversation()) {
        state
            .store
            .save_chat(chat, &chat.session, &settings)
            .await?;
        settings.apply_to(&mut chat.record.conversation);
    }
    let system_prompt = session_prompt(character, &chat.session, said.context.as_deref());
    let metadata = TurnMetadata {
        name: said.name,
        context: said.context,
        system_prompt: character
            .is_owned_by(user_id)
            .then(|| system_prompt.clone()),
    };
    let user_metadata = JsonObject::from_iter([(
        METADATA_KEY.to_owned(),
        serde_json::to_value(metadata).map_err(anyhow::Error::from)?,
    )]);
    Turn::begin(
        state,
        user_id,
        ChatInput {
            message: said.text,
            provider: Some(settings.provider),
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            system_prompt_override: Some(system_prompt),
            user_metadata: Some(user_metadata),
            session: Some(SessionTurn {
                messages: Some(messages),
                ..ready.turn()
            }),
            resume: resume.map(|Extension(question)| question),
            dialect: Dialect::FreeChat,
            delivery,
            ..Default::default()
        },
    )
    .await
}

#[utoipa::path(
    post, path = "/api/v1/chat/send/{chatId}", tag = "chat", operation_id = "sendMessage",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    request_body = ChatMessageDto,
    responses(
        (status = 200, description = "The character's answer, stored with the message", body = LlmResultDto),
        (status = 404, description = "No such chat of the caller, or its character or backend is gone", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid message", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The chat's quota is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The model provider failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The model provider is unreachable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The model did not answer in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn send_message(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
    resume: Option<Extension<StoredQuestion>>,
    count: Option<Extension<PendingCount>>,
    ApiJson(body): ApiJson<ChatMessageDto>,
) -> ApiResult<Json<LlmResultDto>> {
    let delivery = Delivery::Whole;
    let turn = begin_turn(
        &state,
        &caller.user_id,
        &chat_id,
        body,
        delivery,
        (resume, count),
    )
    .await?;
    let outcome = turn.run(&state).await?;
    let message = outcome.message;
    Ok(Json(LlmResultDto::answer(
        message.content,
        message.finish_reason.unwrap_or(FinishReason::Stop),
        Some(outcome.usage),
    )))
}

#[utoipa::path(
    post, path = "/api/v1/chat/send/stream/{chatId}", tag = "chat", operation_id = "streamSendMessage",
    params(("chatId" = String, Path, description = "Chat session identifier")),
    request_body = ChatMessageDto,
    responses(
        (status = 200, description = "Server-Sent Events: `data: {\"text\": <delta>}` frames, then one `LlmResultDTO` with the whole `message`, `finishReason` and `tokenUsage` (`finishReason: \"other\"` and `error` when the model failed midway); no `[DONE]`", content_type = "text/event-stream", body = sse::ServerSentEvent),
        (status = 404, description = "No such chat of the caller, or its character or backend is gone", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "Invalid message", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The chat's quota is used up", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stream_send_message(
    State(state): State<AppState>,
    caller: Caller,
    FreePath(chat_id): FreePath<String>,
    resume: Option<Extension<StoredQuestion>>,
    count: Option<Extension<PendingCount>>,
    ApiJson(body): ApiJson<ChatMessageDto>,
) -> ApiResult<Response> {
    let delivery = Delivery::Streamed;
    let turn = begin_turn(
        &state,
        &caller.user_id,
        &chat_id,
        body,
        delivery,
        (resume, count),
    )
    .await?;
    let outcome = StreamOutcome::answering(turn.question());
    let heartbeat = state.config.sse_heartbeat;
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    // The turn outlives this handler; it keeps the request's span, so that what it logs
    // (a model failure, a store error) carries the request's correlation id.
    tokio::spawn(
        turn.stream(state, sender)
            .instrument(tracing::Span::current()),
    );
    let failed = outcome.clone();
    // The text so far rides along, for the last frame of a stream that fails midway.
    let frames = futures_util::stream::unfold(
        (receiver, String::new()),
        move |(mut receiver, mut text)| {
            let failed = failed.clone();
            async move {
                loop {
                    let frame = match receiver.recv().await? {
                        TurnEvent::Token(delta) => {
                            text.push_str(&delta);
                            LlmResultDto::delta(delta)
                        }
                        TurnEvent::Finished(outcome) => {
                            let message = outcome.message;
                            let reason = message.finish_reason.unwrap_or(FinishReason::Stop);
                            LlmResultDto::last(message.content.clone(), reason, Some(outcome.usage))
                        }
                        TurnEvent::Failed(error) => {
                            // Not the key's answer: a retry with the same key calls the model again.
                            failed.fail();
                            let message = problem::problem(&error).detail;
                            LlmResultDto::failed(std::mem::take(&mut text), message)
                        }
                        // Workflow progress has no FreeChat frame.
                        _ => continue,
                    };
                    return Some((frame, (receiver, text)));
                }
            }
        },
    );
    let mut response = sse::response(frames.map(LlmResultDto::into_event), heartbeat);
    response.extensions_mut().insert(outcome);
    Ok(response)
}

#[utoipa::path(
    get, path = "/api/v1/chat/send/assistant/{chatId}/{assistantUid}", tag = "chat", operation_id = "sendAssistant",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("assistantUid" = String, Path, description = "The assistant character's uid"),
    ),
    responses(
        (status = 200, description = "A suggested next user message; nothing is stored", body = LlmResultDto),
        (status = 400, description = "The assistant has no backend", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat of the caller, or assistant visible to them", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The chat's quota is used up", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The model provider failed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn send_assistant(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, assistant_uid)): FreePath<(String, String)>,
    count: Option<Extension<PendingCount>>,
) -> ApiResult<Json<LlmResultDto>> {
    let (provider, request) = assistant_request(
        &state,
        &caller.user_id,
        (&chat_id, &assistant_uid),
        count.as_ref().map(|Extension(count)| count),
    )
    .await?;
    let completion = provider.client.complete(&request).await?;
    let usage = completion
        .usage
        .unwrap_or_else(|| estimated_usage(&request, &completion.content));
    let reason = completion
        .finish_reason
        .as_deref()
        .map_or(FinishReason::Stop, FinishReason::from_provider);
    Ok(Json(LlmResultDto::answer(
        completion.content,
        reason,
        Some(usage),
    )))
}

/// Relays a completion stream as FreeChat frames.
struct Relay {
    chunks: CompletionStream,
    request: CompletionRequest,
    text: String,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
}

impl Relay {
    async fn next_frame(mut self) -> Option<(LlmResultDto, Self)> {
        if self.done {
            return None;
        }
        loop {
            let frame = match self.chunks.next().await {
                Some(Ok(StreamEvent::Delta(delta))) => {
                    self.text.push_str(&delta);
                    LlmResultDto::delta(delta)
                }
                Some(Ok(StreamEvent::Finish(reason))) => {
                    self.finish = Some(FinishReason::from_provider(&reason));
                    continue;
                }
                Some(Ok(StreamEvent::Usage(usage))) => {
                    self.usage = Some(usage);
                    continue;
                }
                // No tools are offered to the assistant.
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    self.done = true;
                    LlmResultDto::failed(std::mem::take(&mut self.text), err.client_message())
                }
                None => {
                    self.done = true;
                    let text = std::mem::take(&mut self.text);
                    let usage = self
                        .usage
                        .unwrap_or_else(|| estimated_usage(&self.request, &text));
                    let reason = self.finish.unwrap_or(FinishReason::Stop);
                    LlmResultDto::last(text, reason, Some(usage))
                }
            };
            return Some((frame, self));
        }
    }
}

#[utoipa::path(
    get, path = "/api/v1/chat/send/stream/assistant/{chatId}/{assistantUid}", tag = "chat", operation_id = "streamSendAssistant",
    params(
        ("chatId" = String, Path, description = "Chat session identifier"),
        ("assistantUid" = String, Path, description = "The assistant character's uid"),
    ),
    responses(
        (status = 200, description = "Server-Sent Events framed as streamSendMessage's; nothing is stored", content_type = "text/event-stream", body = sse::ServerSentEvent),
        (status = 400, description = "The assistant has no backend", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such chat of the caller, or assistant visible to them", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The chat's quota is used up", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stream_send_assistant(
    State(state): State<AppState>,
    caller: Caller,
    FreePath((chat_id, assistant_uid)): FreePath<(String, String)>,
    count: Option<Extension<PendingCount>>,
) -> ApiResult<Response> {
    let (provider, request) = assistant_request(
        &state,
        &caller.user_id,
        (&chat_id, &assistant_uid),
        count.as_ref().map(|Extension(count)| count),
    )
    .await?;
    let chunks = provider.client.stream(&request).await?;
    let relay = Relay {
        chunks,
        request,
        text: String::new(),
        finish: None,
        usage: None,
        done: false,
    };
    let frames = futures_util::stream::unfold(relay, Relay::next_frame);
    Ok(sse::response(
        frames.map(LlmResultDto::into_event),
        state.config.sse_heartbeat,
    ))
}
