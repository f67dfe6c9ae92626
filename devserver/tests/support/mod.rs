//! The local run as a process, as a developer starts it: its address from its first lines,
//! its standard output line by line.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const SECRET: &str = "devserver-test-secret-0123456789abcdef0123";

/// A running devserver, killed and reaped when dropped (also when a test panics).
pub struct Devserver {
    child: Child,
    pub url: String,
    stdout: mpsc::Receiver<String>,
}

impl Devserver {
    /// Starts the devserver on a random port over `data_dir`, with `env` added to its
    /// environment, and waits for it to announce its address.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_devserver"))
            .env("DATA_DIR", data_dir)
            .env("PORT", "0")
            .env("JWT_SECRET", SECRET)
            .env("RATE_LIMIT_PER_MINUTE", "1000000")
            .env("RATE_LIMIT_PER_HOUR", "1000000")
            .env("RUST_LOG", "warn")
            // No title calls beside the turns: the tests script the fake model's answers.
            .env("AUTO_TITLE", "false")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the devserver starts");
        // Its standard error is read to the end, also after the address: a closed pipe would
        // fail the server's next message.
        let stderr = BufReader::new(child.stderr.take().expect("stderr is piped"));
        let (address, announced) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Chat API on ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = address.send(url.to_owned());
                }
            }
        });
        let url = announced
            .recv_timeout(Duration::from_secs(30))
            .expect("the devserver announces its address");
        let (lines, stdout) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().expect("stdout is piped"));
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, url, stdout }
    }

    /// The next line of standard output, waiting at most `timeout` for it.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Devserver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh data directory under the system's temporary one, removed when dropped.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new(purpose: &str) -> Self {
        Self(std::env::temp_dir().join(format!("devserver-{purpose}-{}", uuid::Uuid::new_v4())))
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bearer token every devserver started here accepts.
pub fn token(user_id: &str) -> String {
    shared::auth::issue_token(
        &shared::config::Secret::new(SECRET),
        user_id,
        Duration::from_secs(600),
    )
}
