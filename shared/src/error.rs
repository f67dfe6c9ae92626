//! The one error type of the use cases and the HTTP layer alike, in the application's words:
//! what was not found, what input was invalid and where, a quota, a timeout, a failed model
//! or store. `http::problem` alone decides what each becomes on the wire (status, headers,
//! what a client may read).

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::StoredQuestion;
use crate::llm::LlmError;
use crate::store::StoreError;

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

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
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
    /// A chat's character or backend changed since the chat's snapshot of them, which a turn
    /// had already used: the turn runs again on a fresh snapshot (and only when that one
    /// changes too does the client see this).
    #[error("the chat's character or backend changed")]
    ChatChanged,
    #[error("service unavailable: {detail}")]
    Unavailable {
        detail: String,
        retry_after_secs: u64,
    },
    #[error("upstream failure: {detail}")]
    Upstream {
        failure: UpstreamFailure,
        detail: String,
    },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
    /// A chat turn that failed after its question was stored; the client learns where.
    #[error("{failure} (question stored as {} in {})", .question.message_id, .question.conversation_id)]
    AfterQuestion {
        failure: Box<ServiceError>,
        question: StoredQuestion,
    },
}

impl ServiceError {
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

    /// Adds `advice` to a timeout's detail: what the caller's dialect offers instead.
    pub fn advise_on_timeout(self, advice: &str) -> Self {
        match self {
            Self::Upstream {
                failure: UpstreamFailure::TimedOut,
                detail,
            } => Self::Upstream {
                failure: UpstreamFailure::TimedOut,
                detail: format!("{detail} {advice}"),
            },
            Self::AfterQuestion { failure, question } => Self::AfterQuestion {
                failure: Box::new(failure.advise_on_timeout(advice)),
                question,
            },
            other => other,
        }
    }

    /// The failure itself, whatever it is attached to.
    pub fn cause(&self) -> &ServiceError {
        match self {
            Self::AfterQuestion { failure, .. } => failure.cause(),
            other => other,
        }
    }

    /// Whose failure this is, as statistics and metrics count it.
    pub fn class(&self) -> FailureClass {
        match self.cause() {
            Self::Upstream {
                failure: UpstreamFailure::TimedOut,
                ..
            } => FailureClass::Timeout,
            Self::Upstream { .. } => FailureClass::Upstream,
            Self::Unavailable { .. } => FailureClass::Unavailable,
            Self::Internal(_) | Self::AfterQuestion { .. } => FailureClass::Internal,
            _ => FailureClass::Rejected,
        }
    }
}

/// How a call to a model (or another service behind a turn) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// It did not answer in time.
    TimedOut,
    /// It answered with an error or with nothing usable.
    Failed,
}

/// Whose failure an error is: the client's, or the service's and which part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Rejected,
    Timeout,
    Upstream,
    Unavailable,
    Internal,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
            Self::Upstream => "upstream_error",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// Not the client's doing: counted as a failed execution.
    pub fn is_service_side(self) -> bool {
        self != Self::Rejected
    }
}

/// What a storage failure means for the request: the store's own error says what happened,
/// this says what the caller is told.
/// A failure shared by several waiters (a [`crate::store::PendingCount`]): the same answer
/// as the error itself.
impl From<std::sync::Arc<StoreError>> for ServiceError {
    fn from(err: std::sync::Arc<StoreError>) -> Self {
        std::sync::Arc::try_unwrap(err)
            .unwrap_or_else(|shared| match &*shared {
                StoreError::NotFound => StoreError::NotFound,
                StoreError::Conflict => StoreError::Conflict,
                StoreError::ItemTooLarge { bytes } => StoreError::ItemTooLarge { bytes: *bytes },
                StoreError::QuotaExceeded { used, limit } => StoreError::QuotaExceeded {
                    used: *used,
                    limit: *limit,
                },
                StoreError::Stale => StoreError::Stale,
                StoreError::Unavailable(source) => {
                    StoreError::Unavailable(anyhow::anyhow!("{source:#}"))
                }
                StoreError::Other(source) => StoreError::Other(anyhow::anyhow!("{source:#}")),
            })
            .into()
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ServiceError::NotFound("The resource was not found.".into()),
            StoreError::Conflict => {
                ServiceError::Conflict("The resource was changed by another request; retry.".into())
            }
            StoreError::ItemTooLarge { bytes } => ServiceError::PayloadTooLarge(format!(
                "The content would take {bytes} bytes to store; the limit is {} bytes.",
                crate::store::items::MAX_ITEM_BYTES
            )),
            StoreError::QuotaExceeded { used, limit } => {
                ServiceError::QuotaExceeded(format!("Usage {used} exceeds limit {limit}"))
            }
            StoreError::Stale => ServiceError::ChatChanged,
            StoreError::Unavailable(source) => {
                tracing::warn!(error = ?source, "storage unavailable");
                ServiceError::Unavailable {
                    detail: "Storage is temporarily unavailable; retry shortly.".into(),
                    retry_after_secs: 2,
                }
            }
            StoreError::Other(source) => ServiceError::Internal(source),
        }
    }
}

/// A model failure as the caller meets it: its own fault (422), a timeout, a provider that
/// is unreachable or throttling (retry later) or one that failed.
impl From<LlmError> for ServiceError {
    fn from(err: LlmError) -> Self {
        tracing::warn!(error = %err, "model call failed");
        let detail = err.client_message();
        match err {
            LlmError::Rejected { .. } => ServiceError::invalid(
                ["body".into(), "message".into()],
                detail,
                "upstream_rejected",
            ),
            LlmError::Timeout { .. } => ServiceError::Upstream {
                failure: UpstreamFailure::TimedOut,
                detail,
            },
            LlmError::Unreachable { .. } | LlmError::RateLimited { .. } => {
                ServiceError::Unavailable {
                    detail,
                    retry_after_secs: 5,
                }
            }
            LlmError::Upstream { .. }
            | LlmError::Protocol { .. }
            | LlmError::Unavailable { .. } => ServiceError::Upstream {
                failure: UpstreamFailure::Failed,
                detail,
            },
        }
    }
}

/// What a use case returns: its value or why it could not give it, in domain words.
pub type ServiceResult<T> = Result<T, ServiceError>;
