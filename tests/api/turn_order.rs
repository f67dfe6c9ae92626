//! The order of a chat turn's steps: the model is asked while the question is being stored,
//! and yet no answer or token reaches the client before the question is stored; a question
//! that cannot be stored stops the model at once; a caller over the rate limit, or asking in
//! another user's conversation, causes no model request. In both dialects.

use std::time::Duration;

use api_tests::{FakeLlm, Fault, Script, TestApp, app_with_model};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The four chat turns of the two dialects, each in the conversation or chat named: (path,
/// body). A Chatter turn names its conversation in the body, a FreeChat one its chat in the
/// path.
fn turns(conversation: &str, chat: &str) -> Vec<(String, Value)> {
    let said = json!({"role": "user", "contents": [{"type": "text", "content": "Ahoy"}]});
    let asked = json!({"message": "Hello", "conversation_id": conversation});
    vec![
        ("/api/v1/chat/chat".into(), asked.clone()),
        ("/api/v1/chat/streaming".into(), asked),
        (format!("/api/v1/chat/send/{chat}"), said.clone()),
        (format!("/api/v1/chat/send/stream/{chat}"), said),
    ]
}

/// Waits until `done` holds, for at most ten seconds.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within ten seconds");
}

/// How many messages `user`'s conversation or chat `id` holds, read around the proxy's faults.
async fn stored(app: &TestApp, user: &str, id: &str) -> usize {
    app.store()
        .conversation_tree(user, id)
        .await
        .map(|(_, tree)| tree.messages().to_vec())
        .expect("the messages are read")
        .len()
}

/// How many conversations alice has (a FreeChat chat is one too).
async fn conversations(app: &TestApp) -> u64 {
    let list = app.get("/api/v1/chat/conversations", "alice").await;
    list.body["total"].as_u64().unwrap()
}

#[tokio::test]
async fn the_model_is_asked_while_the_question_is_stored_and_nothing_reaches_the_client_before_it_is()
 {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let conversation = app.create_conversation("alice", "Held").await;
    let chat = app.start_freechat_chat("alice", "Jack").await;
    for (path, body) in turns(&conversation, &chat) {
        let target = if path.contains("/send/") {
            &chat
        } else {
            &conversation
        };
        let before = stored(&app, "alice", target).await;
        let asked = fake.calls();
        dynamodb.set(Fault::hold("TransactWriteItems"));
        let request = app
            .request(reqwest::Method::POST, &path, "alice")
            .json(&body);
        let answer = tokio::spawn(request.send());

        eventually(&format!("the model request of {path}"), || {
            fake.calls() == asked + 1
        })
        .await;
        // The model has answered; the client has nothing yet, not even the status.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !answer.is_finished(),
            "{path} answered before its question was stored"
        );
        assert_eq!(stored(&app, "alice", target).await, before, "{path}");

        dynamodb.set(Fault::None);
        let reply = answer.await.unwrap().unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{path}");
        let text = reply.text().await.unwrap();
        assert!(text.contains("model."), "{path}: {text}");
        assert_eq!(stored(&app, "alice", target).await, before + 2, "{path}");
    }
}

#[tokio::test]
async fn a_question_that_cannot_be_stored_stops_the_model_at_once_and_is_503_with_nothing_written()
{
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let conversation = app.create_conversation("alice", "Failing").await;
    let chat = app.start_freechat_chat("alice", "Jack").await;
    // A model that never answers: a turn that waited for it would never end.
    fake.always(Script::Hang);
    let new_conversation = (
        "/api/v1/chat/streaming".to_owned(),
        json!({"message": "New"}),
    );
    for (path, body) in turns(&conversation, &chat)
        .into_iter()
        .chain([new_conversation])
    {
        dynamodb.set(Fault::throttle("TransactWriteItems", 0));
        let reply = app.post(&path, "alice", &body).await;
        dynamodb.set(Fault::None);
        reply.assert_problem(503);
        assert!(reply.header("retry-after").parse::<u64>().unwrap() >= 1);
        eventually(&format!("dropping the model request of {path}"), || {
            fake.abandoned() == fake.calls()
        })
        .await;
    }
    assert!(fake.calls() >= 1, "the model was asked beside the store");
    assert_eq!(stored(&app, "alice", &conversation).await, 0);
    assert_eq!(stored(&app, "alice", &chat).await, 0);
    assert_eq!(conversations(&app).await, 2, "no conversation was created");
    let record = app.store().chat("alice", &chat).await.unwrap();
    assert_eq!(record.record.conversation.message_count, 0);
    assert_eq!(record.usage().replies, 0);
}

#[tokio::test]
async fn a_caller_over_the_rate_limit_gets_429_and_asks_the_model_nothing() {
    let (app, fake) = app_with_model(&[]).await;
    let conversation = app.create_conversation("alice", "Limited").await;
    let chat = app.start_freechat_chat("alice", "Jack").await;
    // Over the same table, an instance that allows one request a minute: alice is past it.
    let limited = app.spawn_beside(&[("RATE_LIMIT_PER_MINUTE", "1")]).await;
    let mut turns = turns(&conversation, &chat);
    turns.push(("/api/v1/chat/chat".into(), json!({"message": "New"})));
    turns.push((
        "/api/v1/chat/template/general_chat".into(),
        json!({"message": "New"}),
    ));
    for (path, body) in turns {
        let reply = limited.post(&path, "alice", &body).await;
        reply.assert_problem(429);
        assert!(
            reply.header("retry-after").parse::<u64>().unwrap() >= 1,
            "{path}"
        );
    }
    for path in [
        format!("/api/v1/chat/conversations/{conversation}"),
        format!("/api/v1/chat/messages/{chat}"),
    ] {
        limited.get(&path, "alice").await.assert_problem(429);
    }
    assert_eq!(fake.calls(), 0);
    assert_eq!(stored(&app, "alice", &conversation).await, 0);
    assert_eq!(stored(&app, "alice", &chat).await, 0);
    assert_eq!(conversations(&app).await, 2, "no conversation was created");
}

#[tokio::test]
async fn another_users_conversation_is_404_on_every_turn_and_asks_the_model_nothing() {
    let (app, fake) = app_with_model(&[]).await;
    let conversation = app.create_conversation("alice", "Hers").await;
    let chat = app.start_freechat_chat("alice", "Jack").await;
    for (path, body) in turns(&conversation, &chat) {
        app.post(&path, "mallory", &body).await.assert_problem(404);
    }
    assert_eq!(fake.calls(), 0);
    assert_eq!(stored(&app, "alice", &conversation).await, 0);
    assert_eq!(stored(&app, "alice", &chat).await, 0);
}
