//! Characters and their backends: ids, updates, validation, visibility and defaults.

use super::*;

#[tokio::test]
async fn a_new_character_gets_the_next_numeric_id_and_reads_back_as_written() {
    let app = TestApp::spawn().await;
    let (first, _) = character(&app, "alice", json!({"name": "One"})).await;
    let (second, uid) = character(
        &app,
        "alice",
        json!({"name": "  Jack  ", "description": "A sailor", "profile": "Hello world. I'm Jack",
               "tags": ["test", "demo"], "visibility": "public", "lang": "en", "draft": "wip"}),
    )
    .await;
    assert_eq!(second, first + 1);

    let summary = app
        .get(&format!("{CHARACTER}/summary/{second}"), "alice")
        .await;
    let s = &summary.body;
    assert_eq!(s["characterId"], second);
    assert_eq!(s["characterUid"], uid);
    assert_eq!(s["name"], "Jack");
    assert_eq!(s["description"], "A sailor");
    assert_eq!(s["visibility"], "public");
    assert_eq!(s["tags"], json!(["test", "demo"]));
    assert_eq!(s["username"], "alice");
    assert_eq!(s["version"], 1);
    assert!(s["gmtCreate"].is_string() && s.get("profile").is_none());

    let details = app
        .get(&format!("{CHARACTER}/details/{second}"), "alice")
        .await;
    assert_eq!(details.body["profile"], "Hello world. I'm Jack");
    assert_eq!(details.body["draft"], "wip");
    assert_eq!(details.body["backends"], json!([]));
}

#[tokio::test]
async fn an_update_changes_the_fields_sent_keeps_the_rest_and_an_empty_text_clears_one() {
    let app = TestApp::spawn().await;
    let (id, _) = character(
        &app,
        "alice",
        json!({"name": "Jack", "description": "Old", "profile": "Keep me", "greeting": "Hi"}),
    )
    .await;
    let updated = update_character(
        &app,
        "alice",
        id,
        &json!({"name": "Jack II", "description": "New", "greeting": "", "visibility": "public"}),
    )
    .await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(updated.body, json!(true));
    let details = app
        .get(&format!("{CHARACTER}/details/{id}"), "alice")
        .await
        .body;
    assert_eq!(details["name"], "Jack II");
    assert_eq!(details["description"], "New");
    assert_eq!(details["profile"], "Keep me");
    assert!(details.get("greeting").is_none());
    assert_eq!(details["visibility"], "public");
}

#[tokio::test]
async fn invalid_characters_are_400_naming_every_field_at_fault() {
    let app = TestApp::spawn().await;
    let missing = app.post(CHARACTER, "alice", &json!({"profile": "x"})).await;
    // Spring's status for a request that fails validation, with the same problem body.
    missing.assert_problem(400);
    assert_eq!(missing.body["type"], "/problems/validation-error");
    assert_eq!(missing.body["title"], "Bad Request");
    assert_eq!(missing.body["errors"][0]["loc"], json!(["body", "name"]));

    let wrong = app
        .post(
            CHARACTER,
            "alice",
            &json!({"name": "x", "visibility": "everyone"}),
        )
        .await;
    wrong.assert_problem(400);
    assert_eq!(
        wrong.body["errors"][0]["loc"],
        json!(["body", "visibility"])
    );

    let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let many = app
        .post(
            CHARACTER,
            "alice",
            &json!({"name": " ", "tags": tags, "nickname": "n".repeat(101)}),
        )
        .await;
    many.assert_problem(400);
    let fields: Vec<&Value> = many.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"][1])
        .collect();
    assert_eq!(fields, [&json!("name"), &json!("nickname"), &json!("tags")]);

    let not_json = app
        .request(Method::POST, CHARACTER, "alice")
        .header("content-type", "text/plain")
        .body("name=x")
        .send()
        .await
        .unwrap();
    Reply::from(not_json).await.assert_problem(415);
}

#[tokio::test]
async fn another_users_private_character_is_404_on_every_route_and_a_public_one_is_read_only() {
    let app = TestApp::spawn().await;
    let (id, uid, backend) = jack(&app, "alice", json!({})).await;
    let routes = |id: u64, uid: &str, backend: &str| {
        vec![
            (Method::GET, format!("{CHARACTER}/summary/{id}"), None),
            (Method::GET, format!("{CHARACTER}/details/{id}"), None),
            (
                Method::PUT,
                format!("{CHARACTER}/{id}"),
                Some(json!({"name": "Mine"})),
            ),
            (Method::DELETE, format!("{CHARACTER}/{id}"), None),
            (
                Method::POST,
                format!("{CHARACTER}/backend/{uid}"),
                Some(json!({})),
            ),
            (Method::GET, format!("{CHARACTER}/backends/{uid}"), None),
            (
                Method::GET,
                format!("{CHARACTER}/backend/default/{uid}"),
                None,
            ),
            (
                Method::PUT,
                format!("{CHARACTER}/backend/default/{backend}"),
                None,
            ),
            (
                Method::PUT,
                format!("{CHARACTER}/backend/{backend}"),
                Some(json!({"initQuota": 1})),
            ),
            (
                Method::DELETE,
                format!("{CHARACTER}/backend/{backend}"),
                None,
            ),
            (
                Method::POST,
                CHAT.to_owned(),
                Some(json!({"characterUid": uid})),
            ),
            (Method::GET, format!("{CHAT}/{id}"), None),
        ]
    };
    for (method, path, body) in routes(id, &uid, &backend) {
        let reply = send_as(&app, method.clone(), &path, "mallory", body).await;
        reply.assert_problem(404);
        assert!(
            !reply.text.contains("Jack"),
            "{method} {path}: {}",
            reply.text
        );
    }

    update_jack(&app, id, "visibility", "public").await;
    for (path, status) in [
        (format!("{CHARACTER}/summary/{id}"), 200),
        (format!("{CHARACTER}/details/{id}"), 200),
        (format!("{CHARACTER}/backends/{uid}"), 200),
        (format!("{CHARACTER}/backend/default/{uid}"), 200),
    ] {
        assert_eq!(app.get(&path, "mallory").await.status, status, "{path}");
    }
    let details = app
        .get(&format!("{CHARACTER}/details/{id}"), "mallory")
        .await;
    assert_eq!(details.body["name"], "Jack");
    update_character(&app, "mallory", id, &json!({"name": "Mine"}))
        .await
        .assert_problem(404);
    app.delete(&format!("{CHARACTER}/backend/{backend}"), "mallory")
        .await
        .assert_problem(404);
    app.delete(&format!("{CHARACTER}/{id}"), "mallory")
        .await
        .assert_problem(404);
    assert_eq!(character_summary(&app, "alice", id).await["name"], "Jack");
}

#[tokio::test]
async fn the_first_backend_becomes_the_default_and_the_default_can_be_moved() {
    let app = TestApp::spawn().await;
    let (id, uid) = character(&app, "alice", json!({"name": "Jack"})).await;
    app.get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await
        .assert_problem(404);

    let first = add_backend(&app, "alice", &uid, json!({"messageWindowSize": 20})).await;
    let second = add_backend(
        &app,
        "alice",
        &uid,
        json!({"quotaType": "messages", "initQuota": 5, "model": "m2", "temperature": 0.3,
               "maxTokens": 64, "proactiveChatWaitingTime": 7}),
    )
    .await;
    let default = app
        .get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await;
    assert_eq!(default.body["backendId"], first);
    assert_eq!(default.body["isDefault"], true);
    assert_eq!(default.body["messageWindowSize"], 20);
    assert_eq!(default.body["quotaType"], "none");

    let listed = backends_of(&app, &uid).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let b = &listed[1];
    assert_eq!(b["backendId"], second);
    assert_eq!(b["characterUid"], uid);
    assert_eq!(b["isDefault"], false);
    assert_eq!(b["messageWindowSize"], 50);
    assert_eq!(b["quotaType"], "messages");
    assert_eq!(b["initQuota"], 5);
    assert_eq!(b["model"], "m2");
    assert_eq!(b["temperature"], 0.3);
    assert_eq!(b["maxTokens"], 64);
    assert_eq!(b["proactiveChatWaitingTime"], 7);

    let moved = app
        .request(
            Method::PUT,
            &format!("{CHARACTER}/backend/default/{second}"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(Reply::from(moved).await.body, json!(true));
    let default = app
        .get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await;
    assert_eq!(default.body["backendId"], second);

    let third = add_backend(&app, "alice", &uid, json!({"isDefault": true})).await;
    let details = app
        .get(&format!("{CHARACTER}/details/{id}"), "alice")
        .await
        .body;
    let defaults = default_backend_ids(&details["backends"]);
    assert_eq!(defaults, [&json!(third)]);
}

#[tokio::test]
async fn backend_settings_outside_their_bounds_are_400() {
    let app = TestApp::spawn().await;
    let (_, uid) = character(&app, "alice", json!({"name": "Jack"})).await;
    for (body, field) in [
        (json!({"messageWindowSize": 9}), "messageWindowSize"),
        (json!({"messageWindowSize": 501}), "messageWindowSize"),
        (json!({"quotaType": "dollars"}), "quotaType"),
        (json!({"initQuota": -1}), "initQuota"),
        (json!({"provider": "nobody"}), "provider"),
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"temperature": 1e-200}), "temperature"),
        (json!({"maxTokens": 0}), "maxTokens"),
    ] {
        let reply = app
            .post(&format!("{CHARACTER}/backend/{uid}"), "alice", &body)
            .await;
        reply.assert_problem(400);
        assert_eq!(reply.body["errors"][0]["loc"][1], field, "{body}");
    }
    let listed = app
        .get(&format!("{CHARACTER}/backends/{uid}"), "alice")
        .await;
    assert_eq!(listed.body, json!([]));
}

#[tokio::test]
async fn a_backend_is_updated_in_place_and_removing_the_default_leaves_none() {
    let app = TestApp::spawn().await;
    let (_, uid, backend) = jack(&app, "alice", json!({"initQuota": 3})).await;
    let updated = app
        .put(
            &format!("{CHARACTER}/backend/{backend}"),
            "alice",
            &json!({"messageWindowSize": 100, "quotaType": "tokens"}),
        )
        .await;
    assert_eq!(updated.body, json!(true));
    let default = app
        .get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await
        .body;
    assert_eq!(default["messageWindowSize"], 100);
    assert_eq!(default["quotaType"], "tokens");
    assert_eq!(default["initQuota"], 3);

    let removed = app
        .delete(&format!("{CHARACTER}/backend/{backend}"), "alice")
        .await;
    assert_eq!(removed.body, json!(true));
    app.get(&format!("{CHARACTER}/backend/default/{uid}"), "alice")
        .await
        .assert_problem(404);
    app.delete(&format!("{CHARACTER}/backend/{backend}"), "alice")
        .await
        .assert_problem(404);
    app.post(CHAT, "alice", &json!({"characterUid": uid}))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn deleting_a_character_removes_it_with_its_backends() {
    let app = TestApp::spawn().await;
    let (id, uid, backend) = jack(&app, "alice", json!({})).await;
    let deleted = app.delete(&format!("{CHARACTER}/{id}"), "alice").await;
    assert_eq!(deleted.body, json!(true));
    for path in [
        format!("{CHARACTER}/summary/{id}"),
        format!("{CHARACTER}/backends/{uid}"),
    ] {
        app.get(&path, "alice").await.assert_problem(404);
    }
    app.put(
        &format!("{CHARACTER}/backend/{backend}"),
        "alice",
        &json!({}),
    )
    .await
    .assert_problem(404);
    app.delete(&format!("{CHARACTER}/{id}"), "alice")
        .await
        .assert_problem(404);
}
