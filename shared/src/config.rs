//! Typed configuration, read once from environment variables at cold start.
//!
//! Every variable is parsed here and nowhere else; a missing or malformed one fails the
//! start with the variable's name, so a misconfigured deployment never serves a request.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

mod providers;

pub use providers::{AwsCredentials, BedrockConfig, ProviderApi, ProviderConfig};

/// A value that must never reach a log line: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    /// A deployment keeps its secrets in Secrets Manager (`secrets.rs`); one that lacks a key
    /// the function needs stops the start as a missing variable does.
    #[error("{name} is required: it is neither a key of secret {arn} nor an environment variable")]
    MissingFromSecret { name: &'static str, arn: String },
    #[error("secret {arn} (APP_SECRET_ARN) cannot be used: {reason}")]
    Secret { arn: String, reason: String },
}

/// How bearer tokens are verified.
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// HS256 shared secret (`JWT_SECRET`).
    pub secret: Option<Secret>,
    /// JWKS document with RS256/ES256 keys (`JWT_JWKS_URL`).
    pub jwks_url: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Per-user request budgets, counted in DynamoDB so they hold across Lambda instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub per_minute: u32,
    pub per_hour: u32,
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Named providers; the one built from `LLM_BASE_URL` is called [`DEFAULT_PROVIDER`].
    pub providers: HashMap<String, ProviderConfig>,
    pub default_provider: String,
    /// Limit on a whole non-streaming completion; below API Gateway's 30 s cut.
    pub request_timeout: Duration,
    /// Longest silence tolerated between two chunks of a stream.
    pub idle_timeout: Duration,
    /// Limit on a whole `/chat` turn (retrieval, tools and every model call), below the
    /// function's 29 s timeout so that the client gets a clean 504 and what was said is stored.
    pub turn_timeout: Duration,
    /// The same for a streamed turn, below the streaming function's 300 s timeout.
    pub stream_turn_timeout: Duration,
    pub connect_timeout: Duration,
    /// Model for `/embeddings`; without one, retrieval ranks chunks lexically (BM25).
    pub embedding_model: Option<String>,
    /// Provider serving the embedding model (default: the default provider).
    pub embedding_provider: Option<String>,
    /// Credentials from the environment for Bedrock providers; without them the rest of AWS's
    /// standard chain (profile, web identity, container, instance) is asked on first use.
    pub aws_credentials: Option<AwsCredentials>,
}

/// Titles the model writes for conversations a turn starts (`chat::titles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitleConfig {
    /// `AUTO_TITLE` (default true); off, a new conversation keeps the start of its first
    /// message as its title.
    pub enabled: bool,
    /// `TITLE_MODEL`: the model asked (default: the one answering the turn).
    pub model: Option<String>,
    /// `TITLE_PROVIDER`: the configured provider asked (default: the turn's).
    pub provider: Option<String>,
}

/// An MCP server reached over the Streamable HTTP transport.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServerConfig {
    pub name: String,
    pub url: String,
    /// Sent with every request (authorisation, typically), so never logged.
    pub headers: Vec<(String, Secret)>,
    /// Limit on connecting and listing tools (`MCP_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// Limit on one tool call (`MCP_TIMEOUT_MS`); the default stays well below the
    /// function's 29 s so a slow tool is an error for the model, not a dead function.
    pub call_timeout: Duration,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct McpServerEntry {
    name: String,
    url: String,
    #[serde(default)]
    headers: HashMap<String, String>,
}

/// The credentials requests to an overridden DynamoDB endpoint are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointCredentials {
    /// Emulators (the embedded one, DynamoDB Local, LocalStack, moto) take any key: a fixed
    /// one, so nothing is looked up at start.
    Placeholder,
    /// `AWS_ACCESS_KEY_ID` or `AWS_PROFILE` is set: the SDK's own chain, as a real table needs.
    FromEnvironment,
}

pub const DEFAULT_PROVIDER: &str = "default";
pub const DEFAULT_LLM_BASE_URL: &str = "http://127.0.0.1:11434/v1";
pub const DEFAULT_LLM_MODEL: &str = "llama3.2";

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    /// Overrides the DynamoDB endpoint (the local run and tests point it at the embedded emulator).
    pub dynamodb_endpoint: Option<String>,
    /// `AWS_REGION` (else `AWS_DEFAULT_REGION`): what requests to an overridden endpoint are
    /// signed for. In Lambda the SDK reads the region itself.
    pub aws_region: Option<String>,
    /// How requests to an overridden endpoint are signed.
    pub endpoint_credentials: EndpointCredentials,
    pub jwt: JwtConfig,
    pub rate_limits: RateLimits,
    /// Origins a browser may call from; `*` allows any.
    pub cors_allow_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub llm: LlmConfig,
    /// Silence after which a stream sends a comment, so proxies keep the connection open.
    pub sse_heartbeat: Duration,
    pub mcp_servers: Vec<McpServerConfig>,
    /// The CloudWatch namespace of the turns' metrics (`metrics.rs`).
    pub metrics_namespace: String,
    pub titles: TitleConfig,
}

pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;
pub const DEFAULT_RATE_LIMIT_PER_HOUR: u32 = 1000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Config {
    /// Reads configuration from a map of variables: a function's environment with its secret's
    /// keys (`secrets::config_from_env`), or the local run's and the tests' own.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &'static str| {
            vars.get(name)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let jwt = JwtConfig {
            secret: get("JWT_SECRET").map(Secret::new),
            jwks_url: get("JWT_JWKS_URL"),
            issuer: get("JWT_ISSUER"),
            audience: get("JWT_AUDIENCE"),
        };
        if jwt.secret.is_none() && jwt.jwks_url.is_none() {
            return Err(ConfigError::Missing("JWT_SECRET"));
        }
        if let Some(secret) = &jwt.secret
            && secret.expose().len() < 32
        {
            return Err(ConfigError::Invalid {
                name: "JWT_SECRET",
                reason: "must be at least 32 characters".into(),
            });
        }
        let rate_limits = RateLimits {
            per_minute: parse_or(
                "RATE_LIMIT_PER_MINUTE",
                get("RATE_LIMIT_PER_MINUTE"),
                DEFAULT_RATE_LIMIT_PER_MINUTE,
            )?,
            per_hour: parse_or(
                "RATE_LIMIT_PER_HOUR",
                get("RATE_LIMIT_PER_HOUR"),
                DEFAULT_RATE_LIMIT_PER_HOUR,
            )?,
        };
        if rate_limits.per_minute == 0 || rate_limits.per_hour == 0 {
            return Err(ConfigError::Invalid {
                name: "RATE_LIMIT_PER_MINUTE",
                reason: "rate limits must be positive".into(),
            });
        }
        let llm = llm_config(vars, &get)?;
        let titles = TitleConfig {
            enabled: parse_or("AUTO_TITLE", get("AUTO_TITLE"), true)?,
            model: get("TITLE_MODEL"),
            provider: get("TITLE_PROVIDER"),
        };
        if let Some(provider) = &titles.provider
            && !llm.providers.contains_key(provider)
        {
            return Err(ConfigError::Invalid {
                name: "TITLE_PROVIDER",
                reason: format!("no provider is named {provider}"),
            });
        }
        Ok(Self {
            table_name: get("TABLE_NAME").ok_or(ConfigError::Missing("TABLE_NAME"))?,
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
            aws_region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint_credentials: if get("AWS_ACCESS_KEY_ID").is_some()
                || get("AWS_PROFILE").is_some()
            {
                EndpointCredentials::FromEnvironment
            } else {
                EndpointCredentials::Placeholder
            },
            jwt,
            rate_limits,
            cors_allow_origins: get("CORS_ALLOW_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            max_body_bytes: parse_or(
                "MAX_BODY_BYTES",
                get("MAX_BODY_BYTES"),
                DEFAULT_MAX_BODY_BYTES,
            )?,
            llm,
            sse_heartbeat: Duration::from_secs(parse_or(
                "SSE_HEARTBEAT_SECS",
                get("SSE_HEARTBEAT_SECS"),
                15,
            )?),
            mcp_servers: mcp_servers(&get)?,
            metrics_namespace: metrics_namespace(get("METRICS_NAMESPACE"))?,
            titles,
        })
    }
}

/// The metrics namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_METRICS_NAMESPACE: &str = "ChatApi";

/// CloudWatch takes a namespace of 1 to 255 ASCII characters, and drops the lines of any other.
fn metrics_namespace(value: Option<String>) -> Result<String, ConfigError> {
    let namespace = value.unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.into());
    if namespace.len() > 255 || !namespace.is_ascii() || namespace.starts_with(':') {
        return Err(ConfigError::Invalid {
            name: "METRICS_NAMESPACE",
            reason: "must be at most 255 ASCII characters, not starting with ':'".into(),
        });
    }
    Ok(namespace)
}

fn llm_config(
    vars: &HashMap<String, String>,
    get: &dyn Fn(&'static str) -> Option<String>,
) -> Result<LlmConfig, ConfigError> {
    let price = |name: &'static str| parse_or(name, get(name), 0.0_f64);
    let mut providers = HashMap::from([(
        DEFAULT_PROVIDER.to_owned(),
        ProviderConfig {
            api: ProviderApi::OpenAiCompatible {
                base_url: get("LLM_BASE_URL").unwrap_or_else(|| DEFAULT_LLM_BASE_URL.into()),
                api_key: get("LLM_API_KEY").map(Secret::new),
            },
            default_model: get("LLM_MODEL").unwrap_or_else(|| DEFAULT_LLM_MODEL.into()),
            prompt_price_per_1k: price("LLM_PROMPT_PRICE_PER_1K")?,
            completion_price_per_1k: price("LLM_COMPLETION_PRICE_PER_1K")?,
        },
    )]);
    if let Some(json) = get("LLM_PROVIDERS") {
        providers.extend(providers::parse(&json, vars, get)?);
    }
    let aws_credentials = if providers
        .values()
        .any(|p| matches!(p.api, ProviderApi::Bedrock(_)))
    {
        providers::aws_credentials(get)?
    } else {
        None
    };
    let default_provider = get("LLM_DEFAULT_PROVIDER").unwrap_or_else(|| DEFAULT_PROVIDER.into());
    let embedding_provider = get("EMBEDDING_PROVIDER");
    for (name, provider) in [
        ("LLM_DEFAULT_PROVIDER", Some(&default_provider)),
        ("EMBEDDING_PROVIDER", embedding_provider.as_ref()),
    ] {
        if let Some(provider) = provider
            && !providers.contains_key(provider)
        {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("no provider is named {provider}"),
            });
        }
    }
    let seconds = |name: &'static str, default: u64| {
        parse_or(name, get(name), default).map(Duration::from_secs)
    };
    Ok(LlmConfig {
        providers,
        default_provider,
        // API Gateway cuts at 30 s and the function stops at 29 s: 20 s for the model leaves
        // room for storing the answer, so a slow model is the function's clean 504.
        request_timeout: seconds("LLM_TIMEOUT_SECS", 20)?,
        idle_timeout: seconds("LLM_IDLE_TIMEOUT_SECS", 30)?,
        turn_timeout: seconds("CHAT_TURN_TIMEOUT_SECS", 25)?,
        stream_turn_timeout: seconds("STREAM_TURN_TIMEOUT_SECS", 280)?,
        connect_timeout: seconds("LLM_CONNECT_TIMEOUT_SECS", 5)?,
        embedding_model: get("EMBEDDING_MODEL"),
        embedding_provider,
        aws_credentials,
    })
}

fn mcp_servers(
    get: &dyn Fn(&'static str) -> Option<String>,
) -> Result<Vec<McpServerConfig>, ConfigError> {
    let Some(json) = get("MCP_SERVERS") else {
        return Ok(Vec::new());
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: "MCP_SERVERS",
        reason,
    };
    let millis = |name: &'static str, default: u64| match parse_or(name, get(name), default)? {
        0 => Err(ConfigError::Invalid {
            name,
            reason: "must be positive".into(),
        }),
        ms => Ok(Duration::from_millis(ms)),
    };
    let connect_timeout = millis("MCP_CONNECT_TIMEOUT_MS", 3_000)?;
    let call_timeout = millis("MCP_TIMEOUT_MS", 20_000)?;
    let entries: Vec<McpServerEntry> =
        serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
    let mut servers: Vec<McpServerConfig> = Vec::with_capacity(entries.len());
    for entry in entries {
        // Tools are namespaced and calls routed by server name, so it must be unique.
        if entry.name.trim().is_empty() || servers.iter().any(|s| s.name == entry.name) {
            return Err(invalid(format!(
                "server names must be unique and non-empty: {:?}",
                entry.name
            )));
        }
        let mut headers = Vec::with_capacity(entry.headers.len());
        for (name, value) in entry.headers {
            // A header that cannot be sent would otherwise be dropped silently and the server
            // would answer 401 on every turn; the value is a secret, so only the name is shown.
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(&value).is_err()
            {
                return Err(invalid(format!(
                    "server {} has a header that is not valid HTTP: {name:?}",
                    entry.name
                )));
            }
            headers.push((name, Secret::new(value)));
        }
        servers.push(McpServerConfig {
            name: entry.name,
            url: entry.url,
            headers,
            connect_timeout,
            call_timeout,
        });
    }
    Ok(servers)
}

fn parse_or<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    value.map_or(Ok(default), |v| {
        v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        })
    })
}

#[cfg(test)]
mod tests;
