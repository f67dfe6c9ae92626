//! Secrets out of the function's configuration: a deployment keeps `JWT_SECRET`,
//! `LLM_API_KEY`, the provider keys `LLM_PROVIDERS` names and `MCP_SERVERS` (whose headers
//! carry credentials) in one AWS Secrets Manager secret, which `APP_SECRET_ARN` names, instead
//! of in Lambda environment variables that anyone allowed to read the function's configuration
//! reads. The secret is read once, at cold start, through the SDK.
//!
//! The secret is a JSON object whose keys are the variables it replaces. A string is the
//! variable's value; any other JSON value (`MCP_SERVERS`'s list) is taken as its JSON text.
//! Without `APP_SECRET_ARN` (the local run, the tests) nothing is fetched and the plain
//! variables are read as they are.

use std::collections::HashMap;

use crate::config::{Config, ConfigError};

/// The variable naming the secret (its ARN or name).
pub const SECRET_ARN: &str = "APP_SECRET_ARN";

/// The configuration of this process: its environment, and the secret `APP_SECRET_ARN` names.
pub async fn config_from_env() -> Result<Config, ConfigError> {
    let vars: HashMap<String, String> = std::env::vars().collect();
    let Some(arn) = secret_arn(&vars) else {
        return Config::from_vars(&vars);
    };
    // The SDK's usual sources: in Lambda the region and the role's credentials are
    // environment variables; `AWS_ENDPOINT_URL_SECRETS_MANAGER` points it elsewhere.
    let sdk_config = crate::store::sdk_loader(None).load().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk_config);
    config_with_secret(vars, &arn, &client).await
}

/// The secret's ARN, when one is named.
fn secret_arn(vars: &HashMap<String, String>) -> Option<String> {
    vars.get(SECRET_ARN)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Reads the secret `arn` with `client` and the configuration from `vars` with its keys added.
pub async fn config_with_secret(
    mut vars: HashMap<String, String>,
    arn: &str,
    client: &aws_sdk_secretsmanager::Client,
) -> Result<Config, ConfigError> {
    let unreadable = |reason: String| ConfigError::Secret {
        arn: arn.to_owned(),
        reason,
    };
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            unreadable(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
        })?;
    let text = output
        .secret_string()
        .ok_or_else(|| unreadable("it holds no text (SecretString)".into()))?;
    for (key, value) in secret_variables(text).map_err(unreadable)? {
        // A variable set both ways would leave it unclear which one is in force.
        if vars.get(&key).is_some_and(|v| !v.trim().is_empty()) {
            return Err(unreadable(format!(
                "its key {key} is also set as an environment variable"
            )));
        }
        vars.insert(key, value);
    }
    Config::from_vars(&vars).map_err(|e| match e {
        ConfigError::Missing(name) => ConfigError::MissingFromSecret {
            name,
            arn: arn.to_owned(),
        },
        other => other,
    })
}

/// The variables a secret's text sets. Errors never quote the text: it is the secret.
fn secret_variables(text: &str) -> Result<Vec<(String, String)>, String> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
        .map_err(|_| "its text is not a JSON object of variables".to_owned())?;
    Ok(object
        .into_iter()
        .filter_map(|(key, value)| match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some((key, text)),
            other => Some((key, other.to_string())),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_taken_as_they_are_and_other_values_as_json_text() {
        let mut variables = secret_variables(
            r#"{"JWT_SECRET": "s3cret", "MCP_SERVERS": [{"name": "shop"}], "GONE": null}"#,
        )
        .unwrap();
        variables.sort();
        assert_eq!(
            variables,
            [
                ("JWT_SECRET".to_owned(), "s3cret".to_owned()),
                ("MCP_SERVERS".to_owned(), r#"[{"name":"shop"}]"#.to_owned()),
            ]
        );
    }

    #[test]
    fn a_secret_that_is_not_an_object_is_refused_without_quoting_it() {
        let err = secret_variables("hunter2-is-my-password").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(secret_variables(r#"["JWT_SECRET"]"#).is_err());
    }

    #[test]
    fn without_a_secret_named_nothing_is_fetched() {
        let vars = HashMap::from([(SECRET_ARN.to_owned(), "  ".to_owned())]);
        assert_eq!(secret_arn(&vars), None);
    }
}
