//! The API's own OpenAPI 3.1 document, generated from the handlers' annotations.

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::chatter::{
    chat, conversations, documents, feedback, frames, streams, transfer, workflows,
};
use super::freechat::{characters, messages, send, sessions};
use crate::AppState;
use crate::http::problem::Problem;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chat API", description = "Serverless chat backend serving the Chatter and FreeChat dialects."),
    paths(
        conversations::create_conversation,
        conversations::list_conversations,
        conversations::get_conversation,
        conversations::update_conversation,
        conversations::delete_conversation,
        conversations::list_messages,
        conversations::delete_message,
        feedback::put_feedback,
        transfer::export_conversation,
        transfer::import_conversation,
        chat::chat,
        chat::chat_with_template,
        chat::streaming,
        streams::stream_answer,
        streams::stop_answer,
        chat::list_templates,
        workflows::available_tools,
        workflows::mcp_status,
        workflows::performance_stats,
        documents::upload_document,
        documents::list_documents,
        documents::get_document,
        documents::update_document,
        documents::delete_document,
        documents::search::search_documents,
        documents::document_chunks,
        documents::process::process_document,
        documents::document_stats,
        documents::download_document,
        documents::process::reprocess_document,
        characters::create_character,
        characters::get_character_summary,
        characters::get_character_details,
        characters::update_character,
        characters::delete_character,
        characters::add_character_backend,
        characters::list_character_backends,
        characters::get_default_character_backend,
        characters::set_default_character_backend,
        characters::update_character_backend,
        characters::remove_character_backend,
        sessions::start_chat,
        sessions::list_chats,
        sessions::get_default_chat_id,
        sessions::update_chat,
        sessions::delete_chat,
        sessions::get_memory_usage,
        sessions::clear_memory,
        sessions::rollback_messages,
        messages::list_messages,
        messages::list_messages_with_limit,
        messages::list_messages_with_offset,
        messages::list_debug_messages,
        messages::list_debug_messages_with_limit,
        messages::list_debug_messages_with_offset,
        send::send_message,
        send::stream_send_message,
        send::send_assistant,
        send::stream_send_assistant,
    ),
    components(schemas(frames::StreamingChatChunk, Problem)),
    modifiers(&BearerAuth, &CommonErrors)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Documents the problems any authenticated operation may answer with, as the HTTP layer
/// produces them for every route: bad tokens, rate limits, storage outages, and, for those
/// with a body, malformed, oversized or mistyped bodies and reused idempotency keys.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    crate::http::problem::PROBLEM_CONTENT_TYPE,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        let always = [
            ("401", "Missing or invalid bearer token"),
            ("404", "No such resource of the caller"),
            ("422", "Invalid parameters"),
            ("429", "Rate limit exceeded; see Retry-After"),
            (
                "500",
                "Internal error; the correlation id identifies it in the logs",
            ),
            (
                "503",
                "Storage or a dependency is unavailable; see Retry-After",
            ),
        ];
        let with_body = [
            ("400", "Malformed body"),
            (
                "409",
                "A request with this Idempotency-Key is still running",
            ),
            ("413", "Body too large"),
            ("415", "Unsupported content type"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_none() {
                    continue;
                }
                let extra = if operation.request_body.is_some() {
                    &with_body[..]
                } else {
                    &[]
                };
                for (status, description) in always.iter().chain(extra) {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| problem(description).into());
                }
            }
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Built on first request and kept: the document never changes while the process lives.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    serde_json::to_string(&document()).expect("an OpenAPI document always serialises")
});

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                DOCUMENT.as_str(),
            )
        }),
    )
}
