//! What a Bedrock provider costs a function: building its client with the providers at init,
//! then the first calls, which pay for whatever the client sets up lazily (credentials, the
//! connection, signing). Against the fake Bedrock endpoint of the tests, which checks each
//! signature, on loopback.

use std::collections::HashMap;
use std::time::Instant;

use api_tests::fake_bedrock::{FakeBedrock, Turn, credential_vars};
use futures_util::StreamExt;
use shared::config::Config;
use shared::llm::{CompletionRequest, PromptMessage, Providers};

use crate::stack;

/// One fresh process's steps, in milliseconds, on one line (run it several times).
pub async fn init_steps() -> anyhow::Result<()> {
    let fake = FakeBedrock::start().await;
    let mut vars: HashMap<String, String> =
        stack::function_vars("http://127.0.0.1:9", "http://127.0.0.1:9/v1");
    vars.insert(
        "LLM_PROVIDERS".into(),
        fake.providers("bedrock", "bench-model"),
    );
    vars.insert("LLM_DEFAULT_PROVIDER".into(), "bedrock".into());
    for (name, value) in credential_vars() {
        vars.insert(name.into(), value.into());
    }
    let config = Config::from_vars(&vars)?;
    shared::install_crypto_provider();
    let http = reqwest::Client::new();
    for _ in 0..3 {
        fake.push(Turn::reply("Hello there."));
    }
    let request = CompletionRequest {
        model: "bench-model".into(),
        messages: vec![PromptMessage::user("Hello")],
        temperature: None,
        max_tokens: Some(50),
        tools: Vec::new(),
    };

    let mut steps = Vec::new();
    let mut lap = Instant::now();
    let mut step = |name: &'static str| {
        steps.push((name, lap.elapsed()));
        lap = Instant::now();
    };
    let providers = Providers::new(&config.llm, &http);
    step("Providers::new with Bedrock");
    let provider = providers.get(None).expect("the bedrock provider");
    provider.client.complete(&request).await?;
    step("first Converse");
    provider.client.complete(&request).await?;
    step("second Converse");
    let mut stream = provider.client.stream(&request).await?;
    while let Some(event) = stream.next().await {
        event?;
    }
    step("first ConverseStream");
    let line: Vec<String> = steps
        .iter()
        .map(|(name, d)| format!("{name} {:.3} ms", d.as_secs_f64() * 1000.0))
        .collect();
    println!("{}", line.join("; "));
    Ok(())
}
