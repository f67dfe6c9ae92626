//! The FreeChat dialect against its contract and FreeChat's own behaviour: scenes, statuses,
//! finish reasons, whole histories, logging, and the object-level rules of every route.

use std::io::Write;
use std::sync::{Arc, Mutex};

use api_tests::{Reply, Script, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::domain::{MessageDraft, MessageRole};

use super::{
    CHARACTER, CHAT, add_backend, app_with_model, assert_whole_stream, backends_of, character,
    character_summary, chat_with_jack, debug_history, default_backend_ids, history, jack,
    prompt_messages, send, start, stream_assistant, talk, texts, update_character, update_jack,
};

#[tokio::test]
async fn a_chat_starts_in_the_characters_default_scene_which_its_prompt_renders_as_its_about() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, uid, _) = jack(&app, "alice", json!({})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed[0]["context"]["about"], "On deck.");

    // The scene is the chat's from its start: a later change of the character's default
    // scene is not the scene of a chat already under way.
    update_jack(&app, id, "defaultScene", "In port.").await;
    talk(
        &app,
        &fake,
        "alice",
        &chat,
        "Where are we?",
        "On deck, lad.",
    )
    .await;
    let system = &prompt_messages(&fake.requests()[0])[0].1;
    assert!(system.contains("## Scene\nOn deck."), "{system}");
    assert!(!system.contains("In port."), "{system}");
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed[0]["context"]["about"], "On deck.");

    let told = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": add_backend(&app, "alice", &uid, json!({})).await,
               "about": "In a storm."}),
    )
    .await;
    let listed = app.get(CHAT, "alice").await.body;
    let about: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["context"]["chatId"] == told)
        .map(|s| &s["context"]["about"])
        .collect();
    assert_eq!(about, [&json!("In a storm.")]);
}

#[tokio::test]
async fn the_default_chat_id_is_empty_text_without_a_chat_and_404_for_a_hidden_character() {
    let app = TestApp::spawn().await;
    let (bare_id, _) = character(&app, "alice", json!({"name": "Bare"})).await;
    let (id, _, _) = jack(&app, "alice", json!({})).await;
    for character_id in [id, bare_id] {
        let reply = app.get(&format!("{CHAT}/{character_id}"), "alice").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(reply.header("content-type").starts_with("text/plain"));
        assert_eq!(reply.text, "");
    }
    let hidden = app.get(&format!("{CHAT}/{id}"), "mallory").await;
    hidden.assert_problem(404);
    app.get(&format!("{CHAT}/-1"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn integer_path_values_that_do_not_parse_are_400_problems() {
    let app = TestApp::spawn().await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    for (method, path, loc) in [
        (
            Method::GET,
            format!("{CHAT}/messages/{chat}/ten"),
            Some("limit"),
        ),
        (
            Method::GET,
            format!("{CHAT}/messages/{chat}/5/x"),
            Some("offset"),
        ),
        (
            Method::GET,
            format!("{CHAT}/messages/debug/{chat}/ten"),
            Some("limit"),
        ),
        (
            Method::GET,
            format!("{CHAT}/messages/debug/{chat}/1/2.5"),
            Some("offset"),
        ),
        (
            Method::POST,
            format!("{CHAT}/messages/rollback/{chat}/x"),
            Some("count"),
        ),
        // The route shares its one parameter with PUT and DELETE (a chat id).
        (Method::GET, format!("{CHAT}/abc"), Some("id")),
        (
            Method::GET,
            format!("{CHARACTER}/summary/abc"),
            Some("characterId"),
        ),
        (
            Method::GET,
            format!("{CHARACTER}/details/1e3"),
            Some("characterId"),
        ),
        (Method::PUT, format!("{CHARACTER}/abc"), Some("characterId")),
        (
            Method::DELETE,
            format!("{CHARACTER}/abc"),
            Some("characterId"),
        ),
    ] {
        let reply = Reply::from(
            app.request(method.clone(), &path, "alice")
                .json(&json!({"name": "x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        reply.assert_problem(400);
        assert_eq!(reply.body["type"], "/problems/validation-error", "{path}");
        assert_eq!(reply.body["errors"][0]["loc"][0], "path", "{path}");
        if let Some(loc) = loc {
            assert_eq!(reply.body["errors"][0]["loc"][1], loc, "{path}");
        }
    }
}

#[tokio::test]
async fn messages_without_a_limit_list_the_whole_history_after_the_greeting() {
    let app = TestApp::spawn().await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    // More than any one page of the store, or any cap, would hold.
    const STORED: usize = 1_100;
    let mut record = app.store().chat("alice", &chat).await.unwrap().record;
    let drafts: Vec<MessageDraft> = (1..=STORED)
        .map(|i| {
            let role = if i % 2 == 1 {
                MessageRole::User
            } else {
                MessageRole::Assistant
            };
            MessageDraft::new(role, format!("message {i}"))
        })
        .collect();
    for chunk in drafts.chunks(50) {
        record = app
            .store()
            .append_messages(record, chunk.to_vec())
            .await
            .unwrap()
            .0;
    }
    for path in [
        format!("{CHAT}/messages/{chat}"),
        format!("{CHAT}/messages/debug/{chat}"),
    ] {
        let listed = app.get(&path, "alice").await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
        let texts = texts(&listed.body);
        assert_eq!(texts.len(), STORED + 1, "{path}");
        assert_eq!(texts[0], "Ahoy there!");
        assert_eq!(texts[1], "message 1");
        assert_eq!(texts[STORED], format!("message {STORED}"));
        let ids: Vec<u64> = listed.body.as_array().unwrap()[1..]
            .iter()
            .map(|r| r["messageId"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, (1..=STORED as u64).collect::<Vec<_>>());
    }
    // An explicit limit is honoured as given, also beyond a thousand.
    let page = app
        .get(&format!("{CHAT}/messages/{chat}/1050/10"), "alice")
        .await
        .body;
    let texts = texts(&page);
    assert_eq!(texts.len(), 1_050);
    assert_eq!(texts[0], "message 41");
    assert_eq!(texts[1_049], format!("message {}", STORED - 10));
}

#[tokio::test]
async fn finish_reasons_are_freechats_and_tool_calls_read_as_tool_execution() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, helper, _) = jack(&app, "alice", json!({})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;

    fake.push(Script::tool_call("lookup", json!({"q": "weather"})));
    let asked = app
        .get(&format!("{CHAT}/send/assistant/{chat}/{helper}"), "alice")
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert_eq!(asked.body["finishReason"], "tool_execution");

    fake.push(Script::tool_call("lookup", json!({"q": "weather"})));
    let (_, frames) = stream_assistant(&app, &chat, &helper).await;
    assert_eq!(frames.last().unwrap()["finishReason"], "tool_execution");

    fake.push(Script::reply("Aye."));
    let sent = send(&app, "alice", &chat, "Ready?").await;
    assert_eq!(sent.body["finishReason"], "stop");
}

/// Log lines written by a `tracing` subscriber, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn what_a_streamed_turn_logs_after_its_handler_returned_carries_the_correlation_id() {
    use lambda_http::tracing::subscriber::util::SubscriberInitExt;

    let logs = Logs::default();
    let writer = logs.clone();
    // This test's runtime runs on this thread only, the server and its spawned tasks too, so
    // a subscriber for this thread sees all they log and nothing of other tests.
    let _subscriber = lambda_http::tracing::subscriber::fmt()
        .with_writer(move || writer.clone())
        .finish()
        .set_default();
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;

    fake.push(Script::Drop { after: 2 });
    // Other tests, on other threads without a subscriber, may have had `tracing` cache the
    // request span's callsite as disabled while this one's subscriber was being set up.
    lambda_http::tracing::callsite::rebuild_interest_cache();
    let correlation_id = "fc-stream-correlation-7";
    let reply = Reply::from(
        app.request(Method::POST, &format!("{CHAT}/send/stream/{chat}"), "alice")
            .header("x-correlation-id", correlation_id)
            .json(&json!({"contentText": "Go on"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-correlation-id"), correlation_id);

    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let failure: Vec<&str> = logged
        .lines()
        .filter(|line| line.contains("model call failed"))
        .collect();
    assert!(
        !failure.is_empty(),
        "the dropped stream is not logged:\n{logged}"
    );
    for line in failure {
        assert!(line.contains(correlation_id), "{line}");
    }
}

#[tokio::test]
async fn the_characters_chat_example_is_in_the_system_prompt_the_debug_listing_shows() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, uid, _) = jack(&app, "alice", json!({})).await;
    update_jack(&app, id, "chatExample", "User: Ahoy?\nJack: Ahoy, matey!").await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;
    let records = debug_history(&app, "alice", &chat).await;
    let ext: Value = serde_json::from_str(records[1]["ext"].as_str().unwrap()).unwrap();
    assert_eq!(ext["type"], "SYSTEM");
    assert!(
        ext["text"]
            .as_str()
            .unwrap()
            .contains("## Example dialogue\nUser: Ahoy?\nJack: Ahoy, matey!"),
        "{ext}"
    );
    assert_eq!(prompt_messages(&fake.requests()[0])[0].1, ext["text"]);
}

#[tokio::test]
async fn an_assistant_without_a_backend_is_400_on_both_assistant_routes() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, bare) = character(&app, "alice", json!({"name": "Muse"})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    assert_both_assistant_routes_refuse(&app, &chat, &bare, 400, "No backend found.").await;
    assert_eq!(fake.calls(), 0);
}

/// Asserts that both assistant routes (plain and streamed) answer alice's `chat` with
/// character `helper` by a problem of `status` whose detail is `detail`.
async fn assert_both_assistant_routes_refuse(
    app: &TestApp,
    chat: &str,
    helper: &str,
    status: u16,
    detail: &str,
) {
    for path in [
        format!("{CHAT}/send/assistant/{chat}/{helper}"),
        format!("{CHAT}/send/stream/assistant/{chat}/{helper}"),
    ] {
        let reply = app.get(&path, "alice").await;
        reply.assert_problem(status);
        assert_eq!(reply.body["detail"], detail, "{path}");
    }
}

#[tokio::test]
async fn the_streamed_assistant_frames_each_delta_then_the_whole_suggestion_and_no_done() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, helper, _) = jack(&app, "alice", json!({})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    fake.push(Script::reply("Is it cold there?"));
    let (reply, frames) = stream_assistant(&app, &chat, &helper).await;
    let last = assert_whole_stream(&reply, &frames, "Is it cold there?");
    assert_eq!(last["message"]["role"], "assistant");
}

#[tokio::test]
async fn updating_a_backend_with_is_default_makes_it_the_default() {
    let app = TestApp::spawn().await;
    let (_, uid, first) = jack(&app, "alice", json!({})).await;
    let second = add_backend(&app, "alice", &uid, json!({})).await;
    let path = format!("{CHARACTER}/backend/default/{uid}");
    assert_eq!(app.get(&path, "alice").await.body["backendId"], first);
    let updated = app
        .put(
            &format!("{CHARACTER}/backend/{second}"),
            "alice",
            &json!({"isDefault": true, "initQuota": 3}),
        )
        .await;
    assert_eq!(updated.body, json!(true), "{}", updated.text);
    assert_eq!(app.get(&path, "alice").await.body["backendId"], second);
    let backends = backends_of(&app, &uid).await;
    let defaults = default_backend_ids(&backends);
    assert_eq!(defaults, [&json!(second)]);
}

#[tokio::test]
async fn a_chat_whose_backend_was_removed_is_offline_and_refuses_to_send_with_404() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, backend) = jack(&app, "alice", json!({})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;
    let removed = app
        .delete(&format!("{CHARACTER}/backend/{backend}"), "alice")
        .await;
    assert_eq!(removed.body, json!(true));

    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed[0]["context"]["chatId"], chat);
    assert_eq!(listed[0]["senderStatus"], "offline");
    let refused = send(&app, "alice", &chat, "Still there?").await;
    refused.assert_problem(404);
    assert_eq!(refused.body["detail"], "Backend not found.");
    app.post(
        &format!("{CHAT}/send/stream/{chat}"),
        "alice",
        &json!({"contentText": "Still there?"}),
    )
    .await
    .assert_problem(404);
    // The chat's snapshot still had the backend: each send may have asked the model beside
    // storing its question, whose check found the backend gone and dropped the request;
    // the second try, from the items, asked nothing.
    assert!(fake.calls() <= 3, "{} model requests", fake.calls());
    // The history stays readable, and nothing was stored.
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Hello", "Ahoy!"]);
}

#[tokio::test]
async fn moving_a_chat_to_a_backend_the_user_already_chats_with_is_409() {
    let app = TestApp::spawn().await;
    let (_, uid, first) = jack(&app, "alice", json!({})).await;
    let second = add_backend(&app, "alice", &uid, json!({})).await;
    let one = start(&app, "alice", json!({"characterUid": uid})).await;
    let two = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": second}),
    )
    .await;
    let moved = app
        .put(
            &format!("{CHAT}/{one}"),
            "alice",
            &json!({"characterUid": uid, "backendId": second}),
        )
        .await;
    moved.assert_problem(409);
    // Neither chat moved: each backend still leads to its own chat.
    for (backend, chat) in [(&first, &one), (&second, &two)] {
        let again = start(
            &app,
            "alice",
            json!({"characterUid": uid, "backendId": backend}),
        )
        .await;
        assert_eq!(&again, chat);
    }
}

#[tokio::test]
async fn character_create_and_update_ignore_the_fields_the_server_owns() {
    let app = TestApp::spawn().await;
    let forged = json!({"username": "mallory", "characterId": 999_999, "characterUid": "forged-uid",
                        "version": 7, "priority": 99, "gmtCreate": "2000-01-01T00:00:00Z",
                        "gmtModified": "2000-01-01T00:00:00Z"});
    let mut body = json!({"name": "Jack"});
    body.as_object_mut()
        .unwrap()
        .extend(forged.as_object().unwrap().clone());
    let (id, uid) = character(&app, "alice", body.clone()).await;
    assert_ne!(id, 999_999);
    let check = |summary: &Value| {
        assert_eq!(summary["characterId"], id);
        assert_eq!(summary["characterUid"], uid);
        assert_ne!(summary["characterUid"], "forged-uid");
        assert_eq!(summary["username"], "alice");
        assert_eq!(summary["version"], 1);
        assert_eq!(summary["priority"], 1);
        for field in ["gmtCreate", "gmtModified"] {
            assert!(
                !summary[field].as_str().unwrap().starts_with("2000"),
                "{summary}"
            );
        }
    };
    let summary = character_summary(&app, "alice", id).await;
    check(&summary);

    body["name"] = json!("Jack II");
    let updated = update_character(&app, "alice", id, &body).await;
    assert_eq!(updated.body, json!(true), "{}", updated.text);
    let summary = character_summary(&app, "alice", id).await;
    assert_eq!(summary["name"], "Jack II");
    check(&summary);
    app.get(&format!("{CHARACTER}/summary/{id}"), "mallory")
        .await
        .assert_problem(404);
    app.get(&format!("{CHARACTER}/summary/999999"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn another_users_private_assistant_character_or_backend_is_404_in_an_own_chat() {
    let (app, fake) = app_with_model(&[]).await;
    let (uid, chat) = chat_with_jack(&app, "alice").await;
    let (_, secret, secret_backend) = jack(&app, "carol", json!({})).await;

    assert_both_assistant_routes_refuse(&app, &chat, &secret, 404, "Character not found.").await;
    assert_eq!(fake.calls(), 0);

    // Naming the private backend, or its character, answers as naming nothing at all does.
    for (body, detail) in [
        (
            json!({"characterUid": uid, "backendId": secret_backend}),
            "Backend not found.",
        ),
        (
            json!({"characterUid": uid, "backendId": "no-such-backend"}),
            "Backend not found.",
        ),
        (
            json!({"characterUid": secret, "backendId": secret_backend}),
            "Character not found.",
        ),
        (
            json!({"characterUid": "no-such-character"}),
            "Character not found.",
        ),
    ] {
        let reply = app.put(&format!("{CHAT}/{chat}"), "alice", &body).await;
        reply.assert_problem(404);
        assert_eq!(reply.body["detail"], detail, "{body}");
        assert!(!reply.text.contains("Jack"), "{}", reply.text);
    }
    // The chat is untouched.
    assert_eq!(
        start(&app, "alice", json!({"characterUid": uid})).await,
        chat
    );
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
