//! Streams that survive their connection: `GET /conversations/{id}/stream` follows the
//! conversation's running answer from any instance, `POST /conversations/{id}/stop` stops it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::chat::StreamingChatChunk;
use crate::AppState;
use crate::auth::Caller;
use crate::domain::FinishReason;
use crate::error::ServiceResult;
use crate::http::extract::{ApiPath, ApiQuery, MAX_ID_CHARS, is_id};
use crate::http::middleware::CorrelationId;
use crate::http::problem::Problem;
use crate::http::sse::{self, ServerSentEvent};
use crate::http::validate::Violations;
use crate::service::streams::{self, Followed};

/// Served by the streaming function, beside `/streaming`.
pub fn stream_routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/chat/conversations/{conversation_id}/stream",
        get(stream_answer),
    )
}

/// Served by the conversations function: a stop is a short request.
pub fn stop_routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/chat/conversations/{conversation_id}/stop",
        post(stop_answer),
    )
}

/// An SSE frame's id within its turn: `<characters of answer text sent so far>-<frames sent
/// since that text>`. Ids increase through the turn, and a reader that resumes after one
/// needs only its characters to know which text it is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrameId {
    pub chars: usize,
    pub after_text: u32,
}

impl std::fmt::Display for FrameId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.chars, self.after_text)
    }
}

impl std::str::FromStr for FrameId {
    type Err = ();

    fn from_str(id: &str) -> Result<Self, ()> {
        let (chars, after_text) = id.split_once('-').ok_or(())?;
        Ok(Self {
            chars: chars.parse().map_err(|_| ())?,
            after_text: after_text.parse().map_err(|_| ())?,
        })
    }
}

/// Gives a turn's frames their ids, in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameIds {
    last: Option<FrameId>,
}

impl FrameIds {
    /// Ids that go on after `last`, the id a resuming reader saw last.
    pub fn after(last: Option<FrameId>) -> Self {
        Self { last }
    }

    /// The id of the next frame, which carries `text` of the answer (or none).
    pub fn next(&mut self, text: Option<&str>) -> FrameId {
        let id = match (self.last, text.filter(|t| !t.is_empty())) {
            (last, Some(text)) => FrameId {
                chars: last.map_or(0, |l| l.chars) + text.chars().count(),
                after_text: 0,
            },
            (None, None) => FrameId::default(),
            (Some(last), None) => FrameId {
                after_text: last.after_text + 1,
                ..last
            },
        };
        self.last = Some(id);
        id
    }
}

/// The chunks as events with their ids, then `data: [DONE]` with the id after the last.
pub fn framed(
    chunks: impl Stream<Item = StreamingChatChunk> + Send + 'static,
    mut ids: FrameIds,
    conversation_id: String,
    correlation_id: String,
) -> impl Stream<Item = Event> + Send + 'static {
    chunks
        .map(Some)
        .chain(futures_util::stream::iter([None]))
        .map(move |chunk| match chunk {
            Some(chunk) => {
                let id = ids.next(chunk.text());
                chunk.into_event(&conversation_id, &correlation_id, id)
            }
            None => Event::default()
                .id(ids.next(None).to_string())
                .data("[DONE]"),
        })
}

/// Which running answer a request addresses: the conversation's latest, or this one.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnswerQuery {
    /// A specific running answer (the `message_id` of its `start` chunk).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub message_id: Option<String>,
}

impl AnswerQuery {
    fn message_id(&self) -> ServiceResult<Option<&str>> {
        let mut v = Violations::new();
        v.check(
            self.message_id.as_deref().is_none_or(is_id),
            &["query", "message_id"],
            format!("must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'"),
            "value_error",
        );
        v.finish()?;
        Ok(self.message_id.as_deref())
    }
}

/// The `Last-Event-ID` a reconnecting client sends: the id of the last frame it had.
fn last_event_id(headers: &HeaderMap) -> ServiceResult<Option<FrameId>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = value.to_str().ok().and_then(|id| id.trim().parse().ok());
    let mut v = Violations::new();
    v.check(
        id.is_some(),
        &["header", "last-event-id"],
        "must be the id of a frame of this stream (`<characters>-<frames>`)",
        "value_error",
    );
    v.finish()?;
    Ok(id)
}

#[utoipa::path(
    get, path = "/api/v1/chat/conversations/{conversation_id}/stream", tag = "chat",
    params(
        ("conversation_id" = String, Path, description = "Conversation ID"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last frame the client had: the stream goes on just after it"),
        AnswerQuery,
    ),
    responses(
        (status = 200, description = "Server-Sent Events as `/streaming` sends them, with their `id:` lines: the running answer from its `start` (or from just after `Last-Event-ID`) as `token` chunks, then `usage`, `end` and `data: [DONE]`", content_type = "text/event-stream", body = ServerSentEvent),
        (status = 204, description = "No turn is running in the conversation"),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `message_id` or `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stream_answer(
    State(state): State<AppState>,
    caller: Caller,
    Extension(CorrelationId(correlation_id)): Extension<CorrelationId>,
    ApiPath(conversation_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AnswerQuery>,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    let after = last_event_id(&headers)?;
    let message_id = query.message_id()?;
    let running =
        streams::running_answer(&state, &caller.user_id, &conversation_id, message_id).await?;
    let Some(answer) = running else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let heartbeat = state.config.sse_heartbeat;
    let start = after
        .is_none()
        .then(|| StreamingChatChunk::start(Some(answer.id.clone())));
    let followed = streams::follow(state, answer, after.map_or(0, |id| id.chars));
    let chunks = futures_util::stream::iter(start)
        .chain(followed.flat_map(|followed| futures_util::stream::iter(chunks_of(followed))));
    let events = framed(
        chunks,
        FrameIds::after(after),
        conversation_id,
        correlation_id,
    );
    Ok(sse::response(events, heartbeat))
}

/// What a follower saw, as `/streaming` frames it.
fn chunks_of(followed: Followed) -> Vec<StreamingChatChunk> {
    match followed {
        Followed::Text(text) => vec![StreamingChatChunk::token(text)],
        Followed::Finished(answer) => StreamingChatChunk::finished(&answer),
        Followed::Abandoned(answer) => vec![StreamingChatChunk::end(
            answer.id.clone(),
            Some(FinishReason::Interrupted),
            &answer,
        )],
        Followed::Vanished => vec![StreamingChatChunk::error(
            "The turn ended without an answer.".into(),
        )],
    }
}

/// What `POST .../stop` answers when it asked a running turn to stop.
#[derive(Debug, Serialize, ToSchema)]
pub struct StopResponse {
    /// The answer whose turn was asked to stop.
    pub message_id: String,
}

#[utoipa::path(
    post, path = "/api/v1/chat/conversations/{conversation_id}/stop", tag = "chat",
    params(("conversation_id" = String, Path, description = "Conversation ID"), AnswerQuery),
    responses(
        (status = 202, description = "The running turn was asked to stop: within a second its model request is dropped, its answer so far is stored with `finish_reason` \"cancelled\", and its streams end", body = StopResponse),
        (status = 204, description = "No turn is running in the conversation"),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid `message_id`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn stop_answer(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<AnswerQuery>,
) -> ServiceResult<Response> {
    let message_id = query.message_id()?;
    let stopped = streams::stop(&state, &caller.user_id, &conversation_id, message_id).await?;
    Ok(match stopped {
        Some(message_id) => {
            (StatusCode::ACCEPTED, Json(StopResponse { message_id })).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ids_increase_through_a_turn_and_count_its_text() {
        let mut ids = FrameIds::default();
        let sent = [None, None, Some("Héllo"), Some(" you"), None, None];
        let ids: Vec<String> = sent.iter().map(|t| ids.next(*t).to_string()).collect();
        assert_eq!(ids, ["0-0", "0-1", "5-0", "9-0", "9-1", "9-2"]);
        let parsed: Vec<FrameId> = ids.iter().map(|id| id.parse().unwrap()).collect();
        assert!(parsed.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_resumed_stream_goes_on_after_the_last_id_it_had() {
        let mut ids = FrameIds::after(Some("9-0".parse().unwrap()));
        assert_eq!(ids.next(Some("!")).to_string(), "10-0");
        assert_eq!(ids.next(None).to_string(), "10-1");
        assert!("9".parse::<FrameId>().is_err());
    }
}
