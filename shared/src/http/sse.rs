//! Server-Sent Events responses, with what keeps proxies from holding them back.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use utoipa::ToSchema;

/// One event of a `text/event-stream` body, described per event as OpenAPI 3.2's
/// `itemSchema` does (and as fuzzers check it): `data` holds a chunk as JSON, or `[DONE]`.
#[derive(Debug, ToSchema)]
pub struct ServerSentEvent {
    pub data: String,
    pub event: Option<String>,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

/// Streams `events`, with a `: heartbeat` comment after each `heartbeat` of silence so that
/// idle connections are not cut, and headers that turn off proxy buffering and caching.
pub fn response<S>(events: S, heartbeat: Duration) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let mut response = Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
