//! MEASUREMENT ONLY (BENCHMARKS.md, "Bedrock: the SDK or signing"): the same client through
//! aws-sdk-bedrockruntime instead of aws-sigv4 over reqwest, built to compare binary size and
//! init time; reverted by the commit after the one that adds it.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{
    ProvideCredentials, SharedCredentialsProvider, future::ProvideCredentials as Provided,
};
use aws_sdk_bedrockruntime as sdk;
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::{Blob, Document, Number};
use futures_util::{StreamExt, TryStreamExt};
use sdk::types as t;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::converse::{Block, ConverseRequest, Role, finish_reason, tool_call};
use super::errors::Call;
use crate::config::{AwsCredentials, BedrockConfig};
use crate::llm::{
    Completion, CompletionRequest, CompletionStream, LlmClient, LlmError, StreamEvent, ToolCall,
    Usage,
};

pub struct SdkBedrock {
    client: sdk::Client,
    provider: String,
    config: BedrockConfig,
    request_timeout: Duration,
}

#[derive(Debug)]
struct LazyChain {
    region: String,
    chain: OnceCell<SharedCredentialsProvider>,
}

impl ProvideCredentials for LazyChain {
    fn provide_credentials<'a>(&'a self) -> Provided<'a>
    where
        Self: 'a,
    {
        Provided::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .region(aws_config::Region::new(self.region.clone()))
                        .http_client(http_client())
                        .load()
                        .await
                        .credentials_provider()
                        .expect("the default chain")
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Number::NegInt(i)
        } else {
            Number::Float(n.as_f64().unwrap_or_default())
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(document).collect()),
        Value::Object(o) => {
            Document::Object(o.iter().map(|(k, v)| (k.clone(), document(v))).collect())
        }
    }
}

fn value(document: &Document) -> Value {
    match document {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(Number::PosInt(u)) => (*u).into(),
        Document::Number(Number::NegInt(i)) => (*i).into(),
        Document::Number(Number::Float(f)) => (*f).into(),
        Document::String(s) => Value::String(s.clone()),
        Document::Array(a) => Value::Array(a.iter().map(value).collect()),
        Document::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), value(v))).collect())
        }
    }
}

fn block(block: Block) -> t::ContentBlock {
    match block {
        Block::Text(text) => t::ContentBlock::Text(text),
        Block::ToolUse {
            tool_use_id,
            name,
            input,
        } => t::ContentBlock::ToolUse(
            t::ToolUseBlock::builder()
                .tool_use_id(tool_use_id)
                .name(name)
                .input(document(&input))
                .build()
                .expect("all fields set"),
        ),
        Block::ToolResult {
            tool_use_id,
            content,
        } => t::ContentBlock::ToolResult(
            t::ToolResultBlock::builder()
                .tool_use_id(tool_use_id)
                .set_content(Some(
                    content
                        .into_iter()
                        .map(|c| t::ToolResultContentBlock::Text(c.text))
                        .collect(),
                ))
                .build()
                .expect("all fields set"),
        ),
    }
}

struct Parts {
    messages: Vec<t::Message>,
    system: Vec<t::SystemContentBlock>,
    inference: t::InferenceConfiguration,
    tools: Option<t::ToolConfiguration>,
}

fn parts(request: &CompletionRequest) -> Parts {
    let wire = ConverseRequest::new(request);
    let messages = wire
        .messages
        .into_iter()
        .map(|m| {
            t::Message::builder()
                .role(match m.role {
                    Role::User => t::ConversationRole::User,
                    Role::Assistant => t::ConversationRole::Assistant,
                })
                .set_content(Some(m.content.into_iter().map(block).collect()))
                .build()
                .expect("all fields set")
        })
        .collect();
    let system = wire
        .system
        .into_iter()
        .map(|s| t::SystemContentBlock::Text(s.text))
        .collect();
    let inference = t::InferenceConfiguration::builder()
        .set_max_tokens(request.max_tokens.map(|m| m as i32))
        .set_temperature(request.temperature.map(|t| t as f32))
        .build();
    let tools = (!request.tools.is_empty()).then(|| {
        t::ToolConfiguration::builder()
            .set_tools(Some(
                request
                    .tools
                    .iter()
                    .map(|spec| {
                        t::Tool::ToolSpec(
                            t::ToolSpecification::builder()
                                .name(&spec.name)
                                .description(&spec.description)
                                .input_schema(t::ToolInputSchema::Json(document(&spec.parameters)))
                                .build()
                                .expect("all fields set"),
                        )
                    })
                    .collect(),
            ))
            .build()
            .expect("all fields set")
    });
    Parts {
        messages,
        system,
        inference,
        tools,
    }
}

fn usage(usage: &t::TokenUsage) -> Usage {
    Usage {
        prompt_tokens: usage.input_tokens() as u32,
        completion_tokens: usage.output_tokens() as u32,
    }
}

impl SdkBedrock {
    pub fn new(
        _http: reqwest::Client,
        provider: &str,
        config: &BedrockConfig,
        credentials: Option<&AwsCredentials>,
        request_timeout: Duration,
        _idle_timeout: Duration,
    ) -> Self {
        let credentials = match credentials {
            Some(given) => SharedCredentialsProvider::new(Credentials::new(
                given.access_key_id.clone(),
                given.secret_access_key.expose(),
                given.session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "environment",
            )),
            None => SharedCredentialsProvider::new(LazyChain {
                region: config.region.clone(),
                chain: OnceCell::new(),
            }),
        };
        let sdk_config = sdk::Config::builder()
            .behavior_version(sdk::config::BehaviorVersion::latest())
            .region(sdk::config::Region::new(config.region.clone()))
            .endpoint_url(&config.endpoint_url)
            .credentials_provider(credentials)
            .http_client(http_client())
            .build();
        Self {
            client: sdk::Client::from_conf(sdk_config),
            provider: provider.to_owned(),
            config: config.clone(),
            request_timeout,
        }
    }

    fn call(&self, model: &str) -> Call {
        Call {
            provider: self.provider.clone(),
            endpoint: self.config.endpoint_url.clone(),
            region: self.config.region.clone(),
            model: model.to_owned(),
        }
    }
}

fn error<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    call: &Call,
    err: SdkError<E, R>,
) -> LlmError {
    match &err {
        SdkError::ServiceError(service) => call.exception(
            service.err().code().unwrap_or("error"),
            None,
            service.err().message().unwrap_or_default(),
        ),
        SdkError::TimeoutError(_) => call.timeout(),
        SdkError::DispatchFailure(_) => LlmError::Unreachable {
            base_url: call.endpoint.clone(),
            reason: "dispatch failure".into(),
        },
        _ => call.protocol(format!("{err:?}")),
    }
}

#[async_trait::async_trait]
impl LlmClient for SdkBedrock {
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let call = self.call(&request.model);
        let parts = parts(request);
        let sent = self
            .client
            .converse()
            .model_id(&request.model)
            .set_messages(Some(parts.messages))
            .set_system(Some(parts.system))
            .inference_config(parts.inference)
            .set_tool_config(parts.tools)
            .send();
        let output = tokio::time::timeout(self.request_timeout, sent)
            .await
            .map_err(|_| call.timeout())?
            .map_err(|e| error(&call, e))?;
        let mut content = String::new();
        let mut tool_calls = Vec::new();
        if let Some(t::ConverseOutput::Message(message)) = output.output() {
            for block in message.content() {
                match block {
                    t::ContentBlock::Text(text) => content.push_str(text),
                    t::ContentBlock::ToolUse(tool) => tool_calls.push(tool_call(
                        tool.tool_use_id().to_owned(),
                        tool.name().to_owned(),
                        value(tool.input()).to_string(),
                    )),
                    _ => {}
                }
            }
        }
        Ok(Completion {
            content,
            tool_calls,
            usage: output.usage().map(usage),
            finish_reason: Some(finish_reason(output.stop_reason().as_str())),
        })
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<CompletionStream, LlmError> {
        let call = self.call(&request.model);
        let parts = parts(request);
        let output = self
            .client
            .converse_stream()
            .model_id(&request.model)
            .set_messages(Some(parts.messages))
            .set_system(Some(parts.system))
            .inference_config(parts.inference)
            .set_tool_config(parts.tools)
            .send()
            .await
            .map_err(|e| error(&call, e))?;
        let state = (output.stream, call, Vec::<Option<ToolCall>>::new(), false);
        let events = futures_util::stream::unfold(
            state,
            |(mut receiver, call, mut calls, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let event = match receiver.recv().await {
                        Ok(Some(event)) => event,
                        Ok(None) => return None,
                        Err(e) => {
                            return Some((
                                vec![Err(error(&call, e))],
                                (receiver, call, calls, true),
                            ));
                        }
                    };
                    let out: Vec<Result<StreamEvent, LlmError>> = match event {
                        t::ConverseStreamOutput::ContentBlockStart(start) => {
                            if let Some(t::ContentBlockStart::ToolUse(tool)) = start.start() {
                                let index = start.content_block_index() as usize;
                                if calls.len() <= index {
                                    calls.resize(index + 1, None);
                                }
                                calls[index] = Some(tool_call(
                                    tool.tool_use_id().to_owned(),
                                    tool.name().to_owned(),
                                    String::new(),
                                ));
                            }
                            continue;
                        }
                        t::ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta() {
                            Some(t::ContentBlockDelta::Text(text)) => {
                                vec![Ok(StreamEvent::Delta(text.clone()))]
                            }
                            Some(t::ContentBlockDelta::ToolUse(tool)) => {
                                let index = delta.content_block_index() as usize;
                                if let Some(Some(c)) = calls.get_mut(index) {
                                    c.function.arguments.push_str(tool.input());
                                }
                                continue;
                            }
                            _ => continue,
                        },
                        t::ConverseStreamOutput::MessageStop(stop) => {
                            let done: Vec<ToolCall> = calls.drain(..).flatten().collect();
                            let mut out = Vec::new();
                            if !done.is_empty() {
                                out.push(Ok(StreamEvent::ToolCalls(done)));
                            }
                            out.push(Ok(StreamEvent::Finish(finish_reason(
                                stop.stop_reason().as_str(),
                            ))));
                            out
                        }
                        t::ConverseStreamOutput::Metadata(metadata) => match metadata.usage() {
                            Some(u) => vec![Ok(StreamEvent::Usage(usage(u)))],
                            None => continue,
                        },
                        _ => continue,
                    };
                    return Some((out, (receiver, call, calls, false)));
                }
            },
        );
        Ok(Box::pin(events.flat_map(futures_util::stream::iter)))
    }

    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let call = self.call(model);
        let requests: Vec<_> = inputs
            .iter()
            .map(|text| {
                let call = call.clone();
                let body = serde_json::json!({ "inputText": text }).to_string();
                let sent = self
                    .client
                    .invoke_model()
                    .model_id(model)
                    .content_type("application/json")
                    .accept("application/json")
                    .body(Blob::new(body))
                    .send();
                async move {
                    let output = sent.await.map_err(|e| error(&call, e))?;
                    let parsed: Value = serde_json::from_slice(output.body().as_ref())
                        .map_err(|e| call.protocol(e.to_string()))?;
                    Ok(parsed["embedding"]
                        .as_array()
                        .map(|v| {
                            v.iter()
                                .filter_map(|x| x.as_f64())
                                .map(|x| x as f32)
                                .collect()
                        })
                        .unwrap_or_default())
                }
            })
            .collect();
        futures_util::stream::iter(requests)
            .buffered(8)
            .try_collect()
            .await
    }
}
