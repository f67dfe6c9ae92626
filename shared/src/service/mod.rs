//! Use cases that more than one dialect calls, in domain words: they take typed input, read
//! and write through `store`, and know nothing of HTTP routes or wire formats.
//!
//! `chat` is the turn both dialects run (prompt, templates, model call, stored answer);
//! `sessions` holds FreeChat's chat-session rules, which its own send and a Chatter turn in the
//! same chat both obey; `branches` reads a conversation's messages as a tree and picks its
//! active branch; `characters` says who may see and change a character; `assistant`,
//! `documents`, `feedback` and `transfer` (export and import) are the smaller use cases.

pub mod assistant;
pub mod branches;
pub mod characters;
pub mod chat;
pub mod documents;
pub mod feedback;
pub mod sessions;
pub mod streams;
pub mod transfer;

use crate::error::ServiceError;
use crate::store::StoreError;

/// A missing entity, whether it does not exist or is someone else's: the two are one answer.
pub fn missing(what: &str) -> ServiceError {
    ServiceError::NotFound(format!("{what} not found."))
}

/// Maps the store's `NotFound` to [`missing`].
pub fn or_missing(what: &'static str) -> impl FnOnce(StoreError) -> ServiceError {
    move |err| match err {
        StoreError::NotFound => missing(what),
        other => other.into(),
    }
}
