//! A real MCP server (rmcp, Streamable HTTP) on a random loopback port for the tests.

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

/// A shop's order desk, plus a tool whose name clashes with a built-in and one that fails.
#[derive(Debug, Clone, Default)]
pub struct ShopServer;

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
}

/// Starts the server; the URL is its MCP endpoint.
pub async fn start_shop_server() -> String {
    let service: StreamableHttpService<ShopServer, LocalSessionManager> =
        StreamableHttpService::new(
            || Ok(ShopServer),
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}
