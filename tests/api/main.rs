//! Integration tests: the real stack in-process (embedded DynamoDB, API on a random port),
//! spoken to over HTTP.

mod auth;
mod chat;
mod concurrency;
mod conversations;
mod documents;
mod faults;
mod freechat;
mod http_layer;
mod idempotency;
mod openapi;
mod rag;
mod streaming;
mod workflows;
