//! Chatter's feedback route: a user rates an answer up or down, with an optional comment.

use axum::extract::State;
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::ToSchema;

use super::dto::MessageResponse;
use crate::AppState;
use crate::auth::Caller;
use crate::domain::{Feedback, Rating};
use crate::error::ServiceResult;
use crate::http::extract::{ApiJson, ApiPath};
use crate::http::problem::Problem;
use crate::http::validate::Violations;
use crate::service::feedback;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/chat/conversations/{conversation_id}/messages/{message_id}/feedback",
        put(put_feedback),
    )
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackRequest {
    /// `up` or `down`; `null` withdraws the feedback. Required, so that a body without it
    /// never withdraws a rating by accident.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Rating>, required = true)]
    pub rating: Option<Option<Rating>>,
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

#[utoipa::path(
    put, path = "/api/v1/chat/conversations/{conversation_id}/messages/{message_id}/feedback",
    tag = "conversations",
    params(
        ("conversation_id" = String, Path, description = "Conversation ID"),
        ("message_id" = String, Path, description = "ID of an assistant message"),
    ),
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "The message with its feedback (none after a null rating); the caller's `/performance/stats` counts it", body = MessageResponse),
        (status = 404, description = "No such message in a conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not an assistant message, an unknown rating, or a comment over 2,000 characters", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_feedback(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((conversation_id, message_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<FeedbackRequest>,
) -> ServiceResult<Json<MessageResponse>> {
    let mut v = Violations::new();
    v.length(
        body.comment.as_deref(),
        0,
        Feedback::MAX_COMMENT_CHARS,
        &["body", "comment"],
    );
    v.check(
        body.rating.is_some(),
        &["body", "rating"],
        "Field required",
        "missing",
    );
    v.finish()?;
    let (message, placement) = feedback::rate_answer(
        &state.store,
        &caller.user_id,
        &conversation_id,
        &message_id,
        body.rating.flatten(),
        body.comment,
    )
    .await?;
    Ok(Json(MessageResponse::placed(message, placement)))
}

/// A field that is there, even as `null`, is `Some`; one left out stays `None` (the default).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Rating>>, D::Error> {
    Option::<Rating>::deserialize(deserializer).map(Some)
}
