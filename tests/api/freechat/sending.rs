//! Starting a chat and sending to it: the prompt, the answer, streams and their failures.

use super::*;

#[tokio::test]
async fn starting_a_chat_takes_the_default_backend_and_starting_again_returns_the_same_chat() {
    let app = TestApp::spawn().await;
    let (id, uid, backend) = jack(&app, "alice", json!({})).await;
    let none_yet = app.get(&format!("{CHAT}/{id}"), "alice").await;
    assert_eq!(none_yet.status, StatusCode::OK);
    assert!(none_yet.header("content-type").starts_with("text/plain"));
    assert_eq!(none_yet.text, "");

    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await;
    assert!(uuid::Uuid::parse_str(&chat).is_ok(), "{chat}");
    let again = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": backend}),
    )
    .await;
    assert_eq!(again, chat);

    let default = app.get(&format!("{CHAT}/{id}"), "alice").await;
    assert_eq!(default.status, StatusCode::OK);
    assert!(default.header("content-type").starts_with("text/plain"));
    assert_eq!(default.text, chat);

    let other = add_backend(&app, "alice", &uid, json!({})).await;
    let second = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": other}),
    )
    .await;
    assert_ne!(second, chat);
    // Bob has his own chat with the same character's backend.
    update_jack(&app, id, "visibility", "public").await;
    let bobs = start(&app, "bob", json!({"characterUid": uid})).await;
    assert_ne!(bobs, chat);
}

#[tokio::test]
async fn a_chat_refuses_a_backend_of_another_character_with_400() {
    let app = TestApp::spawn().await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let (_, _, foreign) = jack(&app, "alice", json!({})).await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"characterUid": uid, "backendId": foreign}),
        )
        .await;
    reply.assert_problem(400);
    assert_eq!(reply.body["detail"], "No backend found.");
    let (_, bare) = character(&app, "alice", json!({"name": "Bare"})).await;
    app.post(CHAT, "alice", &json!({"characterUid": bare}))
        .await
        .assert_problem(400);
    app.post(CHAT, "alice", &json!({"backendId": foreign}))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn ids_in_a_chat_start_are_bounded_as_in_a_path() {
    let app = TestApp::spawn().await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let long = "b".repeat(65);
    for (body, field) in [
        (json!({"characterUid": uid, "backendId": long}), "backendId"),
        (json!({"characterUid": long}), "characterUid"),
        (json!({"characterUid": "not/an id"}), "characterUid"),
    ] {
        let reply = app.post(CHAT, "alice", &body).await;
        reply.assert_problem(400);
        assert_eq!(reply.body["errors"][0]["loc"], json!(["body", field]));
    }
}

#[tokio::test]
async fn sending_prompts_the_model_as_the_character_and_answers_with_the_result_and_usage() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(
        &app,
        "alice",
        json!({"model": "sea-model", "temperature": 0.4, "maxTokens": 99}),
    )
    .await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann", "userProfile": "A traveller.",
               "characterNickname": "Jacky", "about": "In a harbour tavern."}),
    )
    .await;
    fake.push(Script::reply("Ahoy, Ann!"));
    let reply = app
        .post(
            &format!("{CHAT}/send/{chat}"),
            "alice",
            &json!({"role": "user", "name": "Ann", "contents": [{"type": "text", "content": "Hello"}],
                    "context": "It is raining."}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let r = &reply.body;
    assert_eq!(r["text"], "Ahoy, Ann!");
    assert_eq!(r["message"]["role"], "assistant");
    assert_eq!(
        r["message"]["contents"],
        json!([{"type": "text", "content": "Ahoy, Ann!"}])
    );
    assert_eq!(r["finishReason"], "stop");
    assert_eq!(
        r["tokenUsage"],
        json!({"inputTokenCount": 10, "outputTokenCount": 2, "totalTokenCount": 12})
    );

    let sent = &fake.requests()[0];
    assert_eq!(sent["model"], "sea-model");
    assert_eq!(sent["temperature"], 0.4);
    assert_eq!(sent["max_tokens"], 99);
    let prompt = prompt_messages(sent);
    assert_eq!(prompt.len(), 2);
    let (role, system) = &prompt[0];
    assert_eq!(role, "system");
    for part in [
        "You are Jacky.",
        "A sailor of the northern seas.",
        "Short and salty.",
        "Ahoy there!",
        "In a harbour tavern.",
        "You are talking with Ann.\nA traveller.",
        "## Relevant information\nIt is raining.",
    ] {
        assert!(system.contains(part), "{part:?} missing from {system}");
    }
    assert!(
        !system.contains("On deck."),
        "the chat's scene replaces the default one"
    );
    assert_eq!(prompt[1], ("user".into(), "Hello".into()));

    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Hello", "Ahoy, Ann!"]);
    assert_eq!(messages[1]["message"]["name"], "Ann");
    assert_eq!(messages[1]["message"]["context"], "It is raining.");
    assert_eq!(messages[1]["messageId"], 1);
    assert_eq!(messages[2]["messageId"], 2);
    assert!(messages[1].get("ext").is_none());
}

#[tokio::test]
async fn invalid_messages_are_400_and_reach_no_model() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    for (body, field) in [
        (json!({"contents": []}), "contents"),
        (
            json!({"contents": [{"type": "text", "content": "   "}]}),
            "contents",
        ),
        (
            json!({"contents": [{"type": "image", "content": "http://x/y.png"}]}),
            "contents",
        ),
        (json!({"role": "assistant", "contentText": "hi"}), "role"),
        (json!({"contentText": "x".repeat(64_001)}), "contents"),
    ] {
        let reply = app
            .post(&format!("{CHAT}/send/{chat}"), "alice", &body)
            .await;
        reply.assert_problem(400);
        assert_eq!(reply.body["errors"][0]["loc"][1], field, "{body}");
    }
    assert_eq!(fake.calls(), 0);
    let ok = app
        .post(
            &format!("{CHAT}/send/{chat}"),
            "alice",
            &json!({"contentText": "plain text works"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
}

#[tokio::test]
async fn a_streamed_send_frames_each_delta_then_the_whole_answer_and_no_done() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    fake.push(Script::reply("Fair winds to you."));
    let (reply, frames) = stream(
        &app,
        Method::POST,
        &format!("{CHAT}/send/stream/{chat}"),
        "alice",
        Some(json!({"contents": [{"content": "Bye"}]})),
    )
    .await;
    assert_eq!(reply.header("content-type"), "text/event-stream");
    assert_whole_stream(&reply, &frames, "Fair winds to you.");

    let messages = history(&app, "alice", &chat).await;
    assert_eq!(
        texts(&messages),
        ["Ahoy there!", "Bye", "Fair winds to you."]
    );
}

#[tokio::test]
async fn a_stream_that_fails_midway_ends_with_an_error_frame_and_keeps_what_was_said() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, chat) = chat_with_jack(&app, "alice").await;
    fake.push(Script::Drop { after: 2 });
    let (_, frames) = stream(
        &app,
        Method::POST,
        &format!("{CHAT}/send/stream/{chat}"),
        "alice",
        Some(json!({"contentText": "Go on"})),
    )
    .await;
    let last = frames.last().unwrap();
    // FreeChat's reason for anything but a whole answer, a length cut, a tool call or a
    // content filter: not mistaken for an answer cut at the length limit; `error` says why.
    assert_eq!(last["finishReason"], "other");
    assert_eq!(last["message"]["contents"][0]["content"], "part0 part1 ");
    assert!(last["error"].is_string());
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Go on", "part0 part1 "]);
    // The stored reply still says what happened.
    let stored = app
        .get(
            &format!("/api/v1/chat/conversations/{chat}/messages"),
            "alice",
        )
        .await
        .body;
    assert_eq!(stored[1]["finish_reason"], "error");
}

#[tokio::test]
async fn the_prompt_holds_the_system_prompt_and_the_last_message_window_size_messages_counting_the_new_one()
 {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"messageWindowSize": 10})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk_rounds(&app, &fake, &chat, 6).await;
    talk(&app, &fake, "alice", &chat, "q7", "a7").await;
    let prompt = prompt_messages(&fake.requests()[6]);
    assert_eq!(prompt.len(), 11, "{prompt:?}");
    assert_eq!(prompt[0].0, "system");
    // The window of 10 is the new question and the 9 messages before it.
    assert_eq!(prompt[1], ("assistant".into(), "a2".into()));
    assert_eq!(prompt[9], ("assistant".into(), "a6".into()));
    assert_eq!(prompt[10], ("user".into(), "q7".into()));
}

#[tokio::test]
async fn a_send_in_a_long_chat_carries_its_whole_window_even_past_the_newest_messages_read() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"messageWindowSize": 200})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    // The greeting, then 300 messages: more than a turn reads at first.
    app.store_exchanges("alice", &chat, 150).await;
    talk(&app, &fake, "alice", &chat, "q151", "a151").await;
    let prompt = prompt_messages(&fake.requests()[0]);
    // The window of 200 is the new question and the 199 messages before it.
    assert_eq!(prompt.len(), 201, "{prompt:?}");
    assert_eq!(prompt[0].0, "system");
    assert_eq!(prompt[1], ("assistant".into(), "a51".into()));
    assert_eq!(prompt[199], ("assistant".into(), "a150".into()));
    assert_eq!(prompt[200], ("user".into(), "q151".into()));
}

#[tokio::test]
async fn a_send_through_another_instance_is_in_the_next_sends_prompt() {
    let (app, fake) = app_with_model(&[]).await;
    let other = app.beside_with_model(&fake).await;
    let (_, uid, _) = jack(&app, "alice", json!({"messageWindowSize": 10})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;

    talk(&app, &fake, "alice", &chat, "q1", "a1").await;
    talk(&other, &fake, "alice", &chat, "q2", "a2").await;
    talk(&app, &fake, "alice", &chat, "q3", "a3").await;

    let prompt = prompt_messages(fake.requests().last().unwrap());
    let said: Vec<&str> = prompt[prompt.len() - 5..]
        .iter()
        .map(|(_, content)| content.as_str())
        .collect();
    assert_eq!(said, ["q1", "a1", "q2", "a2", "q3"]);
}
