//! The local run keeps every write it acknowledged, even when killed mid-traffic.

mod support;

use std::time::Duration;

use shared::config::Secret;
use support::{DataDir, Devserver, SECRET};

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
    let data = DataDir::new("restart");
    let token = shared::auth::issue_token(&Secret::new(SECRET), "alice", Duration::from_secs(600));
    shared::install_crypto_provider();
    let http = reqwest::Client::new();
    let server = Devserver::start(&data.0, &[]);
    let url = server.url.clone();

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

    let restarted = Devserver::start(&data.0, &[]);
    let stored = listed_ids(&http, &restarted.url, &token).await;
    restarted.kill();
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
