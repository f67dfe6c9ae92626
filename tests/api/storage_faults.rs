//! DynamoDB throttling, failing or unreachable under the chat routes of both dialects: a 503
//! problem with `Retry-After`, and nothing half-written.

use api_tests::{FakeLlm, Fault, Reply, Script, TestApp};
use reqwest::StatusCode;
use serde_json::json;

fn assert_retry_later(reply: &Reply) {
    reply.assert_problem(503);
    let retry_after: u64 = reply.header("retry-after").parse().unwrap();
    assert!(retry_after >= 1, "Retry-After {retry_after}");
}

#[tokio::test]
async fn a_stream_whose_question_cannot_be_stored_is_503_and_stores_nothing() {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let id = app.create_conversation("alice", "t").await;
    // Asked beside the store, a model that never answers is dropped when the store fails.
    fake.always(Script::Hang);
    dynamodb.set(Fault::throttle("TransactWriteItems", 0));
    for body in [
        json!({"message": "new conversation"}),
        json!({"message": "existing one", "conversation_id": id}),
    ] {
        let reply = app.post("/api/v1/chat/streaming", "alice", &body).await;
        assert_retry_later(&reply);
    }
    dynamodb.set(Fault::Outage);
    let reply = app
        .post(
            "/api/v1/chat/streaming",
            "alice",
            &json!({"message": "down"}),
        )
        .await;
    assert_retry_later(&reply);
    dynamodb.set(Fault::None);

    assert_eq!(
        fake.abandoned(),
        fake.calls(),
        "no model call outlives a question not stored"
    );
    let list = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(list.body["total"], 1);
    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{id}"), "alice")
        .await;
    assert_eq!(conversation.body["messages"], json!([]));
    assert_eq!(conversation.body["message_count"], 0);
}

#[tokio::test]
async fn a_freechat_send_under_throttling_is_503_and_leaves_the_chat_as_it_was() {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let chat = app.start_freechat_chat("alice", "Jack").await;
    let path = format!("/api/v1/chat/send/{chat}");
    let body = json!({"role": "user", "contents": [{"type": "text", "content": "Ahoy"}]});

    dynamodb.set(Fault::throttle("TransactWriteItems", 0));
    assert_retry_later(&app.post(&path, "alice", &body).await);
    dynamodb.set(Fault::Outage);
    assert_retry_later(&app.post(&path, "alice", &body).await);
    dynamodb.set(Fault::None);

    let stored = app
        .store()
        .conversation_tree("alice", &chat)
        .await
        .map(|(_, tree)| tree.messages().to_vec())
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");
    let record = app.store().chat("alice", &chat).await.unwrap();
    assert_eq!(record.record.conversation.message_count, 0);
    assert_eq!(record.usage().replies, 0);
    // The chat works once DynamoDB does.
    let sent = app.post(&path, "alice", &body).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
}

#[tokio::test]
async fn a_dynamodb_endpoint_that_refuses_connections_is_503() {
    let app = TestApp::spawn_without_dynamodb(&[]).await;
    for reply in [
        app.get("/api/v1/chat/conversations", "alice").await,
        app.post("/api/v1/chat/chat", "alice", &json!({"message": "hi"}))
            .await,
        app.post("/api/v1/chat/streaming", "alice", &json!({"message": "hi"}))
            .await,
    ] {
        assert_retry_later(&reply);
    }
}
