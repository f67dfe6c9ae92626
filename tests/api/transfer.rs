use std::collections::HashMap;

use api_tests::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::domain::{MessageDraft, MessageRole};

const IMPORT: &str = "/api/v1/chat/conversations/import";

fn export_path(conversation: &str, format: &str) -> String {
    format!("/api/v1/chat/conversations/{conversation}/export?format={format}")
}

/// Alice's "Trip to Lisbon": two questions and their answers, the first answer rated up.
async fn rated_conversation(app: &TestApp) -> String {
    let id = app.create_conversation("alice", "Trip to Lisbon").await;
    let record = app.store().conversation("alice", &id).await.unwrap();
    let answer = |text: &str| MessageDraft {
        prompt_tokens: Some(12),
        completion_tokens: Some(3),
        cost: Some(0.25),
        model_used: Some("fake-model".into()),
        ..MessageDraft::new(MessageRole::Assistant, text)
    };
    let (_, stored) = app
        .store()
        .append_messages(
            record,
            vec![
                MessageDraft::new(MessageRole::User, "Where should I eat?"),
                answer("Try the pastéis in Belém."),
                MessageDraft::new(MessageRole::User, "And after?"),
                answer("A walk along the river."),
            ],
        )
        .await
        .unwrap();
    let rated = app
        .put(
            &format!(
                "/api/v1/chat/conversations/{id}/messages/{}/feedback",
                stored[1].id
            ),
            "alice",
            &json!({"rating": "up", "comment": "Delicious."}),
        )
        .await;
    assert_eq!(rated.status, StatusCode::OK, "{}", rated.body);
    id
}

/// An export without what a new conversation changes: owner and times, and ids, which become
/// places in the file so that the tree (parents, siblings, the active leaf) is still compared.
fn without_ids_and_times(export: &Value) -> Value {
    let mut export = export.clone();
    let places: HashMap<String, usize> = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, m)| (m["id"].as_str().unwrap().to_owned(), i))
        .collect();
    let place = |id: &Value| id.as_str().map_or(Value::Null, |id| json!(places[id]));
    let conversation = export.as_object_mut().unwrap();
    for field in [
        "id",
        "user_id",
        "created_at",
        "updated_at",
        "last_message_at",
    ] {
        conversation.remove(field);
    }
    conversation["active_message_id"] = place(&conversation["active_message_id"]);
    for message in conversation["messages"].as_array_mut().unwrap() {
        let message = message.as_object_mut().unwrap();
        for field in ["id", "conversation_id", "created_at"] {
            message.remove(field);
        }
        message["parent_id"] = place(&message["parent_id"]);
        let siblings: Vec<Value> = message["sibling_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(place)
            .collect();
        message["sibling_ids"] = siblings.into();
        if let Some(feedback) = message.get_mut("feedback") {
            feedback.as_object_mut().unwrap().remove("updated_at");
        }
    }
    export
}

#[tokio::test]
async fn a_json_export_is_an_attachment_with_every_message_and_its_feedback() {
    let app = TestApp::spawn().await;
    let id = rated_conversation(&app).await;

    let export = app.get(&export_path(&id, "json"), "alice").await;

    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(export.header("content-type"), "application/json");
    assert_eq!(
        export.header("content-disposition"),
        "attachment; filename=\"Trip_to_Lisbon.json\""
    );
    assert_eq!(export.body["id"], id.as_str());
    assert_eq!(export.body["title"], "Trip to Lisbon");
    assert_eq!(export.body["message_count"], 4);
    let messages = export.body["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "Where should I eat?",
            "Try the pastéis in Belém.",
            "And after?",
            "A walk along the river."
        ]
    );
    assert_eq!(messages[1]["feedback"]["rating"], "up");
    assert_eq!(messages[1]["feedback"]["comment"], "Delicious.");
    assert_eq!(
        messages,
        &app.stored_messages("alice", &id).await,
        "an export shows the messages as the messages endpoint does"
    );
    let by_default = app
        .get(&format!("/api/v1/chat/conversations/{id}/export"), "alice")
        .await;
    assert_eq!(by_default.body, export.body);
}

#[tokio::test]
async fn a_markdown_export_is_the_title_then_the_turns() {
    let app = TestApp::spawn().await;
    let id = rated_conversation(&app).await;

    let export = app.get(&export_path(&id, "markdown"), "alice").await;

    assert_eq!(export.status, StatusCode::OK, "{}", export.text);
    assert_eq!(
        export.header("content-type"),
        "text/markdown; charset=utf-8"
    );
    assert_eq!(
        export.header("content-disposition"),
        "attachment; filename=\"Trip_to_Lisbon.md\""
    );
    assert_eq!(
        export.text,
        "# Trip to Lisbon\n\n\
         ## User\n\nWhere should I eat?\n\n\
         ## Assistant\n\nTry the pastéis in Belém.\n\n\
         ## User\n\nAnd after?\n\n\
         ## Assistant\n\nA walk along the river.\n"
    );
}

#[tokio::test]
async fn a_file_name_keeps_only_safe_characters_of_the_title() {
    let app = TestApp::spawn().await;
    let id = app
        .create_conversation("alice", "../\"Plans\"\r\nfor 2027?")
        .await;
    let export = app.get(&export_path(&id, "markdown"), "alice").await;
    assert_eq!(
        export.header("content-disposition"),
        "attachment; filename=\"..__Plans___for_2027_.md\""
    );
    assert_eq!(export.text, "# ../\"Plans\"  for 2027?\n");
}

#[tokio::test]
async fn an_unknown_format_is_422_and_another_users_conversation_404() {
    let app = TestApp::spawn().await;
    let id = rated_conversation(&app).await;

    let unknown = app.get(&export_path(&id, "pdf"), "alice").await;
    unknown.assert_problem(422);
    assert_eq!(unknown.body["errors"][0]["loc"], json!(["query", "format"]));

    for format in ["json", "markdown"] {
        app.get(&export_path(&id, format), "mallory")
            .await
            .assert_problem(404);
    }
    app.get(&export_path("no-such-conversation", "json"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn an_imported_export_is_a_new_conversation_with_the_same_messages_and_feedback() {
    let app = TestApp::spawn().await;
    let id = rated_conversation(&app).await;
    let export = app.get(&export_path(&id, "json"), "alice").await.body;

    let imported = app.post(IMPORT, "alice", &export).await;

    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let new_id = imported.body["id"].as_str().unwrap();
    assert_ne!(new_id, id);
    let old_ids: Vec<&Value> = export["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["id"])
        .collect();
    for message in imported.body["messages"].as_array().unwrap() {
        assert_eq!(message["conversation_id"], new_id);
        assert!(!old_ids.contains(&&message["id"]), "{message}");
    }
    let again = app.get(&export_path(new_id, "json"), "alice").await.body;
    assert_eq!(
        without_ids_and_times(&again),
        without_ids_and_times(&export)
    );
    assert_eq!(
        without_ids_and_times(&imported.body),
        without_ids_and_times(&export)
    );
    assert_eq!(
        app.performance_stats("alice").await["feedback"],
        json!({"up": 2, "down": 0}),
        "the imported rating counts beside the original's"
    );
    let listed = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(listed.body["total"], 2);
}

#[tokio::test]
async fn another_user_imports_a_copy_of_their_own() {
    let app = TestApp::spawn().await;
    let id = rated_conversation(&app).await;
    let export = app.get(&export_path(&id, "json"), "alice").await.body;

    let imported = app.post(IMPORT, "bob", &export).await;

    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    assert_eq!(imported.body["user_id"], "bob");
    let new_id = imported.body["id"].as_str().unwrap();
    assert_eq!(app.stored_messages("bob", new_id).await.len(), 4);
    app.get(&export_path(new_id, "json"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn a_file_without_parent_links_follows_its_order_and_one_with_them_is_checked() {
    let app = TestApp::spawn().await;
    let linear = json!({
        "title": "Hand written",
        "messages": [
            {"role": "user", "content": "One"},
            {"role": "assistant", "content": "Two"},
        ],
    });
    let imported = app.post(IMPORT, "alice", &linear).await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let contents: Vec<&Value> = imported.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["content"])
        .collect();
    assert_eq!(contents, [&json!("One"), &json!("Two")]);
    assert_eq!(imported.body["message_count"], 2);

    let linked = json!({
        "title": "Linked",
        "active_message_id": "b",
        "messages": [
            {"id": "a", "role": "user", "content": "One", "parent_id": null},
            {"id": "b", "role": "assistant", "content": "Two", "parent_id": "a"},
        ],
    });
    let imported = app.post(IMPORT, "alice", &linked).await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);

    let dangling = json!({
        "title": "Dangling",
        "active_message_id": "z",
        "messages": [
            {"id": "a", "role": "user", "content": "One", "parent_id": "b"},
            {"id": "b", "role": "assistant", "content": "Two", "parent_id": "nowhere"},
        ],
    });
    let refused = app.post(IMPORT, "alice", &dangling).await;
    refused.assert_problem(422);
    let locs: Vec<&Value> = refused.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert_eq!(
        locs,
        [
            &json!(["body", "messages", 0, "parent_id"]),
            &json!(["body", "messages", 1, "parent_id"]),
            &json!(["body", "active_message_id"]),
        ]
    );
}

#[tokio::test]
async fn a_malformed_file_is_422_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let message = |role: &str| json!({"role": role, "content": "hi"});
    let cases = [
        (
            json!({"messages": [message("user")]}),
            json!(["body", "title"]),
        ),
        (json!({"title": "No messages"}), json!(["body", "messages"])),
        (
            json!({"title": "t", "messages": [message("user"), message("wizard")]}),
            json!(["body", "messages", 1, "role"]),
        ),
        (
            json!({"title": "t", "messages": [{"role": "user"}]}),
            json!(["body", "messages", 0, "content"]),
        ),
        (
            json!({"title": "t", "messages": [
                {"role": "user", "content": "hi", "feedback": {"rating": "up"}}
            ]}),
            json!(["body", "messages", 0, "feedback"]),
        ),
        (
            json!({"title": "t", "messages": [
                {"role": "assistant", "content": "hi", "feedback": {"rating": "meh"}}
            ]}),
            json!(["body", "messages", 0, "feedback", "rating"]),
        ),
        (
            json!({"title": "t", "temperature": 3, "messages": []}),
            json!(["body", "temperature"]),
        ),
        (
            json!({"title": "t", "llm_provider": "nobody", "messages": []}),
            json!(["body", "llm_provider"]),
        ),
        (
            json!({"title": "t", "messages": [
                {"id": "x", "role": "user", "content": "hi"},
                {"id": "x", "role": "assistant", "content": "hi"}
            ]}),
            json!(["body", "messages", 1, "id"]),
        ),
    ];
    for (body, loc) in cases {
        let refused = app.post(IMPORT, "alice", &body).await;
        refused.assert_problem(422);
        assert_eq!(refused.body["errors"][0]["loc"], loc, "{}", refused.body);
    }
    let listed = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(listed.body["total"], 0);
}

#[tokio::test]
async fn an_import_over_the_sending_limits_is_refused_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let longest = "é".repeat(64_000);
    let accepted = app
        .post(
            IMPORT,
            "alice",
            &json!({"title": "Long", "messages": [{"role": "user", "content": longest}]}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.body);

    let too_long = app
        .post(
            IMPORT,
            "alice",
            &json!({"title": "Too long", "messages": [{"role": "user", "content": "x".repeat(64_001)}]}),
        )
        .await;
    too_long.assert_problem(422);
    assert_eq!(
        too_long.body["errors"][0]["loc"],
        json!(["body", "messages", 0, "content"])
    );

    let many: Vec<Value> = (0..1_001)
        .map(|i| json!({"role": "user", "content": i.to_string()}))
        .collect();
    let too_many = app
        .post(IMPORT, "alice", &json!({"title": "Many", "messages": many}))
        .await;
    too_many.assert_problem(422);
    assert_eq!(
        too_many.body["errors"][0]["loc"],
        json!(["body", "messages"])
    );

    let heavy: Vec<Value> = (0..20)
        .map(|_| json!({"role": "user", "content": "x".repeat(60_000)}))
        .collect();
    app.post(
        IMPORT,
        "alice",
        &json!({"title": "Heavy", "messages": heavy}),
    )
    .await
    .assert_problem(413);

    let listed = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(listed.body["total"], 1, "only the import within the limits");
}

#[tokio::test]
async fn an_import_of_many_messages_is_stored_whole() {
    let app = TestApp::spawn().await;
    let many: Vec<Value> = (0..250)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content": format!("message {i}")})
        })
        .collect();
    let imported = app
        .post(
            IMPORT,
            "alice",
            &json!({"title": "Long talk", "messages": many}),
        )
        .await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let id = imported.body["id"].as_str().unwrap();
    let export = app.get(&export_path(id, "json"), "alice").await.body;
    let messages = export["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 250);
    assert_eq!(export["message_count"], 250);
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(message["content"], format!("message {i}"));
        assert_eq!(message["sequence_number"], i + 1);
    }
}

#[tokio::test]
async fn an_imported_branched_file_keeps_its_tree_and_its_active_branch() {
    let app = TestApp::spawn().await;
    let branched = json!({
        "title": "Two answers",
        "active_message_id": "first-answer",
        "messages": [
            {"id": "question", "role": "user", "content": "Name a colour", "parent_id": null},
            {"id": "first-answer", "role": "assistant", "content": "Blue", "parent_id": "question"},
            {"id": "second-answer", "role": "assistant", "content": "Red", "parent_id": "question"},
        ],
    });

    let imported = app.post(IMPORT, "alice", &branched).await;

    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let messages = imported.body["messages"].as_array().unwrap();
    let (question, blue, red) = (&messages[0], &messages[1], &messages[2]);
    assert_eq!(blue["parent_id"], question["id"]);
    assert_eq!(red["parent_id"], question["id"]);
    assert_eq!(blue["sibling_ids"], json!([blue["id"], red["id"]]));
    assert_eq!(imported.body["active_message_id"], blue["id"]);
    let id = imported.body["id"].as_str().unwrap();
    let markdown = app.get(&export_path(id, "markdown"), "alice").await;
    assert!(markdown.text.contains("Blue"), "{}", markdown.text);
    assert!(!markdown.text.contains("Red"), "{}", markdown.text);
}
