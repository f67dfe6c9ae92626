//! Conversations as trees: regenerated answers and edited questions are siblings, the active
//! branch is what a turn follows and what listings show, and a deleted message takes what
//! follows it.

use std::sync::Arc;

use api_tests::{
    FakeLlm, Script, TestApp, app_with_model, eventually, prompt_messages, sse_frames,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHAT: &str = "/api/v1/chat/chat";
const CONVERSATIONS: &str = "/api/v1/chat/conversations";

/// Asks `body` through `/chat` as alice and returns the 200's body.
async fn ask(app: &TestApp, fake: &FakeLlm, answer: &str, body: Value) -> Value {
    fake.push(Script::reply(answer));
    let reply = app.post(CHAT, "alice", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// A conversation of alice's with two exchanges: (conversation, its four messages' ids).
async fn two_exchanges(app: &TestApp, fake: &FakeLlm) -> (String, [String; 4]) {
    let first = ask(app, fake, "Four.", json!({"message": "2 + 2?"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let second = ask(
        app,
        fake,
        "Six.",
        json!({"message": "3 + 3?", "conversation_id": id}),
    )
    .await;
    let messages = listing(app, &id, "").await;
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[3], second["message"]["id"]);
    (id, ids.try_into().unwrap())
}

/// `GET /conversations/{id}/messages` with `query` as alice.
async fn listing(app: &TestApp, id: &str, query: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("{CONVERSATIONS}/{id}/messages{query}"), "alice")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body.as_array().unwrap().clone()
}

fn contents(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

/// The prompt's messages of the model's `n`th request, as (role, content).
fn prompt(fake: &FakeLlm, n: usize) -> Vec<(String, String)> {
    prompt_messages(&fake.requests()[n])
}

fn said(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(r, c)| ((*r).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test]
async fn every_message_names_its_parent_and_siblings_and_the_conversation_its_leaf() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [q1, a1, q2, a2]) = two_exchanges(&app, &fake).await;
    let messages = listing(&app, &id, "").await;
    assert_eq!(messages[0]["parent_id"], Value::Null);
    assert_eq!(messages[0]["sibling_ids"], json!([q1]));
    assert_eq!(messages[1]["parent_id"], q1.as_str());
    assert_eq!(messages[2]["parent_id"], a1.as_str());
    assert_eq!(messages[3]["parent_id"], q2.as_str());
    assert_eq!(messages[3]["sibling_ids"], json!([a2]));
    let conversation = app.get(&format!("{CONVERSATIONS}/{id}"), "alice").await;
    assert_eq!(conversation.body["active_message_id"], a2.as_str());
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
}

#[tokio::test]
async fn a_regenerated_answer_is_a_sibling_from_the_same_history_and_becomes_active() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [q1, a1, q2, a2]) = two_exchanges(&app, &fake).await;
    let regenerated = ask(
        &app,
        &fake,
        "Six, surely.",
        json!({"conversation_id": id, "regenerate_message_id": a2}),
    )
    .await;

    let answer = &regenerated["message"];
    let new = answer["id"].as_str().unwrap();
    assert_eq!(answer["parent_id"], q2.as_str());
    assert_eq!(answer["sibling_ids"], json!([a2, new]));
    assert_eq!(answer["sequence_number"], 5);
    assert_eq!(regenerated["conversation"]["active_message_id"], new);
    assert_eq!(
        prompt(&fake, 2),
        said(&[
            ("user", "2 + 2?"),
            ("assistant", "Four."),
            ("user", "3 + 3?")
        ]),
        "no new question, the same history"
    );
    let active = listing(&app, &id, "").await;
    assert_eq!(
        contents(&active),
        ["2 + 2?", "Four.", "3 + 3?", "Six, surely."]
    );
    assert_eq!(active[0]["id"], q1.as_str());
    assert_eq!(active[1]["id"], a1.as_str());
    let conversation = app.get(&format!("{CONVERSATIONS}/{id}"), "alice").await;
    assert_eq!(conversation.body["message_count"], 5);
}

#[tokio::test]
async fn an_edited_question_branches_and_the_model_sees_only_its_path() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [_, a1, q2, a2]) = two_exchanges(&app, &fake).await;
    let edited = ask(
        &app,
        &fake,
        "Eight.",
        json!({"conversation_id": id, "edit_message_id": q2, "message": "4 + 4?"}),
    )
    .await;

    assert_eq!(
        prompt(&fake, 2),
        said(&[
            ("user", "2 + 2?"),
            ("assistant", "Four."),
            ("user", "4 + 4?")
        ])
    );
    let active = listing(&app, &id, "").await;
    assert_eq!(contents(&active), ["2 + 2?", "Four.", "4 + 4?", "Eight."]);
    let edit = &active[2];
    assert_eq!(edit["parent_id"], a1.as_str());
    assert_eq!(edit["sibling_ids"], json!([q2, edit["id"]]));
    assert_eq!(edited["message"]["parent_id"], edit["id"]);

    // The next turn follows the edited branch.
    ask(
        &app,
        &fake,
        "Ten.",
        json!({"conversation_id": id, "message": "5 + 5?"}),
    )
    .await;
    assert_eq!(
        prompt(&fake, 3),
        said(&[
            ("user", "2 + 2?"),
            ("assistant", "Four."),
            ("user", "4 + 4?"),
            ("assistant", "Eight."),
            ("user", "5 + 5?"),
        ])
    );
    let all = listing(&app, &id, "?branch=all").await;
    assert_eq!(
        contents(&all),
        [
            "2 + 2?", "Four.", "3 + 3?", "Six.", "4 + 4?", "Eight.", "5 + 5?", "Ten."
        ],
        "every message in creation order"
    );
    assert!(all.iter().any(|m| m["id"] == a2.as_str()));
}

#[tokio::test]
async fn an_edited_first_question_starts_a_new_first_message_with_no_history() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [q1, ..]) = two_exchanges(&app, &fake).await;
    ask(
        &app,
        &fake,
        "Nine.",
        json!({"conversation_id": id, "edit_message_id": q1, "message": "3 * 3?"}),
    )
    .await;
    assert_eq!(prompt(&fake, 2), said(&[("user", "3 * 3?")]));
    let active = listing(&app, &id, "").await;
    assert_eq!(contents(&active), ["3 * 3?", "Nine."]);
    assert_eq!(active[0]["parent_id"], Value::Null);
    assert_eq!(active[0]["sibling_ids"], json!([q1, active[0]["id"]]));
}

#[tokio::test]
async fn choosing_a_message_makes_the_branch_through_it_active() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [_, _, q2, a2]) = two_exchanges(&app, &fake).await;
    ask(
        &app,
        &fake,
        "Eight.",
        json!({"conversation_id": id, "edit_message_id": q2, "message": "4 + 4?"}),
    )
    .await;

    let chosen = app
        .put(
            &format!("{CONVERSATIONS}/{id}"),
            "alice",
            &json!({"active_message_id": q2}),
        )
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.body);
    assert_eq!(
        chosen.body["active_message_id"],
        a2.as_str(),
        "the newest leaf under it"
    );
    let active = listing(&app, &id, "").await;
    assert_eq!(contents(&active), ["2 + 2?", "Four.", "3 + 3?", "Six."]);
    let inline = app.get(&format!("{CONVERSATIONS}/{id}"), "alice").await;
    assert_eq!(
        contents(inline.body["messages"].as_array().unwrap()),
        contents(&active)
    );

    // The next turn follows the chosen branch.
    ask(
        &app,
        &fake,
        "Twelve.",
        json!({"conversation_id": id, "message": "6 + 6?"}),
    )
    .await;
    assert_eq!(prompt(&fake, 3)[3], ("assistant".into(), "Six.".into()));

    app.put(
        &format!("{CONVERSATIONS}/{id}"),
        "alice",
        &json!({"active_message_id": "no-such-message"}),
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn deleting_a_message_deletes_what_follows_it_and_keeps_the_counters_exact() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [q1, a1, q2, _]) = two_exchanges(&app, &fake).await;
    ask(
        &app,
        &fake,
        "Eight.",
        json!({"conversation_id": id, "edit_message_id": q2, "message": "4 + 4?"}),
    )
    .await;
    let before = app
        .get(&format!("{CONVERSATIONS}/{id}"), "alice")
        .await
        .body;
    assert_eq!(before["message_count"], 6);

    let deleted = app
        .delete(&format!("{CONVERSATIONS}/{id}/messages/{a1}"), "alice")
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);

    let after = app
        .get(&format!("{CONVERSATIONS}/{id}"), "alice")
        .await
        .body;
    assert_eq!(
        after["message_count"], 1,
        "both branches under the answer went"
    );
    let left = listing(&app, &id, "?branch=all").await;
    assert_eq!(contents(&left), ["2 + 2?"]);
    let tokens: u64 = left.iter().filter_map(|m| m["total_tokens"].as_u64()).sum();
    assert_eq!(after["total_tokens"], tokens);
    assert_eq!(after["active_message_id"], q1.as_str());
}

#[tokio::test]
async fn two_turns_on_one_leaf_become_siblings_each_answering_its_own_question() {
    let (app, fake) = app_with_model(&[]).await;
    let app = Arc::new(app);
    let first = ask(&app, &fake, "Four.", json!({"message": "2 + 2?"})).await;
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    let leaf = first["message"]["id"].as_str().unwrap().to_owned();

    let (held, gate) = Script::reply("Answer A.").held();
    fake.push(held);
    let turn_a = {
        let (app, id) = (app.clone(), id.clone());
        tokio::spawn(async move {
            let body = json!({"message": "Question A", "conversation_id": id});
            app.post(CHAT, "alice", &body).await
        })
    };
    // A's question is stored and its answer is being written when B starts.
    eventually(|| async { listing(&app, &id, "?branch=all").await.len() == 3 }).await;
    let b = ask(
        &app,
        &fake,
        "Answer B.",
        json!({"message": "Question B", "conversation_id": id}),
    )
    .await;
    gate.add_permits(1);
    let a = turn_a.await.unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);

    assert_eq!(
        prompt(&fake, 2),
        said(&[
            ("user", "2 + 2?"),
            ("assistant", "Four."),
            ("user", "Question B")
        ]),
        "B's prompt holds no question of A's"
    );
    let all = listing(&app, &id, "?branch=all").await;
    let by_content = |text: &str| all.iter().find(|m| m["content"] == text).unwrap().clone();
    let (qa, qb) = (by_content("Question A"), by_content("Question B"));
    assert_eq!(qa["parent_id"], leaf.as_str());
    assert_eq!(qb["parent_id"], leaf.as_str());
    assert_eq!(qa["sibling_ids"], json!([qa["id"], qb["id"]]));
    assert_eq!(by_content("Answer A.")["parent_id"], qa["id"]);
    assert_eq!(by_content("Answer B.")["parent_id"], qb["id"]);
    assert_eq!(b["message"]["parent_id"], qb["id"]);
}

#[tokio::test]
async fn regenerating_a_question_is_refused_and_an_unknown_id_is_missing() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [q1, a1, ..]) = two_exchanges(&app, &fake).await;
    let refused = app
        .post(
            CHAT,
            "alice",
            &json!({"conversation_id": id, "regenerate_message_id": q1}),
        )
        .await;
    refused.assert_problem(422);
    assert!(
        refused.text.contains("regenerate_message_id"),
        "{}",
        refused.text
    );
    app.post(
        CHAT,
        "alice",
        &json!({"conversation_id": id, "edit_message_id": a1, "message": "x"}),
    )
    .await
    .assert_problem(422);
    app.post(
        CHAT,
        "alice",
        &json!({"conversation_id": id, "regenerate_message_id": "nope"}),
    )
    .await
    .assert_problem(404);
    app.post(CHAT, "alice", &json!({"conversation_id": id}))
        .await
        .assert_problem(422);
    assert_eq!(fake.calls(), 2, "no refused turn asked the model");
}

#[tokio::test]
async fn another_users_ids_are_missing_on_every_new_parameter() {
    let (app, fake) = app_with_model(&[]).await;
    let (alices, [_, _, q2, a2]) = two_exchanges(&app, &fake).await;
    let bobs = ask_as_bob(&app, &fake).await;
    for body in [
        json!({"conversation_id": bobs, "regenerate_message_id": a2}),
        json!({"conversation_id": bobs, "edit_message_id": q2, "message": "x"}),
        json!({"conversation_id": alices, "regenerate_message_id": a2}),
    ] {
        app.post(CHAT, "bob", &body).await.assert_problem(404);
    }
    for query in ["", "?branch=all"] {
        app.get(&format!("{CONVERSATIONS}/{alices}/messages{query}"), "bob")
            .await
            .assert_problem(404);
    }
    app.put(
        &format!("{CONVERSATIONS}/{bobs}"),
        "bob",
        &json!({"active_message_id": a2}),
    )
    .await
    .assert_problem(404);
    app.put(
        &format!("{CONVERSATIONS}/{alices}"),
        "bob",
        &json!({"active_message_id": a2}),
    )
    .await
    .assert_problem(404);
    assert_eq!(fake.calls(), 3);
}

async fn ask_as_bob(app: &TestApp, fake: &FakeLlm) -> String {
    fake.push(Script::reply("Hi Bob."));
    let reply = app.post(CHAT, "bob", &json!({"message": "Hi"})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["conversation_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_stream_and_a_template_regenerate_too() {
    let (app, fake) = app_with_model(&[]).await;
    let (id, [_, _, q2, a2]) = two_exchanges(&app, &fake).await;
    fake.push(Script::reply("Six again."));
    let streamed = app
        .post(
            "/api/v1/chat/streaming",
            "alice",
            &json!({"conversation_id": id, "regenerate_message_id": a2}),
        )
        .await;
    assert_eq!(streamed.status, StatusCode::OK, "{}", streamed.text);
    let frames = sse_frames(&streamed.text);
    assert!(frames.iter().any(|f| f["type"] == "end"), "{frames:?}");
    fake.push(Script::reply("Six, by template."));
    let templated = app
        .post(
            "/api/v1/chat/template/general_chat",
            "alice",
            &json!({"conversation_id": id, "regenerate_message_id": a2}),
        )
        .await;
    assert_eq!(templated.status, StatusCode::OK, "{}", templated.body);
    let answer = &templated.body["message"];
    assert_eq!(answer["parent_id"], q2.as_str());
    assert_eq!(answer["sibling_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        listing(&app, &id, "").await[3]["content"],
        "Six, by template."
    );
}
