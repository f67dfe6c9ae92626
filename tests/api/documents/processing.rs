//! Processing a document again, and recovering from a failed embedding.

use shared::documents::Source;

use super::*;

#[tokio::test]
async fn an_embedding_failure_marks_the_upload_failed_and_reprocessing_recovers_it() {
    let (app, fake) = with_embeddings().await;
    fake.fail_embeddings(Some(500));
    let reply = upload_with(&app, "alice", "b.txt", "text/plain", BREAD.as_bytes(), &[]).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let document = reply.body;
    assert_eq!(document["status"], "failed");
    assert!(
        document["processing_error"]
            .as_str()
            .unwrap()
            .starts_with("Embedding failed"),
        "{document}"
    );
    assert!(
        !document["processing_error"]
            .as_str()
            .unwrap()
            .contains("scripted"),
        "{document}"
    );
    assert_eq!(
        document["chunk_count"], 1,
        "the text is kept, without vectors"
    );
    assert_eq!(
        chunks(&app, "alice", &id(&document)).await[0]["embedding_model"],
        Value::Null
    );

    // No chunk has a vector of the model: retrieval ranks lexically rather than finding nothing.
    fake.fail_embeddings(None);
    let lexical = alices_sources_for(&app, "bake bread").await;
    assert_eq!(lexical.len(), 1);

    let reprocessed = app
        .post(
            &format!("{DOCUMENTS}/{}/reprocess", id(&document)),
            "alice",
            &json!({}),
        )
        .await;
    assert_eq!(reprocessed.status, StatusCode::OK, "{}", reprocessed.body);
    assert_eq!(reprocessed.body["status"], "processed");
    assert_eq!(reprocessed.body["document_id"], document["id"]);
    let read = app
        .get(&format!("{DOCUMENTS}/{}", id(&document)), "alice")
        .await
        .body;
    assert_eq!(read["status"], "processed");
    assert_eq!(read["processing_error"], Value::Null);
    assert_eq!(read["version"], 2);
    assert_eq!(
        chunks(&app, "alice", &id(&document)).await[0]["embedding_model"],
        EMBEDDING_MODEL
    );

    // A provider that fails at query time: retrieval falls back to the lexical ranking.
    fake.fail_embeddings(Some(503));
    let fallback = alices_sources_for(&app, "bake bread").await;
    assert_eq!(fallback.len(), 1);
    assert_eq!(fallback[0].document_id, id(&document));
}

#[tokio::test]
async fn processing_again_rechunks_the_stored_text() {
    let app = TestApp::spawn().await;
    let text = long_text(30);
    let document = upload_chunked(&app, "l.txt", text.as_bytes(), ("500", "50"))
        .await
        .body;
    let path = format!("{DOCUMENTS}/{}", id(&document));
    let before = document["chunk_count"].as_u64().unwrap();

    let untouched = app
        .post(&format!("{path}/process"), "alice", &json!({}))
        .await;
    assert_eq!(untouched.status, StatusCode::OK, "{}", untouched.body);
    assert!(
        untouched.body["message"]
            .as_str()
            .unwrap()
            .contains("already processed")
    );
    assert_eq!(app.get(&path, "alice").await.body["version"], 1);

    let finer = app
        .post(
            &format!("{path}/process"),
            "alice",
            &json!({"reprocess": true, "chunk_size": 150, "chunk_overlap": 0}),
        )
        .await;
    assert_eq!(finer.status, StatusCode::OK, "{}", finer.body);
    assert_eq!(finer.body["status"], "processed");
    let read = app.get(&path, "alice").await.body;
    assert_eq!(read["chunk_size"], 150);
    assert_eq!(read["chunk_overlap"], 0);
    assert_eq!(read["version"], 2);
    let after = read["chunk_count"].as_u64().unwrap();
    assert!(after > before, "{before} -> {after}");
    let all = chunks(&app, "alice", &id(&document)).await;
    assert_eq!(all.len() as u64, after);
    assert!(
        all.iter()
            .all(|c| c["content"].as_str().unwrap().chars().count() <= 150)
    );

    app.post(
        &format!("{path}/process"),
        "alice",
        &json!({"reprocess": true, "chunk_size": 99}),
    )
    .await
    .assert_problem(422);
}

/// What retrieval finds for alice's `query` among all her documents: three sources at most,
/// scoring 0.3 or more.
async fn alices_sources_for(app: &TestApp, query: &str) -> Vec<Source> {
    retrieve(
        &app.state,
        RetrievalQuery {
            user_id: "alice",
            query,
            limit: 3,
            score_threshold: 0.3,
            document_ids: None,
        },
    )
    .await
    .unwrap()
}
