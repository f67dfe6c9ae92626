//! `LLM_PROVIDERS`: the named model providers, how each is reached and what it costs.

use std::collections::HashMap;

use super::{ConfigError, Secret};

/// One model provider and what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub api: ProviderApi,
    pub default_model: String,
    /// Price in the account's currency per 1,000 prompt tokens.
    pub prompt_price_per_1k: f64,
    pub completion_price_per_1k: f64,
}

/// How a provider is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderApi {
    /// An OpenAI-compatible Chat Completions endpoint, with a bearer key when it needs one.
    OpenAiCompatible {
        base_url: String,
        api_key: Option<Secret>,
    },
    /// Amazon Bedrock's Runtime API, authorised by the function's AWS credentials.
    Bedrock(BedrockConfig),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BedrockConfig {
    pub region: String,
    /// The Runtime API's endpoint: the region's public one unless `endpoint_url` names
    /// another (a VPC endpoint, a test server).
    pub endpoint_url: String,
}

/// Credentials given in the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`), the first link of AWS's standard chain and what Lambda gives a
/// function's role. Read once with the rest of the configuration, so a test can give them too.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

/// The kinds of `LLM_PROVIDERS` entry; an entry without `kind` is OpenAI-compatible.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum ProviderKind {
    #[default]
    #[serde(alias = "openai")]
    OpenaiCompatible,
    Bedrock,
}

/// `LLM_PROVIDERS` entries as written: a key stays in the variable its entry names.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    #[serde(default)]
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_env: Option<String>,
    region: Option<String>,
    endpoint_url: Option<String>,
    default_model: String,
    #[serde(default)]
    prompt_price_per_1k: f64,
    #[serde(default)]
    completion_price_per_1k: f64,
}

type Lookup<'a> = &'a dyn Fn(&'static str) -> Option<String>;

/// The providers `LLM_PROVIDERS` (JSON) names. `vars` holds the variables entries name for
/// their keys; `get` reads a trimmed, non-empty variable.
pub(super) fn parse(
    json: &str,
    vars: &HashMap<String, String>,
    get: Lookup<'_>,
) -> Result<HashMap<String, ProviderConfig>, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "LLM_PROVIDERS",
        reason,
    };
    let entries: HashMap<String, ProviderEntry> =
        serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let mut providers = HashMap::with_capacity(entries.len());
    for (name, entry) in entries {
        let api = match entry.kind {
            ProviderKind::OpenaiCompatible => {
                if entry.region.is_some() || entry.endpoint_url.is_some() {
                    return Err(invalid(format!(
                        "provider {name} is OpenAI-compatible: region and endpoint_url belong to \"kind\": \"bedrock\""
                    )));
                }
                let base_url = entry
                    .base_url
                    .ok_or_else(|| invalid(format!("provider {name} needs a base_url")))?;
                let api_key = match &entry.api_key_env {
                    Some(var) => Some(Secret::new(
                        vars.get(var)
                            .map(|v| v.trim())
                            .filter(|v| !v.is_empty())
                            .ok_or_else(|| {
                                invalid(format!("provider {name} names {var}, which is not set"))
                            })?,
                    )),
                    None => None,
                };
                ProviderApi::OpenAiCompatible { base_url, api_key }
            }
            ProviderKind::Bedrock => {
                if entry.base_url.is_some() || entry.api_key_env.is_some() {
                    return Err(invalid(format!(
                        "provider {name} is Bedrock: it is signed with the function's AWS credentials and takes region and endpoint_url, not base_url or api_key_env"
                    )));
                }
                // Lambda sets AWS_REGION to the function's own region.
                let region = entry
                    .region
                    .or_else(|| get("AWS_REGION"))
                    .or_else(|| get("AWS_DEFAULT_REGION"))
                    .ok_or_else(|| {
                        invalid(format!(
                            "provider {name} needs a region (or AWS_REGION to be set)"
                        ))
                    })?;
                let endpoint_url = entry
                    .endpoint_url
                    .map(|url| url.trim_end_matches('/').to_owned())
                    .unwrap_or_else(|| public_endpoint(&region));
                ProviderApi::Bedrock(BedrockConfig {
                    region,
                    endpoint_url,
                })
            }
        };
        providers.insert(
            name,
            ProviderConfig {
                api,
                default_model: entry.default_model,
                prompt_price_per_1k: entry.prompt_price_per_1k,
                completion_price_per_1k: entry.completion_price_per_1k,
            },
        );
    }
    Ok(providers)
}

/// The Runtime API's public endpoint in `region` (China's regions have their own domain).
fn public_endpoint(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://bedrock-runtime.{region}.{domain}")
}

/// The credentials the environment gives, if any: both halves of the key, or neither.
pub(super) fn aws_credentials(get: Lookup<'_>) -> Result<Option<AwsCredentials>, ConfigError> {
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id,
            secret_access_key: Secret::new(secret),
            session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Missing("AWS_SECRET_ACCESS_KEY")),
        (None, Some(_)) => Err(ConfigError::Missing("AWS_ACCESS_KEY_ID")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigError};
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("TABLE_NAME", "t"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        Config::from_vars(&vars)
    }

    const BEDROCK: &str = r#"{"bedrock": {"kind": "bedrock", "region": "eu-west-3",
        "default_model": "anthropic.claude-3-5-haiku-20241022-v1:0", "prompt_price_per_1k": 0.0008}}"#;

    #[test]
    fn a_bedrock_provider_is_reached_at_its_regions_public_endpoint() {
        let config = config(&[("LLM_PROVIDERS", BEDROCK)]).unwrap();
        let bedrock = &config.llm.providers["bedrock"];
        assert_eq!(
            bedrock.api,
            ProviderApi::Bedrock(BedrockConfig {
                region: "eu-west-3".into(),
                endpoint_url: "https://bedrock-runtime.eu-west-3.amazonaws.com".into(),
            })
        );
        assert_eq!(bedrock.prompt_price_per_1k, 0.0008);
        assert_eq!(config.llm.aws_credentials, None);
    }

    #[test]
    fn a_bedrock_provider_takes_the_functions_region_and_an_endpoint_override() {
        let providers = r#"{"b": {"kind": "bedrock", "default_model": "m",
            "endpoint_url": "https://vpce-1.bedrock-runtime.cn-north-1.vpce.amazonaws.com.cn/"}}"#;
        let config = config(&[("LLM_PROVIDERS", providers), ("AWS_REGION", "cn-north-1")]).unwrap();
        let ProviderApi::Bedrock(bedrock) = &config.llm.providers["b"].api else {
            panic!("a bedrock provider");
        };
        assert_eq!(bedrock.region, "cn-north-1");
        assert_eq!(
            bedrock.endpoint_url,
            "https://vpce-1.bedrock-runtime.cn-north-1.vpce.amazonaws.com.cn"
        );
        assert_eq!(
            public_endpoint("cn-north-1"),
            "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"
        );
    }

    #[test]
    fn a_bedrock_provider_without_any_region_fails_the_start() {
        let providers = r#"{"b": {"kind": "bedrock", "default_model": "m"}}"#;
        let err = config(&[("LLM_PROVIDERS", providers)]).unwrap_err();
        assert!(err.to_string().contains("region"), "{err}");
    }

    #[test]
    fn a_bedrock_provider_refuses_an_api_key() {
        let providers = r#"{"b": {"kind": "bedrock", "region": "us-east-1", "default_model": "m", "api_key_env": "K"}}"#;
        let err = config(&[("LLM_PROVIDERS", providers), ("K", "secret")]).unwrap_err();
        assert!(err.to_string().contains("api_key_env"), "{err}");
    }

    #[test]
    fn an_unknown_kind_fails_the_start() {
        let providers = r#"{"b": {"kind": "vertex", "default_model": "m"}}"#;
        let err = config(&[("LLM_PROVIDERS", providers)]).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "LLM_PROVIDERS",
                ..
            }
        ));
    }

    #[test]
    fn credentials_in_the_environment_are_read_for_bedrock_and_never_printed() {
        let config = config(&[
            ("LLM_PROVIDERS", BEDROCK),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            (
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
            ("AWS_SESSION_TOKEN", "session-token-example"),
        ])
        .unwrap();
        let credentials = config.llm.aws_credentials.as_ref().unwrap();
        assert_eq!(credentials.access_key_id, "AKIDEXAMPLE");
        let printed = format!("{config:?}");
        assert!(!printed.contains("wJalrXUtnFEMI"), "{printed}");
        assert!(!printed.contains("session-token-example"), "{printed}");
    }

    #[test]
    fn half_a_key_fails_the_start_with_the_missing_variables_name() {
        let err = config(&[("LLM_PROVIDERS", BEDROCK), ("AWS_ACCESS_KEY_ID", "AKID")]).unwrap_err();
        assert_eq!(err, ConfigError::Missing("AWS_SECRET_ACCESS_KEY"));
    }
}
