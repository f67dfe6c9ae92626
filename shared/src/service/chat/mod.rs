//! A chat turn, whichever dialect asked for it: store the user's message, build the prompt,
//! call the model, store the answer with its usage and cost.

mod branching;
mod events;
mod live;
mod prompt;
pub mod templates;
mod titles;
mod turn;

pub use branching::{Branching, TURN_WINDOW};
pub use events::{TurnEvent, TurnOutcome};
pub use live::CHECKPOINT_INTERVAL;
pub use templates::Template;
pub use turn::{ChatInput, Delivery, Turn, beside_the_question, within_rate_limit};
