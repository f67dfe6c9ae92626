//! Schemathesis fuzzes every operation of the served OpenAPI document against the real
//! stack. The tool comes from PyPI into a virtualenv the test makes on first use.

use std::path::{Path, PathBuf};
use std::process::Command;

use api_tests::{FakeLlm, TestApp};

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Examples per operation in the fuzzing phase: enough to reach every field's edge cases.
const MAX_EXAMPLES: &str = "40";
/// CI fuzzes with one seed, so a red run replays exactly and a green one is not luck; a deeper
/// hunt sets `FUZZ_SEED` and `FUZZ_EXAMPLES` (the README shows how).
const SEED: &str = "20261203";

/// A fuzzing setting: from the environment when set there, else the default.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The virtualenv holding schemathesis, made (and filled from PyPI) when missing.
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-schemathesis");
    let bin = venv.join("bin/schemathesis");
    if !bin.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", SCHEMATHESIS])
            .status()
            .expect("pip runs");
        assert!(installed.success(), "pip install {SCHEMATHESIS} failed");
    }
    bin
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
    let output = tokio::process::Command::new(tool)
        .args(["run", &format!("{}/openapi.json", app.base_url), "--url", &app.base_url])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--workers", "2", "--suppress-health-check", "all", "--request-timeout", "30"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        // Its cache goes where it runs: not into the repository.
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&output.stdout);
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
