//! The loop every provider's answer stream runs, whatever its wire: wait for the next piece
//! no longer than the idle timeout, decode it into events, and end with an error when the
//! provider falls silent, the connection drops or the answer stops short. Each provider only
//! says what its pieces mean ([`Wire`]).

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use super::{LlmError, StreamEvent};

/// The events decoded so far and not yet handed on, and whether the stream is over.
#[derive(Default)]
pub(super) struct Events {
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    done: bool,
}

impl Events {
    pub(super) fn push(&mut self, event: StreamEvent) {
        self.pending.push_back(Ok(event));
    }

    /// Ends the stream with `error`, after the events already decoded.
    pub(super) fn fail(&mut self, error: LlmError) {
        self.done = true;
        self.pending.push_back(Err(error));
    }

    /// Ends the stream after the events already decoded, as the provider said it is over.
    pub(super) fn close(&mut self) {
        self.done = true;
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }
}

/// What one provider's stream is made of.
pub(super) trait Wire: Send + 'static {
    /// What the connection yields: bytes, or already parsed Server-Sent Events.
    type Piece;

    /// Decodes one piece into `events`; an error ends the stream after what came before it.
    fn decode(&mut self, piece: Self::Piece, events: &mut Events) -> Result<(), LlmError>;

    /// The provider said nothing for the idle timeout.
    fn timed_out(&self) -> LlmError;

    /// The stream broke, or a piece could not be read; `reason` says how.
    fn protocol(&self, reason: String) -> LlmError;

    /// The connection ended: hands on what is still owed (tool calls assembled so far), and
    /// whether the answer was complete.
    fn finish(&mut self, events: &mut Events) -> bool;
}

/// The stream events of `source`, decoded by `wire`.
pub(super) fn relay<S, E, W>(
    source: S,
    idle_timeout: Duration,
    wire: W,
) -> impl Stream<Item = Result<StreamEvent, LlmError>> + Send + use<S, E, W>
where
    S: Stream<Item = Result<W::Piece, E>> + Send + Unpin + 'static,
    E: Display,
    W: Wire,
{
    let state = (source, wire, Events::default());
    futures_util::stream::unfold(
        state,
        move |(mut source, mut wire, mut events)| async move {
            loop {
                if let Some(item) = events.pending.pop_front() {
                    return Some((item, (source, wire, events)));
                }
                if events.done {
                    return None;
                }
                match tokio::time::timeout(idle_timeout, source.next()).await {
                    Err(_) => events.fail(wire.timed_out()),
                    Ok(Some(Ok(piece))) => {
                        if let Err(error) = wire.decode(piece, &mut events) {
                            events.fail(error);
                        }
                    }
                    Ok(Some(Err(e))) => events
                        .fail(wire.protocol(format!("the connection dropped mid-stream ({e})"))),
                    Ok(None) => {
                        events.done = true;
                        if !wire.finish(&mut events) {
                            events.pending.push_back(Err(wire.protocol(
                                "the stream ended before the answer was complete".into(),
                            )));
                        }
                    }
                }
            }
        },
    )
}
