//! The Chatter dialect: snake_case JSON under `/api/v1/chat`.

pub mod chat;
pub mod conversations;
pub mod documents;
pub mod dto;
pub mod feedback;
pub mod frames;
pub mod streams;
pub mod transfer;
pub mod workflows;
