//! What the local run serves besides the API: the playground's files, the API reference at
//! `/docs` (with every file it needs), and the token route the playground mints tokens with.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{DataDir, Devserver};

async fn get(url: &str) -> (StatusCode, String, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test]
async fn the_playground_is_served_whole_and_loads_nothing_from_elsewhere() {
    shared::install_crypto_provider();
    let data = DataDir::new("pages");
    let server = Devserver::start(&data.0, &[]);
    let (status, content_type, html) = get(&format!("{}/", server.url)).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"));
    for (path, kind) in [
        ("playground.css", "text/css"),
        ("playground.js", "text/javascript"),
    ] {
        assert!(
            html.contains(&format!("\"{path}\"")),
            "the page links {path}"
        );
        let (status, content_type, body) = get(&format!("{}/{path}", server.url)).await;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path}"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[tokio::test]
async fn the_api_reference_is_swagger_ui_over_the_served_document_with_its_files_built_in() {
    shared::install_crypto_provider();
    let data = DataDir::new("docs");
    let server = Devserver::start(&data.0, &[]);
    let (status, _, html) = get(&format!("{}/docs/", server.url)).await;
    assert_eq!(status, 200);
    assert!(html.contains("swagger-ui"));
    let (status, _, initializer) =
        get(&format!("{}/docs/swagger-initializer.js", server.url)).await;
    assert_eq!(status, 200);
    assert!(initializer.contains("\"/openapi.json\""), "{initializer}");
    for file in ["swagger-ui-bundle.js", "swagger-ui.css"] {
        let (status, _, body) = get(&format!("{}/docs/{file}", server.url)).await;
        assert_eq!(status, 200, "{file}");
        assert!(body.len() > 10_000, "{file} is the real file");
    }
}

#[tokio::test]
async fn a_minted_token_opens_the_api_as_its_user_and_a_blank_user_is_refused() {
    shared::install_crypto_provider();
    let data = DataDir::new("token");
    let server = Devserver::start(&data.0, &[]);
    let http = reqwest::Client::new();
    let minted: Value = http
        .post(format!("{}/dev/token", server.url))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(minted["user_id"], "alice");
    let listed = http
        .get(format!("{}/api/v1/chat/conversations", server.url))
        .bearer_auth(minted["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    let blank = http
        .post(format!("{}/dev/token", server.url))
        .json(&json!({"user_id": "  "}))
        .send()
        .await
        .unwrap();
    assert_eq!(blank.status(), 422);
    assert_eq!(blank.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn another_site_in_the_browser_cannot_mint_a_token() {
    shared::install_crypto_provider();
    let data = DataDir::new("token-cors");
    let server = Devserver::start(&data.0, &[]);
    let preflight = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/dev/token", server.url),
        )
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
