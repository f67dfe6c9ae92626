//! Start-up shared by every Lambda function: logs, configuration, clients, then the runtime.

use crate::AppState;
use crate::api::Group;
use crate::config::Config;

pub use lambda_http::Error;

/// JSON log lines for CloudWatch, each carrying the fields of the request span it belongs to
/// (correlation id, user id, route).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second initialisation (tests start many stacks) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        .try_init();
}

/// Runs one endpoint group as a Lambda function. Configuration errors stop the cold start
/// with the variable's name, before any request is accepted.
pub async fn run(group: Group) -> Result<(), Error> {
    lambda_http::run(start(group).await?).await
}

/// Runs one endpoint group with Lambda response streaming, so Server-Sent Events reach the
/// client as they are written.
pub async fn run_streaming(group: Group) -> Result<(), Error> {
    lambda_http::run_with_streaming_response(start(group).await?).await
}

async fn start(group: Group) -> Result<axum::Router, Error> {
    init_tracing();
    let config =
        Config::from_env().inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    Ok(group.service(AppState::new(config).await))
}
