//! Chatter's export and import: a conversation saved as a file (JSON to import again, or
//! Markdown to read), and such a JSON file stored as a new conversation of the caller.

mod dto;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::conversations::{ConversationWithMessages, check_llm};
use super::dto::MessageResponse;
use crate::AppState;
use crate::auth::Caller;
use crate::domain::MessageRole;
use crate::error::ServiceResult;
use crate::http::download::attachment;
use crate::http::extract::{ApiJson, ApiPath, ApiQuery};
use crate::http::problem::Problem;
use crate::service::transfer::{self, Transcript};
use dto::{ConversationImportRequest, ExportFormat, ExportQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/chat/conversations/import",
            post(import_conversation),
        )
        .route(
            "/api/v1/chat/conversations/{conversation_id}/export",
            get(export_conversation),
        )
}

/// The longest part of a title a file name keeps.
const FILE_STEM_CHARS: usize = 60;

impl From<Transcript> for ConversationWithMessages {
    fn from(transcript: Transcript) -> Self {
        Self {
            messages: transcript
                .tree
                .messages()
                .iter()
                .map(|m| MessageResponse::in_tree(&transcript.tree, m.clone()))
                .collect(),
            conversation: transcript.conversation.into(),
        }
    }
}

#[utoipa::path(
    get, path = "/api/v1/chat/conversations/{conversation_id}/export", tag = "conversations",
    params(("conversation_id" = String, Path, description = "Conversation ID"), ExportQuery),
    responses(
        (status = 200, description = "The conversation as a file to save: JSON, every message with its feedback (the body `POST /conversations/import` takes), or Markdown, the title and then the active branch turn by turn",
            content(
                (ConversationWithMessages = "application/json"),
                (String = "text/markdown"),
            ),
            headers(("Content-Disposition" = String, description = "`attachment`, with a file name made of the title's letters and digits"))),
        (status = 404, description = "No such conversation of the caller", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An unknown format", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn export_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(conversation_id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ServiceResult<Response> {
    let transcript = transfer::export(&state.store, &caller.user_id, &conversation_id).await?;
    let format = query.format.unwrap_or_default();
    let disposition = attachment(&format!(
        "{}.{}",
        file_stem(&transcript.conversation.title),
        format.extension()
    ));
    let disposition = [(header::CONTENT_DISPOSITION, disposition)];
    Ok(match format {
        ExportFormat::Json => (
            disposition,
            Json(ConversationWithMessages::from(transcript)),
        )
            .into_response(),
        ExportFormat::Markdown => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            disposition,
            markdown(&transcript),
        )
            .into_response(),
    })
}

#[utoipa::path(
    post, path = "/api/v1/chat/conversations/import", tag = "conversations",
    request_body = ConversationImportRequest,
    responses(
        (status = 201, description = "A new conversation of the caller with new ids and the file's messages, in its order, with their roles, content and feedback", body = ConversationWithMessages),
        (status = 413, description = "The file is larger than a request body may be, or a message too large to store", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A malformed file: each error's `loc` names the field (`[\"body\", \"messages\", 3, \"role\"]`); a message over 64,000 characters or more than 1,000 messages are refused as sending would refuse them", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn import_conversation(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ConversationImportRequest>,
) -> ServiceResult<(StatusCode, Json<ConversationWithMessages>)> {
    check_llm(
        &state,
        body.llm_provider.as_deref(),
        body.llm_model.as_deref(),
    )?;
    let transcript = transfer::import(&state.store, &caller.user_id, body.try_into()?).await?;
    Ok((StatusCode::CREATED, Json(transcript.into())))
}

/// A file name's stem from a title: its first characters, or `conversation` for a title
/// with nothing a file name can keep.
fn file_stem(title: &str) -> String {
    let stem: String = title.trim().chars().take(FILE_STEM_CHARS).collect();
    if stem.chars().any(|c| c.is_ascii_alphanumeric()) {
        stem
    } else {
        "conversation".into()
    }
}

/// The title as a heading, then each message of the active branch under its speaker.
fn markdown(transcript: &Transcript) -> String {
    let title = transcript.conversation.title.replace(['\r', '\n'], " ");
    let mut text = format!("# {title}\n");
    for message in transcript.active_branch() {
        let speaker = match message.role {
            MessageRole::User => "User",
            MessageRole::Assistant => "Assistant",
            MessageRole::System => "System",
            MessageRole::Tool => "Tool",
        };
        text.push_str(&format!(
            "\n## {speaker}\n\n{}\n",
            message.content.trim_end()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_named_after_the_start_of_its_title() {
        assert_eq!(file_stem("  Trip to Lisbon "), "Trip to Lisbon");
        assert_eq!(file_stem(&"a".repeat(100)).len(), FILE_STEM_CHARS);
        assert_eq!(file_stem("«»"), "conversation");
    }
}
