//! A chat keeps a snapshot of its character and backend, so that a turn in it asks the model
//! after one DynamoDB step; the snapshot stays true because storing the question checks it,
//! and a turn that finds it stale runs again on a fresh one without the client seeing it.

use std::time::Duration;

use api_tests::faulty_dynamodb::sequential_steps;
use api_tests::{FakeLlm, Fault, FaultyDynamoDb, Script, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use chrono::SubsecRound;
use shared::domain::{Character, CharacterInfo};
use shared::store::keys;

use super::{CHAT, add_backend, history, jack, send, start, texts, turn_routes, update_jack};

/// The system prompt of the model's latest request.
fn latest_system_prompt(fake: &FakeLlm) -> String {
    let requests = fake.requests();
    let latest = requests.last().expect("the model was asked");
    latest["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A stack whose DynamoDB is reached through the fault proxy, its model, and alice's chat
/// with a Jack through a backend of his.
struct Chat {
    app: TestApp,
    dynamodb: FaultyDynamoDb,
    fake: FakeLlm,
    /// Jack's numeric id and uid.
    character: (u64, String),
    backend: String,
    id: String,
}

/// [`Chat`] through a backend made from `backend`.
async fn chat_behind_the_proxy(backend: Value) -> Chat {
    let fake = FakeLlm::start().await;
    let (app, dynamodb) = TestApp::spawn_with_faults(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("LLM_MODEL", "fake-model"),
    ])
    .await;
    let (number, uid, _) = jack(&app, "alice", json!({})).await;
    let backend = add_backend(&app, "alice", &uid, backend).await;
    let id = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": backend}),
    )
    .await;
    Chat {
        app,
        dynamodb,
        fake,
        character: (number, uid),
        backend,
        id,
    }
}

/// Waits until `done` holds, for at most ten seconds.
async fn within_ten_seconds(done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not done within ten seconds");
}

#[tokio::test]
async fn a_character_edited_on_another_instance_between_two_turns_speaks_in_the_second() {
    let Chat {
        app,
        fake,
        character: (number, _),
        id: chat,
        ..
    } = chat_behind_the_proxy(json!({})).await;
    let beside = app.beside_with_model(&fake).await;
    // FreeChat's sends, and a Chatter turn in the same chat.
    let turns = [
        format!("{CHAT}/send/{chat}"),
        format!("{CHAT}/send/stream/{chat}"),
        "/api/v1/chat/chat".to_owned(),
    ];
    for (i, path) in turns.iter().enumerate() {
        let text = format!("Hail {i}");
        let said = match path.contains("/send/") {
            true => json!({"contentText": text}),
            false => json!({"message": text, "conversation_id": chat}),
        };
        let first = app.post(path, "alice", &said).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        let profile = format!("A sailor who once crossed the sea of {i}.");
        update_jack(&beside, number, "profile", &profile).await;

        let second = app.post(path, "alice", &said).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text);
        assert!(
            latest_system_prompt(&fake).contains(&profile),
            "{path} answered from the old character"
        );
    }
    // Each turn stored its question once, the ones that ran again too.
    let said = texts(&history(&app, "alice", &chat).await);
    assert_eq!(said.iter().filter(|t| t.starts_with("Hail")).count(), 6);
}

#[tokio::test]
async fn a_backend_edited_between_two_sends_gives_the_second_its_settings() {
    let Chat {
        app,
        fake,
        backend,
        id: chat,
        ..
    } = chat_behind_the_proxy(json!({})).await;
    send(&app, "alice", &chat, "Ahoy").await;
    let edited = app
        .put(
            &format!("/api/v1/character/backend/{backend}"),
            "alice",
            &json!({"temperature": 1.25}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);

    let reply = send(&app, "alice", &chat, "Ahoy again").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(fake.requests().last().unwrap()["temperature"], 1.25);
}

#[tokio::test]
async fn every_turn_in_a_chat_asks_the_model_after_one_dynamodb_step() {
    // A quota too: its claim is stored beside the model call like the question.
    let Chat {
        app,
        dynamodb,
        fake,
        character: (_, uid),
        id: chat,
        ..
    } = chat_behind_the_proxy(json!({"quotaType": "messages", "initQuota": 100})).await;
    send(&app, "alice", &chat, "Ahoy").await;
    let said = json!({"contentText": "Ahoy"});
    let asked = json!({"message": "Ahoy", "conversation_id": chat});
    let mut turns = turn_routes(&chat, &uid, &said).to_vec();
    turns.extend([
        (Method::POST, "/api/v1/chat/chat".into(), Some(&asked)),
        (Method::POST, "/api/v1/chat/streaming".into(), Some(&asked)),
    ]);
    // Calls that overlap are then plainly apart from calls that follow each other.
    dynamodb.set_latency(Duration::from_millis(20));
    for (method, path, body) in turns {
        dynamodb.take_calls();
        fake.take_request_times();
        let mut request = app.request(method, &path, "alice");
        if let Some(body) = body {
            request = request.json(body);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), StatusCode::OK, "{path}");
        reply.text().await.unwrap();
        let asked_at = fake.take_request_times()[0];
        let steps = sequential_steps(&dynamodb.take_calls(), asked_at);
        assert_eq!(
            steps, 1,
            "{path} asked the model after {steps} DynamoDB steps"
        );
    }
}

#[tokio::test]
async fn of_two_sends_racing_for_a_quotas_last_reply_the_loser_is_429_without_waiting_for_the_model()
 {
    let Chat {
        app,
        dynamodb,
        fake,
        id: chat,
        ..
    } = chat_behind_the_proxy(json!({"quotaType": "messages", "initQuota": 1})).await;
    let (held, gate) = Script::reply("Aye.").held();
    fake.always(held);
    // Both read the chat with its quota untouched, and both ask the model beside storing
    // their question; the store lets one claim the last reply.
    dynamodb.set(Fault::hold("TransactWriteItems"));
    let mut sends: Vec<_> = (0..2)
        .map(|i| {
            let request = app
                .request(Method::POST, &format!("{CHAT}/send/{chat}"), "alice")
                .json(&json!({"contentText": format!("Ahoy {i}")}));
            tokio::spawn(request.send())
        })
        .collect();
    within_ten_seconds(|| fake.calls() == 2).await;
    dynamodb.set(Fault::None);
    // The model has answered neither, and yet one send is answered: refused, without waiting.
    within_ten_seconds(|| sends.iter().any(|send| send.is_finished())).await;
    let refused = sends.remove(sends.iter().position(|send| send.is_finished()).unwrap());
    let refused = refused.await.unwrap().unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    gate.add_permits(2);
    let admitted = sends.remove(0).await.unwrap().unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
    let answers = texts(&history(&app, "alice", &chat).await);
    assert_eq!(answers.iter().filter(|t| *t == "Aye.").count(), 1);
}

#[tokio::test]
async fn a_chat_without_a_snapshot_is_answered_from_its_items_and_gets_one() {
    let Chat {
        app,
        fake,
        id: chat,
        ..
    } = chat_behind_the_proxy(json!({})).await;
    // As a chat started before chats kept snapshots.
    let store = app.store();
    let key = [
        (keys::PK, keys::conversation_pk(&chat)),
        (keys::SK, keys::CONVERSATION_SK.to_owned()),
    ]
    .map(|(name, value)| {
        (
            name.to_owned(),
            aws_sdk_dynamodb::types::AttributeValue::S(value),
        )
    });
    store
        .client()
        .update_item()
        .table_name(store.table())
        .set_key(Some(key.into_iter().collect()))
        .update_expression("REMOVE chat_snapshot")
        .send()
        .await
        .unwrap();
    assert!(
        store
            .chat("alice", &chat)
            .await
            .unwrap()
            .record
            .snapshot
            .is_none()
    );

    let reply = send(&app, "alice", &chat, "Ahoy").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(latest_system_prompt(&fake).contains("A sailor of the northern seas."));
    let saved = store.chat("alice", &chat).await.unwrap().record.snapshot;
    assert_eq!(saved.unwrap().character.info.name, "Jack");
}

#[tokio::test]
async fn another_users_chat_is_404_on_the_assistant_routes_and_asks_the_model_nothing() {
    let Chat {
        app,
        fake,
        id: chat,
        ..
    } = chat_behind_the_proxy(json!({})).await;
    let (_, helper, _) = jack(&app, "mallory", json!({})).await;
    for path in [
        format!("{CHAT}/send/assistant/{chat}/{helper}"),
        format!("{CHAT}/send/stream/assistant/{chat}/{helper}"),
    ] {
        app.get(&path, "mallory").await.assert_problem(404);
    }
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn a_character_last_changed_on_a_whole_millisecond_can_be_changed_again() {
    // Such a time is written with three fractional digits instead of six; the condition that
    // guards an update must spell it as the item does, or the update is a spurious 409 (about
    // one in a thousand updates, a flaky test before).
    let app = TestApp::spawn().await;
    let mut character = Character::create(
        "alice",
        7,
        CharacterInfo {
            name: "Jack".into(),
            ..Default::default()
        },
    );
    character.modified_at = character.modified_at.trunc_subsecs(3);
    app.store().create_character(&character).await.unwrap();

    let read = character.modified_at;
    character.info.name = "Jill".into();
    character.modified_at = shared::domain::now();
    app.store()
        .replace_character(&character, read)
        .await
        .expect("the update's condition matches the stored time");
}
