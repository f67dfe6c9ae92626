use std::sync::Arc;

use api_tests::{FakeLlm, Reply, Script, TestApp, app_with_model, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = "/api/v1/chat/chat";
const QUESTION: &str = "How do I plan a three-day trip to Paris on a small budget?";
/// What a conversation a turn starts is called until the model's title is written.
const PLACEHOLDER: &str = "How do I plan a three-day trip to Paris on a small...";

/// A stack whose titles are written by the fake's `titler` model, the answers by `fake-model`.
async fn app_with_titles() -> (Arc<TestApp>, FakeLlm) {
    let (app, fake) = app_with_model(&[("AUTO_TITLE", "true"), ("TITLE_MODEL", "titler")]).await;
    (Arc::new(app), fake)
}

fn ask(app: &Arc<TestApp>, body: Value) -> tokio::task::JoinHandle<Reply> {
    let app = app.clone();
    tokio::spawn(async move { app.post(CHAT, "alice", &body).await })
}

fn asked_for_a_title(fake: &FakeLlm) -> bool {
    fake.requests().iter().any(|r| r["model"] == "titler")
}

async fn titles(app: &TestApp) -> Vec<String> {
    let listed = app.get("/api/v1/chat/conversations", "alice").await;
    listed.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_conversation_a_turn_starts_is_titled_by_the_model_from_its_first_message() {
    let (app, fake) = app_with_titles().await;
    fake.push_for("titler", Script::reply("\"Budget Paris Weekend.\""));
    fake.push_for("fake-model", Script::reply("Walk a lot."));
    let reply = app.post(CHAT, "alice", &json!({"message": QUESTION})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["conversation"]["title"], "Budget Paris Weekend");
    assert_eq!(titles(&app).await, ["Budget Paris Weekend"]);

    let asked = fake.requests();
    let title_request = asked.iter().find(|r| r["model"] == "titler").unwrap();
    assert_eq!(title_request["messages"][1]["content"], QUESTION);
    assert!(title_request["stream"] != true, "{title_request}");

    // A turn in a conversation that already exists asks for no title.
    let id = reply.body["conversation_id"].as_str().unwrap();
    app.post(
        CHAT,
        "alice",
        &json!({"message": "And in winter?", "conversation_id": id}),
    )
    .await;
    let title_requests = fake
        .requests()
        .iter()
        .filter(|r| r["model"] == "titler")
        .count();
    assert_eq!(title_requests, 1);
}

#[tokio::test]
async fn the_title_is_written_while_the_answer_is_still_being_generated() {
    let (app, fake) = app_with_titles().await;
    fake.push_for("titler", Script::reply("Paris on a budget"));
    let (answer, gate) = Script::reply("Walk a lot.").held();
    fake.push_for("fake-model", answer);
    let turn = ask(&app, json!({"message": QUESTION}));

    eventually(|| async { titles(&app).await == ["Paris on a budget"] }).await;
    assert!(!turn.is_finished(), "the answer was held back all along");
    gate.add_permits(1);
    let reply = turn.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["message"]["content"], "Walk a lot.");
}

#[tokio::test]
async fn a_rename_made_while_the_title_is_written_stands() {
    let (app, fake) = app_with_titles().await;
    let (title, gate) = Script::reply("Model's title").held();
    fake.push_for("titler", title);
    let turn = ask(&app, json!({"message": QUESTION}));
    eventually(|| async { asked_for_a_title(&fake) }).await;
    let id = app.get("/api/v1/chat/conversations", "alice").await.body["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let renamed = app
        .put(
            &format!("/api/v1/chat/conversations/{id}"),
            "alice",
            &json!({"title": "My own name"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);

    gate.add_permits(1);
    let reply = turn.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(titles(&app).await, ["My own name"]);
}

#[tokio::test]
async fn a_failed_title_leaves_the_start_of_the_message_and_the_answer_unharmed() {
    let (app, fake) = app_with_titles().await;
    // Every try fails: the first and the client's two retries.
    for _ in 0..3 {
        fake.push_for("titler", Script::Status(500));
    }
    fake.push_for("fake-model", Script::reply("Walk a lot."));
    let reply = app.post(CHAT, "alice", &json!({"message": QUESTION})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["message"]["content"], "Walk a lot.");
    assert!(asked_for_a_title(&fake));
    assert_eq!(titles(&app).await, [PLACEHOLDER]);
}

#[tokio::test]
async fn with_titles_turned_off_no_title_is_asked_for() {
    let fake = FakeLlm::start().await;
    let app =
        TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url), ("AUTO_TITLE", "false")]).await;
    let reply = app.post(CHAT, "alice", &json!({"message": QUESTION})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(fake.calls(), 1);
    assert_eq!(titles(&app).await, [PLACEHOLDER]);
}

#[tokio::test]
async fn a_streamed_turn_that_starts_a_conversation_is_titled_too() {
    let (app, fake) = app_with_titles().await;
    fake.push_for("titler", Script::reply("Streamed Paris"));
    let response = app
        .request(reqwest::Method::POST, "/api/v1/chat/streaming", "alice")
        .json(&json!({"message": QUESTION}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap();
    eventually(|| async { titles(&app).await == ["Streamed Paris"] }).await;
}
