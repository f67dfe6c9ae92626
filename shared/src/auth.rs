//! Bearer-token authentication: HS256 with a shared secret, or RS256/ES256 keys from a JWKS.
//!
//! The decoding keys are built once; JWKS keys are fetched on first use (not at cold start)
//! and cached, with a refetch when a token names a key id the cache does not know.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::config::{JwtConfig, Secret};
use crate::error::ApiError;

/// Tokens longer than this are refused unread; real ones are a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;
const JWKS_TTL: Duration = Duration::from_secs(600);
/// An unknown key id triggers a refetch at most this often, so bad tokens cannot hammer the JWKS host.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

/// The authenticated user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("Authentication is required.".into()))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

struct JwksCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<Option<(Instant, HashMap<String, DecodingKey>)>>,
}

pub struct Authenticator {
    hmac: Option<DecodingKey>,
    jwks: Option<JwksCache>,
    validation: Validation,
}

impl Authenticator {
    pub fn new(config: &JwtConfig, http: reqwest::Client) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        Self {
            hmac: config
                .secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose().as_bytes())),
            jwks: config.jwks_url.as_ref().map(|url| JwksCache {
                url: url.clone(),
                http,
                keys: RwLock::new(None),
            }),
            validation,
        }
    }

    /// Verifies a bearer token and returns its user.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let invalid = |msg: &str| ApiError::Unauthorized(msg.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("The bearer token is too large."));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("The bearer token is malformed."))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hmac.clone(),
            Algorithm::RS256 | Algorithm::ES256 => match &self.jwks {
                Some(jwks) => jwks.key(header.kid.as_deref(), header.alg).await?,
                None => None,
            },
            _ => None,
        }
        .ok_or_else(|| {
            invalid("The bearer token is signed with an algorithm or key this API does not accept.")
        })?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|e| {
            invalid(match e.kind() {
                ErrorKind::ExpiredSignature => "The bearer token has expired.",
                ErrorKind::ImmatureSignature => "The bearer token is not valid yet.",
                ErrorKind::InvalidSignature => "The bearer token's signature is invalid.",
                ErrorKind::InvalidIssuer => "The bearer token's issuer is not accepted.",
                ErrorKind::InvalidAudience => "The bearer token's audience is not accepted.",
                ErrorKind::MissingRequiredClaim(_) => "The bearer token lacks a required claim.",
                _ => "The bearer token is invalid.",
            })
        })?;
        let sub = data.claims.sub.trim();
        if sub.is_empty() || sub.len() > 256 {
            return Err(invalid("The bearer token's subject is invalid."));
        }
        Ok(Caller {
            user_id: sub.to_owned(),
        })
    }
}

impl JwksCache {
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Option<DecodingKey>, ApiError> {
        let kid = kid.unwrap_or_default();
        {
            let cached = self.keys.read().await;
            if let Some((fetched, keys)) = cached.as_ref() {
                let fresh = fetched.elapsed() < JWKS_TTL;
                if fresh && let Some(key) = keys.get(kid) {
                    return Ok(Some(key.clone()));
                }
                if fetched.elapsed() < JWKS_MIN_REFETCH {
                    return Ok(None);
                }
            }
        }
        let mut cached = self.keys.write().await;
        // Another request may have refreshed the keys while this one waited for the lock.
        if let Some((fetched, keys)) = cached.as_ref()
            && fetched.elapsed() < JWKS_MIN_REFETCH
        {
            return Ok(keys.get(kid).cloned());
        }
        let keys = self.fetch(alg).await?;
        let key = keys.get(kid).cloned();
        *cached = Some((Instant::now(), keys));
        Ok(key)
    }

    async fn fetch(&self, _alg: Algorithm) -> Result<HashMap<String, DecodingKey>, ApiError> {
        let unavailable = |e: reqwest::Error| {
            tracing::warn!(error = %e, url = %self.url, "JWKS fetch failed");
            ApiError::Unavailable {
                detail: "The token keys could not be fetched; retry shortly.".into(),
                retry_after_secs: 5,
            }
        };
        let set: JwkSet = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        Ok(set
            .keys
            .iter()
            .filter(|jwk| {
                matches!(
                    jwk.common.key_algorithm,
                    None | Some(KeyAlgorithm::RS256 | KeyAlgorithm::ES256)
                )
            })
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((jwk.common.key_id.clone().unwrap_or_default(), key))
            })
            .collect())
    }
}

/// Signs an HS256 token for a user; the local run's `token` command and the tests use it.
pub fn issue_token(secret: &Secret, user_id: &str, ttl: Duration) -> String {
    let claims = Claims {
        sub: user_id.to_owned(),
        exp: jsonwebtoken::get_current_timestamp() + ttl.as_secs(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}
