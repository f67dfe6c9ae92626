//! A deployment's secrets come from Secrets Manager at cold start: the configuration loader
//! reads a secret served by moto server, a second implementation of the service.

use std::collections::HashMap;

use api_tests::moto::MotoServer;
use aws_sdk_secretsmanager::Client;
use serde_json::json;
use shared::config::{ConfigError, ProviderApi};
use shared::secrets::{SECRET_ARN, config_with_secret};

const JWT_SECRET: &str = "from-the-secret-0123456789abcdef0123456789";

/// A Secrets Manager client for moto at `endpoint` (moto takes any credentials).
async fn client(endpoint: &str) -> Client {
    let config = shared::store::sdk_loader(Some(endpoint))
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await;
    Client::new(&config)
}

/// Creates a secret holding `value` as its text; returns its ARN.
async fn secret(client: &Client, value: &serde_json::Value) -> String {
    secret_with_text(client, &value.to_string()).await
}

async fn secret_with_text(client: &Client, text: &str) -> String {
    let created = client
        .create_secret()
        .name(format!("chat-{}", uuid::Uuid::new_v4()))
        .secret_string(text)
        .send()
        .await
        .expect("moto creates the secret");
    created.arn().unwrap().to_owned()
}

/// A function's plain variables, naming the secret `arn`.
fn function_vars(arn: &str, more: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars = HashMap::from([
        ("TABLE_NAME".to_owned(), "chat".to_owned()),
        (SECRET_ARN.to_owned(), arn.to_owned()),
    ]);
    vars.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    vars
}

#[tokio::test]
async fn the_secrets_keys_configure_the_token_secret_model_keys_and_mcp_headers() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let client = client(&moto.endpoint).await;
    let arn = secret(
        &client,
        &json!({
            "JWT_SECRET": JWT_SECRET,
            "LLM_API_KEY": "sk-default",
            "OPENAI_API_KEY": "sk-openai",
            "MCP_SERVERS": [{"name": "shop", "url": "https://mcp.example/mcp",
                             "headers": {"Authorization": "Bearer mcp-token"}}],
        }),
    )
    .await;
    let providers = r#"{"openai": {"base_url": "https://api.openai.example/v1",
        "api_key_env": "OPENAI_API_KEY", "default_model": "gpt-x"}}"#;
    let vars = function_vars(&arn, &[("LLM_PROVIDERS", providers)]);

    let config = config_with_secret(vars, &arn, &client).await.unwrap();

    assert_eq!(config.jwt.secret.unwrap().expose(), JWT_SECRET);
    let key = |name: &str| match &config.llm.providers[name].api {
        ProviderApi::OpenAiCompatible { api_key, .. } => {
            api_key.as_ref().map(|k| k.expose().to_owned())
        }
        ProviderApi::Bedrock(_) => None,
    };
    assert_eq!(key("default").as_deref(), Some("sk-default"));
    assert_eq!(key("openai").as_deref(), Some("sk-openai"));
    let (header, value) = &config.mcp_servers[0].headers[0];
    assert_eq!(
        (header.as_str(), value.expose()),
        ("Authorization", "Bearer mcp-token")
    );
}

#[tokio::test]
async fn a_secret_without_a_key_the_function_needs_stops_the_start_naming_the_key() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let client = client(&moto.endpoint).await;
    let without_jwt = secret(&client, &json!({"LLM_API_KEY": "sk-default"})).await;
    let err = config_with_secret(function_vars(&without_jwt, &[]), &without_jwt, &client)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::MissingFromSecret {
            name: "JWT_SECRET",
            arn: without_jwt.clone()
        }
    );

    let providers = r#"{"openai": {"base_url": "https://api.openai.example/v1",
        "api_key_env": "OPENAI_API_KEY", "default_model": "gpt-x"}}"#;
    let without_provider_key = secret(&client, &json!({"JWT_SECRET": JWT_SECRET})).await;
    let vars = function_vars(&without_provider_key, &[("LLM_PROVIDERS", providers)]);
    let err = config_with_secret(vars, &without_provider_key, &client)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("OPENAI_API_KEY"), "{err}");
}

#[tokio::test]
async fn a_secret_that_cannot_be_used_stops_the_start_without_showing_its_value() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let client = client(&moto.endpoint).await;

    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nowhere-AbCdEf";
    let err = config_with_secret(function_vars(missing, &[]), missing, &client)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ConfigError::Secret { arn, .. } if arn == missing),
        "{err}"
    );

    let not_json = secret(&client, &json!("hunter2-0123456789abcdef0123456789")).await;
    let err = config_with_secret(function_vars(&not_json, &[]), &not_json, &client)
        .await
        .unwrap_err();
    assert!(matches!(err, ConfigError::Secret { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    // Set both ways, it would be unclear which one is in force.
    let doubled = secret(&client, &json!({"JWT_SECRET": JWT_SECRET})).await;
    let vars = function_vars(
        &doubled,
        &[("JWT_SECRET", "plain-0123456789abcdef0123456789abc")],
    );
    let err = config_with_secret(vars, &doubled, &client)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("JWT_SECRET"), "{err}");
    assert!(!err.to_string().contains(JWT_SECRET), "{err}");
}

/// The text of the secret template.yaml creates (`AppSecret`), as CloudFormation substitutes
/// these parameters into it.
fn secret_the_template_creates(jwt_secret: &str, llm_api_key: &str, mcp: &str) -> String {
    let template = include_str!("../../template.yaml");
    let line = template
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with(r#"- '{"JWT_SECRET""#))
        .expect("template.yaml creates the secret");
    line.trim_start_matches("- '")
        .trim_end_matches('\'')
        .replace("${JwtSecret}", jwt_secret)
        .replace("${LlmApiKey}", llm_api_key)
        .replace("${Mcp}", mcp)
}

#[tokio::test]
async fn the_secret_the_template_creates_is_one_the_functions_read() {
    let moto = tokio::task::spawn_blocking(MotoServer::start)
        .await
        .unwrap();
    let client = client(&moto.endpoint).await;
    let mcp = r#"[{"name": "shop", "url": "https://mcp.example/mcp", "headers": {"X-Key": "k"}}]"#;
    let full = secret_with_text(
        &client,
        &secret_the_template_creates(JWT_SECRET, "sk-default", mcp),
    )
    .await;
    let config = config_with_secret(function_vars(&full, &[]), &full, &client)
        .await
        .unwrap();
    assert_eq!(config.jwt.secret.unwrap().expose(), JWT_SECRET);
    assert_eq!(config.mcp_servers[0].headers[0].1.expose(), "k");

    // With a JWKS, no key and no MCP server, the template leaves those empty.
    let empty = secret_with_text(&client, &secret_the_template_creates("", "", "[]")).await;
    let vars = function_vars(&empty, &[("JWT_JWKS_URL", "https://idp.example/jwks")]);
    let config = config_with_secret(vars, &empty, &client).await.unwrap();
    assert!(config.jwt.secret.is_none());
    assert!(matches!(
        &config.llm.providers["default"].api,
        ProviderApi::OpenAiCompatible { api_key: None, .. }
    ));
    assert!(config.mcp_servers.is_empty());
}
