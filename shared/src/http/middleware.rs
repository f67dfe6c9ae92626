//! Layers every route shares: correlation ids and request logs, authentication with rate
//! limiting, and CORS.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::AppState;
use crate::config::Config;
use crate::error::ServiceError;
use crate::http::problem::Problem;
use crate::store::{PendingCount, RateLimitStatus};

pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
const LIMIT_MINUTE: HeaderName = HeaderName::from_static("x-ratelimit-limit-minute");
const LIMIT_HOUR: HeaderName = HeaderName::from_static("x-ratelimit-limit-hour");
const REMAINING_MINUTE: HeaderName = HeaderName::from_static("x-ratelimit-remaining-minute");
const REMAINING_HOUR: HeaderName = HeaderName::from_static("x-ratelimit-remaining-hour");

/// An inbound correlation id is echoed only when it is short and plain, so it cannot inject
/// anything into headers or logs.
fn inbound_correlation_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(&CORRELATION_ID)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then(|| value.to_owned())
}

/// The request's correlation id, for handlers that put it in their bodies (stream chunks).
#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

/// Gives every request a correlation id, logs it once finished, and completes problem
/// responses with the path they answer.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation_id = inbound_correlation_id(request.headers())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id,
        method = %request.method(),
        route = %route,
        user_id = tracing::field::Empty,
    );
    request
        .extensions_mut()
        .insert(CorrelationId(correlation_id.clone()));
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(problem) = response.extensions().get::<Problem>()
        && problem.instance.is_none()
    {
        let mut problem = problem.clone();
        problem.instance = Some(path);
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        response = problem.into_response_with(status);
        for (name, value) in &headers {
            if name != header::CONTENT_LENGTH {
                response.headers_mut().insert(name, value.clone());
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    response
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ServiceError> {
    let missing = || ServiceError::MissingCredentials("A bearer token is required.".into());
    let value = headers.get(header::AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| {
        ServiceError::Unauthorized("The Authorization header must be `Bearer <token>`.".into())
    })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    // Another scheme (Basic, say) is no bearer credential at all: answered like none.
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ServiceError::Unauthorized(
            "The Authorization header must be `Bearer <token>`.".into(),
        ));
    }
    Ok(token)
}

/// Verifies the bearer token, counts the request against the user's limits, and hands the
/// handler a [`crate::auth::Caller`].
///
/// The count is one DynamoDB call. A read, and a chat turn, do not wait for it before they
/// start: a read's answer is held until the count is in (over a limit it is replaced by the
/// 429), and a chat turn takes the [`PendingCount`] and waits for it beside its own reads,
/// before it writes anything or calls the model. Every other request is counted first.
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let limits = state.config.rate_limits;
    let token = bearer_token(request.headers()).map(str::to_owned);
    let verified = async { state.auth.verify(&token?).await }.await;
    let caller = match verified {
        Ok(caller) => caller,
        Err(err) => {
            return with_rate_limit_headers(err.into_response(), &RateLimitStatus::unused(limits));
        }
    };
    tracing::Span::current().record("user_id", caller.user_id.as_str());
    let count = PendingCount::start(
        state.store.clone(),
        caller.user_id.clone(),
        limits,
        chrono::Utc::now(),
    );
    request.extensions_mut().insert(caller);
    let (response, counted) = if counted_beside_the_handler(&request) {
        request.extensions_mut().insert(count.clone());
        tokio::join!(next.run(request), count.status())
    } else {
        match count.status().await {
            Ok(status) if status.retry_after_secs.is_none() => {
                (next.run(request).await, Ok(status))
            }
            counted => (Response::default(), counted),
        }
    };
    let (response, status) = match counted {
        Err(err) => (
            ServiceError::from(err).into_response(),
            RateLimitStatus::unused(limits),
        ),
        Ok(status) => match status.retry_after_secs {
            Some(retry_after_secs) => (
                ServiceError::RateLimited { retry_after_secs }.into_response(),
                status,
            ),
            None => (response, status),
        },
    };
    with_rate_limit_headers(response, &status)
}

/// The chat turns' routes: each takes the request's [`crate::store::PendingCount`] and waits
/// for it beside the reads its prompt needs, so that the model request goes out one DynamoDB
/// step after the request arrived (the HTTP layer does not count these first).
const TURN_ROUTES: &[&str] = &[
    "/api/v1/chat/chat",
    "/api/v1/chat/template/{template_name}",
    "/api/v1/chat/streaming",
    "/api/v1/chat/send/{chatId}",
    "/api/v1/chat/send/stream/{chatId}",
];

/// Whether the handler may start before the request is counted: a read (nothing it does
/// outlives the 429 that replaces its answer) or a chat turn (which waits for the count
/// itself, see [`TURN_ROUTES`]). A request with an idempotency key is counted
/// first, since its key is claimed before the handler runs.
fn counted_beside_the_handler(request: &Request) -> bool {
    if request
        .headers()
        .contains_key(super::idempotency::IDEMPOTENCY_KEY)
    {
        return false;
    }
    matches!(*request.method(), Method::GET | Method::HEAD)
        || request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| TURN_ROUTES.contains(&path.as_str()))
}

fn with_rate_limit_headers(mut response: Response, status: &RateLimitStatus) -> Response {
    let headers = response.headers_mut();
    headers.insert(LIMIT_MINUTE, status.limits.per_minute.into());
    headers.insert(LIMIT_HOUR, status.limits.per_hour.into());
    headers.insert(REMAINING_MINUTE, status.remaining_minute.into());
    headers.insert(REMAINING_HOUR, status.remaining_hour.into());
    response
}

/// The same CORS rules the HTTP API and the Function URL apply in `template.yaml`.
pub fn cors(config: &Config) -> CorsLayer {
    let origins = &config.cors_allow_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            CORRELATION_ID,
            super::idempotency::IDEMPOTENCY_KEY,
        ])
        .expose_headers([
            CORRELATION_ID,
            LIMIT_MINUTE,
            LIMIT_HOUR,
            REMAINING_MINUTE,
            REMAINING_HOUR,
            header::RETRY_AFTER,
            super::idempotency::REPLAYED,
            // An export's file name, for a page on another origin that saves it.
            header::CONTENT_DISPOSITION,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

pub async fn not_found() -> ServiceError {
    ServiceError::NotFound("No route matches this path.".into())
}

pub async fn method_not_allowed() -> ServiceError {
    ServiceError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CORRELATION_ID, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn a_plain_correlation_id_is_kept() {
        assert_eq!(
            inbound_correlation_id(&headers("req-42.a_b")).as_deref(),
            Some("req-42.a_b")
        );
    }

    #[test]
    fn a_correlation_id_with_odd_characters_is_replaced() {
        assert_eq!(inbound_correlation_id(&headers("a b")), None);
        assert_eq!(inbound_correlation_id(&headers(&"x".repeat(129))), None);
    }

    #[test]
    fn only_bearer_tokens_are_taken() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(bearer_token(&h).is_err());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert_eq!(bearer_token(&h).unwrap(), "abc");
    }
}
