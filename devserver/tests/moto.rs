//! The local run over another DynamoDB named by `DYNAMODB_ENDPOINT`: moto server, a second
//! implementation, so that a request only the embedded emulator accepts fails here. Two local
//! runs over one endpoint are two Lambda instances over one table.

mod support;

use api_tests::moto::MotoServer;
use api_tests::{FakeLlm, Reply, Script};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{DataDir, Devserver};

/// Speaks to one devserver as one user.
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    fn new(server: &Devserver, user: &str) -> Self {
        shared::install_crypto_provider();
        Self {
            http: reqwest::Client::new(),
            url: server.url.clone(),
            token: support::token(user),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        Reply::from(request.send().await.expect("the devserver answers")).await
    }

    /// A `POST` with an `Idempotency-Key`; its reply.
    async fn post_once(&self, path: &str, key: &str, body: &Value) -> Reply {
        let request = self
            .request(Method::POST, path)
            .header("idempotency-key", key)
            .json(body);
        Reply::from(request.send().await.expect("the devserver answers")).await
    }

    /// A `POST` that must succeed; its reply.
    async fn post(&self, path: &str, body: Value) -> Reply {
        let reply = self.send(Method::POST, path, Some(&body)).await;
        assert!(reply.status.is_success(), "POST {path}: {}", reply.text);
        reply
    }

    /// A `GET` that must succeed; its reply.
    async fn get(&self, path: &str) -> Reply {
        let reply = self.send(Method::GET, path, None).await;
        assert_eq!(reply.status, StatusCode::OK, "GET {path}: {}", reply.text);
        reply
    }

    /// The `data:` frames of a streamed reply, parsed where they are JSON.
    async fn stream(&self, path: &str, body: Value) -> Vec<Value> {
        let reply = self.post(path, body).await;
        assert_eq!(reply.header("content-type"), "text/event-stream");
        reply
            .text
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap_or(Value::String(data.into())))
            .collect()
    }

    /// Uploads a plain-text document; returns its id.
    async fn upload(&self, title: &str, text: &str) -> String {
        let boundary = "moto-test-boundary";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n{title}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"log.txt\"\r\n\
             Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
        );
        let request = self
            .http
            .post(format!("{}/api/v1/documents/upload", self.url))
            .bearer_auth(&self.token)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let reply = Reply::from(request.send().await.expect("the devserver answers")).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// A FreeChat character with a default backend, and this user's chat with it: the chat's id.
    async fn chat_with_a_character(&self, name: &str) -> String {
        let id = self
            .post(
                "/api/v1/character",
                json!({"name": name, "greeting": "Ahoy!"}),
            )
            .await
            .text;
        let summary = self.get(&format!("/api/v1/character/summary/{id}")).await;
        let uid = summary.body["characterUid"].as_str().unwrap().to_owned();
        self.post(
            &format!("/api/v1/character/backend/{uid}"),
            json!({"isDefault": true}),
        )
        .await;
        self.post("/api/v1/chat", json!({"characterUid": uid}))
            .await
            .text
    }
}

/// A FreeChat message.
fn say(text: &str) -> Value {
    json!({"role": "user", "contents": [{"type": "text", "content": text}]})
}

/// moto's table, read without a devserver: what the devservers wrote is there, not in an
/// embedded DynamoDB of their own.
async fn table_in(moto: &MotoServer) -> shared::store::Store {
    let vars = [
        ("TABLE_NAME", "chat"),
        ("DYNAMODB_ENDPOINT", moto.endpoint.as_str()),
        ("JWT_SECRET", support::SECRET),
    ];
    let vars = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    shared::store::Store::connect(&shared::config::Config::from_vars(&vars).unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_run_serves_both_dialects_over_the_dynamodb_its_endpoint_names() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let fake = FakeLlm::start().await;
    fake.always(Script::reply("Fair winds to you"));
    // A data directory of its own, so that nothing lands in the repository's `.data`.
    let data = DataDir::new("moto");
    let server = Devserver::start(
        &data.0,
        &[
            ("DYNAMODB_ENDPOINT", &moto.endpoint),
            ("LLM_BASE_URL", &fake.base_url),
        ],
    );
    let alice = Client::new(&server, "alice");

    let conversation = alice
        .post("/api/v1/chat/conversations", json!({"title": "Over moto"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = alice
        .post(
            "/api/v1/chat/chat",
            json!({"message": "Hello", "conversation_id": conversation}),
        )
        .await;
    assert_eq!(answer.body["message"]["content"], "Fair winds to you");
    let frames = alice
        .stream(
            "/api/v1/chat/streaming",
            json!({"message": "And again", "conversation_id": conversation}),
        )
        .await;
    assert!(
        frames.iter().any(|f| f["type"] == "end"),
        "no end chunk: {frames:?}"
    );
    assert!(!frames.iter().any(|f| f["type"] == "error"), "{frames:?}");
    let once = json!({"message": "A new one"});
    let new = alice.post_once("/api/v1/chat/chat", "key-1", &once).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    let again = alice.post_once("/api/v1/chat/chat", "key-1", &once).await;
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, new.body);
    let messages = alice
        .get(&format!(
            "/api/v1/chat/conversations/{conversation}/messages"
        ))
        .await;
    let roles: Vec<&str> = messages
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    let listed = alice.get("/api/v1/chat/conversations").await;
    assert_eq!(listed.body["total"], 2, "{}", listed.text);
    let stored = table_in(&moto)
        .await
        .conversation("alice", &conversation)
        .await;
    assert_eq!(stored.unwrap().conversation.title, "Over moto");

    let chat = alice.chat_with_a_character("Jack").await;
    let sent = alice
        .post(&format!("/api/v1/chat/send/{chat}"), say("Ahoy"))
        .await;
    assert_eq!(
        sent.body["message"]["contents"][0]["content"], "Fair winds to you",
        "{}",
        sent.text
    );
    let frames = alice
        .stream(&format!("/api/v1/chat/send/stream/{chat}"), say("Hoist"))
        .await;
    assert_eq!(frames.last().unwrap()["finishReason"], "stop", "{frames:?}");
    let history = alice.get(&format!("/api/v1/chat/messages/{chat}")).await;
    assert_eq!(
        history.body.as_array().unwrap().len(),
        5,
        "{}",
        history.text
    );
    alice
        .post(
            &format!("/api/v1/chat/messages/rollback/{chat}/2"),
            json!({}),
        )
        .await;
    let history = alice.get(&format!("/api/v1/chat/messages/{chat}")).await;
    assert_eq!(
        history.body.as_array().unwrap().len(),
        3,
        "{}",
        history.text
    );

    let document = alice
        .upload("Log", "The keeper counts ships at dawn.")
        .await;
    let found = alice
        .post("/api/v1/documents/search", json!({"query": "keeper ships"}))
        .await;
    assert_eq!(
        found.body["results"][0]["document_id"], document,
        "{}",
        found.text
    );

    let path = format!("/api/v1/chat/conversations/{conversation}");
    let deleted = alice.send(Method::DELETE, &path, None).await;
    assert!(deleted.status.is_success(), "{}", deleted.text);
    let gone = alice.send(Method::GET, &path, None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_local_runs_over_one_endpoint_see_each_others_writes() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let fake = FakeLlm::start().await;
    fake.always(Script::reply("Aye"));
    let data = [DataDir::new("moto"), DataDir::new("moto")];
    let start = |data: &DataDir| {
        Devserver::start(
            &data.0,
            &[
                ("DYNAMODB_ENDPOINT", moto.endpoint.as_str()),
                ("LLM_BASE_URL", fake.base_url.as_str()),
            ],
        )
    };
    // Started together, both find no table and try to create it.
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| start(&data[0]));
        let second = s.spawn(|| start(&data[1]));
        (first.join().unwrap(), second.join().unwrap())
    });
    let (on_first, on_second) = (Client::new(&first, "alice"), Client::new(&second, "alice"));

    let conversation = on_first
        .post("/api/v1/chat/conversations", json!({"title": "Shared"}))
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = on_second
        .get(&format!("/api/v1/chat/conversations/{conversation}"))
        .await;
    assert_eq!(read.body["title"], "Shared");
    // Turns alternate between the instances, each continuing from what the other stored. They
    // are not sent at once: moto's transactions are not isolated from each other (one that
    // fails puts back a copy of the whole table taken when it began, undoing what others wrote
    // meanwhile), so concurrent writers are proved over the embedded DynamoDB instead
    // (tests/api/concurrency.rs).
    for i in 0..6 {
        let client = if i % 2 == 0 { &on_first } else { &on_second };
        let body = json!({"message": format!("turn {i}"), "conversation_id": conversation});
        client.post("/api/v1/chat/chat", body).await;
    }
    let messages = on_first
        .get(&format!(
            "/api/v1/chat/conversations/{conversation}/messages"
        ))
        .await;
    let sequence: Vec<u64> = messages
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        sequence,
        (1..=12).collect::<Vec<u64>>(),
        "{}",
        messages.text
    );

    let chat = on_second.chat_with_a_character("Jack").await;
    let chats = on_first.get("/api/v1/chat").await;
    assert_eq!(chats.body[0]["context"]["chatId"], chat, "{}", chats.text);
    let sent = on_first
        .post(&format!("/api/v1/chat/send/{chat}"), say("Ahoy"))
        .await;
    assert_eq!(
        sent.body["message"]["contents"][0]["content"], "Aye",
        "{}",
        sent.text
    );
}
