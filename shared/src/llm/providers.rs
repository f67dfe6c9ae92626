//! The named providers a request can choose from, each with its client and prices.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Bedrock, LlmClient, OpenAiCompatible, Usage};
use crate::config::{LlmConfig, ProviderApi, ProviderConfig};

pub struct Provider {
    pub name: String,
    pub config: ProviderConfig,
    pub client: Arc<dyn LlmClient>,
}

impl Provider {
    /// What a completion cost, from the provider's configured prices.
    pub fn cost(&self, usage: Usage) -> f64 {
        (f64::from(usage.prompt_tokens) * self.config.prompt_price_per_1k
            + f64::from(usage.completion_tokens) * self.config.completion_price_per_1k)
            / 1000.0
    }
}

pub struct Providers {
    by_name: HashMap<String, Arc<Provider>>,
    default: String,
}

impl Providers {
    /// Builds one client per provider over the shared HTTP client.
    pub fn new(config: &LlmConfig, http: &reqwest::Client) -> Self {
        let by_name = config
            .providers
            .iter()
            .map(|(name, provider)| {
                let client: Arc<dyn LlmClient> = match &provider.api {
                    ProviderApi::OpenAiCompatible { base_url, api_key } => {
                        Arc::new(OpenAiCompatible::new(
                            http.clone(),
                            base_url,
                            api_key.clone(),
                            config.request_timeout,
                            config.idle_timeout,
                        ))
                    }
                    ProviderApi::Bedrock(bedrock) => Arc::new(Bedrock::new(
                        http.clone(),
                        name,
                        bedrock,
                        config.aws_credentials.as_ref(),
                        config.request_timeout,
                        config.idle_timeout,
                    )),
                };
                let provider = Provider {
                    name: name.clone(),
                    config: provider.clone(),
                    client,
                };
                (name.clone(), Arc::new(provider))
            })
            .collect();
        Self {
            by_name,
            default: config.default_provider.clone(),
        }
    }

    /// The named provider, or the default one when no name is given.
    pub fn get(&self, name: Option<&str>) -> Option<Arc<Provider>> {
        self.by_name.get(name.unwrap_or(&self.default)).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}
