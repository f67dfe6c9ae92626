//! Object-level authorization on the chat routes, and fields a client must not set.

use api_tests::{FakeLlm, Script, TestApp};
use reqwest::StatusCode;
use serde_json::json;

const SECRET_TEXT: &str = "Vault combination: seven nine three tango whiskey.";

#[tokio::test]
async fn a_template_chat_naming_another_users_conversation_is_404_and_touches_nothing() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let bobs = app.create_conversation("bob", "bob's").await;
    let reply = app
        .post(
            "/api/v1/chat/template/general_chat",
            "alice",
            &json!({"message": "let me in", "conversation_id": bobs}),
        )
        .await;
    reply.assert_problem(404);
    assert_eq!(fake.calls(), 0);
    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{bobs}"), "bob")
        .await;
    assert_eq!(conversation.body["message_count"], 0);
}

#[tokio::test]
async fn another_users_document_ids_retrieve_nothing_of_theirs() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let document = app.upload_text("bob", "Bob's vault", SECRET_TEXT).await;
    let body = json!({
        "message": "What is the vault combination?",
        "enable_retrieval": true,
        "document_ids": [document],
    });

    // The owner's turn does retrieve it: the check below would see the text if it leaked.
    fake.push(Script::reply("It is in your notes."));
    let own = app.post("/api/v1/chat/chat", "bob", &body).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert!(fake.requests()[0].to_string().contains("tango whiskey"));

    fake.push(Script::reply("I do not know."));
    let other = app.post("/api/v1/chat/chat", "alice", &body).await;
    if other.status == StatusCode::OK {
        let prompt = fake.requests()[1].to_string();
        assert!(!prompt.contains("tango whiskey"), "{prompt}");
        assert!(
            other.body["message"]["metadata"]["sources"]
                .as_array()
                .is_none_or(Vec::is_empty)
        );
    } else {
        assert!(
            [404, 422].contains(&other.status.as_u16()),
            "{}",
            other.body
        );
        assert!(!other.text.contains("tango whiskey"));
    }
}

#[tokio::test]
async fn owner_ids_counters_and_sequence_numbers_in_a_chat_body_are_ignored() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let reply = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({
                "message": "hello",
                "user_id": "bob",
                "id": "chosen-id",
                "message_id": "chosen-message",
                "sequence_number": 99,
                "message_count": 1000,
                "total_tokens": 123456,
                "total_cost": 99.5,
                "created_at": "2000-01-01T00:00:00Z",
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let conversation = &reply.body["conversation"];
    assert_eq!(conversation["user_id"], "alice");
    assert_eq!(conversation["message_count"], 2);
    assert_ne!(conversation["id"], "chosen-id");
    assert_ne!(conversation["total_cost"], 99.5);
    let message = &reply.body["message"];
    assert_eq!(message["sequence_number"], 2);
    assert_ne!(message["id"], "chosen-message");
    assert_ne!(message["created_at"], "2000-01-01T00:00:00Z");
    assert_eq!(
        app.get("/api/v1/chat/conversations", "bob").await.body["total"],
        0
    );
}
