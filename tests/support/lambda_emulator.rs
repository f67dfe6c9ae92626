//! A Lambda Runtime API on a loopback port: it hands events to a function's runtime loop (in
//! this process, or a function binary it spawned) and records each response body frame by
//! frame, with the time each frame arrived. It also notes when the function first asks for
//! work (its init is over), any init error it reports, and when each response starts and ends,
//! so that the benchmarks (bench/src/coldstart.rs) can split a cold start into init and first
//! invocation, and the tests can tell when a streamed token reached the Runtime API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

/// One piece of a function's response, as the Runtime API received it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub at: Instant,
    pub bytes: Bytes,
}

#[derive(Default)]
struct Shared {
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<(String, Value)>>>,
    /// Per pending invocation: the response's start (an empty chunk), then its body frames.
    responses: Mutex<HashMap<String, mpsc::UnboundedSender<Chunk>>>,
    first_poll: Mutex<Option<Instant>>,
    init_error: Mutex<Option<String>>,
}

pub struct LambdaEmulator {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    events: mpsc::Sender<(String, Value)>,
    shared: Arc<Shared>,
}

/// A response as the Runtime API received it.
#[derive(Debug)]
pub struct Received {
    /// The function started sending it (request line and headers in).
    pub started: Instant,
    /// Each body frame with its arrival.
    pub frames: Vec<Chunk>,
    /// The body was complete.
    pub finished: Instant,
}

impl Received {
    pub fn body(&self) -> Vec<u8> {
        self.frames.iter().flat_map(|c| c.bytes.to_vec()).collect()
    }
}

impl LambdaEmulator {
    pub async fn start() -> anyhow::Result<Self> {
        let (events, queue) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            queue: tokio::sync::Mutex::new(Some(queue)),
            ..Shared::default()
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self {
            address,
            events,
            shared,
        })
    }

    /// The environment a Lambda runtime reads at start.
    pub fn environment(&self, function_name: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.address.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "local".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
            // What Lambda sets: the SDK finds its region and credentials in the environment.
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "local".into()),
            ("AWS_SECRET_ACCESS_KEY", "local".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// When the function first polled for an event: its init was over.
    pub fn first_poll(&self) -> Option<Instant> {
        *self.shared.first_poll.lock().unwrap()
    }

    /// What the function reported to `/runtime/init/error`, if it failed to start.
    pub fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().unwrap().clone()
    }

    /// Queues an event and waits (up to `limit`) for the whole response.
    pub async fn invoke(&self, event: Value, limit: Duration) -> anyhow::Result<Received> {
        self.queue(event).await?.collect(limit).await
    }

    /// Queues an event; the function gets it when it next polls.
    pub async fn queue(&self, event: Value) -> anyhow::Result<Pending> {
        let id = uuid::Uuid::new_v4().to_string();
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared
            .responses
            .lock()
            .unwrap()
            .insert(id.clone(), sender);
        self.events.send((id, event)).await?;
        Ok(Pending {
            receiver,
            shared: self.shared.clone(),
        })
    }
}

/// A queued event whose response has not been collected yet.
pub struct Pending {
    receiver: mpsc::UnboundedReceiver<Chunk>,
    shared: Arc<Shared>,
}

impl Pending {
    /// Waits (up to `limit`) for the whole response. On timeout the error carries the
    /// function's init error, if it reported one: a function that failed to start never polls.
    pub async fn collect(mut self, limit: Duration) -> anyhow::Result<Received> {
        let receiver = &mut self.receiver;
        let collect = async {
            let started = receiver
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the function never answered"))?
                .at;
            let mut frames = Vec::new();
            while let Some(frame) = receiver.recv().await {
                frames.push(frame);
            }
            Ok::<_, anyhow::Error>(Received {
                started,
                finished: frames.last().map_or(started, |c| c.at),
                frames,
            })
        };
        match tokio::time::timeout(limit, collect).await {
            Ok(received) => received,
            Err(_) => anyhow::bail!(
                "no response within {limit:?}{}",
                self.shared
                    .init_error
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|e| format!(" (init error: {e})"))
                    .unwrap_or_default()
            ),
        }
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
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
    body: Body,
) -> StatusCode {
    let started = Instant::now();
    let Some(sender) = shared.responses.lock().unwrap().remove(&id) else {
        return StatusCode::NOT_FOUND;
    };
    let _ = sender.send(Chunk {
        at: started,
        bytes: Bytes::new(),
    });
    let mut frames = body.into_data_stream();
    while let Some(Ok(bytes)) = frames.next().await {
        let _ = sender.send(Chunk {
            at: Instant::now(),
            bytes,
        });
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
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
