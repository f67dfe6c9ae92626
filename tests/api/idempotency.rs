use std::time::Duration;

use api_tests::{FakeLlm, Reply, Script, TestApp};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use shared::store::Store;
use shared::store::idempotency::Claim;

/// A POST of `body` as `user` that carries `key` as its Idempotency-Key.
fn keyed_post(app: &TestApp, path: &str, user: &str, key: &str, body: &Value) -> RequestBuilder {
    app.request(Method::POST, path, user)
        .header("idempotency-key", key)
        .json(body)
}

/// Sends `body` with `key` and returns the reply.
async fn post_with_key(app: &TestApp, path: &str, user: &str, key: &str, body: &Value) -> Reply {
    Reply::from(keyed_post(app, path, user, key, body).send().await.unwrap()).await
}

/// Sends `body` with `key` in the background; returns the handle of its eventual reply.
fn spawn_post_with_key(
    app: &TestApp,
    path: &str,
    user: &str,
    key: &str,
    body: &Value,
) -> tokio::task::JoinHandle<Reply> {
    let request = keyed_post(app, path, user, key, body);
    tokio::spawn(async move { Reply::from(request.send().await.unwrap()).await })
}

/// Claims alice's key `k` (fingerprint `f`) for a 30-second lease at `now`; returns the
/// store's answer.
async fn claim_k(store: &Store, now: chrono::DateTime<chrono::Utc>) -> Claim {
    let lease = Duration::from_secs(30);
    store
        .claim_idempotency_key("alice", "k", "f", lease, now)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retried_chat_gets_the_first_answer_without_a_second_model_call() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "Say something once"});
    let first = post_with_key(&app, "/api/v1/chat/chat", "alice", "retry-1", &body).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("idempotent-replayed"), "");
    let again = post_with_key(&app, "/api/v1/chat/chat", "alice", "retry-1", &body).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, first.body);
    assert_eq!(fake.calls(), 1);
    let id = first.body["conversation_id"].as_str().unwrap();
    assert_eq!(app.stored_messages("alice", id).await.len(), 2);
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        1
    );

    // Keys belong to their user: the same key from someone else is a request of its own.
    let bob = post_with_key(&app, "/api/v1/chat/chat", "bob", "retry-1", &body).await;
    assert_eq!(bob.header("idempotent-replayed"), "");
    assert_eq!(fake.calls(), 2);
}

/// Creates alice a conversation titled `title` under `key`; returns the reply.
async fn create_with_key(app: &TestApp, key: &str, title: &str) -> Reply {
    let body = json!({ "title": title });
    post_with_key(app, "/api/v1/chat/conversations", "alice", key, &body).await
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused() {
    let app = TestApp::spawn().await;
    let first = create_with_key(&app, "k", "one").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let replay = create_with_key(&app, "k", "one").await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body["id"], first.body["id"]);
    let other = create_with_key(&app, "k", "two").await;
    other.assert_problem(422);
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        1
    );
    let bad = create_with_key(&app, &"x".repeat(300), "t").await;
    bad.assert_problem(422);
}

#[tokio::test]
async fn a_retry_while_the_first_runs_is_409_and_a_failure_frees_the_key() {
    let fake = FakeLlm::start().await;
    let app =
        TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url), ("LLM_TIMEOUT_SECS", "2")]).await;
    fake.push(Script::Hang);
    let body = json!({"message": "slow"});
    let slow = spawn_post_with_key(&app, "/api/v1/chat/chat", "alice", "busy", &body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_with_key(&app, "/api/v1/chat/chat", "alice", "busy", &body)
        .await
        .assert_problem(409);
    slow.await.unwrap().assert_problem(504);
    // The 504 was not kept: the retry runs, and now the model answers.
    let retried = post_with_key(&app, "/api/v1/chat/chat", "alice", "busy", &body).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn a_replayed_stream_is_the_first_stream_and_the_model_runs_once() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "stream once"});
    let first = post_with_key(&app, "/api/v1/chat/streaming", "alice", "s-1", &body).await;
    assert!(first.text.ends_with("data: [DONE]\n\n"));
    let again = post_with_key(&app, "/api/v1/chat/streaming", "alice", "s-1", &body).await;
    assert_eq!(again.header("content-type"), "text/event-stream");
    assert_eq!(again.text, first.text);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_claim_whose_holder_died_expires_after_its_lease() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let now = chrono::Utc::now();
    assert_eq!(claim_k(store, now).await, Claim::Acquired { resume: None });
    assert_eq!(claim_k(store, now).await, Claim::InProgress);
    // Nothing completed the claim; once the lease is over the key can be taken again.
    let later = now + chrono::Duration::seconds(31);
    assert_eq!(
        claim_k(store, later).await,
        Claim::Acquired { resume: None }
    );
}

/// A FreeChat character of `user` with one default backend; returns a started chat's id.
async fn freechat_chat(app: &TestApp, user: &str) -> (String, String) {
    let created = app
        .post(
            "/api/v1/character",
            user,
            &json!({"name": "Jack", "profile": "A sailor."}),
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let id = created.body.as_u64().unwrap();
    let summary = app
        .get(&format!("/api/v1/character/summary/{id}"), user)
        .await;
    let uid = summary.body["characterUid"].as_str().unwrap().to_owned();
    let backend = app
        .post(
            &format!("/api/v1/character/backend/{uid}"),
            user,
            &json!({}),
        )
        .await;
    assert_eq!(backend.status, StatusCode::OK, "{}", backend.text);
    let started = app
        .post("/api/v1/chat", user, &json!({"characterUid": uid}))
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    (uid, started.text)
}

/// Waits (without asserting on time) until the fake model has been called `n` times.
async fn until_calls(fake: &FakeLlm, n: usize) {
    while fake.calls() < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Streams `body` to `path` with one key three times: a stream that fails midway (its body
/// holds `failure`), a retry that calls the model again and succeeds (`success`), and a
/// replay of the good stream.
async fn a_failed_stream_is_not_replayed(
    app: &TestApp,
    fake: &FakeLlm,
    path: &str,
    body: &Value,
    (failure, success): (&str, &str),
) {
    // Fails once the 200 and the first tokens are out.
    fake.push(Script::Malformed { after: 2 });
    let failed = post_with_key(app, path, "alice", "s-fail", body).await;
    assert_eq!(failed.status, StatusCode::OK);
    assert!(failed.text.contains(failure), "{}", failed.text);
    let calls = fake.calls();

    fake.push(Script::reply("Now it works."));
    let retried = post_with_key(app, path, "alice", "s-fail", body).await;
    assert_eq!(retried.header("idempotent-replayed"), "");
    assert!(retried.text.contains(success), "{}", retried.text);
    assert_eq!(fake.calls(), calls + 1);

    // The good stream is the one kept.
    let replayed = post_with_key(app, path, "alice", "s-fail", body).await;
    assert_eq!(replayed.header("idempotent-replayed"), "true");
    assert_eq!(replayed.text, retried.text);
    assert_eq!(fake.calls(), calls + 1);
}

#[tokio::test]
async fn a_stream_that_failed_is_not_replayed_and_its_retry_calls_the_model_again() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "stream, please"});
    let markers = (r#""type":"error""#, r#""type":"end""#);
    a_failed_stream_is_not_replayed(&app, &fake, "/api/v1/chat/streaming", &body, markers).await;
}

#[tokio::test]
async fn a_freechat_stream_that_failed_is_not_replayed_and_its_retry_calls_the_model_again() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let (_, chat) = freechat_chat(&app, "alice").await;
    let path = format!("/api/v1/chat/send/stream/{chat}");
    let body = json!({"role": "user", "contents": [{"type": "text", "content": "stream"}]});
    let markers = (r#""error":"#, r#""finishReason":"stop""#);
    a_failed_stream_is_not_replayed(&app, &fake, &path, &body, markers).await;
}

#[tokio::test]
async fn a_retried_template_chat_is_replayed_and_the_same_key_with_another_body_is_422() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let path = "/api/v1/chat/template/general_chat";
    let body = json!({"message": "Hello template"});
    let first = post_with_key(&app, path, "alice", "t-1", &body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let again = post_with_key(&app, path, "alice", "t-1", &body).await;
    assert_eq!(again.header("idempotent-replayed"), "true");
    assert_eq!(again.body, first.body);
    assert_eq!(fake.calls(), 1);
    post_with_key(&app, path, "alice", "t-1", &json!({"message": "Another"}))
        .await
        .assert_problem(422);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn freechat_starts_and_sends_refuse_a_reused_key_with_another_body() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let (uid, chat) = freechat_chat(&app, "alice").await;
    let start = json!({"characterUid": uid});
    let first = post_with_key(&app, "/api/v1/chat", "alice", "start", &start).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    post_with_key(
        &app,
        "/api/v1/chat",
        "alice",
        "start",
        &json!({"characterUid": uid, "userNickname": "Ann"}),
    )
    .await
    .assert_problem(422);

    let path = format!("/api/v1/chat/send/{chat}");
    let said =
        |text: &str| json!({"role": "user", "contents": [{"type": "text", "content": text}]});
    let sent = post_with_key(&app, &path, "alice", "send", &said("Ahoy")).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    post_with_key(&app, &path, "alice", "send", &said("Something else"))
        .await
        .assert_problem(422);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_freechat_send_retried_while_the_first_runs_is_409() {
    let fake = FakeLlm::start().await;
    let app =
        TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url), ("LLM_TIMEOUT_SECS", "2")]).await;
    let (_, chat) = freechat_chat(&app, "alice").await;
    let path = format!("/api/v1/chat/send/{chat}");
    let body = json!({"role": "user", "contents": [{"type": "text", "content": "slow"}]});
    fake.push(Script::Hang);
    let slow = spawn_post_with_key(&app, &path, "alice", "busy", &body);
    until_calls(&fake, 1).await;
    post_with_key(&app, &path, "alice", "busy", &body)
        .await
        .assert_problem(409);
    let first = slow.await.unwrap();
    assert!(first.status.is_server_error(), "{}", first.text);
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_completed_record_past_its_expiry_can_be_claimed_again_and_expiry_is_written() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let now = chrono::Utc::now();
    assert_eq!(claim_k(store, now).await, Claim::Acquired { resume: None });
    let stored = shared::store::idempotency::StoredResponse {
        status: 201,
        content_type: "application/json".into(),
        body: b"{}".to_vec(),
    };
    store
        .complete_idempotency_key("alice", "k", "f", &stored)
        .await
        .unwrap();
    assert_eq!(claim_k(store, now).await, Claim::Replay(stored));

    let records = store
        .client()
        .scan()
        .table_name(store.table())
        .filter_expression("begins_with(pk, :idem)")
        .expression_attribute_values(
            ":idem",
            aws_sdk_dynamodb::types::AttributeValue::S("IDEM#".into()),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(records.len(), 1);
    let expires_at: i64 = records[0]["expires_at"].as_n().unwrap().parse().unwrap();
    assert_eq!(expires_at, now.timestamp() + 24 * 3600);

    // DynamoDB's TTL deletes expired items only eventually; until then the record is dead.
    let after_expiry = now + chrono::Duration::hours(25);
    assert_eq!(
        claim_k(store, after_expiry).await,
        Claim::Acquired { resume: None }
    );
}

#[tokio::test]
async fn the_same_json_with_its_keys_in_another_order_is_the_same_request() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let compact = r#"{"message":"Hello","temperature":0.5}"#;
    let reordered = "{\n  \"temperature\": 0.5,\n  \"message\": \"Hello\"\n}";
    let mut replies = Vec::new();
    for body in [compact, reordered] {
        let request = app
            .request(Method::POST, "/api/v1/chat/chat", "alice")
            .header("idempotency-key", "json-order")
            .header("content-type", "application/json")
            .body(body);
        replies.push(Reply::from(request.send().await.unwrap()).await);
    }
    assert_eq!(replies[0].status, StatusCode::OK, "{}", replies[0].text);
    assert_eq!(replies[1].status, StatusCode::OK, "{}", replies[1].text);
    assert_eq!(replies[1].header("idempotent-replayed"), "true");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_failed_turn_says_where_its_question_is_and_a_retry_answers_it_there() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "Are you there?"});
    fake.push(Script::Malformed { after: 2 });
    let failed = post_with_key(&app, "/api/v1/chat/chat", "alice", "lost", &body).await;
    failed.assert_problem(502);
    let conversation = failed.body["conversation_id"].as_str().unwrap().to_owned();
    let stored = app.stored_messages("alice", &conversation).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], failed.body["message_id"]);
    assert_eq!(stored[0]["content"], "Are you there?");

    fake.push(Script::reply("Yes."));
    let retried = post_with_key(&app, "/api/v1/chat/chat", "alice", "lost", &body).await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.text);
    assert_eq!(retried.body["conversation_id"], conversation.as_str());
    let stored = app.stored_messages("alice", &conversation).await;
    let contents: Vec<&str> = stored
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["Are you there?", "Yes."],
        "asked once, answered once"
    );
    let sent = &fake.requests()[1]["messages"];
    let asked = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user");
    assert_eq!(asked.count(), 1, "the model saw the question once: {sent}");
    let listed = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(listed.body["total"], 1);
}

#[tokio::test]
async fn a_retried_stream_that_failed_continues_in_the_conversation_it_created() {
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let body = json!({"message": "Tell me more"});
    fake.push(Script::Malformed { after: 2 });
    let failed = post_with_key(&app, "/api/v1/chat/streaming", "alice", "s-lost", &body).await;
    assert!(failed.text.contains(r#""type":"error""#), "{}", failed.text);
    fake.push(Script::reply("Here is more."));
    let retried = post_with_key(&app, "/api/v1/chat/streaming", "alice", "s-lost", &body).await;
    assert!(retried.text.contains(r#""type":"end""#), "{}", retried.text);
    let listed = app.get("/api/v1/chat/conversations", "alice").await;
    assert_eq!(listed.body["total"], 1, "{}", listed.body);
}
