//! RFC 9457 `application/problem+json`: the one place that decides what an error becomes on the
//! wire. Internal causes are logged in full and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{FieldError, ServiceError, UpstreamFailure};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

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

pub fn status(error: &ServiceError) -> StatusCode {
    match error.cause() {
        ServiceError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ServiceError::Unauthorized(_) | ServiceError::MissingCredentials(_) => {
            StatusCode::UNAUTHORIZED
        }
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ServiceError::Conflict(_) | ServiceError::ChatChanged => StatusCode::CONFLICT,
        ServiceError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ServiceError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ServiceError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ServiceError::RateLimited { .. } | ServiceError::QuotaExceeded(_) => {
            StatusCode::TOO_MANY_REQUESTS
        }
        ServiceError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ServiceError::Upstream {
            failure: UpstreamFailure::TimedOut,
            ..
        } => StatusCode::GATEWAY_TIMEOUT,
        ServiceError::Upstream { .. } => StatusCode::BAD_GATEWAY,
        ServiceError::Internal(_) | ServiceError::AfterQuestion { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn slug(error: &ServiceError) -> &'static str {
    match error.cause() {
        ServiceError::BadRequest(_) => "malformed-request",
        ServiceError::Unauthorized(_) | ServiceError::MissingCredentials(_) => "unauthorized",
        ServiceError::NotFound(_) => "not-found",
        ServiceError::MethodNotAllowed => "method-not-allowed",
        ServiceError::Conflict(_) | ServiceError::ChatChanged => "conflict",
        ServiceError::PayloadTooLarge(_) => "payload-too-large",
        ServiceError::UnsupportedMediaType(_) => "unsupported-media-type",
        ServiceError::Validation(_) => "validation-error",
        ServiceError::RateLimited { .. } => "rate-limited",
        ServiceError::QuotaExceeded(_) => "quota-exceeded",
        ServiceError::Unavailable { .. } => "service-unavailable",
        ServiceError::Upstream { .. } => "upstream-error",
        ServiceError::Internal(_) | ServiceError::AfterQuestion { .. } => "internal-error",
    }
}

/// What the client may read: never the cause of an internal error.
fn detail(error: &ServiceError) -> String {
    match error.cause() {
        ServiceError::BadRequest(d)
        | ServiceError::Unauthorized(d)
        | ServiceError::MissingCredentials(d)
        | ServiceError::NotFound(d)
        | ServiceError::Conflict(d)
        | ServiceError::PayloadTooLarge(d)
        | ServiceError::UnsupportedMediaType(d)
        | ServiceError::QuotaExceeded(d)
        | ServiceError::Unavailable { detail: d, .. }
        | ServiceError::Upstream { detail: d, .. } => d.clone(),
        ServiceError::MethodNotAllowed => "This method is not allowed on this resource.".into(),
        ServiceError::ChatChanged => {
            "The chat's character or backend changed while sending; send again.".into()
        }
        ServiceError::Validation(errors) => match errors.as_slice() {
            [one] => one.msg.clone(),
            many => format!("{} fields are invalid.", many.len()),
        },
        ServiceError::RateLimited { retry_after_secs } => {
            format!("Too many requests; retry after {retry_after_secs} seconds.")
        }
        ServiceError::Internal(_) | ServiceError::AfterQuestion { .. } => {
            "An internal error occurred; the x-correlation-id header identifies it in the logs."
                .into()
        }
    }
}

pub fn problem(error: &ServiceError) -> Problem {
    let status = status(error);
    let mut problem = Problem {
        kind: format!("/problems/{}", slug(error)),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        detail: detail(error),
        instance: None,
        errors: match error.cause() {
            ServiceError::Validation(errors) => Some(errors.clone()),
            _ => None,
        },
        conversation_id: None,
        message_id: None,
    };
    if let ServiceError::AfterQuestion { question, .. } = error {
        problem.conversation_id = Some(question.conversation_id.clone());
        problem.message_id = Some(question.message_id.clone());
    }
    problem
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = status(&self);
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = problem(&self).into_response_with(status);
        let headers = response.headers_mut();
        match self.cause() {
            ServiceError::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
            }
            // RFC 6750 §3.1: a request without credentials gets the challenge alone, no error
            // code; the client was not wrong, it just did not know authentication was needed.
            ServiceError::MissingCredentials(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ServiceError::RateLimited { retry_after_secs }
            | ServiceError::Unavailable {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

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
        let response = ServiceError::Internal(anyhow::anyhow!("password=hunter2")).into_response();
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
        let response = ServiceError::Validation(vec![
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
        let missing = ServiceError::MissingCredentials("no token".into()).into_response();
        assert_eq!(missing.status(), 401);
        assert_eq!(missing.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let bad = ServiceError::Unauthorized("expired".into()).into_response();
        assert_eq!(
            bad.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }

    #[test]
    fn unauthorized_challenges_for_a_bearer_token() {
        let response = ServiceError::Unauthorized("no token".into()).into_response();
        assert!(
            response.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
}
