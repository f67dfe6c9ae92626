//! A Lambda Runtime API on a loopback port (after tests/support/lambda_emulator.rs), which
//! also notes when the function first asks for work (its init is over) and when each response
//! starts and ends, so a cold start can be split into init and first invocation.

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

#[derive(Default)]
struct Shared {
    queue: tokio::sync::Mutex<Option<mpsc::Receiver<(String, Value)>>>,
    responses: Mutex<HashMap<String, mpsc::UnboundedSender<(Instant, Bytes)>>>,
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
    pub frames: Vec<(Instant, Bytes)>,
    /// The body was complete.
    pub finished: Instant,
}

impl Received {
    pub fn body(&self) -> Vec<u8> {
        self.frames.iter().flat_map(|(_, b)| b.to_vec()).collect()
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
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".into()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            ),
            // What Lambda sets: the SDK finds its region and credentials in the environment.
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "bench".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// When the function first polled for an event: its init was over.
    pub fn first_poll(&self) -> Option<Instant> {
        *self.shared.first_poll.lock().unwrap()
    }

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
    receiver: mpsc::UnboundedReceiver<(Instant, Bytes)>,
    shared: Arc<Shared>,
}

impl Pending {
    /// Waits (up to `limit`) for the whole response.
    pub async fn collect(mut self, limit: Duration) -> anyhow::Result<Received> {
        let receiver = &mut self.receiver;
        let collect = async {
            let (started, _) = receiver
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the function never answered"))?;
            let mut frames = Vec::new();
            while let Some(frame) = receiver.recv().await {
                frames.push(frame);
            }
            Ok::<_, anyhow::Error>(Received {
                started,
                finished: frames.last().map_or(started, |(at, _)| *at),
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
                "arn:aws:lambda:us-east-1:000000000000:function:bench".into(),
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
    let _ = sender.send((started, Bytes::new()));
    let mut frames = body.into_data_stream();
    while let Some(Ok(bytes)) = frames.next().await {
        let _ = sender.send((Instant::now(), bytes));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}
