//! A chat's history: pages, debug listings, rollback and clearing.

use super::*;

#[tokio::test]
async fn pages_count_back_from_the_newest_and_show_the_greeting_when_they_reach_the_start() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    let empty = history(&app, "alice", &chat).await;
    assert_eq!(texts(&empty), ["Ahoy there!"]);
    assert_eq!(empty[0]["messageId"], 0);

    talk_rounds(&app, &fake, &chat, 3).await;
    let page = |limit: i64, offset: Option<i64>| {
        let app = &app;
        let chat = chat.clone();
        async move {
            let path = match offset {
                Some(offset) => format!("{CHAT}/messages/{chat}/{limit}/{offset}"),
                None => format!("{CHAT}/messages/{chat}/{limit}"),
            };
            texts(&app.get(&path, "alice").await.body)
        }
    };
    assert_eq!(page(2, None).await, ["q3", "a3"]);
    assert_eq!(page(2, Some(0)).await, ["q3", "a3"]);
    assert_eq!(page(2, Some(2)).await, ["q2", "a2"]);
    assert_eq!(page(3, Some(4)).await, ["Ahoy there!", "q1", "a1"]);
    assert_eq!(page(10, Some(5)).await, ["Ahoy there!", "q1"]);
    assert_eq!(page(10, Some(7)).await, Vec::<String>::new());
    assert_eq!(page(10, Some(-3)).await.len(), 7);
    assert_eq!(page(0, None).await, Vec::<String>::new());
    app.get(&format!("{CHAT}/messages/{chat}/-1"), "alice")
        .await
        .assert_problem(400);
    let all = debug_history(&app, "alice", &chat).await;
    assert_eq!(all.as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn debug_listings_carry_ext_for_the_characters_owner_only() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, uid, _) = jack(&app, "alice", json!({})).await;
    update_jack(&app, id, "visibility", "public").await;
    let own = start(&app, "alice", json!({"characterUid": uid})).await;
    let bobs = start(&app, "bob", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &own, "hi", "Ahoy!").await;
    talk(&app, &fake, "bob", &bobs, "hi", "Ahoy!").await;

    for path in [
        format!("{CHAT}/messages/debug/{own}"),
        format!("{CHAT}/messages/debug/{own}/2"),
        format!("{CHAT}/messages/debug/{own}/2/0"),
    ] {
        let records = app.get(&path, "alice").await.body;
        let n = records.as_array().unwrap().len();
        let user: Value = serde_json::from_str(records[n - 2]["ext"].as_str().unwrap()).unwrap();
        assert_eq!(user["type"], "SYSTEM");
        assert!(
            user["text"]
                .as_str()
                .unwrap()
                .contains("A sailor of the northern seas.")
        );
        let reply: Value = serde_json::from_str(records[n - 1]["ext"].as_str().unwrap()).unwrap();
        assert_eq!(
            reply,
            json!({"inputTokenCount": 10, "outputTokenCount": 1, "totalTokenCount": 11})
        );
    }
    let plain = history(&app, "alice", &own).await;
    assert!(
        plain
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("ext").is_none())
    );

    let bob_debug = app
        .get(&format!("{CHAT}/messages/debug/{bobs}"), "bob")
        .await;
    assert_eq!(bob_debug.status, StatusCode::OK);
    assert!(
        bob_debug
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("ext").is_none())
    );
    assert!(!bob_debug.text.contains("northern seas"));
    // Nor do Bob's stored messages keep the prompt for Chatter to show.
    let bobs_messages = app
        .get(
            &format!("/api/v1/chat/conversations/{bobs}/messages"),
            "bob",
        )
        .await;
    assert!(
        !bobs_messages.text.contains("systemPrompt"),
        "{}",
        bobs_messages.text
    );
    app.get(&format!("{CHAT}/messages/debug/{own}"), "bob")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn rolling_back_removes_the_newest_messages_and_returns_their_ids() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    talk_rounds(&app, &fake, &chat, 2).await;
    let rolled = app
        .request(
            Method::POST,
            &format!("{CHAT}/messages/rollback/{chat}/3"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    let rolled = Reply::from(rolled).await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
    assert_eq!(rolled.body, json!([4, 3, 2]));
    let left = history(&app, "alice", &chat).await;
    assert_eq!(texts(&left), ["Ahoy there!", "q1"]);
    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await
        .body;
    assert_eq!(conversation["message_count"], 1);
    assert_eq!(conversation["total_tokens"], 0);

    // The next message gets a new id: rolled-back ids are never reused.
    talk(&app, &fake, "alice", &chat, "q again", "a again").await;
    let records = history(&app, "alice", &chat).await;
    let ids: Vec<&Value> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["messageId"])
        .collect();
    assert_eq!(ids, [&json!(0), &json!(1), &json!(5), &json!(6)]);

    let zero = app
        .request(
            Method::POST,
            &format!("{CHAT}/messages/rollback/{chat}/0"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    Reply::from(zero).await.assert_problem(400);
}

#[tokio::test]
async fn clearing_memory_leaves_only_the_greeting_and_usage_keeps_what_was_spent() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    talk(&app, &fake, "alice", &chat, "one", "first reply").await;
    talk(&app, &fake, "alice", &chat, "two", "second").await;
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    let expected = json!({"messageUsage": 2,
                          "tokenUsage": {"inputTokenCount": 20, "outputTokenCount": 3, "totalTokenCount": 23}});
    assert_eq!(usage, expected);

    let cleared = app.delete(&format!("{CHAT}/memory/{chat}"), "alice").await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text);
    assert_eq!(texts(&cleared.body), ["Ahoy there!"]);
    assert_eq!(
        app.get(
            &format!("/api/v1/chat/conversations/{chat}/messages"),
            "alice"
        )
        .await
        .body,
        json!([])
    );
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    assert_eq!(usage, expected);
}

#[tokio::test]
async fn pages_of_a_long_chat_reach_back_to_the_greeting() {
    let app = TestApp::spawn().await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    app.store_exchanges("alice", &chat, 150).await;
    let page = |limit: usize, offset: usize| {
        let path = format!("{CHAT}/messages/{chat}/{limit}/{offset}");
        let app = &app;
        async move { texts(&app.get(&path, "alice").await.body) }
    };
    assert_eq!(page(2, 0).await, ["q150", "a150"]);
    assert_eq!(page(2, 100).await, ["q100", "a100"]);
    assert_eq!(page(3, 298).await, ["Ahoy there!", "q1", "a1"]);
}
