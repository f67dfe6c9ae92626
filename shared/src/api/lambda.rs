//! Start-up shared by every Lambda function: logs, configuration, clients, then the runtime.

use super::Group;
use crate::AppState;

pub use lambda_http::Error;

/// A group's routes, as (authenticated, public).
type Routes = (axum::Router<AppState>, axum::Router<AppState>);

/// Runs one endpoint group as a Lambda function. Configuration errors stop the cold start
/// with the variable's name, before any request is accepted.
///
/// The group's routes are picked here, inlined into the function's `main`, where the group is
/// a constant: the compiler then leaves every other group's code out of the binary.
#[inline(always)]
pub fn run(group: Group) -> Result<(), Error> {
    let routes = group.routes();
    block_on(async move { lambda_http::run(start(routes).await?).await })
}

/// Runs one endpoint group with Lambda response streaming, so Server-Sent Events reach the
/// client as they are written.
#[inline(always)]
pub fn run_streaming(group: Group) -> Result<(), Error> {
    let routes = group.routes();
    block_on(async move { lambda_http::run_with_streaming_response(start(routes).await?).await })
}

/// A single-threaded runtime: an instance serves one invocation at a time, so worker threads
/// would only add their start to the cold start and their stacks to its memory. Blocking work
/// (document extraction) still goes to Tokio's blocking pool.
fn block_on(function: impl Future<Output = Result<(), Error>>) -> Result<(), Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(function)
}

async fn start((protected, public): Routes) -> Result<axum::Router, Error> {
    crate::logging::init_tracing();
    let config = crate::secrets::config_from_env()
        .await
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let state = AppState::new(config)
        .await
        .inspect_err(|e| tracing::error!(error = %e, "the HTTP client could not be built"))?;
    Ok(crate::http::service(state, protected, public))
}
