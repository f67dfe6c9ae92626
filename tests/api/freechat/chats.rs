//! One chat through both dialects: listings, updates, deletion, routes, retries and other users.

use super::*;

#[tokio::test]
async fn one_chat_is_visible_and_consistent_through_both_dialects() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"model": "sea-model"})).await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "characterNickname": "Jacky"}),
    )
    .await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;

    let listed = app.get("/api/v1/chat/conversations", "alice").await.body;
    assert_eq!(listed["total"], 1);
    let conversation = &listed["conversations"][0];
    assert_eq!(conversation["id"], chat);
    assert_eq!(conversation["title"], "Chat with Jacky");
    assert_eq!(conversation["message_count"], 2);
    assert_eq!(conversation["llm_model"], "sea-model");
    assert!(
        conversation["system_prompt"]
            .as_str()
            .unwrap()
            .starts_with("You are Jacky.")
    );

    let chatter = app
        .get(
            &format!("/api/v1/chat/conversations/{chat}/messages"),
            "alice",
        )
        .await
        .body;
    let freechat = history(&app, "alice", &chat).await;
    let records = &freechat.as_array().unwrap()[1..];
    assert_eq!(chatter.as_array().unwrap().len(), records.len());
    for (message, record) in chatter.as_array().unwrap().iter().zip(records) {
        assert_eq!(message["sequence_number"], record["messageId"]);
        assert_eq!(
            message["content"],
            record["message"]["contents"][0]["content"]
        );
        assert_eq!(message["role"], record["message"]["role"]);
    }

    // A Chatter turn in the chat speaks as the character, and FreeChat sees it.
    fake.push(Script::reply("Aye."));
    let turn = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"message": "Ready?", "conversation_id": chat}),
        )
        .await;
    assert_eq!(turn.status, StatusCode::OK, "{}", turn.text);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["model"], "sea-model");
    assert!(prompt_messages(&sent)[0].1.starts_with("You are Jacky."));
    let freechat = history(&app, "alice", &chat).await;
    assert_eq!(
        texts(&freechat),
        ["Ahoy there!", "Hello", "Ahoy!", "Ready?", "Aye."]
    );
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await
        .body;
    assert_eq!(usage["messageUsage"], 2);

    // A Chatter delete is a FreeChat delete too; starting again makes a new chat.
    let deleted = app
        .delete(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    app.get(&format!("{CHAT}/messages/{chat}"), "alice")
        .await
        .assert_problem(404);
    assert_eq!(app.get(CHAT, "alice").await.body, json!([]));
    let again = start(&app, "alice", json!({"characterUid": uid})).await;
    assert_ne!(again, chat);
}

#[tokio::test]
async fn a_freechat_delete_removes_the_chat_from_both_dialects() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, uid, _) = jack(&app, "alice", json!({})).await;
    let chat = start(&app, "alice", json!({"characterUid": uid})).await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;
    let deleted = app.delete(&format!("{CHAT}/{chat}"), "alice").await;
    assert_eq!(deleted.body, json!(true));
    app.get(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await
        .assert_problem(404);
    let default = app.get(&format!("{CHAT}/{id}"), "alice").await;
    assert_eq!(
        (default.status, default.text.as_str()),
        (StatusCode::OK, "")
    );
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        0
    );
    app.delete(&format!("{CHAT}/{chat}"), "alice")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn another_users_chat_is_404_on_every_chat_route() {
    let (app, fake) = app_with_model(&[]).await;
    let (uid, chat) = chat_with_jack(&app, "alice").await;
    talk(&app, &fake, "alice", &chat, "Hello", "Ahoy!").await;
    let message = json!({"contentText": "mine now"});
    let turns = turn_routes(&chat, &uid, &message)
        .map(|(method, path, body)| (method, path, body.cloned()));
    for (method, path, body) in turns.into_iter().chain([
        (
            Method::PUT,
            format!("{CHAT}/{chat}"),
            Some(json!({"characterUid": uid})),
        ),
        (Method::DELETE, format!("{CHAT}/{chat}"), None),
        (Method::GET, format!("{CHAT}/messages/{chat}"), None),
        (Method::GET, format!("{CHAT}/messages/{chat}/5"), None),
        (Method::GET, format!("{CHAT}/messages/{chat}/5/0"), None),
        (Method::GET, format!("{CHAT}/messages/debug/{chat}"), None),
        (Method::GET, format!("{CHAT}/messages/debug/{chat}/5"), None),
        (
            Method::GET,
            format!("{CHAT}/messages/debug/{chat}/5/0"),
            None,
        ),
        (
            Method::POST,
            format!("{CHAT}/messages/rollback/{chat}/1"),
            None,
        ),
        (Method::GET, format!("{CHAT}/memory/usage/{chat}"), None),
        (Method::DELETE, format!("{CHAT}/memory/{chat}"), None),
    ]) {
        let reply = send_as(&app, method.clone(), &path, "mallory", body).await;
        reply.assert_problem(404);
        assert!(!reply.text.contains("Ahoy"), "{method} {path}");
    }
    assert_eq!(app.get(CHAT, "mallory").await.body, json!([]));
    assert_eq!(fake.calls(), 1);
    let messages = history(&app, "alice", &chat).await;
    assert_eq!(texts(&messages), ["Ahoy there!", "Hello", "Ahoy!"]);
}

#[tokio::test]
async fn a_plain_chatter_conversation_is_not_a_freechat_chat() {
    let app = TestApp::spawn().await;
    let id = app.create_conversation("alice", "Plain").await;
    app.get(&format!("{CHAT}/messages/{id}"), "alice")
        .await
        .assert_problem(404);
    app.delete(&format!("{CHAT}/{id}"), "alice")
        .await
        .assert_problem(404);
    assert_eq!(app.get(CHAT, "alice").await.body, json!([]));
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        1
    );
}

#[tokio::test]
async fn the_chat_list_shows_context_character_latest_record_and_flags_most_recently_read_first() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, backend) = jack(
        &app,
        "alice",
        json!({"initQuota": 9, "quotaType": "messages",
                                                        "proactiveChatWaitingTime": 5}),
    )
    .await;
    let (public_id, public_uid, _) = jack(&app, "bob", json!({})).await;
    app.put(
        &format!("{CHARACTER}/{public_id}"),
        "bob",
        &json!({"name": "Jack", "visibility": "public"}),
    )
    .await;

    let own = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann", "about": "At sea."}),
    )
    .await;
    let public = start(&app, "alice", json!({"characterUid": public_uid})).await;
    talk(&app, &fake, "alice", &own, "Hello", "Ahoy!").await;

    let listed = app.get(CHAT, "alice").await.body;
    let sessions = listed.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions[0]["context"]["chatId"], public,
        "started last, read last"
    );
    let mine = &sessions[1];
    let context = &mine["context"];
    assert_eq!(context["chatId"], own);
    assert_eq!(context["backendId"], backend);
    assert_eq!(context["userNickname"], "Ann");
    assert_eq!(context["about"], "At sea.");
    assert_eq!(context["quota"], 9);
    assert_eq!(context["quotaType"], "messages");
    assert!(context["gmtRead"].is_string() && context["gmtCreate"].is_string());
    assert_eq!(mine["character"]["characterUid"], uid);
    assert_eq!(mine["character"]["name"], "Jack");
    // FreeChat's kind of provider, not the deployment's name for it.
    assert_eq!(mine["provider"], "open_ai");
    assert_eq!(mine["proactiveChatWaitingTime"], 5);
    assert_eq!(
        mine["latestMessageRecord"]["message"]["contents"][0]["content"],
        "Ahoy!"
    );
    assert_eq!(mine["senderStatus"], "invisible");
    assert_eq!(mine["isDebugEnabled"], true);
    assert_eq!(mine["isCustomizedApiKeyEnabled"], false);
    let other = &sessions[0];
    // Started without an `about`: the chat's scene is the character's default one.
    assert_eq!(other["context"]["about"], "On deck.");
    assert_eq!(other["provider"], "open_ai");
    assert_eq!(other["senderStatus"], "online");
    assert_eq!(other["isDebugEnabled"], false);
    assert_eq!(
        other["latestMessageRecord"]["message"]["contents"][0]["content"],
        "Ahoy there!"
    );

    let read = app
        .put(
            &format!("{CHAT}/{own}"),
            "alice",
            &json!({"characterUid": uid, "gmtRead": "2100-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(read.body, json!(true), "{}", read.text);
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed[0]["context"]["chatId"], own);
    assert_eq!(
        listed[0]["context"]["userNickname"], "Ann",
        "fields not sent are kept"
    );

    // A chat whose character turns private for its user drops out of the FreeChat list.
    app.put(
        &format!("{CHARACTER}/{public_id}"),
        "bob",
        &json!({"name": "Jack", "visibility": "private"}),
    )
    .await;
    let listed = app.get(CHAT, "alice").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    send(&app, "alice", &public, "still there?")
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn updating_a_chat_changes_how_the_next_prompt_names_the_user_and_may_move_the_backend() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let second = add_backend(&app, "alice", &uid, json!({"model": "second-model"})).await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await;
    let updated = app
        .put(
            &format!("{CHAT}/{chat}"),
            "alice",
            &json!({"characterUid": uid, "userNickname": "Annie", "about": "", "backendId": second}),
        )
        .await;
    assert_eq!(updated.body, json!(true), "{}", updated.text);
    talk(&app, &fake, "alice", &chat, "hi", "hello").await;
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["model"], "second-model");
    let system = &prompt_messages(&sent)[0].1;
    assert!(system.contains("You are talking with Annie."), "{system}");
    assert!(
        !system.contains("On deck.") && !system.contains("## Scene"),
        "a cleared scene stays cleared: the default one was the chat's `about`, now gone: {system}"
    );
    // The chat moved to the second backend: starting with it finds this chat.
    assert_eq!(
        start(
            &app,
            "alice",
            json!({"characterUid": uid, "backendId": second})
        )
        .await,
        chat
    );

    let (_, other_uid, other_backend) = jack(&app, "alice", json!({})).await;
    app.put(
        &format!("{CHAT}/{chat}"),
        "alice",
        &json!({"characterUid": other_uid}),
    )
    .await
    .assert_problem(400);
    app.put(
        &format!("{CHAT}/{chat}"),
        "alice",
        &json!({"characterUid": uid, "backendId": other_backend}),
    )
    .await
    .assert_problem(400);
    app.put(
        &format!("{CHAT}/{chat}"),
        "alice",
        &json!({"userNickname": "x"}),
    )
    .await
    .assert_problem(400);
}

#[tokio::test]
async fn chatter_and_freechat_routes_under_api_v1_chat_each_reach_their_own_handler() {
    let (app, fake) = app_with_model(&[]).await;
    let templates = app.get("/api/v1/chat/templates", "alice").await;
    assert_eq!(templates.status, StatusCode::OK);
    assert!(templates.body["templates"].is_object());
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.status,
        StatusCode::OK
    );
    fake.push(Script::reply("Hi."));
    let chatter = app
        .post("/api/v1/chat/chat", "alice", &json!({"message": "Hello"}))
        .await;
    assert_eq!(chatter.status, StatusCode::OK, "{}", chatter.text);
    assert!(chatter.body["conversation_id"].is_string());
    fake.push(Script::reply("Hi."));
    let (_, frames) = stream(
        &app,
        Method::POST,
        "/api/v1/chat/streaming",
        "alice",
        Some(json!({"message": "Hello"})),
    )
    .await;
    assert_eq!(frames.last().unwrap(), &json!("[DONE]"));

    assert_eq!(app.get(CHAT, "alice").await.body, json!([]));
    app.get(&format!("{CHAT}/12345"), "alice")
        .await
        .assert_problem(404);
    app.get(&format!("{CHAT}/chat"), "alice")
        .await
        .assert_problem(405);
    app.put(
        &format!("{CHAT}/streaming"),
        "alice",
        &json!({"characterUid": "x"}),
    )
    .await
    .assert_problem(405);
    app.put(
        &format!("{CHAT}/not-a-chat"),
        "alice",
        &json!({"characterUid": "x"}),
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn retried_starts_and_sends_with_an_idempotency_key_happen_once() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, uid, _) = jack(&app, "alice", json!({"isDefault": true})).await;
    let start_chat = || {
        app.request(reqwest::Method::POST, CHAT, "alice")
            .header("idempotency-key", "start-1")
            .json(&json!({"characterUid": uid}))
    };
    let first = Reply::from(start_chat().send().await.unwrap()).await;
    let again = Reply::from(start_chat().send().await.unwrap()).await;
    assert_eq!(again.text, first.text);
    assert_eq!(again.header("idempotent-replayed"), "true");
    let chat = first.text;

    let body = json!({"role": "user", "contents": [{"type": "text", "content": "Once only"}]});
    let send_once = |path: String| {
        app.request(reqwest::Method::POST, &path, "alice")
            .header("idempotency-key", "send-1")
            .json(&body)
    };
    let path = format!("{CHAT}/send/{chat}");
    let sent = Reply::from(send_once(path.clone()).send().await.unwrap()).await;
    let resent = Reply::from(send_once(path).send().await.unwrap()).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    assert_eq!(resent.text, sent.text);
    assert_eq!(fake.calls(), 1);
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await;
    assert_eq!(
        usage.body["messageUsage"], 1,
        "one reply counted: {}",
        usage.body
    );
}
