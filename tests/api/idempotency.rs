use std::time::Duration;

use api_tests::{FakeLlm, Reply, Script, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use shared::store::idempotency::Claim;

async fn post_with_key(app: &TestApp, path: &str, user: &str, key: &str, body: &Value) -> Reply {
    let request = app
        .request(Method::POST, path, user)
        .header("idempotency-key", key)
        .json(body);
    Reply::from(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_retried_chat_gets_the_first_answer_without_a_second_model_call() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "Say something once"});
    let first = post_with_key(&app, "/api/v1/chat/chat", "alice", "retry-1", &body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("idempotent-replayed"), "");
    let again = post_with_key(&app, "/api/v1/chat/chat", "alice", "retry-1", &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, first.body);
    assert_eq!(fake.calls(), 1);
    let id = first.body["conversation_id"].as_str().unwrap();
    let messages = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages"),
            "alice",
        )
        .await;
    assert_eq!(messages.body.as_array().unwrap().len(), 2);
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        1
    );

    // Keys belong to their user: the same key from someone else is a request of its own.
    let bob = post_with_key(&app, "/api/v1/chat/chat", "bob", "retry-1", &body).await;
    assert_eq!(bob.header("idempotent-replayed"), "");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let first = post_with_key(
        &app,
        "/api/v1/chat/conversations",
        "alice",
        "k",
        &json!({"title": "one"}),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = post_with_key(
        &app,
        "/api/v1/chat/conversations",
        "alice",
        "k",
        &json!({"title": "one"}),
    )
    .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body["id"], first.body["id"]);
    let other = post_with_key(
        &app,
        "/api/v1/chat/conversations",
        "alice",
        "k",
        &json!({"title": "two"}),
    )
    .await;
    other.assert_problem(422);
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        1
    );
    let bad = post_with_key(
        &app,
        "/api/v1/chat/conversations",
        "alice",
        &"x".repeat(300),
        &json!({"title": "t"}),
    )
    .await;
    bad.assert_problem(422);
}

#[tokio::test]
async fn a_retry_while_the_first_runs_is_409_and_a_failure_frees_the_key() {
    let fake = FakeLlm::start().await;
    let app =
        TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url), ("LLM_TIMEOUT_SECS", "2")]).await;
    fake.push(Script::Hang);
    let body = json!({"message": "slow"});
    let slow = {
        let request = app
            .request(Method::POST, "/api/v1/chat/chat", "alice")
            .header("idempotency-key", "busy")
            .json(&body);
        tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_with_key(&app, "/api/v1/chat/chat", "alice", "busy", &body)
        .await
        .assert_problem(409);
    slow.await.unwrap().assert_problem(504);
    // The 504 was not kept: the retry runs, and now the model answers.
    let retried = post_with_key(&app, "/api/v1/chat/chat", "alice", "busy", &body).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_replayed_stream_is_the_first_stream_and_the_model_runs_once() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "stream once"});
    let first = post_with_key(&app, "/api/v1/chat/streaming", "alice", "s-1", &body).await;
    assert!(first.text.ends_with("data: [DONE]\n\n"));
    let again = post_with_key(&app, "/api/v1/chat/streaming", "alice", "s-1", &body).await;
    assert_eq!(again.header("content-type"), "text/event-stream");
    assert_eq!(again.text, first.text);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_claim_whose_holder_died_expires_after_its_lease() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let now = chrono::Utc::now();
    let lease = Duration::from_secs(30);
    assert_eq!(
        store
            .claim_idempotency_key("alice", "k", "f", lease, now)
            .await
            .unwrap(),
        Claim::Acquired
    );
    assert_eq!(
        store
            .claim_idempotency_key("alice", "k", "f", lease, now)
            .await
            .unwrap(),
        Claim::InProgress
    );
    // Nothing completed the claim; once the lease is over the key can be taken again.
    let later = now + chrono::Duration::seconds(31);
    assert_eq!(
        store
            .claim_idempotency_key("alice", "k", "f", lease, later)
            .await
            .unwrap(),
        Claim::Acquired
    );
}
