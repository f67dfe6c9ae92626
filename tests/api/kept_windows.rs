//! A warm instance keeps the newest messages of the conversations it wrote to: its next turn
//! reads the conversation and what was appended since, and still sees every change another
//! instance made.

use api_tests::{FakeLlm, Script, TestApp, app_with_model, prompt_messages};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = "/api/v1/chat/chat";

/// Asks `message` in alice's conversation `id` through `app`: the answer.
async fn ask(app: &TestApp, fake: &FakeLlm, id: &str, message: &str) -> Value {
    fake.push(Script::reply(&format!("re: {message}")));
    let body = json!({"message": message, "conversation_id": id});
    let reply = app.post(CHAT, "alice", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["message"].clone()
}

/// The contents of the last prompt after its system prompt.
fn last_prompt(fake: &FakeLlm) -> Vec<String> {
    prompt_messages(fake.requests().last().unwrap())
        .into_iter()
        .filter(|(role, _)| role != "system")
        .map(|(_, content)| content)
        .collect()
}

#[tokio::test]
async fn a_warm_instances_next_turn_reads_only_what_was_appended_since() {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("LLM_MODEL", "fake-model"),
    ])
    .await;
    let id = app.create_conversation("alice", "A long talk").await;
    // Written by another instance: this one has kept nothing of it.
    let other = app.spawn_beside(&[]).await;
    other.store_exchanges("alice", &id, 150).await;
    dynamodb.count_capacity();
    let items_read = || -> u64 { dynamodb.take_calls().iter().map(|call| call.items).sum() };

    dynamodb.take_calls();
    ask(&app, &fake, &id, "q151").await;
    let first = items_read();
    ask(&app, &fake, &id, "q152").await;
    let next = items_read();

    assert!(first > 128, "the first turn read {first} items");
    assert!(next <= 3, "the next turn read {next} items");
    let prompt = last_prompt(&fake);
    assert_eq!(prompt.len(), 101, "{prompt:?}");
    assert_eq!(prompt[0], "q102");
    assert_eq!(prompt[98], "q151");
    assert_eq!(prompt[99], "re: q151");
    assert_eq!(prompt[100], "q152");
}

#[tokio::test]
async fn a_warm_instance_sees_what_another_instance_appended_since() {
    let (first, fake) = app_with_model(&[]).await;
    let second = first.beside_with_model(&fake).await;
    let id = first.create_conversation("alice", "Two instances").await;

    ask(&first, &fake, &id, "q1").await;
    ask(&second, &fake, &id, "q2").await;
    ask(&first, &fake, &id, "q3").await;

    assert_eq!(last_prompt(&fake), ["q1", "re: q1", "q2", "re: q2", "q3"]);
}

#[tokio::test]
async fn a_warm_instance_sees_what_another_instance_deleted() {
    let (first, fake) = app_with_model(&[]).await;
    let second = first.beside_with_model(&fake).await;
    let id = first.create_conversation("alice", "Two instances").await;
    ask(&first, &fake, &id, "q1").await;
    let answer = ask(&first, &fake, &id, "q2").await;
    let question = answer["parent_id"].as_str().unwrap();

    let path = format!("/api/v1/chat/conversations/{id}/messages/{question}");
    let deleted = second.delete(&path, "alice").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);

    let edit = json!({"message": "q2, again", "conversation_id": id, "edit_message_id": question});
    first.post(CHAT, "alice", &edit).await.assert_problem(404);
    ask(&first, &fake, &id, "q3").await;
    assert_eq!(last_prompt(&fake), ["q1", "re: q1", "q3"]);
}
