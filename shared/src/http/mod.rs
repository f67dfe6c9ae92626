//! The HTTP layer shared by every function: extractors, validation and middleware, and the
//! assembly of a function's routes into a service.

pub mod download;
pub mod extract;
pub mod idempotency;
pub mod middleware;
pub mod problem;
pub mod sse;
pub mod validate;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::AppState;

/// Wraps a function's routes with everything the API promises on every response.
///
/// `protected` routes need a bearer token and count against the caller's rate limits;
/// `public` ones (the OpenAPI document) do not.
pub fn service(state: AppState, protected: Router<AppState>, public: Router<AppState>) -> Router {
    let config = state.config.clone();
    // axum refuses a route layer over no routes; a group may have only public ones.
    // Route layers run outermost last: the caller is known before idempotency needs it.
    let protected = if protected.has_routes() {
        protected
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                idempotency::idempotent,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                middleware::authenticate,
            ))
    } else {
        protected
    };
    protected
        .merge(public)
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::cors(&config))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}
