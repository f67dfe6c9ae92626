//! Schemathesis fuzzes every operation of the served OpenAPI document against the real
//! stack, with the ids of resources the fuzzing user owns: no server error, no response the
//! document does not describe, and no input it forbids accepted (so the bounds it declares
//! are the ones validation enforces). The tool comes from PyPI into a virtualenv the test
//! makes on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

use api_tests::{FakeLlm, TestApp};
use serde_json::json;

/// Exact versions, Hypothesis too: schemathesis allows any Hypothesis 6.x, and a new one should
/// not change what a run tries (or break it) without a commit here.
const REQUIREMENTS: [&str; 2] = ["schemathesis==4.32.5", "hypothesis==6.151.9"];
/// Examples per operation in the fuzzing phase: enough to reach every field's edge cases.
const MAX_EXAMPLES: &str = "40";
/// CI fuzzes with one seed, so a red run replays exactly and a green one is not luck; a deeper
/// hunt sets `FUZZ_SEED` and `FUZZ_EXAMPLES` (the README shows how).
const SEED: &str = "20261203";

/// A fuzzing setting: from the environment when set there, else the default.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The virtualenv holding schemathesis, made when missing and brought to the pinned versions
/// from PyPI (a no-op, without the network, when they are already there).
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-schemathesis");
    if !venv.join("bin/pip").exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv failed");
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(REQUIREMENTS)
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install {REQUIREMENTS:?} failed");
    venv.join("bin/schemathesis")
}

/// A character of `user`'s: its numeric id and its uid.
async fn character(app: &TestApp, user: &str, name: &str) -> (String, String) {
    let created = app
        .post("/api/v1/character", user, &json!({"name": name}))
        .await;
    let id = created.body.to_string();
    let summary = app
        .get(&format!("/api/v1/character/summary/{id}"), user)
        .await;
    let uid = summary.body["characterUid"].as_str().unwrap().to_owned();
    (id, uid)
}

/// The ids of one character with a backend and a chat that has a turn, one conversation with
/// a turn, one document, in schemathesis's parameter names.
async fn seed(app: &TestApp, user: &str, name: &str) -> Vec<(&'static str, String)> {
    let (character_id, character_uid) = character(app, user, name).await;
    let backend = app
        .post(
            &format!("/api/v1/character/backend/{character_uid}"),
            user,
            &json!({"isDefault": true}),
        )
        .await;
    let chat = app
        .post(
            "/api/v1/chat",
            user,
            &json!({"characterUid": character_uid}),
        )
        .await;
    let said = app
        .post(
            &format!("/api/v1/chat/send/{}", chat.text),
            user,
            &json!({"role": "user", "contents": [{"type": "text", "content": "Ahoy"}]}),
        )
        .await;
    assert!(said.status.is_success(), "{}", said.text);
    let conversation = app.create_conversation(user, name).await;
    let turn = app
        .post(
            "/api/v1/chat/chat",
            user,
            &json!({"message": "Hello", "conversation_id": conversation}),
        )
        .await;
    assert!(turn.status.is_success(), "{}", turn.text);
    let message = app.stored_messages(user, &conversation).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    vec![
        ("characterId", character_id),
        ("characterUid", character_uid),
        ("characterBackendId", backend.text),
        ("chatId", chat.text),
        ("conversation_id", conversation),
        ("message_id", message),
        (
            "document_id",
            app.upload_text(user, name, "The keeper counts ships at dawn.")
                .await,
        ),
    ]
}

/// A schemathesis config that sends the ids of things `user` owns, so that operations on an
/// existing resource reach their logic instead of a 404. Deletions get a set of their own:
/// with the first, they would remove what the rest of the run reads.
async fn config_with_existing_ids(app: &TestApp, user: &str) -> PathBuf {
    let toml = |ids: &[(&str, String)]| {
        ids.iter()
            .map(|(name, id)| format!("{name} = {}", toml_value(id)))
            .collect::<Vec<_>>()
    };
    let kept = seed(app, user, "Kept").await;
    let doomed = seed(app, user, "Doomed").await;
    let (_, assistant) = character(app, user, "Assistant").await;
    let config = format!(
        "[cache]\nenabled = false\n\n[parameters]\n{}\nassistantUid = {}\ntemplate_name = \"customer_support\"\n\n\
         [[operations]]\ninclude-method = \"DELETE\"\nparameters = {{ {} }}\n",
        toml(&kept).join("\n"),
        toml_value(&assistant),
        toml(&doomed).join(", "),
    );
    let path = std::env::temp_dir().join(format!("schemathesis-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&path, config).expect("the config is written");
    path
}

/// An id as a TOML value: numeric ids stay numbers.
fn toml_value(id: &str) -> String {
    if id.bytes().all(|b| b.is_ascii_digit()) {
        id.to_owned()
    } else {
        format!("\"{id}\"")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzing_every_operation_finds_no_server_error_and_no_response_off_the_document() {
    let tool = schemathesis();
    let fake = FakeLlm::start().await;
    let app = TestApp::spawn_with(&[("LLM_BASE_URL", &fake.base_url)]).await;
    let token = app.token("fuzzer");
    let (seed, examples) = (
        setting("FUZZ_SEED", SEED),
        setting("FUZZ_EXAMPLES", MAX_EXAMPLES),
    );
    println!("fuzzing with seed {seed}, {examples} examples per operation");
    let config = config_with_existing_ids(&app, "fuzzer").await;
    let output = tokio::process::Command::new(tool)
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{}/openapi.json", app.base_url), "--url", &app.base_url])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance,negative_data_rejection"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples, "--seed", &seed])
        // Nothing from earlier runs: what a run tries depends on its seed alone.
        .args(["--generation-database", "none"])
        // One worker: with two, Hypothesis parses its lambdas' source in both threads at once,
        // and Python 3.11's parser can then fail ("AST constructor recursion depth mismatch").
        .args(["--workers", "1", "--suppress-health-check", "all", "--request-timeout", "30"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        // Whatever it still writes (reports, a config probe) stays out of the repository.
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("schemathesis runs");
    let _ = std::fs::remove_file(&config);
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
