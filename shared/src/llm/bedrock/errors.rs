//! Bedrock's exceptions told apart like the other providers' failures: whose fault, worth a
//! retry or not, and what a client may read.

use crate::llm::LlmError;

/// Which call failed: the provider's name and endpoint, and the model asked for.
#[derive(Clone)]
pub(super) struct Call {
    pub provider: String,
    pub endpoint: String,
    pub region: String,
    pub model: String,
}

impl Call {
    /// The error for one of Bedrock's exceptions (`ThrottlingException`, from an error
    /// response's `x-amzn-ErrorType` or a stream's `:exception-type`), with the HTTP status
    /// when there is one. AWS's own message is logged, never shown: it can name the account
    /// and the role.
    pub fn exception(&self, exception: &str, status: Option<u16>, message: &str) -> LlmError {
        tracing::warn!(
            provider = %self.provider,
            model = %self.model,
            exception,
            status,
            message,
            "Bedrock refused a call"
        );
        let unavailable = |reason: String| LlmError::Unavailable {
            provider: self.provider.clone(),
            model: self.model.clone(),
            reason,
        };
        // Error types come as `ThrottlingException` in responses and `throttlingException` in
        // streams, sometimes followed by `:` and a namespace.
        let name = exception.split(':').next().unwrap_or_default();
        match name.to_ascii_lowercase().as_str() {
            "throttlingexception" | "toomanyrequestsexception" => LlmError::RateLimited {
                base_url: self.endpoint.clone(),
            },
            "serviceunavailableexception" => LlmError::Unreachable {
                base_url: self.endpoint.clone(),
                reason: "the service is unavailable".into(),
            },
            "modeltimeoutexception" => LlmError::Timeout {
                base_url: self.endpoint.clone(),
            },
            "validationexception" if super::super::blames_the_input(message) => {
                LlmError::Rejected {
                    status: status.unwrap_or(400),
                    message: message.to_owned(),
                }
            }
            "validationexception" => unavailable(
                "the request does not suit this model (ValidationException; the function's log has Bedrock's words)".into(),
            ),
            "accessdeniedexception" => unavailable(
                "access denied: the function's role needs bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream on this model, and the account needs access to it in the Bedrock console".into(),
            ),
            "resourcenotfoundexception" => unavailable(format!(
                "no such model or inference profile in {}",
                self.region
            )),
            "modelnotreadyexception" => unavailable("the model is not ready yet".into()),
            "unrecognizedclientexception"
            | "invalidsignatureexception"
            | "expiredtokenexception"
            | "incompletesignatureexception"
            | "missingauthenticationtokenexception" => unavailable(format!(
                "Bedrock refused this server's AWS credentials ({name})"
            )),
            _ => LlmError::Upstream {
                base_url: self.endpoint.clone(),
                // A stream's exceptions have no status; they are the service's failures.
                status: status.unwrap_or(502),
                message: name.to_owned(),
            },
        }
    }

    pub fn protocol(&self, reason: impl Into<String>) -> LlmError {
        LlmError::Protocol {
            base_url: self.endpoint.clone(),
            reason: reason.into(),
        }
    }

    pub fn timeout(&self) -> LlmError {
        LlmError::Timeout {
            base_url: self.endpoint.clone(),
        }
    }

    pub fn transport(&self, err: &reqwest::Error) -> LlmError {
        if err.is_timeout() {
            self.timeout()
        } else {
            LlmError::Unreachable {
                base_url: self.endpoint.clone(),
                reason: crate::llm::openai::without_url(err),
            }
        }
    }

    /// No credentials, or none that sign: the deployment's to fix.
    pub fn unsigned(&self, reason: impl std::fmt::Display) -> LlmError {
        LlmError::Unavailable {
            provider: self.provider.clone(),
            model: self.model.clone(),
            reason: format!("requests cannot be signed: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> Call {
        Call {
            provider: "bedrock".into(),
            endpoint: "https://bedrock-runtime.us-east-1.amazonaws.com".into(),
            region: "us-east-1".into(),
            model: "anthropic.claude-3-5-haiku-20241022-v1:0".into(),
        }
    }

    #[test]
    fn throttling_and_unavailability_are_worth_a_retry() {
        for name in [
            "ThrottlingException",
            "throttlingException",
            "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        ] {
            let error = call().exception(name, Some(429), "slow down");
            assert!(error.is_transient(), "{name}: {error}");
        }
    }

    #[test]
    fn a_validation_exception_is_the_clients_only_when_it_blames_the_input() {
        let long = call().exception(
            "ValidationException",
            Some(400),
            "Input is too long for requested model.",
        );
        assert!(matches!(long, LlmError::Rejected { .. }), "{long}");
        let config = call().exception(
            "ValidationException",
            Some(400),
            "The provided model identifier is invalid.",
        );
        assert!(matches!(config, LlmError::Unavailable { .. }), "{config}");
    }

    #[test]
    fn refusals_of_access_name_the_provider_and_model_but_not_awss_words() {
        let words = "User: arn:aws:sts::123456789012:assumed-role/chat/fn is not authorized";
        for name in [
            "AccessDeniedException",
            "ResourceNotFoundException",
            "ModelNotReadyException",
        ] {
            let error = call().exception(name, Some(403), words);
            let message = error.client_message();
            assert!(!error.is_transient(), "{name}");
            assert!(message.contains("bedrock"), "{message}");
            assert!(
                message.contains("anthropic.claude-3-5-haiku-20241022-v1:0"),
                "{message}"
            );
            assert!(!message.contains("123456789012"), "{message}");
        }
    }
}
