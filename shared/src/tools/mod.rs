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

/// Under which name a call to a tool that is not offered is run and counted, so that the
/// names a model makes up never become statistics (it is not a valid tool name itself).
pub const UNKNOWN_TOOL: &str = "(unknown)";

/// The most of a tool's output kept: it is stored as a message (DynamoDB items end at
/// 400 KB) and sent back to the model, whose context is far smaller than what a tool can return.
pub const MAX_OUTPUT_BYTES: usize = 16 * 1024;

/// What the model reads when a tool returned nothing: a stored message is never empty.
pub const EMPTY_OUTPUT: &str = "(the tool returned no output)";

/// One tool call, run.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRun {
    pub call_id: String,
    /// The tool that ran, or [`UNKNOWN_TOOL`] when the model named none on offer.
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

/// The longest tool name chat providers accept.
const MAX_NAME_CHARS: usize = 64;

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
        .take(MAX_NAME_CHARS)
        .collect()
}

/// A name for an MCP tool that no tool in `taken` has: its own, else `<server>__<tool>`,
/// else (when cutting to 64 characters or the namespacing itself collides) that with a
/// numbered suffix.
fn unique_name(taken: &[AvailableTool], server: &str, tool: &str) -> String {
    let free = |name: &str| !taken.iter().any(|t| t.name == name);
    let own = wire_name(tool);
    if free(&own) {
        return own;
    }
    let namespaced = wire_name(&format!("{server}__{tool}"));
    if free(&namespaced) {
        return namespaced;
    }
    (2..)
        .map(|n| {
            let suffix = format!("_{n}");
            let stem: String = namespaced
                .chars()
                .take(MAX_NAME_CHARS - suffix.len())
                .collect();
            stem + &suffix
        })
        .find(|name| free(name))
        .expect("some suffix is free")
}

/// The output as the model gets it and the conversation stores it: never empty, and cut
/// (on a character boundary, saying so) past [`MAX_OUTPUT_BYTES`].
fn bounded(output: String) -> String {
    if output.trim().is_empty() {
        return EMPTY_OUTPUT.to_owned();
    }
    if output.len() <= MAX_OUTPUT_BYTES {
        return output;
    }
    let mut end = MAX_OUTPUT_BYTES;
    while !output.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[output cut: the first {end} of {} bytes are shown]",
        &output[..end],
        output.len()
    )
}

impl Toolset {
    /// The built-ins, then every reachable MCP server's tools. An MCP tool whose name is
    /// already taken is offered as `<server>__<tool>`.
    pub async fn discover(hub: &McpHub) -> Self {
        let tools: Vec<AvailableTool> = Builtin::ALL
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
        Self::with_mcp(tools, listing)
    }

    /// The given tools plus the listed MCP tools, each under a name no other tool has.
    fn with_mcp(mut tools: Vec<AvailableTool>, listing: mcp::Listing) -> Self {
        for tool in listing.tools {
            let name = unique_name(&tools, &tool.server, &tool.name);
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
        let offered = self.tools.iter().find(|t| &t.name == name);
        let outcome = match offered.map(|t| &t.target) {
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
            name: offered.map_or(UNKNOWN_TOOL, |t| t.name.as_str()).to_owned(),
            arguments: arguments.clone(),
            output: bounded(output),
            is_error,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FunctionCall;

    fn mcp_tool(server: &str, name: &str) -> mcp::McpTool {
        mcp::McpTool {
            server: server.into(),
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
        }
    }

    fn toolset(listed: Vec<mcp::McpTool>) -> Toolset {
        let tools = Builtin::ALL
            .iter()
            .map(|b| AvailableTool {
                name: b.name().into(),
                description: String::new(),
                kind: ToolKind::Builtin,
                args_schema: b.args_schema(),
                target: Target::Builtin(*b),
            })
            .collect();
        Toolset::with_mcp(
            tools,
            mcp::Listing {
                tools: listed,
                failures: Vec::new(),
                cache_hit: false,
            },
        )
    }

    fn names(toolset: &Toolset) -> Vec<&str> {
        toolset.tools().iter().map(|t| t.name.as_str()).collect()
    }

    fn assert_unique(toolset: &Toolset) {
        let mut seen = names(toolset);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), toolset.tools().len(), "{:?}", names(toolset));
        assert!(seen.iter().all(|n| n.len() <= MAX_NAME_CHARS));
    }

    #[test]
    fn a_namespaced_name_that_is_taken_too_gets_a_numbered_suffix() {
        // `a__calculator` is a tool of server `b`, and server `a` also has a `calculator`.
        let set = toolset(vec![
            mcp_tool("b", "a__calculator"),
            mcp_tool("a", "calculator"),
            mcp_tool("a", "calculator"),
        ]);
        assert_eq!(
            names(&set),
            [
                "calculator",
                "get_time",
                "a__calculator",
                "a__calculator_2",
                "a__calculator_3"
            ]
        );
        assert_unique(&set);
    }

    #[test]
    fn names_cut_to_64_characters_never_collide() {
        let long = "x".repeat(70);
        let set = toolset(vec![
            mcp_tool("s", &format!("{long}1")),
            mcp_tool("s", &format!("{long}2")),
            mcp_tool("t", &format!("{long}3")),
        ]);
        assert_unique(&set);
        assert_eq!(set.tools()[2].name, "x".repeat(64));
        assert_eq!(set.tools()[3].name, format!("s__{}", "x".repeat(61)));
        assert_eq!(set.tools()[4].name, format!("t__{}", "x".repeat(61)));
        let clashing_servers = toolset(vec![
            mcp_tool("s", &long),
            mcp_tool(&"s".repeat(70), &long),
            mcp_tool(&"s".repeat(70), &long),
        ]);
        assert_unique(&clashing_servers);
    }

    #[test]
    fn output_is_never_empty_and_never_longer_than_the_cap() {
        assert_eq!(bounded(String::new()), EMPTY_OUTPUT);
        assert_eq!(bounded(" \n".into()), EMPTY_OUTPUT);
        assert_eq!(bounded("42".into()), "42");
        let huge = "é".repeat(MAX_OUTPUT_BYTES);
        let cut = bounded(huge.clone());
        let (kept, marker) = cut.split_once("\n[output cut").unwrap();
        assert!(huge.starts_with(kept) && kept.len() <= MAX_OUTPUT_BYTES);
        assert!(
            marker.contains(&format!("of {} bytes", huge.len())),
            "{marker}"
        );
    }

    #[tokio::test]
    async fn a_call_to_a_tool_not_on_offer_runs_under_the_unknown_name() {
        // No MCP server is configured, so the hub's client never sends anything.
        crate::install_crypto_provider();
        let hub = McpHub::new(&[], reqwest::Client::new());
        let set = toolset(Vec::new());
        let call = |name: &str| ToolCall {
            id: "c".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: r#"{"expression": "2+3"}"#.into(),
            },
        };
        let made_up = set.run(&hub, &call("made_up_tool_123")).await;
        assert_eq!(made_up.name, UNKNOWN_TOOL);
        assert!(made_up.is_error && made_up.output.contains("made_up_tool_123"));
        let real = set.run(&hub, &call("calculator")).await;
        assert_eq!(
            (real.name.as_str(), real.output.as_str()),
            ("calculator", "5")
        );
    }
}
