use api_tests::mcp_server::start_shop_server;
use api_tests::{FakeLlm, Script, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const CHAT: &str = "/api/v1/chat/chat";

async fn app_with(fake: &FakeLlm, mcp: Option<Value>) -> TestApp {
    let mcp = mcp.map(|m| m.to_string());
    let mut vars = vec![("LLM_BASE_URL", fake.base_url.as_str())];
    if let Some(mcp) = &mcp {
        vars.push(("MCP_SERVERS", mcp.as_str()));
    }
    TestApp::spawn_with(&vars).await
}

async fn stored(app: &TestApp, conversation_id: &str) -> Vec<Value> {
    app.get(
        &format!("/api/v1/chat/conversations/{conversation_id}/messages"),
        "alice",
    )
    .await
    .body
    .as_array()
    .unwrap()
    .clone()
}

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
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "What is the square root of 144?", "workflow": "tools"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
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
    let roles: Vec<Value> = stored(&app, id)
        .await
        .iter()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles, ["user", "tool", "assistant"]);
    let tool = &stored(&app, id).await[1];
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
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "two things", "workflow": "tools"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let results: Vec<Value> = fake.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect();
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
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "1/0?", "workflow": "tools"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let last = fake.requests()[2]["messages"].as_array().unwrap().clone();
    let errors: Vec<&str> = last
        .iter()
        .filter(|m| m["role"] == "tool")
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
        stored(&app, id)
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
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "Where is order 42?", "workflow": "tools"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
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
    let result = fake.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(result["content"], "Order 42: shipped on 2026-11-20");

    fake.push(Script::tool_call("broken", json!({})))
        .push(Script::reply("Sorry."));
    let failed = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "break it", "workflow": "tools"}),
        )
        .await;
    assert_eq!(failed.status, StatusCode::OK);
    let result = fake.requests()[3]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
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
    assert_eq!(shop["tools_count"], 3);
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
        .filter_map(|e| e.strip_prefix("data: "))
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
    let empty = app.get("/api/v1/chat/performance/stats", "alice").await;
    assert_eq!(empty.body["total_executions"], 0);

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
    fake.push(Script::Status(400));
    app.post(CHAT, "alice", &json!({"message": "refused"}))
        .await
        .assert_problem(422);
    app.post(CHAT, "bob", &json!({"message": "someone else"}))
        .await;

    let stats = app.get("/api/v1/chat/performance/stats", "alice").await;
    assert_eq!(stats.status, StatusCode::OK);
    let s = &stats.body;
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
    assert_eq!(
        app.get("/api/v1/chat/performance/stats", "bob").await.body["total_executions"],
        1
    );
}
