//! A scripted Amazon Bedrock Runtime endpoint on a random loopback port, speaking the real
//! wire format: JSON for Converse and InvokeModel (Titan embeddings), the binary event stream
//! (framed and checksummed by aws-smithy-eventstream) for ConverseStream, and errors as
//! Bedrock sends them (`x-amzn-ErrorType` and a JSON `message`). Every request must carry a
//! SigV4 signature made with [`ACCESS_KEY_ID`] and [`SECRET_ACCESS_KEY`]; the fake signs the
//! request again and refuses it (`InvalidSignatureException`) unless the signatures agree.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{Value, json};

use crate::fake_llm::fake_embedding;

/// The region and credentials a test stack signs with (AWS's documentation example keys).
pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const SESSION_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLETOKEN";

/// What the fake does with one Converse or ConverseStream request.
#[derive(Debug, Clone)]
pub enum Turn {
    /// Answers with these tokens (one delta each when streaming), this stop reason and usage.
    Reply {
        tokens: Vec<String>,
        stop_reason: &'static str,
        usage: (u32, u32),
    },
    /// Asks for these tools, `(name, input)`.
    ToolUse(Vec<(String, Value)>),
    /// Refuses the request as Bedrock does: this exception's name, HTTP status and message.
    Refuse {
        exception: &'static str,
        status: u16,
        message: String,
    },
    /// Streams this many tokens, then an exception event (`throttlingException`, ...).
    BreakAfter {
        tokens: usize,
        exception: &'static str,
    },
}

impl Turn {
    /// A reply split into word tokens (spaces kept), usage 10 + 1 per token.
    pub fn reply(text: &str) -> Self {
        let tokens: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
        let usage = (10, tokens.len() as u32);
        Self::Reply {
            tokens,
            stop_reason: "end_turn",
            usage,
        }
    }

    pub fn tool_use(name: &str, input: Value) -> Self {
        Self::ToolUse(vec![(name.to_owned(), input)])
    }

    pub fn refuse(exception: &'static str, status: u16, message: &str) -> Self {
        Self::Refuse {
            exception,
            status,
            message: message.to_owned(),
        }
    }
}

/// A request the fake received and found signed.
#[derive(Debug, Clone)]
pub struct Received {
    pub model: String,
    /// `converse`, `converse-stream` or `invoke`.
    pub action: String,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    turns: Mutex<VecDeque<Turn>>,
    received: Mutex<Vec<Received>>,
    refused_signatures: Mutex<usize>,
}

pub struct FakeBedrock {
    /// What a provider's `endpoint_url` is set to.
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FakeBedrock {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let router = axum::Router::new()
            .route("/model/{model}/{action}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        // A stream's small frames leave at once, not after the client's delayed ACK (Nagle).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { endpoint, shared }
    }

    /// The next Converse or ConverseStream request gets this turn (queued in order); without
    /// one, a short reply.
    pub fn push(&self, turn: Turn) -> &Self {
        self.shared.turns.lock().unwrap().push_back(turn);
        self
    }

    /// Every signed request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The signed Converse and ConverseStream request bodies, in order.
    pub fn conversations(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|r| r.action.starts_with("converse"))
            .map(|r| r.body)
            .collect()
    }

    /// How many requests were refused for a missing or wrong signature.
    pub fn refused_signatures(&self) -> usize {
        *self.shared.refused_signatures.lock().unwrap()
    }

    /// `LLM_PROVIDERS` with one Bedrock provider, `name`, at this fake, serving `model` by
    /// default at 1 per 1,000 prompt tokens and 2 per 1,000 completion tokens.
    pub fn providers(&self, name: &str, model: &str) -> String {
        json!({name: {"kind": "bedrock", "region": REGION, "endpoint_url": self.endpoint,
                      "default_model": model, "prompt_price_per_1k": 1.0, "completion_price_per_1k": 2.0}})
        .to_string()
    }
}

/// The variables that give a stack the fake's credentials, as Lambda gives a function its role's.
pub fn credential_vars() -> [(&'static str, &'static str); 3] {
    [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
    ]
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((model, action)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(reason) = verify_signature(&uri, &headers, &body) {
        *shared.refused_signatures.lock().unwrap() += 1;
        return refusal("InvalidSignatureException", 403, &reason);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refusal("ValidationException", 400, "Malformed input request");
    };
    shared.received.lock().unwrap().push(Received {
        model,
        action: action.clone(),
        body: request.clone(),
    });
    let turn = || {
        shared
            .turns
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Turn::reply("Hello from the fake Bedrock."))
    };
    match action.as_str() {
        "invoke" => embed(&request),
        "converse" => converse(turn()),
        "converse-stream" => converse_stream(turn()),
        _ => refusal("UnknownOperationException", 404, "no such operation"),
    }
}

/// An error response as Bedrock sends one.
fn refusal(exception: &str, status: u16, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [
            (
                "x-amzn-errortype",
                format!("{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        json!({"message": message}).to_string(),
    )
        .into_response()
}

/// Titan Text Embeddings' InvokeModel: one `inputText`, one vector.
fn embed(request: &Value) -> Response {
    let Some(text) = request["inputText"].as_str() else {
        return refusal("ValidationException", 400, "inputText is required");
    };
    axum::Json(json!({
        "embedding": fake_embedding(text),
        "inputTextTokenCount": text.split_whitespace().count(),
    }))
    .into_response()
}

fn tool_uses(calls: &[(String, Value)]) -> impl Iterator<Item = (String, &String, &Value)> {
    calls
        .iter()
        .enumerate()
        .map(|(i, (name, input))| (format!("tooluse_{i}"), name, input))
}

fn converse(turn: Turn) -> Response {
    let (content, stop_reason, usage) = match turn {
        Turn::Reply {
            tokens,
            stop_reason,
            usage,
        } => (vec![json!({"text": tokens.concat()})], stop_reason, usage),
        Turn::ToolUse(calls) => {
            let blocks = tool_uses(&calls)
                .map(|(id, name, input)| {
                    json!({"toolUse": {"toolUseId": id, "name": name, "input": input}})
                })
                .collect();
            (blocks, "tool_use", (10, 2))
        }
        Turn::Refuse {
            exception,
            status,
            message,
        } => return refusal(exception, status, &message),
        Turn::BreakAfter { .. } => return refusal("InternalServerException", 500, "broken"),
    };
    axum::Json(json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": usage.0, "outputTokens": usage.1, "totalTokens": usage.0 + usage.1},
        "metrics": {"latencyMs": 1},
    }))
    .into_response()
}

/// One event-stream frame: an event of `event_type`, or an exception of that type.
fn frame(message_type: &str, event_type: &str, payload: &Value) -> Bytes {
    let type_header = if message_type == "exception" {
        ":exception-type"
    } else {
        ":event-type"
    };
    let string = |value: &str| HeaderValue::String(value.to_owned().into());
    let message = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":message-type", string(message_type)))
        .add_header(Header::new(type_header, string(event_type)))
        .add_header(Header::new(":content-type", string("application/json")));
    let mut bytes = Vec::new();
    write_message_to(&message, &mut bytes).expect("the frame encodes");
    Bytes::from(bytes)
}

fn event(event_type: &str, payload: Value) -> Bytes {
    frame("event", event_type, &payload)
}

/// Real streams pad events with a `p` field so that their sizes tell nothing.
fn text_delta(text: &str) -> Bytes {
    event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": text}, "p": "abcdefgh"}),
    )
}

fn finish(stop_reason: &str, usage: (u32, u32)) -> [Bytes; 2] {
    [
        event("messageStop", json!({"stopReason": stop_reason})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": usage.0, "outputTokens": usage.1, "totalTokens": usage.0 + usage.1},
                   "metrics": {"latencyMs": 1}}),
        ),
    ]
}

fn converse_stream(turn: Turn) -> Response {
    let start = event("messageStart", json!({"role": "assistant"}));
    let frames: Vec<Bytes> = match turn {
        Turn::Refuse {
            exception,
            status,
            message,
        } => return refusal(exception, status, &message),
        Turn::Reply {
            tokens,
            stop_reason,
            usage,
        } => std::iter::once(start)
            .chain(tokens.iter().map(|t| text_delta(t)))
            .chain([event("contentBlockStop", json!({"contentBlockIndex": 0}))])
            .chain(finish(stop_reason, usage))
            .collect(),
        Turn::ToolUse(calls) => {
            let mut frames = vec![start];
            for (index, (id, name, input)) in tool_uses(&calls).enumerate() {
                let input = input.to_string();
                let (first, second) = input.split_at(input.len() / 2);
                frames.push(event(
                    "contentBlockStart",
                    json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": id, "name": name}}}),
                ));
                for part in [first, second] {
                    frames.push(event(
                        "contentBlockDelta",
                        json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}}),
                    ));
                }
                frames.push(event(
                    "contentBlockStop",
                    json!({"contentBlockIndex": index}),
                ));
            }
            frames.extend(finish("tool_use", (10, 2)));
            frames
        }
        Turn::BreakAfter { tokens, exception } => std::iter::once(start)
            .chain((0..tokens).map(|i| text_delta(&format!("part{i} "))))
            .chain([frame(
                "exception",
                exception,
                &json!({"message": "The stream broke."}),
            )])
            .collect(),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for frame in frames {
            if sender.send(Ok(frame)).await.is_err() {
                return;
            }
            // Frames leave one by one, as the model produces them.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    (
        [("content-type", "application/vnd.amazon.eventstream")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receiver)),
    )
        .into_response()
}

/// Signs the request again with the known credentials, at the time and over the headers its
/// signature claims, and compares: the signature covers the method, path, signed headers and
/// a hash of the body, so any change to them, or another key, fails.
fn verify_signature(uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| format!("no {name} header"))
    };
    let authorization = header("authorization")?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not a SigV4 signature")?;
    let field = |name: &str| {
        fields
            .split(", ")
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("the signature has no {name}"))
    };
    let credential = field("Credential")?;
    let signed_headers = field("SignedHeaders")?;
    let claimed = field("Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, _date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!("malformed credential scope {credential}"));
    };
    if key != ACCESS_KEY_ID || region != REGION || service != "bedrock" {
        return Err(format!("signed for {key} in {region} for {service}"));
    }
    let time = chrono::NaiveDateTime::parse_from_str(header("x-amz-date")?, "%Y%m%dT%H%M%SZ")
        .map_err(|e| e.to_string())?
        .and_utc();
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(time.timestamp() as u64);
    let identity = Identity::from(Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        Some(SESSION_TOKEN.to_owned()),
        None,
        "fake-bedrock",
    ));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("bedrock")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    // The signer adds the host, the date and the token itself, from the URI and the identity.
    let mut covered = Vec::new();
    for name in signed_headers.split(';') {
        if !matches!(name, "host" | "x-amz-date" | "x-amz-security-token") {
            covered.push((name, header(name)?));
        }
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path}", header("host")?);
    let request = SignableRequest::new("POST", url, covered.into_iter(), SignableBody::Bytes(body))
        .map_err(|e| e.to_string())?;
    let (instructions, expected) = sign(request, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let expected_headers = instructions
        .headers()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default();
    if expected != claimed
        || !expected_headers.contains(&format!("SignedHeaders={signed_headers},"))
    {
        return Err("the request's signature does not match".into());
    }
    if header("x-amz-security-token")? != SESSION_TOKEN {
        return Err("wrong session token".into());
    }
    Ok(())
}
