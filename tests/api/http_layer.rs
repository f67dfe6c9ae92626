use api_tests::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::json;

const CONVERSATIONS: &str = "/api/v1/chat/conversations";

#[tokio::test]
async fn a_request_without_a_token_is_401_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let reply = api_tests::Reply::from(
        app.http
            .get(format!("{}{CONVERSATIONS}", app.base_url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(401);
    assert!(reply.header("www-authenticate").starts_with("Bearer"));
    assert_eq!(reply.body["instance"], CONVERSATIONS);
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = TestApp::spawn().await;
    let reply = api_tests::Reply::from(
        app.request(Method::POST, CONVERSATIONS, "alice")
            .header("content-type", "application/json")
            .body("{\"title\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(400);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await;
    let reply = api_tests::Reply::from(
        app.request(Method::POST, CONVERSATIONS, "alice")
            .header("content-type", "text/plain")
            .body("title=hello")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(415);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = TestApp::spawn_with(&[("MAX_BODY_BYTES", "1024")]).await;
    let reply = app
        .post(
            CONVERSATIONS,
            "alice",
            &json!({"title": "t", "description": "x".repeat(2048)}),
        )
        .await;
    reply.assert_problem(413);
}

#[tokio::test]
async fn invalid_fields_are_422_listing_each_one() {
    let app = TestApp::spawn().await;
    let reply = app
        .post(
            CONVERSATIONS,
            "alice",
            &json!({"title": "", "temperature": 2.5, "max_tokens": 0}),
        )
        .await;
    reply.assert_problem(422);
    let locs: Vec<_> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    assert_eq!(
        locs,
        [
            json!(["body", "title"]),
            json!(["body", "temperature"]),
            json!(["body", "max_tokens"])
        ]
    );

    let missing = app.post(CONVERSATIONS, "alice", &json!({})).await;
    missing.assert_problem(422);
    assert_eq!(
        missing.body["errors"][0],
        json!({"loc": ["body", "title"], "msg": "Field required", "type": "missing"})
    );

    let wrong_type = app.post(CONVERSATIONS, "alice", &json!({"title": 5})).await;
    wrong_type.assert_problem(422);
    assert_eq!(wrong_type.body["errors"][0]["type"], "type_error");
}

#[tokio::test]
async fn an_unknown_route_is_404_and_a_wrong_method_is_405() {
    let app = TestApp::spawn().await;
    // Not under /api/v1/chat/: FreeChat's /api/v1/chat/{characterId} matches any one segment
    // there (and answers a non-numeric id with its own 400).
    for path in [
        "/api/v1/nothing-here",
        "/api/v1/chat/conversations/x/nothing-here",
    ] {
        app.get(path, "alice").await.assert_problem(404);
    }
    let reply = api_tests::Reply::from(
        app.request(Method::PATCH, CONVERSATIONS, "alice")
            .send()
            .await
            .unwrap(),
    )
    .await;
    reply.assert_problem(405);
}

#[tokio::test]
async fn a_plain_correlation_id_is_echoed_and_any_other_is_replaced() {
    let app = TestApp::spawn().await;
    let echoed = app
        .request(Method::GET, CONVERSATIONS, "alice")
        .header("x-correlation-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-correlation-id"], "trace-123");
    let replaced = app
        .request(Method::GET, CONVERSATIONS, "alice")
        .header("x-correlation-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-correlation-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let fresh = app.get("/no/such/route", "alice").await;
    assert!(uuid::Uuid::parse_str(fresh.header("x-correlation-id")).is_ok());
}

#[tokio::test]
async fn every_response_reports_the_rate_limits_and_past_them_it_is_429() {
    let app = TestApp::spawn_with(&[
        ("RATE_LIMIT_PER_MINUTE", "3"),
        ("RATE_LIMIT_PER_HOUR", "100"),
    ])
    .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let reply = app.get(CONVERSATIONS, "alice").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-ratelimit-limit-minute"), "3");
        assert_eq!(reply.header("x-ratelimit-limit-hour"), "100");
        remaining.push(reply.header("x-ratelimit-remaining-minute").to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    let limited = app.get(CONVERSATIONS, "alice").await;
    limited.assert_problem(429);
    let retry: u64 = limited.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The limit is per user.
    assert_eq!(app.get(CONVERSATIONS, "bob").await.status, StatusCode::OK);
}

#[tokio::test]
async fn rate_limits_hold_across_instances_sharing_the_table() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    // A second service over the same table stands in for a second Lambda instance.
    let other = shared::api::Group::Conversations.service(app.state.clone());
    assert_eq!(app.get(CONVERSATIONS, "alice").await.status, StatusCode::OK);
    let request = http::Request::get(CONVERSATIONS)
        .header("authorization", format!("Bearer {}", app.token("alice")))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(other, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.get(CONVERSATIONS, "alice").await.assert_problem(429);
}

#[tokio::test]
async fn a_browser_from_an_allowed_origin_passes_cors() {
    let app = TestApp::spawn().await;
    let preflight = app
        .http
        .request(Method::OPTIONS, format!("{}{CONVERSATIONS}", app.base_url))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let foreign = app
        .http
        .request(Method::OPTIONS, format!("{}{CONVERSATIONS}", app.base_url))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

/// A log sink for one test: lines written on this thread's subscriber.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> lambda_http::tracing::subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// A current-thread runtime: the server, the handler and the task it spawns all run on this
// thread, where the capturing subscriber is the default.
#[tokio::test]
async fn log_lines_of_a_streamed_turn_carry_the_requests_correlation_id() {
    use lambda_http::tracing::subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    let _logs = lambda_http::tracing::subscriber::fmt()
        .json()
        .with_writer(captured.clone())
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .finish()
        .set_default();
    // Tests on other threads, without a subscriber, may have had `tracing` cache callsites as
    // disabled while this one's was being set up.
    let fake = api_tests::FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    // The model fails inside the task that runs the streamed turn, which logs the failure.
    fake.push(api_tests::Script::Malformed { after: 1 });
    let reply = api_tests::Reply::from(
        app.request(Method::POST, "/api/v1/chat/streaming", "alice")
            .header("x-correlation-id", "trace-me-42")
            .json(&json!({"message": "hello"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(reply.text.contains(r#""type":"error""#), "{}", reply.text);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let failure = logs
        .lines()
        .find(|line| line.contains("model call failed"))
        .unwrap_or_else(|| panic!("no model failure logged:\n{logs}"));
    assert!(failure.contains("trace-me-42"), "{failure}");
    assert!(failure.contains("alice"), "{failure}");
}
