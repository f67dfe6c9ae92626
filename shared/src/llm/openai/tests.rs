use futures_util::StreamExt;

use super::*;

fn client() -> OpenAiCompatible {
    crate::install_crypto_provider();
    OpenAiCompatible::new(
        reqwest::Client::new(),
        "http://provider.example/v1",
        None,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
}

/// Everything the parser makes of these SSE `data:` payloads.
async fn parse(payloads: &[&str]) -> Vec<Result<StreamEvent, LlmError>> {
    let chunks: Vec<reqwest::Result<bytes::Bytes>> = payloads
        .iter()
        .map(|p| Ok(bytes::Bytes::from(format!("data: {p}\n\n"))))
        .collect();
    client()
        .parse_stream(futures_util::stream::iter(chunks))
        .collect()
        .await
}

fn fragment(index: usize, id: Option<&str>, name: Option<&str>, arguments: &str) -> String {
    let mut fragment = serde_json::json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        fragment["id"] = id.into();
    }
    if let Some(name) = name {
        fragment["function"]["name"] = name.into();
    }
    serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [fragment]}}]}).to_string()
}

#[tokio::test]
async fn tool_calls_are_handed_on_when_the_stream_ends_with_done_and_no_finish_reason() {
    let events = parse(&[
        &fragment(0, Some("call_0"), Some("calculator"), "{\"expression\":"),
        &fragment(0, None, None, "\"1+1\"}"),
        "[DONE]",
    ])
    .await;
    let calls: Vec<ToolCall> = events
        .into_iter()
        .filter_map(|e| match e.unwrap() {
            StreamEvent::ToolCalls(calls) => Some(calls),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].id, "call_0");
    assert_eq!(calls[0].function.name, "calculator");
    assert_eq!(calls[0].function.arguments, "{\"expression\":\"1+1\"}");
}

#[tokio::test]
async fn tool_calls_are_handed_on_once_when_a_finish_reason_precedes_done() {
    let finish = r#"{"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}"#;
    let events = parse(&[
        &fragment(0, Some("c"), Some("get_time"), "{}"),
        finish,
        "[DONE]",
    ])
    .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e.as_ref().unwrap() {
            StreamEvent::ToolCalls(_) => "calls",
            StreamEvent::Finish(_) => "finish",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["calls", "finish"]);
}

#[tokio::test]
async fn a_tool_call_index_past_any_real_answer_is_a_malformed_stream() {
    let events = parse(&[
        &fragment(usize::MAX / 2, Some("c"), Some("calculator"), "{}"),
        "[DONE]",
    ])
    .await;
    assert_eq!(events.len(), 1);
    let error = events.into_iter().next().unwrap().unwrap_err();
    assert!(matches!(error, LlmError::Protocol { .. }), "{error}");
    assert!(error.to_string().contains("provider.example"));
}

#[test]
fn only_refusals_that_blame_the_input_are_the_clients_fault() {
    let context = r#"{"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}"#;
    assert!(blames_the_input(400, context));
    assert!(blames_the_input(413, ""));
    assert!(!blames_the_input(
        400,
        r#"{"error": {"message": "Unsupported parameter"}}"#
    ));
    assert!(!blames_the_input(404, context));
    assert!(!blames_the_input(401, ""));
}
