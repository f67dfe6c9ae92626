use std::collections::HashSet;

use api_tests::{FakeLlm, Reply, TestApp};
use aws_sdk_dynamodb::types::AttributeValue;
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::store::items::ConversationItem;
use tokio::task::JoinHandle;

/// Sends alice's `message` into conversation `id` in the background; returns the handle of
/// its reply.
fn spawn_chat(app: &TestApp, id: &str, message: String) -> JoinHandle<Reply> {
    let request = app
        .request(reqwest::Method::POST, "/api/v1/chat/chat", "alice")
        .json(&json!({"message": message, "conversation_id": id}));
    tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
}

/// Waits for every spawned chat and asserts that each answered 200.
async fn assert_all_answered(sends: impl IntoIterator<Item = JoinHandle<Reply>>) {
    for reply in futures_util::future::join_all(sends).await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
}

/// Alice's messages of conversation `id`, read from the store as JSON.
async fn stored(app: &TestApp, id: &str) -> Vec<Value> {
    app.store()
        .conversation_tree("alice", id)
        .await
        .map(|(_, tree)| tree.messages().to_vec())
        .unwrap()
        .into_iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect()
}

/// Asserts that `messages` hold each of `questions` distinct questions and one answer each,
/// numbered 1..n without gaps, every id once.
fn assert_every_turn_once(messages: &[Value], questions: usize) {
    assert_eq!(messages.len(), 2 * questions);
    let sequence: Vec<u64> = messages
        .iter()
        .map(|m| m["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(sequence, (1..=2 * questions as u64).collect::<Vec<_>>());
    let asked: HashSet<&str> = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(asked.len(), questions, "every question once");
    let ids: HashSet<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), messages.len());
}

/// Asserts that conversation `id`, read through `app`, counts exactly `messages`: their
/// number, tokens and cost.
async fn assert_counters_add_up(app: &TestApp, id: &str, messages: &[Value]) {
    let conversation = app
        .store()
        .conversation("alice", id)
        .await
        .unwrap()
        .conversation;
    let tokens: u64 = messages
        .iter()
        .filter_map(|m| m["total_tokens"].as_u64())
        .sum();
    let cost: f64 = messages.iter().filter_map(|m| m["cost"].as_f64()).sum();
    assert_eq!(conversation.message_count, messages.len() as u64);
    assert_eq!(conversation.total_tokens, tokens);
    assert!((conversation.total_cost - cost).abs() < 1e-9);
}

/// Sends `per_conversation` chats to each conversation, all at once, and checks what the
/// store holds: every question and answer once, numbered 1..n without gaps, and counters
/// that add up.
async fn concurrent_sends(conversations: usize, per_conversation: usize) {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("LLM_PROMPT_PRICE_PER_1K", "1"),
    ])
    .await;
    let mut ids = Vec::new();
    for i in 0..conversations {
        ids.push(app.create_conversation("alice", &format!("c{i}")).await);
    }
    let sends = ids
        .iter()
        .flat_map(|id| (0..per_conversation).map(move |n| (id.clone(), n)))
        .map(|(id, n)| spawn_chat(&app, &id, format!("question {n} for {id}")));
    assert_all_answered(sends).await;

    for id in &ids {
        let messages = stored(&app, id).await;
        assert_every_turn_once(&messages, per_conversation);

        // FreeChat's quota counters, kept on the same item, add up too.
        let key = std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S(format!("CONV#{id}"))),
            ("sk".to_owned(), AttributeValue::S("META".into())),
        ]);
        let raw = app
            .store()
            .client()
            .get_item()
            .table_name(app.store().table())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        let item: ConversationItem = serde_dynamo::from_item(raw.item.unwrap()).unwrap();
        let answers: Vec<&Value> = messages
            .iter()
            .filter(|m| m["role"] == "assistant")
            .collect();
        assert_eq!(item.usage.replies, answers.len() as u64);
        let prompt: u64 = answers
            .iter()
            .filter_map(|m| m["prompt_tokens"].as_u64())
            .sum();
        let completion: u64 = answers
            .iter()
            .filter_map(|m| m["completion_tokens"].as_u64())
            .sum();
        assert_eq!(
            (item.usage.input_tokens, item.usage.output_tokens),
            (prompt, completion)
        );

        assert_counters_add_up(&app, id, &messages).await;
    }
    assert_eq!(fake.calls(), conversations * per_conversation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sends_over_ten_conversations_lose_and_repeat_nothing() {
    concurrent_sends(10, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sends_to_one_conversation_lose_and_repeat_nothing() {
    concurrent_sends(1, 200).await;
}

/// Two stacks over one table, as two Lambda instances: each has its own store and its own
/// in-process append locks, so their appends to one conversation race in DynamoDB and only
/// the conditional writes keep the sequence straight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_through_two_instances_to_one_conversation_lose_and_repeat_nothing() {
    let fake = FakeLlm::start().await;
    let vars = [
        ("LLM_BASE_URL", fake.base_url.as_str()),
        ("LLM_PROMPT_PRICE_PER_1K", "1"),
    ];
    let first = TestApp::spawn_with(&vars).await;
    let second = first.spawn_beside(&vars).await;
    assert_ne!(first.base_url, second.base_url);
    let id = first.create_conversation("alice", "shared").await;
    let per_instance = 30;
    let sends = (0..2 * per_instance).map(|n| {
        let app = if n % 2 == 0 { &first } else { &second };
        spawn_chat(app, &id, format!("question {n}"))
    });
    assert_all_answered(sends).await;

    let messages = stored(&first, &id).await;
    assert_every_turn_once(&messages, 2 * per_instance);

    // Read through the other instance: both see the same counters, equal to the sums.
    assert_counters_add_up(&second, &id, &messages).await;
    assert_eq!(fake.calls(), 2 * per_instance);
}
