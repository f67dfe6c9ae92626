//! The assistant that writes the user's next message.

use super::*;

#[tokio::test]
async fn the_assistant_writes_the_users_next_message_from_the_swapped_history_and_stores_nothing() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, helper, _) = {
        let (id, uid) = character(
            &app,
            "alice",
            json!({"name": "Muse", "profile": "A helpful ghostwriter."}),
        )
        .await;
        let backend = add_backend(&app, "alice", &uid, json!({"model": "muse-model"})).await;
        (id, uid, backend)
    };
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await;
    talk(
        &app,
        &fake,
        "alice",
        &chat,
        "Where are we sailing?",
        "To the north.",
    )
    .await;

    fake.push(Script::reply("How long will it take?"));
    let suggested = app
        .get(&format!("{CHAT}/send/assistant/{chat}/{helper}"), "alice")
        .await;
    assert_eq!(suggested.status, StatusCode::OK, "{}", suggested.text);
    assert_eq!(suggested.body["text"], "How long will it take?");
    assert_eq!(suggested.body["finishReason"], "stop");
    assert!(suggested.body["tokenUsage"]["totalTokenCount"].is_u64());

    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["model"], "muse-model");
    let prompt = prompt_messages(&sent);
    assert!(prompt[0].1.starts_with("You are Ann."), "{}", prompt[0].1);
    assert!(prompt[0].1.contains("A helpful ghostwriter."));
    assert!(prompt[0].1.contains("You are talking with Captain."));
    assert_eq!(
        prompt[1..],
        [
            ("user".into(), "Ahoy there!".into()),
            ("assistant".into(), "Where are we sailing?".into()),
            ("user".into(), "To the north.".into()),
        ]
    );

    fake.push(Script::reply("Is it cold there?"));
    let (reply, frames) = stream_assistant(&app, &chat, &helper).await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    let last = frames.last().unwrap();
    assert_eq!(
        last["message"]["contents"][0]["content"],
        "Is it cold there?"
    );
    assert_eq!(last["finishReason"], "stop");
    assert_eq!(last["tokenUsage"]["totalTokenCount"], 14);

    let messages = history(&app, "alice", &chat).await;
    assert_eq!(messages.as_array().unwrap().len(), 3);
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    assert_eq!(usage["messageUsage"], 1);

    app.get(&format!("{CHAT}/send/assistant/{chat}/{helper}"), "bob")
        .await
        .assert_problem(404);
    let (_, private) = character(&app, "carol", json!({"name": "Secret"})).await;
    app.get(&format!("{CHAT}/send/assistant/{chat}/{private}"), "alice")
        .await
        .assert_problem(404);
}
