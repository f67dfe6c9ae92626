//! Chatter's chat endpoints: `/chat`, `/template/{name}`, `/streaming` and `/templates`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::dto::{ConversationResponse, MessageResponse};
use crate::AppState;
use crate::auth::Caller;
use crate::domain::Workflow;
use crate::domain::{JsonObject, MAX_MESSAGE_CHARS, StoredQuestion};
use crate::error::{ServiceError, ServiceResult};
use crate::http::extract::{ApiJson, ApiPath, MAX_ID_CHARS, Resumed, is_id};
use crate::http::middleware::CorrelationId;
use crate::http::problem::Problem;
use crate::http::sse::ServerSentEvent;
use crate::http::turn_stream;
use crate::http::validate::Violations;
use crate::service::chat::{Branching, ChatInput, Delivery, Turn, TurnOutcome, templates};
use crate::store::PendingCount;

use super::frames::{FrameIds, StreamingChatChunk, framed};

/// Most documents one turn may name for retrieval.
pub const MAX_DOCUMENT_IDS: usize = 50;

pub fn chat_routes() -> Router<AppState> {
    Router::new().route("/api/v1/chat/chat", post(chat)).route(
        "/api/v1/chat/template/{template_name}",
        post(chat_with_template),
    )
}

pub fn streaming_routes() -> Router<AppState> {
    Router::new().route("/api/v1/chat/streaming", post(streaming))
}

pub fn catalog_routes() -> Router<AppState> {
    Router::new().route("/api/v1/chat/templates", get(list_templates))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// Required, except with `regenerate_message_id`.
    #[schema(min_length = 1, max_length = 64000)]
    pub message: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub conversation_id: Option<String>,
    pub profile_id: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub workflow: Option<Workflow>,
    pub provider: Option<String>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[schema(minimum = 1, maximum = 8192)]
    pub max_tokens: Option<i64>,
    #[schema(minimum = 1, maximum = 10000000)]
    pub context_limit: Option<i64>,
    pub enable_retrieval: Option<bool>,
    #[schema(max_items = 50)]
    pub document_ids: Option<Vec<String>>,
    pub system_prompt_override: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub workflow_config: Option<JsonObject>,
    pub workflow_type: Option<String>,
    /// Applies a built-in template, as `/template/{name}` does.
    pub workflow_template: Option<String>,
    /// A user message of `conversation_id`: `message` becomes a new version of it (its
    /// sibling), answered from the history before it. The edited branch becomes active.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub edit_message_id: Option<String>,
    /// An assistant message of `conversation_id`: a new answer to the same question from the
    /// same history becomes its sibling; no new user message is stored and `message` may be
    /// left out. A user message here is a 422.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub regenerate_message_id: Option<String>,
}

impl ChatRequest {
    /// Validates the request; `template` is the one named in the path, if any, and `resume`
    /// the question an earlier try of the same request (by its Idempotency-Key) stored.
    fn into_input(
        self,
        template: Option<&str>,
        delivery: Delivery,
        (resume, count): Resumed,
    ) -> ServiceResult<ChatInput> {
        let mut v = Violations::new();
        let regenerating = self.regenerate_message_id.is_some();
        match &self.message {
            Some(message) if !regenerating => {
                v.text(Some(message), MAX_MESSAGE_CHARS, &["body", "message"]);
            }
            Some(_) => {}
            None => v.check(
                regenerating,
                &["body", "message"],
                "Field required",
                "missing",
            ),
        }
        v.check(
            !(regenerating && self.edit_message_id.is_some()),
            &["body", "regenerate_message_id"],
            "edit_message_id and regenerate_message_id cannot be combined",
            "value_error",
        );
        for (id, field) in [
            (&self.edit_message_id, "edit_message_id"),
            (&self.regenerate_message_id, "regenerate_message_id"),
        ] {
            let Some(id) = id else { continue };
            v.check(
                self.conversation_id.is_some(),
                &["body", "conversation_id"],
                format!("Field required with {field}"),
                "missing",
            );
            v.check(
                is_id(id),
                &["body", field],
                format!("must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'"),
                "value_error",
            );
        }
        v.temperature(self.temperature, &["body", "temperature"]);
        v.range(self.max_tokens, 1, 8192, &["body", "max_tokens"]);
        v.range(
            self.context_limit,
            1,
            10_000_000,
            &["body", "context_limit"],
        );
        v.range(
            self.document_ids.as_ref().map(Vec::len),
            0,
            MAX_DOCUMENT_IDS,
            &["body", "document_ids"],
        );
        let id_rule = format!("must be 1 to {MAX_ID_CHARS} letters, digits, '-' or '_'");
        v.check(
            self.conversation_id.as_deref().is_none_or(is_id),
            &["body", "conversation_id"],
            &id_rule,
            "value_error",
        );
        v.check(
            self.document_ids.iter().flatten().all(|id| is_id(id)),
            &["body", "document_ids"],
            &id_rule,
            "value_error",
        );
        v.finish()?;
        let template =
            match template.or(self.workflow_template.as_deref()) {
                Some(name) => Some(templates::find(name).ok_or_else(|| {
                    ServiceError::NotFound(format!("Template '{name}' not found."))
                })?),
                None => None,
            };
        let branching = match (self.edit_message_id, self.regenerate_message_id) {
            (Some(id), _) => Branching::Edit(id),
            (_, Some(id)) => Branching::Regenerate(id),
            (None, None) => Branching::FollowActive,
        };
        Ok(ChatInput {
            // A regenerated answer's question is the stored one.
            message: self.message.unwrap_or_default(),
            branching,
            conversation_id: self.conversation_id,
            provider: self.provider,
            workflow: self.workflow,
            template,
            temperature: self.temperature,
            max_tokens: self.max_tokens.map(|t| t as u32),
            context_limit: self.context_limit.map(|t| t as u32),
            system_prompt_override: self.system_prompt_override,
            max_tool_calls: self
                .workflow_config
                .as_ref()
                .and_then(|c| c.get("max_tool_calls"))
                .and_then(serde_json::Value::as_u64)
                .map(|n| n.min(50) as u32),
            enable_retrieval: self.enable_retrieval,
            document_ids: self.document_ids,
            resume: resume.map(|Extension(question)| question),
            count: count.map(|Extension(count)| count),
            delivery,
            ..Default::default()
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatResponse {
    pub conversation_id: String,
    pub message: MessageResponse,
    pub conversation: ConversationResponse,
}

impl From<TurnOutcome> for ChatResponse {
    fn from(outcome: TurnOutcome) -> Self {
        Self {
            conversation_id: outcome.conversation.id.clone(),
            message: MessageResponse::placed(outcome.message, outcome.placement),
            conversation: outcome.conversation.into(),
        }
    }
}

#[utoipa::path(
    post, path = "/api/v1/chat/chat", tag = "chat",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The stored answer", body = ChatResponse),
        (status = 404, description = "No such conversation or template", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The model provider failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The model provider is unreachable", body = Problem, content_type = "application/problem+json"),
        (status = 504, description = "The model did not answer in time", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    resume: Option<Extension<StoredQuestion>>,
    count: Option<Extension<PendingCount>>,
    ApiJson(body): ApiJson<ChatRequest>,
) -> ServiceResult<Json<ChatResponse>> {
    let input = body.into_input(None, Delivery::Whole, (resume, count))?;
    let turn = Turn::begin(&state, &caller.user_id, input).await?;
    let outcome = turn.run(&state).await.map_err(suggest_streaming)?;
    Ok(Json(outcome.into()))
}

#[utoipa::path(
    post, path = "/api/v1/chat/template/{template_name}", tag = "chat",
    params(("template_name" = String, Path, description = "Template name")),
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The stored answer", body = ChatResponse),
        (status = 404, description = "No such template or conversation", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn chat_with_template(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(template_name): ApiPath<String>,
    resume: Option<Extension<StoredQuestion>>,
    count: Option<Extension<PendingCount>>,
    ApiJson(body): ApiJson<ChatRequest>,
) -> ServiceResult<Json<ChatResponse>> {
    let input = body.into_input(Some(&template_name), Delivery::Whole, (resume, count))?;
    let turn = Turn::begin(&state, &caller.user_id, input).await?;
    let outcome = turn.run(&state).await.map_err(suggest_streaming)?;
    Ok(Json(outcome.into()))
}

/// A Chatter client whose answer took too long learns of the route without that limit.
fn suggest_streaming(error: ServiceError) -> ServiceError {
    error.advise_on_timeout("Long generations should use /api/v1/chat/streaming.")
}

#[utoipa::path(
    post, path = "/api/v1/chat/streaming", tag = "chat",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "Server-Sent Events: `data: <StreamingChatChunk>` frames (start, node_start, token, node_complete, usage, end or error), then `data: [DONE]`. Every frame has an `id:` line, `<characters of answer text sent so far>-<frames since that text>`, increasing through the turn: `GET /conversations/{id}/stream` with it as `Last-Event-ID` goes on just after it. `start` names the answer (`message_id`), stored as the turn begins and checkpointed as it grows; a client that goes away does not end the turn. `end`'s `metadata.finish_reason` is `stop`, `length`, `tool_calls`, `content_filter`, or `cancelled` when the turn was stopped (`POST /conversations/{id}/stop`)", content_type = "text/event-stream", body = ServerSentEvent),
        (status = 404, description = "No such conversation or template", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn streaming(
    State(state): State<AppState>,
    caller: Caller,
    Extension(CorrelationId(correlation_id)): Extension<CorrelationId>,
    resume: Option<Extension<StoredQuestion>>,
    count: Option<Extension<PendingCount>>,
    ApiJson(body): ApiJson<ChatRequest>,
) -> ServiceResult<Response> {
    let input = body.into_input(None, Delivery::Streamed, (resume, count))?;
    let turn = Turn::begin(&state, &caller.user_id, input).await?;
    let start = StreamingChatChunk::start(turn.answer_id().map(str::to_owned));
    let conversation_id = turn.record.conversation.id.clone();
    Ok(turn_stream::respond(state, turn, |events| {
        let chunks =
            futures_util::stream::iter([start]).chain(events.flat_map(|event| {
                futures_util::stream::iter(StreamingChatChunk::from_event(event))
            }));
        framed(chunks, FrameIds::default(), conversation_id, correlation_id)
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowTemplateInfo {
    pub name: String,
    pub workflow_type: Workflow,
    pub description: String,
    pub required_tools: Vec<String>,
    pub required_retrievers: Vec<String>,
    #[schema(value_type = Object)]
    pub default_params: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowTemplatesResponse {
    pub templates: BTreeMap<String, WorkflowTemplateInfo>,
    pub total_count: usize,
}

#[utoipa::path(
    get, path = "/api/v1/chat/templates", tag = "chat",
    responses((status = 200, description = "The built-in workflow templates", body = WorkflowTemplatesResponse)),
    security(("bearer" = []))
)]
pub async fn list_templates(_caller: Caller) -> Json<WorkflowTemplatesResponse> {
    let templates: BTreeMap<_, _> = templates::TEMPLATES
        .iter()
        .map(|t| {
            let info = WorkflowTemplateInfo {
                name: t.name.into(),
                workflow_type: t.workflow,
                description: t.description.into(),
                required_tools: t.required_tools.iter().map(|s| (*s).into()).collect(),
                required_retrievers: t.required_retrievers.iter().map(|s| (*s).into()).collect(),
                default_params: t.default_params(),
            };
            (t.name.to_owned(), info)
        })
        .collect();
    Json(WorkflowTemplatesResponse {
        total_count: templates.len(),
        templates,
    })
}
