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
fn the_metrics_namespace_defaults_and_one_cloudwatch_would_refuse_is_named() {
    let base = [("TABLE_NAME", "t"), ("JWT_SECRET", SECRET)];
    let config = Config::from_vars(&vars(&base)).unwrap();
    assert_eq!(config.metrics_namespace, "ChatApi");
    let too_long = "n".repeat(256);
    for bad in [too_long.as_str(), "Chät", ":ChatApi"] {
        let err =
            Config::from_vars(&vars(&[base[0], base[1], ("METRICS_NAMESPACE", bad)])).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                ..
            }
        ));
    }
}

#[test]
fn named_providers_take_their_key_from_the_variable_they_name() {
    let config = Config::from_vars(&vars(&[
        ("TABLE_NAME", "t"),
        ("JWT_SECRET", SECRET),
        ("OPENAI_KEY", "sk-test"),
        (
            "LLM_PROVIDERS",
            r#"{"openai": {"base_url": "https://api.openai.example/v1", "api_key_env": "OPENAI_KEY",
                "default_model": "gpt-x", "prompt_price_per_1k": 0.5, "completion_price_per_1k": 1.5}}"#,
        ),
    ]))
    .unwrap();
    let openai = &config.llm.providers["openai"];
    let ProviderApi::OpenAiCompatible { api_key, .. } = &openai.api else {
        panic!("an entry without a kind is OpenAI-compatible: {openai:?}");
    };
    assert_eq!(api_key.as_ref().unwrap().expose(), "sk-test");
    assert_eq!(openai.completion_price_per_1k, 1.5);
    assert!(matches!(
        &config.llm.providers[DEFAULT_PROVIDER].api,
        ProviderApi::OpenAiCompatible { base_url, .. } if base_url == DEFAULT_LLM_BASE_URL
    ));
    assert_eq!(config.llm.default_provider, DEFAULT_PROVIDER);
}

#[test]
fn a_provider_naming_an_unset_key_variable_fails_the_start() {
    let err = Config::from_vars(&vars(&[
        ("TABLE_NAME", "t"),
        ("JWT_SECRET", SECRET),
        (
            "LLM_PROVIDERS",
            r#"{"x": {"base_url": "http://x", "api_key_env": "NOPE", "default_model": "m"}}"#,
        ),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("NOPE"));
}

#[test]
fn an_unknown_embedding_provider_fails_the_start() {
    let err = Config::from_vars(&vars(&[
        ("TABLE_NAME", "t"),
        ("JWT_SECRET", SECRET),
        ("EMBEDDING_PROVIDER", "nobody"),
    ]))
    .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::Invalid {
            name: "EMBEDDING_PROVIDER",
            ..
        }
    ));
}

#[test]
fn an_endpoint_gets_a_placeholder_key_unless_the_environment_names_credentials() {
    let base = [("TABLE_NAME", "t"), ("JWT_SECRET", SECRET)];
    let emulator = Config::from_vars(&vars(&base)).unwrap();
    assert_eq!(
        emulator.endpoint_credentials,
        EndpointCredentials::Placeholder
    );
    assert_eq!(emulator.aws_region, None);
    let real = Config::from_vars(&vars(
        &[
            &base[..],
            &[("AWS_PROFILE", "dev"), ("AWS_DEFAULT_REGION", "eu-west-1")],
        ]
        .concat(),
    ))
    .unwrap();
    assert_eq!(
        real.endpoint_credentials,
        EndpointCredentials::FromEnvironment
    );
    assert_eq!(real.aws_region.as_deref(), Some("eu-west-1"));
}

#[test]
fn titles_are_on_by_default_and_their_settings_are_checked_at_start() {
    let base = [("TABLE_NAME", "t"), ("JWT_SECRET", SECRET)];
    let config = Config::from_vars(&vars(&base)).unwrap();
    assert!(config.titles.enabled);
    assert_eq!(config.titles.model, None);
    let off = Config::from_vars(&vars(&[base[0], base[1], ("AUTO_TITLE", "false")])).unwrap();
    assert!(!off.titles.enabled);
    for (name, value) in [("AUTO_TITLE", "sometimes"), ("TITLE_PROVIDER", "nobody")] {
        let err = Config::from_vars(&vars(&[base[0], base[1], (name, value)])).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { name: n, .. } if n == name),
            "{err}"
        );
    }
}

#[test]
fn secrets_never_print() {
    let config = Config::from_vars(&vars(&[("TABLE_NAME", "t"), ("JWT_SECRET", SECRET)])).unwrap();
    assert!(!format!("{config:?}").contains(SECRET));
}
