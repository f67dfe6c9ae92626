//! ConverseStream's answer: AWS event-stream messages (binary frames with CRCs, decoded by
//! aws-smithy-eventstream) whose JSON events become this crate's stream events.

use std::time::Duration;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::BytesMut;
use futures_util::Stream;
use serde::Deserialize;

use super::converse::{WireUsage, finish_reason, tool_call};
use super::errors::Call;
use crate::llm::relay::{Events, Wire, relay};
use crate::llm::{LlmError, StreamEvent, ToolCall, Usage};

/// More content blocks than any answer holds: an index past this is a malformed stream.
const MAX_BLOCKS: usize = 128;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    content_block_index: usize,
    start: Option<StartKind>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartKind {
    tool_use: Option<ToolUseStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolUseStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    content_block_index: usize,
    delta: DeltaKind,
}

/// A delta's kinds this server uses; others (reasoning) are skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaKind {
    text: Option<String>,
    tool_use: Option<ToolUseDelta>,
}

#[derive(Deserialize)]
struct ToolUseDelta {
    input: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    stop_reason: String,
}

#[derive(Deserialize)]
struct Metadata {
    usage: Option<WireUsage>,
}

#[derive(Deserialize, Default)]
struct ExceptionBody {
    #[serde(default, alias = "Message")]
    message: String,
}

/// What a ConverseStream answer's frames mean, with the tool calls they assemble.
struct Frames {
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
    call: Call,
    /// Tool calls being assembled, by content block index.
    calls: Vec<Option<ToolCall>>,
    stopped: bool,
}

/// The stream events of a ConverseStream response body. Silence longer than `idle_timeout`,
/// a dropped connection, a frame that does not decode or an exception ends it with an error.
pub(super) fn events<B>(
    bytes: B,
    call: Call,
    idle_timeout: Duration,
) -> impl Stream<Item = Result<StreamEvent, LlmError>> + Send + use<B>
where
    B: Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
{
    let frames = Frames {
        buffer: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        call,
        calls: Vec::new(),
        stopped: false,
    };
    relay(bytes, idle_timeout, frames)
}

impl Wire for Frames {
    type Piece = bytes::Bytes;

    fn decode(&mut self, piece: bytes::Bytes, events: &mut Events) -> Result<(), LlmError> {
        self.buffer.extend_from_slice(&piece);
        while !events.is_done() {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => self.handle(&message, events)?,
                Ok(DecodedFrame::Incomplete) => break,
                Err(e) => {
                    return Err(self
                        .call
                        .protocol(format!("undecodable event-stream frame ({e})")));
                }
            }
        }
        Ok(())
    }

    fn timed_out(&self) -> LlmError {
        self.call.timeout()
    }

    fn protocol(&self, reason: String) -> LlmError {
        self.call.protocol(reason)
    }

    fn finish(&mut self, _events: &mut Events) -> bool {
        self.stopped
    }
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(value) => Some(value.as_str()),
            _ => None,
        })
}

impl Frames {
    fn parse<T: for<'de> Deserialize<'de>>(&self, message: &Message) -> Result<T, LlmError> {
        serde_json::from_slice(message.payload())
            .map_err(|e| self.call.protocol(format!("unreadable event ({e})")))
    }

    fn handle(&mut self, message: &Message, events: &mut Events) -> Result<(), LlmError> {
        match header(message, ":message-type") {
            Some("event") => {}
            Some("exception") => {
                let body: ExceptionBody =
                    serde_json::from_slice(message.payload()).unwrap_or_default();
                let kind = header(message, ":exception-type").unwrap_or("exception");
                return Err(self.call.exception(kind, None, &body.message));
            }
            _ => {
                let code = header(message, ":error-code").unwrap_or("error");
                let text = header(message, ":error-message").unwrap_or_default();
                return Err(self.call.exception(code, None, text));
            }
        }
        match header(message, ":event-type").unwrap_or_default() {
            "contentBlockStart" => {
                let start: BlockStart = self.parse(message)?;
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    *self.slot(start.content_block_index)? =
                        Some(tool_call(tool.tool_use_id, tool.name, String::new()));
                }
            }
            "contentBlockDelta" => {
                let delta: BlockDelta = self.parse(message)?;
                if let Some(text) = delta.delta.text.filter(|t| !t.is_empty()) {
                    events.push(StreamEvent::Delta(text));
                }
                if let Some(input) = delta.delta.tool_use {
                    let index = delta.content_block_index;
                    match self.slot(index)? {
                        Some(call) => call.function.arguments.push_str(&input.input),
                        None => {
                            return Err(self.call.protocol(format!(
                                "tool input for block {index}, which started no tool use"
                            )));
                        }
                    }
                }
            }
            "messageStop" => {
                let stop: MessageStop = self.parse(message)?;
                self.stopped = true;
                let calls: Vec<ToolCall> = self.calls.drain(..).flatten().collect();
                if !calls.is_empty() {
                    events.push(StreamEvent::ToolCalls(calls));
                }
                events.push(StreamEvent::Finish(finish_reason(&stop.stop_reason)));
            }
            "metadata" => {
                let metadata: Metadata = self.parse(message)?;
                if let Some(usage) = metadata.usage {
                    events.push(StreamEvent::Usage(Usage::from(usage)));
                }
            }
            // messageStart, contentBlockStop and kinds added later carry nothing needed here.
            _ => {}
        }
        Ok(())
    }

    fn slot(&mut self, index: usize) -> Result<&mut Option<ToolCall>, LlmError> {
        if index >= MAX_BLOCKS {
            return Err(self.call.protocol(format!(
                "content block {index} is beyond the {MAX_BLOCKS} an answer may hold"
            )));
        }
        if self.calls.len() <= index {
            self.calls.resize(index + 1, None);
        }
        Ok(&mut self.calls[index])
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;
    use futures_util::StreamExt;
    use serde_json::{Value, json};

    use super::*;

    fn call() -> Call {
        Call {
            provider: "bedrock".into(),
            endpoint: "https://bedrock.example".into(),
            region: "us-east-1".into(),
            model: "m".into(),
        }
    }

    fn frame(kind: (&str, &str), payload: &Value) -> Vec<u8> {
        let message = Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String(kind.0.to_owned().into()),
            ))
            .add_header(Header::new(
                if kind.0 == "event" {
                    ":event-type"
                } else {
                    ":exception-type"
                },
                HeaderValue::String(kind.1.to_owned().into()),
            ))
            .add_header(Header::new(
                ":content-type",
                HeaderValue::String("application/json".into()),
            ));
        let mut bytes = Vec::new();
        write_message_to(&message, &mut bytes).unwrap();
        bytes
    }

    /// Everything the parser makes of these frames, delivered `split` bytes at a time.
    async fn parse(frames: &[Vec<u8>], split: usize) -> Vec<Result<StreamEvent, LlmError>> {
        let all: Vec<u8> = frames.concat();
        let chunks: Vec<reqwest::Result<bytes::Bytes>> = all
            .chunks(split)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        events(
            futures_util::stream::iter(chunks),
            call(),
            Duration::from_secs(5),
        )
        .collect()
        .await
    }

    fn answer_frames() -> Vec<Vec<u8>> {
        vec![
            frame(("event", "messageStart"), &json!({"role": "assistant"})),
            frame(
                ("event", "contentBlockDelta"),
                &json!({"contentBlockIndex": 0, "delta": {"text": "Let me "}}),
            ),
            frame(
                ("event", "contentBlockDelta"),
                &json!({"contentBlockIndex": 0, "delta": {"text": "see."}}),
            ),
            frame(
                ("event", "contentBlockStop"),
                &json!({"contentBlockIndex": 0}),
            ),
            frame(
                ("event", "contentBlockStart"),
                &json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tu_1", "name": "calculator"}}}),
            ),
            frame(
                ("event", "contentBlockDelta"),
                &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"expression\":"}}}),
            ),
            frame(
                ("event", "contentBlockDelta"),
                &json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"6*7\"}"}}}),
            ),
            frame(
                ("event", "contentBlockStop"),
                &json!({"contentBlockIndex": 1}),
            ),
            frame(("event", "messageStop"), &json!({"stopReason": "tool_use"})),
            frame(
                ("event", "metadata"),
                &json!({"usage": {"inputTokens": 12, "outputTokens": 7, "totalTokens": 19}, "metrics": {"latencyMs": 80}}),
            ),
        ]
    }

    #[tokio::test]
    async fn text_tool_use_stop_reason_and_usage_come_through_whatever_the_chunking() {
        for split in [1, 7, 4096] {
            let events: Vec<StreamEvent> = parse(&answer_frames(), split)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(
                events,
                [
                    StreamEvent::Delta("Let me ".into()),
                    StreamEvent::Delta("see.".into()),
                    StreamEvent::ToolCalls(vec![tool_call(
                        "tu_1".into(),
                        "calculator".into(),
                        r#"{"expression":"6*7"}"#.into()
                    )]),
                    StreamEvent::Finish("tool_calls".into()),
                    StreamEvent::Usage(Usage {
                        prompt_tokens: 12,
                        completion_tokens: 7
                    }),
                ],
                "split {split}"
            );
        }
    }

    #[tokio::test]
    async fn an_exception_midway_ends_the_stream_after_what_was_said() {
        let mut frames = answer_frames()[..3].to_vec();
        frames.push(frame(
            ("exception", "modelStreamErrorException"),
            &json!({"message": "boom"}),
        ));
        let events = parse(&frames, 64).await;
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[1], Ok(StreamEvent::Delta(t)) if t == "see."));
        let error = events[2].as_ref().unwrap_err();
        assert!(matches!(error, LlmError::Upstream { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_corrupted_frame_is_a_malformed_stream() {
        let mut frames = answer_frames();
        let last = frames.len() - 1;
        let byte = frames[last].len() - 10;
        frames[last][byte] ^= 0xff;
        let events = parse(&frames, 4096).await;
        let error = events.last().unwrap().as_ref().unwrap_err();
        assert!(matches!(error, LlmError::Protocol { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_stream_cut_before_its_stop_is_incomplete() {
        let events = parse(&answer_frames()[..3], 4096).await;
        let error = events.last().unwrap().as_ref().unwrap_err();
        assert!(
            error.to_string().contains("before the answer was complete"),
            "{error}"
        );
    }
}
