//! `Idempotency-Key` on the POSTs that create things or call the model.
//!
//! The first request with a key runs and its response is kept (a stream's whole transcript
//! included); a retry with the same key and body gets that response back without running
//! again, the same key with another body is a 422, and a retry while the first still runs is
//! a 409. A 5xx is not kept, so a retry after a failure runs again.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
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

/// How long a claim holds before another request may take the key over: longer than the
/// function may run, so only a request that died loses its claim.
fn lease(route: &str) -> Duration {
    if route.contains("stream") {
        Duration::from_secs(310)
    } else {
        Duration::from_secs(35)
    }
}

fn fingerprint(request: &axum::http::request::Parts, body: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(request.method.as_str())
        .chain_update([0])
        .chain_update(request.uri.path())
        .chain_update([0])
        .chain_update(body)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
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
            return ApiError::invalid(
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
            return ApiError::PayloadTooLarge("The request body is too large.".into())
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
        Err(e) => ApiError::from(e).into_response(),
        Ok(Claim::Replay(stored)) => replay(stored),
        Ok(Claim::InProgress) => ApiError::Conflict(
            "A request with this Idempotency-Key is still being processed; retry later.".into(),
        )
        .into_response(),
        Ok(Claim::Mismatch) => ApiError::invalid(
            ["header".into(), "Idempotency-Key".into()],
            "This Idempotency-Key was already used with a different request.",
            "idempotency_key_reused",
        )
        .into_response(),
        Ok(Claim::Acquired) => {
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

/// Keeps the first response under the key (or gives the key up after a 5xx). A stream is
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
        if let Err(e) = state
            .store
            .release_idempotency_key(&user, &key, &fingerprint)
            .await
        {
            tracing::warn!(error = ?e, "idempotency key not released");
        }
        return response;
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (parts, body) = response.into_parts();
    let record = move |body: Vec<u8>| async move {
        let stored = StoredResponse {
            status: status.as_u16(),
            content_type,
            body,
        };
        if let Err(e) = state
            .store
            .complete_idempotency_key(&user, &key, &fingerprint, &stored)
            .await
        {
            tracing::warn!(error = ?e, "idempotent response not kept");
        }
    };
    if parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
    {
        let transcript = futures_util::stream::unfold(
            (body.into_data_stream(), Vec::new(), Some(record)),
            |(mut frames, mut seen, mut record)| async move {
                match frames.next().await {
                    Some(Ok(bytes)) => {
                        seen.extend_from_slice(&bytes);
                        Some((Ok(bytes), (frames, seen, record)))
                    }
                    Some(Err(e)) => Some((Err(e), (frames, seen, None))),
                    None => {
                        // The stream is complete: keep it before the response ends, while
                        // the function is still running.
                        if let Some(record) = record.take() {
                            record(std::mem::take(&mut seen)).await;
                        }
                        None
                    }
                }
            },
        );
        return Response::from_parts(parts, Body::from_stream(transcript));
    }
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            record(bytes.to_vec()).await;
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(e) => ApiError::Internal(anyhow::anyhow!("reading the response to keep it: {e}"))
            .into_response(),
    }
}
