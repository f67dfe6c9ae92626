//! The stack a benchmark runs against: the embedded DynamoDB (dynoxide, over HTTP on
//! loopback, as the local run and the tests use it), the configuration a function reads, and a
//! store whose SDK client counts its round trips.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use shared::AppState;
use shared::config::{Config, Secret};
use shared::local::EmbeddedDynamoDb;
use shared::store::Store;

use crate::counting::RoundTrips;

/// The HS256 secret of every benchmark token.
pub const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";
pub const TABLE: &str = "chat-bench";

/// The variables a function is started with, against `endpoint` and the model at `llm_base_url`.
/// Rate limits are raised so that no run is refused; the request is still counted.
pub fn function_vars(endpoint: &str, llm_base_url: &str) -> HashMap<String, String> {
    HashMap::from([
        ("TABLE_NAME".into(), TABLE.into()),
        ("DYNAMODB_ENDPOINT".into(), endpoint.into()),
        ("JWT_SECRET".into(), SECRET.into()),
        ("RATE_LIMIT_PER_MINUTE".into(), "100000000".into()),
        ("RATE_LIMIT_PER_HOUR".into(), "100000000".into()),
        ("LLM_BASE_URL".into(), llm_base_url.into()),
        ("LLM_MODEL".into(), "bench-model".into()),
        ("CORS_ALLOW_ORIGINS".into(), "https://app.example".into()),
        ("RUST_LOG".into(), "info".into()),
    ])
}

/// `LD_PRELOAD` for the function processes, from `BENCH_FUNCTION_PRELOAD` (the functions start
/// with a clean environment, so it has to be passed on explicitly).
pub fn preload() -> Vec<(String, String)> {
    std::env::var("BENCH_FUNCTION_PRELOAD")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| ("LD_PRELOAD".to_owned(), p))
        .into_iter()
        .collect()
}

pub fn token(user_id: &str) -> String {
    shared::auth::issue_token(
        &Secret::new(SECRET),
        user_id,
        Duration::from_secs(24 * 3600),
    )
}

/// Logs as a function writes them (JSON lines with the request span's fields), into a sink:
/// formatting them is part of a request's cost, printing them is not the benchmark's business.
pub fn init_tracing() {
    let _ = shared::logging::json_logs()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,dynoxide=warn"))
        .with_writer(std::io::sink)
        .try_init();
}

pub struct Stack {
    pub dynamodb: EmbeddedDynamoDb,
    pub config: Config,
    pub state: AppState,
    pub round_trips: RoundTrips,
}

impl Stack {
    /// Starts an in-memory dynoxide with the table created, and the state a function builds at
    /// cold start, with a store that counts round trips.
    pub async fn start(llm_base_url: &str) -> anyhow::Result<Self> {
        let dynamodb = EmbeddedDynamoDb::start(None).await?;
        let config = Config::from_vars(&function_vars(dynamodb.endpoint(), llm_base_url))?;
        let round_trips = RoundTrips::default();
        let store = counting_store(&config, &round_trips).await;
        store.ensure_table().await?;
        round_trips.take();
        let state = AppState::with_store(config.clone(), store)?;
        Ok(Self {
            dynamodb,
            config,
            state,
            round_trips,
        })
    }
}

/// The client `Store::connect` builds for an explicit endpoint, with the counter added.
pub async fn counting_store(config: &Config, round_trips: &RoundTrips) -> Store {
    let reference = Store::connect(config).await;
    let sdk_config = reference.client().config().to_builder();
    let client = Client::from_conf(sdk_config.interceptor(round_trips.interceptor()).build());
    Store::new(client, config.table_name.as_str())
}
