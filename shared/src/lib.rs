//! The library behind every chat function: configuration, authentication, errors, the HTTP
//! layer, the DynamoDB store, the domain and the routers of each endpoint group.

pub mod api;
pub mod auth;
pub mod config;
pub mod documents;
pub mod domain;
pub mod error;
pub mod http;
pub mod llm;
#[cfg(feature = "local")]
pub mod local;
pub mod logging;
pub mod metrics;
pub mod secrets;
pub mod service;
pub mod store;
mod tls;
pub mod tools;

use std::sync::Arc;

use auth::Authenticator;
use config::Config;
use llm::Providers;
use store::Store;

/// reqwest and rmcp take the process's default crypto provider, and ring is the only one linked
/// in, so whatever builds an HTTP client (the service, a test, a benchmark) calls this first.
/// Later calls find it installed, which is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What every handler can reach; built once per cold start and cloned per request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub llm: Arc<Providers>,
    pub mcp: Arc<tools::McpHub>,
}

impl AppState {
    pub async fn new(config: Config) -> Result<Self, reqwest::Error> {
        let store = Store::connect(&config).await;
        Self::with_store(config, store)
    }

    /// Fails when the HTTP client cannot be built: a function without its TLS set-up and
    /// timeouts would fail later and less clearly, so the cold start stops here instead.
    pub fn with_store(config: Config, store: Store) -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        // One HTTP client per cold start, shared by the LLM providers, MCP and the JWKS fetch;
        // its root certificates are loaded on the first TLS handshake (tls.rs).
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls::client_config())
            .connect_timeout(config.llm.connect_timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Self {
            llm: Arc::new(Providers::new(&config.llm, &http)),
            mcp: Arc::new(tools::McpHub::new(&config.mcp_servers, http.clone())),
            auth: Arc::new(Authenticator::new(&config.jwt, http)),
            config: Arc::new(config),
            store,
        })
    }
}
