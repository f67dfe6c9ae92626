//! The streaming function under a real Lambda runtime loop (`run_with_streaming_response`)
//! against an emulated Runtime API. A binary of its own: the runtime reads process-wide
//! environment variables.

use std::time::{Duration, Instant};

use api_tests::lambda_emulator::{LambdaEmulator, StreamedHttpResponse};
use api_tests::{FakeLlm, Script, TestApp};
use serde_json::json;
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
}
