//! Language-model providers: a trait for what the chat needs, an OpenAI-compatible Chat
//! Completions implementation, Amazon Bedrock's Converse API, and the registry of named
//! providers with their prices.

mod bedrock;
mod openai;
mod providers;
mod relay;
mod tokens;

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::domain::MessageRole;

pub use bedrock::Bedrock;
pub use openai::OpenAiCompatible;
pub use providers::{Provider, Providers};
pub use tokens::{estimate_tokens, estimated_usage};

/// One message of a prompt, in the Chat Completions wire shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptMessage {
    pub role: MessageRole,
    pub content: String,
    /// The calls an assistant message asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl PromptMessage {
    pub fn new(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(MessageRole::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(MessageRole::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(MessageRole::Assistant, content)
    }

    /// An assistant message asking for tool calls (with whatever text came with them).
    pub fn asking(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: calls,
            ..Self::assistant(content)
        }
    }

    /// A tool's output, answering the call `call_id`.
    pub fn tool_result(call_id: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(call_id.into()),
            ..Self::new(MessageRole::Tool, output)
        }
    }
}

/// A function the model asked to call; `arguments` is JSON text as the model wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

fn function_kind() -> String {
    "function".into()
}

/// A tool offered to the model: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    pub model: String,
    pub messages: Vec<PromptMessage>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    pub tools: Vec<ToolSpec>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
}

/// What a streaming completion yields, in order: deltas, the tool calls the model asked for
/// (assembled from their fragments), then the finish reason and usage.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Delta(String),
    ToolCalls(Vec<ToolCall>),
    Finish(String),
    Usage(Usage),
}

pub type CompletionStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

#[async_trait::async_trait]
pub trait LlmClient: Send + Sync {
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError>;
    /// Opens a stream; failures before the first byte of the answer are retried inside.
    async fn stream(&self, request: &CompletionRequest) -> Result<CompletionStream, LlmError>;
    /// One embedding vector per input, in order.
    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError>;
}

/// Why a completion failed, told apart by whose fault it is.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("the model provider at {base_url} is unreachable: {reason}")]
    Unreachable { base_url: String, reason: String },
    #[error("the model provider at {base_url} did not answer in time")]
    Timeout { base_url: String },
    #[error("the model provider at {base_url} is rate limiting")]
    RateLimited { base_url: String },
    /// The provider refused the request itself (the prompt, the parameters, the model name).
    #[error("the model provider rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// The provider failed, or refused our credentials.
    #[error("the model provider at {base_url} failed ({status}): {message}")]
    Upstream {
        base_url: String,
        status: u16,
        message: String,
    },
    #[error("the model provider at {base_url} sent a malformed response: {reason}")]
    Protocol { base_url: String, reason: String },
    /// The provider will not serve this model to this deployment (access not granted, no
    /// such model, the model not ready): for whoever operates it to fix, not the client.
    #[error("the model provider {provider} cannot serve {model}: {reason}")]
    Unavailable {
        provider: String,
        model: String,
        reason: String,
    },
}

/// Attempts after the first when a provider fails before answering.
const RETRIES: usize = 2;

/// How a failed attempt is retried: twice, with jittered exponential backoff.
fn backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(RETRIES)
        .with_jitter()
}

/// Whether a provider's words about a refusal blame the client's input (a prompt longer than
/// the model's context, a message its content policy refuses) rather than this server.
fn blames_the_input(message: &str) -> bool {
    const INPUT_FAULTS: &[&str] = &[
        "context_length_exceeded",
        "context length",
        "context window",
        "maximum context",
        "too many tokens",
        "too many input tokens",
        "prompt is too long",
        "input is too long",
        "content_policy",
        "content_filter",
        "content management policy",
    ];
    let message = message.to_lowercase();
    INPUT_FAULTS.iter().any(|fault| message.contains(fault))
}

impl LlmError {
    /// Worth another attempt: nothing was generated and the provider may recover.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::RateLimited { .. } => true,
            Self::Upstream { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// What a client may read about this failure: never a provider's credentials or body.
    pub fn client_message(&self) -> String {
        match self {
            Self::Rejected { .. } => self.to_string(),
            Self::Upstream {
                base_url,
                status: status @ (401 | 403),
                ..
            } => format!(
                "The model provider at {base_url} refused this server's credentials (status {status}): check its API key."
            ),
            Self::Upstream {
                base_url,
                status: 404,
                ..
            } => format!(
                "The model provider at {base_url} answered 404: check the model name, and that the base URL includes its version path (such as /v1)."
            ),
            Self::Upstream {
                base_url, status, ..
            } => format!("The model provider at {base_url} failed with status {status}."),
            other => format!("{}.", capitalise(&other.to_string())),
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
