//! Streams that survive their connection: `GET /conversations/{id}/stream` follows the
//! conversation's running answer from any instance, `POST /conversations/{id}/stop` stops it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::frames::{FrameId, FrameIds, StreamingChatChunk, framed};
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
