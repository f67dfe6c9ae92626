//! Bedrock's failures told apart like the other providers': throttling retried then a 503,
//! input faults a 422, refusals of access or model a 502 naming both, broken streams keeping
//! what was said.

use api_tests::fake_bedrock::{ACCESS_KEY_ID, Turn};
use api_tests::{FakeBedrock, TestApp};
use reqwest::StatusCode;
use serde_json::json;

use super::{CHAT, MODEL, STREAMING, app_with_bedrock, chat_on_bedrock, kinds, stream};

/// The next three requests are throttled: the first try and both retries.
fn throttle_three_times(fake: &FakeBedrock) {
    for _ in 0..3 {
        fake.push(Turn::refuse(
            "ThrottlingException",
            429,
            "Too many requests",
        ));
    }
}

#[tokio::test]
async fn throttling_is_retried_twice_then_a_503_with_retry_after_and_the_question_stays_stored() {
    let (app, fake) = app_with_bedrock(&[]).await;
    throttle_three_times(&fake);
    let id = app.create_conversation("alice", "t").await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "busy?", "conversation_id": id}),
        )
        .await;
    reply.assert_problem(503);
    assert!(reply.header("retry-after").parse::<u64>().unwrap() > 0);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("rate limiting") && detail.contains(&fake.endpoint),
        "{detail}"
    );
    assert_eq!(fake.conversations().len(), 3);
    let stored = app.stored_messages("alice", &id).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["content"], "busy?");
}

#[tokio::test]
async fn a_stream_throttled_throughout_is_tried_three_times_then_an_error_chunk() {
    let (app, fake) = app_with_bedrock(&[]).await;
    throttle_three_times(&fake);
    // Were the stream retried more than twice, this answer would come through.
    fake.push(Turn::reply("Too late."));
    let (_, frames) = stream(&app, STREAMING, &json!({"message": "busy?"})).await;
    assert_eq!(kinds(&frames), ["start", "node_start", "error", "[DONE]"]);
    let error = frames[2]["content"].as_str().unwrap();
    assert!(error.contains("rate limiting"), "{error}");
    assert_eq!(fake.conversations().len(), 3);
}

#[tokio::test]
async fn an_unavailable_service_is_a_503_too() {
    let (app, fake) = app_with_bedrock(&[]).await;
    for _ in 0..3 {
        fake.push(Turn::refuse(
            "ServiceUnavailableException",
            503,
            "Try later",
        ));
    }
    let reply = app.post(CHAT, "alice", &json!({"message": "hello?"})).await;
    reply.assert_problem(503);
    assert!(!reply.header("retry-after").is_empty());
}

#[tokio::test]
async fn a_stream_throttled_before_its_first_token_is_retried_and_answers_in_full() {
    let (app, fake) = app_with_bedrock(&[]).await;
    // Refused outright, then throttled by the stream's first event, then answered.
    fake.push(Turn::refuse(
        "ThrottlingException",
        429,
        "Too many requests",
    ))
    .push(Turn::BreakAfter {
        tokens: 0,
        exception: "throttlingException",
    })
    .push(Turn::reply("Made it."));
    let (_, frames) = stream(&app, STREAMING, &json!({"message": "again"})).await;
    assert!(!kinds(&frames).contains(&"error"), "{frames:?}");
    let stored = super::streamed_messages(&app, &frames).await;
    assert_eq!(stored[1]["content"], "Made it.");
    assert_eq!(stored[1]["finish_reason"], "stop");
    assert_eq!(fake.conversations().len(), 3);
}

#[tokio::test]
async fn a_validation_exception_is_a_422_when_it_blames_the_input_and_a_502_otherwise() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::refuse(
        "ValidationException",
        400,
        "Input is too long for requested model.",
    ));
    let long = app
        .post(CHAT, "alice", &json!({"message": "a long one"}))
        .await;
    long.assert_problem(422);
    assert!(
        long.body["detail"].as_str().unwrap().contains("too long"),
        "{}",
        long.body
    );

    fake.push(Turn::refuse(
        "ValidationException",
        400,
        "The provided model identifier is invalid.",
    ));
    let misconfigured = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
    misconfigured.assert_problem(502);
    let detail = misconfigured.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("bedrock") && detail.contains(MODEL),
        "{detail}"
    );
    assert_eq!(fake.conversations().len(), 2, "neither is retried");
}

#[tokio::test]
async fn refused_access_a_missing_model_or_one_not_ready_is_a_502_naming_provider_and_model() {
    let (app, fake) = app_with_bedrock(&[]).await;
    let secret_words = "User: arn:aws:sts::123456789012:assumed-role/chat-fn is not authorized";
    for (exception, status, says) in [
        ("AccessDeniedException", 403, "bedrock:InvokeModel"),
        ("ResourceNotFoundException", 404, "us-east-1"),
        ("ModelNotReadyException", 429, "not ready"),
    ] {
        fake.push(Turn::refuse(exception, status, secret_words));
        let reply = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
        reply.assert_problem(502);
        let detail = reply.body["detail"].as_str().unwrap();
        for part in ["bedrock", MODEL, says] {
            assert!(
                detail.contains(part),
                "{exception}: {part:?} not in {detail}"
            );
        }
        assert!(!detail.contains("123456789012"), "{detail}");
    }
    assert_eq!(fake.conversations().len(), 3, "none is retried");
}

#[tokio::test]
async fn requests_signed_with_other_credentials_are_refused_and_the_client_gets_a_502() {
    let fake = FakeBedrock::start().await;
    let providers = fake.providers("bedrock", MODEL);
    let app = TestApp::spawn_with(&[
        ("LLM_PROVIDERS", providers.as_str()),
        ("LLM_DEFAULT_PROVIDER", "bedrock"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", "not-the-secret-the-fake-knows"),
        ("AWS_SESSION_TOKEN", api_tests::fake_bedrock::SESSION_TOKEN),
    ])
    .await;
    let reply = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
    reply.assert_problem(502);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("credentials") && detail.contains(MODEL),
        "{detail}"
    );
    assert_eq!(fake.refused_signatures(), 1);
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_stream_broken_midway_keeps_what_was_said() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::BreakAfter {
        tokens: 2,
        exception: "modelStreamErrorException",
    });
    let (_, frames) = stream(&app, STREAMING, &json!({"message": "go"})).await;
    assert_eq!(
        kinds(&frames),
        ["start", "node_start", "token", "token", "error", "[DONE]"]
    );
    let stored = super::streamed_messages(&app, &frames).await;
    assert_eq!(stored[1]["content"], "part0 part1 ");
    assert_eq!(stored[1]["finish_reason"], "error");
    assert_eq!(
        fake.conversations().len(),
        1,
        "nothing is retried after a token"
    );
}

#[tokio::test]
async fn a_freechat_stream_broken_midway_ends_with_the_partial_message_and_an_error() {
    let (app, fake) = app_with_bedrock(&[]).await;
    let chat = chat_on_bedrock(&app).await;
    fake.push(Turn::BreakAfter {
        tokens: 2,
        exception: "internalServerException",
    });
    let (reply, frames) = stream(
        &app,
        &format!("/api/v1/chat/send/stream/{chat}"),
        &json!({"contentText": "Go on"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let last = frames.last().unwrap();
    assert_eq!(last["finishReason"], "other");
    assert_eq!(last["message"]["contents"][0]["content"], "part0 part1 ");
    assert!(last["error"].is_string(), "{last}");
}
