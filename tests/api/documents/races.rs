//! Documents under parallel processing from two instances over one table: a document's
//! chunks are always the result of one processing, and retrieval never returns others.

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use super::{DOCUMENTS, chunks, id, long_text, search, upload_chunked};
use api_tests::TestApp;

#[tokio::test]
async fn parallel_reprocessing_leaves_exactly_one_processings_chunks() {
    let app = TestApp::spawn().await;
    let beside = app.spawn_beside(&[]).await;
    let document = upload_chunked(&app, "l.txt", long_text(30).as_bytes(), ("500", "50"))
        .await
        .body;
    let path = format!("{DOCUMENTS}/{}", id(&document));
    for round in 0..3 {
        let sizes = [200, 300, 400, 500, 600, 700];
        let requests = sizes.iter().enumerate().map(|(i, size)| {
            let (app, path) = ([&app, &beside][i % 2], &path);
            let body = json!({"reprocess": true, "chunk_size": size, "chunk_overlap": 20});
            async move { app.post(&format!("{path}/process"), "alice", &body).await }
        });
        let replies = join_all(requests).await;
        for reply in &replies {
            match reply.status {
                StatusCode::OK => assert_eq!(reply.body["status"], "processed"),
                StatusCode::CONFLICT => reply.assert_problem(409),
                other => panic!("round {round}: {other} {}", reply.body),
            }
        }
        assert!(replies.iter().any(|r| r.status == StatusCode::OK));

        let read = app.get(&path, "alice").await.body;
        assert_eq!(read["status"], "processed");
        let count = read["chunk_count"].as_u64().unwrap();
        let size = read["chunk_size"].as_u64().unwrap();
        let stored = chunks(&app, "alice", &id(&document)).await;
        assert_eq!(stored.len() as u64, count, "round {round}");
        assert!(
            stored
                .iter()
                .all(|c| c["content"].as_str().unwrap().chars().count() as u64 <= size),
            "round {round}: chunks of another processing than the recorded one"
        );
        let found = search(
            &app,
            "alice",
            json!({"query": "topic item paragraph", "limit": 100, "score_threshold": 0.0}),
        )
        .await;
        for hit in found["results"].as_array().unwrap() {
            assert!(
                hit["metadata"]["chunk_index"].as_u64().unwrap() < count,
                "{hit}"
            );
        }
    }
}
