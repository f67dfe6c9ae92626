//! Amazon Bedrock's Runtime API: Converse for answers, ConverseStream for streamed ones and
//! InvokeModel for Titan embeddings, each request signed with SigV4 from AWS's credential
//! chain and sent through the process's one HTTP client.

mod converse;
mod errors;
mod signing;
mod stream;

use std::time::Duration;

use backon::Retryable;
use futures_util::{StreamExt, TryStreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::{
    Completion, CompletionRequest, CompletionStream, LlmClient, LlmError, StreamEvent, backoff,
};
use crate::config::{AwsCredentials, BedrockConfig};
use converse::{ConverseRequest, ConverseResponse};
use errors::Call;
use signing::Signer;

/// Titan embeds one text per request; this many are in flight at once.
const CONCURRENT_EMBEDDINGS: usize = 8;

/// A model id is one path segment: an inference profile's ARN has `:` and `/` in it. Encoded
/// as the AWS SDKs do (all but unreserved characters), which is also what is signed.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub struct Bedrock {
    http: reqwest::Client,
    provider: String,
    config: BedrockConfig,
    signer: Signer,
    request_timeout: Duration,
    idle_timeout: Duration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TitanRequest<'a> {
    input_text: &'a str,
}

#[derive(Deserialize)]
struct TitanResponse {
    embedding: Vec<f32>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, alias = "Message")]
    message: String,
    #[serde(default, rename = "__type")]
    kind: Option<String>,
}

impl Bedrock {
    pub fn new(
        http: reqwest::Client,
        provider: &str,
        config: &BedrockConfig,
        credentials: Option<&AwsCredentials>,
        request_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            http,
            provider: provider.to_owned(),
            config: config.clone(),
            signer: Signer::new(&config.region, credentials),
            request_timeout,
            idle_timeout,
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

    /// Posts `body` to the model's `action` until Bedrock accepts it, retrying what may pass
    /// on a retry (throttling, unavailability, its own failures).
    async fn post(
        &self,
        call: &Call,
        action: &str,
        body: &impl Serialize,
        accept: &str,
    ) -> Result<reqwest::Response, LlmError> {
        let body = serde_json::to_vec(body).map_err(|e| call.protocol(e.to_string()))?;
        let attempt = || self.attempt(call, action, &body, accept);
        attempt.retry(backoff()).when(LlmError::is_transient).await
    }

    /// One POST of `body` to the model's `action`, signed anew; Bedrock's refusal as an error.
    async fn attempt(
        &self,
        call: &Call,
        action: &str,
        body: &[u8],
        accept: &str,
    ) -> Result<reqwest::Response, LlmError> {
        let url = format!(
            "{}/model/{}/{action}",
            self.config.endpoint_url,
            utf8_percent_encode(&call.model, PATH_SEGMENT)
        );
        let headers = [("content-type", "application/json"), ("accept", accept)];
        let signature = self
            .signer
            .sign(&url, &headers, body)
            .await
            .map_err(|e| call.unsigned(e))?;
        let mut request = self.http.post(&url).body(body.to_vec());
        for (name, value) in headers.iter().copied().chain(
            signature
                .iter()
                .map(|(name, value)| (*name, value.as_str())),
        ) {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| call.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_default();
        let kind = error_type
            .or(body.kind)
            .unwrap_or_else(|| format!("status {}", status.as_u16()));
        Err(call.exception(&kind, Some(status.as_u16()), &body.message))
    }

    /// Reads a whole JSON answer within the request timeout.
    async fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call,
        response: impl Future<Output = Result<reqwest::Response, LlmError>>,
    ) -> Result<T, LlmError> {
        let read = async {
            let bytes = response
                .await?
                .bytes()
                .await
                .map_err(|e| call.transport(&e))?;
            serde_json::from_slice::<T>(&bytes).map_err(|e| call.protocol(e.to_string()))
        };
        tokio::time::timeout(self.request_timeout, read)
            .await
            .map_err(|_| call.timeout())?
    }

    async fn embed_one(&self, call: &Call, text: &str) -> Result<Vec<f32>, LlmError> {
        let body = TitanRequest { input_text: text };
        let response: TitanResponse = self
            .read_json(call, self.post(call, "invoke", &body, "application/json"))
            .await?;
        Ok(response.embedding)
    }

    /// One attempt at a stream: opened, and read up to its first event, so that an exception
    /// Bedrock sends before the answer begins (throttling, mostly) is retried like a refusal.
    /// Its caller retries the whole attempt, so the request itself is sent once here.
    async fn open_stream(&self, call: &Call, body: &[u8]) -> Result<CompletionStream, LlmError> {
        let response = self
            .attempt(
                call,
                "converse-stream",
                body,
                "application/vnd.amazon.eventstream",
            )
            .await?;
        let mut events = Box::pin(stream::events(
            response.bytes_stream(),
            call.clone(),
            self.idle_timeout,
        ));
        let first: Option<Result<StreamEvent, LlmError>> = events.next().await;
        match first {
            Some(Err(error)) => Err(error),
            first => Ok(Box::pin(futures_util::stream::iter(first).chain(events))),
        }
    }
}

#[async_trait::async_trait]
impl LlmClient for Bedrock {
    async fn complete(&self, request: &CompletionRequest) -> Result<Completion, LlmError> {
        let call = self.call(&request.model);
        let body = ConverseRequest::new(request);
        let wire: ConverseResponse = self
            .read_json(
                &call,
                self.post(&call, "converse", &body, "application/json"),
            )
            .await?;
        Ok(Completion::from(wire))
    }

    async fn stream(&self, request: &CompletionRequest) -> Result<CompletionStream, LlmError> {
        let call = self.call(&request.model);
        let body = serde_json::to_vec(&ConverseRequest::new(request))
            .map_err(|e| call.protocol(e.to_string()))?;
        let open = || async {
            tokio::time::timeout(self.idle_timeout, self.open_stream(&call, &body))
                .await
                .map_err(|_| call.timeout())?
        };
        open.retry(backoff()).when(LlmError::is_transient).await
    }

    /// Titan Text Embeddings through InvokeModel, one text a request, a few at a time.
    async fn embed(&self, model: &str, inputs: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
        let call = self.call(model);
        // Collected first: a stream holding the mapping closure is not `Send` for every
        // lifetime, which the trait's boxed future needs.
        let requests: Vec<_> = inputs
            .iter()
            .map(|text| self.embed_one(&call, text))
            .collect();
        futures_util::stream::iter(requests)
            .buffered(CONCURRENT_EMBEDDINGS)
            .try_collect()
            .await
    }
}
