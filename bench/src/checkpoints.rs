//! What checkpointing a streamed answer costs: one `/streaming` turn of `tokens` tokens per
//! token rate, through the streaming function's router on the embedded DynamoDB, counting the
//! writes it makes while it streams and the write capacity they take. The counts depend on
//! time, not on the build's speed, so a dev build measures them as well as a release one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_tests::{FakeLlm, Script};
use aws_sdk_dynamodb::Client;
use futures_util::StreamExt;
use serde_json::json;
use shared::AppState;
use shared::api::Group;
use shared::config::Config;
use shared::local::EmbeddedDynamoDb;
use shared::store::Store;

use crate::counting::{Observe, Observer};
use crate::stack;

/// DynamoDB on-demand: US$ per million write request units (us-east-1).
const USD_PER_MILLION_WRU: f64 = 0.625;

pub struct Options {
    pub tokens: usize,
    /// Tokens per second of each turn.
    pub rates: Vec<u32>,
}

/// What a DynamoDB request was, for this count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// A conditional write of the answer so far.
    Checkpoint,
    /// A read of the stop flag alone.
    FlagRead,
    /// Anything else the turn does (the rate-limit count, the question, the settled answer,
    /// the statistics).
    Other,
}

/// Every DynamoDB request sent: what it was and the size of its body.
#[derive(Debug, Clone, Default)]
struct Requests(Arc<Mutex<Vec<(Sent, usize)>>>);

impl Observe for Requests {
    fn observe(&self, operation: &str, body: &[u8]) {
        let flag = String::from_utf8_lossy(body).contains("stop_requested");
        let sent = match operation {
            "UpdateItem" if flag && String::from_utf8_lossy(body).contains(":content") => {
                Sent::Checkpoint
            }
            "GetItem" if flag => Sent::FlagRead,
            _ => Sent::Other,
        };
        self.0.lock().unwrap().push((sent, body.len()));
    }
}

impl Requests {
    fn take(&self) -> Vec<(Sent, usize)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    stack::init_tracing();
    shared::install_crypto_provider();
    let llm = FakeLlm::start().await;
    let dynamodb = EmbeddedDynamoDb::start(None).await?;
    let config = Config::from_vars(&stack::function_vars(dynamodb.endpoint(), &llm.base_url))?;
    let requests = Requests::default();
    let reference = Store::connect(&config).await;
    let client = Client::from_conf(
        reference
            .client()
            .config()
            .to_builder()
            .interceptor(Observer(requests.clone()))
            .build(),
    );
    let store = Store::new(client, config.table_name.as_str());
    store.ensure_table().await?;
    let state = AppState::with_store(config, store)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, Group::ChatStream.service(state)).await });
    let http = reqwest::Client::new();
    let token = stack::token("checkpointer");

    println!("{}", crate::machine::describe());
    println!(
        "checkpoint writes of one /streaming turn of {} tokens (\"wN \", {} characters), by token \
         rate; write units estimated as ceil(request body / 1 KB), a little above the item's size",
        opts.tokens,
        (0..opts.tokens)
            .map(|i| format!("w{i} ").len())
            .sum::<usize>()
    );
    println!(
        "{:>8} {:>9} {:>12} {:>10} {:>11} {:>14} {:>16}",
        "tok/s",
        "seconds",
        "checkpoints",
        "flag reads",
        "other ops",
        "checkpoint WRU",
        "US$ / 1000 turns"
    );
    for rate in &opts.rates {
        llm.always(Script::paced(opts.tokens, Duration::from_secs(1) / *rate));
        requests.take();
        let started = Instant::now();
        let response = http
            .post(format!("{api}/api/v1/chat/streaming"))
            .bearer_auth(&token)
            .json(&json!({"message": "A long answer, please."}))
            .send()
            .await?;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            chunk?;
        }
        let seconds = started.elapsed().as_secs_f64();
        let sent = requests.take();
        let checkpoints: Vec<usize> = sent
            .iter()
            .filter(|(kind, _)| *kind == Sent::Checkpoint)
            .map(|(_, bytes)| *bytes)
            .collect();
        let flag_reads = sent.iter().filter(|(k, _)| *k == Sent::FlagRead).count();
        let others = sent.len() - checkpoints.len() - flag_reads;
        let units: usize = checkpoints.iter().map(|bytes| bytes.div_ceil(1024)).sum();
        let cost = units as f64 * 1000.0 * USD_PER_MILLION_WRU / 1e6;
        println!(
            "{rate:>8} {seconds:>9.1} {:>12} {flag_reads:>10} {others:>11} {units:>14} {cost:>16.4}",
            checkpoints.len()
        );
    }
    Ok(())
}
