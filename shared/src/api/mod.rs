//! Endpoint groups: each Lambda function serves one group; the local run serves them all.

pub mod chatter;
pub mod freechat;
pub mod lambda;
pub mod openapi;

use axum::Router;

use crate::AppState;

/// An endpoint group, deployed as one Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Chatter conversations and messages, and stopping a running turn.
    Conversations,
    /// Chatter's request/response chat: `/chat` and `/template/{name}`.
    Chat,
    /// The streaming routes of both dialects, run under Lambda response streaming: Chatter's
    /// `/streaming` and `/conversations/{id}/stream`, FreeChat's `/send/stream/...`.
    ChatStream,
    /// What the API offers and how it has run: templates, tools, MCP status, performance
    /// statistics, and the OpenAPI document.
    Catalog,
    /// Chatter documents: upload, processing, chunks and search for retrieval.
    Documents,
    /// FreeChat characters and their backends.
    Characters,
    /// FreeChat chat sessions: starting, listing, messages, memory, sending.
    Sessions,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::Conversations,
        Group::Chat,
        Group::ChatStream,
        Group::Catalog,
        Group::Documents,
        Group::Characters,
        Group::Sessions,
    ];

    /// The group's routes, as (authenticated, public). Inlined, so that a function's binary
    /// holds only its own group's code (see `lambda::run`).
    #[inline(always)]
    pub(crate) fn routes(self) -> (Router<AppState>, Router<AppState>) {
        match self {
            Group::Conversations => (
                chatter::conversations::routes()
                    .merge(chatter::feedback::routes())
                    .merge(chatter::streams::stop_routes())
                    .merge(chatter::transfer::routes()),
                Router::new(),
            ),
            Group::Chat => (chatter::chat::chat_routes(), Router::new()),
            Group::ChatStream => (
                chatter::chat::streaming_routes()
                    .merge(chatter::streams::stream_routes())
                    .merge(freechat::send::streaming_routes()),
                Router::new(),
            ),
            Group::Catalog => (
                chatter::chat::catalog_routes().merge(chatter::workflows::routes()),
                openapi::routes(),
            ),
            Group::Documents => (chatter::documents::routes(), Router::new()),
            Group::Characters => (freechat::characters::routes(), Router::new()),
            Group::Sessions => (freechat::session_routes(), Router::new()),
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
