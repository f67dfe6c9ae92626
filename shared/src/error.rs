//! The one error type of the API and its mapping to RFC 9457 `application/problem+json`.
//!
//! Handlers return `Result<_, ApiError>`; this module is the only place that decides status
//! codes, headers and what a client may read. Internal causes are logged in full and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::StoredQuestion;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One part of the path to an invalid input: a field name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LocPart {
    Key(String),
    Index(usize),
}

impl From<&str> for LocPart {
    fn from(value: &str) -> Self {
        Self::Key(value.to_owned())
    }
}

impl From<usize> for LocPart {
    fn from(value: usize) -> Self {
        Self::Index(value)
    }
}

/// One validation failure, in the shape FastAPI clients already parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub loc: Vec<LocPart>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl FieldError {
    pub fn new(
        loc: impl IntoIterator<Item = LocPart>,
        msg: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Self {
            loc: loc.into_iter().collect(),
            msg: msg.into(),
            kind: kind.into(),
        }
    }
}

/// The RFC 9457 body. `instance` is filled in by the HTTP layer, which knows the request path.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// A turn that failed after storing its question: the conversation it is in (one the
    /// turn created, too) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// ... and the stored question's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

impl Problem {
    /// Renders the problem as a complete response, keeping a copy in the extensions so the
    /// HTTP layer can add `instance` without parsing the body.
    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = (status, Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        response.extensions_mut().insert(self);
        response
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    /// A token was sent and is not acceptable.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// No bearer token was sent at all (none, or another scheme).
    #[error("no credentials: {0}")]
    MissingCredentials(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("rate limit exceeded")]
    RateLimited { retry_after_secs: u64 },
    /// A chat's quota is used up; unlike a rate limit, waiting does not lift it.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("upstream failure: {detail}")]
    Upstream { status: StatusCode, detail: String },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// A chat turn that failed after its question was stored; the client learns where.
    #[error("{failure} (question stored as {} in {})", .question.message_id, .question.conversation_id)]
    AfterQuestion {
        failure: Box<ApiError>,
        question: StoredQuestion,
    },
}

impl ApiError {
    /// A single-field validation failure.
    pub fn invalid(
        loc: impl IntoIterator<Item = LocPart>,
        msg: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Self::Validation(vec![FieldError::new(loc, msg, kind)])
    }

    /// A failure after a stored question, attached to where the question is.
    pub fn after_question(self, question: StoredQuestion) -> Self {
        match self {
            Self::AfterQuestion { .. } => self,
            failure => Self::AfterQuestion {
                failure: Box::new(failure),
                question,
            },
        }
    }

    /// The failure itself, whatever it is attached to.
    fn cause(&self) -> &ApiError {
        match self {
            Self::AfterQuestion { failure, .. } => failure.cause(),
            other => other,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.cause() {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::MissingCredentials(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } | Self::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { status, .. } => *status,
            Self::Internal(_) | Self::AfterQuestion { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self.cause() {
            Self::BadRequest(_) => "malformed-request",
            Self::Unauthorized(_) | Self::MissingCredentials(_) => "unauthorized",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Validation(_) => "validation-error",
            Self::RateLimited { .. } => "rate-limited",
            Self::QuotaExceeded(_) => "quota-exceeded",
            Self::Unavailable { .. } => "service-unavailable",
            Self::Upstream { .. } => "upstream-error",
            Self::Internal(_) | Self::AfterQuestion { .. } => "internal-error",
        }
    }

    /// What the client may read: never the cause of an internal error.
    fn detail(&self) -> String {
        match self.cause() {
            Self::BadRequest(d)
            | Self::Unauthorized(d)
            | Self::MissingCredentials(d)
            | Self::NotFound(d)
            | Self::Conflict(d)
            | Self::PayloadTooLarge(d)
            | Self::UnsupportedMediaType(d)
            | Self::QuotaExceeded(d)
            | Self::Unavailable { detail: d, .. }
            | Self::Upstream { detail: d, .. } => d.clone(),
            Self::MethodNotAllowed => "This method is not allowed on this resource.".into(),
            Self::Validation(errors) => match errors.as_slice() {
                [one] => one.msg.clone(),
                many => format!("{} fields are invalid.", many.len()),
            },
            Self::RateLimited { retry_after_secs } => {
                format!("Too many requests; retry after {retry_after_secs} seconds.")
            }
            Self::Internal(_) | Self::AfterQuestion { .. } => {
                "An internal error occurred; the x-correlation-id header identifies it in the logs."
                    .into()
            }
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let mut problem = Problem {
            kind: format!("/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.detail(),
            instance: None,
            errors: match self.cause() {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            conversation_id: None,
            message_id: None,
        };
        if let Self::AfterQuestion { question, .. } = self {
            problem.conversation_id = Some(question.conversation_id.clone());
            problem.message_id = Some(question.message_id.clone());
        }
        problem
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(err: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError;
        match err {
            ServiceError::NotFound(entity) => Self::NotFound(format!("{entity} not found.")),
            ServiceError::Invalid {
                input,
                message,
                kind,
            } => Self::invalid(input.iter().map(|&part| part.into()), message, kind),
            ServiceError::Busy(detail) => Self::Conflict(detail),
            ServiceError::Document(err) => {
                use crate::documents::DocumentError;
                match err {
                    DocumentError::Unsupported(detail) => Self::UnsupportedMediaType(detail),
                    DocumentError::TooLarge(detail) => Self::PayloadTooLarge(detail),
                    DocumentError::Unreadable(detail) => {
                        Self::invalid(["body".into(), "file".into()], detail, "value_error")
                    }
                    DocumentError::TooManyChunks(detail) => {
                        Self::invalid(["body".into(), "chunk_size".into()], detail, "value_error")
                    }
                }
            }
            ServiceError::Storage(err) => err.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = self.problem().into_response_with(status);
        let headers = response.headers_mut();
        match self.cause() {
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            // RFC 6750 §3.1: a request without credentials gets the challenge alone, no error
            // code; the client was not wrong, it just did not know authentication was needed.
            Self::MissingCredentials(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::RateLimited { retry_after_secs }
            | Self::Unavailable {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let response = ApiError::Internal(anyhow::anyhow!("password=hunter2")).into_response();
        assert_eq!(response.status(), 500);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        let body = body_json(response).await;
        assert!(!body.to_string().contains("hunter2"));
        assert_eq!(body["type"], "/problems/internal-error");
    }

    #[tokio::test]
    async fn validation_errors_list_each_field() {
        let response = ApiError::Validation(vec![
            FieldError::new(["body".into(), "title".into()], "Field required", "missing"),
            FieldError::new(
                ["query".into(), "limit".into()],
                "must be at most 100",
                "less_than_equal",
            ),
        ])
        .into_response();
        assert_eq!(response.status(), 422);
        let body = body_json(response).await;
        assert_eq!(
            body["errors"][0]["loc"],
            serde_json::json!(["body", "title"])
        );
        assert_eq!(body["errors"][1]["type"], "less_than_equal");
        assert_eq!(body["status"], 422);
    }

    #[test]
    fn a_missing_token_gets_a_bare_challenge_and_a_bad_one_names_the_error() {
        let missing = ApiError::MissingCredentials("no token".into()).into_response();
        assert_eq!(missing.status(), 401);
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let bad = ApiError::Unauthorized("expired".into()).into_response();
        assert_eq!(
            bad.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }

    #[test]
    fn unauthorized_challenges_for_a_bearer_token() {
        let response = ApiError::Unauthorized("no token".into()).into_response();
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
}
