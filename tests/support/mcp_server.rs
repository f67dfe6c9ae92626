//! A real MCP server (rmcp, Streamable HTTP) on a random loopback port for the tests, which
//! records what it saw: requests, their headers, and how many tool calls ran at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, schemars, tool, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct OrderRequest {
    /// The order number.
    pub order_id: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct ExpressionRequest {
    pub expression: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SlowRequest {
    /// How long the tool takes, in milliseconds.
    pub ms: u64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct SizeRequest {
    /// How many bytes of text the tool returns.
    pub bytes: usize,
}

/// What the server has seen so far.
#[derive(Debug, Default)]
pub struct Observed {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    headers: Mutex<Vec<axum::http::HeaderMap>>,
    /// The JSON-RPC method of every message posted.
    methods: Mutex<Vec<String>>,
}

/// A shop's order desk, plus a tool whose name clashes with a built-in, one that fails, and
/// tools that are slow, answer at length or answer nothing.
#[derive(Debug, Clone, Default)]
pub struct ShopServer {
    observed: Arc<Observed>,
}

#[tool_router(server_handler)]
impl ShopServer {
    #[tool(description = "Looks up an order's shipping status")]
    fn lookup_order(
        &self,
        Parameters(OrderRequest { order_id }): Parameters<OrderRequest>,
    ) -> String {
        format!("Order {order_id}: shipped on 2026-11-20")
    }

    #[tool(description = "The shop's own calculator")]
    fn calculator(
        &self,
        Parameters(ExpressionRequest { expression }): Parameters<ExpressionRequest>,
    ) -> String {
        format!("shop calculator: {expression}")
    }

    #[tool(description = "Always fails")]
    fn broken(&self) -> Result<String, ErrorData> {
        Err(ErrorData::internal_error(
            "the warehouse database is down",
            None,
        ))
    }

    #[tool(description = "Takes its time")]
    async fn slow(&self, Parameters(SlowRequest { ms }): Parameters<SlowRequest>) -> String {
        let now = self.observed.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.observed.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.observed.in_flight.fetch_sub(1, Ordering::SeqCst);
        format!("done after {ms} ms")
    }

    #[tool(description = "Returns a long text")]
    fn catalogue(&self, Parameters(SizeRequest { bytes }): Parameters<SizeRequest>) -> String {
        "catalogue ".repeat(bytes / 10 + 1)[..bytes].to_owned()
    }

    #[tool(description = "Returns nothing")]
    fn silent(&self) -> String {
        String::new()
    }
}

/// A running test server.
pub struct McpTestServer {
    /// Its MCP endpoint.
    pub url: String,
    observed: Arc<Observed>,
}

impl McpTestServer {
    /// HTTP requests received (every MCP message is one).
    pub fn requests(&self) -> usize {
        self.observed.requests.load(Ordering::SeqCst)
    }

    /// Messages posted with this JSON-RPC method. Unlike [`Self::requests`], this ignores
    /// what a client sends in the background (its event stream, closing a session).
    pub fn messages(&self, method: &str) -> usize {
        let methods = self.observed.methods.lock().unwrap();
        methods.iter().filter(|m| *m == method).count()
    }

    /// The most tool calls that were running at the same moment.
    pub fn max_concurrent_calls(&self) -> usize {
        self.observed.max_in_flight.load(Ordering::SeqCst)
    }

    /// The values of header `name` on every message posted.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.observed
            .headers
            .lock()
            .unwrap()
            .iter()
            .map(|h| {
                h.get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}

async fn observe(State(observed): State<Arc<Observed>>, request: Request, next: Next) -> Response {
    observed.requests.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if let Ok(message) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && let Some(method) = message["method"].as_str()
    {
        observed.methods.lock().unwrap().push(method.to_owned());
        observed.headers.lock().unwrap().push(parts.headers.clone());
    }
    next.run(Request::from_parts(parts, bytes.into())).await
}

/// Counts the request and never answers it, as a server does that is up but stuck.
async fn hang(State(observed): State<Arc<Observed>>, _request: Request) -> Response {
    observed.requests.fetch_add(1, Ordering::SeqCst);
    std::future::pending().await
}

async fn serve(router: axum::Router, observed: Arc<Observed>) -> McpTestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    McpTestServer { url, observed }
}

/// Holds back every `tools/list` request, as a server does that connects but is stuck.
async fn hang_on_list(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    if String::from_utf8_lossy(&bytes).contains("\"tools/list\"") {
        return std::future::pending().await;
    }
    next.run(Request::from_parts(parts, bytes.into())).await
}

/// Starts the shop's server.
pub async fn start_shop() -> McpTestServer {
    start_shop_with(false).await
}

/// Starts the shop's server, which accepts sessions but never lists its tools.
pub async fn start_shop_stuck_on_list() -> McpTestServer {
    start_shop_with(true).await
}

async fn start_shop_with(stuck_on_list: bool) -> McpTestServer {
    let observed = Arc::new(Observed::default());
    let shop = ShopServer {
        observed: observed.clone(),
    };
    let service: StreamableHttpService<ShopServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(shop.clone()),
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if stuck_on_list {
        router = router.layer(middleware::from_fn(hang_on_list));
    }
    let router = router.layer(middleware::from_fn_with_state(observed.clone(), observe));
    serve(router, observed).await
}

/// Starts the shop's server; the URL is its MCP endpoint.
pub async fn start_shop_server() -> String {
    start_shop().await.url
}

/// Starts a server that accepts connections and requests but never answers one.
pub async fn start_stuck_server() -> McpTestServer {
    let observed = Arc::new(Observed::default());
    let router = axum::Router::new()
        .fallback(hang)
        .with_state(observed.clone());
    serve(router, observed).await
}
