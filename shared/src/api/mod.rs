//! Endpoint groups: each Lambda function serves one group; the local run serves them all.

pub mod chatter;
pub mod openapi;

use axum::Router;

use crate::AppState;

/// An endpoint group, deployed as one Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Chatter conversations and messages.
    Conversations,
    /// What the API offers: its OpenAPI document.
    Catalog,
}

impl Group {
    pub const ALL: [Group; 2] = [Group::Conversations, Group::Catalog];

    /// The group's routes, as (authenticated, public).
    fn routes(self) -> (Router<AppState>, Router<AppState>) {
        match self {
            Group::Conversations => (chatter::conversations::routes(), Router::new()),
            Group::Catalog => (Router::new(), openapi::routes()),
        }
    }

    /// The group as a complete service, ready for `lambda_http`.
    pub fn service(self, state: AppState) -> Router {
        let (protected, public) = self.routes();
        crate::http::service(state, protected, public)
    }
}

/// Every group behind one router, as the local run serves them.
pub fn all_groups(state: AppState) -> Router {
    let (protected, public) = Group::ALL.iter().fold(
        (Router::new(), Router::new()),
        |(protected, public), group| {
            let (p, q) = group.routes();
            (protected.merge(p), public.merge(q))
        },
    );
    crate::http::service(state, protected, public)
}
