//! The streaming function under a real Lambda runtime loop (`run_with_streaming_response`)
//! against an emulated Runtime API. A binary of its own: the runtime reads process-wide
//! environment variables.

use std::time::{Duration, Instant};

use api_tests::lambda_emulator::{LambdaEmulator, StreamedHttpResponse};
use api_tests::{FakeLlm, Script, TestApp, sse_frames, sse_ids};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use shared::api::Group;

fn function_url_event(token: &str, body: &serde_json::Value) -> serde_json::Value {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/api/v1/chat/streaming",
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {token}"),
            "content-type": "application/json",
            "host": "abc123.lambda-url.us-east-1.on.aws"
        },
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws", "domainPrefix": "abc123",
            "http": {"method": "POST", "path": "/api/v1/chat/streaming", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "r-1", "routeKey": "$default", "stage": "$default",
            "time": "23/Nov/2026:18:00:00 +0000", "timeEpoch": 1795370400000u64
        },
        "body": body.to_string(),
        "isBase64Encoded": false
    })
}

/// A client reconnecting to `/conversations/{id}/stream` after the frame `last_event_id`.
fn resume_event(token: &str, conversation_id: &str, last_event_id: &str) -> Value {
    let path = format!("/api/v1/chat/conversations/{conversation_id}/stream");
    let mut event = function_url_event(token, &Value::Null);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["http"]["method"] = json!("GET");
    event["headers"]["last-event-id"] = json!(last_event_id);
    event.as_object_mut().unwrap().remove("body");
    event
}

/// One test (the runtime reads process-wide variables): a stream, then a stream that another
/// instance began and whose client went away, resumed through the runtime.
#[tokio::test]
async fn tokens_stream_through_the_lambda_runtime_as_they_are_generated() {
    let fake = FakeLlm::start().await;
    fake.push(Script::slow_reply(
        "one two three four five six seven eight",
        Duration::from_millis(150),
    ));
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let emulator = LambdaEmulator::start().await.unwrap();
    for (name, value) in emulator.environment("chat-stream") {
        // SAFETY: set before the runtime starts, in a test binary with this one test.
        unsafe { std::env::set_var(name, value) };
    }
    tokio::spawn(lambda_http::run_with_streaming_response(
        Group::ChatStream.service(app.state.clone()),
    ));

    let event = function_url_event(&app.token("alice"), &json!({"message": "count to eight"}));
    let received = emulator
        .invoke(event, Duration::from_secs(30))
        .await
        .unwrap();
    let mut raw = Vec::new();
    let mut first_token_at: Option<Instant> = None;
    for chunk in &received.frames {
        raw.extend_from_slice(&chunk.bytes);
        if first_token_at.is_none() && String::from_utf8_lossy(&raw).contains("\"type\":\"token\"")
        {
            first_token_at = Some(chunk.at);
        }
    }
    let response = StreamedHttpResponse::parse(&raw);
    assert_eq!(response.prelude["statusCode"], 200);
    assert_eq!(
        response.prelude["headers"]["content-type"],
        "text/event-stream"
    );
    assert!(
        response.body.trim_end().ends_with("data: [DONE]"),
        "{}",
        response.body
    );
    assert!(response.body.contains("\"type\":\"end\""));

    let first_token_at = first_token_at.expect("a token chunk reached the runtime API");
    let last_token_sent = fake.last_token_sent().unwrap();
    assert!(
        first_token_at < last_token_sent,
        "the first token reached the runtime API {:?} after the model sent its last",
        first_token_at - last_token_sent
    );

    a_stream_resumes_through_the_lambda_runtime(&app, &emulator, &fake).await;
}

/// A turn streamed by another instance (the test's own HTTP server), its client gone after
/// three tokens, resumed with `Last-Event-ID` through the runtime: exactly the missing text.
async fn a_stream_resumes_through_the_lambda_runtime(
    app: &TestApp,
    emulator: &LambdaEmulator,
    fake: &FakeLlm,
) {
    let answer: String = (1..=20).map(|i| format!("word{i} ")).collect();
    fake.push(Script::slow_reply(&answer, Duration::from_millis(50)));
    let elsewhere = app.spawn_beside(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let response = elsewhere
        .request(Method::POST, "/api/v1/chat/streaming", "alice")
        .json(&json!({"message": "count"}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    let whole = |seen: &str| seen[..seen.rfind("\n\n").map_or(0, |end| end + 2)].to_owned();
    while whole(&seen).matches("\"type\":\"token\"").count() < 3 {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    drop(body);
    let had = whole(&seen);
    let frames = sse_frames(&had);
    let conversation_id = frames[0]["conversation_id"].as_str().unwrap();
    let last_id = sse_ids(&had).last().unwrap().clone();

    let event = resume_event(&app.token("alice"), conversation_id, &last_id);
    let received = emulator
        .invoke(event, Duration::from_secs(30))
        .await
        .unwrap();
    let response = StreamedHttpResponse::parse(&received.body());
    assert_eq!(response.prelude["statusCode"], 200);
    let rest = sse_frames(&response.body);
    let text = |frames: &[Value]| -> String {
        frames
            .iter()
            .filter(|f| f["type"] == "token")
            .map(|f| f["content"].as_str().unwrap())
            .collect()
    };
    assert_eq!(text(&frames) + &text(&rest), answer);
    assert_eq!(rest[rest.len() - 2]["metadata"]["finish_reason"], "stop");
    assert_eq!(rest.last().unwrap(), "[DONE]");
}
