//! The local run keeps every write it acknowledged, even when killed mid-traffic.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shared::config::Secret;

const SECRET: &str = "restart-test-secret-0123456789abcdef0123";

/// A running devserver, killed and reaped when dropped (also when a test panics).
struct Server(Child);

impl Server {
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the devserver on a random port and returns it with its base URL.
fn start(data_dir: &std::path::Path) -> (Server, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_devserver"))
        .env("DATA_DIR", data_dir)
        .env("PORT", "0")
        .env("JWT_SECRET", SECRET)
        .env("RATE_LIMIT_PER_MINUTE", "1000000")
        .env("RATE_LIMIT_PER_HOUR", "1000000")
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the devserver starts");
    let mut server = Server(child);
    let stderr = BufReader::new(server.0.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = stderr
        .lines()
        .map_while(Result::ok)
        .take_while(|_| Instant::now() < deadline)
        .find_map(|line| {
            let rest = line.strip_prefix("Chat API on ")?;
            Some(rest.split_whitespace().next()?.to_owned())
        })
        .expect("the devserver announces its address");
    (server, url)
}

async fn listed_ids(http: &reqwest::Client, url: &str, token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page: serde_json::Value = http
            .get(format!(
                "{url}/api/v1/chat/conversations?limit=100&offset={}",
                ids.len()
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = page["conversations"].as_array().unwrap();
        if batch.is_empty() {
            return ids;
        }
        ids.extend(batch.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
    }
}

#[tokio::test]
async fn a_killed_local_server_restarts_with_every_acknowledged_write() {
    let data = std::env::temp_dir().join(format!("devserver-restart-{}", uuid::Uuid::new_v4()));
    let token = shared::auth::issue_token(&Secret::new(SECRET), "alice", Duration::from_secs(600));
    shared::install_crypto_provider();
    let http = reqwest::Client::new();
    let (server, url) = start(&data);

    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0.. {
                    let sent = http
                        .post(format!("{url}/api/v1/chat/conversations"))
                        .bearer_auth(&token)
                        .json(&serde_json::json!({"title": format!("writer {w} #{i}")}))
                        .send()
                        .await;
                    let Ok(response) = sent else { break };
                    if response.status() != 201 {
                        break;
                    }
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        break;
                    };
                    acknowledged.push(body["id"].as_str().unwrap().to_owned());
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "too little traffic to prove anything: {}",
        acknowledged.len()
    );

    let (restarted, url) = start(&data);
    let stored = listed_ids(&http, &url, &token).await;
    restarted.kill();
    let _ = std::fs::remove_dir_all(&data);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes were lost",
        missing.len(),
        acknowledged.len()
    );
}
