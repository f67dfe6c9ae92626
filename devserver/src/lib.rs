//! The local run's additions around the API: the playground at `/`, the interactive API
//! reference at `/docs`, and `POST /dev/token`, with which the playground mints its token.
//! None of them is part of a Lambda function.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use shared::config::Secret;
use shared::error::ServiceError;
use shared::http::extract::ApiJson;

/// How long a token minted for the local run stays valid.
pub const DEV_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The user the ready token printed at start belongs to.
pub const DEFAULT_USER: &str = "dev";
const MAX_USER_ID_CHARS: usize = 128;

/// The API of every group with the local run's pages and token route. These routes sit
/// outside the API's CORS layer on purpose: another site open in the developer's browser must
/// not be able to read a minted token (a cross-origin JSON POST needs a preflight, which
/// finds no CORS headers here).
pub fn app(state: shared::AppState) -> Router {
    let secret = state
        .config
        .jwt
        .secret
        .clone()
        .expect("the local run signs its tokens with a secret");
    let swagger = utoipa_swagger_ui::SwaggerUi::new("/docs")
        .config(utoipa_swagger_ui::Config::from("/openapi.json"));
    let local = Router::new()
        .route(
            "/",
            get(|| page("text/html; charset=utf-8", PLAYGROUND_HTML)),
        )
        .route(
            "/playground.css",
            get(|| page("text/css; charset=utf-8", PLAYGROUND_CSS)),
        )
        .route(
            "/playground.js",
            get(|| page("text/javascript; charset=utf-8", PLAYGROUND_JS)),
        )
        .route("/dev/token", post(mint_token))
        .with_state(secret)
        .merge(swagger);
    shared::api::all_groups(state).merge(local)
}

const PLAYGROUND_HTML: &str = include_str!("playground/index.html");
const PLAYGROUND_CSS: &str = include_str!("playground/playground.css");
const PLAYGROUND_JS: &str = include_str!("playground/playground.js");

async fn page(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    user_id: String,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    user_id: String,
    token: String,
    expires_in: u64,
}

async fn mint_token(
    State(secret): State<Secret>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<axum::Json<TokenResponse>, ServiceError> {
    let user_id = request.user_id.trim();
    if user_id.is_empty() || user_id.chars().count() > MAX_USER_ID_CHARS {
        return Err(ServiceError::invalid(
            ["body".into(), "user_id".into()],
            format!("A user id is 1 to {MAX_USER_ID_CHARS} characters."),
            "value_error",
        ));
    }
    Ok(axum::Json(TokenResponse {
        user_id: user_id.to_owned(),
        token: shared::auth::issue_token(&secret, user_id, DEV_TOKEN_TTL),
        expires_in: DEV_TOKEN_TTL.as_secs(),
    }))
}
