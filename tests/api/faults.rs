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
