//! Request overhead: each endpoint through its function's router (in-process, `oneshot`, no
//! socket), against the same storage and model calls made directly, interleaved run by run.
//! The difference is what routing, authentication, rate-limit bookkeeping around the count,
//! validation, serialization, logging and CORS add. DynamoDB round trips are counted by an SDK
//! interceptor.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use api_tests::{FakeLlm, Script};
use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use shared::AppState;
use shared::api::Group;
use shared::domain::{Conversation, MessageDraft, MessageRole, NewConversation};
use shared::service::chat::{ChatInput, Turn};
use shared::store::ConversationRecord;
use tower::ServiceExt;

use crate::counting::{self, RoundTrips};
use crate::stack::{self, Stack};
use crate::stats::{Sample, ms, ms_diff};

pub struct Options {
    pub iterations: usize,
    pub warmup: usize,
}

/// One request to a router, built before the clock starts (it is the client's work).
fn request(method: Method, uri: &str, token: &str, body: Option<&Value>) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("host", "bench.execute-api.us-east-1.amazonaws.com");
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .expect("a valid request")
}

/// Sends a request through the router and reads the whole response body.
async fn call(router: &Router, request: Request<Body>, expected: StatusCode) -> anyhow::Result<()> {
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    if status != expected {
        anyhow::bail!(
            "expected {expected}, got {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

/// A request's wall-clock time and the CPU time the whole process spent meanwhile (every
/// thread: the router, the SDK, dynoxide, the fake model). Requests run one at a time, so the
/// CPU difference between the two paths is the HTTP layer's own work, however loaded the
/// machine is.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    wall: Duration,
    cpu: Duration,
}

fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which lives on this stack frame.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

struct Figures {
    name: &'static str,
    routed: Sample,
    bare: Sample,
    paired: Sample,
    routed_cpu: Sample,
    bare_cpu: Sample,
    routed_trips: BTreeMap<String, u64>,
    bare_trips: BTreeMap<String, u64>,
    runs: u64,
}

/// Runs `routed` and `bare` alternately (which goes first alternates too), `iterations` times
/// after `warmup` untimed rounds.
async fn compare<R, B, RF, BF>(
    name: &'static str,
    opts: &Options,
    trips: &RoundTrips,
    mut routed: R,
    mut bare: B,
) -> anyhow::Result<Figures>
where
    R: FnMut() -> RF,
    B: FnMut() -> BF,
    RF: Future<Output = anyhow::Result<Cost>>,
    BF: Future<Output = anyhow::Result<Cost>>,
{
    for _ in 0..opts.warmup {
        routed().await?;
        bare().await?;
    }
    trips.take();
    let mut routed_times = Vec::with_capacity(opts.iterations);
    let mut bare_times = Vec::with_capacity(opts.iterations);
    let mut paired = Vec::with_capacity(opts.iterations);
    let mut routed_cpu = Vec::with_capacity(opts.iterations);
    let mut bare_cpu = Vec::with_capacity(opts.iterations);
    let mut routed_trips = BTreeMap::new();
    let mut bare_trips = BTreeMap::new();
    let add = |into: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>| {
        for (op, n) in from {
            *into.entry(op).or_default() += n;
        }
    };
    for i in 0..opts.iterations {
        let (r, b) = if i % 2 == 0 {
            let r = routed().await?;
            add(&mut routed_trips, trips.take());
            let b = bare().await?;
            add(&mut bare_trips, trips.take());
            (r, b)
        } else {
            let b = bare().await?;
            add(&mut bare_trips, trips.take());
            let r = routed().await?;
            add(&mut routed_trips, trips.take());
            (r, b)
        };
        routed_times.push(r.wall);
        bare_times.push(b.wall);
        routed_cpu.push(r.cpu);
        bare_cpu.push(b.cpu);
        // Saturating: a negative pair counts as zero overhead, which only flatters the p99.
        paired.push(r.wall.saturating_sub(b.wall));
    }
    Ok(Figures {
        name,
        routed: Sample::new(routed_times),
        bare: Sample::new(bare_times),
        paired: Sample::new(paired),
        routed_cpu: Sample::new(routed_cpu),
        bare_cpu: Sample::new(bare_cpu),
        routed_trips,
        bare_trips,
        runs: opts.iterations as u64,
    })
}

async fn timed<F: Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<Cost> {
    let cpu = process_cpu();
    let started = Instant::now();
    f.await?;
    Ok(Cost {
        wall: started.elapsed(),
        cpu: process_cpu().saturating_sub(cpu),
    })
}

/// The storage call every authenticated request starts with.
async fn count(state: &AppState, user: &str) -> anyhow::Result<()> {
    state
        .store
        .count_request(user, state.config.rate_limits, chrono::Utc::now())
        .await?;
    Ok(())
}

fn report(figures: &[Figures]) {
    println!();
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>11}",
        "endpoint (ms)",
        "router p50",
        "router p99",
        "bare p50",
        "bare p99",
        "added p50",
        "paired p50",
        "paired p99"
    );
    for f in figures {
        println!(
            "{:<28} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>11}",
            f.name,
            ms(f.routed.p50()),
            ms(f.routed.p99()),
            ms(f.bare.p50()),
            ms(f.bare.p99()),
            ms_diff(f.routed.p50(), f.bare.p50()),
            ms(f.paired.p50()),
            ms(f.paired.p99()),
        );
    }
    println!();
    println!(
        "{:<28} {:>10} {:>10} {:>11}",
        "CPU per request (ms)", "router p50", "bare p50", "added p50"
    );
    for f in figures {
        println!(
            "{:<28} {:>10} {:>10} {:>11}",
            f.name,
            ms(f.routed_cpu.p50()),
            ms(f.bare_cpu.p50()),
            ms_diff(f.routed_cpu.p50(), f.bare_cpu.p50()),
        );
    }
    println!();
    println!("DynamoDB round trips per request (router | bare):");
    for f in figures {
        println!(
            "  {:<26} {} | {}",
            f.name,
            counting::describe(&f.routed_trips, f.runs),
            counting::describe(&f.bare_trips, f.runs)
        );
    }
}

/// Seeds the data the reads need: `lister` has 25 conversations (a page is 20), `getter` one
/// conversation of 10 messages.
async fn seed(state: &AppState) -> anyhow::Result<String> {
    for i in 0..25 {
        let conversation = Conversation::create(
            "lister",
            NewConversation {
                title: format!("Conversation {i}"),
                ..Default::default()
            },
        );
        state.store.create_conversation(&conversation).await?;
    }
    let conversation = Conversation::create(
        "getter",
        NewConversation {
            title: "Ten messages".into(),
            ..Default::default()
        },
    );
    let drafts = (0..10)
        .map(|i| {
            let role = if i % 2 == 0 {
                MessageRole::User
            } else {
                MessageRole::Assistant
            };
            MessageDraft::new(
                role,
                format!("Message number {i}, of a few words like a real one."),
            )
        })
        .collect();
    let (record, _) = state
        .store
        .create_conversation_with(ConversationRecord::new(conversation), drafts)
        .await?;
    Ok(record.conversation.id)
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    stack::init_tracing();
    let llm = FakeLlm::start().await;
    llm.always(Script::paced(8, Duration::ZERO));
    let stack = Stack::start(&llm.base_url).await?;
    let state = stack.state.clone();
    let trips = stack.round_trips.clone();
    println!("{}", crate::machine::describe());
    println!(
        "request overhead: {} interleaved iterations per endpoint after {} warm-up rounds; \
         routers called in-process (tower oneshot), storage on dynoxide over loopback HTTP, \
         model: zero-delay fake answering 8 tokens",
        opts.iterations, opts.warmup
    );
    let getter_conversation = seed(&state).await?;
    trips.take();

    let conversations = Group::Conversations.service(state.clone());
    let chat = Group::Chat.service(state.clone());
    let mut figures = Vec::new();

    // POST /conversations
    let token = stack::token("creator");
    let body = json!({"title": "Benchmark conversation", "description": "Created by the overhead benchmark"});
    figures.push(
        compare(
            "POST /conversations",
            &opts,
            &trips,
            || {
                let r = request(
                    Method::POST,
                    "/api/v1/chat/conversations",
                    &token,
                    Some(&body),
                );
                timed(call(&conversations, r, StatusCode::CREATED))
            },
            || {
                let state = &state;
                timed(async move {
                    count(state, "creator").await?;
                    let conversation = Conversation::create(
                        "creator",
                        NewConversation {
                            title: "Benchmark conversation".into(),
                            description: Some("Created by the overhead benchmark".into()),
                            ..Default::default()
                        },
                    );
                    state.store.create_conversation(&conversation).await?;
                    Ok(())
                })
            },
        )
        .await?,
    );

    // GET /conversations/{id} with its 10 messages
    let token = stack::token("getter");
    let uri = format!("/api/v1/chat/conversations/{getter_conversation}");
    figures.push(
        compare(
            "GET /conversations/{id}",
            &opts,
            &trips,
            || {
                timed(call(
                    &conversations,
                    request(Method::GET, &uri, &token, None),
                    StatusCode::OK,
                ))
            },
            || {
                let (state, id) = (&state, &getter_conversation);
                timed(async move {
                    count(state, "getter").await?;
                    let (_, tree) = state.store.conversation_tree("getter", id).await?;
                    let messages = tree.messages();
                    anyhow::ensure!(messages.len() == 10, "expected 10 messages");
                    Ok(())
                })
            },
        )
        .await?,
    );

    // GET /conversations, a page of 20
    let token = stack::token("lister");
    figures.push(
        compare(
            "GET /conversations (20)",
            &opts,
            &trips,
            || {
                let r = request(
                    Method::GET,
                    "/api/v1/chat/conversations?limit=20",
                    &token,
                    None,
                );
                timed(call(&conversations, r, StatusCode::OK))
            },
            || {
                let state = &state;
                timed(async move {
                    count(state, "lister").await?;
                    let (page, total) = state.store.list_conversations("lister", 20, 0).await?;
                    anyhow::ensure!(page.len() == 20 && total == 25, "expected 20 of 25");
                    Ok(())
                })
            },
        )
        .await?,
    );

    // POST /chat, a new conversation each time, zero-delay model
    let token = stack::token("chatter");
    let body = json!({"message": "Hello, how are you today?"});
    figures.push(
        compare(
            "POST /chat (new conv.)",
            &opts,
            &trips,
            || {
                timed(call(
                    &chat,
                    request(Method::POST, "/api/v1/chat/chat", &token, Some(&body)),
                    StatusCode::OK,
                ))
            },
            || {
                let state = &state;
                timed(async move {
                    count(state, "chatter").await?;
                    let input = ChatInput {
                        message: "Hello, how are you today?".into(),
                        ..Default::default()
                    };
                    let turn = Turn::begin(state, "chatter", input).await?;
                    turn.run(state).await?;
                    Ok(())
                })
            },
        )
        .await?,
    );

    report(&figures);
    round_trip_survey(&state, &trips).await?;
    Ok(())
}

/// Round trips of every Chatter endpoint and FreeChat's turns, one request each, through the
/// routers.
async fn round_trip_survey(state: &AppState, trips: &RoundTrips) -> anyhow::Result<()> {
    let conversations = Group::Conversations.service(state.clone());
    let chat = Group::Chat.service(state.clone());
    let stream = Group::ChatStream.service(state.clone());
    let catalog = Group::Catalog.service(state.clone());
    let documents = Group::Documents.service(state.clone());
    let characters = Group::Characters.service(state.clone());
    let sessions = Group::Sessions.service(state.clone());
    let token = stack::token("surveyor");
    let id_of = |body: &[u8], field: &str| -> anyhow::Result<String> {
        let v: Value = serde_json::from_slice(body)?;
        v.pointer(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {field} in {v}"))
    };
    let send = |router: &Router, r: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(r).await?;
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            Ok::<_, anyhow::Error>((status, body))
        }
    };
    let mut rows: Vec<(String, StatusCode, BTreeMap<String, u64>)> = Vec::new();
    macro_rules! survey {
        ($label:expr, $router:expr, $request:expr) => {{
            trips.take();
            let (status, body) = send(&$router, $request).await?;
            rows.push(($label.to_string(), status, trips.take()));
            body
        }};
    }
    let created = survey!(
        "POST /conversations",
        conversations,
        request(
            Method::POST,
            "/api/v1/chat/conversations",
            &token,
            Some(&json!({"title": "Survey"}))
        )
    );
    let id = id_of(&created, "/id")?;
    survey!(
        "GET /conversations",
        conversations,
        request(Method::GET, "/api/v1/chat/conversations", &token, None)
    );
    let answered = survey!(
        "POST /chat (existing conv.)",
        chat,
        request(
            Method::POST,
            "/api/v1/chat/chat",
            &token,
            Some(&json!({"message": "Hi", "conversation_id": id}))
        )
    );
    let message_id = id_of(&answered, "/message/id")?;
    // A turn reads every message once and walks its branch in memory: its calls are the same
    // with one version of an answer as with twenty.
    let regenerate = |id: &str, message_id: &str| {
        request(
            Method::POST,
            "/api/v1/chat/chat",
            &token,
            Some(&json!({"conversation_id": id, "regenerate_message_id": message_id})),
        )
    };
    survey!(
        "POST /chat (regenerate, 2 versions)",
        chat,
        regenerate(&id, &message_id)
    );
    for _ in 0..18 {
        send(&chat, regenerate(&id, &message_id)).await?;
    }
    survey!(
        "POST /chat (regenerate, 21 versions)",
        chat,
        regenerate(&id, &message_id)
    );
    survey!(
        "POST /chat (new conv.)",
        chat,
        request(
            Method::POST,
            "/api/v1/chat/chat",
            &token,
            Some(&json!({"message": "Hi"}))
        )
    );
    survey!(
        "POST /template/{name}",
        chat,
        request(
            Method::POST,
            "/api/v1/chat/template/general_chat",
            &token,
            Some(&json!({"message": "Hi"}))
        )
    );
    survey!(
        "POST /streaming (new conv.)",
        stream,
        request(
            Method::POST,
            "/api/v1/chat/streaming",
            &token,
            Some(&json!({"message": "Hi"}))
        )
    );
    survey!(
        "POST /streaming (existing)",
        stream,
        request(
            Method::POST,
            "/api/v1/chat/streaming",
            &token,
            Some(&json!({"message": "Hi", "conversation_id": id}))
        )
    );
    let uri = format!("/api/v1/chat/conversations/{id}");
    survey!(
        "GET /conversations/{id}",
        conversations,
        request(Method::GET, &uri, &token, None)
    );
    survey!(
        "GET /conversations/{id}?no msgs",
        conversations,
        request(
            Method::GET,
            &format!("{uri}?include_messages=false"),
            &token,
            None
        )
    );
    survey!(
        "PUT /conversations/{id}",
        conversations,
        request(
            Method::PUT,
            &uri,
            &token,
            Some(&json!({"title": "Renamed"}))
        )
    );
    survey!(
        "GET /conversations/{id}/messages",
        conversations,
        request(Method::GET, &format!("{uri}/messages"), &token, None)
    );
    survey!(
        "DELETE /messages/{message_id}",
        conversations,
        request(
            Method::DELETE,
            &format!("{uri}/messages/{message_id}"),
            &token,
            None
        )
    );
    survey!(
        "DELETE /conversations/{id}",
        conversations,
        request(Method::DELETE, &uri, &token, None)
    );
    survey!(
        "GET /templates",
        catalog,
        request(Method::GET, "/api/v1/chat/templates", &token, None)
    );
    survey!(
        "GET /openapi.json",
        catalog,
        request(Method::GET, "/openapi.json", &token, None)
    );
    survey!(
        "GET /documents",
        documents,
        request(Method::GET, "/api/v1/documents", &token, None)
    );
    let chat_id = freechat_chat(&characters, &sessions, &token).await?;
    survey!(
        "FreeChat POST /send/{chatId}",
        sessions,
        request(
            Method::POST,
            &format!("/api/v1/chat/send/{chat_id}"),
            &token,
            Some(&json!({"contentText": "Ahoy"}))
        )
    );
    survey!(
        "FreeChat POST /send/stream/{chatId}",
        stream,
        request(
            Method::POST,
            &format!("/api/v1/chat/send/stream/{chat_id}"),
            &token,
            Some(&json!({"contentText": "Ahoy"}))
        )
    );
    survey!(
        "POST /chat in a FreeChat chat",
        chat,
        request(
            Method::POST,
            "/api/v1/chat/chat",
            &token,
            Some(&json!({"message": "Ahoy", "conversation_id": chat_id}))
        )
    );

    println!();
    println!(
        "DynamoDB round trips per endpoint (one request each, through the function's router):"
    );
    for (label, status, counts) in rows {
        println!(
            "  {:<34} {:>3}  {}",
            label,
            status.as_u16(),
            counting::describe(&counts, 1)
        );
    }
    Ok(())
}

/// A FreeChat chat of the token's user with a character that has one backend, set up
/// through the routers; returns its id.
async fn freechat_chat(
    characters: &Router,
    sessions: &Router,
    token: &str,
) -> anyhow::Result<String> {
    let text = |router: &Router, r: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(r).await?;
            anyhow::ensure!(response.status() == StatusCode::OK, "{}", response.status());
            let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
            Ok::<_, anyhow::Error>(String::from_utf8(body.to_vec())?)
        }
    };
    let body = json!({"name": "Jack", "greeting": "Ahoy!"});
    let id = text(
        characters,
        request(Method::POST, "/api/v1/character", token, Some(&body)),
    )
    .await?;
    let summary = format!("/api/v1/character/summary/{id}");
    let summary: Value = serde_json::from_str(
        &text(characters, request(Method::GET, &summary, token, None)).await?,
    )?;
    let uid = summary["characterUid"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no characterUid in {summary}"))?;
    let backend = format!("/api/v1/character/backend/{uid}");
    text(
        characters,
        request(Method::POST, &backend, token, Some(&json!({}))),
    )
    .await?;
    let start = json!({"characterUid": uid});
    text(
        sessions,
        request(Method::POST, "/api/v1/chat", token, Some(&start)),
    )
    .await
}
