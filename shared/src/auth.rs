//! Bearer-token authentication: HS256 with a shared secret, or RS256/ES256 keys from a JWKS.
//!
//! The two modes exclude each other. With a JWKS configured only its asymmetric keys verify
//! tokens and HS256 is refused even when `JWT_SECRET` is also set: otherwise anyone holding
//! a public key could try it as an HMAC secret (algorithm confusion), and a secret left over
//! in one environment would quietly widen who can mint tokens.
//!
//! JWKS keys are fetched on first use (not at cold start) and cached. A token naming an
//! unknown key id triggers one refetch (key rotation), then no more than one per
//! `min_refetch`. A failed fetch is remembered for `failure_backoff`, during which nothing is
//! fetched, and the last keys that were fetched keep verifying tokens even past their TTL
//! (stale-if-error), so an outage of the key host does not become an outage of the API.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::config::{JwtConfig, Secret};
use crate::error::ServiceError;

/// Tokens longer than this are refused unread; real ones are a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

/// How the JWKS cache refreshes.
#[derive(Debug, Clone, Copy)]
pub struct JwksPolicy {
    /// Keys older than this are refetched before use (and used anyway if that fails).
    pub ttl: Duration,
    /// After the first refetch for an unknown key id, further ones wait this long, so bad
    /// tokens cannot hammer the JWKS host.
    pub min_refetch: Duration,
    /// After a failed fetch, nothing is fetched for this long.
    pub failure_backoff: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
            min_refetch: Duration::from_secs(30),
            failure_backoff: Duration::from_secs(10),
        }
    }
}

/// The authenticated user of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// A key of the JWKS, with the algorithm it declares (if it does).
#[derive(Clone)]
struct JwksKey {
    alg: Option<KeyAlgorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct JwksState {
    /// The last keys fetched, and when.
    keys: Option<(Instant, HashMap<String, JwksKey>)>,
    /// When an unknown key id last caused a fetch.
    unknown_kid_fetch: Option<Instant>,
    /// When the last fetch failed, if the last fetch failed.
    failed: Option<Instant>,
}

struct JwksCache {
    url: String,
    http: reqwest::Client,
    policy: JwksPolicy,
    state: Mutex<JwksState>,
}

enum Mode {
    Hmac(DecodingKey),
    Jwks(JwksCache),
}

pub struct Authenticator {
    mode: Mode,
    validation: Validation,
}

impl Authenticator {
    pub fn new(config: &JwtConfig, http: reqwest::Client) -> Self {
        Self::with_policy(config, http, JwksPolicy::default())
    }

    pub fn with_policy(config: &JwtConfig, http: reqwest::Client, policy: JwksPolicy) -> Self {
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
        let mode = match (&config.jwks_url, &config.secret) {
            (Some(url), secret) => {
                if secret.is_some() {
                    tracing::warn!(
                        "JWT_SECRET is ignored: JWT_JWKS_URL is set, so only its RS256/ES256 keys verify tokens"
                    );
                }
                Mode::Jwks(JwksCache {
                    url: url.clone(),
                    http,
                    policy,
                    state: Mutex::new(JwksState::default()),
                })
            }
            (None, Some(secret)) => {
                Mode::Hmac(DecodingKey::from_secret(secret.expose().as_bytes()))
            }
            // Config refuses to start without either; a key nobody knows refuses every token.
            (None, None) => Mode::Hmac(DecodingKey::from_secret(uuid::Uuid::new_v4().as_bytes())),
        };
        Self { mode, validation }
    }

    /// Verifies a bearer token and returns its user.
    pub async fn verify(&self, token: &str) -> Result<Caller, ServiceError> {
        let invalid = |msg: &str| ServiceError::Unauthorized(msg.to_owned());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("The bearer token is too large."));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("The bearer token is malformed."))?;
        let key = match (&self.mode, header.alg) {
            (Mode::Hmac(key), Algorithm::HS256) => Some(key.clone()),
            (Mode::Jwks(jwks), Algorithm::RS256 | Algorithm::ES256) => {
                jwks.key(header.kid.as_deref().unwrap_or_default(), header.alg)
                    .await?
            }
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

fn declares(alg: KeyAlgorithm, header: Algorithm) -> bool {
    matches!(
        (alg, header),
        (KeyAlgorithm::RS256, Algorithm::RS256) | (KeyAlgorithm::ES256, Algorithm::ES256)
    )
}

impl JwksCache {
    /// The key `kid` names, if the JWKS has one for `alg`; 503 only when no keys were ever
    /// fetched and the key host is failing.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Option<DecodingKey>, ServiceError> {
        let policy = self.policy;
        // One lock for reads and fetches: requests that find no key queue behind the one
        // fetch instead of each fetching.
        let mut state = self.state.lock().await;
        let within =
            |at: Option<Instant>, period: Duration| at.is_some_and(|t| t.elapsed() < period);
        let (fresh, known) = match &state.keys {
            Some((fetched, keys)) => (fetched.elapsed() < policy.ttl, keys.contains_key(kid)),
            None => (false, false),
        };
        let unknown_kid = fresh && !known;
        let wanted =
            !fresh || (unknown_kid && !within(state.unknown_kid_fetch, policy.min_refetch));
        if wanted && !within(state.failed, policy.failure_backoff) {
            if unknown_kid {
                state.unknown_kid_fetch = Some(Instant::now());
            }
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = Some((Instant::now(), keys));
                    state.failed = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, url = %self.url, "JWKS fetch failed");
                    state.failed = Some(Instant::now());
                }
            }
        }
        match &state.keys {
            Some((_, keys)) => Ok(keys
                .get(kid)
                .filter(|k| k.alg.is_none_or(|declared| declares(declared, alg)))
                .map(|k| k.key.clone())),
            None => Err(ServiceError::Unavailable {
                detail: "The token keys could not be fetched; retry shortly.".into(),
                retry_after_secs: policy.failure_backoff.as_secs().max(1),
            }),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, JwksKey>, reqwest::Error> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(3))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
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
                Some((
                    jwk.common.key_id.clone().unwrap_or_default(),
                    JwksKey {
                        alg: jwk.common.key_algorithm,
                        key,
                    },
                ))
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-0123456789abcdef0123";
    fn client() -> reqwest::Client {
        crate::install_crypto_provider();
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn hs256_is_refused_when_a_jwks_is_configured_even_if_a_secret_is_set_too() {
        let config = JwtConfig {
            secret: Some(Secret::new(SECRET)),
            // Nothing listens here: HS256 must be refused before any key is looked up.
            jwks_url: Some("http://127.0.0.1:9/jwks".into()),
            ..Default::default()
        };
        let auth = Authenticator::new(&config, client());
        let token = issue_token(&Secret::new(SECRET), "mallory", Duration::from_secs(60));
        assert!(matches!(
            auth.verify(&token).await,
            Err(ServiceError::Unauthorized(_))
        ));
    }
}
