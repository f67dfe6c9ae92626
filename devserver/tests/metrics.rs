//! The local run prints, at info level, the Embedded Metric Format lines CloudWatch would
//! extract the turns' metrics from, one per turn, valid by the specification.

mod support;

use std::time::Duration;

use api_tests::{FakeLlm, Script, emf};
use serde_json::{Value, json};
use shared::config::Secret;
use support::{DataDir, Devserver, SECRET};

/// The next metric line the devserver prints, parsed.
fn next_metric_line(server: &Devserver) -> (String, Value) {
    loop {
        let line = server
            .next_line(Duration::from_secs(20))
            .expect("a metric line is printed");
        if line.contains("\"_aws\"") {
            let parsed = serde_json::from_str(&line).expect("a metric line is JSON");
            return (line, parsed);
        }
    }
}

#[tokio::test]
async fn each_turn_prints_one_valid_metric_line_with_its_figures() {
    shared::install_crypto_provider();
    let fake = FakeLlm::start().await;
    let data = DataDir::new("metrics");
    let server = Devserver::start(
        &data.0,
        &[
            ("RUST_LOG", "info"),
            ("LLM_BASE_URL", &fake.base_url),
            ("LLM_PROMPT_PRICE_PER_1K", "1"),
            ("LLM_COMPLETION_PRICE_PER_1K", "2"),
        ],
    );
    let token = shared::auth::issue_token(&Secret::new(SECRET), "alice", Duration::from_secs(600));
    let http = reqwest::Client::new();

    fake.push(Script::slow_reply(
        "Streamed in four words",
        Duration::from_millis(50),
    ));
    let streamed = http
        .post(format!("{}/api/v1/chat/streaming", server.url))
        .bearer_auth(&token)
        .json(&json!({"message": "Hello"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(streamed.contains("[DONE]"), "{streamed}");
    let (line, metrics) = next_metric_line(&server);
    assert_eq!(emf::violations(&line), Vec::<String>::new(), "{line}");
    assert_eq!(
        metrics["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "ChatApi"
    );
    assert_eq!(metrics["Dialect"], "chatter");
    assert_eq!(metrics["Workflow"], "plain");
    assert_eq!(metrics["Turns"], 1);
    assert_eq!(metrics["CompletionTokens"], 4);
    assert_eq!(metrics["PromptTokens"], 10);
    assert_eq!(metrics["Cost"], 0.018);
    assert_eq!(metrics["ModelErrors"], 0);
    let first_token = metrics["TimeToFirstToken"]
        .as_u64()
        .expect("a streamed turn has one");
    assert!(first_token <= metrics["TurnDuration"].as_u64().unwrap());

    fake.push(Script::Status(500));
    fake.push(Script::Status(500));
    fake.push(Script::Status(500));
    let failed = http
        .post(format!("{}/api/v1/chat/chat", server.url))
        .bearer_auth(&token)
        .json(&json!({"message": "Hello again", "workflow": "tools"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let (line, metrics) = next_metric_line(&server);
    assert_eq!(emf::violations(&line), Vec::<String>::new(), "{line}");
    assert_eq!(metrics["Workflow"], "tools");
    assert_eq!(metrics["ModelErrors"], 1);
    assert_eq!(metrics["Errors"], 1);
    assert_eq!(metrics["ErrorClass"], "upstream_error");
    assert!(metrics.get("TimeToFirstToken").is_none());
}

#[tokio::test]
async fn above_info_the_local_run_prints_no_metric_line() {
    shared::install_crypto_provider();
    let fake = FakeLlm::start().await;
    let data = DataDir::new("quiet-metrics");
    let server = Devserver::start(&data.0, &[("LLM_BASE_URL", &fake.base_url)]);
    let token = shared::auth::issue_token(&Secret::new(SECRET), "alice", Duration::from_secs(600));
    let answered = reqwest::Client::new()
        .post(format!("{}/api/v1/chat/chat", server.url))
        .bearer_auth(&token)
        .json(&json!({"message": "Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let mut printed = Vec::new();
    while let Some(line) = server.next_line(Duration::from_millis(500)) {
        printed.push(line);
    }
    assert!(
        printed.iter().any(|line| line.starts_with("eyJ")),
        "stdout is read: the ready token is on it"
    );
    assert!(
        printed.iter().all(|line| !line.contains("\"_aws\"")),
        "{printed:?}"
    );
}
