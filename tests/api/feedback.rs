use api_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::domain::{MessageDraft, MessageRole};

/// Alice's conversation with a question and its answer: (conversation, question, answer).
async fn answered_question(app: &TestApp) -> (String, String, String) {
    let id = app.create_conversation("alice", "Rated").await;
    let record = app.store().conversation("alice", &id).await.unwrap();
    let (_, stored) = app
        .store()
        .append_messages(
            record,
            vec![
                MessageDraft::new(MessageRole::User, "What is 2 + 2?"),
                MessageDraft::new(MessageRole::Assistant, "4"),
            ],
        )
        .await
        .unwrap();
    (id, stored[0].id.clone(), stored[1].id.clone())
}

fn feedback_path(conversation: &str, message: &str) -> String {
    format!("/api/v1/chat/conversations/{conversation}/messages/{message}/feedback")
}

async fn feedback_counts(app: &TestApp, user: &str) -> Value {
    app.performance_stats(user).await["feedback"].clone()
}

#[tokio::test]
async fn a_rated_answer_carries_its_feedback_and_counts_in_the_stats() {
    let app = TestApp::spawn().await;
    let (id, _, answer) = answered_question(&app).await;
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": 0, "down": 0})
    );

    let rated = app
        .put(
            &feedback_path(&id, &answer),
            "alice",
            &json!({"rating": "up", "comment": "Exactly right."}),
        )
        .await;
    assert_eq!(rated.status, StatusCode::OK, "{}", rated.body);
    assert_eq!(rated.body["id"], answer.as_str());
    assert_eq!(rated.body["feedback"]["rating"], "up");
    assert_eq!(rated.body["feedback"]["comment"], "Exactly right.");
    assert!(rated.body["feedback"]["updated_at"].is_string());

    let listed = app.stored_messages("alice", &id).await;
    assert_eq!(listed[1]["feedback"], rated.body["feedback"]);
    assert!(listed[0].get("feedback").is_none(), "{}", listed[0]);
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": 1, "down": 0})
    );
}

#[tokio::test]
async fn a_changed_rating_moves_its_count_and_a_null_rating_clears_it() {
    let app = TestApp::spawn().await;
    let (id, _, answer) = answered_question(&app).await;
    let path = feedback_path(&id, &answer);
    app.put(&path, "alice", &json!({"rating": "up"})).await;
    let changed = app.put(&path, "alice", &json!({"rating": "down"})).await;
    assert_eq!(changed.body["feedback"]["rating"], "down");
    assert_eq!(changed.body["feedback"]["comment"], Value::Null);
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": 0, "down": 1})
    );

    let cleared = app.put(&path, "alice", &json!({"rating": null})).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert!(cleared.body.get("feedback").is_none(), "{}", cleared.body);
    assert!(
        app.stored_messages("alice", &id).await[1]
            .get("feedback")
            .is_none()
    );
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": 0, "down": 0})
    );
}

#[tokio::test]
async fn only_answers_are_rated_and_bad_feedback_names_its_field() {
    let app = TestApp::spawn().await;
    let (id, question, answer) = answered_question(&app).await;
    let on_question = app
        .put(
            &feedback_path(&id, &question),
            "alice",
            &json!({"rating": "up"}),
        )
        .await;
    on_question.assert_problem(422);
    assert_eq!(
        on_question.body["errors"][0]["loc"],
        json!(["path", "message_id"])
    );

    let path = feedback_path(&id, &answer);
    let cases = [
        (
            json!({"rating": "up", "comment": "x".repeat(2_001)}),
            "comment",
        ),
        (json!({"rating": "meh"}), "rating"),
        (json!({"comment": "no rating"}), "rating"),
    ];
    for (body, field) in cases {
        let refused = app.put(&path, "alice", &body).await;
        refused.assert_problem(422);
        assert_eq!(
            refused.body["errors"][0]["loc"][1], field,
            "{}",
            refused.body
        );
    }
    let longest = app
        .put(
            &path,
            "alice",
            &json!({"rating": "down", "comment": "é".repeat(2_000)}),
        )
        .await;
    assert_eq!(longest.status, StatusCode::OK, "{}", longest.body);
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": 0, "down": 1})
    );
}

#[tokio::test]
async fn another_users_answer_or_a_message_of_another_conversation_is_not_found() {
    let app = TestApp::spawn().await;
    let (id, _, answer) = answered_question(&app).await;
    let body = json!({"rating": "up"});
    app.put(&feedback_path(&id, &answer), "mallory", &body)
        .await
        .assert_problem(404);
    let other = app.create_conversation("alice", "Other").await;
    app.put(&feedback_path(&other, &answer), "alice", &body)
        .await
        .assert_problem(404);
    app.put(&feedback_path(&id, "no-such-message"), "alice", &body)
        .await
        .assert_problem(404);
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": 0, "down": 0})
    );
    assert_eq!(
        feedback_counts(&app, "mallory").await,
        json!({"up": 0, "down": 0})
    );
}

#[tokio::test]
async fn concurrent_ratings_leave_the_counters_equal_to_the_ratings_that_stand() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(answered_question(&app).await);
    }
    let ratings = [json!("up"), json!("down"), Value::Null];
    let mut tasks = Vec::new();
    for round in 0..8 {
        for (i, (id, _, answer)) in answers.iter().enumerate() {
            let (app, path) = (app.clone(), feedback_path(id, answer));
            let rating = ratings[(round + i) % 3].clone();
            tasks.push(tokio::spawn(async move {
                app.put(&path, "alice", &json!({"rating": rating})).await
            }));
        }
    }
    for task in tasks {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let (mut up, mut down) = (0, 0);
    for (id, _, _) in &answers {
        match app.stored_messages("alice", id).await[1]["feedback"]["rating"].as_str() {
            Some("up") => up += 1,
            Some("down") => down += 1,
            _ => {}
        }
    }
    assert_eq!(
        feedback_counts(&app, "alice").await,
        json!({"up": up, "down": down})
    );
}
