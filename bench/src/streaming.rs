//! Streaming overhead: time to first token and per-token lag through `/streaming` (the
//! chat-stream function's router, served over loopback HTTP), against the same fake upstream
//! read directly with the same HTTP client. Both clocks are this process's `Instant`, so the
//! fake's send times and the client's arrival times compare directly.

use std::time::{Duration, Instant};

use api_tests::{FakeLlm, Script};
use axum::serve::ListenerExt;
use futures_util::StreamExt;
use serde_json::json;
use shared::api::Group;

use crate::stack::{self, Stack};
use crate::stats::{Sample, ms, ms_diff};

pub struct Options {
    pub runs: usize,
    pub tokens: usize,
    pub gap: Duration,
}

/// What one streamed request looked like from the client.
struct Observed {
    /// From sending the request to the first token's arrival.
    first_token: Duration,
    /// Each token's arrival, in order.
    arrivals: Vec<Instant>,
}

/// Tokens that arrived less than a quarter of the sending gap after the token before them:
/// held back somewhere and released together.
fn held_together(arrivals: &[Instant], gap: Duration) -> usize {
    arrivals
        .windows(2)
        .filter(|w| w[1] - w[0] < gap / 4)
        .count()
}

/// Reads a Server-Sent Events response, noting when each event that `is_token` picks arrived.
async fn observe(
    request: reqwest::RequestBuilder,
    is_token: impl Fn(&str) -> bool,
) -> anyhow::Result<Observed> {
    let sent = Instant::now();
    let response = request.send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = body.next().await {
        let at = Instant::now();
        buffer.push_str(std::str::from_utf8(&chunk?)?);
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if is_token(&event) {
                arrivals.push(at);
            }
        }
    }
    let first = *arrivals
        .first()
        .ok_or_else(|| anyhow::anyhow!("no token arrived"))?;
    Ok(Observed {
        first_token: first - sent,
        arrivals,
    })
}

/// The fake's own stream, asked for with the bench's client: the reference a token's lag is
/// compared with (one loopback hop, no function in between).
fn upstream_request(client: &reqwest::Client, base_url: &str) -> reqwest::RequestBuilder {
    client
        .post(format!("{base_url}/chat/completions"))
        .json(&json!({"model": "bench-model", "stream": true,
                      "messages": [{"role": "user", "content": "Hello, how are you today?"}]}))
}

fn is_upstream_token(event: &str) -> bool {
    event.contains("\"content\":\"w")
}

/// One line of a table of (p50, p99, max) in milliseconds.
fn row(label: &str, sample: &Sample) {
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        label,
        ms(sample.p50()),
        ms(sample.p99()),
        ms(sample.max())
    );
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    stack::init_tracing();
    let llm = FakeLlm::start().await;
    llm.always(Script::paced(opts.tokens, opts.gap));
    let stack = Stack::start(&llm.base_url).await?;
    println!("{}", crate::machine::describe());
    println!(
        "streaming overhead: {} runs of {} tokens {:?} apart (the first at once), direct and through \
         POST /api/v1/chat/streaming (new conversation each run) alternately; both over loopback HTTP \
         with one reqwest client",
        opts.runs, opts.tokens, opts.gap
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    let router = Group::ChatStream.service(stack.state.clone());
    // Nagle's algorithm would hold a token behind the previous one's ACK; a Function URL's
    // front end is not measured here, only the function.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    shared::install_crypto_provider();
    let client = reqwest::Client::new();
    let token = stack::token("streamer");
    let direct = || upstream_request(&client, &llm.base_url);
    let through = || {
        client
            .post(format!("{api}/api/v1/chat/streaming"))
            .bearer_auth(&token)
            .json(&json!({"message": "Hello, how are you today?"}))
    };
    let is_api_token = |e: &str| e.contains("\"type\":\"token\"");

    let mut first_direct = Vec::new();
    let mut first_api = Vec::new();
    let mut lag_direct = Vec::new();
    let mut lag_api = Vec::new();
    let mut batched = (0, 0);
    let warmup = 10;
    stack.round_trips.take();
    for run in 0..opts.runs + warmup {
        let order = [run % 2 == 0, run % 2 != 0];
        for api_first in order {
            let (observed, sent) = if api_first {
                (observe(through(), is_api_token).await?, llm.sent())
            } else {
                (observe(direct(), is_upstream_token).await?, llm.sent())
            };
            anyhow::ensure!(
                observed.arrivals.len() == opts.tokens && sent.len() == opts.tokens,
                "expected {} tokens, saw {} (sent {})",
                opts.tokens,
                observed.arrivals.len(),
                sent.len()
            );
            if run < warmup {
                continue;
            }
            let lags = observed.arrivals.iter().zip(&sent).map(|(a, s)| *a - *s);
            if api_first {
                first_api.push(observed.first_token);
                lag_api.extend(lags);
                batched.1 += held_together(&observed.arrivals, opts.gap);
            } else {
                first_direct.push(observed.first_token);
                lag_direct.extend(lags);
                batched.0 += held_together(&observed.arrivals, opts.gap);
            }
        }
    }
    let trips = stack.round_trips.take();
    let (first_direct, first_api) = (Sample::new(first_direct), Sample::new(first_api));
    let (lag_direct, lag_api) = (Sample::new(lag_direct), Sample::new(lag_api));
    println!();
    println!("{:<52} {:>9} {:>9} {:>9}", "(ms)", "p50", "p99", "max");
    row("time to first token, upstream directly", &first_direct);
    row("time to first token, through /streaming", &first_api);
    row("token lag (fake sent -> client), directly", &lag_direct);
    row("token lag (fake sent -> client), /streaming", &lag_api);
    println!();
    println!(
        "added to the first token (p50 through - p50 direct): {} ms (target <= 3 ms; includes the \
         rate-limit count and storing the new conversation with the user's message)",
        ms_diff(first_api.p50(), first_direct.p50())
    );
    println!(
        "added per token (p50 lag through - p50 lag direct): {} ms (target <= 0.1 ms); p99: {} ms",
        ms_diff(lag_api.p50(), lag_direct.p50()),
        ms_diff(lag_api.p99(), lag_direct.p99())
    );
    println!(
        "tokens that arrived within a quarter of the sending gap after the one before (held back and \
         released together): direct {}, through /streaming {} (of {} each)",
        batched.0,
        batched.1,
        opts.runs * opts.tokens
    );
    println!(
        "DynamoDB round trips per /streaming request: {}",
        crate::counting::describe(&trips, (opts.runs + warmup) as u64)
    );
    Ok(())
}

/// The same measurement through the chat-stream binary under the emulated Runtime API: each
/// token's lag from the fake's send to its arrival at the Runtime API (the function streams
/// its response there with `lambda_runtime`'s HTTP client). The fake's stream read directly,
/// interleaved, is the reference: a token through the function crosses loopback twice.
pub async fn run_lambda(opts: Options, bin_dir: &std::path::Path) -> anyhow::Result<()> {
    use crate::events::http_event;
    use api_tests::lambda_emulator::LambdaEmulator;

    stack::init_tracing();
    let llm = FakeLlm::start().await;
    llm.always(Script::paced(opts.tokens, opts.gap));
    let stack = Stack::start(&llm.base_url).await?;
    println!("{}", crate::machine::describe());
    let binary = bin_dir.join("chat-stream");
    println!(
        "streaming through the Lambda runtime: {} invocations of {} (one warm process) under the \
         emulated Runtime API, {} tokens {:?} apart{}",
        opts.runs,
        binary.display(),
        opts.tokens,
        opts.gap,
        stack::preload()
            .first()
            .map(|(_, p)| format!(", with LD_PRELOAD={p}"))
            .unwrap_or_default()
    );
    let emulator = LambdaEmulator::start().await?;
    let mut env: Vec<(String, String)> =
        stack::function_vars(stack.dynamodb.endpoint(), &llm.base_url)
            .into_iter()
            .collect();
    env.extend(emulator.environment("chat-stream"));
    env.extend(stack::preload());
    let mut child = std::process::Command::new(&binary)
        .env_clear()
        .envs(env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let token = stack::token("lambda-streamer");
    let event = http_event(
        "POST",
        "/api/v1/chat/streaming",
        "",
        &token,
        Some(&json!({"message": "Hello, how are you today?"})),
    );
    shared::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut first_token = Vec::new();
    let mut response_started = Vec::new();
    let mut lags = Vec::new();
    let mut direct_lags = Vec::new();
    let mut batched = 0usize;
    let mut direct_batched = 0usize;
    let warmup = 10;
    let outcome = async {
        for run in 0..opts.runs + warmup {
            // The reference, interleaved: the same tokens read straight from the fake.
            let direct =
                observe(upstream_request(&client, &llm.base_url), is_upstream_token).await?;
            if run >= warmup {
                let sent = llm.sent();
                direct_lags.extend(direct.arrivals.iter().zip(&sent).map(|(a, s)| *a - *s));
                direct_batched += held_together(&direct.arrivals, opts.gap);
            }
            let queued = Instant::now();
            let received = emulator
                .invoke(event.clone(), Duration::from_secs(30))
                .await?;
            let sent = llm.sent();
            let mut arrivals = Vec::new();
            let mut text = String::new();
            for chunk in &received.frames {
                text.push_str(&String::from_utf8_lossy(&chunk.bytes));
                while let Some(end) = text.find("\n\n") {
                    let event: String = text.drain(..end + 2).collect();
                    if event.contains("\"type\":\"token\"") {
                        arrivals.push(chunk.at);
                    }
                }
            }
            if run >= warmup {
                batched += held_together(&arrivals, opts.gap);
            }
            anyhow::ensure!(
                arrivals.len() == opts.tokens && sent.len() == opts.tokens,
                "expected {} tokens, saw {} (sent {})",
                opts.tokens,
                arrivals.len(),
                sent.len()
            );
            if run >= warmup {
                first_token.push(arrivals[0] - queued);
                response_started.push(received.started - queued);
                lags.extend(arrivals.iter().zip(&sent).map(|(a, s)| *a - *s));
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    outcome?;
    let (first_token, lags) = (Sample::new(first_token), Sample::new(lags));
    let direct_lags = Sample::new(direct_lags);
    let response_started = Sample::new(response_started);
    println!();
    println!("{:<52} {:>9} {:>9} {:>9}", "(ms)", "p50", "p99", "max");
    row("event queued -> response POST begins", &response_started);
    row(
        "event queued -> first token at the Runtime API",
        &first_token,
    );
    row("token lag (fake sent -> Runtime API)", &lags);
    row(
        "token lag (fake sent -> bench client), directly",
        &direct_lags,
    );
    println!(
        "a token crosses loopback twice through the function (fake -> function -> Runtime API) \
         and once directly: the function's own share is about {} ms p50 (lag - 2 x direct lag)",
        ms_diff(lags.p50(), direct_lags.p50() + direct_lags.p50())
    );
    println!(
        "tokens that reached the Runtime API within a quarter of the sending gap after the one \
         before (held back and released together): {batched} of {}; at the bench client reading \
         the fake directly: {direct_batched}",
        opts.runs * opts.tokens
    );
    Ok(())
}
