use api_tests::{FakeLlm, Script, TestApp, app_with_model, assert_general_chat_template};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = "/api/v1/chat/chat";

#[tokio::test]
async fn a_first_message_creates_a_conversation_titled_from_it_and_stores_both_sides() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::reply("Paris is the capital."));
    let message = "What is the capital of France? Please answer in one short sentence only.";
    let reply = app.post(CHAT, "alice", &json!({"message": message})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    let answer = &reply.body["message"];
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["content"], "Paris is the capital.");
    assert_eq!(answer["prompt_tokens"], 10);
    assert_eq!(answer["completion_tokens"], 4);
    assert_eq!(answer["total_tokens"], 14);
    assert_eq!(answer["model_used"], "fake-model");
    assert_eq!(answer["provider_used"], "default");
    assert_eq!(answer["finish_reason"], "stop");
    assert_eq!(answer["sequence_number"], 2);
    assert!(answer["response_time_ms"].is_u64());
    // 10 prompt tokens at 1.0 and 4 completion tokens at 2.0 per thousand.
    assert!((answer["cost"].as_f64().unwrap() - 0.018).abs() < 1e-12);

    let conversation = &reply.body["conversation"];
    assert_eq!(reply.body["conversation_id"], conversation["id"]);
    assert_eq!(conversation["title"], format!("{}...", &message[..50]));
    assert_eq!(conversation["message_count"], 2);
    assert_eq!(conversation["total_tokens"], 14);
    assert!(conversation["last_message_at"].is_string());

    let id = conversation["id"].as_str().unwrap();
    let messages = app.stored_messages("alice", id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], message);
    let sent = &fake.requests()[0];
    assert_eq!(sent["model"], "fake-model");
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": message}])
    );
}

#[tokio::test]
async fn a_conversation_remembers_its_history_and_system_prompt() {
    let (app, fake) = app_with_model(&[]).await;
    let created = app
        .post("/api/v1/chat/conversations", "alice", &json!({"title": "t", "system_prompt": "Be terse.", "temperature": 0.3, "max_tokens": 99}))
        .await;
    let id = created.body["id"].as_str().unwrap();
    fake.push(Script::reply("Hi."));
    app.post(
        CHAT,
        "alice",
        &json!({"message": "Hello", "conversation_id": id}),
    )
    .await;
    fake.push(Script::reply("Fine."));
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "How are you?", "conversation_id": id}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["message"]["sequence_number"], 4);

    let sent = &fake.requests()[1];
    assert_eq!(
        sent["messages"],
        json!([
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "How are you?"},
        ])
    );
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["max_tokens"], 99);
}

#[tokio::test]
async fn request_settings_override_the_conversation_and_the_context_limit_drops_old_history() {
    let (app, fake) = app_with_model(&[]).await;
    let id = app.create_conversation("alice", "t").await;
    for text in ["one", "two", "three"] {
        app.post(
            CHAT,
            "alice",
            &json!({"message": text, "conversation_id": id}),
        )
        .await;
    }
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "four", "conversation_id": id, "temperature": 1.5, "max_tokens": 7,
                    "system_prompt_override": "Override.", "context_limit": 40}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(sent["temperature"], 1.5);
    assert_eq!(sent["max_tokens"], 7);
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "Override."})
    );
    assert_eq!(messages.last().unwrap()["content"], "four");
    // 40 tokens hold the system prompt, the new message and only the latest exchanges.
    assert!(messages.len() < 8, "{messages:?}");
    assert!(!messages.iter().any(|m| m["content"] == "one"));
}

#[tokio::test]
async fn another_users_conversation_is_404_and_the_model_is_not_called() {
    let (app, fake) = app_with_model(&[]).await;
    let id = app.create_conversation("alice", "private").await;
    let reply = app
        .post(
            CHAT,
            "mallory",
            &json!({"message": "hi", "conversation_id": id}),
        )
        .await;
    reply.assert_problem(404);
    assert_eq!(fake.calls(), 0);
    assert!(app.stored_messages("alice", &id).await.is_empty());
}

#[tokio::test]
async fn invalid_requests_are_422() {
    let (app, fake) = app_with_model(&[]).await;
    for (body, field) in [
        (json!({"message": "  "}), "message"),
        (json!({"message": "hi", "temperature": 2.1}), "temperature"),
        (json!({"message": "hi", "max_tokens": 9000}), "max_tokens"),
        (json!({"message": "hi", "workflow": "banana"}), "workflow"),
        (json!({"message": "hi", "provider": "nobody"}), "provider"),
    ] {
        let reply = app.post(CHAT, "alice", &body).await;
        reply.assert_problem(422);
        assert_eq!(reply.body["errors"][0]["loc"][1], field, "{body}");
    }
    assert_eq!(fake.calls(), 0);
    assert_eq!(
        app.get("/api/v1/chat/conversations", "alice").await.body["total"],
        0
    );
}

#[tokio::test]
async fn a_named_provider_is_used_with_its_own_model_and_prices() {
    let other = FakeLlm::start().await;
    let providers = json!({"other": {"base_url": other.base_url, "api_key_env": "OTHER_KEY", "default_model": "other-model",
                                      "prompt_price_per_1k": 10.0, "completion_price_per_1k": 0.0}})
    .to_string();
    let (app, fake) =
        app_with_model(&[("LLM_PROVIDERS", &providers), ("OTHER_KEY", "sk-other")]).await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "hi", "provider": "other"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["message"]["provider_used"], "other");
    assert_eq!(reply.body["message"]["model_used"], "other-model");
    assert!((reply.body["message"]["cost"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert_eq!(reply.body["conversation"]["llm_provider"], "other");
    assert_eq!((other.calls(), fake.calls()), (1, 0));

    // The conversation keeps its provider for the next turn.
    let id = reply.body["conversation_id"].as_str().unwrap();
    app.post(
        CHAT,
        "alice",
        &json!({"message": "again", "conversation_id": id}),
    )
    .await;
    assert_eq!((other.calls(), fake.calls()), (2, 0));
}

#[tokio::test]
async fn an_unreachable_model_is_503_naming_it_and_the_message_stays_stored() {
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", "http://127.0.0.1:9/v1")]).await;
    let id = app.create_conversation("alice", "t").await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "anyone there?", "conversation_id": id}),
        )
        .await;
    reply.assert_problem(503);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:9/v1"),
        "{}",
        reply.body
    );
    assert!(reply.header("retry-after").parse::<u64>().is_ok());
    let messages = app.stored_messages("alice", &id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "anyone there?");
}

#[tokio::test]
async fn upstream_failures_are_retried_then_reported_by_whose_fault_they_are() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::Status(500)).push(Script::Status(503));
    let recovered = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
    assert_eq!(
        recovered.status,
        StatusCode::OK,
        "a transient failure is retried"
    );
    assert_eq!(fake.calls(), 3);

    fake.always(Script::Status(500));
    app.post(CHAT, "alice", &json!({"message": "hi"}))
        .await
        .assert_problem(502);
    assert_eq!(fake.calls(), 6, "two retries, then the error");

    fake.always(Script::Status(429));
    let before = fake.calls();
    app.post(CHAT, "alice", &json!({"message": "hi"}))
        .await
        .assert_problem(503);
    assert_eq!(fake.calls(), before + 3, "a rate limit is retried twice");

    fake.always(Script::Refusal(
        400,
        "This model's maximum context length is 8192 tokens.".into(),
    ));
    let before = fake.calls();
    let rejected = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
    rejected.assert_problem(422);
    assert_eq!(
        fake.calls(),
        before + 1,
        "the client's fault is not retried"
    );
}

#[tokio::test]
async fn a_failing_model_is_a_502_naming_its_base_url_and_the_question_stays_stored() {
    let (app, fake) = app_with_model(&[]).await;
    let id = app.create_conversation("alice", "t").await;
    for (script, status) in [(Script::Status(500), 502), (Script::Status(429), 503)] {
        fake.always(script);
        let reply = app
            .post(
                CHAT,
                "alice",
                &json!({"message": format!("still there? {status}"), "conversation_id": id}),
            )
            .await;
        reply.assert_problem(status);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(&fake.base_url), "{detail}");
    }
    let messages = app.stored_messages("alice", &id).await;
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["still there? 502", "still there? 503"]);
}

#[tokio::test]
async fn a_model_or_key_the_provider_does_not_know_is_the_servers_configuration_not_the_clients_fault()
 {
    let (app, fake) = app_with_model(&[]).await;
    for (status, hint) in [(404, "base URL"), (401, "API key"), (403, "API key")] {
        fake.always(Script::Status(status));
        let before = fake.calls();
        let reply = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
        reply.assert_problem(502);
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(detail.contains(&fake.base_url), "{detail}");
        assert!(detail.contains(hint), "{detail}");
        assert_eq!(
            fake.calls(),
            before + 1,
            "a configuration error is not retried"
        );
    }
    // A refusal that does not blame the input (here, a parameter this model does not take).
    fake.always(Script::Refusal(
        400,
        "Unsupported parameter: 'max_tokens'.".into(),
    ));
    app.post(CHAT, "alice", &json!({"message": "hi"}))
        .await
        .assert_problem(502);
    fake.always(Script::Refusal(
        400,
        "Your request was rejected by our content_policy.".into(),
    ));
    app.post(CHAT, "alice", &json!({"message": "hi"}))
        .await
        .assert_problem(422);
}

#[tokio::test]
async fn a_malformed_or_cut_off_answer_is_a_502_and_the_question_stays_stored() {
    let (app, fake) = app_with_model(&[]).await;
    // A body that is not the JSON it claims, and one whose connection breaks midway: both
    // are malformed answers, not an unreachable provider, and neither is retried.
    for broken in [Script::Malformed { after: 2 }, Script::Drop { after: 2 }] {
        let id = app.create_conversation("alice", "t").await;
        fake.push(broken.clone());
        let before = fake.calls();
        let reply = app
            .post(
                CHAT,
                "alice",
                &json!({"message": "hm?", "conversation_id": id}),
            )
            .await;
        reply.assert_problem(502);
        assert!(reply.headers.get("retry-after").is_none(), "{broken:?}");
        let detail = reply.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("malformed") && detail.contains(&fake.base_url),
            "{detail}"
        );
        assert_eq!(fake.calls(), before + 1, "{broken:?} is not retried");
        let messages = app.stored_messages("alice", &id).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0]["content"], "hm?");
    }
}

#[tokio::test]
async fn a_model_that_hangs_is_a_504_pointing_to_streaming_and_the_message_stays_stored() {
    let (app, fake) = app_with_model(&[("LLM_TIMEOUT_SECS", "1")]).await;
    fake.always(Script::Hang);
    let id = app.create_conversation("alice", "t").await;
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "slow?", "conversation_id": id}),
        )
        .await;
    reply.assert_problem(504);
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("/streaming")
    );
    assert_eq!(app.stored_messages("alice", &id).await.len(), 1);
}

#[tokio::test]
async fn usage_is_estimated_when_the_provider_reports_none() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::reply("An answer of several words.").without_usage());
    let reply = app.post(CHAT, "alice", &json!({"message": "hi"})).await;
    let message = &reply.body["message"];
    assert!(message["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(message["completion_tokens"].as_u64().unwrap() > 0);
    assert!(message["cost"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn the_templates_are_listed_with_their_defaults() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/v1/chat/templates", "alice").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["total_count"], 6);
    let templates = reply.body["templates"].as_object().unwrap();
    for (name, workflow) in [
        ("general_chat", "plain"),
        ("document_qa", "rag"),
        ("code_assistant", "tools"),
        ("customer_support", "full"),
        ("research_assistant", "rag"),
        ("data_analyst", "tools"),
    ] {
        let t = &templates[name];
        assert_eq!(t["name"], name);
        assert_eq!(t["workflow_type"], workflow);
        assert!(t["description"].as_str().unwrap().len() > 10);
        assert!(t["required_tools"].is_array() && t["required_retrievers"].is_array());
        assert!(t["default_params"]["system_message"].is_string());
        assert!(t["default_params"]["temperature"].is_number());
    }
}

#[tokio::test]
async fn a_template_supplies_the_system_prompt_and_defaults_the_request_can_override() {
    let (app, fake) = app_with_model(&[]).await;
    let reply = app
        .post(
            "/api/v1/chat/template/general_chat",
            "alice",
            &json!({"message": "hi"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_general_chat_template(&fake.requests().pop().unwrap());

    app.post(
        CHAT,
        "alice",
        &json!({"message": "hi", "workflow_template": "general_chat", "temperature": 0.1}),
    )
    .await;
    assert_eq!(fake.requests().pop().unwrap()["temperature"], 0.1);

    app.post(
        "/api/v1/chat/template/nonexistent",
        "alice",
        &json!({"message": "hi"}),
    )
    .await
    .assert_problem(404);
    app.post(
        CHAT,
        "alice",
        &json!({"message": "hi", "workflow_template": "nonexistent"}),
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn a_system_prompt_override_beats_the_conversations_which_beats_the_templates() {
    let (app, fake) = app_with_model(&[]).await;
    let created = app
        .post(
            "/api/v1/chat/conversations",
            "alice",
            &json!({"title": "t", "system_prompt": "Be terse.", "temperature": 0.3}),
        )
        .await;
    let id = created.body["id"].as_str().unwrap();
    let turn = |extra: Value| {
        let mut body =
            json!({"message": "hi", "conversation_id": id, "workflow_template": "general_chat"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let reply = app.post(CHAT, "alice", &turn(json!({}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(
        sent["temperature"], 0.3,
        "the conversation's, not the template's 0.7"
    );

    app.post(
        CHAT,
        "alice",
        &turn(json!({"system_prompt_override": "Override."})),
    )
    .await;
    let sent = fake.requests().pop().unwrap();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "Override."})
    );
}

#[tokio::test]
async fn max_tokens_comes_from_the_request_else_the_conversation_else_the_template() {
    let (app, fake) = app_with_model(&[]).await;
    let template_limit = app.get("/api/v1/chat/templates", "alice").await.body["templates"]
        ["general_chat"]["default_params"]["max_tokens"]
        .clone();
    assert!(template_limit.is_u64(), "{template_limit}");
    let plain = app.create_conversation("alice", "plain").await;
    let limited = app
        .post(
            "/api/v1/chat/conversations",
            "alice",
            &json!({"title": "limited", "max_tokens": 99}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (conversation, request, expected) in [
        (&plain, None, template_limit.clone()),
        (&limited, None, json!(99)),
        (&limited, Some(7), json!(7)),
    ] {
        let mut body = json!({"message": "hi", "conversation_id": conversation, "workflow_template": "general_chat"});
        if let Some(limit) = request {
            body["max_tokens"] = json!(limit);
        }
        let reply = app.post(CHAT, "alice", &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(
            fake.requests().pop().unwrap()["max_tokens"],
            expected,
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_conversations_default_context_window_drops_the_oldest_history() {
    let (app, fake) = app_with_model(&[]).await;
    let id = app.create_conversation("alice", "long").await;
    // About 1,500 tokens each: the default window of 4,096 holds two of them, not three.
    for letter in ["A", "B", "C"] {
        let reply = app
            .post(
                CHAT,
                "alice",
                &json!({"message": letter.repeat(6000), "conversation_id": id}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    app.post(
        CHAT,
        "alice",
        &json!({"message": "now", "conversation_id": id}),
    )
    .await;
    let sent = fake.requests().pop().unwrap();
    let contents: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        !contents.contains(&"A".repeat(6000).as_str()),
        "the oldest is dropped"
    );
    assert!(contents.contains(&"B".repeat(6000).as_str()));
    assert!(contents.contains(&"C".repeat(6000).as_str()));
    assert_eq!(contents.last(), Some(&"now"));
}

#[tokio::test]
async fn a_conversations_provider_and_model_are_chosen_at_creation_or_update_and_used_by_its_turns()
{
    let other = FakeLlm::start().await;
    let providers =
        json!({"other": {"base_url": other.base_url, "default_model": "other-default"}})
            .to_string();
    let (app, fake) = app_with_model(&[("LLM_PROVIDERS", &providers)]).await;
    let created = app
        .post(
            "/api/v1/chat/conversations",
            "alice",
            &json!({"title": "t", "llm_model": "special-model"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["llm_model"], "special-model");
    let id = created.body["id"].as_str().unwrap();
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "hi", "conversation_id": id}),
        )
        .await;
    assert_eq!(
        reply.body["message"]["model_used"], "special-model",
        "{}",
        reply.body
    );
    assert_eq!(fake.requests().pop().unwrap()["model"], "special-model");

    // A request naming another provider gets that provider's own model.
    app.post(
        CHAT,
        "alice",
        &json!({"message": "hi", "conversation_id": id, "provider": "other"}),
    )
    .await;
    assert_eq!(other.requests().pop().unwrap()["model"], "other-default");

    let updated = app
        .put(
            &format!("/api/v1/chat/conversations/{id}"),
            "alice",
            &json!({"llm_provider": "other", "llm_model": "other-special"}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["llm_provider"], "other");
    app.post(
        CHAT,
        "alice",
        &json!({"message": "hi", "conversation_id": id}),
    )
    .await;
    assert_eq!(other.requests().pop().unwrap()["model"], "other-special");

    // Switching provider without naming a model falls back to that provider's default.
    let switched = app
        .put(
            &format!("/api/v1/chat/conversations/{id}"),
            "alice",
            &json!({"llm_provider": "default"}),
        )
        .await;
    assert_eq!(switched.body["llm_model"], Value::Null, "{}", switched.body);
    app.post(
        CHAT,
        "alice",
        &json!({"message": "hi", "conversation_id": id}),
    )
    .await;
    assert_eq!(fake.requests().pop().unwrap()["model"], "fake-model");

    for reply in [
        app.post(
            "/api/v1/chat/conversations",
            "alice",
            &json!({"title": "t", "llm_provider": "nobody"}),
        )
        .await,
        app.put(
            &format!("/api/v1/chat/conversations/{id}"),
            "alice",
            &json!({"llm_provider": "nobody"}),
        )
        .await,
    ] {
        reply.assert_problem(422);
        assert_eq!(reply.body["errors"][0]["loc"][1], "llm_provider");
    }
}

#[tokio::test]
async fn a_slow_tool_chain_ends_with_a_504_before_the_function_timeout_and_keeps_what_was_said() {
    let (app, fake) = app_with_model(&[("CHAT_TURN_TIMEOUT_SECS", "1")]).await;
    let id = app.create_conversation("alice", "t").await;
    fake.push(Script::tool_call(
        "calculator",
        json!({"expression": "6*7"}),
    ))
    .push(Script::Hang);
    let started = std::time::Instant::now();
    let reply = app
        .post(
            CHAT,
            "alice",
            &json!({"message": "compute", "conversation_id": id, "workflow": "tools"}),
        )
        .await;
    reply.assert_problem(504);
    // The model's own limit (20 s) would have come far later.
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("/streaming")
    );
    let messages = app.stored_messages("alice", &id).await;
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "tool"]);
    assert_eq!(messages[1]["content"], "42");

    let stats = app.performance_stats("alice").await;
    assert_eq!(stats["error_counts"], json!({"timeout": 1}));
}
