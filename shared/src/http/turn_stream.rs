//! A streamed chat turn as a Server-Sent Events response, whichever dialect frames it: the turn
//! runs in a task of its own (a client that goes away does not end it), its events reach the
//! dialect's frames through a channel, and idempotency learns whether the stream failed.

use axum::response::Response;
use axum::response::sse::Event;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::idempotency::StreamOutcome;
use super::sse;
use crate::AppState;
use crate::service::chat::{Turn, TurnEvent};

/// How many events may wait for a slow client before the turn waits for it.
const EVENTS_IN_FLIGHT: usize = 64;

/// Runs `turn` and answers with the events `frames` makes of what it says.
pub fn respond<S>(
    state: AppState,
    turn: Turn,
    frames: impl FnOnce(BoxStream<'static, TurnEvent>) -> S,
) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    let outcome = StreamOutcome::answering(turn.question());
    let heartbeat = state.config.sse_heartbeat;
    let (sender, receiver) = tokio::sync::mpsc::channel(EVENTS_IN_FLIGHT);
    // The turn outlives the handler; it keeps the request's span, so that what it logs (a
    // model failure, a store error) carries the request's correlation id.
    tokio::spawn(
        turn.stream(state, sender)
            .instrument(tracing::Span::current()),
    );
    let failed = outcome.clone();
    let events = ReceiverStream::new(receiver).inspect(move |event| {
        // Not the key's answer: a retry with the same key calls the model again.
        if matches!(event, TurnEvent::Failed(_)) {
            failed.fail();
        }
    });
    let mut response = sse::response(frames(events.boxed()), heartbeat);
    response.extensions_mut().insert(outcome);
    response
}
