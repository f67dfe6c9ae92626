//! What a turn reports while it runs, and what it leaves: shared by the turn, which sends
//! them, and the listeners that pass them on.

use crate::domain::{Conversation, JsonObject, Message, Placement};
use crate::error::ServiceError;
use crate::llm::Usage;

/// The stored answer of a finished turn.
pub struct TurnOutcome {
    pub conversation: Conversation,
    pub message: Message,
    /// Where the answer sits in its conversation's tree.
    pub placement: Placement,
    pub usage: Usage,
    pub cost: f64,
}

/// What a streaming turn reports, in order, to whichever dialect frames it. Each model call
/// and each tool run is a node, announced when it starts and when it completes.
#[derive(Debug)]
pub enum TurnEvent {
    NodeStarted {
        node: &'static str,
        details: JsonObject,
    },
    Token(String),
    NodeCompleted {
        node: &'static str,
        duration_ms: u64,
        details: JsonObject,
    },
    Finished(Box<TurnOutcome>),
    Failed(Box<ServiceError>),
}

impl std::fmt::Debug for TurnOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnOutcome")
            .field("message_id", &self.message.id)
            .field("usage", &self.usage)
            .finish()
    }
}
