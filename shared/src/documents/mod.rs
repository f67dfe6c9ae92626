//! The user's documents for retrieval-augmented chat: text extraction, chunking,
//! embeddings, processing, and retrieval (the chat turn calls [`retrieval::retrieve`]).

pub mod bm25;
pub mod chunking;
pub mod embedding;
pub mod extract;
pub mod processing;
pub mod retrieval;

pub use retrieval::{RetrievalQuery, Source, retrieve};
