//! `Idempotency-Key` on the POSTs that create things or call the model.
//!
//! The first request with a key runs and its response is kept (a stream's whole transcript
//! included); a retry with the same key and body gets that response back without running
//! again, the same key with another body is a 422, and a retry while the first still runs is
//! a 409. A failure is not kept, so a retry after it runs again: a 5xx, and a stream that
//! reported an error in its body (it began with a 200 before the failure was known), broke
//! off, or was abandoned by the client before its end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::AppState;
use crate::auth::Caller;
use crate::domain::StoredQuestion;
use crate::error::ServiceError;
use crate::http::problem::Problem;
use crate::store::idempotency::{Claim, StoredResponse};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Marks a response that is a replay of the first one.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The routes (POST) whose effects a retry must not repeat.
const IDEMPOTENT_ROUTES: &[&str] = &[
    "/api/v1/chat/conversations",
    "/api/v1/chat/chat",
    "/api/v1/chat/streaming",
    "/api/v1/chat/template/{template_name}",
    "/api/v1/chat",
    "/api/v1/chat/send/{chatId}",
    "/api/v1/chat/send/stream/{chatId}",
];
const MAX_KEY_CHARS: usize = 255;

/// Put in a streaming response's extensions by its handler and marked when the stream
/// reports a failure, so that the failed stream is not kept as the key's answer, and a retry
/// answers the question the stream stored.
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    failed: Arc<AtomicBool>,
    question: StoredQuestion,
}

impl StreamOutcome {
    /// The outcome of a stream answering `question`.
    pub fn answering(question: StoredQuestion) -> Self {
        Self {
            failed: Arc::default(),
            question,
        }
    }

    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// The question a failed stream leaves unanswered.
    fn unanswered(&self) -> Option<&StoredQuestion> {
        self.failed
            .load(Ordering::Relaxed)
            .then_some(&self.question)
    }
}

/// How long a claim holds before another request may take the key over: longer than the
/// function may run, so only a request that died loses its claim.
fn lease(route: &str) -> Duration {
    if route.contains("stream") {
        Duration::from_secs(310)
    } else {
        Duration::from_secs(35)
    }
}

/// What identifies a request: its method, path and body. A JSON body counts by its meaning,
/// so the same JSON with its keys in another order or other white space is the same request.
fn fingerprint(request: &axum::http::request::Parts, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .map(|value| canonical_json(&value));
    let digest = Sha256::new()
        .chain_update(request.method.as_str())
        .chain_update([0])
        .chain_update(request.uri.path())
        .chain_update([0])
        .chain_update(canonical.as_deref().map_or(body, str::as_bytes))
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compact JSON with every object's keys sorted.
fn canonical_json(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by_key(|(key, _)| *key);
            let members: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| {
                    format!("{}:{}", Value::from(key.as_str()), canonical_json(value))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        scalar => scalar.to_string(),
    }
}

pub async fn idempotent(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let applies = request.method() == Method::POST && IDEMPOTENT_ROUTES.contains(&route.as_str());
    let key = request.headers().get(&IDEMPOTENCY_KEY).cloned();
    let caller = request.extensions().get::<Caller>().cloned();
    let (Some(key), Some(caller), true) = (key, caller, applies) else {
        return next.run(request).await;
    };
    let key = match key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_CHARS
                && k.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            k.to_owned()
        }
        _ => {
            return ServiceError::invalid(
                ["header".into(), "Idempotency-Key".into()],
                format!(
                    "The Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters."
                ),
                "value_error",
            )
            .into_response();
        }
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => {
            return ServiceError::PayloadTooLarge("The request body is too large.".into())
                .into_response();
        }
    };
    let fingerprint = fingerprint(&parts, &body);
    let store = &state.store;
    let user = caller.user_id.as_str();
    let claim = store
        .claim_idempotency_key(user, &key, &fingerprint, lease(&route), chrono::Utc::now())
        .await;
    match claim {
        Err(e) => ServiceError::from(e).into_response(),
        Ok(Claim::Replay(stored)) => replay(stored),
        Ok(Claim::InProgress) => ServiceError::Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.".into(),
        )
        .into_response(),
        Ok(Claim::Mismatch) => ServiceError::invalid(
            ["header".into(), "Idempotency-Key".into()],
            "This Idempotency-Key was already used with a different request.",
            "idempotency_key_reused",
        )
        .into_response(),
        Ok(Claim::Acquired { resume }) => {
            let mut parts = parts;
            if let Some(question) = resume {
                parts.extensions.insert(question);
            }
            let response = next.run(Request::from_parts(parts, Body::from(body))).await;
            keep(state.clone(), caller.user_id, key, fingerprint, response).await
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = (
        axum::http::StatusCode::from_u16(stored.status).unwrap_or(axum::http::StatusCode::OK),
        Bytes::from(stored.body),
    )
        .into_response();
    if let Ok(content_type) = HeaderValue::from_str(&stored.content_type) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Gives a key up, logging rather than failing: a key left claimed only delays a retry
/// until its lease runs out. A retry answers `question`, when the failed try stored one.
async fn release(
    state: &AppState,
    user: &str,
    key: &str,
    fingerprint: &str,
    question: Option<&StoredQuestion>,
) {
    if let Err(e) = state
        .store
        .release_idempotency_key(user, key, fingerprint, question)
        .await
    {
        tracing::warn!(error = ?e, "idempotency key not released");
    }
}

/// What a kept stream still has to do when it ends, or when it is dropped before.
struct PendingStream {
    state: AppState,
    user: String,
    key: String,
    fingerprint: String,
    status: u16,
    content_type: String,
    outcome: Option<StreamOutcome>,
    seen: Vec<u8>,
    settled: bool,
    /// The request's span: the body is read after the handler returned, outside it.
    span: tracing::Span,
}

impl PendingStream {
    /// The stream ended: keep it, unless it reported a failure.
    async fn finish(&mut self) {
        self.settled = true;
        if let Some(question) = self.outcome.as_ref().and_then(StreamOutcome::unanswered) {
            let question = Some(question);
            release(
                &self.state,
                &self.user,
                &self.key,
                &self.fingerprint,
                question,
            )
            .await;
            return;
        }
        let stored = StoredResponse {
            status: self.status,
            content_type: std::mem::take(&mut self.content_type),
            body: std::mem::take(&mut self.seen),
        };
        if let Err(e) = self
            .state
            .store
            .complete_idempotency_key(&self.user, &self.key, &self.fingerprint, &stored)
            .await
        {
            tracing::warn!(error = ?e, "idempotent response not kept");
        }
    }

    async fn abandon(&mut self) {
        self.settled = true;
        release(&self.state, &self.user, &self.key, &self.fingerprint, None).await;
    }
}

impl Drop for PendingStream {
    /// The client went away mid-stream: it never saw the whole answer, so a retry must run.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let (state, user, key, fingerprint) = (
            self.state.clone(),
            std::mem::take(&mut self.user),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.fingerprint),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(
                async move { release(&state, &user, &key, &fingerprint, None).await }
                    .instrument(self.span.clone()),
            );
        }
    }
}

/// Keeps the first response under the key (or gives the key up after a failure). A stream is
/// passed through as it is produced and kept once it has ended.
async fn keep(
    state: AppState,
    user: String,
    key: String,
    fingerprint: String,
    response: Response,
) -> Response {
    let status = response.status();
    if status.is_server_error() {
        let question = response.extensions().get::<Problem>().and_then(|problem| {
            Some(StoredQuestion {
                conversation_id: problem.conversation_id.clone()?,
                message_id: problem.message_id.clone()?,
            })
        });
        release(&state, &user, &key, &fingerprint, question.as_ref()).await;
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = response.into_parts();
    if content_type.starts_with("text/event-stream") {
        let pending = PendingStream {
            state,
            user,
            key,
            fingerprint,
            status: status.as_u16(),
            content_type,
            outcome: parts.extensions.get::<StreamOutcome>().cloned(),
            seen: Vec::new(),
            settled: false,
            span: tracing::Span::current(),
        };
        let transcript = futures_util::stream::unfold(
            (body.into_data_stream(), Some(pending)),
            |(mut frames, mut pending)| async move {
                let current = pending.as_mut()?;
                match frames.next().await {
                    Some(Ok(bytes)) => {
                        current.seen.extend_from_slice(&bytes);
                        Some((Ok(bytes), (frames, pending)))
                    }
                    Some(Err(e)) => {
                        let span = current.span.clone();
                        current.abandon().instrument(span).await;
                        Some((Err(e), (frames, None)))
                    }
                    None => {
                        // The stream is complete: keep it before the response ends, while
                        // the function is still running.
                        let span = current.span.clone();
                        current.finish().instrument(span).await;
                        None
                    }
                }
            },
        );
        return Response::from_parts(parts, Body::from_stream(transcript));
    }
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            let stored = StoredResponse {
                status: status.as_u16(),
                content_type,
                body: bytes.to_vec(),
            };
            if let Err(e) = state
                .store
                .complete_idempotency_key(&user, &key, &fingerprint, &stored)
                .await
            {
                tracing::warn!(error = ?e, "idempotent response not kept");
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(e) => {
            release(&state, &user, &key, &fingerprint, None).await;
            ServiceError::Internal(anyhow::anyhow!("reading the response to keep it: {e}"))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> axum::http::request::Parts {
        let (parts, ()) = axum::http::Request::post("/api/v1/chat/chat")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn the_same_json_in_another_key_order_or_spacing_is_the_same_request() {
        let compact = br#"{"message":"hi","options":{"a":1,"b":[1,2]}}"#;
        let reordered = b"{ \"options\": {\"b\": [1, 2], \"a\": 1},\n  \"message\": \"hi\" }";
        assert_eq!(
            fingerprint(&parts(), compact),
            fingerprint(&parts(), reordered)
        );
        let other = br#"{"message":"hi","options":{"a":2,"b":[1,2]}}"#;
        assert_ne!(fingerprint(&parts(), compact), fingerprint(&parts(), other));
        let reversed = br#"{"message":"hi","options":{"a":1,"b":[2,1]}}"#;
        assert_ne!(
            fingerprint(&parts(), compact),
            fingerprint(&parts(), reversed)
        );
    }
}
