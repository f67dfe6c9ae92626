//! What a turn reads as its conversation grows branches (issue 16: a turn reads the history it
//! sends plus a constant number of items, whatever the number of branches).
//!
//! Each conversation has a main branch of 30 exchanges, then `b` branches, each editing its
//! second question and going on for 10 exchanges; then the main branch is made active again
//! and `turns` turns follow it. With enough branches the main branch is older than the newest
//! messages a turn reads first. Every message is written through the API, as a user would.

use api_tests::{Call, FakeLlm, Script, TestApp, prompt_messages};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::counting::is_read;

pub struct Options {
    /// Numbers of branches beside the main one, one conversation each.
    pub branches: Vec<usize>,
    /// Turns measured on the main branch of each conversation.
    pub turns: usize,
}

const CHAT: &str = "/api/v1/chat/chat";
const MAIN_EXCHANGES: usize = 30;
const BRANCH_EXCHANGES: usize = 10;

/// One turn through the API: its answer.
async fn ask(app: &TestApp, body: Value) -> anyhow::Result<Value> {
    let reply = app.post(CHAT, "alice", &body).await;
    anyhow::ensure!(reply.status == StatusCode::OK, "{}", reply.body);
    Ok(reply.body["message"].clone())
}

fn id(message: &Value, field: &str) -> anyhow::Result<String> {
    message[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no {field} in {message}"))
}

#[derive(Default)]
struct Reads {
    calls: usize,
    items: u64,
    units: f64,
}

impl Reads {
    fn add(&mut self, calls: &[Call]) {
        for call in calls.iter().filter(|c| is_read(&c.operation)) {
            self.calls += 1;
            self.items += call.items;
            self.units += call.capacity;
        }
    }
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let fake = FakeLlm::start().await;
    fake.always(Script::reply("Noted."));
    let (app, dynamodb) = TestApp::spawn_with_faults(&[
        ("LLM_BASE_URL", &fake.base_url),
        ("LLM_MODEL", "fake-model"),
        ("AUTO_TITLE", "false"),
    ])
    .await;
    dynamodb.count_capacity();

    println!("{}", crate::machine::describe());
    println!(
        "A main branch of {MAIN_EXCHANGES} exchanges, b branches of {BRANCH_EXCHANGES} beside it, \
         then {} turns on the main branch; per turn:",
        opts.turns
    );
    println!(
        "{:>8} {:>9} {:>8} {:>11} {:>11} {:>9}",
        "branches", "messages", "history", "read calls", "items read", "read units"
    );
    for &branches in &opts.branches {
        let conversation = app.create_conversation("alice", "Branches").await;
        let follow = |message: String| json!({"message": message, "conversation_id": conversation});
        let mut answers = Vec::new();
        for i in 1..=MAIN_EXCHANGES {
            answers.push(ask(&app, follow(format!("q{i}"))).await?);
        }
        let second_question = id(&answers[1], "parent_id")?;
        let main_leaf = id(answers.last().unwrap(), "id")?;
        for b in 1..=branches {
            let edit = json!({"message": format!("b{b}q2"), "conversation_id": conversation,
                              "edit_message_id": second_question});
            ask(&app, edit).await?;
            for i in 3..=BRANCH_EXCHANGES + 1 {
                ask(&app, follow(format!("b{b}q{i}"))).await?;
            }
        }
        let back = json!({"active_message_id": main_leaf});
        let path = format!("/api/v1/chat/conversations/{conversation}");
        let chosen = app.put(&path, "alice", &back).await;
        anyhow::ensure!(chosen.status == StatusCode::OK, "{}", chosen.body);

        let mut reads = Reads::default();
        for turn in 1..=opts.turns {
            dynamodb.take_calls();
            ask(&app, follow(format!("more {turn}"))).await?;
            reads.add(&dynamodb.take_calls());
        }
        let sent = fake.requests();
        let history = prompt_messages(sent.last().unwrap())
            .iter()
            .filter(|(role, _)| role != "system")
            .count()
            - 1;
        let messages = app.get(&path, "alice").await.body["message_count"]
            .as_u64()
            .unwrap_or_default();
        let per_turn = opts.turns.max(1) as f64;
        println!(
            "{:>8} {:>9} {:>8} {:>11.1} {:>11.1} {:>9.1}",
            branches,
            messages,
            history,
            reads.calls as f64 / per_turn,
            reads.items as f64 / per_turn,
            reads.units / per_turn,
        );
    }
    Ok(())
}
