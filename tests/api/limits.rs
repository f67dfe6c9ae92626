//! Input that is too long or too large for storage: a clear 404/413/422, never a 5xx.

use api_tests::{FakeLlm, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::json;

const CONVERSATIONS: &str = "/api/v1/chat/conversations";

#[tokio::test]
async fn ids_too_long_for_a_dynamodb_key_or_outside_the_id_alphabet_are_404_in_paths() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "mine").await;
    let long = "a".repeat(3000);
    for path in [
        format!("{CONVERSATIONS}/{long}"),
        format!("{CONVERSATIONS}/{long}/messages"),
        format!("{CONVERSATIONS}/{id}/messages/{long}"),
        format!("{CONVERSATIONS}/{}", "b".repeat(65)),
        format!("{CONVERSATIONS}/a%23b"),
    ] {
        let reply = if path.contains("/messages/") {
            app.delete(&path, "alice").await
        } else {
            app.get(&path, "alice").await
        };
        reply.assert_problem(404);
    }
    app.put(
        &format!("{CONVERSATIONS}/{long}"),
        "alice",
        &json!({"title": "t"}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("{CONVERSATIONS}/{long}"), "alice")
        .await
        .assert_problem(404);
    let said = json!({"role": "user", "contents": [{"type": "text", "content": "hi"}]});
    app.post(&format!("/api/v1/chat/send/{long}"), "alice", &said)
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn chat_bodies_naming_an_id_too_long_or_malformed_are_422() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    for body in [
        json!({"message": "hi", "conversation_id": "c".repeat(3000)}),
        json!({"message": "hi", "conversation_id": "a b"}),
        json!({"message": "hi", "enable_retrieval": true, "document_ids": ["d".repeat(3000)]}),
    ] {
        for path in ["/api/v1/chat/chat", "/api/v1/chat/streaming"] {
            let reply = app.post(path, "alice", &body).await;
            reply.assert_problem(422);
        }
    }
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn an_update_that_would_outgrow_the_item_limit_is_413_before_dynamodb_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "small").await;
    let path = format!("{CONVERSATIONS}/{id}");
    let blob = "x".repeat(500 * 1024);
    let reply = app
        .put(
            &path,
            "alice",
            &json!({"title": "big", "extra_metadata": {"blob": blob}}),
        )
        .await;
    reply.assert_problem(413);
    let after = app.get(&path, "alice").await;
    assert_eq!(after.body["title"], "small");

    // Two halves that each fit, but not together.
    let half = "y".repeat(250 * 1024);
    let first = app
        .put(&path, "alice", &json!({"extra_metadata": {"half": half}}))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    app.put(&path, "alice", &json!({"workflow_config": {"half": half}}))
        .await
        .assert_problem(413);
    // Replacing the large value by another as large is not growth.
    let other = "z".repeat(250 * 1024);
    let replaced = app
        .put(&path, "alice", &json!({"extra_metadata": {"half": other}}))
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
}

#[tokio::test]
async fn a_message_longer_than_the_limit_is_422_on_chat_and_streaming_and_reaches_no_model() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let long = "w".repeat(shared::domain::MAX_MESSAGE_CHARS + 1);
    for path in ["/api/v1/chat/chat", "/api/v1/chat/streaming"] {
        let reply = app.post(path, "alice", &json!({"message": long})).await;
        reply.assert_problem(422);
        assert_eq!(reply.body["errors"][0]["loc"], json!(["body", "message"]));
    }
    assert_eq!(fake.calls(), 0);
    assert_eq!(app.get(CONVERSATIONS, "alice").await.body["total"], 0);
}

#[tokio::test]
async fn a_chat_body_over_the_size_limit_is_413() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("MAX_BODY_BYTES", "65536"),
    ])
    .await;
    let body = json!({"message": "v".repeat(70_000)}).to_string();
    for path in ["/api/v1/chat/chat", "/api/v1/chat/streaming"] {
        let reply = api_tests::Reply::from(
            app.request(Method::POST, path, "alice")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap(),
        )
        .await;
        reply.assert_problem(413);
    }
    assert_eq!(fake.calls(), 0);
}
