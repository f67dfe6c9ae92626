use api_tests::{FakeLlm, Script, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CHAT: &str = "/api/v1/chat/chat";
const LOUVRE: &str = "Louvre museum Paris opening hours: opens at nine.";
const GARDEN: &str = "Tomatoes need full sun, deep watering and rich compost to grow well.";

async fn app_with_embeddings(fake: &FakeLlm) -> TestApp {
    TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("EMBEDDING_MODEL", "fake-embed"),
    ])
    .await
}

fn system_prompt(request: &Value) -> String {
    request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_rag_answer_is_grounded_in_the_matching_passages_and_cites_them() {
    let fake = FakeLlm::start().await;
    let app = app_with_embeddings(&fake).await;
    let paris = app.upload_text("alice", "Paris guide", LOUVRE).await;
    app.upload_text("alice", "Garden notes", GARDEN).await;
    fake.push(Script::reply("It opens at nine [1]."));

    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Louvre museum Paris opening hours?", "workflow": "rag"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let system = system_prompt(&fake.requests()[0]);
    assert!(system.contains("[1] Paris guide (part 1):"), "{system}");
    assert!(system.contains("opens at nine"));
    assert!(
        !system.contains("Tomatoes"),
        "an unrelated passage is not in the prompt"
    );

    let sources = reply.body["message"]["metadata"]["sources"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["document_id"], paris.as_str());
    assert_eq!(sources[0]["title"], "Paris guide");
    assert_eq!(sources[0]["chunk_index"], 0);
    assert!(sources[0]["score"].as_f64().unwrap() >= 0.7);
    let id = reply.body["conversation_id"].as_str().unwrap();
    let stored = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages"),
            "alice",
        )
        .await;
    assert_eq!(stored.body[1]["metadata"]["sources"], json!(sources));
}

#[tokio::test]
async fn a_streamed_rag_answer_reports_retrieval_and_ends_with_its_sources() {
    let fake = FakeLlm::start().await;
    let app = app_with_embeddings(&fake).await;
    let paris = app.upload_text("alice", "Paris guide", LOUVRE).await;
    let response = app
        .request(Method::POST, "/api/v1/chat/streaming", "alice")
        .json(&json!({"message": "Louvre museum opening hours in Paris", "enable_retrieval": true}))
        .send()
        .await
        .unwrap();
    let frames: Vec<Value> = response
        .text()
        .await
        .unwrap()
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|line| line.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let retrieve = frames
        .iter()
        .find(|f| f["type"] == "node_complete" && f["metadata"]["node"] == "retrieve")
        .unwrap();
    assert_eq!(retrieve["metadata"]["sources"], 1);
    let end = frames.iter().find(|f| f["type"] == "end").unwrap();
    assert_eq!(end["metadata"]["sources"][0]["document_id"], paris.as_str());
}

#[tokio::test]
async fn retrieval_keeps_to_the_named_documents_and_to_the_callers_own() {
    let fake = FakeLlm::start().await;
    let app = app_with_embeddings(&fake).await;
    app.upload_text("alice", "Paris guide", LOUVRE).await;
    let garden = app.upload_text("alice", "Garden notes", GARDEN).await;
    app.upload_text("bob", "Bob's Paris guide", LOUVRE).await;

    let restricted = app
        .post(CHAT, "alice", &json!({"message": "Louvre museum Paris opening hours?", "workflow": "rag", "document_ids": [garden]}))
        .await;
    assert_eq!(restricted.status, StatusCode::OK);
    assert_eq!(restricted.body["message"]["metadata"]["sources"], json!([]));
    assert!(system_prompt(&fake.requests()[0]).contains("No passage"));

    let carol = app
        .post(
            CHAT,
            "carol",
            &json!({"message": "Louvre museum Paris opening hours?", "workflow": "rag"}),
        )
        .await;
    assert_eq!(
        carol.body["message"]["metadata"]["sources"],
        json!([]),
        "another user's documents are never retrieved"
    );
    assert!(!system_prompt(&fake.requests()[1]).contains("opens at nine"));

    let too_many: Vec<String> = (0..51).map(|i| format!("doc-{i}")).collect();
    app.post(
        CHAT,
        "alice",
        &json!({"message": "x", "workflow": "rag", "document_ids": too_many}),
    )
    .await
    .assert_problem(422);
}

#[tokio::test]
async fn without_an_embedding_model_retrieval_ranks_lexically() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let paris = app.upload_text("alice", "Paris guide", LOUVRE).await;
    app.upload_text("alice", "Garden notes", GARDEN).await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Louvre museum opening", "workflow": "rag"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sources = reply.body["message"]["metadata"]["sources"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(sources[0]["document_id"], paris.as_str());
    assert!(fake.embedding_requests().is_empty());
}

#[tokio::test]
async fn the_full_workflow_retrieves_and_uses_tools_in_one_run() {
    let fake = FakeLlm::start().await;
    let app = app_with_embeddings(&fake).await;
    app.upload_text("alice", "Paris guide", LOUVRE).await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "18-9"}),
    ))
    .push(Script::reply("It is open for 9 hours [1]."));
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Louvre museum Paris opening hours total?", "workflow": "full"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let first = &fake.requests()[0];
    assert!(system_prompt(first).contains("[1] Paris guide"));
    assert!(
        first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["function"]["name"] == "calculator")
    );
    let metadata = &reply.body["message"]["metadata"];
    assert_eq!(metadata["workflow"], "full");
    assert_eq!(metadata["sources"].as_array().unwrap().len(), 1);
    assert_eq!(metadata["tool_calls"][0]["tool"], "calculator");
    let stats = app.performance_stats("alice").await;
    assert_eq!(stats["workflow_types"]["full"], 1);
}

#[tokio::test]
async fn rag_templates_work_now_that_retrieval_exists() {
    let fake = FakeLlm::start().await;
    let app = app_with_embeddings(&fake).await;
    app.upload_text("alice", "Paris guide", LOUVRE).await;
    let reply = app
        .post(
            "/api/v1/chat/template/document_qa",
            "alice",
            &json!({"message": "Louvre museum Paris opening hours?"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["message"]["metadata"]["workflow"], "rag");
    assert!(
        system_prompt(&fake.requests()[0]).starts_with("Answer using only the provided sources.")
    );
}

#[tokio::test]
async fn a_document_whose_embedding_failed_is_still_cited_by_a_rag_answer() {
    let fake = FakeLlm::start().await;
    let app = app_with_embeddings(&fake).await;
    app.upload_text("alice", "Paris guide", LOUVRE).await;
    fake.fail_embeddings(Some(500));
    let garden = app.upload_text("alice", "Garden notes", GARDEN).await;
    fake.fail_embeddings(None);
    fake.push(Script::reply("Full sun and compost [1]."));

    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "What do tomatoes need: sun, watering, compost?", "workflow": "rag"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sources = reply.body["message"]["metadata"]["sources"]
        .as_array()
        .unwrap();
    assert_eq!(sources.len(), 1, "{sources:?}");
    assert_eq!(sources[0]["document_id"], garden.as_str());
    assert!(system_prompt(&fake.requests()[0]).contains("[1] Garden notes (part 1):"));
}
