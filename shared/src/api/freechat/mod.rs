//! The FreeChat dialect: camelCase JSON under `/api/v1/character` and `/api/v1/chat`.
//!
//! Characters and their backends live in their own items; a chat session is a conversation
//! of the Chatter dialect with FreeChat's fields on it, so both dialects see the same chat.

pub mod characters;
pub mod messages;
pub mod send;
pub mod sessions;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::domain::{FinishReason, Message, MessageRole};
use crate::error::{FieldError, LocPart, ServiceError};
use crate::http::extract::is_id;
use crate::http::problem::Problem;
use crate::llm::Usage;
pub(crate) use crate::service::{missing, or_missing};

/// The chat-session routes served by request and response (the `sessions` function).
pub fn session_routes() -> Router<AppState> {
    spring_statuses(
        sessions::routes()
            .merge(messages::routes())
            .merge(send::routes()),
    )
}

/// FreeChat is a Spring application: a request that fails validation is a 400 there, where
/// the Chatter dialect (FastAPI) answers 422. The problem body, with its `errors`, is kept.
/// A layer rather than a variant of `ServiceError`, so that extractor rejections (a body of the
/// wrong shape) are answered the same way as the handlers' own checks.
pub(crate) fn spring_statuses(routes: Router<AppState>) -> Router<AppState> {
    routes.layer(axum::middleware::map_response(validation_is_bad_request))
}

async fn validation_is_bad_request(response: Response) -> Response {
    if response.status() != StatusCode::UNPROCESSABLE_ENTITY {
        return response;
    }
    let Some(mut problem) = response.extensions().get::<Problem>().cloned() else {
        return response;
    };
    let status = StatusCode::BAD_REQUEST;
    problem.status = status.as_u16();
    problem.title = status
        .canonical_reason()
        .unwrap_or("Bad Request")
        .to_owned();
    let (mut parts, _) = response.into_parts();
    let mut rebuilt = problem.into_response_with(status);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    for (name, value) in &parts.headers {
        rebuilt.headers_mut().insert(name, value.clone());
    }
    rebuilt
}

/// Path parameters as Spring binds them: a value that does not parse as the contract's type
/// (`/messages/{chatId}/ten`) is a 400 naming the parameter, not a path that names nothing.
pub struct FreePath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for FreePath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let no_match =
            || ServiceError::NotFound("No resource matches this path.".into()).into_response();
        let err = match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => {
                // A value no id of this API has names nothing, and must not reach DynamoDB,
                // which refuses over-long keys with an error that would be a 500.
                let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
                    .await
                    .map_err(|_| no_match())?;
                return match raw.iter().all(|(_, value)| is_id(value)) {
                    true => Ok(FreePath(value)),
                    false => Err(no_match()),
                };
            }
            Err(PathRejection::FailedToDeserializePathParams(err)) => err,
            Err(_) => return Err(no_match()),
        };
        let (key, value, expected) = match err.kind() {
            ErrorKind::ParseErrorAtKey {
                key,
                value,
                expected_type,
            } => (Some(key.clone()), value, *expected_type),
            // A tuple of parameters reports a position; the route names it.
            ErrorKind::ParseErrorAtIndex {
                index,
                value,
                expected_type,
            } => {
                let key = param_names(parts, state).await.into_iter().nth(*index);
                (key, value, *expected_type)
            }
            // A single parameter is not named either; the route names it.
            ErrorKind::ParseError {
                value,
                expected_type,
            } => {
                let key = match <[String; 1]>::try_from(param_names(parts, state).await) {
                    Ok([key]) => Some(key),
                    Err(_) => None,
                };
                (key, value, *expected_type)
            }
            _ => return Err(no_match()),
        };
        let integer = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"];
        let expected = if integer.contains(&expected) {
            "an integer"
        } else {
            expected
        };
        let loc = std::iter::once(LocPart::from("path"))
            .chain(key.map(LocPart::Key))
            .collect::<Vec<_>>();
        let error = FieldError::new(loc, format!("'{value}' is not {expected}."), "type_error");
        Err(ServiceError::Validation(vec![error]).into_response())
    }
}

/// The names of the route's path parameters, in order.
async fn param_names<S: Send + Sync>(parts: &mut Parts, state: &S) -> Vec<String> {
    axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .map(|params| params.iter().map(|(key, _)| key.to_owned()).collect())
        .unwrap_or_default()
}

/// The finish reason FreeChat reports, from the one a turn stored. FreeChat's model layer
/// (langchain4j's) names `stop`, `length`, `tool_execution` and `content_filter`, and `other`
/// for anything else.
pub(crate) fn finish_reason(stored: FinishReason) -> &'static str {
    match stored {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCalls => "tool_execution",
        // A reply the model did not finish (it failed, or the turn was cut off or stopped) is
        // neither a whole answer nor one cut at the length limit; the frame's `error` says why.
        FinishReason::Cancelled
        | FinishReason::Interrupted
        | FinishReason::Error
        | FinishReason::Other => "other",
    }
}

/// What FreeChat's `POST`s and `PUT`s answer on success.
pub(crate) const DONE: bool = true;

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = ChatContentDTO)]
pub struct ChatContentDto {
    /// `text` (the default); images are not supported.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub content: String,
}

/// A chat message, as clients send it and as records show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatMessageDTO)]
pub struct ChatMessageDto {
    /// `user` | `assistant` | `system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The user's name, for a user message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<Vec<ChatContentDto>>,
    /// Information for this exchange only, added to the system prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The text, as an alternative to `contents`.
    #[serde(skip_serializing)]
    #[schema(write_only)]
    pub content_text: Option<String>,
}

impl ChatMessageDto {
    fn text(role: &str, text: impl Into<String>) -> Self {
        Self {
            role: Some(role.to_owned()),
            contents: Some(vec![ChatContentDto {
                kind: Some("text".into()),
                content: text.into(),
            }]),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TokenUsageDTO)]
pub struct TokenUsageDto {
    pub input_token_count: u64,
    pub output_token_count: u64,
    pub total_token_count: u64,
}

impl TokenUsageDto {
    pub fn new(input: u64, output: u64) -> Self {
        Self {
            input_token_count: input,
            output_token_count: output,
            total_token_count: input + output,
        }
    }
}

impl From<Usage> for TokenUsageDto {
    fn from(usage: Usage) -> Self {
        Self::new(usage.prompt_tokens.into(), usage.completion_tokens.into())
    }
}

/// A model's answer. In a stream, frames carry only `text` (the delta) until the last one,
/// which carries the whole `message`, `finishReason` and `tokenUsage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LlmResultDTO)]
pub struct LlmResultDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessageDto>,
    /// `stop` | `length` | `tool_execution` | `content_filter`; a stream that failed midway
    /// ends with `length` and an `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsageDto>,
    /// Why a stream ended before the model finished (an extension to FreeChat's shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LlmResultDto {
    /// A whole answer: its text, both as `text` and as the assistant's `message`.
    pub fn answer(text: String, finish_reason: FinishReason, usage: Option<Usage>) -> Self {
        Self {
            text: Some(text.clone()),
            ..Self::last(text, finish_reason, usage)
        }
    }

    /// The last frame of a stream: the whole answer as `message` only, since every `text` of
    /// a stream is a delta.
    pub fn last(text: String, finish_reason: FinishReason, usage: Option<Usage>) -> Self {
        Self {
            message: Some(ChatMessageDto::text("assistant", text)),
            finish_reason: Some(self::finish_reason(finish_reason).to_owned()),
            token_usage: usage.map(TokenUsageDto::from),
            ..Default::default()
        }
    }

    /// One delta of a stream.
    pub fn delta(text: String) -> Self {
        Self {
            text: Some(text),
            ..Default::default()
        }
    }

    /// The last frame of a stream that failed midway, with what was generated before.
    pub fn failed(partial: String, error: String) -> Self {
        Self {
            message: Some(ChatMessageDto::text("assistant", partial)),
            finish_reason: Some(finish_reason(FinishReason::Error).to_owned()),
            error: Some(error),
            ..Default::default()
        }
    }

    /// As a Server-Sent Event: FreeChat frames are `data: <LlmResultDTO>`, with no closing
    /// `[DONE]`.
    pub fn into_event(self) -> axum::response::sse::Event {
        axum::response::sse::Event::default().data(serde_json::to_string(&self).unwrap_or_default())
    }
}

/// A stored message as FreeChat lists it; `messageId` is its sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ChatMessageRecordDTO)]
pub struct ChatMessageRecordDto {
    pub message: ChatMessageDto,
    pub message_id: u64,
    pub gmt_create: DateTime<Utc>,
    /// Debug listings only: the system prompt of a user message's turn, or a reply's token
    /// usage, as JSON text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
}

/// Where a FreeChat turn keeps, on the stored user message, what the listings show.
pub(crate) const METADATA_KEY: &str = "freechat";

/// What a FreeChat turn keeps with its user message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TurnMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Kept only when the sender owns the character (FreeChat's debug view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
}

impl TurnMetadata {
    fn of(message: &Message) -> Self {
        message
            .metadata
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

impl ChatMessageRecordDto {
    /// A stored message; `debug` adds its `ext`.
    pub fn of(message: &Message, debug: bool) -> Self {
        let metadata = TurnMetadata::of(message);
        let role = match message.role {
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::System => "system",
            MessageRole::Tool => "tool_result",
        };
        let ext = match message.role {
            MessageRole::User => metadata
                .system_prompt
                .map(|prompt| serde_json::json!({"type": "SYSTEM", "text": prompt}).to_string()),
            MessageRole::Assistant => message.prompt_tokens.map(|input| {
                let output = message.completion_tokens.unwrap_or(0);
                serde_json::to_string(&TokenUsageDto::new(input.into(), output.into()))
                    .unwrap_or_default()
            }),
            MessageRole::System | MessageRole::Tool => None,
        };
        let mut dto = ChatMessageDto::text(role, message.content.clone());
        dto.name = metadata.name;
        dto.context = metadata.context;
        Self {
            message: dto,
            message_id: message.sequence_number,
            gmt_create: message.created_at,
            ext: ext.filter(|_| debug),
        }
    }

    /// The character's greeting, shown before the first message; it is never stored.
    pub fn greeting(text: &str, at: DateTime<Utc>) -> Self {
        Self {
            message: ChatMessageDto::text("assistant", text),
            message_id: 0,
            gmt_create: at,
            ext: None,
        }
    }
}
