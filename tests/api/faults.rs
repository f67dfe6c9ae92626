use api_tests::{FakeLlm, Fault, Script, TestApp};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn an_unreachable_dynamodb_is_a_503_with_retry_after() {
    let (app, dynamodb) = TestApp::spawn_with_faults(&[]).await;
    dynamodb.set(Fault::Outage);
    for reply in [
        app.get("/api/v1/chat/conversations", "alice").await,
        app.post(
            "/api/v1/chat/conversations",
            "alice",
            &json!({"title": "t"}),
        )
        .await,
    ] {
        reply.assert_problem(503);
        assert!(reply.header("retry-after").parse::<u64>().unwrap() > 0);
        assert!(
            !reply.text.contains("dynamo"),
            "the cause stays in the logs: {}",
            reply.text
        );
    }
    dynamodb.set(Fault::None);
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        0
    );
}

#[tokio::test]
async fn throttled_writes_are_503_and_write_nothing() {
    let (app, dynamodb) = TestApp::spawn_with_faults(&[]).await;
    dynamodb.set(Fault::Throttle {
        operation: "TransactWriteItems".into(),
        after: 0,
    });
    let reply = app
        .post(
            "/api/v1/chat/conversations",
            "alice",
            &json!({"title": "t"}),
        )
        .await;
    reply.assert_problem(503);
    assert!(reply.header("retry-after").parse::<u64>().is_ok());
    dynamodb.set(Fault::None);
    let list = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(list.body["total"], 0);
    assert_eq!(list.body["conversations"], json!([]));
}

#[tokio::test]
async fn when_the_answer_cannot_be_stored_the_question_stays_and_the_counters_agree() {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let id = app.create_conversation("alice", "t").await;
    // The question's write passes; the answer's is throttled until DynamoDB gives up.
    dynamodb.set(Fault::Throttle {
        operation: "TransactWriteItems".into(),
        after: 1,
    });
    fake.push(Script::reply("An answer nobody will see."));
    let reply = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "Will this be kept?", "conversation_id": id}),
        )
        .await;
    reply.assert_problem(503);
    dynamodb.set(Fault::None);

    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{id}"), "alice")
        .await
        .body;
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(conversation["message_count"], 1);
    assert_eq!(conversation["total_tokens"], 0);

    // The conversation carries on where it was.
    let next = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "Again?", "conversation_id": id}),
        )
        .await;
    assert_eq!(next.status, StatusCode::OK);
    assert_eq!(next.body["message"]["sequence_number"], 3);
    assert_eq!(next.body["conversation"]["message_count"], 3);
}

#[tokio::test]
async fn a_rag_turn_whose_retrieval_fails_keeps_the_question_and_counts_the_failure() {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[("LLM_BASE_URL", &fake.base_url)]).await;
    app.upload_text("alice", "Guide", "The museum opens at nine.")
        .await;
    let id = app.create_conversation("alice", "t").await;
    // Reading the conversation's messages passes; retrieval's reads are throttled.
    dynamodb.set(Fault::Throttle {
        operation: "Query".into(),
        after: 1,
    });
    let reply = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "When does the museum open?", "conversation_id": id, "workflow": "rag"}),
        )
        .await;
    reply.assert_problem(503);
    dynamodb.set(Fault::None);
    assert_eq!(fake.calls(), 0);

    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{id}"), "alice")
        .await
        .body;
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "When does the museum open?");

    let stats = app
        .get("/api/v1/chat/performance/stats", "alice")
        .await
        .body;
    assert_eq!(stats["total_executions"], 1);
    assert_eq!(stats["workflow_types"], json!({"rag": 1}));
    assert_eq!(stats["error_counts"], json!({"unavailable": 1}));
}

#[tokio::test]
async fn a_failing_embedding_provider_falls_back_to_lexical_retrieval_and_keeps_the_question() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("EMBEDDING_MODEL", "fake-embed"),
    ])
    .await;
    app.upload_text("alice", "Guide", "The museum opens at nine.")
        .await;
    fake.fail_embeddings(Some(500));
    let before = fake.embedding_requests().len();
    let reply = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "When does the museum open?", "workflow": "rag"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        fake.embedding_requests().len() > before,
        "the query was sent to be embedded"
    );
    assert_eq!(fake.calls(), 1, "the model answered");
    let id = reply.body["conversation_id"].as_str().unwrap();
    let messages = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages"),
            "alice",
        )
        .await
        .body;
    assert_eq!(messages[0]["content"], "When does the museum open?");
}

#[tokio::test]
async fn the_execution_time_includes_retrieval() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("EMBEDDING_MODEL", "fake-embed"),
    ])
    .await;
    app.upload_text("alice", "Guide", "The museum opens at nine.")
        .await;
    fake.delay_embeddings(std::time::Duration::from_millis(600));
    let reply = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "When does the museum open?", "workflow": "rag"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body["message"]["response_time_ms"].as_u64().unwrap() >= 600);
    let stats = app
        .get("/api/v1/chat/performance/stats", "alice")
        .await
        .body;
    assert!(
        stats["min_execution_time_ms"].as_u64().unwrap() >= 600,
        "{stats}"
    );
}
