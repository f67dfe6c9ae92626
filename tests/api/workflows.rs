use api_tests::mcp_server::{
    start_shop, start_shop_server, start_shop_stuck_on_list, start_stuck_server,
};
use api_tests::{FakeLlm, Script, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const CHAT: &str = "/api/v1/chat/chat";

async fn app_with(fake: &FakeLlm, mcp: Option<Value>) -> TestApp {
    let mcp = mcp.map(|m| m.to_string());
    let mut vars = vec![("LLM_BASE_URL", fake.base_url.as_str())];
    if let Some(mcp) = &mcp {
        vars.push(("MCP_SERVERS", mcp.as_str()));
    }
    TestApp::spawn_with(&vars).await
}

/// A stack whose model is `fake` and whose only MCP server is `name` at `url`, with one
/// MCP limit (`MCP_TIMEOUT_MS` or `MCP_CONNECT_TIMEOUT_MS`) set.
async fn app_with_mcp_limit(fake: &FakeLlm, name: &str, url: &str, limit: (&str, &str)) -> TestApp {
    let servers = json!([{"name": name, "url": url}]).to_string();
    TestApp::spawn_with(&[
        ("LLM_BASE_URL", fake.base_url.as_str()),
        ("MCP_SERVERS", &servers),
        limit,
    ])
    .await
}

/// A stack whose model is `fake` and whose only MCP server, `stuck` at `url`, gets 200 ms
/// to connect.
async fn app_with_stuck_server(fake: &FakeLlm, url: &str) -> TestApp {
    app_with_mcp_limit(fake, "stuck", url, ("MCP_CONNECT_TIMEOUT_MS", "200")).await
}

/// The names of the tools a request to the model offered (none when it offered no tools).
fn tools_offered(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_model_calls_the_calculator_and_answers_with_its_result() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "sqrt(144)"}),
    ))
    .push(Script::reply("The square root of 144 is 12."));
    let reply = tools_turn_ok(&app, "What is the square root of 144?").await;
    assert_eq!(
        reply.body["message"]["content"],
        "The square root of 144 is 12."
    );
    assert_eq!(
        reply.body["message"]["metadata"]["tool_calls"][0]["tool"],
        "calculator"
    );

    let requests = fake.requests();
    assert_eq!(tools_offered(&requests[0]), ["calculator", "get_time"]);
    let followup = requests[1]["messages"].as_array().unwrap();
    let asked = &followup[followup.len() - 2];
    assert_eq!(asked["role"], "assistant");
    assert_eq!(asked["tool_calls"][0]["function"]["name"], "calculator");
    let answered = followup.last().unwrap();
    assert_eq!(
        answered,
        &json!({"role": "tool", "content": "12", "tool_call_id": "call_0"})
    );

    let id = reply.body["conversation_id"].as_str().unwrap();
    let roles: Vec<Value> = app
        .stored_messages("alice", id)
        .await
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles, ["user", "tool", "assistant"]);
    let tool = &app.stored_messages("alice", id).await[1];
    assert_eq!(tool["content"], "12");
    assert_eq!(tool["metadata"]["tool"], "calculator");
    assert_eq!(reply.body["conversation"]["message_count"], 3);
}

#[tokio::test]
async fn several_tool_calls_in_one_turn_all_run() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    fake.push(Script::ToolCalls(vec![
        ("calculator".into(), json!({"expression": "6*7"})),
        ("get_time".into(), json!({"timezone": "Asia/Tokyo"})),
    ]))
    .push(Script::reply("42, and it is evening in Tokyo."));
    tools_turn_ok(&app, "two things").await;
    let results = results_sent(&fake, 1);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["content"], "42");
    assert!(results[1]["content"].as_str().unwrap().contains("+09:00"));
}

#[tokio::test]
async fn a_tool_that_fails_is_reported_to_the_model_not_to_the_client() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "1/0"}),
    ))
    .push(Script::tool_call("no_such_tool", json!({})))
    .push(Script::reply("That cannot be computed."));
    let reply = tools_turn_ok(&app, "1/0?").await;
    let results = results_sent(&fake, 2);
    let errors: Vec<&str> = results
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        errors[0].starts_with("Error:") && errors[0].contains("finite"),
        "{errors:?}"
    );
    assert!(errors[1].contains("no tool named no_such_tool"));
    assert_eq!(
        reply.body["message"]["metadata"]["tool_calls"][0]["is_error"],
        true
    );
}

#[tokio::test]
async fn at_the_tool_call_limit_the_model_must_answer() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    for _ in 0..2 {
        fake.push(Script::tool_call(
            "calculator",
            json!({"expression": "1+1"}),
        ));
    }
    fake.push(Script::reply("Enough computing."));
    let reply = app
        .post(CHAT, "alice", &json!({"message": "loop", "workflow": "tools", "workflow_config": {"max_tool_calls": 2}}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(!tools_offered(&requests[1]).is_empty());
    assert!(
        tools_offered(&requests[2]).is_empty(),
        "past the limit no tools are offered"
    );
    let id = reply.body["conversation_id"].as_str().unwrap();
    assert_eq!(
        app.stored_messages("alice", id)
            .await
            .iter()
            .filter(|m| m["role"] == "tool")
            .count(),
        2
    );
}

#[tokio::test]
async fn an_mcp_servers_tools_are_offered_and_called() {
    let fake = FakeLlm::start().await;
    let url = start_shop_server().await;
    let app = app_with(&fake, Some(json!([{"name": "shop", "url": url}]))).await;
    fake.push(Script::tool_call("lookup_order", json!({"order_id": "42"})))
        .push(Script::reply("Your order shipped."));
    tools_turn_ok(&app, "Where is order 42?").await;
    let offered = tools_offered(&fake.requests()[0]);
    // The shop's calculator clashes with the built-in, so it is namespaced.
    for name in [
        "calculator",
        "get_time",
        "lookup_order",
        "shop__calculator",
        "broken",
    ] {
        assert!(offered.contains(&name.to_owned()), "{offered:?}");
    }
    let result = last_message_sent(&fake, 1);
    assert_eq!(result["content"], "Order 42: shipped on 2026-11-20");

    fake.push(Script::tool_call("broken", json!({})))
        .push(Script::reply("Sorry."));
    tools_turn_ok(&app, "break it").await;
    let result = last_message_sent(&fake, 3);
    assert!(
        result["content"].as_str().unwrap().starts_with("Error:"),
        "{result}"
    );
}

#[tokio::test]
async fn an_mcp_server_that_is_down_is_skipped_and_shown_in_the_status() {
    let fake = FakeLlm::start().await;
    let url = start_shop_server().await;
    let app = app_with(
        &fake,
        Some(json!([{"name": "shop", "url": url}, {"name": "gone", "url": "http://127.0.0.1:9/mcp"}])),
    )
    .await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "2+2"}),
    ))
    .push(Script::reply("4"));
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "2+2", "workflow": "tools"}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "a down server does not fail the turn"
    );

    let status = app.get("/api/v1/chat/mcp/status", "alice").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["status"], "degraded");
    let servers = status.body["servers"].as_array().unwrap();
    let shop = servers.iter().find(|s| s["name"] == "shop").unwrap();
    let gone = servers.iter().find(|s| s["name"] == "gone").unwrap();
    assert_eq!(shop["status"], "healthy");
    assert_eq!(shop["tools_count"], 6);
    assert_eq!(gone["status"], "unavailable");
    assert!(gone["error"].is_string());
    assert!(status.body["last_check"].is_string());
    assert_eq!(status.body["errors"].as_array().unwrap().len(), 1);

    let tools = app.get("/api/v1/chat/tools/available", "alice").await;
    let names: Vec<&str> = tools.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"lookup_order") && names.contains(&"calculator"));
    let lookup = tools.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "lookup_order")
        .unwrap();
    assert_eq!(lookup["type"], "mcp");
    assert_eq!(
        lookup["args_schema"]["properties"]["order_id"]["type"],
        "string"
    );
}

#[tokio::test]
async fn without_mcp_servers_the_status_is_disabled_and_only_built_ins_are_listed() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    let status = app.get("/api/v1/chat/mcp/status", "alice").await;
    assert_eq!(status.body["status"], "disabled");
    let tools = app.get("/api/v1/chat/tools/available", "alice").await;
    let tools = tools.body["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 2);
    assert!(
        tools
            .iter()
            .all(|t| t["type"] == "builtin" && t["args_schema"]["type"] == "object")
    );

    let all_down = app_with(
        &fake,
        Some(json!([{"name": "gone", "url": "http://127.0.0.1:9/mcp"}])),
    )
    .await;
    assert_eq!(
        all_down.get("/api/v1/chat/mcp/status", "alice").await.body["status"],
        "unavailable"
    );
}

#[tokio::test]
async fn a_streamed_tool_run_is_announced_with_its_details() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "2^10"}),
    ))
    .push(Script::reply("It is 1024."));
    let response = app
        .request(Method::POST, "/api/v1/chat/streaming", "alice")
        .json(&json!({"message": "2^10?", "workflow": "tools"}))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let frames: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|line| line.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect();
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "start",
            "node_start",
            "node_complete",
            "node_start",
            "node_complete",
            "node_start",
            "token",
            "token",
            "token",
            "node_complete",
            "usage",
            "end"
        ]
    );
    let started = &frames[3]["metadata"];
    assert_eq!(started["node"], "tool");
    assert_eq!(started["tool"], "calculator");
    let done = &frames[4]["metadata"];
    assert_eq!(done["tool"], "calculator");
    assert_eq!(done["result"], "1024");
    assert_eq!(done["arguments"], json!({"expression": "2^10"}).to_string());
    assert!(done["duration_ms"].is_u64());
    assert!(text.trim_end().ends_with("data: [DONE]"));
}

#[tokio::test]
async fn a_template_offers_only_the_tools_it_requires() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    let reply = app
        .post(
            "/api/v1/chat/template/data_analyst",
            "alice",
            &json!({"message": "sum 1..10"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(tools_offered(&fake.requests()[0]), ["calculator"]);
}

#[tokio::test]
async fn performance_stats_count_every_execution_by_workflow_error_and_tool() {
    let fake = FakeLlm::start().await;
    let url = start_shop_server().await;
    let app = app_with(&fake, Some(json!([{"name": "shop", "url": url}]))).await;
    let empty = app.performance_stats("alice").await;
    assert_eq!(empty["total_executions"], 0);

    app.post(CHAT, "alice", &json!({"message": "plain one"}))
        .await;
    app.post(CHAT, "alice", &json!({"message": "plain two"}))
        .await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "1/0"}),
    ))
    .push(Script::reply("no"));
    app.post(
        CHAT,
        "alice",
        &json!({"message": "tools", "workflow": "tools"}),
    )
    .await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "1+1"}),
    ))
    .push(Script::reply("2"));
    app.post(
        CHAT,
        "alice",
        &json!({"message": "tools again", "workflow": "tools"}),
    )
    .await;
    // A provider's 413 blames the request whatever its body says, so it is a client error.
    fake.push(Script::Status(413));
    app.post(CHAT, "alice", &json!({"message": "refused"}))
        .await
        .assert_problem(422);
    app.post(CHAT, "bob", &json!({"message": "someone else"}))
        .await;

    let stats = app.performance_stats("alice").await;
    let s = &stats;
    assert_eq!(s["total_executions"], 5);
    assert_eq!(s["workflow_types"], json!({"plain": 3, "tools": 2}));
    assert_eq!(s["error_counts"], json!({"rejected": 1}));
    assert_eq!(s["tool_stats"]["calculator"]["calls"], 2);
    assert_eq!(s["tool_stats"]["calculator"]["errors"], 1);
    // The first tools turn listed the shop's tools; the second found them cached.
    assert_eq!(s["cache_stats"]["hits"], 1);
    assert_eq!(s["cache_stats"]["misses"], 1);
    let (min, avg, max) = (
        s["min_execution_time_ms"].as_u64().unwrap(),
        s["avg_execution_time_ms"].as_u64().unwrap(),
        s["max_execution_time_ms"].as_u64().unwrap(),
    );
    assert!(min <= avg && avg <= max, "{min} {avg} {max}");
    assert!(s["timestamp"].as_f64().unwrap() > 1.7e9);
    assert_eq!(app.performance_stats("bob").await["total_executions"], 1);
}

/// The stored messages of role `tool`.
async fn tool_messages(app: &TestApp, reply: &Value) -> Vec<Value> {
    let id = reply["conversation_id"].as_str().unwrap();
    app.stored_messages("alice", id)
        .await
        .into_iter()
        .filter(|m| m["role"] == "tool")
        .collect()
}

/// The tool results the model was sent in request `index`.
fn results_sent(fake: &FakeLlm, index: usize) -> Vec<Value> {
    fake.requests()[index]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

/// The last message the model was sent in request `index`.
fn last_message_sent(fake: &FakeLlm, index: usize) -> Value {
    fake.requests()[index]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone()
}

/// Runs alice's tools turn on `message` and asserts it answered 200; returns the reply.
async fn tools_turn_ok(app: &TestApp, message: &str) -> api_tests::Reply {
    let reply = app.post(CHAT, "alice", &tools_turn(message)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
}

/// A chat request body that runs the tools workflow on `message`.
fn tools_turn(message: &str) -> Value {
    json!({"message": message, "workflow": "tools"})
}

#[tokio::test]
async fn an_mcp_result_too_large_to_store_is_cut_and_an_empty_one_says_so() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let app = app_with(&fake, Some(json!([{"name": "shop", "url": shop.url}]))).await;
    fake.push(Script::ToolCalls(vec![
        ("catalogue".into(), json!({"bytes": 500_000})),
        ("silent".into(), json!({})),
    ]))
    .push(Script::reply("Here is the catalogue."));
    let reply = tools_turn_ok(&app, "the whole catalogue").await;

    let stored = tool_messages(&app, &reply.body).await;
    let huge = stored[0]["content"].as_str().unwrap();
    assert!(huge.starts_with("catalogue catalogue"), "{}", &huge[..40]);
    assert!(huge.len() < 20_000, "{} bytes stored", huge.len());
    assert!(
        huge.ends_with("[output cut: the first 16384 of 500000 bytes are shown]"),
        "{}",
        &huge[huge.len() - 80..]
    );
    let empty = stored[1]["content"].as_str().unwrap();
    assert_eq!(empty, shared::tools::EMPTY_OUTPUT);
    let sent: Vec<Value> = results_sent(&fake, 1)
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(sent, [json!(huge), json!(empty)]);
}

#[tokio::test]
async fn the_tool_calls_of_one_model_turn_run_at_the_same_time_and_are_each_stored() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let app = app_with(&fake, Some(json!([{"name": "shop", "url": shop.url}]))).await;
    // Each call lasts long enough that, run one after the other, they could not overlap.
    fake.push(Script::ToolCalls(vec![
        ("slow".into(), json!({"ms": 1500})),
        ("slow".into(), json!({"ms": 1000})),
    ]))
    .push(Script::reply("Both done."));
    let reply = tools_turn_ok(&app, "two slow things").await;
    assert_eq!(shop.max_concurrent_calls(), 2);

    let stored = tool_messages(&app, &reply.body).await;
    let summary: Vec<(Value, Value, Value, Value)> = stored
        .iter()
        .map(|m| {
            let meta = &m["metadata"];
            (
                m["content"].clone(),
                meta["tool"].clone(),
                meta["tool_call_id"].clone(),
                meta["is_error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!("done after 1500 ms"),
                json!("slow"),
                json!("call_0"),
                json!(false)
            ),
            (
                json!("done after 1000 ms"),
                json!("slow"),
                json!("call_1"),
                json!(false)
            ),
        ]
    );
    assert_eq!(
        stored[0]["metadata"]["arguments"],
        json!({"ms": 1500}).to_string()
    );
    assert!(stored[0]["metadata"]["duration_ms"].as_u64().unwrap() >= 1500);
}

#[tokio::test]
async fn a_slow_mcp_tool_is_an_error_for_the_model_not_a_hang_or_a_500() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let app = app_with_mcp_limit(&fake, "shop", &shop.url, ("MCP_TIMEOUT_MS", "300")).await;
    fake.push(Script::tool_call("slow", json!({"ms": 60_000})))
        .push(Script::reply("The shop is slow today."));
    let reply = tools_turn_ok(&app, "be slow").await;
    let sent = &results_sent(&fake, 1)[0];
    assert_eq!(
        sent["content"],
        "Error: the tool did not answer within 300 ms"
    );
    let stored = tool_messages(&app, &reply.body).await;
    assert_eq!(stored[0]["metadata"]["is_error"], true);
    assert_eq!(
        reply.body["message"]["metadata"]["tool_calls"][0]["is_error"],
        true
    );
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_is_tried_once_per_while_and_shown_unavailable() {
    let fake = FakeLlm::start().await;
    let stuck = start_stuck_server().await;
    let app = app_with_stuck_server(&fake, &stuck.url).await;
    for message in ["first", "second", "third"] {
        tools_turn_ok(&app, message).await;
        assert_eq!(
            tools_offered(&fake.requests()[0]),
            ["calculator", "get_time"]
        );
    }
    assert_eq!(
        stuck.requests(),
        1,
        "turns after a failed attempt skip the server for a while"
    );

    let status = app.get("/api/v1/chat/mcp/status", "alice").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["status"], "unavailable");
    let server = &status.body["servers"][0];
    assert_eq!(server["status"], "unavailable");
    assert_eq!(server["error"], "no answer within 200 ms");
    assert_eq!(stuck.requests(), 2, "the status check itself is live");
}

#[tokio::test]
async fn a_server_that_connects_but_never_lists_its_tools_is_skipped_and_shown_unavailable() {
    let fake = FakeLlm::start().await;
    let stuck = start_shop_stuck_on_list().await;
    let app = app_with_stuck_server(&fake, &stuck.url).await;
    tools_turn_ok(&app, "first").await;
    assert_eq!(
        tools_offered(&fake.requests()[0]),
        ["calculator", "get_time"]
    );
    tools_turn_ok(&app, "second").await;
    assert_eq!(stuck.messages("initialize"), 1, "the second turn skips it");
    assert_eq!(stuck.messages("tools/list"), 1);

    let status = app.get("/api/v1/chat/mcp/status", "alice").await;
    let server = &status.body["servers"][0];
    assert_eq!(server["status"], "unavailable", "{}", status.body);
    assert_eq!(server["error"], "no tool list within 200 ms");
}

#[tokio::test]
async fn the_mcp_status_is_checked_once_and_then_served_from_the_cache() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let app = app_with(&fake, Some(json!([{"name": "shop", "url": shop.url}]))).await;
    let first = app.get("/api/v1/chat/mcp/status", "alice").await;
    assert_eq!(first.body["status"], "healthy", "{}", first.body);
    assert_eq!(shop.messages("tools/list"), 1);
    let second = app.get("/api/v1/chat/mcp/status", "bob").await;
    assert_eq!(second.body, first.body);
    assert_eq!(
        shop.messages("tools/list"),
        1,
        "the second check asked nobody"
    );
}

#[tokio::test]
async fn without_a_limit_a_turn_makes_at_most_ten_tool_calls() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    for _ in 0..10 {
        fake.push(Script::tool_call(
            "calculator",
            json!({"expression": "1+1"}),
        ));
    }
    fake.push(Script::reply("Done computing."));
    let reply = tools_turn_ok(&app, "keep going").await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 11);
    assert!(!tools_offered(&requests[9]).is_empty());
    assert!(tools_offered(&requests[10]).is_empty());
    assert_eq!(tool_messages(&app, &reply.body).await.len(), 10);
}

#[tokio::test]
async fn a_templates_tool_call_limit_applies_to_its_turns() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    // customer_support allows five tool calls.
    for _ in 0..5 {
        fake.push(Script::tool_call("get_time", json!({})));
    }
    fake.push(Script::reply("It is late."));
    let reply = app
        .post(
            "/api/v1/chat/template/customer_support",
            "alice",
            &json!({"message": "what time is it, five times?"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let requests = fake.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(tools_offered(&requests[4]), ["get_time"]);
    assert!(tools_offered(&requests[5]).is_empty());
    assert_eq!(results_sent(&fake, 5).len(), 5);
}

#[tokio::test]
async fn a_namespaced_mcp_tool_is_called_on_its_server_not_the_built_in() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let app = app_with(&fake, Some(json!([{"name": "shop", "url": shop.url}]))).await;
    fake.push(Script::tool_call(
        "shop__calculator",
        json!({"expression": "6*7"}),
    ))
    .push(Script::reply("The shop says 6*7."));
    let reply = tools_turn_ok(&app, "use the shop's calculator").await;
    assert_eq!(results_sent(&fake, 1)[0]["content"], "shop calculator: 6*7");
    let stored = tool_messages(&app, &reply.body).await;
    assert_eq!(stored[0]["metadata"]["tool"], "shop__calculator");
    assert_eq!(stored[0]["metadata"]["is_error"], false);
}

#[tokio::test]
async fn configured_headers_reach_the_mcp_server_on_every_request() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let app = app_with(
        &fake,
        Some(json!([{"name": "shop", "url": shop.url, "headers": {"X-Shop-Key": "key-123"}}])),
    )
    .await;
    fake.push(Script::tool_call("lookup_order", json!({"order_id": "7"})))
        .push(Script::reply("Shipped."));
    tools_turn_ok(&app, "order 7?").await;
    let keys = shop.header_values("x-shop-key");
    assert!(keys.len() >= 2, "listing and calling: {keys:?}");
    assert!(keys.iter().all(|k| k == "key-123"), "{keys:?}");
}

#[tokio::test]
async fn a_tool_the_model_makes_up_is_counted_under_one_unknown_bucket() {
    let fake = FakeLlm::start().await;
    let app = app_with(&fake, None).await;
    for name in ["made_up_one", "made_up_two"] {
        fake.push(Script::tool_call(name, json!({})))
            .push(Script::reply("Sorry."));
        tools_turn_ok(&app, name).await;
    }
    let stats = app.performance_stats("alice").await;
    let tools = stats["tool_stats"].as_object().unwrap();
    assert_eq!(
        tools.keys().collect::<Vec<_>>(),
        [shared::tools::UNKNOWN_TOOL]
    );
    assert_eq!(tools[shared::tools::UNKNOWN_TOOL]["calls"], 2);
    assert_eq!(tools[shared::tools::UNKNOWN_TOOL]["errors"], 2);
}

/// A second API instance over the same table, as a second Lambda instance would be.
async fn second_instance(app: &TestApp, fake: &FakeLlm, mcp: &Value) -> String {
    let endpoint = app.state.config.dynamodb_endpoint.clone().unwrap();
    let mut vars = api_tests::base_vars(&endpoint);
    vars.insert("LLM_BASE_URL".into(), fake.base_url.clone());
    vars.insert("MCP_SERVERS".into(), mcp.to_string());
    let config = shared::config::Config::from_vars(&vars).unwrap();
    let store = shared::store::Store::connect(&config).await;
    let state = shared::AppState::with_store(config, store).expect("the stack starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let router = shared::api::all_groups(state);
    tokio::spawn(async move { axum::serve(listener, router).await });
    base_url
}

#[tokio::test]
async fn stats_from_two_instances_add_up_with_times_and_tool_durations() {
    let fake = FakeLlm::start().await;
    let shop = start_shop().await;
    let mcp = json!([{"name": "shop", "url": shop.url}]);
    let app = app_with(&fake, Some(mcp.clone())).await;
    let other = second_instance(&app, &fake, &mcp).await;
    // Streamed, this answer takes at least 20 ms (a 10 ms pause before each of two tokens),
    // so no execution below can be faster than that.
    fake.always(Script::slow_reply("Done now.", Duration::from_millis(10)));
    let chat = |base: &str, path: &str, body: Value| {
        let request = app
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(app.token("alice"))
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            response.text().await.unwrap();
            status
        }
    };
    for base in [app.base_url.as_str(), other.as_str()] {
        fake.push(Script::tool_call("slow", json!({"ms": 20})));
        assert_eq!(chat(base, CHAT, tools_turn("slow")).await, StatusCode::OK);
    }
    let streams = (0..6).map(|n| {
        let base = if n % 2 == 0 {
            app.base_url.as_str()
        } else {
            other.as_str()
        };
        chat(
            base,
            "/api/v1/chat/streaming",
            json!({"message": format!("stream {n}")}),
        )
    });
    for status in futures_util::future::join_all(streams).await {
        assert_eq!(status, StatusCode::OK);
    }

    let stats = app.performance_stats("alice").await;
    assert_eq!(stats["total_executions"], 8, "{stats}");
    assert_eq!(stats["workflow_types"], json!({"plain": 6, "tools": 2}));
    let slow = &stats["tool_stats"]["slow"];
    assert_eq!(slow["calls"], 2, "{stats}");
    assert!(slow["avg_duration_ms"].as_u64().unwrap() >= 20, "{stats}");
    let (min, max) = (
        stats["min_execution_time_ms"].as_u64().unwrap(),
        stats["max_execution_time_ms"].as_u64().unwrap(),
    );
    assert!(min >= 20 && max >= min, "{stats}");
}
