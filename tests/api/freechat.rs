//! The FreeChat dialect: characters, backends and chat sessions over the same store as Chatter.

use api_tests::{FakeLlm, Reply, Script, TestApp, app_with_model, sse_frames};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The audit of the dialect against its contract and FreeChat's behaviour, using the helpers
/// below.
#[path = "freechat_contract.rs"]
mod contract;
/// The dialect under parallel requests from two instances.
#[path = "freechat_races.rs"]
mod races;

#[path = "freechat_branches.rs"]
mod branches;

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

/// The (role, content) of each message a request to the model carried.
fn prompt_of(request: &Value) -> Vec<(String, String)> {
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

#[tokio::test]
async fn a_new_character_gets_the_next_numeric_id_and_reads_back_as_written() {
    let app = TestApp::spawn().await;
    let (first, _) = character(&app, "alice", json!({"name": "One"})).await;
    let (second, uid) = character(
        &app,
        "alice",
        json!({"name": "  Jack  ", "description": "A sailor", "profile": "Hello world. I'm Jack",
               "tags": ["test", "demo"], "visibility": "public", "lang": "en", "draft": "wip"}),
    )
    .await;
    assert_eq!(second, first + 1);

    let summary = app
        .get(&format!("{CHARACTER}/summary/{second}"), "alice")
        .await;
    let s = &summary.body;
    assert_eq!(s["characterId"], second);
    assert_eq!(s["characterUid"], uid);
    assert_eq!(s["name"], "Jack");
    assert_eq!(s["description"], "A sailor");
    assert_eq!(s["visibility"], "public");
    assert_eq!(s["tags"], json!(["test", "demo"]));
    assert_eq!(s["username"], "alice");
    assert_eq!(s["version"], 1);
    assert!(s["gmtCreate"].is_string() && s.get("profile").is_none());

    let details = app
        .get(&format!("{CHARACTER}/details/{second}"), "alice")
        .await;
    assert_eq!(details.body["profile"], "Hello world. I'm Jack");
    assert_eq!(details.body["draft"], "wip");
    assert_eq!(details.body["backends"], json!([]));
}

#[tokio::test]
async fn an_update_changes_the_fields_sent_keeps_the_rest_and_an_empty_text_clears_one() {
    let app = TestApp::spawn().await;
    let (id, _) = character(
        &app,
        "alice",
        json!({"name": "Jack", "description": "Old", "profile": "Keep me", "greeting": "Hi"}),
    )
    .await;
    let updated = update_character(
        &app,
        "alice",
        id,
        &json!({"name": "Jack II", "description": "New", "greeting": "", "visibility": "public"}),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body, json!(true));
    let details = app
        .get(&format!("{CHARACTER}/details/{id}"), "alice")
        .await
        .body;
    assert_eq!(details["name"], "Jack II");
    assert_eq!(details["description"], "New");
    assert_eq!(details["profile"], "Keep me");
    assert!(details.get("greeting").is_none());
    assert_eq!(details["visibility"], "public");
}

#[tokio::test]
async fn invalid_characters_are_400_naming_every_field_at_fault() {
    let app = TestApp::spawn().await;
    let missing = app.post(CHARACTER, "alice", &json!({"profile": "x"})).await;
    // Spring's status for a request that fails validation, with the same problem body.
    missing.assert_problem(400);
    assert_eq!(missing.body["type"], "/problems/validation-error");
    assert_eq!(missing.body["title"], "Bad Request");
    assert_eq!(missing.body["errors"][0]["loc"], json!(["body", "name"]));

    let wrong = app
        .post(
            CHARACTER,
            "alice",
            &json!({"name": "x", "visibility": "everyone"}),
        )
        .await;
    wrong.assert_problem(400);
    assert_eq!(
        wrong.body["errors"][0]["loc"],
        json!(["body", "visibility"])
    );

    let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let many = app
        .post(
            CHARACTER,
            "alice",
            &json!({"name": " ", "tags": tags, "nickname": "n".repeat(101)}),
        )
        .await;
    many.assert_problem(400);
    let fields: Vec<&Value> = many.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"][1])
        .collect();
    assert_eq!(fields, [&json!("name"), &json!("nickname"), &json!("tags")]);

    let not_json = app
        .request(Method::POST, CHARACTER, "alice")
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    Reply::from(not_json).await.assert_problem(415);
}

#[tokio::test]
async fn another_users_private_character_is_404_on_every_route_and_a_public_one_is_read_only() {
    let app = TestApp::spawn().await;
    let (id, uid, backend) = jack(&app, "alice", json!({})).await;
    let routes = |id: u64, uid: &str, backend: &str| {
        vec![
            (Method::GET, format!("{CHARACTER}/summary/{id}"), None),
            (Method::GET, format!("{CHARACTER}/details/{id}"), None),
            (
                Method::PUT,
                format!("{CHARACTER}/{id}"),
                Some(json!({"name": "Mine"})),
            ),
            (Method::DELETE, format!("{CHARACTER}/{id}"), None),
            (
                Method::POST,
                format!("{CHARACTER}/backend/{uid}"),
                Some(json!({})),
            ),
            (Method::GET, format!("{CHARACTER}/backends/{uid}"), None),
            (
                Method::GET,
                format!("{CHARACTER}/backend/default/{uid}"),
                None,
            ),
            (
                Method::PUT,
                format!("{CHARACTER}/backend/default/{backend}"),
                None,
            ),
            (
                Method::PUT,
                format!("{CHARACTER}/backend/{backend}"),
                Some(json!({"initQuota": 1})),
            ),
            (
                Method::DELETE,
                format!("{CHARACTER}/backend/{backend}"),
                None,
            ),
            (
                Method::POST,
                CHAT.to_owned(),
                Some(json!({"characterUid": uid})),
            ),
            (Method::GET, format!("{CHAT}/{id}"), None),
        ]
    };
    for (method, path, body) in routes(id, &uid, &backend) {
        let reply = send_as(&app, method.clone(), &path, "mallory", body).await;
        reply.assert_problem(404);
        assert!(
            !reply.text.contains("Jack"),
            "{method} {path}: {}",
            reply.text
        );
    }

    update_jack(&app, id, "visibility", "public").await;
    for (path, status) in [
        (format!("{CHARACTER}/summary/{id}"), 200),
        (format!("{CHARACTER}/details/{id}"), 200),
        (format!("{CHARACTER}/backends/{uid}"), 200),
        (format!("{CHARACTER}/backend/default/{uid}"), 200),
    ] {
        assert_eq!(app.get(&path, "mallory").await.status, status, "{path}");
    }
    let details = app
        .get(&format!("{CHARACTER}/details/{id}"), "mallory")
        .await;
    assert_eq!(details.body["name"], "Jack");
    update_character(&app, "mallory", id, &json!({"name": "Mine"}))
        .await
        .assert_problem(404);
    app.delete(&format!("{CHARACTER}/backend/{backend}"), "mallory")
        .await
        .assert_problem(404);
    app.delete(&format!("{CHARACTER}/{id}"), "mallory")
        .await
        .assert_problem(404);
    assert_eq!(character_summary(&app, "alice", id).await["name"], "Jack");
}

#[tokio::test]
async fn the_first_backend_becomes_the_default_and_the_default_can_be_moved() {
    let app = TestApp::spawn().await;
    let (id, uid) = character(&app, "alice", json!({"name": "Jack"})).await;
    app.get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await
        .assert_problem(404);

    let first = add_backend(&app, "alice", &uid, json!({"messageWindowSize": 20})).await;
    let second = add_backend(
        &app,
        "alice",
        &uid,
        json!({"quotaType": "messages", "initQuota": 5, "model": "m2", "temperature": 0.3,
               "maxTokens": 64, "proactiveChatWaitingTime": 7}),
    )
    .await;
    let default = app
        .get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await;
    assert_eq!(default.body["backendId"], first);
    assert_eq!(default.body["isDefault"], true);
    assert_eq!(default.body["messageWindowSize"], 20);
    assert_eq!(default.body["quotaType"], "none");

    let listed = backends_of(&app, &uid).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let b = &listed[1];
    assert_eq!(b["backendId"], second);
    assert_eq!(b["characterUid"], uid);
    assert_eq!(b["isDefault"], false);
    assert_eq!(b["messageWindowSize"], 50);
    assert_eq!(b["quotaType"], "messages");
    assert_eq!(b["initQuota"], 5);
    assert_eq!(b["model"], "m2");
    assert_eq!(b["temperature"], 0.3);
    assert_eq!(b["maxTokens"], 64);
    assert_eq!(b["proactiveChatWaitingTime"], 7);

    let moved = app
        .request(
            Method::PUT,
            &format!("{CHARACTER}/backend/default/{second}"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(Reply::from(moved).await.body, json!(true));
    let default = app
        .get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await;
    assert_eq!(default.body["backendId"], second);

    let third = add_backend(&app, "alice", &uid, json!({"isDefault": true})).await;
    let details = app
        .get(&format!("{CHARACTER}/details/{id}"), "alice")
        .await
        .body;
    let defaults = default_backend_ids(&details["backends"]);
    assert_eq!(defaults, [&json!(third)]);
}

#[tokio::test]
async fn backend_settings_outside_their_bounds_are_400() {
    let app = TestApp::spawn().await;
    let (_, uid) = character(&app, "alice", json!({"name": "Jack"})).await;
    for (body, field) in [
        (json!({"messageWindowSize": 9}), "messageWindowSize"),
        (json!({"messageWindowSize": 501}), "messageWindowSize"),
        (json!({"quotaType": "dollars"}), "quotaType"),
        (json!({"initQuota": -1}), "initQuota"),
        (json!({"provider": "nobody"}), "provider"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"temperature": 1e-200}), "temperature"),
        (json!({"maxTokens": 0}), "maxTokens"),
    ] {
        let reply = app
            .post(&format!("{CHARACTER}/backend/{uid}"), "alice", &body)
            .await;
        reply.assert_problem(400);
        assert_eq!(reply.body["errors"][0]["loc"][1], field, "{body}");
    }
    let listed = app
        .get(&format!("{CHARACTER}/backends/{uid}"), "alice")
        .await;
    assert_eq!(listed.body, json!([]));
}

#[tokio::test]
async fn a_backend_is_updated_in_place_and_removing_the_default_leaves_none() {
    let app = TestApp::spawn().await;
    let (_, uid, backend) = jack(&app, "alice", json!({"initQuota": 3})).await;
    let updated = app
        .put(
            &format!("{CHARACTER}/backend/{backend}"),
            "alice",
            &json!({"messageWindowSize": 100, "quotaType": "tokens"}),
        )
        .await;
    assert_eq!(updated.body, json!(true));
    let default = app
        .get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await
        .body;
    assert_eq!(default["messageWindowSize"], 100);
    assert_eq!(default["quotaType"], "tokens");
    assert_eq!(default["initQuota"], 3);

    let removed = app
        .delete(&format!("{CHARACTER}/backend/{backend}"), "alice")
        .await;
    assert_eq!(removed.body, json!(true));
    app.get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await
        .assert_problem(404);
    app.delete(&format!("{CHARACTER}/backend/{backend}"), "alice")
        .await
        .assert_problem(404);
    app.post(CHAT, "alice", &json!({"characterUid": uid}))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn deleting_a_character_removes_it_with_its_backends() {
    let app = TestApp::spawn().await;
    let (id, uid, backend) = jack(&app, "alice", json!({})).await;
    let deleted = app.delete(&format!("{CHARACTER}/{id}"), "alice").await;
    assert_eq!(deleted.body, json!(true));
    for path in [
        format!("{CHARACTER}/summary/{id}"),
        format!("{CHARACTER}/backends/{uid}"),
    ] {
        app.get(&path, "alice").await.assert_problem(404);
    }
    app.put(
        &format!("{CHARACTER}/backend/{backend}"),
        "alice",
        &json!({}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("{CHARACTER}/{id}"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn starting_a_chat_takes_the_default_backend_and_starting_again_returns_the_same_chat() {
    let app = TestApp::spawn().await;
    let (id, uid, backend) = jack(&app, "alice", json!({})).await;
    let none_yet = app.get(&format!("{CHAT}/{id}"), "alice").await;
    assert_eq!(none_yet.status, StatusCode::OK);
    assert!(none_yet.header("content-type").starts_with("text/plain"));
    assert_eq!(none_yet.text, "");

    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await;
    assert!(uuid::Uuid::parse_str(&chat).is_ok(), "{chat}");
    let again = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": backend}),
    )
    .await;
    assert_eq!(again, chat);

    let default = app.get(&format!("{CHAT}/{id}"), "alice").await;
    assert_eq!(default.status, StatusCode::OK);
    assert!(default.header("content-type").starts_with("text/plain"));
    assert_eq!(default.text, chat);

    let other = add_backend(&app, "alice", &uid, json!({})).await;
    let second = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": other}),
    )
    .await;
    assert_ne!(second, chat);
    // Bob has his own chat with the same character's backend.
    update_jack(&app, id, "visibility", "public").await;
    let bobs = start(&app, "bob", json!({"characterUid": uid})).await;
    assert_ne!(bobs, chat);
}

#[tokio::test]
async fn a_chat_refuses_a_backend_of_another_character_with_400() {
    let app = TestApp::spawn().await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, _, foreign) = jack(&app, "alice", json!({})).await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"characterUid": uid, "backendId": foreign}),
        )
        .await;
    reply.assert_problem(400);
    assert_eq!(reply.body["detail"], "No backend found.");
    let (_, bare) = character(&app, "alice", json!({"name": "Bare"})).await;
    app.post(CHAT, "alice", &json!({"characterUid": bare}))
        .await
        .assert_problem(400);
    app.post(CHAT, "alice", &json!({"backendId": foreign}))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn ids_in_a_chat_start_are_bounded_as_in_a_path() {
    let app = TestApp::spawn().await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let long = "b".repeat(65);
    for (body, field) in [
        (json!({"characterUid": uid, "backendId": long}), "backendId"),
        (json!({"characterUid": long}), "characterUid"),
        (json!({"characterUid": "not/an id"}), "characterUid"),
    ] {
        let reply = app.post(CHAT, "alice", &body).await;
        reply.assert_problem(400);
        assert_eq!(reply.body["errors"][0]["loc"], json!(["body", field]));
    }
}

#[tokio::test]
async fn sending_prompts_the_model_as_the_character_and_answers_with_the_result_and_usage() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(
        &app,
        "alice",
        json!({"model": "sea-model", "temperature": 0.4, "maxTokens": 99}),
    )
    .await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann", "userProfile": "A traveller.",
               "characterNickname": "Jacky", "about": "In a harbour tavern."}),
    )
    .await;
    fake.push(Script::reply("Ahoy, Ann!"));
    let reply = app
        .post(
            &format!("{CHAT}/send/{chat}"),
            "alice",
            &json!({"role": "user", "name": "Ann", "contents": [{"type": "text", "content": "Hello"}],
                    "context": "It is raining."}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let r = &reply.body;
    assert_eq!(r["text"], "Ahoy, Ann!");
    assert_eq!(r["message"]["role"], "assistant");
    assert_eq!(
        r["message"]["contents"],
        json!([{"type": "text", "content": "Ahoy, Ann!"}])
    );
    assert_eq!(r["finishReason"], "stop");
    assert_eq!(
        r["tokenUsage"],
        json!({"inputTokenCount": 10, "outputTokenCount": 2, "totalTokenCount": 12})
    );

    let sent = &fake.requests()[0];
    assert_eq!(sent["model"], "sea-model");
    assert_eq!(sent["temperature"], 0.4);
    assert_eq!(sent["max_tokens"], 99);
    let prompt = prompt_of(sent);
    assert_eq!(prompt.len(), 2);
    let (role, system) = &prompt[0];
    assert_eq!(role, "system");
    for part in [
        "You are Jacky.",
        "A sailor of the northern seas.",
        "Short and salty.",
        "Ahoy there!",
        "In a harbour tavern.",
        "You are talking with Ann.\nA traveller.",
        "## Relevant information\nIt is raining.",
    ] {
        assert!(system.contains(part), "{part:?} missing from {system}");
    }
    assert!(
        !system.contains("On deck."),
        "the chat's scene replaces the default one"
    );
    assert_eq!(prompt[1], ("user".into(), "Hello".into()));

    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Hello", "Ahoy, Ann!"]);
    assert_eq!(messages[1]["message"]["name"], "Ann");
    assert_eq!(messages[1]["message"]["context"], "It is raining.");
    assert_eq!(messages[1]["messageId"], 1);
    assert_eq!(messages[2]["messageId"], 2);
    assert!(messages[1].get("ext").is_none());
}

#[tokio::test]
async fn invalid_messages_are_400_and_reach_no_model() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    for (body, field) in [
        (json!({"contents": []}), "contents"),
        (
            json!({"contents": [{"type": "text", "content": "   "}]}),
            "contents",
        ),
        (
            json!({"contents": [{"type": "image", "content": "http://x/y.png"}]}),
            "contents",
        ),
        (json!({"role": "assistant", "contentText": "hi"}), "role"),
        (json!({"contentText": "x".repeat(64_001)}), "contents"),
    ] {
        let reply = app
            .post(&format!("{CHAT}/send/{chat}"), "alice", &body)
            .await;
        reply.assert_problem(400);
        assert_eq!(reply.body["errors"][0]["loc"][1], field, "{body}");
    }
    assert_eq!(fake.calls(), 0);
    let ok = app
        .post(
            &format!("{CHAT}/send/{chat}"),
            "alice",
            &json!({"contentText": "plain text works"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn a_streamed_send_frames_each_delta_then_the_whole_answer_and_no_done() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    fake.push(Script::reply("Fair winds to you."));
    let (reply, frames) = stream(
        &app,
        Method::POST,
        &format!("{CHAT}/send/stream/{chat}"),
        "alice",
        Some(json!({"contents": [{"content": "Bye"}]})),
    )
    .await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    assert_whole_stream(&reply, &frames, "Fair winds to you.");

    let messages = history(&app, "alice", &chat).await;
    assert_eq!(
        texts(&messages),
        ["Ahoy there!", "Bye", "Fair winds to you."]
    );
}

#[tokio::test]
async fn a_stream_that_fails_midway_ends_with_an_error_frame_and_keeps_what_was_said() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    fake.push(Script::Drop { after: 2 });
    let (_, frames) = stream(
        &app,
        Method::POST,
        &format!("{CHAT}/send/stream/{chat}"),
        "alice",
        Some(json!({"contentText": "Go on"})),
    )
    .await;
    let last = frames.last().unwrap();
    // FreeChat's reason for anything but a whole answer, a length cut, a tool call or a
    // content filter: not mistaken for an answer cut at the length limit; `error` says why.
    assert_eq!(last["finishReason"], "other");
    assert_eq!(last["message"]["contents"][0]["content"], "part0 part1 ");
    assert!(last["error"].is_string());
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Go on", "part0 part1 "]);
    // The stored reply still says what happened.
    let stored = app
        .get(
            &format!("/api/v1/chat/conversations/{chat}/messages"),
            "alice",
        )
        .await
        .body;
    assert_eq!(stored[1]["finish_reason"], "error");
}

#[tokio::test]
async fn the_prompt_holds_the_system_prompt_and_the_last_message_window_size_messages_counting_the_new_one()
 {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"messageWindowSize": 10})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    for i in 1..=6 {
        talk(
            &app,
            &fake,
            "alice",
            &chat,
            &format!("question {i}"),
            &format!("answer {i}"),
        )
        .await;
    }
    talk(&app, &fake, "alice", &chat, "question 7", "answer 7").await;
    let prompt = prompt_of(&fake.requests()[6]);
    assert_eq!(prompt.len(), 11, "{prompt:?}");
    assert_eq!(prompt[0].0, "system");
    // The window of 10 is the new question and the 9 messages before it.
    assert_eq!(prompt[1], ("assistant".into(), "answer 2".into()));
    assert_eq!(prompt[9], ("assistant".into(), "answer 6".into()));
    assert_eq!(prompt[10], ("user".into(), "question 7".into()));
}

#[tokio::test]
async fn pages_count_back_from_the_newest_and_show_the_greeting_when_they_reach_the_start() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    let empty = history(&app, "alice", &chat).await;
    assert_eq!(texts(&empty), ["Ahoy there!"]);
    assert_eq!(empty[0]["messageId"], 0);

    for i in 1..=3 {
        talk(
            &app,
            &fake,
            "alice",
            &chat,
            &format!("q{i}"),
            &format!("a{i}"),
        )
        .await;
    }
    let page = |limit: i64, offset: Option<i64>| {
        let app = &app;
        let chat = chat.clone();
        async move {
            let path = match offset {
                Some(offset) => format!("{CHAT}/messages/{chat}/{limit}/{offset}"),
                None => format!("{CHAT}/messages/{chat}/{limit}"),
            };
            texts(&app.get(&path, "alice").await.body)
        }
    };
    assert_eq!(page(2, None).await, ["q3", "a3"]);
    assert_eq!(page(2, Some(0)).await, ["q3", "a3"]);
    assert_eq!(page(2, Some(2)).await, ["q2", "a2"]);
    assert_eq!(page(3, Some(4)).await, ["Ahoy there!", "q1", "a1"]);
    assert_eq!(page(10, Some(5)).await, ["Ahoy there!", "q1"]);
    assert_eq!(page(10, Some(7)).await, Vec::<String>::new());
    assert_eq!(page(10, Some(-3)).await.len(), 7);
    assert_eq!(page(0, None).await, Vec::<String>::new());
    app.get(&format!("{CHAT}/messages/{chat}/-1"), "alice")
        .await
        .assert_problem(400);
    let all = debug_history(&app, "alice", &chat).await;
    assert_eq!(all.as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn debug_listings_carry_ext_for_the_characters_owner_only() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, uid, _) = jack(&app, "alice", json!({})).await;
    update_jack(&app, id, "visibility", "public").await;
    let own = start(&app, "alice", json!({"characterUid": uid})).await;
    let bobs = start(&app, "bob", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &own, "hi", "Ahoy!").await;
    talk(&app, &fake, "bob", &bobs, "hi", "Ahoy!").await;

    for path in [
        format!("{CHAT}/messages/debug/{own}"),
        format!("{CHAT}/messages/debug/{own}/2"),
        format!("{CHAT}/messages/debug/{own}/2/0"),
    ] {
        let records = app.get(&path, "alice").await.body;
        let n = records.as_array().unwrap().len();
        let user: Value = serde_json::from_str(records[n - 2]["ext"].as_str().unwrap()).unwrap();
        assert_eq!(user["type"], "SYSTEM");
        assert!(
            user["text"]
                .as_str()
                .unwrap()
                .contains("A sailor of the northern seas.")
        );
        let reply: Value = serde_json::from_str(records[n - 1]["ext"].as_str().unwrap()).unwrap();
        assert_eq!(
            reply,
            json!({"inputTokenCount": 10, "outputTokenCount": 1, "totalTokenCount": 11})
        );
    }
    let plain = history(&app, "alice", &own).await;
    assert!(
        plain
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("ext").is_none())
    );

    let bob_debug = app
        .get(&format!("{CHAT}/messages/debug/{bobs}"), "bob")
        .await;
    assert_eq!(bob_debug.status, StatusCode::OK);
    assert!(
        bob_debug
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("ext").is_none())
    );
    assert!(!bob_debug.text.contains("northern seas"));
    // Nor do Bob's stored messages keep the prompt for Chatter to show.
    let bobs_messages = app
        .get(
            &format!("/api/v1/chat/conversations/{bobs}/messages"),
            "bob",
        )
        .await;
    assert!(
        !bobs_messages.text.contains("systemPrompt"),
        "{}",
        bobs_messages.text
    );
    app.get(&format!("{CHAT}/messages/debug/{own}"), "bob")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn rolling_back_removes_the_newest_messages_and_returns_their_ids() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    for i in 1..=2 {
        talk(
            &app,
            &fake,
            "alice",
            &chat,
            &format!("q{i}"),
            &format!("a{i}"),
        )
        .await;
    }
    let rolled = app
        .request(
            Method::POST,
            &format!("{CHAT}/messages/rollback/{chat}/3"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    let rolled = Reply::from(rolled).await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
    assert_eq!(rolled.body, json!([4, 3, 2]));
    let left = history(&app, "alice", &chat).await;
    assert_eq!(texts(&left), ["Ahoy there!", "q1"]);
    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await
        .body;
    assert_eq!(conversation["message_count"], 1);
    assert_eq!(conversation["total_tokens"], 0);

    // The next message gets a new id: rolled-back ids are never reused.
    talk(&app, &fake, "alice", &chat, "q again", "a again").await;
    let records = history(&app, "alice", &chat).await;
    let ids: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["messageId"])
        .collect();
    assert_eq!(ids, [&json!(0), &json!(1), &json!(5), &json!(6)]);

    let zero = app
        .request(
            Method::POST,
            &format!("{CHAT}/messages/rollback/{chat}/0"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    Reply::from(zero).await.assert_problem(400);
}

#[tokio::test]
async fn clearing_memory_leaves_only_the_greeting_and_usage_keeps_what_was_spent() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    talk(&app, &fake, "alice", &chat, "one", "first reply").await;
    talk(&app, &fake, "alice", &chat, "two", "second").await;
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    let expected = json!({"messageUsage": 2,
                          "tokenUsage": {"inputTokenCount": 20, "outputTokenCount": 3, "totalTokenCount": 23}});
    assert_eq!(usage, expected);

    let cleared = app.delete(&format!("{CHAT}/memory/{chat}"), "alice").await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(texts(&cleared.body), ["Ahoy there!"]);
    assert_eq!(
        app.get(
            &format!("/api/v1/chat/conversations/{chat}/messages"),
            "alice"
        )
        .await
        .body,
        json!([])
    );
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    assert_eq!(usage, expected);
}

#[tokio::test]
async fn a_used_up_quota_refuses_the_next_send_with_429_even_after_the_history_is_cleared() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(
        &app,
        "alice",
        json!({"quotaType": "messages", "initQuota": 2}),
    )
    .await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &chat, "one", "a").await;
    talk(&app, &fake, "alice", &chat, "two", "b").await;
    let refused = send(&app, "alice", &chat, "three").await;
    refused.assert_problem(429);
    assert_eq!(refused.body["detail"], "Usage 2 exceeds limit 2");
    assert_eq!(fake.calls(), 2);
    let streamed = app
        .post(
            &format!("{CHAT}/send/stream/{chat}"),
            "alice",
            &json!({"contentText": "three"}),
        )
        .await;
    streamed.assert_problem(429);

    app.delete(&format!("{CHAT}/memory/{chat}"), "alice").await;
    send(&app, "alice", &chat, "three")
        .await
        .assert_problem(429);
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!"]);
}

#[tokio::test]
async fn a_chatter_turn_in_a_chat_keeps_its_message_window_and_is_refused_past_its_quota() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(
        &app,
        "alice",
        json!({"quotaType": "messages", "initQuota": 6, "messageWindowSize": 10}),
    )
    .await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    for i in 1..=5 {
        let (question, answer) = (format!("question {i}"), format!("answer {i}"));
        talk(&app, &fake, "alice", &chat, &question, &answer).await;
    }
    let chatter_turn = json!({"message": "question 6", "conversation_id": chat});
    fake.push(Script::reply("answer 6"));
    let sixth = app.post("/api/v1/chat/chat", "alice", &chatter_turn).await;
    assert_eq!(sixth.status, StatusCode::OK, "{}", sixth.text);
    let prompt = prompt_of(&fake.requests()[5]);
    assert_eq!(prompt.len(), 11, "{prompt:?}");
    assert_eq!(prompt[1], ("assistant".into(), "answer 1".into()));
    assert_eq!(prompt[10], ("user".into(), "question 6".into()));

    let seventh = json!({"message": "question 7", "conversation_id": chat});
    let refused = app.post("/api/v1/chat/chat", "alice", &seventh).await;
    refused.assert_problem(429);
    assert_eq!(refused.body["detail"], "Usage 6 exceeds limit 6");
    app.post("/api/v1/chat/streaming", "alice", &seventh)
        .await
        .assert_problem(429);
    assert_eq!(fake.calls(), 6);
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages).last().unwrap(), "answer 6");
}

#[tokio::test]
async fn a_token_quota_counts_prompt_and_answer_and_none_is_unlimited() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, tokens) = jack(
        &app,
        "alice",
        json!({"quotaType": "tokens", "initQuota": 24}),
    )
    .await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": tokens}),
    )
    .await;
    talk(&app, &fake, "alice", &chat, "one", "a b").await;
    talk(&app, &fake, "alice", &chat, "two", "c d").await;
    let refused = send(&app, "alice", &chat, "three").await;
    refused.assert_problem(429);
    // Each exchange took 10 prompt tokens and 2 answer tokens.
    assert_eq!(refused.body["detail"], "Usage 24 exceeds limit 24");

    let unlimited = add_backend(
        &app,
        "alice",
        &uid,
        json!({"quotaType": "none", "initQuota": 0}),
    )
    .await;
    let free = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": unlimited}),
    )
    .await;
    for _ in 0..3 {
        talk(&app, &fake, "alice", &free, "again", "sure").await;
    }
}

#[tokio::test]
async fn the_assistant_writes_the_users_next_message_from_the_swapped_history_and_stores_nothing() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, helper, _) = {
        let (id, uid) = character(
            &app,
            "alice",
            json!({"name": "Muse", "profile": "A helpful ghostwriter."}),
        )
        .await;
        let backend = add_backend(&app, "alice", &uid, json!({"model": "muse-model"})).await;
        (id, uid, backend)
    };
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await;
    talk(
        &app,
        &fake,
        "alice",
        &chat,
        "Where are we sailing?",
        "To the north.",
    )
    .await;

    fake.push(Script::reply("How long will it take?"));
    let suggested = app
        .get(&format!("{CHAT}/send/assistant/{chat}/{helper}"), "alice")
        .await;
    assert_eq!(suggested.status, StatusCode::OK, "{}", suggested.text);
    assert_eq!(suggested.body["text"], "How long will it take?");
    assert_eq!(suggested.body["finishReason"], "stop");
    assert!(suggested.body["tokenUsage"]["totalTokenCount"].is_u64());

    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["model"], "muse-model");
    let prompt = prompt_of(&sent);
    assert!(prompt[0].1.starts_with("You are Ann."), "{}", prompt[0].1);
    assert!(prompt[0].1.contains("A helpful ghostwriter."));
    assert!(prompt[0].1.contains("You are talking with Captain."));
    assert_eq!(
        prompt[1..],
        [
            ("user".into(), "Ahoy there!".into()),
            ("assistant".into(), "Where are we sailing?".into()),
            ("user".into(), "To the north.".into()),
        ]
    );

    fake.push(Script::reply("Is it cold there?"));
    let (reply, frames) = stream_assistant(&app, &chat, &helper).await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let last = frames.last().unwrap();
    assert_eq!(
        last["message"]["contents"][0]["content"],
        "Is it cold there?"
    );
    assert_eq!(last["finishReason"], "stop");
    assert_eq!(last["tokenUsage"]["totalTokenCount"], 14);

    let messages = history(&app, "alice", &chat).await;
    assert_eq!(messages.as_array().unwrap().len(), 3);
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    assert_eq!(usage["messageUsage"], 1);

    app.get(&format!("{CHAT}/send/assistant/{chat}/{helper}"), "bob")
        .await
        .assert_problem(404);
    let (_, private) = character(&app, "carol", json!({"name": "Secret"})).await;
    app.get(&format!("{CHAT}/send/assistant/{chat}/{private}"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn one_chat_is_visible_and_consistent_through_both_dialects() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"model": "sea-model"})).await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "characterNickname": "Jacky"}),
    )
    .await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;

    let listed = app.get("/api/v1/chat/conversations", "alice").await.body;
    assert_eq!(listed["total"], 1);
    let conversation = &listed["conversations"][0];
    assert_eq!(conversation["id"], chat);
    assert_eq!(conversation["title"], "Chat with Jacky");
    assert_eq!(conversation["message_count"], 2);
    assert_eq!(conversation["llm_model"], "sea-model");
    assert!(
        conversation["system_prompt"]
            .as_str()
            .unwrap()
            .starts_with("You are Jacky.")
    );

    let chatter = app
        .get(
            &format!("/api/v1/chat/conversations/{chat}/messages"),
            "alice",
        )
        .await
        .body;
    let freechat = history(&app, "alice", &chat).await;
    let records = &freechat.as_array().unwrap()[1..];
    assert_eq!(chatter.as_array().unwrap().len(), records.len());
    for (message, record) in chatter.as_array().unwrap().iter().zip(records) {
        assert_eq!(message["sequence_number"], record["messageId"]);
        assert_eq!(
            message["content"],
            record["message"]["contents"][0]["content"]
        );
        assert_eq!(message["role"], record["message"]["role"]);
    }

    // A Chatter turn in the chat speaks as the character, and FreeChat sees it.
    fake.push(Script::reply("Aye."));
    let turn = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "Ready?", "conversation_id": chat}),
        )
        .await;
    assert_eq!(turn.status, StatusCode::OK, "{}", turn.text);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["model"], "sea-model");
    assert!(prompt_of(&sent)[0].1.starts_with("You are Jacky."));
    let freechat = history(&app, "alice", &chat).await;
    assert_eq!(
        texts(&freechat),
        ["Ahoy there!", "Hello", "Ahoy!", "Ready?", "Aye."]
    );
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    assert_eq!(usage["messageUsage"], 2);

    // A Chatter delete is a FreeChat delete too; starting again makes a new chat.
    let deleted = app
        .delete(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    app.get(&format!("{CHAT}/messages/{chat}"), "alice")
        .await
        .assert_problem(404);
    assert_eq!(app.get(CHAT, "alice").await.body, json!([]));
    let again = start(&app, "alice", json!({"characterUid": uid})).await;
    assert_ne!(again, chat);
}

#[tokio::test]
async fn a_freechat_delete_removes_the_chat_from_both_dialects() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, uid, _) = jack(&app, "alice", json!({})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;
    let deleted = app.delete(&format!("{CHAT}/{chat}"), "alice").await;
    assert_eq!(deleted.body, json!(true));
    app.get(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await
        .assert_problem(404);
    let default = app.get(&format!("{CHAT}/{id}"), "alice").await;
    assert_eq!(
        (default.status, default.text.as_str()),
        (StatusCode::OK, "")
    );
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        0
    );
    app.delete(&format!("{CHAT}/{chat}"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn another_users_chat_is_404_on_every_chat_route() {
    let (app, fake) = app_with_model(&[]).await;
    let (uid, chat) = chat_with_jack(&app, "alice").await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;
    let message = json!({"contentText": "mine now"});
    for (method, path, body) in [
        (
            Method::PUT,
            format!("{CHAT}/{chat}"),
            Some(json!({"characterUid": uid})),
        ),
        (Method::DELETE, format!("{CHAT}/{chat}"), None),
        (
            Method::POST,
            format!("{CHAT}/send/{chat}"),
            Some(message.clone()),
        ),
        (
            Method::POST,
            format!("{CHAT}/send/stream/{chat}"),
            Some(message),
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
        (Method::GET, format!("{CHAT}/messages/{chat}"), None),
        (Method::GET, format!("{CHAT}/messages/{chat}/5"), None),
        (Method::GET, format!("{CHAT}/messages/{chat}/5/0"), None),
        (Method::GET, format!("{CHAT}/messages/debug/{chat}"), None),
        (Method::GET, format!("{CHAT}/messages/debug/{chat}/5"), None),
        (
            Method::GET,
            format!("{CHAT}/messages/debug/{chat}/5/0"),
            None,
        ),
        (
            Method::POST,
            format!("{CHAT}/messages/rollback/{chat}/1"),
            None,
        ),
        (Method::GET, format!("{CHAT}/memory/usage/{chat}"), None),
        (Method::DELETE, format!("{CHAT}/memory/{chat}"), None),
    ] {
        let reply = send_as(&app, method.clone(), &path, "mallory", body).await;
        reply.assert_problem(404);
        assert!(!reply.text.contains("Ahoy"), "{method} {path}");
    }
    assert_eq!(app.get(CHAT, "mallory").await.body, json!([]));
    assert_eq!(fake.calls(), 1);
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Hello", "Ahoy!"]);
}

#[tokio::test]
async fn a_plain_chatter_conversation_is_not_a_freechat_chat() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "Plain").await;
    app.get(&format!("{CHAT}/messages/{id}"), "alice")
        .await
        .assert_problem(404);
    app.delete(&format!("{CHAT}/{id}"), "alice")
        .await
        .assert_problem(404);
    assert_eq!(app.get(CHAT, "alice").await.body, json!([]));
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        1
    );
}

#[tokio::test]
async fn the_chat_list_shows_context_character_latest_record_and_flags_most_recently_read_first() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, backend) = jack(
        &app,
        "alice",
        json!({"initQuota": 9, "quotaType": "messages",
                                                        "proactiveChatWaitingTime": 5}),
    )
    .await;
    let (public_id, public_uid, _) = jack(&app, "bob", json!({})).await;
    app.put(
        &format!("{CHARACTER}/{public_id}"),
        "bob",
        &json!({"name": "Jack", "visibility": "public"}),
    )
    .await;

    let own = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann", "about": "At sea."}),
    )
    .await;
    let public = start(&app, "alice", json!({"characterUid": public_uid})).await;
    talk(&app, &fake, "alice", &own, "Hello", "Ahoy!").await;

    let listed = app.get(CHAT, "alice").await.body;
    let sessions = listed.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions[0]["context"]["chatId"], public,
        "started last, read last"
    );
    let mine = &sessions[1];
    let context = &mine["context"];
    assert_eq!(context["chatId"], own);
    assert_eq!(context["backendId"], backend);
    assert_eq!(context["userNickname"], "Ann");
    assert_eq!(context["about"], "At sea.");
    assert_eq!(context["quota"], 9);
    assert_eq!(context["quotaType"], "messages");
    assert!(context["gmtRead"].is_string() && context["gmtCreate"].is_string());
    assert_eq!(mine["character"]["characterUid"], uid);
    assert_eq!(mine["character"]["name"], "Jack");
    // FreeChat's kind of provider, not the deployment's name for it.
    assert_eq!(mine["provider"], "open_ai");
    assert_eq!(mine["proactiveChatWaitingTime"], 5);
    assert_eq!(
        mine["latestMessageRecord"]["message"]["contents"][0]["content"],
        "Ahoy!"
    );
    assert_eq!(mine["senderStatus"], "invisible");
    assert_eq!(mine["isDebugEnabled"], true);
    assert_eq!(mine["isCustomizedApiKeyEnabled"], false);
    let other = &sessions[0];
    // Started without an `about`: the chat's scene is the character's default one.
    assert_eq!(other["context"]["about"], "On deck.");
    assert_eq!(other["provider"], "open_ai");
    assert_eq!(other["senderStatus"], "online");
    assert_eq!(other["isDebugEnabled"], false);
    assert_eq!(
        other["latestMessageRecord"]["message"]["contents"][0]["content"],
        "Ahoy there!"
    );

    let read = app
        .put(
            &format!("{CHAT}/{own}"),
            "alice",
            &json!({"characterUid": uid, "gmtRead": "2100-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(read.body, json!(true), "{}", read.text);
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed[0]["context"]["chatId"], own);
    assert_eq!(
        listed[0]["context"]["userNickname"], "Ann",
        "fields not sent are kept"
    );

    // A chat whose character turns private for its user drops out of the FreeChat list.
    app.put(
        &format!("{CHARACTER}/{public_id}"),
        "bob",
        &json!({"name": "Jack", "visibility": "private"}),
    )
    .await;
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    send(&app, "alice", &public, "still there?")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn updating_a_chat_changes_how_the_next_prompt_names_the_user_and_may_move_the_backend() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let second = add_backend(&app, "alice", &uid, json!({"model": "second-model"})).await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await;
    let updated = app
        .put(
            &format!("{CHAT}/{chat}"),
            "alice",
            &json!({"characterUid": uid, "userNickname": "Annie", "about": "", "backendId": second}),
        )
        .await;
    assert_eq!(updated.body, json!(true), "{}", updated.text);
    talk(&app, &fake, "alice", &chat, "hi", "hello").await;
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["model"], "second-model");
    let system = &prompt_of(&sent)[0].1;
    assert!(system.contains("You are talking with Annie."), "{system}");
    assert!(
        !system.contains("On deck.") && !system.contains("## Scene"),
        "a cleared scene stays cleared: the default one was the chat's `about`, now gone: {system}"
    );
    // The chat moved to the second backend: starting with it finds this chat.
    assert_eq!(
        start(
            &app,
            "alice",
            json!({"characterUid": uid, "backendId": second})
        )
        .await,
        chat
    );

    let (_, other_uid, other_backend) = jack(&app, "alice", json!({})).await;
    app.put(
        &format!("{CHAT}/{chat}"),
        "alice",
        &json!({"characterUid": other_uid}),
    )
    .await
    .assert_problem(400);
    app.put(
        &format!("{CHAT}/{chat}"),
        "alice",
        &json!({"characterUid": uid, "backendId": other_backend}),
    )
    .await
    .assert_problem(400);
    app.put(
        &format!("{CHAT}/{chat}"),
        "alice",
        &json!({"userNickname": "x"}),
    )
    .await
    .assert_problem(400);
}

#[tokio::test]
async fn chatter_and_freechat_routes_under_api_v1_chat_each_reach_their_own_handler() {
    let (app, fake) = app_with_model(&[]).await;
    let templates = app.get("/api/v1/chat/templates", "alice").await;
    assert_eq!(templates.status, StatusCode::OK);
    assert!(templates.body["templates"].is_object());
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.status,
        StatusCode::OK
    );
    fake.push(Script::reply("Hi."));
    let chatter = app
        .post("/api/v1/chat/chat", "alice", &json!({"message": "Hello"}))
        .await;
    assert_eq!(chatter.status, StatusCode::OK, "{}", chatter.text);
    assert!(chatter.body["conversation_id"].is_string());
    fake.push(Script::reply("Hi."));
    let (_, frames) = stream(
        &app,
        Method::POST,
        "/api/v1/chat/streaming",
        "alice",
        Some(json!({"message": "Hello"})),
    )
    .await;
    assert_eq!(frames.last().unwrap(), &json!("[DONE]"));

    assert_eq!(app.get(CHAT, "alice").await.body, json!([]));
    app.get(&format!("{CHAT}/12345"), "alice")
        .await
        .assert_problem(404);
    app.get(&format!("{CHAT}/chat"), "alice")
        .await
        .assert_problem(405);
    app.put(
        &format!("{CHAT}/streaming"),
        "alice",
        &json!({"characterUid": "x"}),
    )
    .await
    .assert_problem(405);
    app.put(
        &format!("{CHAT}/not-a-chat"),
        "alice",
        &json!({"characterUid": "x"}),
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn retried_starts_and_sends_with_an_idempotency_key_happen_once() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"isDefault": true})).await;
    let start_chat = || {
        app.request(reqwest::Method::POST, CHAT, "alice")
            .header("idempotency-key", "start-1")
            .json(&json!({"characterUid": uid}))
    };
    let first = Reply::from(start_chat().send().await.unwrap()).await;
    let again = Reply::from(start_chat().send().await.unwrap()).await;
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), "true");
    let chat = first.text;

    let body = json!({"role": "user", "contents": [{"type": "text", "content": "Once only"}]});
    let send_once = |path: String| {
        app.request(reqwest::Method::POST, &path, "alice")
            .header("idempotency-key", "send-1")
            .json(&body)
    };
    let path = format!("{CHAT}/send/{chat}");
    let sent = Reply::from(send_once(path.clone()).send().await.unwrap()).await;
    let resent = Reply::from(send_once(path).send().await.unwrap()).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    assert_eq!(resent.text, sent.text);
    assert_eq!(fake.calls(), 1);
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await;
    assert_eq!(
        usage.body["messageUsage"], 1,
        "one reply counted: {}",
        usage.body
    );
}
