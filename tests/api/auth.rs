use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_tests::{TEST_SECRET, TestApp};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::auth::{Authenticator, JwksPolicy};
use shared::config::JwtConfig;

const CONVERSATIONS: &str = "/api/v1/chat/conversations";

/// A throwaway P-256 key for the tests' JWKS; it signs nothing outside them.
const EC_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPNNAFg4uvWWGjBoA
uutVxkx5F2Isxke6Lof2qEhttzGhRANCAAQ/d3nHRLQEDbUWASdWsC3QeKfO08qX
mTdE6pFSwm7aEuJirU78HI+vQUaC+KRADv2z5HdsUuR5wG7lCumUz/+i
-----END PRIVATE KEY-----";
const EC_X: &str = "P3d5x0S0BA21FgEnVrAt0HinztPKl5k3ROqRUsJu2hI";
const EC_Y: &str = "4mKtTvwcj69BRoL4pEAO_bPkd2xS5HnAbuUK6ZTP_6I";

/// A throwaway RSA key for the tests' JWKS; it signs nothing outside them.
const RSA_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCsJ5sk3q2SLNcN
EhUJLvwJIuGfruhREICJ/oBrFbNHBFncFe865UJA0ef3wFQX4i+j7Zih8RBlBJYF
U/oJBZV6moPVmDdPOz2LZkbhYInwz+ns1H9nNXZiMINUF2NeyqjQpAG/ViLVn1zR
B7mOJ7T5YFXpvnImT6dEtr+EATZ+IoXZhsiCy/qE5O05KAV+Tc/Q7mSzKzJHaSst
1M+Ba3FuVc0rlNliSTj2/gZT6f1x+CsuaWC6vVYNrCQzImOxz0mpz9UnWdLjhohh
Mf5jIGN1uwCI3TCAuZHXfBTbE5P6zZ00YFj60m+hrqmw7sH+2NdBNCcIEzPV6lqn
2ja5aE9DAgMBAAECggEAP8DTFY5ZXP66DR8bJzF9KK0APTB63DpuP6w+Rmnc4Hne
BUEiPP9Vz8dsTjWtbsLWvbBpi99IIQDXxdVZjSnCN4stM1aRdQgNPKh9q00jCEkW
6huvqrsDwk0Q9X1L0Xjfl5SFCSSO9el0Z/yiXOCbhpaEenGKuGFbInlC51HDqmXn
CmtnpeI3EgCpDFYMZevZfWKOxjYNfVl3Cf63gqyuJaRelgYb8U99dfXnjcC7i3XD
Ha0oad4BiCHKRHJHEsPDQOG4jQR6fNBQRc/IQvoOqrgHgGbrgVIcIyG04fTFrDP6
lPOngeLwxgUK1O11fApG/2A8ob3AmLYTKcfxXqi3cQKBgQDSbSc3pJww0q+aglW8
o3xEvKwe+/0OfNKmYu9al41WOdmGTjSM+gKsjI+qiYAShHdJxdlE00sr0TqRxnX7
9PfO4kzvKk1gNl2PYdMpN6HhMXzTTvgdjwzaENO0rLkgf1J8rj3cD3RMT8PgBxcO
215TpHGtdU6XY8wZEGBYKDPdPQKBgQDRcIZGvnsXLfBu/k3g2g50In+Ij4g5D/vW
tstdvEbx2nwFcSAPvcieSjP9tMQnF22yupo2iZtELsfUTglLxkNHrZL1XBNEZjSr
Yk9jv/GBxe8LETI5GqsT/qCHILqcUF1J/SfnoLmwCpKIwFlUkguUk8J+8/lulAMr
lxBFkpimfwKBgH5LMOx+iZfr+6U6cIblgGIo8w0tpHYbiLqASrQOna+QzPOE4Jl0
PEKfomJyYEG863OFoZ9jSYyk6QgxGwL7xfePbylkNEh4mLLDvd7RGwFzmD2i+duT
zdzbmJSpzfqpMDLQySPYyq46eY9t8fLiyrxcyDWZYHAQX6DzaT+/8VDpAoGADrna
tx6tiPOx9BvtXeH3IjNKxE9TRK/bBT3VDsIuOtMh5UAPAQxXDsoo3a3YHOeIzwhP
z4XdZO3lHwhdnvZRxLhvnNDcifKlwWcoLdtRH87K//w1i85UOROuNdIXTOZZqNoj
9CVY6QfVRchAf7HFHq1E/6gn4Z6GmooEmt+z3AECgYEAsMhXJo6dOfIyXjVgswb8
Ba0nqL8UZe1Mk/qyouG2HzTT0bScLp+yM6Y5z6guYHzojsl7FiaAtLCHNzOqy/Mw
cMUCLT/ZicpA7Ym/1oHOsbLdUoXsefrQsnbrcyQstQm79bUwjjQf+TucYV97bfmb
ScL70ycWicZlWZ+wMNHtCm4=
-----END PRIVATE KEY-----";
/// The same key's public half, as an attacker would read it from the JWKS or a certificate.
const RSA_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArCebJN6tkizXDRIVCS78
CSLhn67oURCAif6AaxWzRwRZ3BXvOuVCQNHn98BUF+Ivo+2YofEQZQSWBVP6CQWV
epqD1Zg3Tzs9i2ZG4WCJ8M/p7NR/ZzV2YjCDVBdjXsqo0KQBv1Yi1Z9c0Qe5jie0
+WBV6b5yJk+nRLa/hAE2fiKF2YbIgsv6hOTtOSgFfk3P0O5ksysyR2krLdTPgWtx
blXNK5TZYkk49v4GU+n9cfgrLmlgur1WDawkMyJjsc9Jqc/VJ1nS44aIYTH+YyBj
dbsAiN0wgLmR13wU2xOT+s2dNGBY+tJvoa6psO7B/tjXQTQnCBMz1epap9o2uWhP
QwIDAQAB
-----END PUBLIC KEY-----";
const RSA_N: &str = "rCebJN6tkizXDRIVCS78CSLhn67oURCAif6AaxWzRwRZ3BXvOuVCQNHn98BUF-Ivo-2YofEQZQSWBVP6CQWVepqD1Zg3Tzs9i2ZG4WCJ8M_p7NR_ZzV2YjCDVBdjXsqo0KQBv1Yi1Z9c0Qe5jie0-WBV6b5yJk-nRLa_hAE2fiKF2YbIgsv6hOTtOSgFfk3P0O5ksysyR2krLdTPgWtxblXNK5TZYkk49v4GU-n9cfgrLmlgur1WDawkMyJjsc9Jqc_VJ1nS44aIYTH-YyBjdbsAiN0wgLmR13wU2xOT-s2dNGBY-tJvoa6psO7B_tjXQTQnCBMz1epap9o2uWhPQw";

fn rs256(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn rsa_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"})
}

fn ec_jwk(kid: &str) -> Value {
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256", "x": EC_X, "y": EC_Y})
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn es256(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE_KEY.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn valid_claims() -> Value {
    json!({"sub": "alice", "exp": get_current_timestamp() + 600})
}

async fn status_with(app: &TestApp, token: &str) -> api_tests::Reply {
    api_tests::Reply::from(
        app.http
            .get(format!("{}{CONVERSATIONS}", app.base_url))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn hostile_or_broken_tokens_are_all_401() {
    let app = TestApp::spawn().await;
    let now = get_current_timestamp();
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&valid_claims())
    );
    let cases = [
        ("alg none", unsigned),
        (
            "bad signature",
            hs256(&valid_claims(), "another-secret-0123456789abcdef012345"),
        ),
        (
            "expired",
            hs256(&json!({"sub": "alice", "exp": now - 3600}), TEST_SECRET),
        ),
        (
            "not yet valid",
            hs256(
                &json!({"sub": "alice", "exp": now + 3600, "nbf": now + 1800}),
                TEST_SECRET,
            ),
        ),
        ("no sub", hs256(&json!({"exp": now + 600}), TEST_SECRET)),
        (
            "empty sub",
            hs256(&json!({"sub": "", "exp": now + 600}), TEST_SECRET),
        ),
        ("no exp", hs256(&json!({"sub": "alice"}), TEST_SECRET)),
        (
            "exp as a string",
            hs256(
                &json!({"sub": "alice", "exp": (now + 600).to_string()}),
                TEST_SECRET,
            ),
        ),
        ("garbage", "not.a.token".to_owned()),
        ("oversized", format!("{}.{}.sig", "a".repeat(9000), "b")),
        ("ES256 without a JWKS", es256(&valid_claims(), "k1")),
    ];
    for (case, token) in cases {
        let reply = status_with(&app, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{case}: {}",
            reply.body
        );
        reply.assert_problem(401);
    }
    assert_eq!(
        status_with(&app, &hs256(&valid_claims(), TEST_SECRET))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = TestApp::spawn_with(&[
        ("JWT_ISSUER", "https://issuer.example"),
        ("JWT_AUDIENCE", "chat-api"),
    ])
    .await;
    let exp = get_current_timestamp() + 600;
    let right =
        json!({"sub": "alice", "exp": exp, "iss": "https://issuer.example", "aud": "chat-api"});
    assert_eq!(
        status_with(&app, &hs256(&right, TEST_SECRET)).await.status,
        StatusCode::OK
    );
    for wrong in [
        json!({"sub": "alice", "exp": exp, "iss": "https://other.example", "aud": "chat-api"}),
        json!({"sub": "alice", "exp": exp, "iss": "https://issuer.example", "aud": "other"}),
        json!({"sub": "alice", "exp": exp}),
    ] {
        status_with(&app, &hs256(&wrong, TEST_SECRET))
            .await
            .assert_problem(401);
    }
}

/// A JWKS host whose keys can change and which can fail, counting every fetch.
struct JwksHost {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    failing: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

impl JwksHost {
    async fn start(keys: Vec<Value>) -> Self {
        let keys = Arc::new(Mutex::new(keys));
        let failing = Arc::new(AtomicBool::new(false));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let (k, f, n) = (keys.clone(), failing.clone(), fetches.clone());
        let router = axum::Router::new().route(
            "/.well-known/jwks.json",
            get(move || {
                let (keys, failing, fetches) = (k.clone(), f.clone(), n.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        return Err(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    let keys = keys.lock().unwrap().clone();
                    Ok(axum::Json(json!({ "keys": keys })))
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            keys,
            failing,
            fetches,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn serve_jwks() -> String {
    JwksHost::start(vec![ec_jwk("k1")]).await.url
}

async fn jwks_app(host: &JwksHost) -> TestApp {
    TestApp::spawn_with(&[("JWT_SECRET", ""), ("JWT_JWKS_URL", &host.url)]).await
}

#[tokio::test]
async fn keys_from_a_jwks_verify_es256_tokens_and_hs256_is_then_refused() {
    let jwks_url = serve_jwks().await;
    let app = TestApp::spawn_with(&[("JWT_SECRET", ""), ("JWT_JWKS_URL", &jwks_url)]).await;
    let reply = status_with(&app, &es256(&valid_claims(), "k1")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    status_with(&app, &es256(&valid_claims(), "unknown-kid"))
        .await
        .assert_problem(401);
    status_with(&app, &hs256(&valid_claims(), TEST_SECRET))
        .await
        .assert_problem(401);
}

#[tokio::test]
async fn the_token_subject_is_the_user() {
    let app = TestApp::spawn().await;
    let created = app.create_conversation("alice@example.com", "mine").await;
    let reply = app
        .get(&format!("{CONVERSATIONS}/{created}"), "alice@example.com")
        .await;
    assert_eq!(reply.body["user_id"], "alice@example.com");
}

#[tokio::test]
async fn rs256_tokens_verify_with_jwks_keys_and_a_bad_signature_or_an_hs256_forgery_is_401() {
    let host = JwksHost::start(vec![rsa_jwk("rsa-1"), ec_jwk("k1")]).await;
    // A secret left set beside the JWKS must not make HS256 tokens acceptable.
    let app = TestApp::spawn_with(&[("JWT_JWKS_URL", &host.url)]).await;
    status_with(&app, &hs256(&valid_claims(), TEST_SECRET))
        .await
        .assert_problem(401);
    let reply = status_with(&app, &rs256(&valid_claims(), "rsa-1")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // The signature of another token on these claims: a valid RS256 signature, but not of them.
    let token = rs256(&valid_claims(), "rsa-1");
    let other = rs256(
        &json!({"sub": "mallory", "exp": get_current_timestamp() + 600}),
        "rsa-1",
    );
    let (head_and_claims, _) = token.rsplit_once('.').unwrap();
    let (_, other_signature) = other.rsplit_once('.').unwrap();
    status_with(&app, &format!("{head_and_claims}.{other_signature}"))
        .await
        .assert_problem(401);

    // The classic confusion attack: HS256 keyed with the RSA public key, naming its kid.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    for secret in [RSA_PUBLIC_KEY.as_bytes(), RSA_N.as_bytes()] {
        let forged = encode(&header, &valid_claims(), &EncodingKey::from_secret(secret)).unwrap();
        status_with(&app, &forged).await.assert_problem(401);
    }
}

#[tokio::test]
async fn jwks_keys_are_fetched_once_for_many_requests_and_an_unknown_kid_refetches_once() {
    let host = JwksHost::start(vec![ec_jwk("k1")]).await;
    let app = jwks_app(&host).await;
    for _ in 0..10 {
        let reply = status_with(&app, &es256(&valid_claims(), "k1")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    assert_eq!(host.fetches(), 1);

    // The issuer rotates in a new key: the first token naming it causes one refetch.
    host.keys.lock().unwrap().push(rsa_jwk("rsa-2"));
    let reply = status_with(&app, &rs256(&valid_claims(), "rsa-2")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(host.fetches(), 2);

    // Key ids nobody has do not make the API hammer the key host.
    for n in 0..5 {
        status_with(&app, &rs256(&valid_claims(), &format!("made-up-{n}")))
            .await
            .assert_problem(401);
    }
    assert!(host.fetches() <= 3, "{} fetches", host.fetches());
}

#[tokio::test]
async fn a_failing_jwks_host_is_asked_once_and_the_last_good_keys_keep_working() {
    let host = JwksHost::start(vec![ec_jwk("k1")]).await;
    host.failing.store(true, Ordering::SeqCst);
    let cold = jwks_app(&host).await;
    for _ in 0..5 {
        let reply = status_with(&cold, &es256(&valid_claims(), "k1")).await;
        reply.assert_problem(503);
        assert!(reply.header("retry-after").parse::<u64>().unwrap() >= 1);
    }
    assert_eq!(
        host.fetches(),
        1,
        "the failure is remembered, not retried per request"
    );

    let host = JwksHost::start(vec![ec_jwk("k1")]).await;
    let warm = jwks_app(&host).await;
    assert_eq!(
        status_with(&warm, &es256(&valid_claims(), "k1"))
            .await
            .status,
        StatusCode::OK
    );
    host.failing.store(true, Ordering::SeqCst);
    // An unknown kid makes the API try the host, which fails; known keys go on verifying.
    status_with(&warm, &rs256(&valid_claims(), "rsa-new"))
        .await
        .assert_problem(401);
    for _ in 0..5 {
        assert_eq!(
            status_with(&warm, &es256(&valid_claims(), "k1"))
                .await
                .status,
            StatusCode::OK
        );
    }
    assert_eq!(host.fetches(), 2);
}

#[tokio::test]
async fn expired_keys_keep_verifying_while_the_key_host_fails_and_the_failure_is_remembered() {
    let host = JwksHost::start(vec![ec_jwk("k1")]).await;
    let config = JwtConfig {
        jwks_url: Some(host.url.clone()),
        ..Default::default()
    };
    // Keys expire at once, so every request wants a refetch.
    let policy = JwksPolicy {
        ttl: Duration::ZERO,
        min_refetch: Duration::ZERO,
        failure_backoff: Duration::from_secs(3600),
    };
    shared::install_crypto_provider();
    let auth = Authenticator::with_policy(&config, reqwest::Client::new(), policy);
    let token = es256(&valid_claims(), "k1");
    assert_eq!(auth.verify(&token).await.unwrap().user_id, "alice");
    assert_eq!(host.fetches(), 1);
    host.failing.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        assert_eq!(auth.verify(&token).await.unwrap().user_id, "alice");
    }
    assert_eq!(
        host.fetches(),
        2,
        "one failed attempt, then none until the backoff is over"
    );
}

#[tokio::test]
async fn a_64_kb_authorization_header_is_refused_without_a_server_error() {
    let app = TestApp::spawn().await;
    let huge = format!("Bearer {}", "a".repeat(64 * 1024));
    let response = app
        .http
        .get(format!("{}{CONVERSATIONS}", app.base_url))
        .header("authorization", huge)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert!(
        status == 401 || status == 431,
        "a 64 KB header is 401 or 431, not {status}"
    );
}

#[tokio::test]
async fn without_a_token_the_challenge_has_no_error_code_and_a_bad_token_is_invalid_token() {
    let app = TestApp::spawn().await;
    let url = format!("{}{CONVERSATIONS}", app.base_url);
    for request in [
        app.http.get(&url),
        app.http
            .get(&url)
            .header("authorization", "Basic YWxpY2U6cHc="),
    ] {
        let reply = api_tests::Reply::from(request.send().await.unwrap()).await;
        reply.assert_problem(401);
        assert_eq!(reply.header("www-authenticate"), "Bearer");
    }
    let bad = status_with(&app, "not.a.token").await;
    bad.assert_problem(401);
    assert_eq!(
        bad.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
}
