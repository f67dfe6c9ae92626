//! The devserver as a child process, as someone runs it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The HS256 secret every devserver a test starts is given, so one token serves them all.
pub const SECRET: &str = "restart-test-secret-0123456789abcdef0123";

/// A running devserver, killed and reaped when dropped (also when a test panics).
pub struct Server {
    process: Child,
    pub url: String,
}

impl Server {
    /// Starts the devserver on a random port with these variables added to the test's
    /// environment, and waits until it announces its address.
    pub fn start(vars: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_devserver"));
        command
            .env("PORT", "0")
            .env("JWT_SECRET", SECRET)
            .env("RATE_LIMIT_PER_MINUTE", "1000000")
            .env("RATE_LIMIT_PER_HOUR", "1000000")
            .env("RUST_LOG", "warn")
            .envs(vars.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        let mut process = command.spawn().expect("the devserver starts");
        let stderr = BufReader::new(process.stderr.take().expect("stderr is piped"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut said = Vec::new();
        let url = stderr
            .lines()
            .map_while(Result::ok)
            .take_while(|_| Instant::now() < deadline)
            .inspect(|line| said.push(line.clone()))
            .find_map(|line| {
                let rest = line.strip_prefix("Chat API on ")?;
                Some(rest.split_whitespace().next()?.to_owned())
            });
        let Some(url) = url else {
            let _ = process.kill();
            let _ = process.wait();
            panic!(
                "the devserver did not announce its address:\n{}",
                said.join("\n")
            );
        };
        Self { process, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
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
