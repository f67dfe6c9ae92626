//! A Lambda Runtime API on a loopback port: it hands events to a function's runtime loop
//! and records the response body chunk by chunk, with the time each chunk arrived.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

/// One piece of a function's response, as the runtime API received it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub at: Instant,
    pub bytes: Bytes,
}

#[derive(Default)]
struct Shared {
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<(String, Value)>>>,
    responses: Mutex<HashMap<String, mpsc::UnboundedSender<Chunk>>>,
}

pub struct LambdaEmulator {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    events: mpsc::Sender<(String, Value)>,
    shared: Arc<Shared>,
}

impl LambdaEmulator {
    pub async fn start() -> Self {
        let (events, queue) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(Some(queue)),
            responses: Mutex::default(),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(respond))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            address,
            events,
            shared,
        }
    }

    /// The environment a Lambda runtime reads at start.
    pub fn environment(&self, function_name: &str) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
        ]
    }

    /// Queues an event; the receiver yields the response body as it arrives.
    pub async fn invoke(&self, event: Value) -> mpsc::UnboundedReceiver<Chunk> {
        let id = uuid::Uuid::new_v4().to_string();
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared
            .responses
            .lock()
            .unwrap()
            .insert(id.clone(), sender);
        self.events.send((id, event)).await.unwrap();
        receiver
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let mut queue = shared.queue.lock().await;
    let Some((id, event)) = queue.as_mut().unwrap().recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        + Duration::from_secs(300);
    (
        [
            ("lambda-runtime-aws-request-id", id),
            (
                "lambda-runtime-deadline-ms",
                deadline.as_millis().to_string(),
            ),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:local".into(),
            ),
        ],
        Json(event),
    )
        .into_response()
}

async fn respond(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    _headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let Some(sender) = shared.responses.lock().unwrap().remove(&id) else {
        return StatusCode::NOT_FOUND;
    };
    let mut frames = body.into_data_stream();
    while let Some(Ok(bytes)) = frames.next().await {
        let _ = sender.send(Chunk {
            at: Instant::now(),
            bytes,
        });
    }
    StatusCode::ACCEPTED
}

async fn init_error(body: Bytes) -> StatusCode {
    panic!(
        "the function failed to start: {}",
        String::from_utf8_lossy(&body)
    );
}

/// A streamed HTTP response as Lambda sends it: a JSON prelude, eight NUL bytes, the body.
pub struct StreamedHttpResponse {
    pub prelude: Value,
    pub body: String,
}

impl StreamedHttpResponse {
    pub fn parse(raw: &[u8]) -> Self {
        let separator = raw
            .windows(8)
            .position(|w| w == [0u8; 8])
            .expect("a streaming response starts with a prelude");
        Self {
            prelude: serde_json::from_slice(&raw[..separator]).unwrap(),
            body: String::from_utf8_lossy(&raw[separator + 8..]).into_owned(),
        }
    }
}
