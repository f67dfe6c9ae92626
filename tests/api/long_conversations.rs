//! Long conversations: a turn reads its conversation's newest messages, not every one, and
//! still finds a path that goes back further than they do.

use api_tests::{Call, FakeLlm, FaultyDynamoDb, Script, TestApp, app_with_model, prompt_messages};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::domain::{Message, MessageDraft, MessageRole};

const CHAT: &str = "/api/v1/chat/chat";
/// More exchanges than the messages a turn reads at first.
const EXCHANGES: usize = 150;

/// alice's conversation of `exchanges` questions and answers, "q1", "a1", ...: its id and
/// its messages, oldest first.
async fn long_conversation(app: &TestApp, exchanges: usize) -> (String, Vec<Message>) {
    let id = app.create_conversation("alice", "A long talk").await;
    let messages = app.store_exchanges("alice", &id, exchanges).await;
    (id, messages)
}

async fn ask(app: &TestApp, fake: &FakeLlm, body: Value) -> Value {
    fake.push(Script::reply("Noted."));
    let reply = app.post(CHAT, "alice", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// The contents of the conversation's active branch, root to leaf.
async fn active_branch(app: &TestApp, id: &str) -> Vec<String> {
    let path = format!("/api/v1/chat/conversations/{id}/messages?limit=100");
    let reply = app.get(&path, "alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

/// The prompt's messages after its system prompt, as (role, content).
fn history_and_question(fake: &FakeLlm) -> Vec<(String, String)> {
    let mut prompt = prompt_messages(fake.requests().last().unwrap());
    prompt.retain(|(role, _)| role != "system");
    prompt
}

fn query_capacity(calls: &[Call]) -> f64 {
    calls
        .iter()
        .filter(|call| call.operation == "Query")
        .map(|call| call.capacity)
        .sum()
}

/// An app whose DynamoDB calls are counted, and its fake model.
async fn app_counting_reads() -> (TestApp, FakeLlm, FaultyDynamoDb) {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("LLM_MODEL", "fake-model"),
    ])
    .await;
    (app, fake, dynamodb)
}

/// Asks `body` in alice's conversation `id`: the turn's queries take under half the read
/// units of reading every message (as listing every branch does). The reply.
async fn ask_reading_under_half(
    app: &TestApp,
    fake: &FakeLlm,
    dynamodb: &FaultyDynamoDb,
    id: &str,
    body: Value,
) -> Value {
    dynamodb.count_capacity();
    dynamodb.take_calls();
    let every = format!("/api/v1/chat/conversations/{id}/messages?branch=all&limit=1");
    assert_eq!(app.get(&every, "alice").await.status, StatusCode::OK);
    let reading_everything = query_capacity(&dynamodb.take_calls());

    let reply = ask(app, fake, body).await;
    let turn = query_capacity(&dynamodb.take_calls());
    assert!(
        turn * 2.0 < reading_everything,
        "the turn's queries took {turn} read units, reading every message {reading_everything}"
    );
    reply
}

#[tokio::test]
async fn a_turn_in_a_long_conversation_reads_its_newest_messages_not_every_one() {
    let (app, fake, dynamodb) = app_counting_reads().await;
    let (id, _) = long_conversation(&app, EXCHANGES).await;
    let question = json!({"message": "q151", "conversation_id": id});
    ask_reading_under_half(&app, &fake, &dynamodb, &id, question).await;
    // The prompt still carries the newest 100 messages before the question.
    let prompt = history_and_question(&fake);
    assert_eq!(prompt.len(), 101, "{prompt:?}");
    assert_eq!(prompt[0], ("user".into(), "q101".into()));
    assert_eq!(prompt[99], ("assistant".into(), "a150".into()));
    assert_eq!(prompt[100], ("user".into(), "q151".into()));
}

#[tokio::test]
async fn editing_an_old_question_answers_it_from_the_history_before_it() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, messages) = long_conversation(&app, EXCHANGES).await;
    let q3 = &messages[4];

    let body =
        json!({"message": "q3, put better", "conversation_id": id, "edit_message_id": q3.id});
    ask(&app, &fake, body).await;
    let said: Vec<String> = history_and_question(&fake)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(said, ["q1", "a1", "q2", "a2", "q3, put better"]);
    assert_eq!(
        active_branch(&app, &id).await,
        ["q1", "a1", "q2", "a2", "q3, put better", "Noted."]
    );
}

#[tokio::test]
async fn editing_the_first_question_of_a_long_conversation_starts_a_branch_from_nothing() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, messages) = long_conversation(&app, EXCHANGES).await;
    let q1 = &messages[0];

    let edited = ask(
        &app,
        &fake,
        json!({"message": "q1, put better", "conversation_id": id, "edit_message_id": q1.id}),
    )
    .await;
    let said: Vec<String> = history_and_question(&fake)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(said, ["q1, put better"]);
    assert_eq!(active_branch(&app, &id).await, ["q1, put better", "Noted."]);
    let question = &edited["message"]["parent_id"];
    let listing = app
        .get(
            &format!("/api/v1/chat/conversations/{id}/messages?limit=1"),
            "alice",
        )
        .await;
    assert_eq!(&listing.body[0]["id"], question);
    assert_eq!(listing.body[0]["parent_id"], Value::Null);
    assert_eq!(listing.body[0]["sibling_ids"], json!([q1.id, question]));
}

#[tokio::test]
async fn a_turn_on_a_branch_older_than_the_newest_messages_reads_its_path_not_every_message() {
    let (app, fake, dynamodb) = app_counting_reads().await;
    let (id, first_branch) = long_conversation(&app, 30).await;
    // 300 exchanges on another branch, from the first answer, then back to the first branch.
    app.store_branch("alice", &id, Some(&first_branch[1]), "b", 300)
        .await;
    let leaf = &first_branch[59];
    let back = json!({"active_message_id": leaf.id});
    let chosen = app
        .put(&format!("/api/v1/chat/conversations/{id}"), "alice", &back)
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.body);
    let question = json!({"message": "q31", "conversation_id": id});
    ask_reading_under_half(&app, &fake, &dynamodb, &id, question).await;
    let prompt = history_and_question(&fake);
    assert_eq!(prompt.len(), 61, "{prompt:?}");
    assert_eq!(prompt[0], ("user".into(), "q1".into()));
    assert_eq!(prompt[59], ("assistant".into(), "a30".into()));
    assert_eq!(prompt[60], ("user".into(), "q31".into()));
}

#[tokio::test]
async fn regenerating_an_answer_older_than_the_newest_messages_lists_every_version() {
    let (app, fake, dynamodb) = app_counting_reads().await;
    let (id, messages) = long_conversation(&app, 2).await;
    let (q2, a2) = (&messages[2], &messages[3]);
    // A second version of a2, then a long talk after it.
    let record = app.store().conversation("alice", &id).await.unwrap();
    let again = MessageDraft::new(MessageRole::Assistant, "a2, again").following(q2);
    let (_, again) = app
        .store()
        .append_messages(record, vec![again])
        .await
        .unwrap();
    app.store_exchanges("alice", &id, 2 * EXCHANGES).await;

    let body = json!({"conversation_id": id, "regenerate_message_id": a2.id});
    let regenerated = ask_reading_under_half(&app, &fake, &dynamodb, &id, body).await;
    let said: Vec<String> = history_and_question(&fake)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(said, ["q1", "a1", "q2"]);
    let new = &regenerated["message"]["id"];
    assert_eq!(
        regenerated["message"]["sibling_ids"],
        json!([a2.id, again[0].id, new])
    );
}

#[tokio::test]
async fn a_turn_on_an_old_branch_of_an_imported_conversation_reads_its_path_not_every_message() {
    let (app, fake, dynamodb) = app_counting_reads().await;
    // A first branch of 60 messages, then 600 on another, from the second message; the first
    // branch is the active one.
    let message = |id: String, i: usize, parent: Option<String>| {
        let role = if i.is_multiple_of(2) {
            "user"
        } else {
            "assistant"
        };
        json!({"id": id, "role": role, "content": id, "parent_id": parent})
    };
    let first: Vec<Value> = (0..60)
        .map(|i| {
            message(
                format!("m{i}"),
                i,
                i.checked_sub(1).map(|p| format!("m{p}")),
            )
        })
        .collect();
    let other = (0..600).map(|i| {
        let parent = if i == 0 {
            "m1".into()
        } else {
            format!("o{}", i - 1)
        };
        message(format!("o{i}"), i, Some(parent))
    });
    let file = json!({
        "title": "Imported",
        "active_message_id": "m59",
        "messages": first.into_iter().chain(other).collect::<Vec<_>>(),
    });
    let imported = app
        .post("/api/v1/chat/conversations/import", "alice", &file)
        .await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    let id = imported.body["id"].as_str().unwrap();
    dynamodb.count_capacity();
    dynamodb.take_calls();

    ask(
        &app,
        &fake,
        json!({"message": "m60", "conversation_id": id}),
    )
    .await;
    let items: u64 = dynamodb.take_calls().iter().map(|call| call.items).sum();
    assert!(
        items < 128 + 60 + 10,
        "the turn read {items} items of a conversation of 660 messages"
    );
    let prompt = history_and_question(&fake);
    assert_eq!(prompt.len(), 61, "{prompt:?}");
    assert_eq!(prompt[0].1, "m0");
    assert_eq!(prompt[59].1, "m59");
}
