use api_tests::{TEST_SECRET, TestApp};
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CONVERSATIONS: &str = "/api/v1/chat/conversations";

/// A throwaway P-256 key for the tests' JWKS; it signs nothing outside them.
const EC_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPNNAFg4uvWWGjBoA
uutVxkx5F2Isxke6Lof2qEhttzGhRANCAAQ/d3nHRLQEDbUWASdWsC3QeKfO08qX
mTdE6pFSwm7aEuJirU78HI+vQUaC+KRADv2z5HdsUuR5wG7lCumUz/+i
-----END PRIVATE KEY-----";
const EC_X: &str = "P3d5x0S0BA21FgEnVrAt0HinztPKl5k3ROqRUsJu2hI";
const EC_Y: &str = "4mKtTvwcj69BRoL4pEAO_bPkd2xS5HnAbuUK6ZTP_6I";

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

async fn serve_jwks() -> String {
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256", "x": EC_X, "y": EC_Y}]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let router = axum::Router::new().route(
        "/.well-known/jwks.json",
        get(move || async move { axum::Json(jwks) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
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
