//! Typed configuration, read once from environment variables at cold start.
//!
//! Every variable is parsed here and nowhere else; a missing or malformed one fails the
//! start with the variable's name, so a misconfigured deployment never serves a request.

use std::collections::HashMap;
use std::fmt;

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
pub struct Config {
    pub table_name: String,
    /// Overrides the DynamoDB endpoint (the local run and tests point it at the embedded emulator).
    pub dynamodb_endpoint: Option<String>,
    pub jwt: JwtConfig,
    pub rate_limits: RateLimits,
    /// Origins a browser may call from; `*` allows any.
    pub cors_allow_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;
pub const DEFAULT_RATE_LIMIT_PER_HOUR: u32 = 1000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads configuration from a map of variables; `from_env` is this over the process environment.
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
        Ok(Self {
            table_name: get("TABLE_NAME").ok_or(ConfigError::Missing("TABLE_NAME"))?,
            dynamodb_endpoint: get("DYNAMODB_ENDPOINT"),
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
        })
    }
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
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_missing_table_name_is_named_in_the_error() {
        let err = Config::from_vars(&vars(&[("JWT_SECRET", SECRET)])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TABLE_NAME"));
        assert_eq!(
            err.to_string(),
            "environment variable TABLE_NAME is required"
        );
    }

    #[test]
    fn some_way_to_verify_tokens_is_required() {
        let err = Config::from_vars(&vars(&[("TABLE_NAME", "t")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("JWT_SECRET"));
    }

    #[test]
    fn a_malformed_number_names_its_variable() {
        let err = Config::from_vars(&vars(&[
            ("TABLE_NAME", "t"),
            ("JWT_SECRET", SECRET),
            ("RATE_LIMIT_PER_HOUR", "lots"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "RATE_LIMIT_PER_HOUR",
                ..
            }
        ));
    }

    #[test]
    fn defaults_apply_and_origins_are_split() {
        let config = Config::from_vars(&vars(&[
            ("TABLE_NAME", "chat"),
            ("JWT_SECRET", SECRET),
            ("CORS_ALLOW_ORIGINS", "https://a.example, https://b.example"),
        ]))
        .unwrap();
        assert_eq!(config.rate_limits.per_minute, DEFAULT_RATE_LIMIT_PER_MINUTE);
        assert_eq!(config.rate_limits.per_hour, DEFAULT_RATE_LIMIT_PER_HOUR);
        assert_eq!(
            config.cors_allow_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(config.dynamodb_endpoint, None);
    }

    #[test]
    fn secrets_never_print() {
        let config =
            Config::from_vars(&vars(&[("TABLE_NAME", "t"), ("JWT_SECRET", SECRET)])).unwrap();
        assert!(!format!("{config:?}").contains(SECRET));
    }
}
