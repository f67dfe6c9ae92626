//! Benchmarks of the chat functions: cold start under an emulated Lambda Runtime API, the
//! routers' overhead over the storage calls, streaming overhead, and memory. Every figure is
//! printed with the machine it ran on; nothing here asserts a timing. See BENCHMARKS.md.

pub mod bedrock;
pub mod branches;
pub mod checkpoints;
pub mod coldstart;
pub mod counting;
pub mod events;
pub mod latency;
pub mod machine;
pub mod overhead;
pub mod stack;
pub mod stats;
pub mod streaming;
