use api_tests::TestApp;
use reqwest::StatusCode;
use serde_json::json;
use shared::domain::{MessageDraft, MessageRole};

const CONVERSATIONS: &str = "/api/v1/chat/conversations";

async fn add_messages(app: &TestApp, user: &str, id: &str, drafts: Vec<MessageDraft>) {
    let record = app.store().conversation(user, id).await.unwrap();
    app.store().append_messages(record, drafts).await.unwrap();
}

/// Adds `count` questions of alice's, `m1` to `m{count}`, to her conversation `id`.
async fn add_numbered_questions(app: &TestApp, id: &str, count: usize) {
    let drafts = (1..=count)
        .map(|i| MessageDraft::new(MessageRole::User, format!("m{i}")))
        .collect();
    add_messages(app, "alice", id, drafts).await;
}

/// How many items of conversation `id` storage still holds (read consistently).
async fn items_left(app: &TestApp, id: &str) -> i32 {
    app.store()
        .client()
        .query()
        .table_name(app.store().table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("CONV#{id}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .count
}

fn reply(text: &str, prompt: u32, completion: u32, cost: f64) -> MessageDraft {
    let mut draft = MessageDraft::new(MessageRole::Assistant, text);
    draft.prompt_tokens = Some(prompt);
    draft.completion_tokens = Some(completion);
    draft.cost = Some(cost);
    draft
}

#[tokio::test]
async fn creating_a_conversation_applies_the_documented_defaults() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            CONVERSATIONS,
            "alice",
            &json!({"title": "Trip", "description": "Planning", "system_prompt": "Be brief.", "enable_retrieval": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let c = &created.body;
    assert_eq!(c["title"], "Trip");
    assert_eq!(c["description"], "Planning");
    assert_eq!(c["system_prompt"], "Be brief.");
    assert_eq!(c["enable_retrieval"], true);
    assert_eq!(c["user_id"], "alice");
    assert_eq!(c["status"], "active");
    assert_eq!(c["context_window"], 4096);
    assert_eq!(c["memory_enabled"], true);
    assert_eq!(c["retrieval_limit"], 5);
    assert_eq!(c["retrieval_score_threshold"], 0.7);
    assert_eq!(c["message_count"], 0);
    assert_eq!(c["total_tokens"], 0);
    assert_eq!(c["total_cost"], 0.0);
    assert!(uuid::Uuid::parse_str(c["id"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn fields_a_client_must_not_set_are_ignored() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            CONVERSATIONS,
            "alice",
            &json!({"title": "Mine", "id": "chosen", "user_id": "bob", "message_count": 99,
                    "total_cost": 5.0, "created_at": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_ne!(created.body["id"], "chosen");
    assert_eq!(created.body["user_id"], "alice");
    assert_eq!(created.body["message_count"], 0);
    let id = created.body["id"].as_str().unwrap();

    let updated = app
        .put(
            &format!("{CONVERSATIONS}/{id}"),
            "alice",
            &json!({"user_id": "bob", "message_count": 7, "total_tokens": 3, "id": "other"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body["user_id"], "alice");
    assert_eq!(updated.body["message_count"], 0);
    assert_eq!(updated.body["id"], id);
    assert_eq!(app.get(CONVERSATIONS, "bob").await.body["total"], 0);
}

#[tokio::test]
async fn listing_shows_only_the_callers_conversations_most_recently_updated_first() {
    let app = TestApp::spawn().await;
    let first = app.create_conversation("alice", "first").await;
    let second = app.create_conversation("alice", "second").await;
    app.create_conversation("bob", "bob's").await;
    // Touching the first makes it the most recently updated.
    add_messages(
        &app,
        "alice",
        &first,
        vec![MessageDraft::new(MessageRole::User, "hi")],
    )
    .await;

    let list = app.get(CONVERSATIONS, "alice").await;
    assert_eq!(list.status, StatusCode::OK);
    let ids: Vec<&str> = list.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()]);
    assert_eq!(list.body["total"], 2);
    assert_eq!(list.body["limit"], 20);
    assert_eq!(list.body["offset"], 0);
}

#[tokio::test]
async fn listing_pages_through_limit_and_offset() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.create_conversation("alice", &format!("c{i}")).await);
    }
    ids.reverse();
    let page = app
        .get(&format!("{CONVERSATIONS}?limit=2&offset=1"), "alice")
        .await;
    let got: Vec<&str> = page.body["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[1].as_str(), ids[2].as_str()]);
    assert_eq!(page.body["total"], 5);
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["offset"], 1);
    let past_the_end = app
        .get(&format!("{CONVERSATIONS}?offset=10"), "alice")
        .await;
    assert_eq!(past_the_end.body["conversations"], json!([]));
}

#[tokio::test]
async fn paging_out_of_bounds_is_a_422_naming_the_parameter() {
    let app = TestApp::spawn().await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("offset=-1", "offset"),
        ("limit=abc", "limit"),
    ] {
        let reply = app.get(&format!("{CONVERSATIONS}?{query}"), "alice").await;
        reply.assert_problem(422);
        assert_eq!(
            reply.body["errors"][0]["loc"],
            json!(["query", param]),
            "{query}"
        );
    }
}

#[tokio::test]
async fn getting_a_conversation_includes_its_messages_in_order() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "chat").await;
    add_messages(
        &app,
        "alice",
        &id,
        vec![
            MessageDraft::new(MessageRole::User, "Hello"),
            reply("Hi there", 10, 3, 0.002),
        ],
    )
    .await;
    let got = app.get(&format!("{CONVERSATIONS}/{id}"), "alice").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["id"], id.as_str());
    assert_eq!(got.body["message_count"], 2);
    assert_eq!(got.body["total_tokens"], 13);
    assert_eq!(got.body["total_cost"], 0.002);
    assert!(got.body["last_message_at"].is_string());
    let messages = got.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "Hello");
    assert_eq!(messages[0]["sequence_number"], 1);
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["sequence_number"], 2);
    assert_eq!(messages[1]["total_tokens"], 13);

    let without = app
        .get(
            &format!("{CONVERSATIONS}/{id}?include_messages=false"),
            "alice",
        )
        .await;
    assert_eq!(without.body["messages"], json!([]));
    assert_eq!(without.body["message_count"], 2);
}

#[tokio::test]
async fn updating_changes_only_the_fields_sent() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            CONVERSATIONS,
            "alice",
            &json!({"title": "Old", "description": "keep me", "temperature": 0.5}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    let updated = app
        .put(
            &format!("{CONVERSATIONS}/{id}"),
            "alice",
            &json!({"title": "New", "status": "archived", "max_tokens": 256, "extra_metadata": {"pinned": true}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    let c = &updated.body;
    assert_eq!(c["title"], "New");
    assert_eq!(c["status"], "archived");
    assert_eq!(c["max_tokens"], 256);
    assert_eq!(c["extra_metadata"], json!({"pinned": true}));
    assert_eq!(c["description"], "keep me");
    assert_eq!(c["temperature"], 0.5);
    assert!(c["updated_at"].as_str().unwrap() > created.body["updated_at"].as_str().unwrap());
    let fetched = app.get(&format!("{CONVERSATIONS}/{id}"), "alice").await;
    assert_eq!(fetched.body["title"], "New");
}

#[tokio::test]
async fn an_invalid_update_is_a_422_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "Stay").await;
    let reply = app
        .put(
            &format!("{CONVERSATIONS}/{id}"),
            "alice",
            &json!({"title": "x", "temperature": 3, "status": "gone"}),
        )
        .await;
    reply.assert_problem(422);
    assert_eq!(
        app.get(&format!("{CONVERSATIONS}/{id}"), "alice")
            .await
            .body["title"],
        "Stay"
    );
}

#[tokio::test]
async fn a_temperature_too_small_for_storage_is_a_422_not_a_server_error() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "Stay").await;
    // Found by the fuzzer: within 0..=2, but DynamoDB holds no nonzero number below 1e-130.
    let tiny = json!({"temperature": 2.225_073_858_507e-311});
    let updated = app
        .put(&format!("{CONVERSATIONS}/{id}"), "alice", &tiny)
        .await;
    updated.assert_problem(422);
    assert_eq!(
        updated.body["errors"][0]["loc"],
        json!(["body", "temperature"])
    );
    app.post(CONVERSATIONS, "alice", &tiny)
        .await
        .assert_problem(422);
    let zero = app
        .put(
            &format!("{CONVERSATIONS}/{id}"),
            "alice",
            &json!({"temperature": 0}),
        )
        .await;
    assert_eq!(zero.body["temperature"], 0.0);
}

#[tokio::test]
async fn deleting_a_conversation_hides_it_everywhere_and_removes_its_messages() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "doomed").await;
    let kept = app.create_conversation("alice", "kept").await;
    add_messages(
        &app,
        "alice",
        &id,
        (0..30)
            .map(|i| MessageDraft::new(MessageRole::User, format!("m{i}")))
            .collect(),
    )
    .await;

    let deleted = app.delete(&format!("{CONVERSATIONS}/{id}"), "alice").await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert!(deleted.body["message"].is_string());

    app.get(&format!("{CONVERSATIONS}/{id}"), "alice")
        .await
        .assert_problem(404);
    app.get(&format!("{CONVERSATIONS}/{id}/messages"), "alice")
        .await
        .assert_problem(404);
    app.put(
        &format!("{CONVERSATIONS}/{id}"),
        "alice",
        &json!({"title": "back"}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("{CONVERSATIONS}/{id}"), "alice")
        .await
        .assert_problem(404);
    let list = app.get(CONVERSATIONS, "alice").await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["conversations"][0]["id"], kept.as_str());

    assert_eq!(
        items_left(&app, &id).await,
        0,
        "messages must be gone from storage"
    );
}

#[tokio::test]
async fn messages_are_listed_in_sequence_order_and_paged() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "long").await;
    add_numbered_questions(&app, &id, 12).await;
    let all = app
        .get(&format!("{CONVERSATIONS}/{id}/messages"), "alice")
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let seqs: Vec<u64> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let page = app
        .get(
            &format!("{CONVERSATIONS}/{id}/messages?limit=3&offset=10"),
            "alice",
        )
        .await;
    let contents: Vec<&str> = page
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m11", "m12"]);
}

#[tokio::test]
async fn deleting_a_message_takes_it_and_what_follows_it_off_the_counters() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "counted").await;
    add_messages(
        &app,
        "alice",
        &id,
        vec![
            MessageDraft::new(MessageRole::User, "q"),
            reply("a", 20, 5, 0.01),
            reply("b", 30, 7, 0.02),
        ],
    )
    .await;
    let messages = app
        .get(&format!("{CONVERSATIONS}/{id}/messages"), "alice")
        .await
        .body;
    let second = messages[1]["id"].as_str().unwrap();

    let deleted = app
        .delete(&format!("{CONVERSATIONS}/{id}/messages/{second}"), "alice")
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let c = app
        .get(&format!("{CONVERSATIONS}/{id}"), "alice")
        .await
        .body;
    // "b" follows "a", so it goes with it.
    assert_eq!(c["message_count"], 1);
    assert_eq!(c["total_tokens"], 0);
    assert!(c["total_cost"].as_f64().unwrap().abs() < 1e-9);
    let seqs: Vec<u64> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1]);
    app.delete(&format!("{CONVERSATIONS}/{id}/messages/{second}"), "alice")
        .await
        .assert_problem(404);

    // A new message never reuses a deleted one's number.
    add_messages(
        &app,
        "alice",
        &id,
        vec![MessageDraft::new(MessageRole::User, "again")],
    )
    .await;
    let last = app
        .get(&format!("{CONVERSATIONS}/{id}/messages"), "alice")
        .await
        .body;
    assert_eq!(last[1]["sequence_number"], 4);
}

#[tokio::test]
async fn another_user_gets_404_on_every_conversation_route() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "private").await;
    add_messages(
        &app,
        "alice",
        &id,
        vec![MessageDraft::new(MessageRole::User, "secret")],
    )
    .await;
    let message = app
        .get(&format!("{CONVERSATIONS}/{id}/messages"), "alice")
        .await
        .body[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let path = format!("{CONVERSATIONS}/{id}");
    for reply in [
        app.get(&path, "mallory").await,
        app.put(&path, "mallory", &json!({"title": "mine now"}))
            .await,
        app.put(&path, "mallory", &json!({})).await,
        app.delete(&path, "mallory").await,
        app.get(&format!("{path}/messages"), "mallory").await,
        app.delete(&format!("{path}/messages/{message}"), "mallory")
            .await,
    ] {
        reply.assert_problem(404);
        assert!(!reply.body.to_string().contains("secret"));
    }
    assert_eq!(app.get(CONVERSATIONS, "mallory").await.body["total"], 0);
    let intact = app.get(&path, "alice").await.body;
    assert_eq!(intact["title"], "private");
    assert_eq!(intact["message_count"], 1);
}

#[tokio::test]
async fn concurrent_appends_get_unique_gap_free_sequence_numbers() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "busy").await;
    let writers = (0..40).map(|i| {
        let store = app.store().clone();
        let id = id.clone();
        tokio::spawn(async move {
            let record = store.conversation("alice", &id).await.unwrap();
            store
                .append_messages(
                    record,
                    vec![
                        MessageDraft::new(MessageRole::User, format!("u{i}")),
                        reply(&format!("a{i}"), 2, 1, 0.5),
                    ],
                )
                .await
                .unwrap()
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }
    let messages = app
        .store()
        .conversation_tree("alice", &id)
        .await
        .map(|(_, tree)| tree.messages().to_vec())
        .unwrap();
    let seqs: Vec<u64> = messages.iter().map(|m| m.sequence_number).collect();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    // Each writer's pair stays together: the reply directly follows its question.
    for pair in messages.chunks(2) {
        assert_eq!(pair[0].content[1..], pair[1].content[1..]);
    }
    let c = app
        .store()
        .conversation("alice", &id)
        .await
        .unwrap()
        .conversation;
    assert_eq!(c.message_count, 80);
    assert_eq!(c.total_tokens, 120);
    assert!((c.total_cost - 20.0).abs() < 1e-9);
}

#[tokio::test]
async fn content_too_large_for_dynamodb_is_refused_with_413_before_it_is_written() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "big").await;
    let record = app.store().conversation("alice", &id).await.unwrap();
    let err = app
        .store()
        .append_messages(
            record,
            vec![MessageDraft::new(MessageRole::User, "x".repeat(500 * 1024))],
        )
        .await
        .unwrap_err();
    let api: shared::error::ServiceError = err.into();
    assert_eq!(shared::http::problem::status(&api), 413);
    assert_eq!(
        app.store()
            .conversation("alice", &id)
            .await
            .unwrap()
            .conversation
            .message_count,
        0
    );
}

#[tokio::test]
async fn a_delete_whose_purge_fails_can_be_retried_and_leaves_nothing_behind() {
    let (app, dynamodb) = api_tests::TestApp::spawn_with_faults(&[]).await;
    let id = app.create_conversation("alice", "doomed").await;
    add_numbered_questions(&app, &id, 30).await;
    // Enough throttles to outlast the SDK's own retries of the purge's first batch.
    dynamodb.set(api_tests::Fault::ThrottleTimes {
        operation: "BatchWriteItem".into(),
        times: 10,
    });
    let path = format!("{CONVERSATIONS}/{id}");
    app.delete(&path, "alice").await.assert_problem(503);
    dynamodb.set(api_tests::Fault::None);

    // The failed delete left a conversation its owner still sees and can delete again.
    assert_eq!(app.get(&path, "alice").await.status, StatusCode::OK);
    let retried = app.delete(&path, "alice").await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    app.get(&path, "alice").await.assert_problem(404);
    assert_eq!(app.get(CONVERSATIONS, "alice").await.body["total"], 0);
    assert_eq!(
        items_left(&app, &id).await,
        0,
        "nothing of the conversation stays in storage"
    );
}
