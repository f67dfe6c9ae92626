use std::time::{Duration, Instant};

use api_tests::{Script, TestApp, app_with_model, assert_general_chat_template, sse_frames};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

const STREAMING: &str = "/api/v1/chat/streaming";

fn kinds(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| {
            f["type"]
                .as_str()
                .map_or_else(|| f.as_str().unwrap_or_default().to_owned(), str::to_owned)
        })
        .collect()
}

/// Sends a streaming request and reads the whole stream.
async fn stream(app: &TestApp, user: &str, body: &Value) -> (api_tests::Reply, Vec<Value>) {
    let response = app
        .request(Method::POST, STREAMING, user)
        .json(body)
        .send()
        .await
        .unwrap();
    let reply = api_tests::Reply::from(response).await;
    let frames = sse_frames(&reply.text);
    (reply, frames)
}

/// Starts a stream as alice and reads it until the first token has arrived; returns the
/// rest of the body and the text read so far.
async fn stream_until_first_token(
    app: &TestApp,
    body: &Value,
) -> (
    impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin + use<>,
    String,
) {
    let response = app
        .request(Method::POST, STREAMING, "alice")
        .json(body)
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"type\":\"token\"") {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    (body, seen)
}

/// The stored messages of the conversation a stream's first frame names, as alice.
async fn streamed_messages(app: &TestApp, frames: &[Value]) -> Vec<Value> {
    app.stored_messages("alice", frames[0]["conversation_id"].as_str().unwrap())
        .await
}

#[tokio::test]
async fn a_stream_sends_every_chunk_kind_in_order_and_stores_the_answer() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::reply("Once upon a time."));
    let (response, frames) = stream(&app, "alice", &json!({"message": "Tell me a story"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), "text/event-stream");
    assert_eq!(response.header("cache-control"), "no-cache");
    assert_eq!(response.header("x-accel-buffering"), "no");
    assert_eq!(
        kinds(&frames),
        [
            "start",
            "node_start",
            "token",
            "token",
            "token",
            "token",
            "node_complete",
            "usage",
            "end",
            "[DONE]"
        ]
    );
    let correlation = response.header("x-correlation-id");
    let conversation_id = frames[0]["conversation_id"].as_str().unwrap();
    for frame in &frames[..frames.len() - 1] {
        assert_eq!(frame["conversation_id"], conversation_id);
        assert_eq!(frame["correlation_id"], correlation);
    }
    assert_eq!(frames[1]["metadata"]["node"], "generate");
    let text: String = frames
        .iter()
        .filter(|f| f["type"] == "token")
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Once upon a time.");
    assert_eq!(frames[7]["usage"]["total_tokens"], 14);
    // 10 prompt tokens at 1.0 and 4 completion tokens at 2.0 per thousand.
    assert!((frames[7]["usage"]["cost"].as_f64().unwrap() - 0.018).abs() < 1e-12);

    let stored = app.stored_messages("alice", conversation_id).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1]["content"], "Once upon a time.");
    assert_eq!(stored[1]["id"], frames[8]["message_id"]);
    assert_eq!(stored[1]["finish_reason"], "stop");
    assert_eq!(fake.requests()[0]["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn an_upstream_that_drops_mid_stream_leaves_the_partial_answer_stored_as_an_error() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::Drop { after: 2 });
    let (_, frames) = stream(&app, "alice", &json!({"message": "go"})).await;
    assert_eq!(
        kinds(&frames),
        ["start", "node_start", "token", "token", "error", "[DONE]"]
    );
    assert!(
        frames[4]["content"].as_str().unwrap().contains("dropped"),
        "{}",
        frames[4]
    );
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1]["content"], "part0 part1 ");
    assert_eq!(stored[1]["finish_reason"], "error");
}

#[tokio::test]
async fn a_malformed_upstream_stream_is_reported_and_what_came_before_is_kept() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::Malformed { after: 1 });
    let (_, frames) = stream(&app, "alice", &json!({"message": "go"})).await;
    assert_eq!(
        kinds(&frames),
        ["start", "node_start", "token", "error", "[DONE]"]
    );
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["content"], "go");
    assert_eq!(stored[1]["content"], "part0 ");
    assert_eq!(stored[1]["finish_reason"], "error");
}

#[tokio::test]
async fn an_upstream_failure_before_any_token_is_an_error_chunk_and_only_the_question_is_stored() {
    let (app, fake) = app_with_model(&[]).await;
    fake.always(Script::Status(500));
    let (response, frames) = stream(&app, "alice", &json!({"message": "go"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(kinds(&frames), ["start", "node_start", "error", "[DONE]"]);
    assert!(frames[2]["content"].as_str().unwrap().contains("500"));
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["role"], "user");
}

#[tokio::test]
async fn a_silent_upstream_times_out_into_an_error_chunk() {
    let (app, fake) = app_with_model(&[("LLM_IDLE_TIMEOUT_SECS", "1")]).await;
    fake.always(Script::Hang);
    let (_, frames) = stream(&app, "alice", &json!({"message": "go"})).await;
    assert_eq!(kinds(&frames), ["start", "node_start", "error", "[DONE]"]);
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["content"], "go");
}

#[tokio::test]
async fn an_upstream_that_falls_silent_mid_answer_keeps_the_question_and_the_partial_text() {
    let (app, fake) = app_with_model(&[("LLM_IDLE_TIMEOUT_SECS", "1")]).await;
    fake.push(Script::Stall { after: 2 });
    let (_, frames) = stream(&app, "alice", &json!({"message": "go"})).await;
    assert_eq!(
        kinds(&frames),
        ["start", "node_start", "token", "token", "error", "[DONE]"]
    );
    assert!(frames[4]["content"].as_str().unwrap().contains("in time"));
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["content"], "go");
    assert_eq!(stored[1]["content"], "part0 part1 ");
    assert_eq!(stored[1]["finish_reason"], "error");
}

#[tokio::test]
async fn a_rate_limited_upstream_is_an_error_chunk_and_the_question_stays_stored() {
    let (app, fake) = app_with_model(&[]).await;
    fake.always(Script::Status(429));
    let (response, frames) = stream(&app, "alice", &json!({"message": "busy?"})).await;
    assert_eq!(response.status, 200);
    assert_eq!(kinds(&frames), ["start", "node_start", "error", "[DONE]"]);
    let error = frames[2]["content"].as_str().unwrap();
    assert!(
        error.contains("rate limiting") && error.contains(&fake.base_url),
        "{error}"
    );
    assert_eq!(fake.calls(), 3, "retried twice before the first token");
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["content"], "busy?");
}

#[tokio::test]
async fn a_stream_longer_than_a_turn_may_take_ends_with_an_error_chunk_and_keeps_the_partial_text()
{
    let (app, fake) = app_with_model(&[("STREAM_TURN_TIMEOUT_SECS", "1")]).await;
    fake.push(Script::slow_reply(
        "one two three four five six seven eight nine ten",
        Duration::from_millis(300),
    ));
    let (_, frames) = stream(&app, "alice", &json!({"message": "count slowly"})).await;
    let kinds = kinds(&frames);
    assert_eq!(kinds[kinds.len() - 2..], ["error", "[DONE]"], "{kinds:?}");
    let error = &frames[frames.len() - 2]["content"];
    assert!(error.as_str().unwrap().contains("took longer"), "{error}");
    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0]["content"], "count slowly");
    let partial = stored[1]["content"].as_str().unwrap();
    assert!(
        partial.starts_with("one ") && !partial.contains("ten"),
        "{partial}"
    );
    assert_eq!(stored[1]["finish_reason"], "error");
}

#[tokio::test]
async fn a_stream_applies_a_workflow_template() {
    let (app, fake) = app_with_model(&[]).await;
    let (_, frames) = stream(
        &app,
        "alice",
        &json!({"message": "hi", "workflow_template": "general_chat"}),
    )
    .await;
    assert_eq!(kinds(&frames)[kinds(&frames).len() - 2], "end");
    let sent = &fake.requests()[0];
    assert_eq!(sent["stream"], true);
    assert_general_chat_template(sent);
    assert!(sent["max_tokens"].is_u64());
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_end_the_turn_and_finds_the_whole_answer_stored() {
    let (app, fake) = app_with_model(&[]).await;
    let words = "one two three four five six seven eight nine ten eleven twelve";
    fake.push(Script::slow_reply(words, Duration::from_millis(50)));
    let (body, seen) = stream_until_first_token(&app, &json!({"message": "count"})).await;
    let conversation_id = sse_frames(&seen)[0]["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(body);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = app.stored_messages("alice", &conversation_id).await;
        if stored[1]["status"].is_null() {
            assert_eq!(stored[1]["finish_reason"], "stop");
            assert_eq!(stored[1]["content"], words);
            break;
        }
        assert_eq!(stored[1]["status"], "streaming");
        assert!(
            Instant::now() < deadline,
            "the answer was never stored whole"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fake.abandoned(), 0, "the model request was dropped");
}

#[tokio::test]
async fn tokens_reach_the_client_as_they_are_generated() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::slow_reply(
        "a b c d e f g h",
        Duration::from_millis(150),
    ));
    let (mut body, _) = stream_until_first_token(&app, &json!({"message": "x"})).await;
    let first_token_received = Instant::now();
    while body.next().await.is_some() {}
    let last_token_sent = fake.last_token_sent().unwrap();
    assert!(
        first_token_received < last_token_sent,
        "the first token waited for the last"
    );
}

#[tokio::test]
async fn invalid_stream_requests_are_problems_not_streams() {
    let (app, _) = app_with_model(&[]).await;
    let reply = app.post(STREAMING, "alice", &json!({"message": ""})).await;
    reply.assert_problem(422);
    let id = app.create_conversation("alice", "t").await;
    app.post(
        STREAMING,
        "mallory",
        &json!({"message": "hi", "conversation_id": id}),
    )
    .await
    .assert_problem(404);
    let unknown = app
        .post(
            STREAMING,
            "alice",
            &json!({"message": "hi", "provider": "nobody"}),
        )
        .await;
    unknown.assert_problem(422);
    assert_eq!(unknown.body["errors"][0]["loc"][1], "provider");
}

#[tokio::test]
async fn a_silent_stretch_is_filled_with_heartbeat_comments() {
    let (app, fake) = app_with_model(&[("SSE_HEARTBEAT_SECS", "1")]).await;
    fake.push(Script::slow_reply(
        "slow answer",
        Duration::from_millis(2500),
    ));
    let (reply, frames) = stream(&app, "alice", &json!({"message": "take your time"})).await;
    assert!(reply.text.contains(": heartbeat\n"), "{}", reply.text);
    assert_eq!(kinds(&frames).last().unwrap(), "[DONE]");
}
