//! What DynamoDB's own latency adds to a chat turn. Every DynamoDB call goes through the test
//! suite's fault proxy (`api_tests::FaultyDynamoDb`), which answers each one a fixed time later
//! (0, 2 and 5 ms: in AWS a call costs single-digit milliseconds, on loopback a fraction of one).
//! For each kind of turn in both dialects, against a zero-delay fake model read directly as the
//! reference, it prints:
//!
//! - added time: to the first token of a stream, or to the whole answer of a non-streamed turn
//!   (through the API minus the same request made to the fake directly, paired per run);
//! - sequential DynamoDB steps before the model request: the longest chain of calls, each
//!   started after the one before it ended, that all ended before the model request arrived;
//! - capacity units per turn (the proxy asks each call for `ReturnConsumedCapacity`), read and
//!   written, and the turn's whole duration, what a function is billed for.

use std::time::{Duration, Instant};

use api_tests::faulty_dynamodb::sequential_steps;
use api_tests::{FakeLlm, FaultyDynamoDb, Script};
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::AppState;
use shared::config::Config;
use shared::local::EmbeddedDynamoDb;
use shared::store::Store;

use crate::counting::is_read;
use crate::stack;
use crate::stats::{Sample, ms};

pub struct Options {
    pub runs: usize,
    pub warmup: usize,
    /// Added to every DynamoDB call, one table each.
    pub latencies_ms: Vec<u64>,
    /// Printed with the figures: which build they are of.
    pub label: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dialect {
    Chatter,
    FreeChat,
    /// FreeChat's assistant, suggesting the user's next message in a chat.
    Assistant,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Delivery {
    Answer,
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Conversation {
    New,
    Existing,
    /// An existing FreeChat chat whose backend has a quota, which a Chatter turn names as its
    /// conversation.
    QuotaChat,
}

#[derive(Debug, Clone, Copy)]
struct Kind {
    dialect: Dialect,
    delivery: Delivery,
    conversation: Conversation,
}

impl Kind {
    fn all() -> Vec<Kind> {
        let mut kinds = Vec::new();
        for dialect in [Dialect::Chatter, Dialect::FreeChat, Dialect::Assistant] {
            let conversations = match dialect {
                Dialect::Assistant => &[Conversation::Existing][..],
                _ => &[
                    Conversation::New,
                    Conversation::Existing,
                    Conversation::QuotaChat,
                ],
            };
            for delivery in [Delivery::Answer, Delivery::Stream] {
                for &conversation in conversations {
                    kinds.push(Kind {
                        dialect,
                        delivery,
                        conversation,
                    });
                }
            }
        }
        kinds
    }

    fn label(self) -> String {
        let route = match (self.dialect, self.delivery) {
            (Dialect::Chatter, Delivery::Answer) => "Chatter /chat",
            (Dialect::Chatter, Delivery::Stream) => "Chatter /streaming",
            (Dialect::FreeChat, Delivery::Answer) => "FreeChat /send",
            (Dialect::FreeChat, Delivery::Stream) => "FreeChat /send/stream",
            (Dialect::Assistant, Delivery::Answer) => "FreeChat /send/assistant",
            (Dialect::Assistant, Delivery::Stream) => "FreeChat /send/stream/assistant",
        };
        let conversation = match self.conversation {
            Conversation::New => "new",
            Conversation::Existing => "existing",
            Conversation::QuotaChat => "quota chat",
        };
        format!("{route}, {conversation}")
    }
}

/// The API on loopback, a user, and the chats the turns go to.
struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
    /// A Chatter conversation and a FreeChat chat that already have messages.
    conversation: String,
    chat: String,
    /// A chat with the same character through a backend with a quota.
    quota_chat: String,
    /// The FreeChat character new chats are started with.
    character_uid: String,
}

impl Api {
    fn post(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
    }

    async fn text(&self, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "status {status}: {text}");
        Ok(text)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let request = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        Ok(serde_json::from_str(&self.text(request).await?)?)
    }

    async fn new_conversation(&self) -> anyhow::Result<String> {
        let created = self
            .text(self.post("/api/v1/chat/conversations", &json!({"title": "Latency"})))
            .await?;
        let created: Value = serde_json::from_str(&created)?;
        Ok(created["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn new_chat(&self) -> anyhow::Result<String> {
        self.text(self.post("/api/v1/chat", &json!({"characterUid": self.character_uid})))
            .await
    }

    /// A character with a default backend (the fake model), and a first chat with it.
    async fn start(client: reqwest::Client, url: String) -> anyhow::Result<Self> {
        let mut api = Self {
            client,
            url,
            token: stack::token("latency-user"),
            conversation: String::new(),
            chat: String::new(),
            quota_chat: String::new(),
            character_uid: String::new(),
        };
        let id = api
            .text(api.post(
                "/api/v1/character",
                &json!({"name": "Bench", "greeting": "Hello."}),
            ))
            .await?;
        let summary = api.get(&format!("/api/v1/character/summary/{id}")).await?;
        api.character_uid = summary["characterUid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        api.text(api.post(
            &format!("/api/v1/character/backend/{}", api.character_uid),
            &json!({"isDefault": true}),
        ))
        .await?;
        api.chat = api.new_chat().await?;
        let quota = api
            .text(api.post(
                &format!("/api/v1/character/backend/{}", api.character_uid),
                &json!({"quotaType": "messages", "initQuota": 1_000_000_000}),
            ))
            .await?;
        api.quota_chat = api
            .text(api.post(
                "/api/v1/chat",
                &json!({"characterUid": api.character_uid, "backendId": quota}),
            ))
            .await?;
        api.conversation = api.new_conversation().await?;
        // Both start with a few messages of history, as an ongoing conversation has.
        for _ in 0..3 {
            api.text(api.turn(Kind::existing_chatter(), &api.conversation))
                .await?;
            api.text(api.turn(Kind::existing_freechat(), &api.chat))
                .await?;
        }
        Ok(api)
    }

    /// The request of one turn of `kind` in conversation or chat `target` (a Chatter turn in
    /// a new conversation names none).
    fn turn(&self, kind: Kind, target: &str) -> reqwest::RequestBuilder {
        let text = "Hello, how are you today?";
        match (kind.dialect, kind.delivery) {
            (Dialect::Chatter, delivery) => {
                let path = match delivery {
                    Delivery::Answer => "/api/v1/chat/chat",
                    Delivery::Stream => "/api/v1/chat/streaming",
                };
                let body = match kind.conversation {
                    Conversation::New => json!({"message": text}),
                    _ => json!({"message": text, "conversation_id": target}),
                };
                self.post(path, &body)
            }
            (Dialect::FreeChat, delivery) => {
                let path = match delivery {
                    Delivery::Answer => format!("/api/v1/chat/send/{target}"),
                    Delivery::Stream => format!("/api/v1/chat/send/stream/{target}"),
                };
                self.post(
                    &path,
                    &json!({"role": "user", "contents": [{"type": "text", "content": text}]}),
                )
            }
            (Dialect::Assistant, delivery) => {
                let route = match delivery {
                    Delivery::Answer => "send/assistant",
                    Delivery::Stream => "send/stream/assistant",
                };
                let path = format!("/api/v1/chat/{route}/{target}/{}", self.character_uid);
                self.client
                    .get(format!("{}{path}", self.url))
                    .bearer_auth(&self.token)
            }
        }
    }
}

impl Kind {
    fn existing_chatter() -> Self {
        Kind {
            dialect: Dialect::Chatter,
            delivery: Delivery::Answer,
            conversation: Conversation::Existing,
        }
    }

    fn existing_freechat() -> Self {
        Kind {
            dialect: Dialect::FreeChat,
            ..Self::existing_chatter()
        }
    }
}

/// Sends `request` and waits for its first token (a stream) or its whole answer; then reads
/// the rest. Returns (time to first token or answer, time to the end).
async fn time(
    request: reqwest::RequestBuilder,
    delivery: Delivery,
) -> anyhow::Result<(Duration, Duration)> {
    let sent = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    anyhow::ensure!(status.is_success(), "status {status}");
    let mut first = None;
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        let at = Instant::now();
        buffer.push_str(std::str::from_utf8(&chunk?)?);
        if delivery == Delivery::Stream && first.is_none() && is_token(&buffer) {
            first = Some(at - sent);
        }
    }
    let whole = sent.elapsed();
    Ok((first.unwrap_or(whole), whole))
}

/// Whether an event carrying the answer's text has arrived: Chatter's `token` event, or a
/// FreeChat frame with content (neither dialect's other events carry `w0`, the fake's first
/// token).
fn is_token(buffer: &str) -> bool {
    buffer.contains("w0 ")
}

/// The fake's own answer, streamed or not: the reference.
fn direct(client: &reqwest::Client, base_url: &str, delivery: Delivery) -> reqwest::RequestBuilder {
    client.post(format!("{base_url}/chat/completions")).json(
        &json!({"model": "bench-model", "stream": delivery == Delivery::Stream,
                      "messages": [{"role": "user", "content": "Hello, how are you today?"}]}),
    )
}

#[derive(Default)]
struct Figures {
    added: Vec<Duration>,
    whole: Vec<Duration>,
    steps: Vec<usize>,
    read_units: f64,
    write_units: f64,
    calls: usize,
    turns: usize,
}

fn median(values: &mut [usize]) -> usize {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    stack::init_tracing();
    shared::install_crypto_provider();
    let llm = FakeLlm::start().await;
    llm.always(Script::paced(8, Duration::ZERO));
    let dynamodb = EmbeddedDynamoDb::start(None).await?;
    let proxy = FaultyDynamoDb::start(dynamodb.endpoint()).await;
    proxy.count_capacity();
    let config = Config::from_vars(&stack::function_vars(&proxy.endpoint, &llm.base_url))?;
    let store = Store::connect(&config).await;
    store.ensure_table().await?;
    let state = AppState::with_store(config, store)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let router = shared::api::all_groups(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let api = Api::start(client.clone(), url).await?;

    println!("{}", crate::machine::describe());
    println!(
        "DynamoDB latency: {}; {} runs per kind of turn after {} warm-up runs, kinds in turn, \
         each paired with the fake model asked directly; 8 tokens, no delay",
        opts.label, opts.runs, opts.warmup
    );
    for &latency_ms in &opts.latencies_ms {
        proxy.set_latency(Duration::from_millis(latency_ms));
        let kinds = Kind::all();
        let mut figures: Vec<Figures> = kinds.iter().map(|_| Figures::default()).collect();
        for run in 0..opts.warmup + opts.runs {
            for (i, kind) in kinds.iter().enumerate() {
                let target = match (kind.conversation, kind.dialect) {
                    (Conversation::New, Dialect::Chatter) => String::new(),
                    (Conversation::New, _) => api.new_chat().await?,
                    (Conversation::Existing, Dialect::Chatter) => api.conversation.clone(),
                    (Conversation::Existing, _) => api.chat.clone(),
                    (Conversation::QuotaChat, _) => api.quota_chat.clone(),
                };
                let reference_first = run % 2 == 0;
                let mut reference = Duration::ZERO;
                if reference_first {
                    reference = time(direct(&client, &llm.base_url, kind.delivery), kind.delivery)
                        .await?
                        .0;
                }
                proxy.take_calls();
                llm.take_request_times();
                let (through, whole) = time(api.turn(*kind, &target), kind.delivery).await?;
                let calls = proxy.take_calls();
                let model = llm.take_request_times().first().copied();
                if !reference_first {
                    reference = time(direct(&client, &llm.base_url, kind.delivery), kind.delivery)
                        .await?
                        .0;
                    llm.take_request_times();
                }
                if run < opts.warmup {
                    continue;
                }
                let model = model
                    .ok_or_else(|| anyhow::anyhow!("{} made no model request", kind.label()))?;
                let f = &mut figures[i];
                f.added.push(through.saturating_sub(reference));
                f.whole.push(whole);
                f.steps.push(sequential_steps(&calls, model));
                f.calls += calls.len();
                f.turns += 1;
                for call in &calls {
                    if is_read(&call.operation) {
                        f.read_units += call.capacity;
                    } else {
                        f.write_units += call.capacity;
                    }
                }
            }
        }
        println!();
        println!("+{latency_ms} ms per DynamoDB call ({}):", opts.label);
        println!(
            "{:<42} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6} {:>6} {:>10}",
            "turn (ms)", "added p50", "p10", "p90", "steps", "calls", "RCU", "WCU", "whole p50"
        );
        for (kind, f) in kinds.iter().zip(&mut figures) {
            let added = Sample::new(std::mem::take(&mut f.added));
            let whole = Sample::new(std::mem::take(&mut f.whole));
            let turns = f.turns.max(1) as f64;
            println!(
                "{:<42} {:>9} {:>9} {:>9} {:>6} {:>6.1} {:>6.2} {:>6.2} {:>10}",
                kind.label(),
                ms(added.p50()),
                ms(added.percentile(10.0)),
                ms(added.percentile(90.0)),
                median(&mut f.steps),
                f.calls as f64 / turns,
                f.read_units / turns,
                f.write_units / turns,
                ms(whole.p50()),
            );
        }
    }
    Ok(())
}
