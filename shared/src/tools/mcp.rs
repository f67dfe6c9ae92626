//! MCP servers over the Streamable HTTP transport, through rmcp.
//!
//! Sessions are opened on first use and kept for the life of the process; tool lists are
//! cached briefly. Every call is bounded in time, and a server that is down is skipped with a
//! warning, so one bad server never blocks a turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::McpServerConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const LIST_TIMEOUT: Duration = Duration::from_secs(3);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const TOOLS_TTL: Duration = Duration::from_secs(60);
const STATUS_TTL: Duration = Duration::from_secs(10);

type Session = Arc<RunningService<RoleClient, ()>>;

/// A tool one server offers, under its own name.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub server: String,
    pub name: String,
    pub description: String,
    pub input_schema: Value,
}

/// The health of one server, as `/mcp/status` reports it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ServerStatus {
    pub name: String,
    pub url: String,
    /// `healthy` or `unavailable`.
    pub status: &'static str,
    pub tools_count: usize,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct McpStatus {
    pub servers: Vec<ServerStatus>,
    pub checked_at: chrono::DateTime<chrono::Utc>,
}

struct Server {
    config: McpServerConfig,
    session: Mutex<Option<Session>>,
    tools: Mutex<Option<(Instant, Vec<McpTool>)>>,
}

/// Tools of every server, with the servers that could not be reached and whether the list
/// came from the cache.
pub struct Listing {
    pub tools: Vec<McpTool>,
    pub failures: Vec<(String, String)>,
    pub cache_hit: bool,
}

pub struct McpHub {
    servers: Vec<Server>,
    http: reqwest::Client,
    status: Mutex<Option<(Instant, McpStatus)>>,
}

impl McpHub {
    pub fn new(configs: &[McpServerConfig], http: reqwest::Client) -> Self {
        Self {
            servers: configs
                .iter()
                .map(|config| Server {
                    config: config.clone(),
                    session: Mutex::new(None),
                    tools: Mutex::new(None),
                })
                .collect(),
            http,
            status: Mutex::new(None),
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.servers.is_empty()
    }

    async fn session(&self, server: &Server) -> Result<Session, String> {
        let mut slot = server.session.lock().await;
        if let Some(session) = slot.as_ref()
            && !session.is_closed()
        {
            return Ok(session.clone());
        }
        let headers = server
            .config
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.parse().ok()?, value.expose().parse().ok()?)))
            .collect::<HashMap<_, _>>();
        let config = StreamableHttpClientTransportConfig::with_uri(server.config.url.as_str())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let session = tokio::time::timeout(CONNECT_TIMEOUT, ().serve(transport))
            .await
            .map_err(|_| format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))?
            .map_err(|e| format!("cannot connect: {e}"))?;
        let session = Arc::new(session);
        *slot = Some(session.clone());
        Ok(session)
    }

    /// A server's tools, from the cache when `cached` allows and it is fresh.
    async fn list_server(
        &self,
        server: &Server,
        cached: bool,
    ) -> Result<(Vec<McpTool>, bool), String> {
        if let Some((fetched, tools)) = server.tools.lock().await.as_ref()
            && cached
            && fetched.elapsed() < TOOLS_TTL
        {
            return Ok((tools.clone(), true));
        }
        let session = self.session(server).await?;
        let listed = tokio::time::timeout(LIST_TIMEOUT, session.list_all_tools()).await;
        let tools = match listed {
            Ok(Ok(tools)) => tools,
            Ok(Err(e)) => {
                server.session.lock().await.take();
                return Err(format!("listing tools failed: {e}"));
            }
            Err(_) => return Err(format!("no tool list within {}s", LIST_TIMEOUT.as_secs())),
        };
        let tools: Vec<McpTool> = tools
            .into_iter()
            .map(|tool| McpTool {
                server: server.config.name.clone(),
                name: tool.name.to_string(),
                description: tool.description.map(|d| d.to_string()).unwrap_or_default(),
                input_schema: Value::Object((*tool.input_schema).clone()),
            })
            .collect();
        *server.tools.lock().await = Some((Instant::now(), tools.clone()));
        Ok((tools, false))
    }

    /// Every reachable server's tools; unreachable servers are reported, not fatal.
    pub async fn tools(&self) -> Listing {
        let results =
            futures_util::future::join_all(self.servers.iter().map(|s| self.list_server(s, true)))
                .await;
        let mut listing = Listing {
            tools: Vec::new(),
            failures: Vec::new(),
            cache_hit: !self.servers.is_empty(),
        };
        for (server, result) in self.servers.iter().zip(results) {
            match result {
                Ok((tools, cached)) => {
                    listing.tools.extend(tools);
                    listing.cache_hit &= cached;
                }
                Err(error) => {
                    tracing::warn!(server = %server.config.name, %error, "MCP server skipped");
                    listing.cache_hit = false;
                    listing.failures.push((server.config.name.clone(), error));
                }
            }
        }
        listing
    }

    /// Calls a tool; an `Err` is a message for the model.
    pub async fn call(
        &self,
        server: &str,
        tool: &str,
        arguments: Option<serde_json::Map<String, Value>>,
    ) -> Result<String, String> {
        let server = self
            .servers
            .iter()
            .find(|s| s.config.name == server)
            .ok_or_else(|| format!("no MCP server named {server}"))?;
        let session = self.session(server).await?;
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let result = tokio::time::timeout(CALL_TIMEOUT, session.call_tool(params))
            .await
            .map_err(|_| format!("the tool did not answer within {}s", CALL_TIMEOUT.as_secs()))?
            .map_err(|e| format!("the call failed: {e}"))?;
        let text = result
            .content
            .iter()
            .filter_map(|block| block.as_text().map(|t| t.text.as_str()))
            .collect::<Vec<_>>()
            .join("\n");
        let text = if text.is_empty() {
            result
                .structured_content
                .map(|v| v.to_string())
                .unwrap_or_default()
        } else {
            text
        };
        if result.is_error == Some(true) {
            Err(text)
        } else {
            Ok(text)
        }
    }

    /// The servers' health, checked at most every few seconds and never for long.
    pub async fn status(&self) -> McpStatus {
        let mut cached = self.status.lock().await;
        if let Some((checked, status)) = cached.as_ref()
            && checked.elapsed() < STATUS_TTL
        {
            return status.clone();
        }
        let checks = self.servers.iter().map(|server| async move {
            let started = Instant::now();
            // A live check: a cached list would say nothing about the server now.
            let result = self.list_server(server, false).await;
            let latency_ms = started.elapsed().as_millis() as u64;
            let (status, tools_count, error) = match result {
                Ok((tools, _)) => ("healthy", tools.len(), None),
                Err(e) => ("unavailable", 0, Some(e)),
            };
            ServerStatus {
                name: server.config.name.clone(),
                url: server.config.url.clone(),
                status,
                tools_count,
                latency_ms,
                error,
            }
        });
        let status = McpStatus {
            servers: futures_util::future::join_all(checks).await,
            checked_at: chrono::Utc::now(),
        };
        *cached = Some((Instant::now(), status.clone()));
        status
    }
}
