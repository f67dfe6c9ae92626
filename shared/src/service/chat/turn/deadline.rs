//! How long a turn may take, which depends on how its answer is delivered.

use std::time::{Duration, Instant};

use crate::AppState;
use crate::error::{ServiceError, UpstreamFailure};

/// When a turn must have ended: before the function's own timeout, so that the client gets a
/// clean error and what was said is stored.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadline {
    pub(super) at: tokio::time::Instant,
    limit: Duration,
}

impl Deadline {
    pub(super) fn of(state: &AppState, started: Instant, delivery: Delivery) -> Self {
        let limit = turn_timeout(state, delivery);
        Self {
            at: (started + limit).into(),
            limit,
        }
    }

    pub(super) fn exceeded(self) -> ServiceError {
        deadline_exceeded(self.limit)
    }
}

/// How the answer reaches the client, which decides how long a turn may take and how its
/// first model call, made beside storing the question, is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Delivery {
    #[default]
    /// In one response, which must come before the gateway cuts the request.
    Whole,
    /// As a stream, which may run until the streaming function's timeout.
    Streamed,
}

pub(super) fn turn_timeout(state: &AppState, delivery: Delivery) -> Duration {
    match delivery {
        Delivery::Whole => state.config.llm.turn_timeout,
        Delivery::Streamed => state.config.llm.stream_turn_timeout,
    }
}

pub(super) fn deadline_exceeded(limit: Duration) -> ServiceError {
    ServiceError::Upstream {
        failure: UpstreamFailure::TimedOut,
        detail: format!(
            "The answer took longer than the {} s a turn may take and was stopped.",
            limit.as_secs()
        ),
    }
}
