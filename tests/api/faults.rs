use api_tests::{FakeLlm, Fault, Script, TestApp};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The question every RAG turn here asks of the museum guide.
const QUESTION: &str = "When does the museum open?";

/// A stack with embeddings on, on a fake model, where alice has uploaded the museum guide.
async fn guide_with_embeddings() -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("EMBEDDING_MODEL", "fake-embed"),
    ])
    .await;
    app.upload_text("alice", "Guide", "The museum opens at nine.")
        .await;
    (app, fake)
}

/// Asks alice's [`QUESTION`] in a RAG turn; returns the reply.
async fn ask_the_guide(app: &TestApp) -> api_tests::Reply {
    let body = json!({"message": QUESTION, "workflow": "rag"});
    app.post("/api/v1/chat/chat", "alice", &body).await
}

/// Asserts that alice's conversation `id` holds one message, hers; returns the conversation.
async fn only_the_question_is_stored(app: &TestApp, id: &str) -> Value {
    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{id}"), "alice")
        .await
        .body;
    let messages = conversation["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{conversation}");
    assert_eq!(messages[0]["role"], "user");
    conversation
}

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
    dynamodb.set(Fault::throttle("TransactWriteItems", 0));
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
    dynamodb.set(Fault::throttle("TransactWriteItems", 1));
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

    let conversation = only_the_question_is_stored(&app, &id).await;
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
    dynamodb.set(Fault::throttle("Query", 1));
    let reply = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": QUESTION, "conversation_id": id, "workflow": "rag"}),
        )
        .await;
    reply.assert_problem(503);
    dynamodb.set(Fault::None);
    assert_eq!(fake.calls(), 0);

    let conversation = only_the_question_is_stored(&app, &id).await;
    assert_eq!(conversation["messages"][0]["content"], QUESTION);

    let stats = app.performance_stats("alice").await;
    assert_eq!(stats["total_executions"], 1);
    assert_eq!(stats["workflow_types"], json!({"rag": 1}));
    assert_eq!(stats["error_counts"], json!({"unavailable": 1}));
}

#[tokio::test]
async fn a_failing_embedding_provider_falls_back_to_lexical_retrieval_and_keeps_the_question() {
    let (app, fake) = guide_with_embeddings().await;
    fake.fail_embeddings(Some(500));
    let before = fake.embedding_requests().len();
    let reply = ask_the_guide(&app).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(
        fake.embedding_requests().len() > before,
        "the query was sent to be embedded"
    );
    assert_eq!(fake.calls(), 1, "the model answered");
    let id = reply.body["conversation_id"].as_str().unwrap();
    let messages = app.stored_messages("alice", id).await;
    assert_eq!(messages[0]["content"], QUESTION);
}

#[tokio::test]
async fn the_execution_time_includes_retrieval() {
    let (app, fake) = guide_with_embeddings().await;
    fake.delay_embeddings(std::time::Duration::from_millis(600));
    let reply = ask_the_guide(&app).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body["message"]["response_time_ms"].as_u64().unwrap() >= 600);
    let stats = app.performance_stats("alice").await;
    assert!(
        stats["min_execution_time_ms"].as_u64().unwrap() >= 600,
        "{stats}"
    );
}
