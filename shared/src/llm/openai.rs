//! An OpenAI-compatible Chat Completions client (OpenAI, Ollama, vLLM, LiteLLM, ...).

use std::time::Duration;

use backon::Retryable;
use eventsource_stream::Eventsource;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::relay::{Events, Wire, relay};
use super::{
    Completion, CompletionRequest, CompletionStream, FunctionCall, LlmClient, LlmError,
    PromptMessage, StreamEvent, ToolCall, ToolSpec, Usage, backoff,
};
use crate::config::Secret;

/// More parallel tool calls than any model asks for in one answer: a fragment indexed past
/// this is a malformed stream, not a reason to allocate that many calls.
const MAX_STREAMED_TOOL_CALLS: usize = 128;

pub struct OpenAiCompatible {
    http: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
    request_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: &'a [PromptMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: &'a ToolSpec,
}

#[derive(Serialize)]
struct EmbeddingRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbeddingResponse {
    data: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: Option<WireMessage>,
    delta: Option<WireDelta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCall>,
}

#[derive(Deserialize)]
struct WireDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallFragment>,
}

/// Streamed tool calls arrive in pieces: the id and name first, the arguments in parts.
#[derive(Deserialize)]
struct ToolCallFragment {
    #[serde(default)]
    index: usize,
    id: Option<String>,
    function: Option<FunctionFragment>,
}

#[derive(Deserialize)]
struct FunctionFragment {
    name: Option<String>,
    arguments: Option<String>,
}

impl OpenAiCompatible {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        api_key: Option<Secret>,
        request_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key,
            request_timeout,
            idle_timeout,
        }
    }

    fn transport_error(&self, err: &reqwest::Error) -> LlmError {
        if err.is_timeout() {
            LlmError::Timeout {
                base_url: self.base_url.clone(),
            }
        } else {
            LlmError::Unreachable {
                base_url: self.base_url.clone(),
                reason: without_url(err),
            }
        }
    }

    fn protocol_error(&self, reason: impl Into<String>) -> LlmError {
        LlmError::Protocol {
            base_url: self.base_url.clone(),
            reason: reason.into(),
        }
    }

    /// Posts `body` to `path` until the provider accepts it, retrying what may pass on a retry.
    async fn post<T: Serialize + Sync>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<reqwest::Response, LlmError> {
        let attempt = || async {
            let mut call = self
                .http
                .post(format!("{}/{path}", self.base_url))
                .json(body);
            if let Some(key) = &self.api_key {
                call = call.bearer_auth(key.expose());
            }
            let response = call.send().await.map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body = response.text().await.unwrap_or_default();
            let message = upstream_message(&body);
            Err(match status.as_u16() {
                429 => LlmError::RateLimited {
                    base_url: self.base_url.clone(),
                },
                code if blames_the_input(code, &body) => LlmError::Rejected {
                    status: code,
                    message,
                },
                // Anything else the provider refuses (a wrong model name, a base URL without
                // its /v1, a bad key, a parameter it does not take) is this server's
                // configuration, not the client's message.
                code => LlmError::Upstream {
                    base_url: self.base_url.clone(),
                    status: code,
                    message,
                },
            })
        };
        attempt.retry(backoff()).when(LlmError::is_transient).await
    }

    async fn send(
        &self,
        request: &CompletionRequest,
        stream: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let body = WireRequest {
            model: &request.model,
            messages: &request.messages,
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            stream,
            stream_options: stream.then_some(StreamOptions {
                include_usage: true,
            }),
            tools: request
                .tools
                .iter()
                .map(|function| WireTool {
                    kind: "function",
                    function,
                })
                .collect(),
        };
        self.post("chat/completions", &body).await
    }

    /// Reads a whole JSON response within the request timeout.
    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        response: impl std::future::Future<Output = Result<reqwest::Response, LlmError>>,
    ) -> Result<T, LlmError> {
        let call = async {
            // The provider answered and then broke off mid-body: a malformed answer (502),
            // not an unreachable provider, and not worth a retry.
            let bytes = response.await?.bytes().await.map_err(|e| {
                if e.is_timeout() {
                    self.transport_error(&e)
                } else {
                    self.protocol_error(format!("the answer broke off: {}", without_url(&e)))
                }
            })?;
            serde_json::from_slice::<T>(&bytes).map_err(|e| self.protocol_error(e.to_string()))
        };
        tokio::time::timeout(self.request_timeout, call)
            .await
            .map_err(|_| LlmError::Timeout {
                base_url: self.base_url.clone(),
            })?
    }
}

/// The provider's own error message if it sent one in the usual shape, else the start of the body.
fn upstream_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Whether a refusal is about the client's input, judged from the status and the provider's
/// own words.
fn blames_the_input(status: u16, body: &str) -> bool {
    match status {
        413 => true,
        400 | 422 => super::blames_the_input(body),
        _ => false,
    }
}

/// reqwest's messages embed the URL, which can carry credentials; the base URL is named apart.
pub(super) fn without_url(err: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(err);
    let mut reason = String::from(if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    });
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason
}

#[async_trait::async_trait]
impl LlmClient for OpenAiCompatible {
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let wire: WireResponse = self.read_json(self.send(request, false)).await?;
        let choice = wire
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| self.protocol_error("no choices in the response"))?;
        let (content, tool_calls) = choice
            .message
            .map(|m| (m.content.unwrap_or_default(), m.tool_calls))
            .unwrap_or_default();
        Ok(Completion {
            content,
            tool_calls,
            usage: wire.usage,
            finish_reason: choice.finish_reason,
        })
    }

    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let body = EmbeddingRequest {
            model,
            input: inputs,
        };
        let mut wire: EmbeddingResponse = self.read_json(self.post("embeddings", &body)).await?;
        if wire.data.len() != inputs.len() {
            return Err(self.protocol_error(format!(
                "{} embeddings for {} inputs",
                wire.data.len(),
                inputs.len()
            )));
        }
        wire.data.sort_by_key(|e| e.index);
        Ok(wire.data.into_iter().map(|e| e.embedding).collect())
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<CompletionStream, LlmError> {
        let response = tokio::time::timeout(self.idle_timeout, self.send(request, true))
            .await
            .map_err(|_| LlmError::Timeout {
                base_url: self.base_url.clone(),
            })??;
        Ok(Box::pin(self.parse_stream(response.bytes_stream())))
    }
}

/// What an OpenAI-compatible answer's Server-Sent Events mean, with the tool calls their
/// fragments assemble.
struct Chunks {
    base_url: String,
    /// Tool calls being assembled from their fragments, by index.
    calls: Vec<ToolCall>,
    finished: bool,
}

impl Chunks {
    /// Hands on the tool calls assembled so far, once.
    fn flush_calls(&mut self, events: &mut Events) {
        if !self.calls.is_empty() {
            events.push(StreamEvent::ToolCalls(std::mem::take(&mut self.calls)));
        }
    }
}

impl Wire for Chunks {
    type Piece = eventsource_stream::Event;

    fn decode(&mut self, event: Self::Piece, events: &mut Events) -> Result<(), LlmError> {
        if event.data.trim() == "[DONE]" {
            // Some providers end with `[DONE]` and no finish reason: the calls assembled so
            // far are still the model's answer.
            self.flush_calls(events);
            events.close();
            return Ok(());
        }
        let chunk = serde_json::from_str::<WireResponse>(&event.data)
            .map_err(|e| self.protocol(format!("unreadable chunk ({e})")))?;
        for choice in chunk.choices {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    events.push(StreamEvent::Delta(text));
                }
                for fragment in delta.tool_calls {
                    merge_fragment(&mut self.calls, fragment).map_err(|r| self.protocol(r))?;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finished = true;
                self.flush_calls(events);
                events.push(StreamEvent::Finish(reason));
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(StreamEvent::Usage(usage));
        }
        Ok(())
    }

    fn timed_out(&self) -> LlmError {
        LlmError::Timeout {
            base_url: self.base_url.clone(),
        }
    }

    fn protocol(&self, reason: String) -> LlmError {
        LlmError::Protocol {
            base_url: self.base_url.clone(),
            reason,
        }
    }

    fn finish(&mut self, events: &mut Events) -> bool {
        self.flush_calls(events);
        self.finished
    }
}

impl OpenAiCompatible {
    /// Turns the provider's SSE chunks into stream events. Silence longer than the idle timeout,
    /// a dropped connection or a chunk that does not parse ends the stream with an error.
    fn parse_stream<B>(
        &self,
        bytes: B,
    ) -> impl Stream<Item = Result<StreamEvent, LlmError>> + Send + use<B>
    where
        B: Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
    {
        let chunks = Chunks {
            base_url: self.base_url.clone(),
            calls: Vec::new(),
            finished: false,
        };
        relay(bytes.eventsource(), self.idle_timeout, chunks)
    }
}

fn merge_fragment(calls: &mut Vec<ToolCall>, fragment: ToolCallFragment) -> Result<(), String> {
    if fragment.index >= MAX_STREAMED_TOOL_CALLS {
        return Err(format!(
            "tool call index {} is beyond the {MAX_STREAMED_TOOL_CALLS} calls an answer may hold",
            fragment.index
        ));
    }
    while calls.len() <= fragment.index {
        calls.push(ToolCall {
            id: String::new(),
            kind: "function".into(),
            function: FunctionCall {
                name: String::new(),
                arguments: String::new(),
            },
        });
    }
    let call = &mut calls[fragment.index];
    if let Some(id) = fragment.id {
        call.id = id;
    }
    if let Some(function) = fragment.function {
        if let Some(name) = function.name {
            call.function.name.push_str(&name);
        }
        if let Some(arguments) = function.arguments {
            call.function.arguments.push_str(&arguments);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
