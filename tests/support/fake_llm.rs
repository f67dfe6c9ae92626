//! A scripted OpenAI-compatible Chat Completions server on a random loopback port, with an
//! `/embeddings` endpoint whose vectors are deterministic (a hashed bag of words), so texts
//! that share words really are closer than texts that do not. The tests script it; the
//! benchmarks use it too, timing requests and tokens against when it received and sent them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// What the fake does with one request.
#[derive(Debug, Clone)]
pub enum Script {
    /// Answers with these tokens, `delay` apart (a whole answer after all of them), reporting
    /// `usage` if given.
    Reply {
        tokens: Vec<String>,
        delay: Duration,
        usage: Option<(u32, u32)>,
    },
    /// Fails with this status before answering.
    Status(u16),
    /// Fails with this status and this error message, as a provider explains a refusal.
    Refusal(u16, String),
    /// Never answers.
    Hang,
    /// Streams this many tokens, then a chunk that is not JSON; without streaming, a JSON
    /// body cut off after that many tokens of its content.
    Malformed { after: usize },
    /// Streams this many tokens, then drops the connection; without streaming, drops it in
    /// the middle of the JSON body, after that many tokens of its content.
    Drop { after: usize },
    /// Streams this many tokens, then keeps the connection open and says nothing more.
    Stall { after: usize },
    /// Asks for these tool calls, `(name, arguments)`; streamed as fragments, as providers do.
    ToolCalls(Vec<(String, Value)>),
    /// Waits until the test opens the gate (see [`Script::held`]), then does `then`.
    Held {
        gate: Arc<tokio::sync::Semaphore>,
        then: Box<Script>,
    },
}

impl Script {
    /// A reply split into word tokens (spaces kept), reporting usage 10 + 1 per token.
    pub fn reply(text: &str) -> Self {
        let tokens: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let usage = Some((10, tokens.len() as u32));
        Self::Reply {
            tokens,
            delay: Duration::ZERO,
            usage,
        }
    }

    /// `tokens` short words (`w0 `, `w1 `, ...), `gap` apart: a model at a steady token rate,
    /// as the benchmarks drive it.
    pub fn paced(tokens: usize, gap: Duration) -> Self {
        Self::Reply {
            tokens: (0..tokens).map(|i| format!("w{i} ")).collect(),
            delay: gap,
            usage: Some((10, tokens as u32)),
        }
    }

    pub fn slow_reply(text: &str, delay: Duration) -> Self {
        match Self::reply(text) {
            Self::Reply { tokens, usage, .. } => Self::Reply {
                tokens,
                delay,
                usage,
            },
            other => other,
        }
    }

    pub fn tool_call(name: &str, arguments: Value) -> Self {
        Self::ToolCalls(vec![(name.to_owned(), arguments)])
    }

    /// This script, held back until the test adds a permit to the returned gate.
    pub fn held(self) -> (Self, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let held = Self::Held {
            gate: gate.clone(),
            then: Box::new(self),
        };
        (held, gate)
    }

    pub fn without_usage(self) -> Self {
        match self {
            Self::Reply { tokens, delay, .. } => Self::Reply {
                tokens,
                delay,
                usage: None,
            },
            other => other,
        }
    }
}

#[derive(Default)]
struct Shared {
    scripts: Mutex<VecDeque<Script>>,
    scripts_by_model: Mutex<HashMap<String, VecDeque<Script>>>,
    fallback: Mutex<Option<Script>>,
    requests: Mutex<Vec<Value>>,
    /// When each request arrived, since the last `take_request_times`.
    arrivals: Mutex<Vec<Instant>>,
    /// When each token of the latest streamed reply was handed to its connection.
    sent: Mutex<Vec<Instant>>,
    embedding_requests: Mutex<Vec<Value>>,
    embedding_failure: Mutex<Option<u16>>,
    embedding_delay: Mutex<Duration>,
    /// Requests whose client went away before the answer was complete.
    abandoned: std::sync::atomic::AtomicUsize,
}

/// Counts its request as abandoned when dropped: axum drops a handler whose client closed
/// the connection.
struct AbandonedWhenDropped(Arc<Shared>);

impl Drop for AbandonedWhenDropped {
    fn drop(&mut self) {
        self.0
            .abandoned
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub struct FakeLlm {
    pub base_url: String,
    shared: Arc<Shared>,
}

impl FakeLlm {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = Router::new()
            .route("/v1/chat/completions", post(complete))
            .route("/v1/embeddings", post(embed))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        // Like a production server, no Nagle delay on small writes (one token is one), so the
        // benchmarks time the API rather than the fake.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base_url, shared }
    }

    /// The next request gets this script (queued in order).
    pub fn push(&self, script: Script) -> &Self {
        self.shared.scripts.lock().unwrap().push_back(script);
        self
    }

    /// The next request for `model` gets this script (queued in order, apart from the
    /// others): a turn's answer and a call made beside it can be scripted each on its own.
    pub fn push_for(&self, model: &str, script: Script) -> &Self {
        self.shared
            .scripts_by_model
            .lock()
            .unwrap()
            .entry(model.to_owned())
            .or_default()
            .push_back(script);
        self
    }

    /// Requests with no queued script get this one (default: a short reply).
    pub fn always(&self, script: Script) {
        *self.shared.fallback.lock().unwrap() = Some(script);
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// Every `/embeddings` request body received, in order.
    pub fn embedding_requests(&self) -> Vec<Value> {
        self.shared.embedding_requests.lock().unwrap().clone()
    }

    /// From now on `/embeddings` fails with this status (`None`: answers again).
    pub fn fail_embeddings(&self, status: Option<u16>) {
        *self.shared.embedding_failure.lock().unwrap() = status;
    }

    /// From now on `/embeddings` answers only after this long.
    pub fn delay_embeddings(&self, delay: Duration) {
        *self.shared.embedding_delay.lock().unwrap() = delay;
    }

    /// Requests whose client closed the connection before the answer was complete: a hanging
    /// one, or a stream cut off between tokens.
    pub fn abandoned(&self) -> usize {
        self.shared
            .abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// When the last token of the latest streamed reply left the fake.
    pub fn last_token_sent(&self) -> Option<Instant> {
        self.shared.sent.lock().unwrap().last().copied()
    }

    /// When each token of the latest streamed reply left the fake.
    pub fn sent(&self) -> Vec<Instant> {
        self.shared.sent.lock().unwrap().clone()
    }

    /// When each request arrived since the last call.
    pub fn take_request_times(&self) -> Vec<Instant> {
        std::mem::take(&mut *self.shared.arrivals.lock().unwrap())
    }
}

async fn complete(State(shared): State<Arc<Shared>>, Json(request): Json<Value>) -> Response {
    shared.arrivals.lock().unwrap().push(Instant::now());
    shared.requests.lock().unwrap().push(request.clone());
    let for_model = request["model"].as_str().and_then(|model| {
        shared
            .scripts_by_model
            .lock()
            .unwrap()
            .get_mut(model)?
            .pop_front()
    });
    let mut script = for_model
        .or_else(|| shared.scripts.lock().unwrap().pop_front())
        .or_else(|| shared.fallback.lock().unwrap().clone())
        .unwrap_or_else(|| Script::reply("Hello from the fake model."));
    if let Script::Held { gate, then } = script {
        gate.acquire().await.unwrap().forget();
        script = *then;
    }
    let streaming = request["stream"] == true;
    match script {
        Script::Status(code) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"error": {"message": format!("scripted failure {code}")}})),
        )
            .into_response(),
        Script::Refusal(code, message) => (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
        )
            .into_response(),
        Script::Malformed { after } if !streaming => {
            let content: String = (0..after).map(|i| format!("part{i} ")).collect();
            let body = format!(
                r#"{{"id": "chatcmpl-fake", "choices": [{{"index": 0, "message": {{"role": "assistant", "content": "{content}"#
            );
            ([("content-type", "application/json")], body).into_response()
        }
        Script::Drop { after } if !streaming => {
            let content: String = (0..after).map(|i| format!("part{i} ")).collect();
            let start = format!(
                r#"{{"id": "chatcmpl-fake", "choices": [{{"index": 0, "message": {{"role": "assistant", "content": "{content}"#
            );
            // The break waits a moment, so that the start of the body is out before it.
            let broken = futures_util::stream::iter([Ok(Bytes::from(start))]).chain(
                futures_util::stream::once(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "dropped",
                    ))
                }),
            );
            (
                [("content-type", "application/json")],
                Body::from_stream(broken),
            )
                .into_response()
        }
        Script::Hang => {
            let _abandoned = AbandonedWhenDropped(shared.clone());
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Script::ToolCalls(calls) if !streaming => {
            let calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    json!({"id": format!("call_{i}"), "type": "function",
                           "function": {"name": name, "arguments": arguments.to_string()}})
                })
                .collect();
            Json(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": calls}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
            }))
            .into_response()
        }
        Script::Reply {
            tokens,
            delay,
            usage,
        } if !streaming => {
            // A whole answer takes as long as its tokens would have taken to stream.
            tokio::time::sleep(delay * tokens.len() as u32).await;
            let mut body = json!({
                "id": "chatcmpl-fake", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": tokens.concat()}, "finish_reason": "stop"}],
            });
            if let Some((prompt, completion)) = usage {
                body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
            }
            Json(body).into_response()
        }
        script => stream(shared, script),
    }
}

/// Asserts that a request the model received carries the `general_chat` template's
/// defaults: a system prompt that asks to be helpful, and temperature 0.7.
pub fn assert_general_chat_template(sent: &Value) {
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("helpful"),
        "{sent}"
    );
    assert_eq!(sent["temperature"], 0.7, "{sent}");
}

/// The (role, content) of each message a request to the model carried.
pub fn prompt_messages(request: &Value) -> Vec<(String, String)> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Dimensions of the fake's embeddings.
pub const EMBEDDING_DIMENSIONS: usize = 256;

/// The fake's embedding of a text: each word (lowercased, common words left out) adds one to
/// the dimension its hash picks, and the vector is scaled to length 1. Texts that share words
/// point the same way; texts that share none are orthogonal.
pub fn fake_embedding(text: &str) -> Vec<f32> {
    const COMMON: &[&str] = &[
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "is", "it", "of",
        "on", "or", "the", "to", "was", "what", "which", "with",
    ];
    let mut vector = vec![0.0_f32; EMBEDDING_DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| !w.is_empty() && !COMMON.contains(&w.as_str()))
    {
        // FNV-1a: stable across runs and platforms, unlike the standard library's hasher.
        let hash = word.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        vector[(hash % EMBEDDING_DIMENSIONS as u64) as usize] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

async fn embed(State(shared): State<Arc<Shared>>, Json(request): Json<Value>) -> Response {
    shared
        .embedding_requests
        .lock()
        .unwrap()
        .push(request.clone());
    let delay = *shared.embedding_delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = *shared.embedding_failure.lock().unwrap() {
        return (
            StatusCode::from_u16(code).unwrap(),
            Json(json!({"error": {"message": format!("scripted embedding failure {code}")}})),
        )
            .into_response();
    }
    let inputs: Vec<String> = match &request["input"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        _ => return StatusCode::UNPROCESSABLE_ENTITY.into_response(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": fake_embedding(text)}))
        .collect();
    Json(
        json!({"object": "list", "data": data, "model": request["model"],
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}),
    )
    .into_response()
}

fn frame(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

fn token_frame(token: &str) -> Bytes {
    frame(&json!({"choices": [{"index": 0, "delta": {"content": token}, "finish_reason": null}]}))
}

fn stream(shared: Arc<Shared>, script: Script) -> Response {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    shared.sent.lock().unwrap().clear();
    tokio::spawn(async move {
        let send_tokens = |tokens: Vec<String>, delay: Duration| {
            let sender = sender.clone();
            let shared = shared.clone();
            async move {
                for token in tokens {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if sender.send(Ok(token_frame(&token))).await.is_err() {
                        shared
                            .abandoned
                            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        return false;
                    }
                    shared.sent.lock().unwrap().push(Instant::now());
                }
                true
            }
        };
        let words = |n: usize| (0..n).map(|i| format!("part{i} ")).collect::<Vec<_>>();
        match script {
            Script::Reply {
                tokens,
                delay,
                usage,
            } => {
                if !send_tokens(tokens, delay).await {
                    return;
                }
                let _ = sender
                    .send(Ok(frame(
                        &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                    )))
                    .await;
                if let Some((prompt, completion)) = usage {
                    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
                    let _ = sender
                        .send(Ok(frame(&json!({"choices": [], "usage": usage}))))
                        .await;
                }
                let _ = sender.send(Ok(Bytes::from("data: [DONE]\n\n"))).await;
            }
            Script::Malformed { after } => {
                send_tokens(words(after), Duration::ZERO).await;
                let _ = sender.send(Ok(Bytes::from("data: {not json\n\n"))).await;
            }
            Script::Drop { after } => {
                send_tokens(words(after), Duration::ZERO).await;
                // Small pause so the tokens are flushed before the connection breaks.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = sender
                    .send(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "dropped",
                    )))
                    .await;
            }
            Script::Stall { after } => {
                send_tokens(words(after), Duration::ZERO).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(sender);
            }
            Script::ToolCalls(calls) => {
                for (i, (name, arguments)) in calls.iter().enumerate() {
                    let arguments = arguments.to_string();
                    let (first, second) = arguments.split_at(arguments.len() / 2);
                    let opening = json!({"index": i, "id": format!("call_{i}"), "type": "function",
                                         "function": {"name": name, "arguments": first}});
                    let rest = json!({"index": i, "function": {"arguments": second}});
                    for fragment in [opening, rest] {
                        let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [fragment]}, "finish_reason": null}]});
                        let _ = sender.send(Ok(frame(&chunk))).await;
                    }
                }
                let _ = sender
                    .send(Ok(frame(&json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))))
                    .await;
                let _ = sender.send(Ok(Bytes::from("data: [DONE]\n\n"))).await;
            }
            Script::Status(_) | Script::Refusal(..) | Script::Hang | Script::Held { .. } => {
                unreachable!("answered before streaming")
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver));
    ([("content-type", "text/event-stream")], body).into_response()
}
