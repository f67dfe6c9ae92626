//! The FreeChat dialect: characters, backends and chat sessions over the same store as Chatter.

use api_tests::{FakeLlm, Reply, Script, TestApp, app_with_model, prompt_messages, sse_frames};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod assistant;
mod branches;
mod characters;
mod chats;
/// The audit of the dialect against its contract and FreeChat's behaviour, using the helpers
/// below.
mod contract;
mod history;
mod quotas;
/// The dialect under parallel requests from two instances.
mod races;
mod sending;
/// The chat's snapshot of its character and backend.
mod snapshot;

const CHARACTER: &str = "/api/v1/character";
const CHAT: &str = "/api/v1/chat";

/// A character of `user` made from `body`: its numeric id and its uid.
async fn character(app: &TestApp, user: &str, body: Value) -> (u64, String) {
    let created = app.post(CHARACTER, user, &body).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let id = created.body.as_u64().expect("a numeric character id");
    let summary = app.get(&format!("{CHARACTER}/summary/{id}"), user).await;
    let uid = summary.body["characterUid"].as_str().unwrap().to_owned();
    (id, uid)
}

/// A private character named Jack with a profile, a greeting and one default backend; its
/// uid and the backend's id.
async fn jack(app: &TestApp, user: &str, backend: Value) -> (u64, String, String) {
    let (id, uid) = character(
        app,
        user,
        json!({"name": "Jack", "nickname": "Captain", "profile": "A sailor of the northern seas.",
               "greeting": "Ahoy there!", "chatStyle": "Short and salty.", "defaultScene": "On deck."}),
    )
    .await;
    let backend = add_backend(app, user, &uid, backend).await;
    (id, uid, backend)
}

/// `user`'s Jack (see [`jack`]) and a chat started with him: the character's uid and the
/// chat's id.
async fn chat_with_jack(app: &TestApp, user: &str) -> (String, String) {
    let (_, uid, _) = jack(app, user, json!({})).await;
    let chat = start(app, user, json!({"characterUid": uid})).await;
    (uid, chat)
}

/// Updates character `id` as `user` with `body`; returns the reply.
async fn update_character(app: &TestApp, user: &str, id: u64, body: &Value) -> Reply {
    app.put(&format!("{CHARACTER}/{id}"), user, body).await
}

/// Updates alice's Jack (character `id`), keeping his name, to set `field` to `value`.
async fn update_jack(app: &TestApp, id: u64, field: &str, value: &str) {
    let reply = update_character(app, "alice", id, &json!({"name": "Jack", field: value})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

/// Adds a backend made from `body` to character `uid`; returns its id.
async fn add_backend(app: &TestApp, user: &str, uid: &str, body: Value) -> String {
    let added = app
        .post(&format!("{CHARACTER}/backend/{uid}"), user, &body)
        .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    assert!(added.header("content-type").starts_with("text/plain"));
    added.text
}

/// Starts (or finds) `user`'s chat as `body` says; returns the chat's id.
async fn start(app: &TestApp, user: &str, body: Value) -> String {
    let started = app.post(CHAT, user, &body).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert!(started.header("content-type").starts_with("text/plain"));
    started.text
}

/// Sends `text` as `user` into `chat`; returns the reply.
async fn send(app: &TestApp, user: &str, chat: &str, text: &str) -> Reply {
    app.post(
        &format!("{CHAT}/send/{chat}"),
        user,
        &json!({"role": "user", "contents": [{"type": "text", "content": text}]}),
    )
    .await
}

/// Sends and expects the character's answer.
async fn talk(app: &TestApp, fake: &FakeLlm, user: &str, chat: &str, text: &str, answer: &str) {
    fake.push(Script::reply(answer));
    let reply = send(app, user, chat, text).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
}

/// alice's first `rounds` exchanges in `chat`: she asks "q1", Jack answers "a1", and so on.
async fn talk_rounds(app: &TestApp, fake: &FakeLlm, chat: &str, rounds: usize) {
    for i in 1..=rounds {
        talk(app, fake, "alice", chat, &format!("q{i}"), &format!("a{i}")).await;
    }
}

/// FreeChat's four kinds of turn in `chat` with the character `uid`: send and its stream with
/// `said`, the assistant and its stream.
fn turn_routes<'a>(
    chat: &str,
    uid: &str,
    said: &'a Value,
) -> [(Method, String, Option<&'a Value>); 4] {
    [
        (Method::POST, format!("{CHAT}/send/{chat}"), Some(said)),
        (
            Method::POST,
            format!("{CHAT}/send/stream/{chat}"),
            Some(said),
        ),
        (
            Method::GET,
            format!("{CHAT}/send/assistant/{chat}/{uid}"),
            None,
        ),
        (
            Method::GET,
            format!("{CHAT}/send/stream/assistant/{chat}/{uid}"),
            None,
        ),
    ]
}

/// Sends a request whose answer is an event stream; returns the reply and its frames.
async fn stream(
    app: &TestApp,
    method: Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> (Reply, Vec<Value>) {
    let reply = send_as(app, method, path, user, body).await;
    let frames = sse_frames(&reply.text);
    (reply, frames)
}

/// Streams the assistant's suggestion, written by character `helper`, for alice's `chat`;
/// returns the reply and its frames.
async fn stream_assistant(app: &TestApp, chat: &str, helper: &str) -> (Reply, Vec<Value>) {
    let path = format!("{CHAT}/send/stream/assistant/{chat}/{helper}");
    stream(app, Method::GET, &path, "alice", None).await
}

/// Sends a request as `user`, with `body` as JSON when there is one; returns the reply.
async fn send_as(
    app: &TestApp,
    method: Method,
    path: &str,
    user: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = app.request(method, path, user);
    if let Some(body) = body {
        request = request.json(&body);
    }
    Reply::from(request.send().await.unwrap()).await
}

/// The records of `chat` as `user` lists them, the whole history.
async fn history(app: &TestApp, user: &str, chat: &str) -> Value {
    app.get(&format!("{CHAT}/messages/{chat}"), user).await.body
}

/// The debug records of `chat` (with `ext`) as `user` lists them, the whole history.
async fn debug_history(app: &TestApp, user: &str, chat: &str) -> Value {
    app.get(&format!("{CHAT}/messages/debug/{chat}"), user)
        .await
        .body
}

/// The summary of character `id` as `user` reads it.
async fn character_summary(app: &TestApp, user: &str, id: u64) -> Value {
    app.get(&format!("{CHARACTER}/summary/{id}"), user)
        .await
        .body
}

/// The backends of alice's character `uid`, as she lists them.
async fn backends_of(app: &TestApp, uid: &str) -> Value {
    app.get(&format!("{CHARACTER}/backends/{uid}"), "alice")
        .await
        .body
}

/// The ids of the backends a list marks as default.
fn default_backend_ids(backends: &Value) -> Vec<&Value> {
    backends
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["isDefault"] == true)
        .map(|b| &b["backendId"])
        .collect()
}

/// Asserts a FreeChat stream that ran to its end: a 200 without `[DONE]`, four frames that
/// each hold only a delta of `answer`, and a last frame with the whole `answer`, `stop` and
/// the fake's 14 tokens; returns that last frame.
fn assert_whole_stream<'a>(reply: &Reply, frames: &'a [Value], answer: &str) -> &'a Value {
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!reply.text.contains("[DONE]"), "{}", reply.text);
    let (last, deltas) = frames.split_last().unwrap();
    assert_eq!(deltas.len(), 4);
    for frame in deltas {
        assert_eq!(
            frame.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["text"]
        );
    }
    let text: String = deltas.iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert_eq!(text, answer);
    assert!(last.get("text").is_none());
    assert_eq!(last["message"]["contents"][0]["content"], answer);
    assert_eq!(last["finishReason"], "stop");
    assert_eq!(last["tokenUsage"]["totalTokenCount"], 14);
    last
}

/// The text of each record.
fn texts(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["message"]["contents"][0]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}
