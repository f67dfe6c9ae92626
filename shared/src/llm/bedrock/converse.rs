//! The Converse API's JSON: a prompt in Chat Completions' shape turned into Converse's
//! messages, system blocks and tool configuration, and its answers turned back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::MessageRole;
use crate::llm::{
    Completion, CompletionRequest, FunctionCall, PromptMessage, ToolCall, ToolSpec, Usage,
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConverseRequest<'a> {
    messages: Vec<Message>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemBlock>,
    #[serde(skip_serializing_if = "InferenceConfig::is_empty")]
    inference_config: InferenceConfig,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Message {
    role: Role,
    content: Vec<Block>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    User,
    Assistant,
}

/// A content block as Converse takes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
enum Block {
    Text(String),
    #[serde(rename_all = "camelCase")]
    ToolUse {
        tool_use_id: String,
        name: String,
        input: Value,
    },
    #[serde(rename_all = "camelCase")]
    ToolResult {
        tool_use_id: String,
        content: Vec<ResultText>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct ResultText {
    text: String,
}

#[derive(Serialize)]
struct SystemBlock {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

impl InferenceConfig {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none() && self.temperature.is_none()
    }
}

#[derive(Serialize)]
struct ToolConfig<'a> {
    tools: Vec<Tool<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tool<'a> {
    tool_spec: WireToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireToolSpec<'a> {
    name: &'a str,
    description: &'a str,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: &'a Value,
}

impl<'a> ConverseRequest<'a> {
    pub(super) fn new(request: &'a CompletionRequest) -> Self {
        let offers_tools = !request.tools.is_empty();
        let system = request
            .messages
            .iter()
            .filter(|m| m.role == MessageRole::System && !m.content.trim().is_empty())
            .map(|m| SystemBlock {
                text: m.content.clone(),
            })
            .collect();
        Self {
            messages: messages(&request.messages, offers_tools),
            system,
            inference_config: InferenceConfig {
                max_tokens: request.max_tokens,
                temperature: request.temperature,
            },
            tool_config: offers_tools.then(|| ToolConfig {
                tools: request.tools.iter().map(Tool::new).collect(),
            }),
        }
    }
}

impl<'a> Tool<'a> {
    fn new(spec: &'a ToolSpec) -> Self {
        Self {
            tool_spec: WireToolSpec {
                name: &spec.name,
                description: &spec.description,
                input_schema: InputSchema {
                    json: &spec.parameters,
                },
            },
        }
    }
}

/// Converse's conversation rules, met from a Chat Completions prompt: roles alternate (the
/// results of parallel tool calls are one user message, consecutive messages of one role are
/// merged), it starts with the user (an assistant message left first by trimming the history
/// goes), no text block is blank, and tool blocks appear only when tools are offered (after
/// the tool limit the earlier calls and results are told as text).
fn messages(prompt: &[PromptMessage], offers_tools: bool) -> Vec<Message> {
    let mut messages: Vec<Message> = Vec::new();
    for message in prompt {
        let (role, blocks) = match message.role {
            MessageRole::System => continue,
            MessageRole::Assistant => (Role::Assistant, assistant_blocks(message, offers_tools)),
            MessageRole::Tool => (Role::User, vec![tool_result(message, offers_tools)]),
            MessageRole::User => (
                Role::User,
                text_block(&message.content).into_iter().collect(),
            ),
        };
        if blocks.is_empty() || (messages.is_empty() && role == Role::Assistant) {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(blocks),
            _ => messages.push(Message {
                role,
                content: blocks,
            }),
        }
    }
    messages
}

fn text_block(text: &str) -> Option<Block> {
    (!text.trim().is_empty()).then(|| Block::Text(text.to_owned()))
}

fn assistant_blocks(message: &PromptMessage, offers_tools: bool) -> Vec<Block> {
    let mut blocks: Vec<Block> = text_block(&message.content).into_iter().collect();
    for call in &message.tool_calls {
        blocks.push(if offers_tools {
            Block::ToolUse {
                tool_use_id: call.id.clone(),
                name: call.function.name.clone(),
                // Converse takes the arguments as a JSON object; arguments that were not one
                // were already answered with an error result, which the model reads next.
                input: serde_json::from_str::<Value>(&call.function.arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| Value::Object(Default::default())),
            }
        } else {
            Block::Text(format!(
                "(called the tool {} with {})",
                call.function.name, call.function.arguments
            ))
        });
    }
    blocks
}

fn tool_result(message: &PromptMessage, offers_tools: bool) -> Block {
    let id = message.tool_call_id.clone().unwrap_or_default();
    if offers_tools {
        Block::ToolResult {
            tool_use_id: id,
            content: vec![ResultText {
                // A blank result is refused like a blank text block.
                text: if message.content.trim().is_empty() {
                    "(no output)".into()
                } else {
                    message.content.clone()
                },
            }],
        }
    } else {
        Block::Text(format!("(the tool answered: {})", message.content))
    }
}

/// A Converse answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ConverseResponse {
    output: Output,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Output {
    message: Option<OutputMessage>,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<OutputBlock>,
}

/// A block of an answer; kinds this server does not use (reasoning, images) are skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputBlock {
    text: Option<String>,
    tool_use: Option<OutputToolUse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireUsage {
    input_tokens: u32,
    output_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(usage: WireUsage) -> Self {
        Usage {
            prompt_tokens: usage.input_tokens,
            completion_tokens: usage.output_tokens,
        }
    }
}

impl From<ConverseResponse> for Completion {
    fn from(response: ConverseResponse) -> Self {
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        for block in response
            .output
            .message
            .map(|m| m.content)
            .unwrap_or_default()
        {
            if let Some(text) = block.text {
                content.push_str(&text);
            }
            if let Some(tool) = block.tool_use {
                tool_calls.push(tool_call(
                    tool.tool_use_id,
                    tool.name,
                    tool.input.to_string(),
                ));
            }
        }
        Completion {
            content,
            tool_calls,
            usage: response.usage.map(Usage::from),
            finish_reason: response.stop_reason.as_deref().map(finish_reason),
        }
    }
}

pub(super) fn tool_call(id: String, name: String, arguments: String) -> ToolCall {
    ToolCall {
        id,
        kind: "function".into(),
        function: FunctionCall { name, arguments },
    }
}

/// Converse's stop reason as the finish reason clients already know (Chat Completions'):
/// `stop`, `length`, `tool_calls`, `content_filter`.
pub(super) fn finish_reason(stop_reason: &str) -> String {
    match stop_reason {
        "end_turn" | "stop_sequence" => "stop",
        "tool_use" => "tool_calls",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(messages: Vec<PromptMessage>, tools: Vec<ToolSpec>) -> CompletionRequest {
        CompletionRequest {
            model: "m".into(),
            messages,
            temperature: Some(0.2),
            max_tokens: Some(300),
            tools,
        }
    }

    fn calculator() -> ToolSpec {
        ToolSpec {
            name: "calculator".into(),
            description: "Evaluates arithmetic".into(),
            parameters: json!({"type": "object", "properties": {"expression": {"type": "string"}}}),
        }
    }

    fn tool_turn() -> Vec<PromptMessage> {
        vec![
            PromptMessage::system("Be brief."),
            PromptMessage::user("What is 2+2 and 3+3?"),
            PromptMessage::asking(
                "",
                vec![
                    tool_call(
                        "t1".into(),
                        "calculator".into(),
                        r#"{"expression":"2+2"}"#.into(),
                    ),
                    tool_call(
                        "t2".into(),
                        "calculator".into(),
                        r#"{"expression":"3+3"}"#.into(),
                    ),
                ],
            ),
            PromptMessage::tool_result("t1", "4"),
            PromptMessage::tool_result("t2", "6"),
        ]
    }

    #[test]
    fn system_history_sampling_and_tools_are_mapped_to_converse() {
        let request = request(tool_turn(), vec![calculator()]);
        let wire = serde_json::to_value(ConverseRequest::new(&request)).unwrap();
        assert_eq!(
            wire,
            json!({
                "system": [{"text": "Be brief."}],
                "messages": [
                    {"role": "user", "content": [{"text": "What is 2+2 and 3+3?"}]},
                    {"role": "assistant", "content": [
                        {"toolUse": {"toolUseId": "t1", "name": "calculator", "input": {"expression": "2+2"}}},
                        {"toolUse": {"toolUseId": "t2", "name": "calculator", "input": {"expression": "3+3"}}},
                    ]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "t1", "content": [{"text": "4"}]}},
                        {"toolResult": {"toolUseId": "t2", "content": [{"text": "6"}]}},
                    ]},
                ],
                "inferenceConfig": {"maxTokens": 300, "temperature": 0.2},
                "toolConfig": {"tools": [{"toolSpec": {
                    "name": "calculator",
                    "description": "Evaluates arithmetic",
                    "inputSchema": {"json": {"type": "object", "properties": {"expression": {"type": "string"}}}},
                }}]},
            })
        );
    }

    #[test]
    fn without_tools_on_offer_earlier_calls_and_results_are_told_as_text() {
        let request = request(tool_turn(), Vec::new());
        let wire = serde_json::to_value(ConverseRequest::new(&request)).unwrap();
        assert!(wire.get("toolConfig").is_none(), "{wire}");
        let text = wire.to_string();
        assert!(
            !text.contains("toolUse") && !text.contains("toolResult"),
            "{text}"
        );
        assert!(text.contains("(the tool answered: 6)"), "{text}");
    }

    #[test]
    fn roles_alternate_and_the_conversation_starts_with_the_user() {
        let prompt = vec![
            PromptMessage::assistant("a reply whose question was trimmed away"),
            PromptMessage::user("first question, never answered"),
            PromptMessage::assistant(""),
            PromptMessage::user("second question"),
        ];
        let wire =
            serde_json::to_value(ConverseRequest::new(&request(prompt, Vec::new()))).unwrap();
        assert_eq!(
            wire["messages"],
            json!([{"role": "user", "content": [
                {"text": "first question, never answered"},
                {"text": "second question"},
            ]}])
        );
        assert!(wire.get("system").is_none(), "{wire}");
    }

    #[test]
    fn an_answer_with_text_and_tool_use_is_read_with_its_usage_and_stop_reason() {
        let response: ConverseResponse = serde_json::from_value(json!({
            "output": {"message": {"role": "assistant", "content": [
                {"text": "Let me compute."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "calculator", "input": {"expression": "6*7"}}},
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 31, "outputTokens": 9, "totalTokens": 40},
            "metrics": {"latencyMs": 420},
        }))
        .unwrap();
        let answer = Completion::from(response);
        assert_eq!(answer.content, "Let me compute.");
        assert_eq!(answer.tool_calls[0].id, "tooluse_1");
        assert_eq!(
            answer.tool_calls[0].function.arguments,
            r#"{"expression":"6*7"}"#
        );
        assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            answer.usage,
            Some(Usage {
                prompt_tokens: 31,
                completion_tokens: 9
            })
        );
    }

    #[test]
    fn stop_reasons_become_the_finish_reasons_clients_know() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("tool_use", "tool_calls"),
            ("max_tokens", "length"),
            ("guardrail_intervened", "content_filter"),
            ("content_filtered", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), finish);
        }
    }
}
