//! Quotas of a chat's backend: messages and tokens, in both dialects.

use super::*;

#[tokio::test]
async fn a_used_up_quota_refuses_the_next_send_with_429_even_after_the_history_is_cleared() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(
        &app,
        "alice",
        json!({"quotaType": "messages", "initQuota": 2}),
    )
    .await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &chat, "one", "a").await;
    talk(&app, &fake, "alice", &chat, "two", "b").await;
    let refused = send(&app, "alice", &chat, "three").await;
    refused.assert_problem(429);
    assert_eq!(refused.body["detail"], "Usage 2 exceeds limit 2");
    assert_eq!(fake.calls(), 2);
    let streamed = app
        .post(
            &format!("{CHAT}/send/stream/{chat}"),
            "alice",
            &json!({"contentText": "three"}),
        )
        .await;
    streamed.assert_problem(429);

    app.delete(&format!("{CHAT}/memory/{chat}"), "alice").await;
    send(&app, "alice", &chat, "three")
        .await
        .assert_problem(429);
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!"]);
}

#[tokio::test]
async fn a_chatter_turn_in_a_chat_keeps_its_message_window_and_is_refused_past_its_quota() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(
        &app,
        "alice",
        json!({"quotaType": "messages", "initQuota": 6, "messageWindowSize": 10}),
    )
    .await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    for i in 1..=5 {
        let (question, answer) = (format!("question {i}"), format!("answer {i}"));
        talk(&app, &fake, "alice", &chat, &question, &answer).await;
    }
    let chatter_turn = json!({"message": "question 6", "conversation_id": chat});
    fake.push(Script::reply("answer 6"));
    let sixth = app.post("/api/v1/chat/chat", "alice", &chatter_turn).await;
    assert_eq!(sixth.status, StatusCode::OK, "{}", sixth.text);
    let prompt = prompt_messages(&fake.requests()[5]);
    assert_eq!(prompt.len(), 11, "{prompt:?}");
    assert_eq!(prompt[1], ("assistant".into(), "answer 1".into()));
    assert_eq!(prompt[10], ("user".into(), "question 6".into()));

    let seventh = json!({"message": "question 7", "conversation_id": chat});
    let refused = app.post("/api/v1/chat/chat", "alice", &seventh).await;
    refused.assert_problem(429);
    assert_eq!(refused.body["detail"], "Usage 6 exceeds limit 6");
    app.post("/api/v1/chat/streaming", "alice", &seventh)
        .await
        .assert_problem(429);
    assert_eq!(fake.calls(), 6);
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages).last().unwrap(), "answer 6");
}

#[tokio::test]
async fn a_token_quota_counts_prompt_and_answer_and_none_is_unlimited() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, tokens) = jack(
        &app,
        "alice",
        json!({"quotaType": "tokens", "initQuota": 24}),
    )
    .await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": tokens}),
    )
    .await;
    talk(&app, &fake, "alice", &chat, "one", "a b").await;
    talk(&app, &fake, "alice", &chat, "two", "c d").await;
    let refused = send(&app, "alice", &chat, "three").await;
    refused.assert_problem(429);
    // Each exchange took 10 prompt tokens and 2 answer tokens.
    assert_eq!(refused.body["detail"], "Usage 24 exceeds limit 24");

    let unlimited = add_backend(
        &app,
        "alice",
        &uid,
        json!({"quotaType": "none", "initQuota": 0}),
    )
    .await;
    let free = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": unlimited}),
    )
    .await;
    for _ in 0..3 {
        talk(&app, &fake, "alice", &free, "again", "sure").await;
    }
}
