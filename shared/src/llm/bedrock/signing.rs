//! SigV4 signatures for Bedrock requests, with credentials from AWS's standard chain.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tokio::sync::{Mutex, OnceCell};

use crate::config::AwsCredentials;

/// The service name Bedrock's Runtime API signs with.
const SERVICE: &str = "bedrock";
/// Credentials this close to their expiry are fetched again, so that none expires in flight.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Where credentials come from.
enum Source {
    /// Given in the environment (Lambda gives the function's role this way): used as they are.
    Fixed(Credentials),
    /// The rest of the chain (profile, web identity, container, instance metadata), built on
    /// first use and asked again shortly before what it gave expires.
    Chain {
        provider: OnceCell<SharedCredentialsProvider>,
        cached: Mutex<Option<Credentials>>,
    },
}

pub(super) struct Signer {
    region: String,
    source: Source,
}

/// Why a request could not be signed: no credentials, or none that sign.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct SigningError(String);

impl Signer {
    pub(super) fn new(region: &str, credentials: Option<&AwsCredentials>) -> Self {
        let source = match credentials {
            Some(given) => Source::Fixed(Credentials::new(
                given.access_key_id.clone(),
                given.secret_access_key.expose(),
                given.session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "environment",
            )),
            None => Source::Chain {
                provider: OnceCell::new(),
                cached: Mutex::new(None),
            },
        };
        Self {
            region: region.to_owned(),
            source,
        }
    }

    async fn credentials(&self) -> Result<Credentials, SigningError> {
        let (provider, cached) = match &self.source {
            Source::Fixed(credentials) => return Ok(credentials.clone()),
            Source::Chain { provider, cached } => (provider, cached),
        };
        let mut cached = cached.lock().await;
        if let Some(credentials) = cached.as_ref()
            && credentials.expiry().is_none_or(|expiry| {
                expiry
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
            })
        {
            return Ok(credentials.clone());
        }
        let provider = provider.get_or_try_init(|| self.chain()).await?;
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(|e| SigningError(format!("no AWS credentials were found ({e})")))?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// AWS's default chain over an HTTPS client with the crypto library the rest of the
    /// process uses (the container and instance-metadata providers make HTTP calls).
    async fn chain(&self) -> Result<SharedCredentialsProvider, SigningError> {
        use aws_smithy_http_client::tls;
        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(self.region.clone()))
            .http_client(http_client)
            .load()
            .await
            .credentials_provider()
            .ok_or_else(|| SigningError("no AWS credentials provider is configured".into()))
    }

    /// The headers that sign a POST of `body` to `url` (already percent-encoded) with these
    /// other headers: `authorization`, `x-amz-date` and, for temporary credentials,
    /// `x-amz-security-token`.
    pub(super) async fn sign(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(&'static str, String)>, SigningError> {
        let identity = Identity::from(self.credentials().await?);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SigningError(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| SigningError(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| SigningError(e.to_string()))?
            .into_parts();
        let (headers, _params) = instructions.into_parts();
        Ok(headers
            .into_iter()
            .map(|header| (header.name(), header.value().to_owned()))
            .collect())
    }
}
