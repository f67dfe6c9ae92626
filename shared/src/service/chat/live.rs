//! A streamed turn's answer while it is generated: its text checkpointed to the store for
//! readers on any instance, and the stop request those checkpoints bring back.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::events::TurnEvent;
use crate::domain::Message;
use crate::store::{Checkpoint, Store};

/// Checkpoints are at least this far apart, so an answer costs a bounded number of writes
/// whatever its token rate; readers are this much (and one write) behind at most.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// With no new text to checkpoint (the model thinking, a tool running) the stop flag is read
/// this often instead, so that a stop still ends the turn within a second.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(750);

/// Where a streamed turn's events go: to its client for as long as it listens, and its text
/// to the transcript that checkpoints write.
pub(super) struct Listeners {
    client: mpsc::Sender<TurnEvent>,
    transcript: watch::Sender<String>,
}

impl Listeners {
    /// The listeners, and the transcript's receiving end for [`until_stopped`].
    pub fn new(client: mpsc::Sender<TurnEvent>) -> (Self, watch::Receiver<String>) {
        let (transcript, text) = watch::channel(String::new());
        (Self { client, transcript }, text)
    }

    pub async fn send(&self, event: TurnEvent) {
        if let TurnEvent::Token(text) = &event {
            self.transcript.send_modify(|so_far| so_far.push_str(text));
        }
        // A client that went away no longer hears the turn; the turn goes on for its readers
        // and the stored answer.
        let _ = self.client.send(event).await;
    }

    /// The text sent so far.
    pub fn text(&self) -> String {
        self.transcript.borrow().clone()
    }
}

/// Checkpoints the answer's text as it grows, at most every [`CHECKPOINT_INTERVAL`] and only
/// when there is new text; returns when a stop is requested. A checkpoint is conditioned on
/// no stop being requested, so the stop costs the turn no reads while text flows. Without an
/// answer to write (a turn not begun as streamed) it never returns.
pub(super) async fn until_stopped(
    store: &Store,
    answer: Option<Message>,
    mut text: watch::Receiver<String>,
) {
    let Some(answer) = answer else {
        return std::future::pending().await;
    };
    loop {
        match tokio::time::timeout(STOP_CHECK_INTERVAL, text.changed()).await {
            // The turn is over; its own write settles the answer.
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(())) => {
                let written_at = Instant::now();
                let content = text.borrow_and_update().clone();
                match store.checkpoint_answer(&answer, &content).await {
                    Ok(Checkpoint::Refused) => return,
                    Ok(Checkpoint::Saved) => {}
                    // A missed checkpoint only leaves readers further behind.
                    Err(e) => tracing::warn!(error = ?e, "answer checkpoint not written"),
                }
                tokio::time::sleep_until(written_at + CHECKPOINT_INTERVAL).await;
            }
            Err(_) => match store.stop_requested(&answer).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = ?e, "stop flag not read"),
            },
        }
    }
}
