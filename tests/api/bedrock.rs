//! Amazon Bedrock as a provider: both dialects, streamed and not, with tools and embeddings,
//! against a fake Runtime endpoint that speaks Bedrock's wire format and checks signatures.

use api_tests::fake_bedrock::{Turn, credential_vars};
use api_tests::{FakeBedrock, Reply, TestApp, sse_frames};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Failures: throttling, refusals, broken streams.
#[path = "bedrock_failures.rs"]
mod failures;

const CHAT: &str = "/api/v1/chat/chat";
const STREAMING: &str = "/api/v1/chat/streaming";
const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

/// A stack whose only configured model is Bedrock's (the default provider, named `bedrock`),
/// signing with the fake's credentials as a function does with its role's.
async fn app_with_bedrock(extra: &[(&str, &str)]) -> (TestApp, FakeBedrock) {
    let fake = FakeBedrock::start().await;
    let providers = fake.providers("bedrock", MODEL);
    let mut vars = vec![
        ("LLM_PROVIDERS", providers.as_str()),
        ("LLM_DEFAULT_PROVIDER", "bedrock"),
    ];
    vars.extend(credential_vars());
    vars.extend_from_slice(extra);
    (TestApp::spawn_with(&vars).await, fake)
}

/// Posts a streaming request as alice; the reply and its `data:` frames.
async fn stream(app: &TestApp, path: &str, body: &Value) -> (Reply, Vec<Value>) {
    let response = app
        .request(Method::POST, path, "alice")
        .json(body)
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    let frames = sse_frames(&reply.text);
    (reply, frames)
}

/// The kinds of Chatter stream frames (`[DONE]` as itself).
fn kinds(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|f| f["type"].as_str().or(f.as_str()).unwrap_or_default())
        .collect()
}

/// The conversation a Chatter stream started, as alice stores it.
async fn streamed_messages(app: &TestApp, frames: &[Value]) -> Vec<Value> {
    let id = frames[0]["conversation_id"].as_str().unwrap();
    app.stored_messages("alice", id).await
}

#[tokio::test]
async fn a_chat_turn_goes_through_converse_and_stores_the_answer_with_usage_and_cost() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::reply("Paris is the capital."));
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Capital of France?", "system_prompt_override": "Answer briefly.",
                    "temperature": 0.3, "max_tokens": 120}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let answer = &reply.body["message"];
    assert_eq!(answer["content"], "Paris is the capital.");
    assert_eq!(answer["provider_used"], "bedrock");
    assert_eq!(answer["model_used"], MODEL);
    assert_eq!(answer["finish_reason"], "stop");
    assert_eq!(answer["prompt_tokens"], 10);
    assert_eq!(answer["completion_tokens"], 4);
    // 10 prompt tokens at 1.0 and 4 completion tokens at 2.0 per thousand.
    assert!((answer["cost"].as_f64().unwrap() - 0.018).abs() < 1e-12);

    let received = fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].model, MODEL, "the model id is one path segment");
    assert_eq!(received[0].action, "converse");
    assert_eq!(
        received[0].body,
        json!({
            "system": [{"text": "Answer briefly."}],
            "messages": [{"role": "user", "content": [{"text": "Capital of France?"}]}],
            "inferenceConfig": {"maxTokens": 120, "temperature": 0.3},
        })
    );
    assert_eq!(fake.refused_signatures(), 0);
}

#[tokio::test]
async fn a_streamed_turn_goes_through_converse_stream_token_by_token_with_the_streams_usage() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::reply("Once upon a time."));
    let (reply, frames) = stream(&app, STREAMING, &json!({"message": "A story?"})).await;
    assert_eq!(reply.status, StatusCode::OK);
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
    let tokens: String = frames
        .iter()
        .filter(|f| f["type"] == "token")
        .map(|f| f["content"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, "Once upon a time.");
    assert_eq!(frames[7]["usage"]["prompt_tokens"], 10);
    assert_eq!(frames[7]["usage"]["completion_tokens"], 4);

    let stored = streamed_messages(&app, &frames).await;
    assert_eq!(stored[1]["content"], "Once upon a time.");
    assert_eq!(stored[1]["finish_reason"], "stop");
    assert_eq!(stored[1]["completion_tokens"], 4);
    assert_eq!(stored[1]["provider_used"], "bedrock");
    assert_eq!(fake.received()[0].action, "converse-stream");
}

#[tokio::test]
async fn a_history_is_sent_as_alternating_user_and_assistant_messages() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::reply("Hi."));
    let first = app.post(CHAT, "alice", &json!({"message": "Hello"})).await;
    let id = first.body["conversation_id"].as_str().unwrap();
    fake.push(Turn::reply("Fine."));
    let second = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "How are you?", "conversation_id": id}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(
        fake.conversations()[1]["messages"],
        json!([
            {"role": "user", "content": [{"text": "Hello"}]},
            {"role": "assistant", "content": [{"text": "Hi."}]},
            {"role": "user", "content": [{"text": "How are you?"}]},
        ])
    );
}

#[tokio::test]
async fn an_answer_cut_at_max_tokens_is_stored_with_finish_reason_length() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::Reply {
        tokens: vec!["It was the best".into()],
        stop_reason: "max_tokens",
        usage: (5, 3),
    });
    let reply = app.post(CHAT, "alice", &json!({"message": "Go"})).await;
    assert_eq!(reply.body["message"]["finish_reason"], "length");
}

/// The toolUse and toolResult blocks of the second Converse request of a tools turn.
fn tool_blocks(fake: &FakeBedrock) -> (Value, Value) {
    let followup = &fake.conversations()[1];
    let messages = followup["messages"].as_array().unwrap();
    let asked = messages[messages.len() - 2].clone();
    let answered = messages[messages.len() - 1].clone();
    (asked, answered)
}

fn tools_offered(request: &Value) -> Vec<&str> {
    request["toolConfig"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["toolSpec"]["name"].as_str().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_tools_workflow_answers_tool_use_with_tool_results() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::tool_use(
        "calculator",
        json!({"expression": "sqrt(144)"}),
    ))
    .push(Turn::reply("It is 12."));
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Square root of 144?", "workflow": "tools"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["message"]["content"], "It is 12.");

    let first = &fake.conversations()[0];
    assert_eq!(tools_offered(first), ["calculator", "get_time"]);
    assert!(first["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"].is_object());
    let (asked, answered) = tool_blocks(&fake);
    assert_eq!(
        asked,
        json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_0", "name": "calculator", "input": {"expression": "sqrt(144)"}}}]})
    );
    assert_eq!(
        answered,
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_0", "content": [{"text": "12"}]}}]})
    );
    let id = reply.body["conversation_id"].as_str().unwrap();
    let roles: Vec<Value> = app
        .stored_messages("alice", id)
        .await
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles, ["user", "tool", "assistant"]);
    // Both calls' usage is counted: 10 + 2 for the tool use, 10 + 3 for the answer.
    assert_eq!(reply.body["message"]["prompt_tokens"], 20);
    assert_eq!(reply.body["message"]["completion_tokens"], 5);
}

#[tokio::test]
async fn a_streamed_tools_turn_assembles_tool_use_from_its_deltas() {
    let (app, fake) = app_with_bedrock(&[]).await;
    fake.push(Turn::ToolUse(vec![
        ("calculator".into(), json!({"expression": "6*7"})),
        ("calculator".into(), json!({"expression": "2+2"})),
    ]))
    .push(Turn::reply("42 and 4."));
    let (_, frames) = stream(
        &app,
        STREAMING,
        &json!({"message": "Two sums", "workflow": "tools"}),
    )
    .await;
    let tool_results: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "node_complete" && f["metadata"]["node"] == "tool")
        .map(|f| &f["metadata"]["result"])
        .collect();
    assert_eq!(tool_results, [&json!("42"), &json!("4")]);
    assert_eq!(kinds(&frames).last(), Some(&"[DONE]"));

    let (asked, answered) = tool_blocks(&fake);
    let inputs: Vec<&Value> = asked["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["toolUse"]["input"])
        .collect();
    assert_eq!(
        inputs,
        [&json!({"expression": "6*7"}), &json!({"expression": "2+2"})]
    );
    let results = answered["content"].as_array().unwrap();
    assert_eq!(results.len(), 2, "parallel results are one user message");
    assert_eq!(results[1]["toolResult"]["toolUseId"], "tooluse_1");
    let stored = streamed_messages(&app, &frames).await;
    // Stored as the turn began, the answer settles after the tool results it follows.
    let roles: Vec<&str> = stored.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "tool", "tool", "assistant"]);
    assert_eq!(stored[3]["content"], "42 and 4.");
    assert_eq!(stored[3]["id"], frames[0]["message_id"]);
}

#[tokio::test]
async fn a_request_names_bedrock_beside_an_openai_compatible_default_and_the_conversation_keeps_it()
{
    let fake = FakeBedrock::start().await;
    let openai = api_tests::FakeLlm::start().await;
    let providers = fake.providers("bedrock", MODEL);
    let mut vars = vec![
        ("LLM_BASE_URL", openai.base_url.as_str()),
        ("LLM_PROVIDERS", providers.as_str()),
    ];
    vars.extend(credential_vars());
    let app = TestApp::spawn_with(&vars).await;
    let first = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Hi", "provider": "bedrock"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["message"]["provider_used"], "bedrock");
    let id = first.body["conversation_id"].as_str().unwrap();
    let second = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Again", "conversation_id": id}),
        )
        .await;
    assert_eq!(second.body["message"]["provider_used"], "bedrock");
    assert_eq!(fake.conversations().len(), 2);
    assert_eq!(openai.calls(), 0);
}

// FreeChat: a character's backend names the Bedrock provider.

const CHARACTER: &str = "/api/v1/character";

/// alice's character whose default backend is Bedrock's (`provider`: `bedrock`), and a chat
/// started with it; the chat's id.
async fn chat_on_bedrock(app: &TestApp) -> String {
    let created = app
        .post(
            CHARACTER,
            "alice",
            &json!({"name": "Ada", "profile": "A mathematician.", "greeting": "Hello!"}),
        )
        .await;
    let id = created.body.as_u64().expect("a character id");
    let summary = app.get(&format!("{CHARACTER}/summary/{id}"), "alice").await;
    let uid = summary.body["characterUid"].as_str().unwrap();
    let backend = app
        .post(
            &format!("{CHARACTER}/backend/{uid}"),
            "alice",
            &json!({"provider": "bedrock", "model": "amazon.nova-lite-v1:0", "temperature": 0.5, "maxTokens": 200}),
        )
        .await;
    assert_eq!(backend.status, StatusCode::OK, "{}", backend.text);
    let chat = app
        .post("/api/v1/chat", "alice", &json!({"characterUid": uid}))
        .await;
    assert_eq!(chat.status, StatusCode::OK, "{}", chat.text);
    chat.text
}

#[tokio::test]
async fn a_freechat_send_on_a_bedrock_backend_answers_with_its_usage() {
    // The deployment's default provider stays the OpenAI-compatible one; the backend picks Bedrock.
    let fake = FakeBedrock::start().await;
    let providers = fake.providers("bedrock", MODEL);
    let mut vars = vec![("LLM_PROVIDERS", providers.as_str())];
    vars.extend(credential_vars());
    let app = TestApp::spawn_with(&vars).await;
    let chat = chat_on_bedrock(&app).await;
    fake.push(Turn::reply("Numbers are poetry."));
    let reply = app
        .post(
            &format!("/api/v1/chat/send/{chat}"),
            "alice",
            &json!({"contents": [{"type": "text", "content": "Tell me something"}]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["text"], "Numbers are poetry.");
    assert_eq!(reply.body["finishReason"], "stop");
    assert_eq!(
        reply.body["tokenUsage"],
        json!({"inputTokenCount": 10, "outputTokenCount": 3, "totalTokenCount": 13})
    );
    let received = &fake.received()[0];
    assert_eq!(received.model, "amazon.nova-lite-v1:0");
    assert_eq!(
        received.body["inferenceConfig"],
        json!({"maxTokens": 200, "temperature": 0.5})
    );
    assert!(
        received.body["system"][0]["text"]
            .as_str()
            .unwrap()
            .contains("A mathematician.")
    );
}

#[tokio::test]
async fn a_freechat_stream_on_a_bedrock_backend_frames_each_delta_then_the_whole_answer() {
    let (app, fake) = app_with_bedrock(&[]).await;
    let chat = chat_on_bedrock(&app).await;
    fake.push(Turn::reply("Two plus two is four."));
    let (reply, frames) = stream(
        &app,
        &format!("/api/v1/chat/send/stream/{chat}"),
        &json!({"contentText": "Add two and two"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let deltas: String = frames[..frames.len() - 1]
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Two plus two is four.");
    let last = frames.last().unwrap();
    assert_eq!(last["finishReason"], "stop");
    assert_eq!(
        last["message"]["contents"][0]["content"],
        "Two plus two is four."
    );
    assert_eq!(last["tokenUsage"]["totalTokenCount"], 15);
}

// Retrieval with Titan Text Embeddings.

#[tokio::test]
async fn documents_are_embedded_with_titan_through_invoke_model_and_ranked_by_those_vectors() {
    const TITAN: &str = "amazon.titan-embed-text-v2:0";
    let (app, fake) = app_with_bedrock(&[
        ("EMBEDDING_PROVIDER", "bedrock"),
        ("EMBEDDING_MODEL", TITAN),
    ])
    .await;
    let ships = app
        .upload_text(
            "alice",
            "Ships",
            "Lighthouses guide ships along rocky coasts.",
        )
        .await;
    app.upload_text("alice", "Bread", "Bread rises when yeast ferments sugar.")
        .await;
    let chunks = app
        .get(&format!("/api/v1/documents/{ships}/chunks"), "alice")
        .await;
    let chunk = &chunks.body["chunks"][0];
    assert_eq!(chunk["embedding_model"], TITAN, "{}", chunks.body);
    assert_eq!(chunk["embedding_provider"], "bedrock");

    let embedded: Vec<Value> = fake
        .received()
        .into_iter()
        .filter(|r| r.action == "invoke" && r.model == TITAN)
        .map(|r| r.body)
        .collect();
    assert_eq!(
        embedded,
        [
            json!({"inputText": "Lighthouses guide ships along rocky coasts."}),
            json!({"inputText": "Bread rises when yeast ferments sugar."}),
        ]
    );

    let found = app
        .post(
            "/api/v1/documents/search",
            "alice",
            &json!({"query": "ships near lighthouses", "score_threshold": 0.2}),
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    let results = found.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{}", found.body);
    assert_eq!(results[0]["document_id"], json!(ships));
    assert_eq!(results[0]["metadata"]["ranking"], "embeddings");
    assert_eq!(
        fake.received().last().unwrap().body,
        json!({"inputText": "ships near lighthouses"}),
        "the query is embedded through Bedrock too"
    );
}
