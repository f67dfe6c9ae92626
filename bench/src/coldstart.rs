//! Cold start and memory of each function binary under an emulated Lambda Runtime API, with
//! DynamoDB embedded (dynoxide in this process) and the zero-delay fake model.
//!
//! A cold start is timed from just before the process is spawned (the emulator, the database
//! and the queued event are ready first, so their start is excluded) to the first response's
//! last byte at the Runtime API; it splits into init (spawn to the runtime's first poll for
//! work) and the first invocation (first poll to response). After the last cold start the same
//! process serves `load` more invocations back to back, as a warm Lambda instance does, and its
//! peak RSS (VmHWM) is read before it is stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api_tests::lambda_emulator::{LambdaEmulator, Received};
use api_tests::moto::MotoServer;
use api_tests::{FakeLlm, Script};
use serde_json::{Value, json};
use shared::domain::{Conversation, NewConversation};

use crate::events::{buffered_status, http_event, streamed_status};
use crate::stack::{self, Stack};
use crate::stats::{Sample, ms};

pub struct Options {
    pub bin_dir: PathBuf,
    pub functions: Vec<String>,
    pub runs: usize,
    pub load: usize,
    pub secrets: Secrets,
}

/// Where the functions find their JWT secret.
pub enum Secrets {
    /// `JWT_SECRET`, a plain variable.
    Variables,
    /// A Secrets Manager secret named by `APP_SECRET_ARN`, read at cold start as a deployment
    /// does, from moto server on loopback (started here).
    Moto,
}

const USER: &str = "bench-user";
const LIMIT: Duration = Duration::from_secs(30);

/// What each function is asked, cold and then under load.
struct Workload {
    streaming: bool,
    cold: Value,
    /// The warm requests, taken in turn.
    warm: Vec<Value>,
}

fn upload_event(token: &str, i: usize) -> Value {
    let boundary = "bench-boundary";
    let text: String = (0..400)
        .map(|n| {
            format!(
                "Sentence {n} of document {i} says something about topic {}. ",
                n % 7
            )
        })
        .collect();
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nDocument {i}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"doc.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
    );
    let mut event = http_event("POST", "/api/v1/documents/upload", "", token, None);
    event["headers"]["content-type"] = json!(format!("multipart/form-data; boundary={boundary}"));
    event["body"] = json!(body);
    event
}

fn workload(function: &str, token: &str, conversation_id: &str) -> Workload {
    let chat = json!({"message": "Hello, how are you today?"});
    let in_conversation = json!({"message": "And tomorrow?", "conversation_id": conversation_id});
    let get = |path: &str, query: &str| http_event("GET", path, query, token, None);
    let post = |path: &str, body: &Value| http_event("POST", path, "", token, Some(body));
    let conversation = format!("/api/v1/chat/conversations/{conversation_id}");
    match function {
        "conversations" => Workload {
            streaming: false,
            cold: get("/api/v1/chat/conversations", "limit=20"),
            warm: vec![
                post("/api/v1/chat/conversations", &json!({"title": "Warm"})),
                get("/api/v1/chat/conversations", "limit=20"),
                get(&conversation, ""),
            ],
        },
        "chat" => Workload {
            streaming: false,
            cold: post("/api/v1/chat/chat", &chat),
            warm: vec![
                post("/api/v1/chat/chat", &chat),
                post("/api/v1/chat/chat", &in_conversation),
            ],
        },
        "chat-stream" => Workload {
            streaming: true,
            cold: post("/api/v1/chat/streaming", &chat),
            warm: vec![
                post("/api/v1/chat/streaming", &chat),
                post("/api/v1/chat/streaming", &in_conversation),
            ],
        },
        "catalog" => Workload {
            streaming: false,
            cold: get("/api/v1/chat/templates", ""),
            warm: vec![get("/api/v1/chat/templates", ""), get("/openapi.json", "")],
        },
        "documents" => Workload {
            streaming: false,
            cold: get("/api/v1/documents", ""),
            warm: (0..4)
                .map(|i| {
                    if i % 2 == 0 {
                        upload_event(token, i)
                    } else {
                        get("/api/v1/documents", "")
                    }
                })
                .collect(),
        },
        "sessions" => Workload {
            streaming: false,
            cold: get("/api/v1/chat", ""),
            warm: vec![get("/api/v1/chat", "")],
        },
        // A numeric id no character has: a 404 after the counter's lookup in DynamoDB.
        "characters" => Workload {
            streaming: false,
            cold: get("/api/v1/character/summary/4294967295", ""),
            warm: vec![get("/api/v1/character/summary/4294967295", "")],
        },
        // A function this benchmark does not know yet: any request is served (a 404 too).
        _ => Workload {
            streaming: false,
            cold: get("/openapi.json", ""),
            warm: vec![get("/openapi.json", "")],
        },
    }
}

fn status(workload: &Workload, received: &Received) -> u64 {
    let body = received.body();
    let status = if workload.streaming {
        streamed_status(&body)
    } else {
        buffered_status(&body)
    };
    status.unwrap_or(0)
}

fn spawn(binary: &Path, vars: &[(String, String)]) -> anyhow::Result<Child> {
    Command::new(binary)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e}", binary.display()))
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

struct ColdStart {
    init: Duration,
    first_byte: Duration,
    complete: Duration,
    status: u64,
}

/// Spawns the function with its first event already queued at a fresh emulator, and times it
/// to the response's last byte. The process is returned alive, ready for more invocations.
async fn cold_start(
    binary: &Path,
    function: &str,
    workload: &Workload,
    vars: &[(String, String)],
) -> anyhow::Result<(ColdStart, LambdaEmulator, Child)> {
    let emulator = LambdaEmulator::start().await?;
    let mut env = vars.to_vec();
    env.extend(emulator.environment(function));
    let pending = emulator.queue(workload.cold.clone()).await?;
    let spawned = Instant::now();
    let child = spawn(binary, &env)?;
    let received = match pending.collect(LIMIT).await {
        Ok(r) => r,
        Err(e) => {
            stop(child);
            return Err(e);
        }
    };
    let first_poll = emulator.first_poll().unwrap_or(received.started);
    let first_byte = received.frames.first().map_or(received.started, |c| c.at);
    let cold = ColdStart {
        init: first_poll - spawned,
        first_byte: first_byte - spawned,
        complete: received.finished - spawned,
        status: status(workload, &received),
    };
    Ok((cold, emulator, child))
}

/// `load` invocations back to back through a warm instance: their latencies and statuses.
async fn warm_load(
    emulator: &LambdaEmulator,
    workload: &Workload,
    load: usize,
) -> anyhow::Result<(Sample, BTreeMap<u64, u32>)> {
    let mut warm = Vec::with_capacity(load);
    let mut statuses = BTreeMap::new();
    for i in 0..load {
        let event = workload.warm[i % workload.warm.len()].clone();
        let queued = Instant::now();
        let received = emulator
            .invoke(event, LIMIT)
            .await
            .map_err(|e| e.context(format!("invocation {i}")))?;
        warm.push(received.finished - queued);
        *statuses.entry(status(workload, &received)).or_insert(0) += 1;
    }
    Ok((Sample::new(warm), statuses))
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    stack::init_tracing();
    let llm = FakeLlm::start().await;
    llm.always(Script::paced(8, Duration::ZERO));
    let stack = Stack::start(&llm.base_url).await?;
    println!("{}", crate::machine::describe());
    println!(
        "cold start: {} spawns per function of {}/<function> under an emulated Runtime API, \
         dynoxide in the benchmark process, zero-delay fake model (8 tokens); then {} warm \
         invocations in the last process and its peak RSS",
        opts.runs,
        opts.bin_dir.display(),
        opts.load
    );
    // The conversations function lists 20; chat turns can continue this one.
    let mut conversation_id = String::new();
    for i in 0..20 {
        let conversation = Conversation::create(
            USER,
            NewConversation {
                title: format!("Seeded {i}"),
                ..Default::default()
            },
        );
        stack.state.store.create_conversation(&conversation).await?;
        conversation_id = conversation.id;
    }
    let token = stack::token(USER);
    let mut vars: Vec<(String, String)> =
        stack::function_vars(stack.dynamodb.endpoint(), &llm.base_url)
            .into_iter()
            .collect();
    vars.push(("PATH".into(), "/usr/bin:/bin".into()));
    vars.extend(stack::preload());
    let _moto = match opts.secrets {
        Secrets::Variables => None,
        Secrets::Moto => {
            let (moto, secret_vars) = secret_in_moto().await?;
            vars.retain(|(name, _)| name != "JWT_SECRET");
            vars.extend(secret_vars);
            println!(
                "secrets: JWT_SECRET read at cold start from moto server ({})",
                moto.endpoint
            );
            Some(moto)
        }
    };

    // Cold starts go round-robin over the functions, so that a slow spell of the machine falls
    // on all of them alike instead of on whichever function was being measured; the warm loads,
    // which grow the database, come after every cold start.
    let workloads: Vec<Workload> = opts
        .functions
        .iter()
        .map(|function| workload(function, &token, &conversation_id))
        .collect();
    let mut colds: Vec<Vec<ColdStart>> = opts.functions.iter().map(|_| Vec::new()).collect();
    let mut warm_instances = Vec::new();
    for run in 0..opts.runs {
        for ((function, workload), colds) in opts.functions.iter().zip(&workloads).zip(&mut colds) {
            let binary = opts.bin_dir.join(function);
            let (cold, emulator, child) = cold_start(&binary, function, workload, &vars)
                .await
                .map_err(|e| e.context(format!("{function}: cold start {run}")))?;
            colds.push(cold);
            if run + 1 == opts.runs {
                warm_instances.push((emulator, child));
            } else {
                stop(child);
            }
        }
    }
    anyhow::ensure!(!warm_instances.is_empty(), "--runs must be at least 1");

    println!();
    println!(
        "{:<14} {:>6} {:>9} {:>9} {:>11} {:>11} {:>11} {:>9} {:>9} {:>10} {:>10}",
        "function",
        "status",
        "init p50",
        "1st inv.",
        "cold p50",
        "cold min",
        "cold max",
        "warm p50",
        "warm p99",
        "peak RSS",
        "binary"
    );
    for (((function, workload), colds), (emulator, child)) in opts
        .functions
        .iter()
        .zip(&workloads)
        .zip(&colds)
        .zip(warm_instances)
    {
        let binary = opts.bin_dir.join(function);
        let warm = warm_load(&emulator, workload, opts.load).await;
        let rss = crate::machine::rss_kib(child.id());
        stop(child);
        let (warm, statuses) = warm.map_err(|e| e.context(format!("{function}: warm load")))?;
        let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        let init = Sample::new(colds.iter().map(|c| c.init).collect());
        let complete = Sample::new(colds.iter().map(|c| c.complete).collect());
        let first_invocation = Sample::new(
            colds
                .iter()
                .map(|c| c.complete.saturating_sub(c.init))
                .collect(),
        );
        println!(
            "{:<14} {:>6} {:>9} {:>9} {:>11} {:>11} {:>11} {:>9} {:>9} {:>10} {:>10}",
            function,
            colds.first().map_or(0, |c| c.status),
            ms(init.p50()),
            ms(first_invocation.p50()),
            ms(complete.p50()),
            ms(complete.min()),
            ms(complete.max()),
            ms(warm.p50()),
            ms(warm.p99()),
            rss.map_or("?".into(), |(peak, _)| format!(
                "{:.1} MB",
                peak as f64 / 1024.0
            )),
            format!("{:.1} MB", size as f64 / 1e6),
        );
        let first_bytes = Sample::new(colds.iter().map(|c| c.first_byte).collect());
        println!(
            "{:<14} first byte p50 {} ms; warm statuses {:?}",
            "",
            ms(first_bytes.p50()),
            statuses
        );
    }
    println!();
    println!(
        "init: spawn -> first poll of /invocation/next; 1st inv.: that poll -> response complete; \
         cold: spawn -> first response complete (all ms). warm: queueing an event -> response \
         complete, same process. peak RSS: VmHWM after the warm invocations."
    );
    Ok(())
}

/// moto server with a secret holding the functions' `JWT_SECRET`, and the variables that make a
/// function read it there: its ARN, the endpoint, a region and (any) credentials, as Lambda
/// sets them.
async fn secret_in_moto() -> anyhow::Result<(MotoServer, Vec<(String, String)>)> {
    let moto = tokio::task::spawn_blocking(MotoServer::start).await?;
    let aws = [
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
    ];
    let config = shared::store::sdk_loader(Some(&moto.endpoint))
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "bench", "bench", None, None, "static",
        ))
        .load()
        .await;
    let created = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name("chat-bench")
        .secret_string(json!({ "JWT_SECRET": stack::SECRET }).to_string())
        .send()
        .await?;
    let arn = created.arn().unwrap_or_default().to_owned();
    let mut vars: Vec<(String, String)> = aws
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.push(("APP_SECRET_ARN".into(), arn));
    Ok((moto, vars))
}

/// Times each step of a function's init once, in a fresh process (run it several times).
pub async fn init_steps() -> anyhow::Result<()> {
    let started = Instant::now();
    let llm = FakeLlm::start().await;
    let dynamodb = shared::local::EmbeddedDynamoDb::start(None).await?;
    let vars = stack::function_vars(dynamodb.endpoint(), &llm.base_url);
    let mut steps = Vec::new();
    let mut lap = Instant::now();
    let mut step = |name: &'static str| {
        steps.push((name, lap.elapsed()));
        lap = Instant::now();
    };
    shared::logging::init_tracing();
    step("init_tracing");
    let config = shared::config::Config::from_vars(&vars)?;
    step("Config::from_vars");
    let store = shared::store::Store::connect(&config).await;
    step("Store::connect");
    let state = shared::AppState::with_store(config, store)?;
    step("AppState::with_store");
    let router = shared::api::Group::Conversations.service(state.clone());
    step("Group::service");
    drop(router);
    // The first request pays for connection set-up; this one fails (no table) but connects.
    let _ = state
        .store
        .count_request("init", state.config.rate_limits, chrono::Utc::now())
        .await;
    step("first DynamoDB call");
    let _ = state
        .store
        .count_request("init", state.config.rate_limits, chrono::Utc::now())
        .await;
    step("second DynamoDB call");
    let line: Vec<String> = steps
        .iter()
        .map(|(name, d)| format!("{name} {} ms", ms(*d)))
        .collect();
    println!("{}", line.join("; "));
    let _ = started;
    Ok(())
}
