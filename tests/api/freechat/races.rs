//! FreeChat under parallel requests, from two instances over one table: quotas hold however
//! many sends arrive at once, and parallel rollbacks each remove their own messages.

use std::time::Duration;

use api_tests::{FakeLlm, Script, TestApp};
use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{CHAT, add_backend, app_with_model, history, jack, start, talk, texts};

const PARALLEL_SENDS: usize = 20;

/// alice's chat with a Jack whose backend is `backend`, and a second instance over the same
/// table and model.
async fn chat_on_two_instances(backend: Value) -> (TestApp, TestApp, FakeLlm, String) {
    let (app, fake) = app_with_model(&[]).await;
    let beside = app.beside_with_model(&fake).await;
    let (_, uid, _) = jack(&app, "alice", json!({})).await;
    let limited = add_backend(&app, "alice", &uid, backend).await;
    let chat = start(
        &app,
        "alice",
        json!({"characterUid": uid, "backendId": limited}),
    )
    .await;
    (app, beside, fake, chat)
}

/// Sends `text` to `chat` [`PARALLEL_SENDS`] times at once, alternating the instances, and
/// through FreeChat's send or, when `chatter` says so for the i-th, Chatter's `/chat`.
async fn send_all_at_once(
    apps: [&TestApp; 2],
    chat: &str,
    text: &str,
    chatter: impl Fn(usize) -> bool,
) -> Vec<StatusCode> {
    let sends = (0..PARALLEL_SENDS).map(|i| {
        let app = apps[i % 2];
        let (path, body) = if chatter(i) {
            (
                "/api/v1/chat/chat".to_owned(),
                json!({"message": text, "conversation_id": chat}),
            )
        } else {
            (format!("{CHAT}/send/{chat}"), json!({"contentText": text}))
        };
        async move { app.post(&path, "alice", &body).await }
    });
    let replies = join_all(sends).await;
    for reply in &replies {
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            reply.assert_problem(429);
        }
    }
    replies.iter().map(|r| r.status).collect()
}

/// How many of alice's messages in `chat`, on any branch, say `text`: sends made at once on
/// one leaf are siblings, only one of them on the active branch (the chat is a Chatter
/// conversation too).
async fn answers_on_every_branch(app: &TestApp, chat: &str, text: &str) -> usize {
    let every = app
        .get(
            &format!("/api/v1/chat/conversations/{chat}/messages?branch=all&limit=100"),
            "alice",
        )
        .await
        .body;
    let messages = every.as_array().unwrap().iter();
    messages.filter(|m| m["content"] == text).count()
}

fn count(statuses: &[StatusCode], status: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn usage_of(app: &TestApp, chat: &str) -> Value {
    let usage = app
        .get(&format!("{CHAT}/memory/usage/{chat}"), "alice")
        .await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.text);
    usage.body
}

#[tokio::test]
async fn parallel_sends_past_a_message_quota_are_refused_beyond_it() {
    let (app, beside, fake, chat) =
        chat_on_two_instances(json!({"quotaType": "messages", "initQuota": 3})).await;
    fake.always(Script::reply("Aye."));
    let statuses = send_all_at_once([&app, &beside], &chat, "Ahoy!", |_| false).await;
    assert_eq!(count(&statuses, StatusCode::OK), 3, "{statuses:?}");
    assert_eq!(
        count(&statuses, StatusCode::TOO_MANY_REQUESTS),
        PARALLEL_SENDS - 3
    );
    // A send that lost the race for the quota may have asked the model beside its claim,
    // and dropped the request when the store refused the claim: only three were answered.
    let asked = fake.calls();
    assert!(asked >= 3);
    // Sends made at once on one leaf are siblings: all of them are among every branch's
    // messages (the chat is a Chatter conversation too), one of them on the active branch.
    assert_eq!(answers_on_every_branch(&app, &chat, "Aye.").await, 3);
    // Nothing is held once every turn has ended: the quota is exactly used up, and a send
    // that the chat's usage as read refuses asks no model.
    send_all_at_once([&app, &beside], &chat, "More?", |_| false).await;
    assert_eq!(fake.calls(), asked);
}

#[tokio::test]
async fn parallel_sends_in_both_dialects_share_the_chats_quota() {
    let (app, beside, fake, chat) =
        chat_on_two_instances(json!({"quotaType": "messages", "initQuota": 3})).await;
    fake.always(Script::reply("Aye."));
    let statuses = send_all_at_once([&app, &beside], &chat, "Ahoy!", |i| i % 4 < 2).await;
    assert_eq!(count(&statuses, StatusCode::OK), 3, "{statuses:?}");
    assert_eq!(
        count(&statuses, StatusCode::TOO_MANY_REQUESTS),
        PARALLEL_SENDS - 3
    );
    assert_eq!(answers_on_every_branch(&app, &chat, "Aye.").await, 3);
}

#[tokio::test]
async fn parallel_sends_past_a_token_quota_are_refused_once_what_they_hold_reaches_it() {
    // The message is 40 bytes, held as 14 tokens (10, and 4 for the message's framing) until
    // its answer is counted: a quota of 40 admits three at once, however many arrive.
    let message = "Tell me of the northern seas, old salt!!";
    assert_eq!(message.len(), 40);
    let (app, beside, fake, chat) =
        chat_on_two_instances(json!({"quotaType": "tokens", "initQuota": 40})).await;
    // Answers take a while, so every send arrives while the first three still hold their
    // tokens: three settled answers (33 tokens) would rightly admit one more.
    fake.always(Script::slow_reply("Aye.", Duration::from_secs(2)));
    let statuses = send_all_at_once([&app, &beside], &chat, message, |_| false).await;
    assert_eq!(count(&statuses, StatusCode::OK), 3, "{statuses:?}");
    // Each answer counted what the model reported, 10 prompt and 1 answer token, in place of
    // what its turn held.
    let usage = usage_of(&app, &chat).await;
    assert_eq!(usage["messageUsage"], 3);
    assert_eq!(usage["tokenUsage"]["totalTokenCount"], 33, "{usage}");
}

#[tokio::test]
async fn a_send_that_fails_without_an_answer_gives_back_what_it_held() {
    let (app, beside, fake, chat) =
        chat_on_two_instances(json!({"quotaType": "messages", "initQuota": 1})).await;
    fake.push(Script::Status(500));
    fake.push(Script::Status(500));
    fake.push(Script::Status(500));
    let failed = app
        .post(
            &format!("{CHAT}/send/{chat}"),
            "alice",
            &json!({"contentText": "Ahoy!"}),
        )
        .await;
    failed.assert_problem(502);
    talk(&beside, &fake, "alice", &chat, "Ahoy again!", "Aye.").await;
}

#[tokio::test]
async fn parallel_rollbacks_on_two_instances_each_remove_their_own_newest_messages() {
    let (app, beside, fake, chat) = chat_on_two_instances(json!({})).await;
    for round in 0..5 {
        for i in 0..2 {
            let (question, answer) = (format!("q{round}.{i}"), format!("a{round}.{i}"));
            talk(&app, &fake, "alice", &chat, &question, &answer).await;
        }
        let (rollback, no_body) = (format!("{CHAT}/messages/rollback/{chat}/2"), json!({}));
        let (first, second) = tokio::join!(
            app.post(&rollback, "alice", &no_body),
            beside.post(&rollback, "alice", &no_body)
        );
        let mut removed = Vec::new();
        for reply in [&first, &second] {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            let ids: Vec<u64> = serde_json::from_value(reply.body.clone()).unwrap();
            assert_eq!(ids.len(), 2, "{ids:?}");
            removed.extend(ids);
        }
        removed.sort_unstable();
        removed.dedup();
        assert_eq!(removed.len(), 4, "each removed its own two: {removed:?}");
        let left = history(&app, "alice", &chat).await;
        assert_eq!(texts(&left), ["Ahoy there!"], "round {round}");
    }
}
