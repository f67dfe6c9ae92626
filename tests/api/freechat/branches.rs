//! A FreeChat client reads a chat branched through Chatter as its active branch, and its
//! rollback, clearing and sends act on that branch.

use api_tests::{FakeLlm, Script, TestApp, app_with_model};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{CHAT, history, talk, texts};

/// Alice's chat with two exchanges, its second answer regenerated through Chatter:
/// (chat, the first version of the second answer).
async fn regenerated_chat(app: &TestApp, fake: &FakeLlm) -> (String, String) {
    let chat = app.start_freechat_chat("alice", "Jack").await;
    talk(app, fake, "alice", &chat, "Ahoy!", "Aye.").await;
    talk(app, fake, "alice", &chat, "Where to?", "Tortuga.").await;
    let messages = app.stored_messages("alice", &chat).await;
    let first_version = messages[3]["id"].as_str().unwrap().to_owned();
    fake.push(Script::reply("Port Royal."));
    let regenerated = app
        .post(
            "/api/v1/chat/chat",
            "alice",
            &json!({"conversation_id": chat, "regenerate_message_id": first_version}),
        )
        .await;
    assert_eq!(regenerated.status, StatusCode::OK, "{}", regenerated.body);
    (chat, first_version)
}

/// The contents of the last model request, without its system prompt.
fn last_prompt(fake: &FakeLlm) -> Vec<Value> {
    let requests = fake.requests();
    let messages = requests.last().unwrap()["messages"].as_array().unwrap();
    messages
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].clone())
        .collect()
}

#[tokio::test]
async fn a_freechat_client_reads_a_branched_chat_as_its_active_branch() {
    let (app, fake) = app_with_model(&[]).await;
    let (chat, first_version) = regenerated_chat(&app, &fake).await;
    let listed = history(&app, "alice", &chat).await;
    assert_eq!(
        texts(&listed),
        ["Ahoy!", "Aye.", "Where to?", "Port Royal."]
    );

    let chosen = app
        .put(
            &format!("/api/v1/chat/conversations/{chat}"),
            "alice",
            &json!({"active_message_id": first_version}),
        )
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.body);
    let listed = history(&app, "alice", &chat).await;
    assert_eq!(texts(&listed), ["Ahoy!", "Aye.", "Where to?", "Tortuga."]);
}

#[tokio::test]
async fn a_freechat_send_follows_the_active_leaf_and_its_prompt_holds_only_that_branch() {
    let (app, fake) = app_with_model(&[]).await;
    let (chat, _) = regenerated_chat(&app, &fake).await;
    talk(&app, &fake, "alice", &chat, "Why there?", "Rum.").await;
    assert_eq!(
        last_prompt(&fake),
        ["Ahoy!", "Aye.", "Where to?", "Port Royal.", "Why there?"]
    );
    let listed = history(&app, "alice", &chat).await;
    assert_eq!(
        texts(&listed),
        [
            "Ahoy!",
            "Aye.",
            "Where to?",
            "Port Royal.",
            "Why there?",
            "Rum."
        ]
    );
}

#[tokio::test]
async fn rolling_back_removes_the_newest_of_the_active_branch_and_clearing_all_of_it() {
    let (app, fake) = app_with_model(&[]).await;
    let (chat, _) = regenerated_chat(&app, &fake).await;
    let rolled = app
        .post(
            &format!("{CHAT}/messages/rollback/{chat}/1"),
            "alice",
            &json!({}),
        )
        .await;
    assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
    assert_eq!(
        rolled.body,
        json!([5]),
        "the regenerated answer, numbered 5"
    );
    // The branch now ends where it did before: the first version of the answer is its leaf.
    let listed = history(&app, "alice", &chat).await;
    assert_eq!(texts(&listed), ["Ahoy!", "Aye.", "Where to?", "Tortuga."]);

    let cleared = app
        .request(
            reqwest::Method::DELETE,
            &format!("{CHAT}/memory/{chat}"),
            "alice",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    let conversation = app
        .get(&format!("/api/v1/chat/conversations/{chat}"), "alice")
        .await
        .body;
    assert_eq!(conversation["message_count"], 0);
    assert_eq!(conversation["total_tokens"], 0);
}
