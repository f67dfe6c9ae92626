//! A zero-delay OpenAI-compatible Chat Completions server on loopback (after
//! tests/support/fake_llm.rs): answers at once, and when streaming sends `tokens` tokens `gap`
//! apart, noting when each left, so a client's arrival times can be set against them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::{Value, json};

struct Shared {
    tokens: AtomicUsize,
    gap: Mutex<Duration>,
    sent: Mutex<Vec<Instant>>,
    /// When each request arrived, since the last `take_requests`.
    requested: Mutex<Vec<Instant>>,
}

pub struct FakeLlm {
    /// The `LLM_BASE_URL` to give a function.
    pub base_url: String,
    shared: Arc<Shared>,
}

/// The text of token `i`: a short word, as models stream them.
pub fn token_text(i: usize) -> String {
    format!("w{i} ")
}

impl FakeLlm {
    pub async fn start() -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            tokens: AtomicUsize::new(8),
            gap: Mutex::new(Duration::ZERO),
            sent: Mutex::new(Vec::new()),
            requested: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v1", listener.local_addr()?);
        // Like any production server, no Nagle delay on small writes (one token is one).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(Self { base_url, shared })
    }

    /// Answers carry `tokens` tokens; streamed ones leave `gap` apart (the first at once).
    pub fn configure(&self, tokens: usize, gap: Duration) {
        self.shared.tokens.store(tokens, Ordering::SeqCst);
        *self.shared.gap.lock().unwrap() = gap;
    }

    /// When each request since the last call arrived.
    pub fn take_requests(&self) -> Vec<Instant> {
        std::mem::take(&mut *self.shared.requested.lock().unwrap())
    }

    /// When each token of the latest streamed answer was handed to the connection.
    pub fn sent(&self) -> Vec<Instant> {
        self.shared.sent.lock().unwrap().clone()
    }
}

fn frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

async fn complete(State(shared): State<Arc<Shared>>, Json(request): Json<Value>) -> Response {
    shared.requested.lock().unwrap().push(Instant::now());
    let tokens = shared.tokens.load(Ordering::SeqCst);
    let usage =
        json!({"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens});
    if request["stream"] != true {
        let content: String = (0..tokens).map(token_text).collect();
        return Json(json!({
            "id": "chatcmpl-bench", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        }))
        .into_response();
    }
    let gap = *shared.gap.lock().unwrap();
    shared.sent.lock().unwrap().clear();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(256);
    tokio::spawn(async move {
        for i in 0..tokens {
            if i > 0 && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            let chunk = frame(
                &json!({"choices": [{"index": 0, "delta": {"content": token_text(i)}, "finish_reason": null}]}),
            );
            shared.sent.lock().unwrap().push(Instant::now());
            if sender.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
        let finish =
            frame(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}));
        let _ = sender.send(Ok(finish)).await;
        let _ = sender
            .send(Ok(frame(&json!({"choices": [], "usage": usage}))))
            .await;
        let _ = sender.send(Ok(Bytes::from("data: [DONE]\n\n"))).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    ([("content-type", "text/event-stream")], body).into_response()
}
