//! Streams that survive: a turn's answer is stored as it starts and checkpointed as it grows,
//! so that another instance can resume its stream or stop it through the table alone.

use std::time::{Duration, Instant};

use api_tests::{Reply, Script, TestApp, app_with_model, sse_frames, sse_ids};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

const STREAMING: &str = "/api/v1/chat/streaming";

/// Thirty words, streamed 40 ms apart: a turn that runs long enough to be resumed or stopped.
fn long_answer() -> String {
    (1..=30).map(|i| format!("word{i} ")).collect()
}

fn stream_path(conversation_id: &str) -> String {
    format!("/api/v1/chat/conversations/{conversation_id}/stream")
}

fn stop_path(conversation_id: &str) -> String {
    format!("/api/v1/chat/conversations/{conversation_id}/stop")
}

fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| f["type"] == "token")
        .map(|f| f["content"].as_str().unwrap())
        .collect()
}

/// An open stream read so far: its unread rest and the text of the events read.
struct Reading {
    rest: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    seen: String,
}

impl Reading {
    async fn start(app: &TestApp, user: &str, body: &Value) -> Self {
        let response = app
            .request(Method::POST, STREAMING, user)
            .json(body)
            .send()
            .await
            .unwrap();
        Self::of(response)
    }

    fn of(response: reqwest::Response) -> Self {
        Self {
            rest: Box::pin(response.bytes_stream()),
            seen: String::new(),
        }
    }

    /// Reads until `tokens` token frames have arrived, whole.
    async fn until_tokens(&mut self, tokens: usize) {
        while self.whole_events().matches("\"type\":\"token\"").count() < tokens {
            let bytes = self.rest.next().await.unwrap().unwrap();
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
    }

    /// Reads to the end of the body.
    async fn until_the_end(&mut self) {
        while let Some(bytes) = self.rest.next().await {
            self.seen
                .push_str(&String::from_utf8_lossy(&bytes.unwrap()));
        }
    }

    /// The events read whole (a frame cut between two reads is left for the next).
    fn whole_events(&self) -> &str {
        &self.seen[..self.seen.rfind("\n\n").map_or(0, |end| end + 2)]
    }
}

/// Waits until the stored answer has left `streaming`, and returns it.
async fn settled_answer(app: &TestApp, conversation_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stored = app.stored_messages("alice", conversation_id).await;
        let answer = stored.last().unwrap().clone();
        if answer["status"].is_null() {
            return answer;
        }
        assert!(Instant::now() < deadline, "the answer was never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_frame_of_a_stream_has_an_id_increasing_through_the_turn() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::reply("Once upon a time."));
    let mut reading = Reading::start(&app, "alice", &json!({"message": "story"})).await;
    reading.until_the_end().await;
    let frames = sse_frames(&reading.seen);
    let ids = sse_ids(&reading.seen);
    assert_eq!(ids.len(), frames.len(), "{}", reading.seen);
    let ids: Vec<(u64, u64)> = ids
        .iter()
        .map(|id| {
            let (chars, after) = id.split_once('-').unwrap();
            (chars.parse().unwrap(), after.parse().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    // The first frame names the answer, stored as the turn began.
    assert!(frames[0]["message_id"].is_string());
    assert_eq!(
        frames[frames.len() - 2]["message_id"],
        frames[0]["message_id"]
    );
    assert_eq!(ids.last().unwrap().0, "Once upon a time.".len() as u64);
}

#[tokio::test]
async fn a_stream_dropped_on_one_instance_resumes_on_another_with_exactly_the_missing_text() {
    let (app, fake) = app_with_model(&[]).await;
    let other = app.beside_with_model(&fake).await;
    fake.push(Script::slow_reply(
        &long_answer(),
        Duration::from_millis(40),
    ));
    let mut reading = Reading::start(&app, "alice", &json!({"message": "count"})).await;
    reading.until_tokens(3).await;
    let had = reading.whole_events().to_owned();
    drop(reading);
    let frames = sse_frames(&had);
    let conversation_id = frames[0]["conversation_id"].as_str().unwrap();
    let last_id = sse_ids(&had).last().unwrap().clone();

    let resumed = other
        .request(Method::GET, &stream_path(conversation_id), "alice")
        .header("last-event-id", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let resumed = Reply::from(resumed).await;
    let rest = sse_frames(&resumed.text);
    let kinds: Vec<&str> = rest
        .iter()
        .map(|f| f["type"].as_str().unwrap_or("[DONE]"))
        .collect();
    assert!(!kinds.contains(&"start"), "{kinds:?}");
    assert_eq!(kinds[kinds.len() - 3..], ["usage", "end", "[DONE]"]);
    assert_eq!(rest[rest.len() - 2]["metadata"]["finish_reason"], "stop");
    assert_eq!(rest[rest.len() - 2]["message_id"], frames[0]["message_id"]);
    // Nothing twice, nothing missing.
    assert_eq!(text_of(&frames) + &text_of(&rest), long_answer());
    let ids = sse_ids(&resumed.text);
    assert_eq!(ids.len(), rest.len());
    assert_ne!(ids[0], last_id);

    let stored = settled_answer(&app, conversation_id).await;
    assert_eq!(stored["content"], long_answer());
    assert_eq!(stored["finish_reason"], "stop");
}

#[tokio::test]
async fn a_stream_resumed_without_an_id_starts_with_the_answer_and_the_text_so_far() {
    let (app, fake) = app_with_model(&[]).await;
    let other = app.beside_with_model(&fake).await;
    fake.push(Script::slow_reply(
        &long_answer(),
        Duration::from_millis(40),
    ));
    let mut reading = Reading::start(&app, "alice", &json!({"message": "count"})).await;
    reading.until_tokens(2).await;
    let frames = sse_frames(reading.whole_events());
    let conversation_id = frames[0]["conversation_id"].as_str().unwrap().to_owned();

    let resumed = other.get(&stream_path(&conversation_id), "alice").await;
    let again = sse_frames(&resumed.text);
    assert_eq!(again[0]["type"], "start");
    assert_eq!(again[0]["message_id"], frames[0]["message_id"]);
    assert_eq!(text_of(&again), long_answer());
    reading.until_the_end().await;
    assert_eq!(text_of(&sse_frames(&reading.seen)), long_answer());
}

#[tokio::test]
async fn a_stop_from_another_instance_ends_the_turn_and_drops_the_model_request() {
    let (app, fake) = app_with_model(&[]).await;
    let other = app.beside_with_model(&fake).await;
    fake.push(Script::slow_reply(
        &long_answer(),
        Duration::from_millis(40),
    ));
    let mut reading = Reading::start(&app, "alice", &json!({"message": "count"})).await;
    reading.until_tokens(2).await;
    let first = sse_frames(reading.whole_events());
    let conversation_id = first[0]["conversation_id"].as_str().unwrap().to_owned();
    let follower = other
        .request(Method::GET, &stream_path(&conversation_id), "alice")
        .send()
        .await
        .unwrap();

    let stop = other
        .post(&stop_path(&conversation_id), "alice", &json!({}))
        .await;
    assert_eq!(stop.status, 202, "{}", stop.text);
    assert_eq!(stop.body["message_id"], first[0]["message_id"]);

    reading.until_the_end().await;
    let frames = sse_frames(&reading.seen);
    let end = &frames[frames.len() - 2];
    assert_eq!(end["type"], "end");
    assert_eq!(end["metadata"]["finish_reason"], "cancelled");
    assert_eq!(frames.last().unwrap(), "[DONE]");
    let said = text_of(&frames);
    assert!(said.len() < long_answer().len(), "{said}");

    let stored = settled_answer(&app, &conversation_id).await;
    assert_eq!(stored["finish_reason"], "cancelled");
    assert_eq!(stored["content"], said);
    // The resumed reader ends with the same answer and reason.
    let followed = sse_frames(&Reply::from(follower).await.text);
    assert_eq!(text_of(&followed), said);
    assert_eq!(
        followed[followed.len() - 2]["metadata"]["finish_reason"],
        "cancelled"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.abandoned() == 0 {
        assert!(
            Instant::now() < deadline,
            "the model request was not dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing runs any more.
    let again = other
        .post(&stop_path(&conversation_id), "alice", &json!({}))
        .await;
    assert_eq!(again.status, 204);
}

#[tokio::test]
async fn a_stopped_freechat_stream_ends_with_its_partial_message() {
    let (app, fake) = app_with_model(&[]).await;
    let other = app.beside_with_model(&fake).await;
    let chat = app.start_freechat_chat("alice", "Jack").await;
    fake.push(Script::slow_reply(
        &long_answer(),
        Duration::from_millis(40),
    ));
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/chat/send/stream/{chat}"),
            "alice",
        )
        .json(&json!({"contentText": "count"}))
        .send()
        .await
        .unwrap();
    let mut reading = Reading::of(response);
    while sse_frames(reading.whole_events()).len() < 2 {
        let bytes = reading.rest.next().await.unwrap().unwrap();
        reading.seen.push_str(&String::from_utf8_lossy(&bytes));
    }
    let stop = other.post(&stop_path(&chat), "alice", &json!({})).await;
    assert_eq!(stop.status, 202, "{}", stop.text);

    reading.until_the_end().await;
    let frames = sse_frames(&reading.seen);
    let said: String = frames.iter().filter_map(|f| f["text"].as_str()).collect();
    let last = frames.last().unwrap();
    assert_eq!(last["message"]["contents"][0]["content"], said);
    assert_eq!(last["finishReason"], "other");
    assert!(said.len() < long_answer().len(), "{said}");
    let stored = settled_answer(&app, &chat).await;
    assert_eq!(stored["finish_reason"], "cancelled");
}

#[tokio::test]
async fn stream_and_stop_answer_204_without_a_running_turn_and_404_for_another_users() {
    let (app, fake) = app_with_model(&[]).await;
    fake.push(Script::reply("Done already."));
    let mut reading = Reading::start(&app, "alice", &json!({"message": "hi"})).await;
    reading.until_the_end().await;
    let frames = sse_frames(&reading.seen);
    let conversation_id = frames[0]["conversation_id"].as_str().unwrap();
    let message_id = frames[0]["message_id"].as_str().unwrap();

    assert_eq!(
        app.get(&stream_path(conversation_id), "alice").await.status,
        204
    );
    let stop = app
        .post(&stop_path(conversation_id), "alice", &json!({}))
        .await;
    assert_eq!(stop.status, 204);
    let addressed = format!("{}?message_id={message_id}", stop_path(conversation_id));
    assert_eq!(app.post(&addressed, "alice", &json!({})).await.status, 204);

    app.get(&stream_path(conversation_id), "mallory")
        .await
        .assert_problem(404);
    app.post(&stop_path(conversation_id), "mallory", &json!({}))
        .await
        .assert_problem(404);
    let bad = format!("{}?message_id=not%20an%20id", stream_path(conversation_id));
    app.get(&bad, "alice").await.assert_problem(422);
    let unparsable = app
        .request(Method::GET, &stream_path(conversation_id), "alice")
        .header("last-event-id", "later")
        .send()
        .await
        .unwrap();
    Reply::from(unparsable).await.assert_problem(422);
}
