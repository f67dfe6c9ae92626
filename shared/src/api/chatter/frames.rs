//! The frames of a Chatter stream (`/streaming` and a followed answer): each chunk, and the
//! ids that let a reader resume after the last one it saw.

use axum::response::sse::Event;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{FinishReason, Message};
use crate::http::problem;
use crate::service::chat::TurnEvent;

/// What a chunk of a stream says, in its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChunkKind {
    /// The first frame: the answer being generated (`message_id`).
    Start,
    /// A workflow node began (`metadata`).
    NodeStart,
    /// Text of the answer (`content`).
    Token,
    /// A workflow node ended (`metadata`).
    NodeComplete,
    /// The stored answer's usage.
    Usage,
    /// How the answer ended (`metadata.finish_reason`).
    End,
    /// The turn failed (`content`); what was said before stays stored.
    Error,
}

/// One Server-Sent Event of `/streaming`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamingChatChunk {
    #[serde(rename = "type")]
    pub kind: ChunkKind,
    pub content: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<serde_json::Value>,
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

impl StreamingChatChunk {
    /// A chunk of no kind yet carrying nothing, for the constructors below to fill in.
    fn empty() -> Self {
        Self {
            kind: ChunkKind::Token,
            content: None,
            usage: None,
            conversation_id: None,
            message_id: None,
            correlation_id: None,
            metadata: None,
        }
    }

    pub fn from_event(event: TurnEvent) -> Vec<Self> {
        match event {
            TurnEvent::NodeStarted { node, mut details } => {
                details.insert("node".into(), node.into());
                vec![Self {
                    kind: ChunkKind::NodeStart,
                    metadata: Some(details.into()),
                    ..Self::empty()
                }]
            }
            TurnEvent::Token(text) => vec![Self::token(text)],
            TurnEvent::NodeCompleted {
                node,
                duration_ms,
                mut details,
            } => {
                details.insert("node".into(), node.into());
                details.insert("duration_ms".into(), duration_ms.into());
                vec![Self {
                    kind: ChunkKind::NodeComplete,
                    metadata: Some(details.into()),
                    ..Self::empty()
                }]
            }
            TurnEvent::Finished(outcome) => Self::finished(&outcome.message),
            TurnEvent::Failed(error) => vec![Self::error(problem::problem(&error).detail)],
        }
    }

    /// The first frame, naming the answer being generated.
    pub fn start(message_id: Option<String>) -> Self {
        Self {
            kind: ChunkKind::Start,
            message_id,
            ..Self::empty()
        }
    }

    pub fn token(text: String) -> Self {
        Self {
            kind: ChunkKind::Token,
            content: Some(text),
            ..Self::empty()
        }
    }

    pub fn error(detail: String) -> Self {
        Self {
            kind: ChunkKind::Error,
            content: Some(detail),
            ..Self::empty()
        }
    }

    /// The last frames of a stream: the stored answer's usage, then how it ended.
    pub fn finished(message: &Message) -> Vec<Self> {
        let (prompt, completion) = (
            message.prompt_tokens.unwrap_or(0),
            message.completion_tokens.unwrap_or(0),
        );
        vec![
            Self {
                kind: ChunkKind::Usage,
                usage: Some(serde_json::json!({
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                    "cost": message.cost.unwrap_or(0.0),
                })),
                ..Self::empty()
            },
            Self::end(message.id.clone(), message.finish_reason, message),
        ]
    }

    /// The `end` frame of an answer that ended for `finish_reason`.
    pub fn end(message_id: String, finish_reason: Option<FinishReason>, message: &Message) -> Self {
        Self {
            kind: ChunkKind::End,
            message_id: Some(message_id),
            metadata: Some(serde_json::json!({
                "finish_reason": finish_reason,
                "model": message.model_used,
                "provider": message.provider_used,
                "response_time_ms": message.response_time_ms,
                "sources": message.metadata.as_ref().and_then(|m| m.get("sources")),
            })),
            ..Self::empty()
        }
    }

    /// The chunk as the event with this id in its turn's stream.
    pub fn into_event(mut self, conversation_id: &str, correlation_id: &str, id: FrameId) -> Event {
        self.conversation_id = Some(conversation_id.to_owned());
        self.correlation_id = Some(correlation_id.to_owned());
        Event::default()
            .id(id.to_string())
            .data(serde_json::to_string(&self).unwrap_or_default())
    }

    /// The answer's text this chunk carries, which its frame id counts.
    pub fn text(&self) -> Option<&str> {
        (self.kind == ChunkKind::Token)
            .then_some(self.content.as_deref())
            .flatten()
    }
}

/// An SSE frame's id within its turn: `<characters of answer text sent so far>-<frames sent
/// since that text>`. Ids increase through the turn, and a reader that resumes after one
/// needs only its characters to know which text it is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrameId {
    pub chars: usize,
    pub after_text: u32,
}

impl std::fmt::Display for FrameId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.chars, self.after_text)
    }
}

impl std::str::FromStr for FrameId {
    type Err = ();

    fn from_str(id: &str) -> Result<Self, ()> {
        let (chars, after_text) = id.split_once('-').ok_or(())?;
        Ok(Self {
            chars: chars.parse().map_err(|_| ())?,
            after_text: after_text.parse().map_err(|_| ())?,
        })
    }
}

/// Gives a turn's frames their ids, in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameIds {
    last: Option<FrameId>,
}

impl FrameIds {
    /// Ids that go on after `last`, the id a resuming reader saw last.
    pub fn after(last: Option<FrameId>) -> Self {
        Self { last }
    }

    /// The id of the next frame, which carries `text` of the answer (or none).
    pub fn next(&mut self, text: Option<&str>) -> FrameId {
        let id = match (self.last, text.filter(|t| !t.is_empty())) {
            (last, Some(text)) => FrameId {
                chars: last.map_or(0, |l| l.chars) + text.chars().count(),
                after_text: 0,
            },
            (None, None) => FrameId::default(),
            (Some(last), None) => FrameId {
                after_text: last.after_text + 1,
                ..last
            },
        };
        self.last = Some(id);
        id
    }
}

/// The chunks as events with their ids, then `data: [DONE]` with the id after the last.
pub fn framed(
    chunks: impl Stream<Item = StreamingChatChunk> + Send + 'static,
    mut ids: FrameIds,
    conversation_id: String,
    correlation_id: String,
) -> impl Stream<Item = Event> + Send + 'static {
    chunks
        .map(Some)
        .chain(futures_util::stream::iter([None]))
        .map(move |chunk| match chunk {
            Some(chunk) => {
                let id = ids.next(chunk.text());
                chunk.into_event(&conversation_id, &correlation_id, id)
            }
            None => Event::default()
                .id(ids.next(None).to_string())
                .data("[DONE]"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ids_increase_through_a_turn_and_count_its_text() {
        let mut ids = FrameIds::default();
        let sent = [None, None, Some("Héllo"), Some(" you"), None, None];
        let ids: Vec<String> = sent.iter().map(|t| ids.next(*t).to_string()).collect();
        assert_eq!(ids, ["0-0", "0-1", "5-0", "9-0", "9-1", "9-2"]);
        let parsed: Vec<FrameId> = ids.iter().map(|id| id.parse().unwrap()).collect();
        assert!(parsed.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn a_resumed_stream_goes_on_after_the_last_id_it_had() {
        let mut ids = FrameIds::after(Some("9-0".parse().unwrap()));
        assert_eq!(ids.next(Some("!")).to_string(), "10-0");
        assert_eq!(ids.next(None).to_string(), "10-1");
        assert!("9".parse::<FrameId>().is_err());
    }
}
