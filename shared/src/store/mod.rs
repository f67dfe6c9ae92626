//! DynamoDB access: one table for both API dialects (see `keys` for its layout).

mod attributes;
mod characters;
mod conversations;
pub mod documents;
mod feedback;
pub mod idempotency;
pub mod items;
pub mod keys;
mod ops;
mod rate_limit;
mod recent;
mod sessions;
mod stats;
mod streams;
pub mod table;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;

pub use conversations::{ConversationRecord, QuotaChange, QuotaState, WindowRead};
pub use feedback::FeedbackCounts;
pub use rate_limit::{PendingCount, RateLimitStatus};
pub use recent::KEPT_MESSAGES;
pub use sessions::ChatRecord;
pub use stats::{Execution, ExecutionStats, ToolFigures};
pub use streams::{AnswerPlace, Checkpoint};

use crate::config::{Config, EndpointCredentials};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("item not found")]
    NotFound,
    /// Another writer changed the item first; the caller may re-read and retry.
    #[error("concurrent update")]
    Conflict,
    #[error("item of {bytes} bytes exceeds DynamoDB's 400 KB limit")]
    ItemTooLarge { bytes: usize },
    /// A turn's claim found its chat's quota used up (running turns counted).
    #[error("quota used up: {used} of {limit}")]
    QuotaExceeded { used: u64, limit: u64 },
    /// A chat's snapshot of its character or backend no longer matches them.
    #[error("the chat's character or backend changed")]
    Stale,
    #[error("DynamoDB is unavailable or throttling")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Error codes after which a retry can succeed: throttling and DynamoDB's own faults.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        // A 5xx without a DynamoDB error code comes from something in between (a proxy, a
        // load balancer): as transient as DynamoDB's own faults.
        SdkError::ServiceError(e) => {
            e.err().code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || (e.raw() as &dyn std::any::Any)
                    .downcast_ref::<HttpResponse>()
                    .is_some_and(|raw| raw.status().is_server_error())
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable(anyhow::Error::new(err))
    } else {
        StoreError::Other(anyhow::Error::new(err))
    }
}

/// The table and the client to reach it; cheap to clone, built once per cold start.
#[derive(Clone)]
pub struct Store {
    client: Client,
    table: Arc<str>,
    append_locks: Arc<[tokio::sync::Mutex<()>]>,
    /// The newest messages of the conversations this instance used, between requests.
    recent: Arc<recent::RecentWindows>,
}

/// Appends to one conversation from this instance queue on one of these locks instead of
/// racing each other's conditional writes; the conditions still settle races between
/// instances.
const APPEND_LOCK_STRIPES: usize = 64;

/// The SDK configuration loader every AWS client here starts from: bounded timeouts and the
/// HTTPS client built by hand. `endpoint` is the override the client will use, if any.
pub fn sdk_loader(endpoint: Option<&str>) -> aws_config::ConfigLoader {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build();
    // Connector::builder's defaults, unlike the SDK's default client: TCP_NODELAY on (a request
    // written in two segments would otherwise wait for a delayed ACK) and ring, the crypto
    // library reqwest uses too. A plain-HTTP endpoint (the embedded emulator) is given no
    // root certificates: loading them reads and parses every one the system has, a few
    // milliseconds of cold start for a connection that never uses TLS.
    let plain_http = endpoint.is_some_and(|endpoint| endpoint.starts_with("http://"));
    let trust_store = if plain_http {
        tls::TrustStore::empty()
    } else {
        tls::TrustStore::default()
    };
    let tls_context = tls::TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .expect("a TLS context without custom certificates is valid");
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(timeouts)
}

impl Store {
    pub fn new(client: Client, table: impl Into<Arc<str>>) -> Self {
        Self {
            client,
            table: table.into(),
            append_locks: (0..APPEND_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            recent: Arc::default(),
        }
    }

    /// The lock that appends to this conversation take in this instance.
    fn append_lock(&self, conversation_id: &str) -> &tokio::sync::Mutex<()> {
        // FNV-1a: cheap, and any even spread of ids over the stripes will do.
        let hash = conversation_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        &self.append_locks[(hash % APPEND_LOCK_STRIPES as u64) as usize]
    }

    /// Builds the SDK client. With an explicit endpoint (the local run, the tests) the region
    /// is `AWS_REGION` or us-east-1, and the credentials a placeholder unless the environment
    /// names real ones, so nothing probes the network at start against an emulator.
    pub async fn connect(config: &Config) -> Self {
        let loader = sdk_loader(config.dynamodb_endpoint.as_deref());
        let sdk_config = match &config.dynamodb_endpoint {
            Some(endpoint) => {
                let region = config
                    .aws_region
                    .as_deref()
                    .unwrap_or("us-east-1")
                    .to_owned();
                let loader = loader
                    .endpoint_url(endpoint)
                    .region(aws_config::Region::new(region));
                match config.endpoint_credentials {
                    EndpointCredentials::Placeholder => {
                        loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                            "local", "local", None, None, "static",
                        ))
                    }
                    // Read with the configuration (Bedrock's, from the same variables): used
                    // as they are, so that what the configuration says is what signs.
                    EndpointCredentials::FromEnvironment => match &config.llm.aws_credentials {
                        Some(given) => {
                            loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                                &given.access_key_id,
                                given.secret_access_key.expose(),
                                given.session_token.as_ref().map(|t| t.expose().to_owned()),
                                None,
                                "configuration",
                            ))
                        }
                        None => loader,
                    },
                }
                .load()
                .await
            }
            None => loader.load().await,
        };
        Self::new(Client::new(&sdk_config), config.table_name.as_str())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}
