//! Starts the real stack in-process for tests: an embedded DynamoDB on a random port, the
//! API on another, and a client that speaks HTTP to it.

pub mod emf;
pub mod fake_bedrock;
pub mod fake_llm;
pub mod faulty_dynamodb;
pub mod lambda_emulator;
pub mod mcp_server;
pub mod moto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use shared::AppState;
use shared::config::{Config, Secret};
use shared::domain::{Message, MessageDraft, MessageRole};
use shared::local::EmbeddedDynamoDb;
use shared::store::Store;

pub use fake_bedrock::FakeBedrock;
pub use fake_llm::{FakeLlm, Script, assert_general_chat_template, prompt_messages};
pub use faulty_dynamodb::{Call, Fault, FaultyDynamoDb};

/// The HS256 secret the tests and the event fixtures share.
pub const TEST_SECRET: &str = "fixture-secret-0123456789abcdef0123456789";

/// The variables a test stack starts from; `spawn_with` may add or override any of them.
pub fn base_vars(endpoint: &str) -> HashMap<String, String> {
    HashMap::from([
        ("TABLE_NAME".into(), "chat-test".into()),
        ("DYNAMODB_ENDPOINT".into(), endpoint.into()),
        ("JWT_SECRET".into(), TEST_SECRET.into()),
        ("RATE_LIMIT_PER_MINUTE".into(), "100000".into()),
        ("RATE_LIMIT_PER_HOUR".into(), "1000000".into()),
        ("CORS_ALLOW_ORIGINS".into(), "https://app.example".into()),
        // A title is one more model call beside a turn's answer: off unless a test asks,
        // so that scripted answers and counted calls stay each test's own.
        ("AUTO_TITLE".into(), "false".into()),
    ])
}

/// A stack whose model is a fake serving `fake-model` at known prices (1.0 per 1K prompt
/// tokens, 2.0 per 1K completion tokens), configured further by `extra`; returns both.
pub async fn app_with_model(extra: &[(&str, &str)]) -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start().await;
    let mut vars = vec![
        ("LLM_BASE_URL", fake.base_url.as_str()),
        ("LLM_MODEL", "fake-model"),
        ("LLM_PROMPT_PRICE_PER_1K", "1.0"),
        ("LLM_COMPLETION_PRICE_PER_1K", "2.0"),
    ];
    vars.extend_from_slice(extra);
    (TestApp::spawn_with(&vars).await, fake)
}

pub struct TestApp {
    pub base_url: String,
    pub state: AppState,
    pub http: reqwest::Client,
    _dynamodb: Option<Arc<EmbeddedDynamoDb>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts a stack whose configuration differs from the default by `overrides`.
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        let dynamodb = EmbeddedDynamoDb::start(None)
            .await
            .expect("embedded DynamoDB starts");
        let endpoint = dynamodb.endpoint().to_owned();
        Self::spawn_over(Some(Arc::new(dynamodb)), &endpoint, overrides).await
    }

    /// A second stack over this one's table, as a second Lambda instance would be: its own
    /// state, store and in-process locks, the same DynamoDB.
    pub async fn spawn_beside(&self, overrides: &[(&str, &str)]) -> Self {
        let endpoint = self
            .state
            .config
            .dynamodb_endpoint
            .clone()
            .expect("test stacks have an endpoint");
        Self::spawn_over(self._dynamodb.clone(), &endpoint, overrides).await
    }

    /// A second instance over this one's table, asking `fake` as its model: a second Lambda
    /// instance.
    pub async fn beside_with_model(&self, fake: &FakeLlm) -> Self {
        self.spawn_beside(&[
            ("LLM_BASE_URL", fake.base_url.as_str()),
            ("LLM_MODEL", "fake-model"),
        ])
        .await
    }

    /// A stack whose DynamoDB endpoint refuses every connection (nothing listens there).
    pub async fn spawn_without_dynamodb(overrides: &[(&str, &str)]) -> Self {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        Self::spawn_over(None, &endpoint, overrides).await
    }

    /// Starts a stack that reaches its DynamoDB through a proxy that can inject faults.
    pub async fn spawn_with_faults(overrides: &[(&str, &str)]) -> (Self, FaultyDynamoDb) {
        let dynamodb = EmbeddedDynamoDb::start(None)
            .await
            .expect("embedded DynamoDB starts");
        let proxy = FaultyDynamoDb::start(dynamodb.endpoint()).await;
        (
            Self::spawn_over(Some(Arc::new(dynamodb)), &proxy.endpoint, overrides).await,
            proxy,
        )
    }

    async fn spawn_over(
        dynamodb: Option<Arc<EmbeddedDynamoDb>>,
        endpoint: &str,
        overrides: &[(&str, &str)],
    ) -> Self {
        let mut vars = base_vars(endpoint);
        for (k, v) in overrides {
            vars.insert((*k).into(), (*v).into());
        }
        let config = Config::from_vars(&vars).expect("test configuration is valid");
        let store = Store::connect(&config).await;
        if dynamodb.is_some() {
            store.ensure_table().await.expect("table is created");
        }
        let state = AppState::with_store(config, store).expect("the stack starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let app = shared::api::all_groups(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _dynamodb: dynamodb,
        }
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    pub fn token(&self, user_id: &str) -> String {
        shared::auth::issue_token(
            &Secret::new(TEST_SECRET),
            user_id,
            Duration::from_secs(3600),
        )
    }

    /// A request as `user_id`.
    pub fn request(&self, method: Method, path: &str, user_id: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(self.token(user_id))
    }

    pub async fn get(&self, path: &str, user_id: &str) -> Reply {
        Reply::from(
            self.request(Method::GET, path, user_id)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn delete(&self, path: &str, user_id: &str) -> Reply {
        Reply::from(
            self.request(Method::DELETE, path, user_id)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn post(&self, path: &str, user_id: &str, body: &Value) -> Reply {
        let request = self.request(Method::POST, path, user_id).json(body);
        Reply::from(request.send().await.unwrap()).await
    }

    pub async fn put(&self, path: &str, user_id: &str, body: &Value) -> Reply {
        let request = self.request(Method::PUT, path, user_id).json(body);
        Reply::from(request.send().await.unwrap()).await
    }

    /// Uploads a plain-text document for `user_id` and returns its id.
    pub async fn upload_text(&self, user_id: &str, title: &str, text: &str) -> String {
        let boundary = "api-tests-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"doc.txt\"\r\n\
             Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
        );
        let request = self
            .request(Method::POST, "/api/v1/documents/upload", user_id)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let reply = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// A FreeChat character named `name` of `user_id`'s, with a default backend, and the
    /// user's chat with it: the chat's id.
    pub async fn start_freechat_chat(&self, user_id: &str, name: &str) -> String {
        let created = self
            .post(
                "/api/v1/character",
                user_id,
                &serde_json::json!({ "name": name }),
            )
            .await;
        let character = created.body.as_u64().unwrap();
        let summary = self
            .get(&format!("/api/v1/character/summary/{character}"), user_id)
            .await;
        let uid = summary.body["characterUid"].as_str().unwrap().to_owned();
        let backend = self
            .post(
                &format!("/api/v1/character/backend/{uid}"),
                user_id,
                &serde_json::json!({}),
            )
            .await;
        assert_eq!(backend.status, StatusCode::OK, "{}", backend.text);
        let chat = self
            .post(
                "/api/v1/chat",
                user_id,
                &serde_json::json!({ "characterUid": uid }),
            )
            .await;
        assert_eq!(chat.status, StatusCode::OK, "{}", chat.text);
        chat.text
    }

    /// The stored messages of `conversation_id`, as `user_id` reads them from the Chatter API.
    pub async fn stored_messages(&self, user_id: &str, conversation_id: &str) -> Vec<Value> {
        let reply = self
            .get(
                &format!("/api/v1/chat/conversations/{conversation_id}/messages"),
                user_id,
            )
            .await;
        reply.body.as_array().expect("a list of messages").clone()
    }

    /// The performance statistics `user_id` reads (the body of a 200).
    pub async fn performance_stats(&self, user_id: &str) -> Value {
        let reply = self.get("/api/v1/chat/performance/stats", user_id).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    /// Creates a conversation for `user_id` and returns its id.
    pub async fn create_conversation(&self, user_id: &str, title: &str) -> String {
        let reply = self
            .post(
                "/api/v1/chat/conversations",
                user_id,
                &serde_json::json!({ "title": title }),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Stores `exchanges` questions and answers after the last message of `user_id`'s
    /// conversation (or chat), "q1", "a1", "q2", ..., each following the one before, straight
    /// into the store: a long history without a model call each. The stored messages, oldest
    /// first.
    pub async fn store_exchanges(
        &self,
        user_id: &str,
        conversation_id: &str,
        exchanges: usize,
    ) -> Vec<Message> {
        self.store_branch(user_id, conversation_id, None, "", exchanges)
            .await
    }

    /// [`Self::store_exchanges`] after `after` (the conversation's active message when
    /// `None`), each content prefixed with `label`: "{label}q1", "{label}a1", ...
    pub async fn store_branch(
        &self,
        user_id: &str,
        conversation_id: &str,
        after: Option<&Message>,
        label: &str,
        exchanges: usize,
    ) -> Vec<Message> {
        let mut record = self
            .store()
            .conversation(user_id, conversation_id)
            .await
            .unwrap();
        let drafts: Vec<MessageDraft> = (1..=exchanges)
            .flat_map(|i| {
                [
                    MessageDraft::new(MessageRole::User, format!("{label}q{i}")),
                    MessageDraft::new(MessageRole::Assistant, format!("{label}a{i}")),
                ]
            })
            .collect();
        // As a turn would, the first message follows one that was read: so it knows its lineage.
        let active = match (after, &record.conversation.active_message_id) {
            (None, Some(active)) => self
                .store()
                .message_by_id(conversation_id, active)
                .await
                .unwrap(),
            _ => None,
        };
        let after = after.or(active.as_ref());
        let mut messages: Vec<Message> = Vec::new();
        // A transaction holds at most 100 items.
        for batch in drafts.chunks(40) {
            let mut batch = batch.to_vec();
            if let Some(previous) = messages.last().or(after) {
                batch[0] = batch[0].clone().following(previous);
            }
            let (next, stored) = self.store().append_messages(record, batch).await.unwrap();
            record = next;
            messages.extend(stored);
        }
        messages
    }
}

/// A finished response: status, headers, and the body as text and parsed as JSON (or `Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Asserts that this is an RFC 9457 problem with the given status.
    pub fn assert_problem(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.header("content-type"), "application/problem+json");
        assert_eq!(self.body["status"], status);
        for field in ["type", "title", "detail", "instance"] {
            assert!(
                self.body[field].is_string(),
                "problem lacks {field}: {}",
                self.body
            );
        }
    }
}

/// Waits (up to ten seconds) until `done` holds.
pub async fn eventually<F: std::future::Future<Output = bool>>(mut done: impl FnMut() -> F) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the condition never held");
}

/// The `data:` payloads of a Server-Sent Events body, each parsed as JSON (else kept as text,
/// like `[DONE]`).
pub fn sse_frames(body: &str) -> Vec<Value> {
    body.split("\n\n")
        .filter_map(|event| event.lines().find_map(|line| line.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.into())))
        .collect()
}

/// The `id:` of each event of a Server-Sent Events body that has one, in order.
pub fn sse_ids(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.lines().find_map(|line| line.strip_prefix("id: ")))
        .map(str::to_owned)
        .collect()
}
