//! Talking in a chat: `/send/{chatId}` and its stream go through the chat turn every dialect
//! shares; `/send/assistant/...` asks another character for the user's next message, and
//! stores nothing.

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;

use super::{ChatMessageDto, FreePath, LlmResultDto, METADATA_KEY, TurnMetadata, spring_statuses};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{FinishReason, JsonObject, MAX_MESSAGE_CHARS, MessageWindow, StoredQuestion};
use crate::error::{ServiceError, ServiceResult};
use crate::http::extract::{ApiJson, Resumed};
use crate::http::problem::{self, Problem};
use crate::http::sse;
use crate::http::turn_stream;
use crate::http::validate::Violations;
use crate::llm::{CompletionRequest, CompletionStream, StreamEvent, Usage, estimated_usage};
use crate::metrics::Dialect;
use crate::service::assistant::assistant_answer;
use crate::service::chat::{ChatInput, Delivery, TURN_WINDOW, Turn, TurnEvent, within_rate_limit};
use crate::service::sessions::{
    ReadyChat, SessionTurn, chat_settings, own_chat, ready, refreshed, save_quietly, session_prompt,
};
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
    fn said(self) -> ServiceResult<Said> {
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
) -> ServiceResult<Turn> {
    let said = body.said()?;
    // The rate-limit count and the chat's messages go out with the chat's read, which finds
    // its character and backend in the chat's snapshot of them: the turn walks the active
    // branch among the messages in memory.
    let (admitted, chat, messages) = tokio::join!(
        within_rate_limit(count.as_ref().map(|Extension(count)| count)),
        own_chat(state, user_id, chat_id),
        state.store.window_read(chat_id, TURN_WINDOW)
    );
    admitted?;
    let (chat, messages) = (chat?, messages?);
    let messages = state
        .store
        .window_as_of(&chat.record, TURN_WINDOW, messages)
        .await?;
    let resume = resume.map(|Extension(question)| question);
    let ready = ready(state, user_id, chat.clone()).await?;
    let asked = Asked {
        said: &said,
        messages: &messages,
        resume: resume.as_ref(),
        delivery,
    };
    // Boxed: a turn's future is too large for a thread's stack twice over.
    match Box::pin(turn_in(state, user_id, ready, asked)).await {
        // The character or backend changed since the chat's snapshot: the model request is
        // dropped already, and the turn runs again on them as they are now.
        Err(ServiceError::ChatChanged) => {
            let ready = refreshed(state, user_id, chat).await?;
            Box::pin(turn_in(state, user_id, ready, asked)).await
        }
        other => other,
    }
}

/// What a send asks, as read and validated, for each try of its turn.
#[derive(Clone, Copy)]
struct Asked<'a> {
    said: &'a Said,
    messages: &'a MessageWindow,
    resume: Option<&'a StoredQuestion>,
    delivery: Delivery,
}

/// One try of a send's turn in a chat as `ready` has it. The conversation keeps the
/// character's prompt and the backend's model, so that a Chatter turn in it speaks the same
/// way, and the snapshot of both; they follow edits of either, saved beside the turn.
async fn turn_in(
    state: &AppState,
    user_id: &str,
    mut ready: ReadyChat,
    asked: Asked<'_>,
) -> ServiceResult<Turn> {
    let Asked { said, .. } = asked;
    let settings = chat_settings(state, &ready.character, &ready.backend, &ready.chat.session)?;
    let save = ready.to_save(state)?;
    let saved_chat = ready.chat.clone();
    settings.apply_to(&mut ready.chat.record.conversation);
    let ReadyChat {
        chat, character, ..
    } = &ready;
    let system_prompt = session_prompt(character, &chat.session, said.context.as_deref());
    let metadata = TurnMetadata {
        name: said.name.clone(),
        context: said.context.clone(),
        system_prompt: character
            .is_owned_by(user_id)
            .then(|| system_prompt.clone()),
    };
    let user_metadata = JsonObject::from_iter([(
        METADATA_KEY.to_owned(),
        serde_json::to_value(metadata).map_err(anyhow::Error::from)?,
    )]);
    let turn = Turn::begin(
        state,
        user_id,
        ChatInput {
            message: said.text.clone(),
            provider: Some(settings.provider),
            temperature: settings.temperature,
            max_tokens: settings.max_tokens,
            system_prompt_override: Some(system_prompt),
            user_metadata: Some(user_metadata),
            session: Some(SessionTurn {
                messages: Some(asked.messages.clone()),
                ..ready.turn()
            }),
            resume: asked.resume.cloned(),
            dialect: Dialect::FreeChat,
            delivery: asked.delivery,
            ..Default::default()
        },
    );
    let save = async {
        if let Some(saved) = save {
            save_quietly(state, &saved_chat, saved).await;
        }
    };
    tokio::join!(turn, save).0
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
) -> ServiceResult<Json<LlmResultDto>> {
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
) -> ServiceResult<Response> {
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
    // The text so far rides along, for the last frame of a stream that fails midway.
    Ok(turn_stream::respond(state, turn, |events| {
        futures_util::stream::unfold(
            (events, String::new()),
            |(mut events, mut text)| async move {
                loop {
                    let frame = match events.next().await? {
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
                            let message = problem::problem(&error).detail;
                            LlmResultDto::failed(std::mem::take(&mut text), message)
                        }
                        // Workflow progress has no FreeChat frame.
                        _ => continue,
                    };
                    return Some((frame.into_event(), (events, text)));
                }
            },
        )
    }))
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
) -> ServiceResult<Json<LlmResultDto>> {
    let (completion, request) = assistant_answer(
        &state,
        &caller.user_id,
        (&chat_id, &assistant_uid),
        count.as_ref().map(|Extension(count)| count),
        |provider, request| async move { Ok(provider.client.complete(&request).await?) },
    )
    .await?;
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
) -> ServiceResult<Response> {
    let (chunks, request) = assistant_answer(
        &state,
        &caller.user_id,
        (&chat_id, &assistant_uid),
        count.as_ref().map(|Extension(count)| count),
        |provider, request| async move { Ok(provider.client.stream(&request).await?) },
    )
    .await?;
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
