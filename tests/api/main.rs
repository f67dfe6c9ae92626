//! Integration tests: the real stack in-process (embedded DynamoDB, API on a random port),
//! spoken to over HTTP.

mod auth;
mod authorization;
mod bedrock;
mod branches;
mod chat;
mod concurrency;
mod conversations;
mod documents;
mod faults;
mod feedback;
mod freechat;
mod http_layer;
mod idempotency;
mod kept_windows;
mod limits;
mod long_conversations;
mod openapi;
mod rag;
mod resume;
mod search;
mod storage_faults;
mod streaming;
mod titles;
mod transfer;
mod turn_order;
mod workflows;
