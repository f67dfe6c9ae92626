//! A proxy in front of the embedded DynamoDB that can make chosen operations fail, the way
//! DynamoDB does under throttling or an outage, add a fixed latency to every call (as a
//! network hop to DynamoDB in AWS does), and note each call it forwarded: when it started and
//! ended, and the capacity it consumed, for the latency benchmark (bench/src/latency.rs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Every request passes.
    None,
    /// Calls of this operation (e.g. "TransactWriteItems") after the first `after` pass are
    /// refused with ThrottlingException.
    Throttle { operation: String, after: usize },
    /// Every request gets a 503 with no DynamoDB error, as from a failing load balancer.
    Outage,
    /// The first `times` calls of this operation are throttled, the rest pass: a fault that
    /// the SDK's own retries do not outlast only when `times` exceeds its attempts (3).
    ThrottleTimes { operation: String, times: usize },
    /// Calls of this operation wait, unanswered, until the fault is changed: a write that is
    /// still on its way, for as long as a test needs.
    Hold { operation: String },
}

impl Fault {
    /// [`Fault::Hold`] of `operation`.
    pub fn hold(operation: &str) -> Self {
        Self::Hold {
            operation: operation.into(),
        }
    }

    /// [`Fault::Throttle`]: `operation` is throttled once its first `after` calls passed.
    pub fn throttle(operation: &str, after: usize) -> Self {
        Self::Throttle {
            operation: operation.into(),
            after,
        }
    }
}

/// One call the proxy forwarded.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GetItem`, `TransactWriteItems`, ...
    pub operation: String,
    /// When the request reached the proxy, and when its answer left it (added latency included).
    pub started: Instant,
    pub ended: Instant,
    /// Capacity units the call consumed, when [`FaultyDynamoDb::count_capacity`] asked for them.
    pub capacity: f64,
    /// Items a read returned, counted beside its capacity.
    pub items: u64,
}

struct Shared {
    upstream: String,
    latency: Mutex<Duration>,
    count_capacity: AtomicBool,
    calls: Mutex<Vec<Call>>,
    /// Built on first use: by then the stack has installed the process's TLS crypto provider,
    /// which reqwest needs before a client can be built.
    http: std::sync::OnceLock<reqwest::Client>,
    fault: Mutex<(Fault, usize)>,
    /// Wakes held calls when the fault changes.
    changed: tokio::sync::Notify,
}

pub struct FaultyDynamoDb {
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultyDynamoDb {
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            http: std::sync::OnceLock::new(),
            fault: Mutex::new((Fault::None, 0)),
            changed: tokio::sync::Notify::new(),
            latency: Mutex::new(Duration::ZERO),
            count_capacity: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { endpoint, shared }
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = (fault, 0);
        self.shared.changed.notify_waiters();
    }

    /// Every call from now on is answered `latency` later than the emulator answers it.
    pub fn set_latency(&self, latency: Duration) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    /// Every call from now on asks DynamoDB for the capacity it consumed
    /// (`ReturnConsumedCapacity: TOTAL`, added to requests that do not ask), noted in its [`Call`].
    pub fn count_capacity(&self) {
        self.shared.count_capacity.store(true, Ordering::SeqCst);
    }

    /// The calls forwarded since the last `take_calls`, in the order they ended.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.shared.calls.lock().unwrap())
    }
}

/// The longest chain of calls, each started after the one before it ended, among the calls
/// that ended before `model`: how many DynamoDB latencies the model request waited for.
pub fn sequential_steps(calls: &[Call], model: Instant) -> usize {
    let mut before: Vec<&Call> = calls.iter().filter(|c| c.ended <= model).collect();
    before.sort_by_key(|c| c.ended);
    let mut chain = vec![0usize; before.len()];
    for i in 0..before.len() {
        let longest_before = (0..i)
            .filter(|&j| before[j].ended <= before[i].started)
            .map(|j| chain[j])
            .max()
            .unwrap_or(0);
        chain[i] = longest_before + 1;
    }
    chain.into_iter().max().unwrap_or(0)
}

/// Waits `latency` precisely: Tokio's timer rounds up to whole milliseconds, a thread's sleep
/// is off by tens of microseconds.
async fn delay(latency: Duration) {
    if !latency.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
    }
}

/// The request asking for its consumed capacity, unless it already does.
fn asking_for_capacity(body: Bytes) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Object(mut request))
            if !request.contains_key("ReturnConsumedCapacity") =>
        {
            request.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
            Bytes::from(serde_json::Value::Object(request).to_string())
        }
        _ => body,
    }
}

/// The capacity units an answer reports (one `ConsumedCapacity`, or one per table of a
/// transaction or batch), and the items it returns.
fn consumed(body: &[u8]) -> (f64, u64) {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (0.0, 0);
    };
    let units = |c: &serde_json::Value| c["CapacityUnits"].as_f64().unwrap_or_default();
    let capacity = match &answer["ConsumedCapacity"] {
        serde_json::Value::Array(tables) => tables.iter().map(units).sum(),
        one => units(one),
    };
    let items = match (&answer["Count"], &answer["Item"], &answer["Responses"]) {
        (serde_json::Value::Number(count), _, _) => count.as_u64().unwrap_or_default(),
        (_, serde_json::Value::Object(_), _) => 1,
        (_, _, serde_json::Value::Object(tables)) => tables
            .values()
            .filter_map(serde_json::Value::as_array)
            .map(|items| items.len() as u64)
            .sum(),
        _ => 0,
    };
    (capacity, items)
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let latency = *shared.latency.lock().unwrap();
    let counting = shared.count_capacity.load(Ordering::SeqCst);
    let body = if counting {
        asking_for_capacity(body)
    } else {
        body
    };
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    loop {
        let changed = shared.changed.notified();
        let held = matches!(&shared.fault.lock().unwrap().0, Fault::Hold { operation: op } if *op == operation);
        if !held {
            break;
        }
        changed.await;
    }
    let refuse = {
        let mut guard = shared.fault.lock().unwrap();
        let (fault, seen) = &mut *guard;
        match fault {
            Fault::None => None,
            Fault::Outage => Some((StatusCode::SERVICE_UNAVAILABLE, String::new())),
            Fault::Throttle {
                operation: op,
                after,
            } if *op == operation => {
                *seen += 1;
                (*seen > *after).then(|| {
                    let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                    (StatusCode::BAD_REQUEST, body.to_owned())
                })
            }
            Fault::Throttle { .. } => None,
            Fault::ThrottleTimes {
                operation: op,
                times,
            } if *op == operation && *seen < *times => {
                *seen += 1;
                let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                Some((StatusCode::BAD_REQUEST, body.to_owned()))
            }
            Fault::ThrottleTimes { .. } | Fault::Hold { .. } => None,
        }
    };
    if let Some((status, body)) = refuse {
        delay(latency).await;
        return (
            status,
            [("content-type", "application/x-amz-json-1.0")],
            body,
        )
            .into_response();
    }
    let mut request = shared
        .http
        .get_or_init(|| {
            shared::install_crypto_provider();
            reqwest::Client::new()
        })
        .request(method, format!("{}{}", shared.upstream, uri.path()));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.body(body).send().await {
        Ok(upstream) => {
            let status = upstream.status();
            let headers = upstream.headers().clone();
            let body = upstream.bytes().await.unwrap_or_default();
            delay(latency).await;
            let (capacity, items) = if counting { consumed(&body) } else { (0.0, 0) };
            shared.calls.lock().unwrap().push(Call {
                operation,
                started,
                ended: Instant::now(),
                capacity,
                items,
            });
            let mut response = (status, body).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
