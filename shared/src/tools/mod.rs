//! Tools a model can call: the built-ins and those of the configured MCP servers.

pub mod builtin;
pub mod mcp;

use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::llm::{ToolCall, ToolSpec};
pub use builtin::Builtin;
pub use mcp::McpHub;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    Builtin,
    Mcp,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Builtin(Builtin),
    Mcp { server: String, tool: String },
}

/// A tool as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AvailableTool {
    pub name: String,
    pub description: String,
    pub kind: ToolKind,
    pub args_schema: Value,
    target: Target,
}

/// One tool call, run.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRun {
    pub call_id: String,
    pub name: String,
    pub arguments: String,
    pub output: String,
    pub is_error: bool,
    pub duration_ms: u64,
}

/// The tools offered in one turn.
#[derive(Debug, Clone, Default)]
pub struct Toolset {
    tools: Vec<AvailableTool>,
    /// Tools a template asked for that no built-in or reachable MCP server provides.
    pub unavailable: Vec<String>,
    /// Whether the MCP tool lists came from the cache.
    pub cache_hit: bool,
}

/// Tool names as chat providers accept them: `[A-Za-z0-9_-]{1,64}`.
fn wire_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

impl Toolset {
    /// The built-ins, then every reachable MCP server's tools. An MCP tool whose name is
    /// already taken is offered as `<server>__<tool>`.
    pub async fn discover(hub: &McpHub) -> Self {
        let mut tools: Vec<AvailableTool> = Builtin::ALL
            .iter()
            .map(|b| AvailableTool {
                name: b.name().into(),
                description: b.description().into(),
                kind: ToolKind::Builtin,
                args_schema: b.args_schema(),
                target: Target::Builtin(*b),
            })
            .collect();
        let listing = if hub.is_configured() {
            hub.tools().await
        } else {
            mcp::Listing {
                tools: Vec::new(),
                failures: Vec::new(),
                cache_hit: false,
            }
        };
        for tool in listing.tools {
            let mut name = wire_name(&tool.name);
            if tools.iter().any(|t| t.name == name) {
                name = wire_name(&format!("{}__{}", tool.server, tool.name));
            }
            tools.push(AvailableTool {
                name,
                description: tool.description,
                kind: ToolKind::Mcp,
                args_schema: tool.input_schema,
                target: Target::Mcp {
                    server: tool.server,
                    tool: tool.name,
                },
            });
        }
        Self {
            tools,
            unavailable: Vec::new(),
            cache_hit: listing.cache_hit,
        }
    }

    /// Keeps only the named tools; names nothing provides are reported as unavailable.
    pub fn only(mut self, names: &[&str]) -> Self {
        self.unavailable = names
            .iter()
            .filter(|n| !self.tools.iter().any(|t| t.name == **n))
            .map(|n| (*n).to_owned())
            .collect();
        self.tools.retain(|t| names.contains(&t.name.as_str()));
        self
    }

    pub fn tools(&self) -> &[AvailableTool] {
        &self.tools
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .iter()
            .map(|t| ToolSpec {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.args_schema.clone(),
            })
            .collect()
    }

    /// Runs one call. Failures (unknown tool, bad arguments, a tool's own error, a server
    /// that is down) come back as an error result for the model, never as an error here.
    pub async fn run(&self, hub: &McpHub, call: &ToolCall) -> ToolRun {
        let started = Instant::now();
        let name = &call.function.name;
        let arguments = &call.function.arguments;
        let outcome = match self
            .tools
            .iter()
            .find(|t| &t.name == name)
            .map(|t| &t.target)
        {
            None => Err(format!("there is no tool named {name}")),
            Some(Target::Builtin(builtin)) => builtin.run(arguments),
            Some(Target::Mcp { server, tool }) => {
                let parsed = if arguments.trim().is_empty() {
                    Ok(None)
                } else {
                    serde_json::from_str::<serde_json::Map<String, Value>>(arguments)
                        .map(Some)
                        .map_err(|e| format!("invalid arguments: {e}"))
                };
                match parsed {
                    Ok(arguments) => hub.call(server, tool, arguments).await,
                    Err(e) => Err(e),
                }
            }
        };
        let (output, is_error) = match outcome {
            Ok(output) => (output, false),
            Err(error) => (format!("Error: {error}"), true),
        };
        ToolRun {
            call_id: call.id.clone(),
            name: name.clone(),
            arguments: arguments.clone(),
            output,
            is_error,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}
