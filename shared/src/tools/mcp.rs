//! MCP servers over the Streamable HTTP transport, through rmcp.
//!
//! Sessions are opened on first use and kept for the life of the process; tool lists are
//! cached briefly. Every call is bounded in time (`MCP_CONNECT_TIMEOUT_MS`, `MCP_TIMEOUT_MS`),
//! and a server that is down is skipped with a warning. A failure to reach a server is
//! remembered briefly too, so a server that accepts connections but never answers costs one
//! turn the connect timeout, not every turn.

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

const TOOLS_TTL: Duration = Duration::from_secs(60);
const STATUS_TTL: Duration = Duration::from_secs(10);
/// How long turns skip a server that could not be reached; the status check still tries.
const FAILURE_TTL: Duration = Duration::from_secs(10);

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
    failure: std::sync::Mutex<Option<(Instant, String)>>,
}

impl Server {
    fn recent_failure(&self) -> Option<String> {
        let failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FAILURE_TTL)
            .map(|(at, error)| {
                format!(
                    "{error} ({} s ago; not retried yet)",
                    at.elapsed().as_secs()
                )
            })
    }

    fn record(&self, outcome: Result<(), &str>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = outcome
            .err()
            .map(|error| (Instant::now(), error.to_owned()));
    }
}

fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
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
                    failure: std::sync::Mutex::new(None),
                })
                .collect(),
            http,
            status: Mutex::new(None),
        }
    }

    pub fn is_configured(&self) -> bool {
        !self.servers.is_empty()
    }

    /// The server's session, opened if need be. Unless `live`, a recent failure to open one
    /// is returned at once; it is checked under the session lock, so turns that queued
    /// behind a failing attempt do not each try again.
    async fn session(&self, server: &Server, live: bool) -> Result<Session, String> {
        let mut slot = server.session.lock().await;
        if let Some(session) = slot.as_ref()
            && !session.is_closed()
        {
            return Ok(session.clone());
        }
        if !live && let Some(error) = server.recent_failure() {
            return Err(error);
        }
        // Configuration has checked every header, so none is dropped here.
        let headers = server
            .config
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.parse().ok()?, value.expose().parse().ok()?)))
            .collect::<HashMap<_, _>>();
        let config = StreamableHttpClientTransportConfig::with_uri(server.config.url.as_str())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        let timeout = server.config.connect_timeout;
        let opened = match tokio::time::timeout(timeout, ().serve(transport)).await {
            Err(_) => Err(format!("no answer within {}", millis(timeout))),
            Ok(Err(e)) => Err(format!("cannot connect: {e}")),
            Ok(Ok(session)) => Ok(Arc::new(session)),
        };
        match opened {
            Ok(session) => {
                *slot = Some(session.clone());
                Ok(session)
            }
            Err(error) => {
                server.record(Err(&error));
                Err(error)
            }
        }
    }

    /// A server's tools, from the cache when `cached` allows and it is fresh. A recent
    /// failure is also served from the cache unless the check is live (`cached` false).
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
        let session = self.session(server, !cached).await?;
        let timeout = server.config.connect_timeout;
        let listed = tokio::time::timeout(timeout, session.list_all_tools()).await;
        let tools = match listed {
            Ok(Ok(tools)) => tools,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => format!("listing tools failed: {e}"),
                    _ => format!("no tool list within {}", millis(timeout)),
                };
                // A session that cannot list its tools is of no use; the next try opens another.
                server.session.lock().await.take();
                server.record(Err(&error));
                return Err(error);
            }
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
        server.record(Ok(()));
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
        let session = self.session(server, false).await?;
        let mut params = CallToolRequestParams::new(tool.to_owned());
        if let Some(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        let timeout = server.config.call_timeout;
        let result = tokio::time::timeout(timeout, session.call_tool(params))
            .await
            .map_err(|_| format!("the tool did not answer within {}", millis(timeout)))?
            .map_err(|e| format!("the call failed: {e}"))?;
        // The model reads text only; other content is named so it knows something was there.
        let text = result
            .content
            .iter()
            .map(|block| match block.as_text() {
                Some(text) => text.text.clone(),
                None if block.as_image().is_some() => "[image content not shown]".to_owned(),
                None if block.as_audio().is_some() => "[audio content not shown]".to_owned(),
                None => "[resource content not shown]".to_owned(),
            })
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use crate::config::{Config, ConfigError};

    fn parse(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("TABLE_NAME", "t"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        Config::from_vars(&vars)
    }

    fn reason(err: ConfigError) -> String {
        match err {
            ConfigError::Invalid { name, reason } => format!("{name}: {reason}"),
            other => panic!("not an invalid value: {other}"),
        }
    }

    #[test]
    fn two_servers_of_one_name_fail_the_start_naming_mcp_servers() {
        let err = parse(&[(
            "MCP_SERVERS",
            r#"[{"name": "shop", "url": "http://a/mcp"}, {"name": "shop", "url": "http://b/mcp"}]"#,
        )])
        .unwrap_err();
        let reason = reason(err);
        assert!(
            reason.starts_with("MCP_SERVERS:") && reason.contains("shop"),
            "{reason}"
        );
    }

    #[test]
    fn a_header_that_is_not_valid_http_fails_the_start_without_showing_its_value() {
        for headers in [
            r#"{"bad name": "x"}"#,
            r#"{"authorization": "Bearer top-secret\n"}"#,
        ] {
            let servers =
                format!(r#"[{{"name": "s", "url": "http://a/mcp", "headers": {headers}}}]"#);
            let reason = reason(parse(&[("MCP_SERVERS", &servers)]).unwrap_err());
            assert!(reason.starts_with("MCP_SERVERS:"), "{reason}");
            assert!(!reason.contains("top-secret"), "{reason}");
        }
        let fine = parse(&[(
            "MCP_SERVERS",
            r#"[{"name": "s", "url": "http://a/mcp", "headers": {"Authorization": "Bearer t"}}]"#,
        )])
        .unwrap();
        assert_eq!(fine.mcp_servers[0].headers[0].1.expose(), "Bearer t");
    }

    #[test]
    fn timeouts_default_below_the_functions_limit_and_can_be_set() {
        let servers = r#"[{"name": "s", "url": "http://a/mcp"}]"#;
        let defaults = parse(&[("MCP_SERVERS", servers)]).unwrap();
        let server = &defaults.mcp_servers[0];
        assert!(server.call_timeout + server.connect_timeout < Duration::from_secs(29));
        let set = parse(&[
            ("MCP_SERVERS", servers),
            ("MCP_TIMEOUT_MS", "1500"),
            ("MCP_CONNECT_TIMEOUT_MS", "250"),
        ])
        .unwrap();
        assert_eq!(set.mcp_servers[0].call_timeout, Duration::from_millis(1500));
        assert_eq!(
            set.mcp_servers[0].connect_timeout,
            Duration::from_millis(250)
        );
        for bad in ["0", "soon"] {
            let err = parse(&[("MCP_SERVERS", servers), ("MCP_TIMEOUT_MS", bad)]).unwrap_err();
            assert!(reason(err).starts_with("MCP_TIMEOUT_MS:"));
        }
    }
}
